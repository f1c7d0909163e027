"""Peer: one member of an embedzk cluster, living inside the application's process.

The public API is kazoo's names with ZooKeeper's semantics (docs/peer.md). A peer owns a loop thread (see
:mod:`embedzk._loop`) that runs the replica, the storage and the transport, and a dispatch thread that runs watch
callbacks and listeners. Application threads talk to the loop through a queue and futures; plain reads go straight
to the local tree, which is why they take microseconds.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import blinker

from embedzk._dispatch import Dispatcher
from embedzk._futures import PeerFuture, chain
from embedzk._loop import Loop
from embedzk.errors import (
    BadArgumentsError,
    ConfigurationError,
    EmbedZKError,
    LoopThreadError,
    MembershipError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    PeerStoppedError,
)
from embedzk.membership.identity import MemberRecord, member_key, new_tag, user_id
from embedzk.membership.versions import PROTOCOL_MAX, PROTOCOL_MIN
from embedzk.model import EventType, KeeperState, Member, Stat, WatchedEvent
from embedzk.persist.base import Storage
from embedzk.persist.memory import MemoryStorage
from embedzk.recipes.mixin import PeerRecipes
from embedzk.settings import (
    check_endpoint,
    check_id,
    check_membership_settings,
    check_peer_settings,
    peer_map,
)
from embedzk.replica import Replica, ReplicaConfig, ReplicaOutput
from embedzk.membership.messages import LeaveRequest
from embedzk.replica.membership import MembershipConfig
from embedzk.transport.base import Transport
from embedzk.tree import TreeEvent, validate_path
from embedzk.tree.txn import (
    CheckOp,
    CloseSessionOp,
    CreateOp,
    DeleteOp,
    MultiOp,
    Op,
    SetACLOp,
    SetDataOp,
    SubOp,
    WithACL,
)
from embedzk.tree.acl import OPEN_ACL, Perm, allowed
from embedzk.tree.watches import DirectWatcher, WatchKind, WatchRegistry
from embedzk.zkserver.settings import ClientSettings
from embedzk._auth import add_identity, check_super_digest
from embedzk.security import ACL, acl_entries, acls_of

if TYPE_CHECKING:
    from embedzk.aio import AsyncPeer
    from embedzk.zkserver.server import ClientServer

log = logging.getLogger(__name__)

WatchFn = Callable[[WatchedEvent], Any]


#: Seconds the first static voters to start wait for the other configured voters before founding without them.
STATIC_FOUNDING_GRACE = 3.0
#: Bytes of committed entries the loop applies between two looks at the network: about 50 to 100 ms of applying.
#: A backlog (a bulk load of large transactions, a follower catching up) is applied in such slices, so that the
#: loop ticks and answers in between; applied at once, a leader's backlog outlasted the 0.3 s election timeout and
#: cost it its leadership in the middle of a bulk load of a million znodes.
APPLY_BYTES_PER_READY = 1 << 20


def _release(storage: Storage, transport: Transport) -> None:
    """Close a stopped loop's transport and storage (run by the loop thread as it exits)."""
    transport.close()
    storage.close()


_F = TypeVar("_F", bound=Callable[..., Any])


def _blocking(method: _F) -> _F:
    """A Peer method that waits for the loop: refused on the loop thread before it asks anything of it."""

    @functools.wraps(method)
    def checked(self: Peer, *args: Any, **kwargs: Any) -> Any:
        self._refuse_on_loop_thread()
        return method(self, *args, **kwargs)

    return checked  # type: ignore[return-value]


def _blocking_transaction(method: _F) -> _F:
    """As :func:`_blocking`, for a Transaction's method."""

    @functools.wraps(method)
    def checked(self: Transaction, *args: Any, **kwargs: Any) -> Any:
        self._peer._refuse_on_loop_thread()
        return method(self, *args, **kwargs)

    return checked  # type: ignore[return-value]


class _SignalTarget:
    """A persistent watch's registry entry: fires its blinker signal."""

    __slots__ = ("recursive", "signal")

    def __init__(self, signal: blinker.Signal, recursive: bool) -> None:
        self.signal = signal
        self.recursive = recursive


class Peer(PeerRecipes):
    """A member of an embedzk cluster (see docs/peer.md and docs/cluster.md); every public method is thread-safe.

    Two ways to say who the members are:

    * ``peers`` (a static membership) maps the other voting members' ids to where they listen; every voter is
      configured with the same members. With no peers (and no seeds) the peer is a working one-member cluster (the
      embedded default). ``observer`` True makes a replica that does not vote: it serves local reads, forwards
      writes and joins the cluster as a learner.
    * ``seeds`` (an elastic cluster), the same line on every worker: the peers whose ``bind`` is among the seed
      addresses found the cluster once a majority of them is up; every other peer joins through any seed or member
      it can reach. The leader keeps ``voters`` voting members (1, 3, 5 or 7) among the live, caught-up ones (the
      rest observe), replaces a voter unreachable for ``member_timeout`` seconds and removes any member
      unreachable that long. ``seeds=[]`` waits to be added with :meth:`add_member`.

    A member is its id and its data directory: a peer on a fresh disk (``data_dir`` None, or new, or wiped) is a
    new member, never the one that had its id before (see :mod:`embedzk.membership.identity`). ``data_dir`` None
    keeps everything in memory (lost on stop). Times are seconds.

    Keyword-only tuning: ``tick_interval`` x ``election_tick`` is the election timeout (0.3 s by default; a leader
    that dies is replaced within one to two of it); ``request_timeout`` bounds every write and sync;
    ``no_leader_timeout`` how long a request asked while no leader is known waits for one before it fails with
    ConnectionLossError, from when it was asked (four election timeouts, at least a second, by default);
    ``snapshot_entries`` is how many applied entries trigger a snapshot and log compaction, ``snapshot_bytes`` how
    many bytes of them do (or as many as the last snapshot had, whichever is more: a restart replays about a
    snapshot's worth of log at most); ``cluster`` names the cluster in every frame, so that two clusters on shared
    ports ignore each other. ``storage`` replaces the
    storage chosen by ``data_dir``, ``transport_factory(member_key, bind)`` the ZeroMQ transport (tests and
    embedding); ``zmq_context`` is the ZeroMQ context to use (default: the process's shared one, which
    ``inproc://`` needs). ``protocol_version`` pins the newest protocol version this peer speaks (a test setting:
    rolling upgrades are tested with it).

    ZooKeeper's world: ``client_address`` (``"host:port"``) serves ZooKeeper's client protocol there, with
    ``client_settings`` (:class:`embedzk.zkserver.ClientSettings`); see docs/zookeeper.md. ``auth_data`` are
    ``(scheme, credential)`` pairs added to this peer's own requests, as kazoo's (``("digest", "user:password")``);
    ``super_digest`` (``"super:<base64 sha1>"``, ZooKeeper's superDigest) names the superuser, whom no ACL refuses,
    for this peer's requests and its ZooKeeper clients alike.
    """

    def __init__(
        self,
        id: str,
        bind: str | None = None,
        peers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        observer: bool = False,
        session_timeout: float = 10.0,
        *,
        seeds: Iterable[str] | None = None,
        voters: int = 3,
        member_timeout: float = 30.0,
        cluster: str = "embedzk",
        tick_interval: float = 0.02,
        election_tick: int = 15,
        request_timeout: float = 30.0,
        no_leader_timeout: float | None = None,
        snapshot_entries: int = 10_000,
        snapshot_bytes: int = 4 << 20,
        max_data_bytes: int = 1 << 20,
        transport: Transport | None = None,
        storage: Storage | None = None,
        transport_factory: Callable[[str, str], Transport] | None = None,
        zmq_context: Any = None,
        protocol_version: int | None = None,
        client_address: str | None = None,
        client_settings: ClientSettings | None = None,
        auth_data: Iterable[tuple[str, str]] | None = None,
        super_digest: str | None = None,
    ) -> None:
        peers = peer_map(peers)
        check_id(id, "peer id")
        seed_list = check_membership_settings(
            bind, peers, seeds, observer, voters, member_timeout, tick_interval, election_tick, protocol_version
        )
        check_peer_settings(id, bind, peers, observer, session_timeout, tick_interval, election_tick, request_timeout)
        self.id = id
        #: The seed addresses (None: a static membership, ``peers``).
        self.seeds = seed_list
        #: The voting members the cluster keeps (seeds only).
        self.voters = voters
        #: Seconds unreachable before the leader removes a member (seeds only).
        self.member_timeout = member_timeout
        self.observer = observer
        self.cluster = cluster
        self.session_timeout = session_timeout
        self.request_timeout = request_timeout
        election = tick_interval * election_tick
        if no_leader_timeout is not None and (
            isinstance(no_leader_timeout, bool) or not isinstance(no_leader_timeout, (int, float))
            or not no_leader_timeout > 0
        ):
            raise ConfigurationError(f"no_leader_timeout must be a positive number of seconds, got {no_leader_timeout!r}")
        #: Seconds a request waits while no leader is known before it fails with ConnectionLossError.
        self.no_leader_timeout = no_leader_timeout if no_leader_timeout is not None else max(1.0, 4 * election)
        self._peers = peers
        self._data_dir = os.fspath(data_dir) if data_dir is not None else None
        self._bind = bind or f"inproc://embedzk-{cluster}-{id}-{uuid.uuid4().hex[:8]}"
        self._tick_interval = tick_interval
        self._election_tick = election_tick
        self._snapshot_entries = snapshot_entries
        self._snapshot_bytes = snapshot_bytes
        self._max_data_bytes = max_data_bytes
        if storage is not None and data_dir is not None:
            raise ConfigurationError("give either data_dir or storage, not both")
        self._transport_given = transport
        self._transport_factory = transport_factory
        self._storage_given = storage
        self._versions = (PROTOCOL_MIN, protocol_version if protocol_version is not None else PROTOCOL_MAX)
        self._zmq_context = zmq_context
        if client_address is not None:
            from embedzk.zkserver.server import parse_client_address

            parse_client_address(client_address)  # a ConfigurationError now rather than at start()
        if client_settings is not None and not isinstance(client_settings, ClientSettings):
            raise ConfigurationError(f"client_settings must be a ClientSettings, got {type(client_settings).__name__}")
        self._client_address = client_address
        self._client_settings = client_settings or ClientSettings()
        self._super_digest = check_super_digest(super_digest)
        self._ids: tuple[tuple[str, str], ...] = ()
        for scheme, credential in auth_data or ():
            self._ids = add_identity(self._ids, scheme, credential, self._super_digest, ConfigurationError)
        self._client_server: ClientServer | None = None
        self._lock = threading.RLock()
        self._started = False
        self._stopped = False
        self._connected = threading.Event()
        self._loop: Loop | None = None
        self._storage: Storage | None = None
        self._replica: Replica | None = None
        self._transport: Transport | None = None
        self._dispatcher = Dispatcher(f"embedzk-{id}-watches")
        self._registry = WatchRegistry()
        self._signals: dict[tuple[str, bool], _SignalTarget] = {}
        self._listeners: list[Callable[[KeeperState], Any]] = []
        self._aio: AsyncPeer | None = None
        # Before start() and after stop(), as kazoo's client: no session.
        self._state = KeeperState.LOST
        self._leader: str | None = None
        self._crashed: BaseException | None = None
        # Why this peer may not join (a refusal from the cluster), once known.
        self._refused: str | None = None
        self._member_key: str | None = None
        self._leaving = False
        # The tree as the loop last handed it out: what a snapshot from the leader is compared with.
        self._tree_seen: Any = None
        #: Sent with ``leader=`` (the new leader's id, or None) whenever the known leader changes.
        self.leader_changed = blinker.Signal("leader_changed")
        #: Sent with ``state=`` (a KeeperState) whenever this peer's state changes.
        self.state_changed = blinker.Signal("state_changed")
        #: Sent (no arguments beyond the sender) whenever the membership or a member's address changes.
        self.members_changed = blinker.Signal("members_changed")

    # ----------------------------------------------------------------------------------------------------------
    # life cycle

    def start(self, timeout: float = 30.0) -> None:
        """Open storage and sockets, join the cluster; return once a leader is known and the session is open.

        Raises OperationTimeoutError (after stopping again) if that does not happen within ``timeout`` seconds,
        StorageError or ConfigurationError if the data directory or the configuration is unusable.
        """
        with self._lock:
            if self._stopped:
                raise PeerStoppedError("a stopped peer cannot be started again; create a new Peer")
            if self._started:
                return
            self._open()
            self._started = True
        deadline = time.monotonic() + timeout
        connected = self._connected.wait(timeout)
        if connected and self._refused is None and self.seeds is None and self._peers and not self.observer:
            # A static voter that joined after the founding votes once it has caught up: start() returns then, so
            # that once every voter's start() returned, every configured voter votes.
            connected = self._wait_for_vote(deadline)
        if self._refused is not None:
            self.stop(close_session=False)
            raise ConfigurationError(f"peer {self.id} cannot join the cluster: {self._refused}")
        if self._stopped or self._crashed is not None:
            raise self._not_running()
        if not connected:
            self.stop(close_session=False)
            raise OperationTimeoutError(f"peer {self.id} found no leader within {timeout}s ({self._waiting_for()})")
        if self._client_address is not None:
            self._serve_clients()

    def _serve_clients(self) -> None:
        """Start serving ZooKeeper clients at ``client_address`` (stopping the peer again if it cannot be bound)."""
        from embedzk.zkserver.server import ClientServer

        with self._lock:
            if self._client_server is not None or self._stopped or self._client_address is None:
                return
            server = ClientServer(self, self._client_address, self._client_settings)
            try:
                server.start()
            except BaseException:
                self.stop(close_session=False)
                raise
            self._client_server = server

    @property
    def client_address(self) -> str | None:
        """Where this peer serves ZooKeeper clients, ``host:port`` (the port chosen if 0 was asked); None if it
        does not (no ``client_address``, or not started)."""
        server = self._client_server
        return server.address if server is not None else None

    def _wait_for_vote(self, deadline: float) -> bool:
        replica = self._replica
        while replica is not None and not self._stopped and self._crashed is None:
            if self._member_key in replica.conf_state().voters:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def _waiting_for(self) -> str:
        """What start() was waiting for, in words, for its timeout error."""
        replica = self._replica
        phase = replica.phase.value if replica is not None else "not started"
        if self.seeds is not None:
            return f"{phase}; is a majority of the seeds {sorted(self.seeds)} up, or any member reachable?"
        return f"{phase}; is a majority of {self._configured_voters() or [self.id]} up?"

    def stop(self, close_session: bool = True, timeout: float = 5.0, *, leave: bool = False) -> None:
        """Stop this peer; idempotent. Every call afterwards raises PeerStoppedError.

        Closes the session, so its ephemeral nodes go at once (waiting at most ``timeout`` for a quorum to commit
        that), hands leadership to another voter if this peer leads, fails the requests still waiting with
        PeerStoppedError, tells listeners LOST, and frees sockets, files and threads. ``close_session=False``
        stops as a crash would: the session expires on the others after ``session_timeout``.

        ``leave=False`` keeps this member's place (a voter keeps its seat for its return, until ``member_timeout``
        in an elastic cluster); ``leave=True`` hands its seat to another member first and leaves the membership
        (waiting at most ``timeout`` for that), for a worker that goes for good.
        """
        with self._lock:
            if self._stopped:
                return
            self._leaving = leave
            if leave and self._started and self._crashed is None:
                self._leave(timeout)
            self._stopped = True
            if not self._started:
                return
        self._connected.set()  # a start() still waiting gives up at once
        if self._client_server is not None:
            # First, so that its clients move to another peer (their sessions live on) while this one stops.
            self._client_server.stop()
        loop = self._loop
        assert loop is not None
        # On the loop thread itself (a future's callback calling stop()), nothing it waits for could complete.
        on_loop = threading.current_thread() is loop.thread
        closing = self._close_session_async(timeout) if close_session and not on_loop else None
        if closing is not None:
            self._await_closing(closing, timeout)
        if close_session and not on_loop:
            self._hand_over_leadership(min(timeout, 2 * self._tick_interval * self._election_tick))
        if not loop.stop() and not on_loop:
            log.warning(
                "peer %s: its loop thread did not stop in time; it releases its data directory and sockets when it "
                "does", self.id,
            )
        if self._state is not KeeperState.LOST:
            self._set_state(KeeperState.LOST)  # as kazoo's stop(): listeners hear that the session is gone
        self._dispatcher.stop()

    def _await_closing(self, closing: Future[Any], timeout: float) -> None:
        """Wait for the session's closing to commit, but no longer than the cluster could commit it: once this peer
        knows no leader (the last peers stopping, no quorum left), the session expires by itself instead."""
        deadline = time.monotonic() + timeout
        replica = self._replica
        while not closing.done() and time.monotonic() < deadline:
            if replica is not None and replica.lead is None:
                log.info("peer %s: no leader to close its session with; it expires by itself", self.id)
                return
            try:
                closing.result(0.02)
            except TimeoutError:
                continue
            except Exception:
                break
        if closing.done() and closing.exception() is not None:
            # The cluster may have no quorum: the session then expires by itself.
            log.info("peer %s: could not close its session at stop: %r", self.id, closing.exception())

    def _leave(self, timeout: float) -> None:
        """Hand over leadership and this member's seat, and wait (at most ``timeout``) until the leader has removed
        this member; best effort (without a quorum nothing can be removed)."""
        loop, replica = self._loop, self._replica
        if loop is None or replica is None or loop.thread is threading.current_thread():
            return
        deadline = time.monotonic() + timeout
        self._hand_over_leadership(min(timeout, 2 * self._tick_interval * self._election_tick))
        key = self._member_key

        def ask() -> None:
            replica.membership.leaving = True
            if replica.lead is not None and replica.lead != key:
                replica.send(replica.lead, LeaveRequest(key or ""))

        while time.monotonic() < deadline and loop.crashed is None:
            try:
                loop.call(ask).result(1.0)
            except Exception:
                return
            if key not in replica.node.status().log_conf_state.members() or replica.phase.value == "removed":
                log.info("peer %s: left the cluster", self.id)
                return
            if replica.is_leader:
                self._hand_over_leadership(min(1.0, deadline - time.monotonic()))
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        log.warning("peer %s: could not leave the cluster within %ss; stopping all the same", self.id, timeout)

    def _hand_over_leadership(self, timeout: float) -> None:
        """If this peer leads, hand leadership to the most up-to-date voter and wait (at most ``timeout``) until
        it has taken over, so that a clean stop costs the cluster no election timeout (etcd does the same)."""
        loop, replica = self._loop, self._replica
        if loop is None or replica is None or loop.crashed is not None:
            return

        def begin() -> str | None:
            if not replica.is_leader:
                return None
            status = replica.node.status()
            voters = [v for v in replica.conf_state().voters if v != self._member_key and v in status.progress]
            if not voters:
                return None
            target = max(voters, key=lambda v: (status.progress[v].match, v))
            replica.transfer_leadership(target)
            return target

        try:
            target = loop.call(begin).result(timeout)
        except Exception:
            return
        if target is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and replica.lead in (self._member_key, None) and loop.crashed is None:
            time.sleep(0.002)
        log.info("peer %s: handed leadership to %s before stopping (leader now %s)", self.id, target, replica.lead)

    def _close_session_async(self, timeout: float) -> Future[Any] | None:
        """Propose the closing of this peer's session (None if it has none); used by stop()."""
        loop = self._loop
        replica = self._replica
        if loop is None or replica is None or loop.crashed is not None:
            return None
        session = replica.session_id
        if not session:
            return None
        return loop.submit(CloseSessionOp(session), timeout)

    def __enter__(self) -> Peer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _configured_voters(self) -> list[str]:
        """The voters a static membership names (empty for an elastic cluster)."""
        if self.seeds is not None:
            return []
        return sorted(self._peers) if self.observer else sorted([*self._peers, self.id])

    def _open(self) -> None:
        storage = self._open_storage()
        self._storage = storage
        try:
            record = storage.member_record()
            if record is None:
                # A disk bootstrapped with a membership by hand (tests, embedding) is the member named by the id;
                # any other disk without a record is new, and draws its tag now: a new disk is a new member.
                legacy = bool(storage.initial_state()[1].members())
                record = MemberRecord(key=self.id if legacy else member_key(self.id, new_tag()))
                storage.save_member_record(record)
            self._member_key = record.key
            transport = self._make_transport(record.key)
            self._transport = transport
            address = getattr(transport, "endpoint", self._bind)
            config = ReplicaConfig(
                id=record.key,
                tick_interval=self._tick_interval,
                election_tick=self._election_tick,
                session_timeout=self.session_timeout,
                snapshot_entries=self._snapshot_entries,
                snapshot_bytes=self._snapshot_bytes,
                max_data_bytes=self._max_data_bytes,
                max_committed_bytes_per_ready=APPLY_BYTES_PER_READY,
                no_leader_timeout=self.no_leader_timeout,
                # A disk bootstrapped by hand names members by their ids: the static map is where they are.
                addresses=dict(self._peers) if record.key == self.id else {},
                membership=self._membership_config(address),
            )
            replica = Replica(config, storage, random.Random())
            self._check_stored_membership(replica)
            self._replica = replica
            self._tree_seen = replica.tree
            transport.set_peers(replica.routes())
            if hasattr(transport, "version"):
                transport.version = min(max(replica.cluster_version, self._versions[0]), self._versions[1])
            self._loop = Loop(
                replica,
                storage,
                transport,
                tick_interval=self._tick_interval,
                on_output=self._on_output,
                on_crash=self._on_crash,
                name=f"embedzk-{self.id}-loop",
                new_future=self._new_future,
                on_exit=functools.partial(_release, storage, transport),
            )
            self._dispatcher.start()
            self._loop.start()
        except BaseException:
            storage.close()
            if self._transport is not None:
                self._transport.close()
            raise

    def _open_storage(self) -> Storage:
        if self._storage_given is not None:
            return self._storage_given
        if self._data_dir is None:
            return MemoryStorage()
        from embedzk.persist.leveldb import LevelDBStorage

        return LevelDBStorage.open(self._data_dir, cluster_id=self.cluster, peer_id=self.id)

    def _membership_config(self, address: str) -> MembershipConfig:
        low, high = self._versions
        if self.seeds is not None:
            return MembershipConfig(
                address=address,
                founders=tuple(self.seeds),
                contacts=tuple(self.seeds),
                voters=self.voters,
                member_timeout=self.member_timeout,
                min_version=low,
                max_version=high,
            )
        if not self._peers:
            return MembershipConfig(address=address, founders=(address,), min_version=low, max_version=high)
        voter_addresses = list(self._peers.values())
        if not self.observer:
            voter_addresses.append(self._bind)
        return MembershipConfig(
            address=self._bind,
            founders=tuple(sorted(voter_addresses)),
            contacts=tuple(sorted(self._peers.values())),
            wants_vote=not self.observer,
            min_version=low,
            max_version=high,
            # Static voters are usually started together and expected to vote from the start: a majority waits a
            # few seconds for the rest before founding without them.
            founding_grace=STATIC_FOUNDING_GRACE,
        )

    def _check_stored_membership(self, replica: Replica) -> None:
        """Refuse a data directory whose stored membership contradicts this peer's configuration: a developer's
        solo directory reused in a cluster would otherwise lead alone, a directory of another cluster split it."""
        stored = replica.node.status().log_conf_state
        if not stored.members():
            return
        stored_voters = sorted({user_id(key) for key in stored.voters})
        where = f"data_dir {self._data_dir}" if self._data_dir is not None else "the storage"
        if self.seeds is not None:
            founded = replica.membership.record.accepted
            if founded is not None and sorted(set(founded.founders)) != sorted(set(self.seeds)):
                raise ConfigurationError(
                    f"{where} holds a member of a cluster founded among {sorted(set(founded.founders))} (voters "
                    f"{stored_voters}), but this peer is configured with seeds {sorted(set(self.seeds))}: point "
                    f"data_dir elsewhere (or empty it) to join as a new member"
                )
            return
        configured = self._configured_voters()
        others = set(configured) - {self.id}
        if stored_voters != configured and not others & set(stored_voters):
            raise ConfigurationError(
                f"{where} holds a member of a cluster whose voters are {stored_voters}, but this peer is configured "
                f"with voters {configured}: point data_dir elsewhere (or empty it) to start this member afresh"
            )

    def _make_transport(self, key: str) -> Transport:
        if self._transport_given is not None:
            if self._transport_given.id != key:
                raise ConfigurationError(
                    f"the transport given to peer {self.id} has id {self._transport_given.id!r}, but the member's "
                    f"key is {key!r}: give transport_factory instead"
                )
            return self._transport_given
        if self._transport_factory is not None:
            transport = self._transport_factory(key, self._bind)
            transport.start()
            return transport
        from embedzk.transport.zmq import ZmqTransport

        transport = ZmqTransport(
            key, self._bind, context=self._zmq_context, cluster=self.cluster.encode(), versions=self._versions
        )
        transport.start()
        return transport

    # ----------------------------------------------------------------------------------------------------------
    # the loop's output (runs on the loop thread)

    def _on_output(self, out: ReplicaOutput) -> None:
        replica = self._replica
        assert replica is not None
        if out.members_changed and self._transport is not None:
            self._transport.set_peers(replica.routes())
            self._dispatcher.submit_signal(self.members_changed, self)
        if out.version_changed and self._transport is not None and hasattr(self._transport, "version"):
            self._transport.version = min(max(replica.cluster_version, self._versions[0]), self._versions[1])
        if out.refusal is not None:
            log.error("peer %s: %s", self.id, out.refusal)
            if not self._connected.is_set():
                self._refused = out.refusal
                self._connected.set()  # start() gives up at once, with this reason
        if out.removed is not None:
            self._on_removed(out.removed)
        if out.tree_replaced:
            self._fire_for_replaced_tree(self._tree_seen)
        self._tree_seen = replica.tree
        state = replica.state
        if out.applied and len(self._registry):  # most writes are watched by nobody: skip the matching
            for zxid, events in out.applied:
                for watcher, event in self._registry.trigger(events, zxid, state):
                    self._dispatch(watcher, event)
        if out.leader_changed:
            leader = user_id(replica.lead) if replica.lead is not None else None
            self._leader = leader
            self._dispatcher.submit_signal(self.leader_changed, self, leader=leader)
        if out.state is not None:
            self._set_state(out.state)

    def _on_removed(self, reason: str) -> None:
        # Runs on the loop thread. The replica reports LOST itself; a peer of an elastic cluster then joins again as
        # a new member, on a fresh disk (its old one holds nothing the cluster lacks), from a thread of its own.
        if self.seeds is None or self._stopped or self._leaving:
            return
        log.warning("peer %s: %s", self.id, reason)
        threading.Thread(target=self._rejoin, name=f"embedzk-{self.id}-rejoin", daemon=True).start()

    def _rejoin(self) -> None:
        with self._lock:
            if self._stopped:
                return
            loop = self._loop
            if loop is not None and not loop.stop():
                log.error("peer %s: its loop thread did not stop in time; cannot join again", self.id)
                return
            self._loop = self._transport = self._storage = self._replica = None
            old_tree = self._tree_seen
            if self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
            elif self._storage_given is not None:
                self._storage_given = None  # a fresh memory disk
            log.warning("peer %s: joining the cluster again as a new member, on a fresh disk", self.id)
            try:
                self._open()
            except Exception as exc:
                log.error("peer %s: could not join again: %r", self.id, exc)
                self._on_crash(exc)
                return
            self._fire_for_replaced_tree(old_tree)

    def _on_crash(self, exc: BaseException) -> None:
        # The loop thread died of a bug: this peer can neither read consistently nor write any more. Its session
        # expires on the others; here every call raises PeerStoppedError, and listeners hear LOST.
        self._crashed = exc
        self._connected.set()
        if self._state is not KeeperState.LOST:
            self._set_state(KeeperState.LOST)

    def _set_state(self, state: KeeperState) -> None:
        self._state = state
        if state is KeeperState.CONNECTED:
            self._connected.set()
        self._dispatcher.submit_signal(self.state_changed, self, state=state)
        for listener in list(self._listeners):
            self._dispatcher.submit(listener, state)

    def _dispatch(self, watcher: Any, event: WatchedEvent) -> None:
        if isinstance(watcher, DirectWatcher):
            watcher.deliver(event)
        elif isinstance(watcher, _SignalTarget):
            self._dispatcher.submit_signal(watcher.signal, self, event=event)
        else:
            self._dispatcher.submit(watcher, event)

    def _fire_for_replaced_tree(self, old: Any) -> None:
        # A snapshot from the leader replaced the tree wholesale: the change-by-change events in between are gone.
        # Compare every watched path in the tree we had with the new one and fire what a watcher would have seen
        # at least once (for a recursive watch, of its own path only: its subtree cannot be compared cheaply).
        replica = self._replica
        assert replica is not None
        new = replica.tree
        paths: set[str] = set()
        for kind in WatchKind:
            paths.update(self._registry.paths(kind))
        events = []
        for path in sorted(paths):
            before = old.exists(path) if old is not None else None
            after = new.exists(path)
            if before is None and after is None:
                continue
            if before is None:
                events.append(TreeEvent(EventType.CREATED, path))
            elif after is None:
                events.append(TreeEvent(EventType.DELETED, path))
            elif before.czxid != after.czxid:  # deleted and created again meanwhile
                events.append(TreeEvent(EventType.DELETED, path))
                events.append(TreeEvent(EventType.CREATED, path))
            else:
                if before.mzxid != after.mzxid:
                    events.append(TreeEvent(EventType.CHANGED, path))
                if before.pzxid != after.pzxid or before.cversion != after.cversion:
                    events.append(TreeEvent(EventType.CHILD, path))
        for event in events:
            for watcher, watched in self._registry.trigger((event,), replica.applied, replica.state):
                self._dispatch(watcher, watched)

    # ----------------------------------------------------------------------------------------------------------
    # plumbing for requests

    def _running_loop(self) -> Loop:
        loop = self._loop
        if loop is None or not self._started or self._stopped or self._crashed is not None:
            raise self._not_running()
        return loop

    def _running_replica(self) -> Replica:
        replica = self._replica
        if replica is None or not self._started or self._stopped or self._crashed is not None:
            raise self._not_running()
        return replica

    def _not_running(self) -> PeerStoppedError:
        if self._crashed is not None:
            return PeerStoppedError(f"peer {self.id} failed ({self._crashed!r}); stop it and create a new Peer")
        if self._stopped:
            return PeerStoppedError(f"peer {self.id} is stopped; create a new Peer to rejoin")
        return PeerStoppedError(f"peer {self.id} is not started; call start() first")

    def _write(
        self, op: Op, transform: Callable[[Any], Any] | None = None, errors_as_values: bool = False
    ) -> Future[Any]:
        return self._running_loop().submit(op, self.request_timeout, transform, errors_as_values, ids=self._ids)

    def _on_loop(self, fn: Callable[[], Any]) -> Future[Any]:
        return self._running_loop().call(fn)

    def _new_future(self) -> Future[Any]:
        """A future for the application: its done-callbacks run on the dispatch thread, never on the loop's."""
        return PeerFuture(self._dispatcher.submit)

    def _refuse_on_loop_thread(self) -> None:
        loop = self._loop
        if loop is not None and threading.current_thread() is loop.thread:
            raise LoopThreadError(
                f"peer {self.id}: a blocking call on the peer's own loop thread would wait for itself forever; "
                f"use the *_async calls there"
            )

    def _wait(self, future: Future[Any]) -> Any:
        self._refuse_on_loop_thread()
        try:
            return future.result(self.request_timeout + 5.0)
        except TimeoutError:
            raise OperationTimeoutError(f"no answer within {self.request_timeout}s") from None

    # ----------------------------------------------------------------------------------------------------------
    # znode operations

    @_blocking
    def create(
        self,
        path: str,
        value: bytes = b"",
        acl: Any = None,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
        container: bool = False,
        ttl: float | None = None,
        include_data: bool = False,
    ) -> Any:
        """Create a znode; return its path (with the ``%010d`` suffix if ``sequence``).

        ``ttl`` is in seconds (a TTL node goes once unmodified that long and childless). With ``include_data``
        returns ``(path, Stat)`` as kazoo does. ``acl``: the node's ACL, a list of :class:`embedzk.security.ACL`
        (or kazoo's); None gives everyone everything (OPEN_ACL_UNSAFE), as kazoo's default.
        """
        return self._wait(self.create_async(path, value, acl, ephemeral, sequence, makepath, container, ttl, include_data))

    def create_async(
        self,
        path: str,
        value: bytes = b"",
        acl: Any = None,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
        container: bool = False,
        ttl: float | None = None,
        include_data: bool = False,
    ) -> Future[Any]:
        """:meth:`create`, returning a Future."""
        op = _with_acl(_create_op(path, value, ephemeral, sequence, makepath, container, ttl), acl, path)
        if include_data:
            return self._write(op, lambda created: (created, self._tree_stat(created)))
        return self._write(op)

    def get(self, path: str, watch: WatchFn | None = None) -> tuple[bytes, Stat]:
        """``(data, Stat)`` of ``path`` from the local replica; NoNodeError if absent. ``watch`` fires once on
        its next change or deletion."""
        if watch is None:  # the tree validates the path whenever it finds no node there
            tree = self._running_replica().tree
            if tree.acl_count():
                tree.check_read(path, self._ids)
            return tree.get(path)
        self._refuse_on_loop_thread()
        return self._wait(self.get_async(path, watch))

    def get_async(self, path: str, watch: WatchFn | None = None) -> Future[tuple[bytes, Stat]]:
        """:meth:`get`, returning a Future."""
        validate_path(path)
        _check_watch(watch)

        def read() -> tuple[bytes, Stat]:
            tree = self._running_replica().tree
            if tree.acl_count():
                tree.check_read(path, self._ids)
            result = tree.get(path)  # raises NoNodeError: no watch is left, as kazoo
            if watch is not None:
                self._registry.add(WatchKind.DATA, path, watch)
            return result

        return self._on_loop(read)

    def exists(self, path: str, watch: WatchFn | None = None) -> Stat | None:
        """The Stat of ``path``, or None. ``watch`` fires once when it is created, changed or deleted."""
        if watch is None:
            return self._running_replica().tree.exists(path)
        self._refuse_on_loop_thread()
        return self._wait(self.exists_async(path, watch))

    def exists_async(self, path: str, watch: WatchFn | None = None) -> Future[Stat | None]:
        """:meth:`exists`, returning a Future."""
        validate_path(path)
        _check_watch(watch)

        def read() -> Stat | None:
            stat = self._running_replica().tree.exists(path)
            if watch is not None:
                self._registry.add(WatchKind.DATA if stat else WatchKind.EXIST, path, watch)
            return stat

        return self._on_loop(read)

    def get_children(self, path: str, watch: WatchFn | None = None, include_data: bool = False) -> Any:
        """The names of ``path``'s children (``(names, Stat)`` with ``include_data``). ``watch`` fires once when
        a child is added or removed, or the node is deleted."""
        if watch is None:
            return self._children(path, include_data)
        self._refuse_on_loop_thread()
        return self._wait(self.get_children_async(path, watch, include_data))

    def get_children_async(self, path: str, watch: WatchFn | None = None, include_data: bool = False) -> Future[Any]:
        """:meth:`get_children`, returning a Future."""
        validate_path(path)
        _check_watch(watch)

        def read() -> Any:
            result = self._children(path, include_data)
            if watch is not None:
                self._registry.add(WatchKind.CHILD, path, watch)
            return result

        return self._on_loop(read)

    def _children(self, path: str, include_data: bool) -> Any:
        tree = self._running_replica().tree
        if tree.acl_count():
            tree.check_read(path, self._ids)
        names = tree.get_children(path)
        if include_data:
            stat = tree.exists(path)
            if stat is None:
                raise NoNodeError(path)
            return names, stat
        return names

    def _tree_stat(self, path: str) -> Stat:
        stat = self._running_replica().tree.exists(path)
        if stat is None:
            raise NoNodeError(path)
        return stat

    @_blocking
    def set(self, path: str, value: bytes, version: int = -1) -> Stat:
        """Replace the data of ``path`` if its version is ``version`` (-1: any); return the new Stat."""
        return self._wait(self.set_async(path, value, version))

    def set_async(self, path: str, value: bytes, version: int = -1) -> Future[Stat]:
        """:meth:`set`, returning a Future."""
        _check_value(value)
        _check_version(version)
        return self._write(SetDataOp(path, bytes(value), version))

    @_blocking
    def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Delete ``path`` if its version is ``version``. ``recursive`` deletes the whole subtree, atomically."""
        if not recursive:
            self._wait(self.delete_async(path, version))
            return
        for _attempt in range(10):
            try:
                self._wait(self.delete_async(path, version, recursive=True))
                return
            except (NotEmptyError, NoNodeError) as exc:
                # A child came or went between reading the subtree and deleting it: read it again.
                if isinstance(exc, NoNodeError) and self.exists(path) is None:
                    raise
        raise NotEmptyError(f"{path}: children kept appearing while deleting it recursively")

    def delete_async(self, path: str, version: int = -1, recursive: bool = False) -> Future[None]:
        """:meth:`delete`, returning a Future (recursive: one attempt, as one multi)."""
        _check_version(version)
        if not recursive:
            return self._write(DeleteOp(path, version), _none)
        validate_path(path)
        tree = self._running_replica().tree
        ops: list[SubOp] = []
        self._subtree_deletes(tree, path, ops)
        ops.append(DeleteOp(path, version))
        return self._write(MultiOp(tuple(ops)), _none)

    def _subtree_deletes(self, tree: Any, path: str, ops: list[SubOp]) -> None:
        try:
            names = tree.get_children(path)
        except NoNodeError:
            return
        for name in names:
            child = path.rstrip("/") + "/" + name
            self._subtree_deletes(tree, child, ops)
            ops.append(DeleteOp(child, -1))

    @_blocking
    def ensure_path(self, path: str) -> None:
        """Create ``path`` and its missing ancestors as empty persistent nodes; nothing if it exists."""
        validate_path(path)
        if self.exists(path) is not None:
            return
        try:
            self.create(path, b"", makepath=True)
        except NodeExistsError:
            pass

    def ensure_path_async(self, path: str) -> Future[None]:
        """:meth:`ensure_path`, returning a Future."""
        validate_path(path)
        outer: Future[None] = self._new_future()
        inner = self.create_async(path, b"", makepath=True)

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            if exc is None or isinstance(exc, NodeExistsError):
                outer.set_result(None)
            else:
                outer.set_exception(exc)

        chain(inner, done)
        return outer

    def add_auth(self, scheme: str, credential: str) -> None:
        """Add an identity to this peer's requests, as kazoo's ``add_auth``: ``("digest", "user:password")``.
        AuthFailedError for another scheme or a credential that is not user:password."""
        with self._lock:
            self._ids = add_identity(self._ids, scheme, credential, self._super_digest)

    def add_auth_async(self, scheme: str, credential: str) -> Future[None]:
        """:meth:`add_auth`, returning a (done) Future."""
        future: Future[None] = Future()
        try:
            self.add_auth(scheme, credential)
            future.set_result(None)
        except EmbedZKError as exc:
            future.set_exception(exc)
        return future

    def get_acls(self, path: str) -> tuple[list[ACL], Stat]:
        """``(acls, Stat)`` of ``path``: its ACL as a list of :class:`embedzk.security.ACL`, as kazoo's. Needs READ
        or ADMIN on the node (NoAuthError otherwise); NoNodeError if absent."""
        return self._wait(self.get_acls_async(path))

    def get_acls_async(self, path: str) -> Future[tuple[list[ACL], Stat]]:
        """:meth:`get_acls`, returning a Future."""
        validate_path(path)
        ids = self._ids

        def read() -> tuple[list[ACL], Stat]:
            entries, stat = self._running_replica().tree.get_acl(path)
            if not (allowed(entries, Perm.READ, ids) or allowed(entries, Perm.ADMIN, ids)):
                raise NoAuthError(f"{path}: reading its ACL needs READ or ADMIN")
            return acls_of(entries), stat

        return self._on_loop(read)

    @_blocking
    def set_acls(self, path: str, acls: Any, version: int = -1) -> Stat:
        """Replace the ACL of ``path`` if its ACL version (``Stat.aversion``) is ``version`` (-1: any); return the
        new Stat. Needs ADMIN on the node."""
        return self._wait(self.set_acls_async(path, acls, version))

    def set_acls_async(self, path: str, acls: Any, version: int = -1) -> Future[Stat]:
        """:meth:`set_acls`, returning a Future."""
        _check_version(version)
        return self._write(SetACLOp(path, acl_entries(acls, path), version))

    def transaction(self) -> Transaction:
        """Start a transaction: ``create``, ``delete``, ``set_data``, ``check``, then ``commit()``."""
        return Transaction(self)

    @_blocking
    def sync(self, path: str = "/") -> None:
        """A linearizable read barrier: afterwards local reads reflect every write committed before the call."""
        self._wait(self.sync_async(path))

    def sync_async(self, path: str = "/") -> Future[None]:
        """:meth:`sync`, returning a Future."""
        validate_path(path)
        return self._running_loop().sync(self.request_timeout)

    # ----------------------------------------------------------------------------------------------------------
    # persistent watches

    @_blocking
    def watch(self, path: str, recursive: bool = False) -> blinker.Signal:
        """A persistent watch on ``path`` (and, if ``recursive``, its whole subtree), as a blinker signal.

        Receivers get ``(sender, event=WatchedEvent)`` for every change, in zxid order, on the dispatch thread.
        Recursive watches see CREATED, DELETED and CHANGED, never CHILD (ZooKeeper's rule). Connect receivers with
        ``weak=False`` (or keep a reference to them): blinker holds them weakly by default.
        """
        return self._wait(self._watch_async(path, recursive))

    def _watch_async(
        self, path: str, recursive: bool = False, connect: Callable[[blinker.Signal], Any] | None = None
    ) -> Future[blinker.Signal]:
        # ``connect(signal)`` is called before the watch is queued for the loop: a receiver it connects hears every
        # event of a change asked for after this call returns, whichever thread asks for it.
        validate_path(path)
        key = (path, bool(recursive))
        with self._lock:
            self._running_loop()  # refused at once on a peer that is not running, before anything is connected
            target = self._signals.get(key)
            if target is not None:  # registered already (or queued for the loop ahead of anything asked later)
                if connect is not None:
                    connect(target.signal)
                done: Future[blinker.Signal] = self._new_future()
                done.set_result(target.signal)
                return done
            new = _SignalTarget(blinker.Signal(f"watch {path}{' recursive' if recursive else ''}"), bool(recursive))
            if connect is not None:
                connect(new.signal)
            kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
            registered = self._on_loop(lambda: self._registry.add(kind, path, new))
            self._signals[key] = new
        return _then(registered, lambda _v: new.signal, self._new_future())

    @_blocking
    def unwatch(self, path: str) -> None:
        """End the persistent watches on ``path`` (recursive or not)."""
        with self._lock:
            for recursive in (False, True):
                target = self._signals.pop((path, recursive), None)
                if target is not None:
                    kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
                    self._wait(self._on_loop(functools.partial(self._registry.remove, kind, path, target)))

    def DataWatch(self, path: str, func: Callable[..., Any] | None = None) -> Any:  # noqa: N802 - kazoo's name
        """kazoo's DataWatch: ``func(data, stat, event)`` now and after every change of ``path``.

        ``data`` and ``stat`` are None while the node does not exist. Returning False from ``func`` ends the
        watch. Usable as a decorator: ``@peer.DataWatch("/config")``.
        """
        from embedzk.watchers import DataWatch

        return DataWatch(self, path, func)

    def ChildrenWatch(self, path: str, func: Callable[..., Any] | None = None, send_event: bool = False) -> Any:  # noqa: N802
        """kazoo's ChildrenWatch: ``func(children)`` now and whenever ``path``'s children change."""
        from embedzk.watchers import ChildrenWatch

        return ChildrenWatch(self, path, func, send_event=send_event)

    @property
    def aio(self) -> AsyncPeer:
        """The asyncio face: the same calls as coroutines, watches as async iterators, and the recipes for
        asyncio code (:class:`embedzk.aio.AsyncPeer`; one per peer, so ``peer.aio is peer.aio``)."""
        aio = self._aio
        if aio is None:
            from embedzk.aio import AsyncPeer

            with self._lock:
                if self._aio is None:
                    self._aio = AsyncPeer(self)
                aio = self._aio
        return aio

    # ----------------------------------------------------------------------------------------------------------
    # cluster state

    @property
    def leader(self) -> str | None:
        """The id of the leader this peer knows, or None (always None once stopped)."""
        replica = self._replica
        lead = replica.lead if replica is not None and not self._stopped else None
        return user_id(lead) if lead is not None else None

    @property
    def is_leader(self) -> bool:
        """True while this peer leads the cluster."""
        replica = self._replica
        return bool(replica is not None and not self._stopped and replica.is_leader)

    @property
    def session_id(self) -> int | None:
        """This peer's session id, or None while it has none."""
        replica = self._replica
        return replica.session_id if replica is not None and not self._stopped else None

    @property
    def state(self) -> KeeperState:
        """CONNECTED, SUSPENDED or LOST (kazoo's KazooState)."""
        return self._state

    @property
    def connected(self) -> bool:
        """True while the state is CONNECTED (kazoo's name)."""
        return self._state is KeeperState.CONNECTED

    def add_listener(self, listener: Callable[[KeeperState], Any]) -> None:
        """Call ``listener(state)`` on every state change (on the dispatch thread), as kazoo's add_listener."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[KeeperState], Any]) -> None:
        """Stop calling ``listener``."""
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def stats(self) -> dict[str, Any]:
        """What ZooKeeper's ``mntr`` reports: role, term, leader, indexes, counts, latencies."""
        return self._wait(self.stats_async())

    def stats_async(self) -> Future[dict[str, Any]]:
        """:meth:`stats`, returning a Future."""
        replica = self._running_replica()
        loop = self._running_loop()

        def gather() -> dict[str, Any]:
            stats = replica.stats()
            conf = replica.conf_state()
            stats["id"] = self.id
            if stats.get("leader") is not None:
                stats["leader"] = user_id(stats["leader"])
            stats["observer"] = self.observer or self._member_key not in conf.voters
            stats["voters"] = [user_id(key) for key in conf.voters]
            stats["observers"] = [user_id(key) for key in conf.learners]
            stats["watch_count"] = self._registry.count()
            stats["persistent_watches"] = len(self._signals)
            stats["outstanding_requests"] = max(stats.get("outstanding_requests", 0), loop.outstanding)
            stats.update(_latency_figures(loop.write_latencies))
            stats["callbacks_pending"] = self._dispatcher.pending()
            stats["callbacks_failed"] = self._dispatcher.failed
            stats["callbacks_slow"] = self._dispatcher.slow
            # Frames turned away by the transport (not ours: wrong magic, cluster or version, oversized) and by the
            # codec (ours, but not a valid message).
            stats["frames_rejected"] = loop.decode_errors
            if self._transport is not None:
                stats["transport"] = self._transport.stats()
                stats["frames_rejected"] += stats["transport"].get("rejected", 0)
            server = self._client_server
            if server is not None:
                stats["clients"] = server.figures()
            return stats

        return self._on_loop(gather)

    # ----------------------------------------------------------------------------------------------------------
    # membership

    def members(self) -> dict[str, Member]:
        """Every member of the cluster by id: address, voter, leader, and what the leader sees of it (reachable,
        lag). Kept up to date by the leader's autopilot in an elastic cluster (``seeds``)."""
        return self._wait(self._on_loop(self._members_now))

    def _members_now(self) -> dict[str, Member]:
        infos = self._running_replica().members()
        return {
            info.id: Member(info.id, info.address, info.voter, info.leader, info.reachable, info.lag, info.key)
            for info in sorted(infos, key=lambda i: (i.id, not i.voter))
        }

    def add_member(self, id: str, address: str, voter: bool = False) -> None:  # noqa: A002 - kazoo-style name
        """Add the peer ``id`` that listens at ``address`` (running, and not a member of any cluster: started
        with ``seeds=[]`` for instance); returns once it is a member (a voter, with ``voter=True``, once it has
        caught up). In an elastic cluster the autopilot decides who votes: ``voter=True`` is refused there.

        Raises BadArgumentsError for an id or address that cannot be one, or a member that exists;
        MembershipError if the change could not be made in time (the peer is not reachable at ``address``, say).
        """
        _check_member_id(id, self.id, "add")
        try:
            check_endpoint(address, f"the address of {id!r}")
        except ConfigurationError as exc:
            raise BadArgumentsError(str(exc)) from None
        if voter and self.seeds is not None:
            raise BadArgumentsError(
                f"the cluster keeps voters={self.voters} by itself: add {id!r} without voter=True, and the "
                f"autopilot promotes it once it has caught up (if the cluster needs a voter)"
            )
        self._wait_member_change("add", id, address, voter)

    def remove_member(self, id: str) -> None:  # noqa: A002 - kazoo-style name
        """Remove the member ``id`` from the cluster; returns once the removal is committed. Its session and
        ephemeral nodes go as the session expires. In an elastic cluster the autopilot then promotes another
        member if the cluster is short of voters.

        Raises BadArgumentsError for this peer's own id (use ``stop(leave=True)``) or an id that is no member;
        MembershipError if the change could not be made in time.
        """
        _check_member_id(id, self.id, "remove")
        self._wait_member_change("remove", id, "", False)

    def _wait_member_change(self, kind: str, peer_id: str, address: str, voter: bool) -> None:
        self._refuse_on_loop_thread()
        timeout = self.request_timeout
        future = self._running_loop().member_change(kind, peer_id, address, voter, timeout)
        try:
            future.result(timeout + 5.0)
        except TimeoutError:
            raise MembershipError(f"{kind} {peer_id!r}: no answer within {timeout}s") from None

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self._state.value} leader={self.leader}>"


class Transaction:
    """A ZooKeeper multi: the operations are applied all or nothing, in order, by :meth:`commit`."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._ops: list[SubOp] = []
        self.committed = False

    def create(
        self,
        path: str,
        value: bytes = b"",
        acl: Any = None,
        ephemeral: bool = False,
        sequence: bool = False,
        container: bool = False,
        ttl: float | None = None,
    ) -> None:
        """Add a create (``acl`` as :meth:`Peer.create`'s)."""
        self._ops.append(_with_acl(_create_op(path, value, ephemeral, sequence, False, container, ttl), acl, path))

    def delete(self, path: str, version: int = -1) -> None:
        """Add a delete."""
        _check_version(version)
        self._ops.append(DeleteOp(path, version))

    def set_data(self, path: str, value: bytes, version: int = -1) -> None:
        """Add a set."""
        _check_value(value)
        _check_version(version)
        self._ops.append(SetDataOp(path, bytes(value), version))

    def check(self, path: str, version: int) -> None:
        """Add a version check."""
        _check_version(version)
        self._ops.append(CheckOp(path, version))

    @_blocking_transaction
    def commit(self) -> list[Any]:
        """Apply everything; return one result per operation (kazoo's shapes: path, True, Stat, True). If one
        failed, nothing changed and the list holds error instances (RolledBackError before the failure, the
        failure itself, RuntimeInconsistencyError after it)."""
        return self._peer._wait(self.commit_async())

    def commit_async(self) -> Future[list[Any]]:
        """:meth:`commit`, returning a Future."""
        if self.committed:
            raise ValueError("transaction already committed")
        self.committed = True
        return self._peer._write(MultiOp(tuple(self._ops)), None, errors_as_values=True)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None and not self.committed:
            self.commit()


def _latency_figures(samples: Any) -> dict[str, float]:
    """min/avg/p50/p99/max in milliseconds of the recent requests (0.0 before the first), as ZooKeeper's mntr."""
    ordered = sorted(samples)
    if not ordered:
        return dict.fromkeys(("latency_min_ms", "latency_avg_ms", "latency_p50_ms", "latency_p99_ms",
                              "latency_max_ms"), 0.0)
    n = len(ordered)
    return {
        "latency_min_ms": ordered[0] * 1000,
        "latency_avg_ms": sum(ordered) / n * 1000,
        "latency_p50_ms": ordered[n // 2] * 1000,
        "latency_p99_ms": ordered[min(n - 1, int(n * 0.99))] * 1000,
        "latency_max_ms": ordered[-1] * 1000,
    }


def _then(future: Future[Any], fn: Callable[[Any], Any], outer: Future[Any]) -> Future[Any]:
    """``outer``, completed with ``fn(result of future)``."""

    def done(f: Future[Any]) -> None:
        exc = f.exception()
        if exc is not None:
            outer.set_exception(exc)
            return
        try:
            outer.set_result(fn(f.result()))
        except BaseException as err:
            outer.set_exception(err)

    chain(future, done)
    return outer


def _none(_value: Any) -> None:
    return None


def _create_op(
    path: str, value: bytes, ephemeral: bool, sequence: bool, makepath: bool, container: bool, ttl: float | None
) -> CreateOp:
    _check_value(value)
    ttl_ms: int | None = None
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
            raise BadArgumentsError(f"ttl must be a positive number of seconds, got {ttl!r}")
        ttl_ms = max(1, int(ttl * 1000))
    return CreateOp(path, bytes(value), ephemeral, sequence, container, ttl_ms, makepath)


def _with_acl(op: CreateOp, acl: Any, path: str) -> CreateOp | WithACL:
    """``op`` carrying ``acl``, unless that is None or everything to everyone (what a node gets by default, which
    needs no newer protocol version to replicate)."""
    if acl is None:
        return op
    entries = acl_entries(acl, path)
    if entries == OPEN_ACL:
        return op
    return WithACL(op, entries)


def _check_value(value: Any) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise BadArgumentsError(f"value must be bytes, got {type(value).__name__}")


def _check_version(version: Any) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < -1:
        raise BadArgumentsError(f"version must be an int >= -1, got {version!r}")


def _check_watch(watch: Any) -> None:
    if watch is not None and not callable(watch):
        raise BadArgumentsError(f"watch must be callable, got {type(watch).__name__}")


def _check_member_id(peer_id: Any, own: str, kind: str) -> None:
    if not isinstance(peer_id, str) or not peer_id:
        raise BadArgumentsError(f"a member id must be a non-empty string, got {peer_id!r}")
    if peer_id == own:
        what = "stop(leave=True) to leave the cluster" if kind == "remove" else "another id"
        raise BadArgumentsError(f"{peer_id!r} is this peer itself: use {what}")
