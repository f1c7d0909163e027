"""The replica: what a peer is above consensus, without any I/O.

A :class:`Replica` owns a consensus node (:class:`~embedzk.consensus.RawNode`), the tree it replicates
(:class:`~embedzk.tree.DataTree`) and the requests its application has in flight. It turns a request into a
proposal (on the leader) or a :class:`Forward` to the leader, answers it once its entry is applied here (so a peer
always reads its own writes), resolves ``sync()`` through read-index, keeps its own session open, and, while it
leads, expires sessions and reaps containers and TTL nodes.

The driver (the peer's loop thread, or the simulator) owns every clock, socket and disk. Its contract:

1. Feed inputs: :meth:`tick` at a fixed interval with the monotonic and wall-clock time; :meth:`receive` for every
   message that arrives; :meth:`submit`, :meth:`sync` for the application's requests.
2. While :meth:`has_ready`: ``rd = replica.ready()``; send ``rd.early_messages`` (a leader's appends and
   heartbeats, which need not wait for its disk); persist ``rd.raft`` as the consensus contract says (the
   snapshot with ``storage.install_snapshot``, then ``storage.append(rd.raft.entries, rd.raft.hard_state)``);
   then ``out = replica.advance(rd)``, send ``out.messages``, store ``out.snapshot`` if any
   (``storage.save_snapshot`` then ``storage.compact(out.compact_to)``), hand ``out.completions`` to whoever
   waits and ``out.applied`` to the watch dispatcher. ``out.snapshot`` may be one part of a snapshot written
   across several iterations (a :class:`~embedzk.persist.base.SnapshotPart`); storage takes it all the same.
3. While :attr:`Replica.busy`, call :meth:`Replica.work` between inputs without waiting for any: a snapshot from
   the leader is rebuilt into a tree a few chunks per call (a tree of a million znodes takes seconds), so that
   ticks, messages and requests go on meanwhile. The Ready that brought the snapshot waits for it (its committed
   entries and messages come out of the :meth:`advance` that puts the tree in place); :meth:`tick` does a slice
   too, so a driver that never looks at ``busy`` still gets there, one tick at a time.

Nothing is sent before what it depends on is on disk: the driver sends what :meth:`advance` returns, and calls it
only after persisting; the early messages depend on nothing this Ready persists. :func:`pack` turns a list of
messages into frames, one per recipient (a :class:`Bundle` when there are several), and :meth:`receive` takes
bundles as they come.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from embedzk.codec import decode, encode
from embedzk.consensus import Config as RaftConfig
from embedzk.consensus import Message, ProposalDroppedError, RawNode, Ready, StateRole, decode_conf_change
from embedzk.consensus.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    SnapshotMeta,
)
from embedzk.errors import (
    BadArgumentsError,
    ConfigurationError,
    ConnectionLossError,
    DecodeError,
    EmbedZKError,
    MembershipError,
    OperationTimeoutError,
    SessionExpiredError,
    UnimplementedError,
)
from embedzk.membership.identity import MemberRecord, user_id
from embedzk.membership.versions import ACLS, PROTOCOL_MIN
from embedzk.model import KeeperState
from embedzk.persist.base import SnapshotPart, Storage
from embedzk.replica import snapshots as snapshot_jobs
from embedzk.replica.membership import MemberInfo, Membership, MembershipConfig, Phase
from embedzk.replica.messages import (
    Bundle,
    ClusterCommand,
    Command,
    Forward,
    ForwardRejected,
    SessionPing,
    SetClusterId,
    SetClusterVersion,
    SetMemberAddress,
    SnapshotHeader,
    SnapshotHeaderV1,
)
from embedzk.replica.connection import Connection, Event
from embedzk.replica.requests import Completion, Pending, RequestTable, describe
from embedzk.replica.sessions import OwnSession, SessionTracker
from embedzk.settings import check_election
from embedzk.tree import ApplyResult, DataTree, TreeEvent
from embedzk.tree.datatree import TreeRestorer
from embedzk.tree.txn import (
    Authorized,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DeleteContainerOp,
    MultiOp,
    Op,
    SetACLOp,
    Txn,
    WithACL,
)

log = logging.getLogger(__name__)

#: The replica snapshot format this build writes; it reads this one and every older one.
SNAPSHOT_FORMAT = 2
#: Removed member keys remembered (and kept in snapshots): far more than a fleet removes within the time a request
#: of a removed member could still be in flight.
REMOVED_KEYS = 4096
#: The highest session id ZooKeeper's encoding leaves free of the container/TTL markers (EphemeralType).
MAX_SESSION_ID = 2**56
#: Chunks of a snapshot from the leader (about 128 KiB each, some thousand znodes) rebuilt into the tree per
#: :meth:`Replica.work` call: a few milliseconds, so that the loop goes on ticking and answering in between.
RESTORE_CHUNKS_PER_STEP = 4


@dataclass(slots=True)
class ReplicaConfig:
    """How a replica behaves. Times are seconds; ``tick_interval`` is how often the driver calls :meth:`Replica.tick`."""

    id: str
    tick_interval: float = 0.05
    election_tick: int = 10
    heartbeat_tick: int = 1
    session_timeout: float = 10.0
    #: Take a snapshot (and compact the log behind it) once this many entries were applied since the last one...
    snapshot_entries: int = 10_000
    #: ... or once the entries applied since hold this many bytes, or as many as the last snapshot had, whichever is
    #: more: a restart then replays at most about a snapshot's worth of log (a bulk load of large entries never
    #: reaches ``snapshot_entries``), and taking snapshots costs at most about as much as the writes themselves.
    snapshot_bytes: int = 4 << 20
    #: Entries kept behind a snapshot, so that a follower slightly behind catches up from the log.
    keep_entries: int = 1_000
    max_data_bytes: int = 1 << 20
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    #: The most bytes of committed entries one ready hands out to apply (None: no bound): what bounds one
    #: iteration of the driver's loop while a backlog is applied, so that it ticks (and a leader sends heartbeats)
    #: in between.
    max_committed_bytes_per_ready: int | None = 64 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    #: How often the leader looks for containers and TTL nodes to reap.
    reap_interval: float = 1.0
    #: Seconds a request may wait while no leader is known before it fails with ConnectionLossError (None: until
    #: its own timeout), as a kazoo client's requests fail while it is disconnected.
    no_leader_timeout: float | None = None
    #: Where members listen, as far as known at start (later: from the log and snapshots).
    addresses: dict[str, str] = field(default_factory=dict)
    #: How this replica founds or joins a cluster, and how the leader keeps the voters.
    membership: MembershipConfig = field(default_factory=MembershipConfig)

    def validate(self) -> None:
        """Raise ConfigurationError if the settings contradict each other (the rules of embedzk.settings)."""
        check_election(self.tick_interval, self.election_tick, self.heartbeat_tick, self.session_timeout)
        if self.snapshot_entries < 1 or self.snapshot_bytes < 1 or self.keep_entries < 0:
            raise ConfigurationError("snapshot_entries and snapshot_bytes must be >= 1 and keep_entries >= 0")


@dataclass(slots=True)
class ReplicaReady:
    """What the driver must persist before calling :meth:`Replica.advance` (``raft`` is None if nothing).

    ``record``: the disk's member record, to save (``storage.save_member_record``) first, when set."""

    raft: Ready | None
    record: MemberRecord | None = None

    @property
    def early_messages(self) -> list[tuple[str, Any]]:
        """(recipient id, message) pairs the driver may send before persisting: see Ready.early_messages."""
        raft = self.raft
        return [] if raft is None or not raft.early_messages else [(m.to, m) for m in raft.early_messages]


@dataclass(slots=True)
class ReplicaOutput:
    """What :meth:`Replica.advance` hands back to the driver."""

    #: (recipient id, message) pairs to send.
    messages: list[tuple[str, Any]] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    #: (zxid, events) of every applied change, in order: for the watch registry.
    applied: list[tuple[int, tuple[TreeEvent, ...]]] = field(default_factory=list)
    #: The tree was replaced by a snapshot from the leader: watchers cannot be told change by change.
    tree_replaced: bool = False
    #: The index of that snapshot (applied before the changes in ``applied``), when ``tree_replaced``.
    installed_index: int | None = None
    #: A snapshot of the applied state to store, and the index to compact the log to afterwards.
    snapshot: tuple[SnapshotMeta, list[bytes] | SnapshotPart] | None = None
    compact_to: int = 0
    state: KeeperState | None = None
    leader_changed: bool = False
    #: The membership or the members' addresses changed (the driver updates its transport from routes()).
    members_changed: bool = False
    #: Why this replica cannot go on (a refused join, a founder list that differs from the others'), once.
    refusal: str | None = None
    #: Why this replica was removed from the cluster, once.
    removed: str | None = None
    #: The cluster's protocol version changed (the driver writes its frames in it from now on).
    version_changed: bool = False


class _ByteCount:
    """The bytes of the chunks read through :meth:`through` so far."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0

    def through(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks``, counted as they are read."""
        for chunk in chunks:
            self.total += len(chunk)
            yield chunk


@dataclass(slots=True)
class _SnapshotInstall:
    """A snapshot from the leader being installed: its tree rebuilt a few chunks at a time, while the Ready that
    brought it waits (its committed entries, messages and the consensus node's advance) until the tree is whole."""

    meta: SnapshotMeta
    header: SnapshotHeader | SnapshotHeaderV1 | None
    restorer: TreeRestorer | None  # None: the bootstrap snapshot, an empty tree
    raft: Ready
    #: The snapshot's bytes read so far: its size once the tree is whole.
    size: _ByteCount

    @property
    def done(self) -> bool:
        return self.restorer is None or self.restorer.done


class Replica:
    """One member of the cluster, above consensus: requests, sessions, reads, snapshots. No I/O."""

    def __init__(self, config: ReplicaConfig, storage: Storage, rng: random.Random) -> None:
        config.validate()
        self.config = config
        self.id = config.id
        self._storage = storage
        self._rng = rng
        # Request ids start again at every start; entries of an earlier incarnation (replayed from disk or caught
        # up from the leader) carry its number, so they are never taken for answers to this one's requests.
        self.incarnation = rng.getrandbits(62)
        self.addresses: dict[str, str] = dict(config.addresses)
        #: The cluster's id and protocol version, as the applied log says.
        self.cluster_uuid = ""
        self.cluster_version = PROTOCOL_MIN
        # Requests that need ACLs, waiting for the cluster to run a version that replicates them:
        # (request id, op, timeout, session id, ids, deadline).
        self._awaiting_acls: list[tuple[int, Op, float, int | None, tuple[tuple[str, str], ...], float]] = []
        #: Keys of members removed from the cluster (the newest REMOVED_KEYS of them), as the applied log says: a
        #: removed member never comes back under its key (a stale request of its own must not re-admit it).
        self.removed_keys: dict[str, None] = {}
        self._last_time_ms = 0
        meta = storage.snapshot_meta()
        self.tree = DataTree(max_data_bytes=config.max_data_bytes)
        if meta.index > 0:
            header, restorer, restored_size = self._open_snapshot(meta, storage.snapshot_chunks())
            self._adopt_header(header)
            if restorer is not None:
                restorer.step(1 << 62)  # at start, before the loop runs: all at once
                self.tree = restorer.tree
        # A snapshot from the leader being installed (see work()).
        self._installing: _SnapshotInstall | None = None
        self._snapshot_index = meta.index
        # Bytes of entries applied since the last snapshot began, and the size of the last one (taken here, restored
        # at start or installed from the leader).
        self._bytes_since_snapshot = 0
        # The snapshot restored counts as the last one: a member restarted with a large tree must not take a snapshot
        # of all of it after only ``snapshot_bytes`` of entries, as if its tree were small.
        self._last_snapshot_size = restored_size.total if meta.index > 0 else 0
        # A snapshot of our own applied state being written in parts across iterations (see snapshots.py).
        self._snapshot_job: snapshot_jobs.SnapshotJob | None = None
        self._node = RawNode(
            RaftConfig(
                id=config.id,
                election_tick=config.election_tick,
                heartbeat_tick=config.heartbeat_tick,
                max_size_per_msg=config.max_size_per_msg,
                max_inflight_msgs=config.max_inflight_msgs,
                max_committed_bytes_per_ready=config.max_committed_bytes_per_ready,
                pre_vote=config.pre_vote,
                check_quorum=config.check_quorum,
                applied=meta.index,
                rng=rng,
            ),
            storage,
        )
        self.applied = meta.index
        self._conf_state = self._node.status().conf_state
        self._members_changed = False
        self._now = 0.0
        self._wall_ms = 0
        self._ticks = 0
        self._term = self._node.term
        self._lead = self._node.lead
        self._requests = RequestTable()
        self._outbox: list[tuple[str, Any]] = []
        self._tracker = SessionTracker()
        # Forwards proposed in the current term, per origin: the network may deliver a forward twice.
        self._proposed_forwards: dict[tuple[str, int], _SeenRequests] = {}
        # The commands this leader proposed in the current term, by their entry's bytes: applying one of them
        # need not decode what we encoded a moment ago. Every such entry commits or the term ends, so the map is
        # emptied at each term change and cannot grow without bound.
        self._own_commands: dict[bytes, Command] = {}
        self._reaping: dict[str, float] = {}
        self._last_reap = 0.0
        # Our own session: opened as soon as a leader is known, opened again if it expires.
        self._session = OwnSession()
        # CONNECTED, SUSPENDED or LOST, and whether we caught up since we last had a leader (_confirm_currency).
        self._connection = Connection()
        self._last_lead_contact = 0
        # When this replica last knew a leader (its clock): requests waiting for one fail after no_leader_timeout.
        self._leader_seen_at: float | None = None
        self.decode_failures = 0
        self._refusal_reported = False
        self._removal_reported = False
        self._reported_version = self.cluster_version
        record = storage.member_record() or MemberRecord(key=config.id)
        if record.key != config.id:
            raise ValueError(f"the storage belongs to member {record.key}, not {config.id}")
        self.membership = Membership(self, config.membership, record, rng)

    # ----------------------------------------------------------------------------------------------------------
    # properties

    @property
    def lead(self) -> str | None:
        """The leader this replica knows of, or None."""
        return self._node.lead

    @property
    def is_leader(self) -> bool:
        """True while this replica leads."""
        return self._node.role is StateRole.LEADER

    @property
    def term(self) -> int:
        """The current term."""
        return self._node.term

    @property
    def state(self) -> KeeperState:
        """CONNECTED, SUSPENDED or LOST, as kazoo's states."""
        return self._connection.state

    @property
    def session_id(self) -> int | None:
        """This replica's own session, while one is open."""
        return self._session.id

    @property
    def busy(self) -> bool:
        """Whether :meth:`work` has something to do: the driver then calls it without waiting for input."""
        return self._installing is not None and not self._installing.done

    @property
    def node(self) -> RawNode:
        """The consensus node (for status and tests)."""
        return self._node

    @property
    def now(self) -> float:
        """The driver's monotonic time at the last tick."""
        return self._now

    @property
    def phase(self) -> Phase:
        """Founding, joining, member or removed (see :mod:`embedzk.replica.membership`)."""
        return self.membership.phase

    def members(self) -> list[MemberInfo]:
        """Every member, as this replica knows it."""
        return self.membership.members()

    def _note_removed(self, key: str) -> None:
        self.removed_keys.pop(key, None)
        self.removed_keys[key] = None
        while len(self.removed_keys) > REMOVED_KEYS:
            del self.removed_keys[next(iter(self.removed_keys))]

    def is_member(self, key: str) -> bool:
        """Whether ``key`` is a member, or may be: in the newest configuration of the log, or in the applied one
        (a removal not committed yet is not a removal)."""
        return key in self._node.status().log_conf_state.members() or key in self._conf_state.members()

    def address_of(self, key: str) -> str:
        """Where member ``key`` listens, as far as known ("" if not known)."""
        if key == self.id and self.config.membership.address:
            return self.config.membership.address
        announced = self.membership.announced.get(key)
        if announced is not None:
            return announced[0]
        return self.addresses.get(key, "")

    def routes(self) -> dict[str, str]:
        """Member key -> address for the transport: every member and joiner this replica may send to."""
        routes = dict(self.addresses)
        for key, (address, _when) in self.membership.announced.items():
            routes[key] = address
        routes.pop(self.id, None)
        return routes

    def send(self, to: str, msg: Any) -> None:
        """Queue ``msg`` for ``to`` (a member key or an address); it leaves with the next advance()."""
        self._outbox.append((to, msg))

    def on_members_changed(self) -> None:
        """The members or their addresses changed: the driver updates its transport at the next advance()."""
        self._members_changed = True

    def stats(self) -> dict[str, Any]:
        """What ZooKeeper's ``mntr`` reports, as far as the replica knows it."""
        status = self._node.status()
        return {
            "id": self.id,
            "role": self._node.role.name.lower(),
            "term": self._node.term,
            "leader": self._node.lead,
            "commit_index": status.commit,
            "applied_index": self.applied,
            "snapshot_index": self._snapshot_index,
            "znode_count": self.tree.node_count(),
            "sessions": len(self.tree.sessions()),
            "session_id": self.session_id,
            "outstanding_requests": len(self._requests),
            "digest": self.tree.digest,
            "state": self._connection.state.value,
            **self.membership.stats(),
        }

    # ----------------------------------------------------------------------------------------------------------
    # inputs

    def tick(self, now: float, wall_ms: int) -> None:
        """Advance time: ``now`` is monotonic seconds, ``wall_ms`` the wall clock (only for ctime/mtime)."""
        gap = now - self._now  # since the last reading; at the first tick, since 0.0, which is no reading at all
        self._now = now
        self._wall_ms = wall_ms
        self._ticks += 1
        if gap > self.membership.reach_window:
            # This replica was not running (paused, its clock jumped, or this is its first tick): the silence it
            # would see in others is its own. Judged by it, a leader would expire every session (churn seed 2469: a
            # member elected before its first tick had reset the session clocks at 0.0) and remove live members as
            # dead (churn seed 3008: a leader's clock jumped past member_timeout). The gap counts for no one.
            shift = gap - self.config.tick_interval
            self._tracker.postpone(shift, now)
            self.membership.postpone(shift, now)
        self.work()
        if self.membership.phase is not Phase.REMOVED:
            self._node.tick()  # a removed member takes no part in elections
        self._expire_requests()
        self._release_awaiting_acls()
        self._ensure_session()
        self._retry_pending()
        self._ping_leader()
        self.membership.tick()
        if self.is_leader:
            self._expire_sessions()
            self._reap()

    def receive(self, frm: str, msg: Any) -> None:
        """A message from replica ``frm`` (as the transport vouches). Anything unexpected is dropped with a log
        line, never raised."""
        if self.is_leader:
            self.membership.frame_from(frm, self._now)
        if isinstance(msg, Message):
            if msg.to != self.id or msg.frm != frm:
                log.debug("%s: dropping a message from %s claiming to be from %s to %s", self.id, frm, msg.frm, msg.to)
                return
            if self.membership.phase is Phase.REMOVED:
                return
            self._node.step(msg)
            if frm == self._node.lead:
                self._last_lead_contact = self._ticks
        elif isinstance(msg, Bundle):
            for inner in msg.messages:  # never a Bundle: the codec allows none inside one
                self.receive(frm, inner)
        elif isinstance(msg, Forward):
            self._on_forward(frm, msg)
        elif isinstance(msg, ForwardRejected):
            self._on_forward_rejected(msg)
        elif self.membership.receive(frm, msg):
            pass
        elif isinstance(msg, SessionPing):
            # A member removed from the cluster keeps no session alive: its session expires as a dead one would.
            if self.is_leader and self.is_member(frm):
                for session_id in msg.session_ids:
                    self._tracker.touch(session_id, self._now)
        else:
            log.warning("%s: dropping a message of unexpected type %s", self.id, type(msg).__name__)

    def submit(
        self,
        request_id: int,
        op: Op,
        timeout: float,
        session_id: int | None = None,
        ids: tuple[tuple[str, str], ...] = (),
    ) -> Completion | None:
        """Ask for ``op``; its :class:`Completion` comes out of :meth:`advance` once applied here.

        ``ids`` are the requester's identities, (scheme, id) pairs, for the ACL checks made when the operation is
        applied; without any, only ACL entries for everyone grant anything. Returns a completion at once if the
        request is invalid (BadArgumentsError, InvalidACLError), needs a session this replica does not have, or
        needs ACLs while some member cannot replicate them (UnimplementedError). ``request_id`` must be positive and
        unique among this replica's requests.
        """
        self._requests.check_id(request_id)
        if ids and self.cluster_version >= ACLS and not isinstance(op, _SESSION_OPS):
            op = Authorized(tuple(ids), op)
        elif self.cluster_version < ACLS and _needs_acls(op):
            # Not replicable yet: a new cluster raises its version once the leader has heard from every member
            # (about a second after it forms), so the request waits for that, a little; a cluster that stays below
            # (a member of an older release) refuses it then.
            try:
                self.tree.check_op(Authorized(tuple(ids), op) if ids else op)
            except EmbedZKError as exc:
                return Completion(request_id, error=exc)
            self._awaiting_acls.append((request_id, op, timeout, session_id, ids, self._now + ACL_VERSION_WAIT))
            return None
        try:
            self.tree.check_op(op)
        except EmbedZKError as exc:
            return Completion(request_id, error=exc)
        removed = self.membership.removed_reason
        if removed is not None:
            return Completion(request_id, error=SessionExpiredError(f"this peer is not a member any more: {removed}"))
        if session_id is None:
            session_id = self.session_id or 0
        if _needs_session(op) and not session_id:
            return Completion(request_id, error=SessionExpiredError("this peer has no open session"))
        pending = Pending(request_id, op, session_id, self._now + timeout, started=self._now)
        self._requests.add(pending)
        self._send_request(pending)
        return None

    def _release_awaiting_acls(self) -> None:
        """Submit the requests that waited for ACLs once the cluster runs the version that replicates them; refuse
        those that waited too long."""
        if not self._awaiting_acls:
            return
        waiting, self._awaiting_acls = self._awaiting_acls, []
        for request_id, op, timeout, session_id, ids, deadline in waiting:
            if self.cluster_version >= ACLS:
                done = self.submit(request_id, op, timeout, session_id, ids)
            elif self._now >= deadline:
                done = Completion(
                    request_id,
                    error=UnimplementedError(
                        f"ACLs need every member at protocol version {ACLS}; the cluster runs version "
                        f"{self.cluster_version} (a member of an older release? a rolling upgrade in progress?)"
                    ),
                )
            else:
                self._awaiting_acls.append((request_id, op, timeout, session_id, ids, deadline))
                continue
            if done is not None:
                self._requests.completed(done)

    def sync(self, request_id: int, timeout: float) -> None:
        """Ask for a linearizable read barrier: completes once every write committed before now is applied here."""
        self._requests.check_id(request_id)
        removed = self.membership.removed_reason
        if removed is not None:
            self._requests.completed(
                Completion(request_id, error=SessionExpiredError(f"this peer is not a member any more: {removed}"))
            )
            return
        pending = Pending(request_id, None, 0, self._now + timeout, started=self._now)
        self._requests.add(pending)
        self._ask_read_index(pending)

    def keep_alive(self, session_ids: Iterable[int]) -> None:
        """The sessions of this replica's ZooKeeper clients are alive: touched here when leading, else reported to
        the leader in a SessionPing (which is what keeps a session open: the leader expires the silent ones)."""
        ids = tuple(session_ids)
        if not ids or self.membership.phase is Phase.REMOVED:
            return
        lead = self._node.lead
        if lead == self.id:
            for session_id in ids:
                self._tracker.touch(session_id, self._now)
        elif lead is not None:
            self._outbox.append(_addressed(lead, SessionPing(ids)))

    def work(self) -> None:
        """Work that goes on between inputs, a bounded slice per call: rebuilding the tree from a snapshot the
        leader sent. The driver calls it while :attr:`busy` (and :meth:`tick` calls it too); once the tree is whole,
        :meth:`has_ready` says so and the next :meth:`advance` puts it in place."""
        installing = self._installing
        if installing is not None and installing.restorer is not None and not installing.restorer.done:
            installing.restorer.step(RESTORE_CHUNKS_PER_STEP)

    def campaign(self) -> None:
        """Start an election now (tests, leadership hand-over)."""
        self._node.campaign()

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to ``to`` (only on the leader)."""
        self._node.transfer_leadership(to)

    def propose_conf_change(self, change: ConfChange) -> None:
        """Propose a membership change (one at a time); ProposalDroppedError if it cannot be proposed now."""
        self._node.propose_conf_change(change)

    # ----------------------------------------------------------------------------------------------------------
    # ready / advance

    def has_ready(self) -> bool:
        """True if :meth:`ready` has something for the driver."""
        return (
            bool(self._outbox)
            or self._requests.has_completions()
            or (self._node.has_ready() if self._installing is None else self._installing.done)
            or self._connection.next_state(self._connection_event()) is not self._connection.state
            or self.membership.has_work()
        )

    def ready(self) -> ReplicaReady:
        """What to persist now; call :meth:`advance` once it is on disk."""
        record = self.membership.take_record()
        if self._installing is not None:
            return ReplicaReady(None, record)  # the Ready that brought the snapshot is not advanced yet
        return ReplicaReady(self._node.ready() if self._node.has_ready() else None, record)

    def advance(self, rd: ReplicaReady) -> ReplicaOutput:
        """Everything persisted: apply what was committed, answer requests, and return what to send."""
        out = ReplicaOutput()
        if rd.record is not None:
            self.membership.persisted()
        raft = rd.raft
        if raft is not None and raft.snapshot is not None:
            # Persisted: now rebuild the tree from it, a slice per work() call, and go on with this Ready after.
            self._begin_install(raft)
            raft = None
        elif raft is None and self._installing is not None and self._installing.done:
            raft = self._finish_install(out)
        if raft is not None:
            for entry in raft.committed_entries:
                self._apply_entry(entry, out)
            self._node.advance(raft)
            out.messages.extend((m.to, m) for m in raft.messages)
            for read_state in raft.read_states:
                self._on_read_state(read_state.index, read_state.request_ctx)
            if raft.soft_state is not None:
                self._on_soft_state(out)
        self._check_term()
        self._requests.complete_reads(self.applied)
        self._maybe_snapshot(out)
        self.membership.after_step()
        out.completions.extend(self._drain_completions())
        self._update_state(out)
        self._report_membership(out)
        if self._members_changed or self.membership.routes_changed:
            self._members_changed = False
            self.membership.routes_changed = False
            out.members_changed = True
        if self._outbox:
            out.messages.extend(self._outbox)
            self._outbox = []
        return out

    # ----------------------------------------------------------------------------------------------------------
    # requests

    def _send_request(self, pending: Pending) -> None:
        assert pending.op is not None
        if self.is_leader:
            try:
                self._propose(
                    Command(self.id, self.incarnation, pending.request_id, self._txn(pending.session_id, pending.op))
                )
            except ProposalDroppedError:
                return  # asked again on the next tick
            pending.sent_term = self._node.term
        elif self._node.lead is not None:
            self._outbox.append(
                _addressed(
                    self._node.lead,
                    Forward(self._node.term, self.incarnation, pending.request_id, pending.session_id, pending.op),
                )
            )
            pending.sent_term = self._node.term
            pending.forwarded_to = self._node.lead
            pending.asked_at = self._ticks

    def _txn(self, session_id: int, op: Op) -> Txn:
        # The leader decides the time; it never goes back within the log, so mtime and TTL expiry are monotonic.
        self._last_time_ms = max(self._last_time_ms, self._wall_ms)
        return Txn(session_id, self._last_time_ms, op)

    def _propose(self, command: Command) -> None:
        data = encode(command)
        self._node.propose(data)
        self._own_commands[data] = command

    def _on_forward(self, origin: str, fwd: Forward) -> None:
        if not self.is_leader or fwd.term != self._node.term:
            # A copy of this forward can only have been proposed by the node it was sent to, in its term, which
            # means as the leader of that term, having voted for itself. We can vouch that none was only if we
            # have not reached that term yet, or are in it and voted for someone else: what we remember across a
            # restart is just the current term and vote.
            term, vote = self._node.term, self._node.status().vote
            safe = fwd.term > term or (fwd.term == term and vote != self.id)
            refusal = ForwardRejected(fwd.term, fwd.incarnation, fwd.request_id, "not leader in that term", safe)
            self._outbox.append(_addressed(origin, refusal))
            return
        key = (origin, fwd.incarnation)
        seen = self._proposed_forwards.get(key)
        if seen is None:
            seen = self._proposed_forwards[key] = _SeenRequests()
        if seen.seen(fwd.request_id):
            return  # a copy of one already proposed in this term (or one too old to tell)
        self._tracker.touch(fwd.session_id, self._now)
        try:
            self._propose(Command(origin, fwd.incarnation, fwd.request_id, self._txn(fwd.session_id, fwd.op)))
        except ProposalDroppedError as exc:
            # Not proposed, and no earlier copy was (it would have been recognised above): safe to send again.
            self._outbox.append(
                _addressed(origin, ForwardRejected(fwd.term, fwd.incarnation, fwd.request_id, str(exc), True))
            )
            return
        seen.add(fwd.request_id)

    def _on_forward_rejected(self, rej: ForwardRejected) -> None:
        pending = self._requests.get(rej.request_id)
        if pending is None or pending.op is None:
            return
        if rej.term != pending.sent_term or rej.incarnation != self.incarnation:
            return  # an answer to an older copy of the request, or to an earlier incarnation's
        if rej.retry_safe:
            pending.sent_term = None  # no copy was proposed: send it again

    def _retry_pending(self) -> None:
        for pending in self._requests:
            if pending.op is None:
                if pending.read_index is None and self._ticks - pending.asked_at >= self.config.election_tick:
                    self._ask_read_index(pending)
            elif pending.sent_term is None:
                self._send_request(pending)
            elif (
                pending.forwarded_to is not None
                and pending.forwarded_to == self._node.lead
                and pending.sent_term == self._node.term
                and self._ticks - pending.asked_at >= self.config.election_tick
            ):
                # No answer yet: the forward may have been lost. Sending it again is safe: the leader proposes a
                # request at most once in its term, and a forward from another term not at all.
                self._send_request(pending)

    def _expire_requests(self) -> None:
        if self._node.lead is not None or self._leader_seen_at is None:
            self._leader_seen_at = self._now
        limit = self.config.no_leader_timeout
        for pending in self._requests:
            if self._now >= pending.deadline:
                self._requests.finish(pending.request_id, error=OperationTimeoutError(self._late(pending)))
                continue
            if limit is None or pending.request_id <= 0 or pending.sent_term is not None:
                continue
            # Each request waits for a leader for no_leader_timeout from when it was asked, however long the
            # peer has been without one: one asked just as a partition heals is not failed at once.
            waited = self._now - max(self._leader_seen_at, pending.started)
            if waited >= limit:
                # Never proposed nor forwarded (no leader to take it): failing it now changes nothing anywhere.
                leaderless = self._now - self._leader_seen_at
                why = (
                    f"{describe(pending.op)}: no leader known for {leaderless:.1f}s, {waited:.1f}s of them since "
                    f"it was asked ({self._quorum_hint()})"
                )
                self._requests.finish(pending.request_id, error=ConnectionLossError(why))

    def _late(self, pending: Pending) -> str:
        timeout = pending.deadline - pending.started
        lead = self._node.lead
        where = f"the leader is {user_id(lead)}" if lead is not None else "no leader is known"
        return f"{describe(pending.op)}: no answer within {timeout:g}s ({where}; {self._quorum_hint()})"

    def _quorum_hint(self) -> str:
        voters = sorted(user_id(key) for key in self._conf_state.voters)
        if not voters:
            return f"this peer is not a member of a cluster yet: {self.membership.phase.value}"
        return f"a majority of the voters {voters} must be reachable"

    def _check_term(self) -> None:
        term = self._node.term
        if term == self._term:
            return
        self._term = term
        self._proposed_forwards.clear()
        self._own_commands.clear()
        # A request proposed or forwarded in an older term may or may not commit: its outcome is unknown.
        self._requests.give_up(
            lambda p: p.op is not None and p.sent_term is not None and p.sent_term < term,
            lambda p: ConnectionLossError(f"{describe(p.op)}: leadership changed; outcome unknown"),
        )

    # read-index ------------------------------------------------------------------------------------------------

    def _ask_read_index(self, pending: Pending) -> None:
        pending.asked_at = self._ticks
        try:
            self._node.read_index(_read_ctx(self.id, self.incarnation, pending.request_id))
        except ProposalDroppedError:
            pass  # no leader now: asked again on a later tick

    def _on_read_state(self, index: int, ctx: bytes) -> None:
        request_id = _parse_read_ctx(self.id, self.incarnation, ctx)
        if request_id is not None:
            self._requests.grant(request_id, index)

    # applying ---------------------------------------------------------------------------------------------------

    def _apply_entry(self, entry: Entry, out: ReplicaOutput) -> None:
        if entry.index <= self.applied:
            return
        self.applied = entry.index
        self._bytes_since_snapshot += len(entry.data)
        if entry.type == EntryType.CONF_CHANGE:
            self._apply_conf_change(entry)
            return
        if not entry.data:
            return  # a new leader's empty entry
        command = self._own_commands.pop(entry.data, None) if self._own_commands else None
        if command is None:
            decoded = self._decode_entry(entry)
            if isinstance(decoded, ClusterCommand):
                self._apply_cluster_command(decoded)
                return
            if decoded is None:
                return
            command = decoded
        txn = command.txn
        self._last_time_ms = max(self._last_time_ms, txn.time_ms)
        result = self.tree.apply(txn, entry.index)
        self._after_apply(command, result)
        if result.events:
            out.applied.append((entry.index, result.events))
        if command.origin == self.id and command.incarnation == self.incarnation and command.request_id:
            self._answer(command.request_id, result)

    def _decode_entry(self, entry: Entry, count_failure: bool = True) -> Command | ClusterCommand | None:
        try:
            value = decode(entry.data)
            if not isinstance(value, (Command, ClusterCommand)):
                raise DecodeError(f"a {type(value).__name__} is not a log entry's data")
            return value
        except DecodeError as exc:
            if not count_failure:
                return None
            # Every replica holds the same bytes, so every replica skips the entry alike.
            self.decode_failures += 1
            log.error("%s: entry %d is not a command (%s); skipped", self.id, entry.index, exc)
            return None

    def _apply_cluster_command(self, command: ClusterCommand) -> None:
        op = command.op
        if isinstance(op, SetClusterId):
            if not self.cluster_uuid:  # set once: a later proposal (a leader that raced) changes nothing
                self.cluster_uuid = op.cluster_uuid
                self.membership.cluster_known(op.cluster_uuid)
        elif isinstance(op, SetClusterVersion):
            self.cluster_version = max(self.cluster_version, op.version)
        elif isinstance(op, SetMemberAddress):
            if op.key in self._conf_state.members():  # the same test on every replica: the applied membership
                self.addresses[op.key] = op.address
                self._members_changed = True

    def _propose_cluster(self, op: SetClusterId | SetClusterVersion | SetMemberAddress) -> bool:
        try:
            self._node.propose(encode(ClusterCommand(op)))
        except ProposalDroppedError:
            return False
        return True

    def propose_cluster_command_id(self, cluster_uuid: str) -> bool:
        """Propose the cluster's id (the leader of a cluster whose log does not name it yet); False if dropped."""
        return self._propose_cluster(SetClusterId(cluster_uuid))

    def propose_cluster_version(self, version: int) -> bool:
        """Propose raising the cluster's protocol version; False if dropped."""
        return self._propose_cluster(SetClusterVersion(version))

    def propose_member_address(self, key: str, address: str) -> bool:
        """Propose recording that member ``key`` listens at ``address`` now; False if dropped."""
        return self._propose_cluster(SetMemberAddress(key, address))

    def member_change(
        self, request_id: int, kind: str, peer_id: str, address: str, voter: bool, timeout: float
    ) -> Completion | None:
        """The application's add_member ("add") or remove_member ("remove"); the Completion comes once the
        leader made the change (or gave up). Returns one at once for a request that cannot be made."""
        self._requests.check_id(request_id)
        members = self._node.status().log_conf_state.members()
        present = [key for key in members if user_id(key) == peer_id]
        if kind == "remove" and not present:
            known = sorted(user_id(key) for key in members)
            return Completion(request_id, error=BadArgumentsError(f"{peer_id!r} is not a member (members: {known})"))
        if kind == "add" and present and not voter:
            return Completion(request_id, error=BadArgumentsError(f"{peer_id!r} is a member already"))
        key = present[0] if kind == "remove" else ""
        self.membership.ask(request_id, kind, peer_id, address, voter, key, timeout)
        return None

    def complete_member_change(self, request_id: int, error: str | None) -> None:
        """The leader finished (``error`` None) or gave up on a member change asked from here."""
        self._requests.completed(Completion(request_id, error=MembershipError(error) if error else None))

    def _after_apply(self, command: Command, result: ApplyResult) -> None:
        op = command.txn.op
        if result.error is not None:
            return
        if isinstance(op, CreateSessionOp):
            if self.is_leader:
                self._tracker.opened(op.session_id, self._now)
        elif isinstance(op, CloseSessionOp):
            self._tracker.closed(op.session_id)
            if op.session_id == self.session_id:
                log.info("%s: session %#x expired", self.id, op.session_id)
                self._session.expired()
        elif isinstance(op, DeleteContainerOp):
            self._reaping.pop(op.path, None)

    def _answer(self, request_id: int, result: ApplyResult) -> None:
        if request_id < 0:
            self._on_internal_result(request_id, result)
            return
        self._requests.finish(request_id, result.value, result.error)  # nothing if timed out or given up

    def conf_state(self) -> ConfState:
        """The membership in force here."""
        return self._conf_state

    def _apply_conf_change(self, entry: Entry) -> None:
        change = decode_conf_change(entry)
        if change is None:
            self.decode_failures += 1
            log.error("%s: entry %d is not a membership change; skipped", self.id, entry.index)
            return
        self._conf_state = self._node.apply_conf_change(change)
        self._members_changed = True
        if change.type == ConfChangeType.REMOVE:
            self.addresses.pop(change.node_id, None)
            self._note_removed(change.node_id)
            if change.node_id == self.id:
                self.membership.removed(f"{self.id} was removed from the cluster (entry {entry.index})")
        elif change.context:
            try:
                self.addresses[change.node_id] = change.context.decode()
            except UnicodeDecodeError:
                log.error("%s: membership change %d has an unreadable address", self.id, entry.index)

    # snapshots --------------------------------------------------------------------------------------------------

    def _open_snapshot(
        self, meta: SnapshotMeta, chunks: Any
    ) -> tuple[SnapshotHeader | SnapshotHeaderV1 | None, TreeRestorer | None, _ByteCount]:
        """The replica's header of a snapshot, a restorer of its tree (None for the bootstrap snapshot: the state
        before the first entry, an empty tree) and the count of the snapshot's bytes it has read. Raises DecodeError
        for a header this build cannot read."""
        size = _ByteCount()
        if meta.index == 0 and not chunks:
            return None, None, size
        rest = size.through(iter(chunks))
        first = next(rest, None)
        if first is None:
            raise DecodeError(f"the snapshot at {meta.index} holds no chunks")
        header = decode(first)
        if not isinstance(header, (SnapshotHeader, SnapshotHeaderV1)):
            raise DecodeError(f"a snapshot starts with its header, not a {type(header).__name__}")
        if header.format > SNAPSHOT_FORMAT:
            raise DecodeError(
                f"snapshot format {header.format} is newer than this build reads (up to {SNAPSHOT_FORMAT}): "
                f"upgrade embedzk"
            )
        return header, TreeRestorer(rest, max_data_bytes=self.config.max_data_bytes), size

    def _adopt_header(self, header: SnapshotHeader | SnapshotHeaderV1 | None) -> None:
        if header is None:
            return
        self.addresses.update(header.addresses)
        self._last_time_ms = max(self._last_time_ms, header.last_time_ms)
        if isinstance(header, SnapshotHeader):
            if header.cluster_uuid:
                self.cluster_uuid = header.cluster_uuid
            self.cluster_version = max(self.cluster_version, header.cluster_version)
            self.removed_keys = {}
            for key in header.removed:
                self._note_removed(key)

    def _begin_install(self, raft: Ready) -> None:
        assert raft.snapshot is not None
        meta, chunks = raft.snapshot
        header, restorer, size = self._open_snapshot(meta, chunks)
        if self._snapshot_job is not None:
            self._snapshot_job.cancel()  # a snapshot of the state being replaced: moot
            self._snapshot_job = None
        self._installing = _SnapshotInstall(meta, header, restorer, raft, size)
        # Whatever we proposed so far may be inside the snapshot or not: we cannot tell. (What we send from now on
        # comes after it in the leader's log, and is answered as it is applied here.)
        self._requests.give_up(
            lambda p: p.op is not None and p.sent_term is not None,
            lambda p: ConnectionLossError(f"{describe(p.op)}: state replaced by a snapshot; outcome unknown"),
        )
        self.work()  # a small snapshot is whole at once

    def _finish_install(self, out: ReplicaOutput) -> Ready:
        """The tree is whole: put it in place, with what the snapshot says besides; return the held Ready."""
        installing = self._installing
        assert installing is not None and installing.done
        self._installing = None
        meta = installing.meta
        if meta.index > 0:
            self.addresses = {}  # the snapshot's header holds every member's address
        self._adopt_header(installing.header)
        restorer = installing.restorer
        self.tree = DataTree(max_data_bytes=self.config.max_data_bytes) if restorer is None else restorer.tree
        self.membership.cluster_known(self.cluster_uuid)
        self.applied = meta.index
        self._conf_state = meta.conf_state
        self._members_changed = True
        self._snapshot_index = meta.index
        self._bytes_since_snapshot = 0
        self._last_snapshot_size = installing.size.total  # the tree's size as a snapshot, as after a restart
        out.tree_replaced = True
        out.installed_index = meta.index
        if self.session_id is not None and self.session_id not in self.tree.sessions():
            self._session.expired()
        return installing.raft

    def _maybe_snapshot(self, out: ReplicaOutput) -> None:
        # A snapshot is a job over many calls, a bounded slice each (see embedzk/replica/snapshots.py).
        if self._installing is not None:
            return  # the tree is about to be replaced by the leader's snapshot
        job = self._snapshot_job
        if job is not None and job.tree is not self.tree:
            job.cancel()  # a snapshot from the leader replaced the tree: this one is moot
            job = self._snapshot_job = None
        if job is None:
            entries = self.applied - self._snapshot_index
            enough_bytes = max(self.config.snapshot_bytes, self._last_snapshot_size)
            if entries < self.config.snapshot_entries and self._bytes_since_snapshot < enough_bytes:
                return
            header = SnapshotHeader(
                SNAPSHOT_FORMAT,
                dict(self.addresses),
                self._last_time_ms,
                self.cluster_uuid,
                self.cluster_version,
                tuple(self.removed_keys),
            )
            term = self._storage.term(self.applied)
            meta = SnapshotMeta(self.applied, term, self._conf_state)
            self._snapshot_index = self.applied
            self._bytes_since_snapshot = 0
            job = snapshot_jobs.SnapshotJob(
                meta,
                self.tree,
                encode(header),
                self.tree.snapshot_chunks(snapshot_jobs.CHUNK_BYTES),
                compact_to=max(0, self.applied - self.config.keep_entries),
            )
        chunks, done = job.step()
        out.snapshot = (job.meta, chunks)
        if done:
            out.compact_to = job.compact_to
            self._last_snapshot_size = job.size
        self._snapshot_job = None if done else job

    # sessions ---------------------------------------------------------------------------------------------------

    def _ensure_session(self) -> None:
        if not self._session.wants_opening() or self._node.lead is None:
            return
        if self.membership.phase is Phase.REMOVED:
            return  # no member any more: no session
        request_id = self._requests.internal_id()
        self._session.opening(request_id)
        session_id = self._rng.randrange(1, MAX_SESSION_ID)
        timeout_ms = int(self.config.session_timeout * 1000)
        op = CreateSessionOp(session_id, timeout_ms, self.id)
        pending = Pending(request_id, op, 0, self._now + self.config.session_timeout, started=self._now)
        self._requests.add(pending)
        self._send_request(pending)

    def _on_internal_result(self, request_id: int, result: ApplyResult) -> None:
        pending = self._requests.take(request_id)
        if request_id != self._session.request:
            return
        if pending is None or result.error is not None or not isinstance(pending.op, CreateSessionOp):
            self._session.opening_failed()  # tried again on the next tick
            return
        self._session.opened(pending.op.session_id)
        # Sessions our previous incarnation left behind die now: their ephemeral nodes belong to a dead process.
        # So do those of a member with our id on a disk that is gone (replaced by ours).
        members = set(self._node.status().log_conf_state.members())
        name = user_id(self.id)
        for stale, (owner, _timeout) in self.tree.sessions().items():
            if stale == self.session_id:
                continue
            if owner == self.id or (user_id(owner) == name and owner not in members):
                self._housekeeping(CloseSessionOp(stale))

    def _drain_completions(self) -> list[Completion]:
        done = []
        for completion in self._requests.drain():
            if completion.request_id > 0:
                done.append(completion)
            elif completion.request_id == self._session.request:
                self._session.opening_failed()  # timed out or lost: asked again on the next tick
            elif completion.request_id == self._connection.confirm_request:
                # Caught up with everything committed when contact came back: our view of our session is current.
                self._connection.confirm_done(completion.error is None)
        return done

    def _confirm_currency(self) -> None:
        # After losing the leader, what we know may be stale (our session may have expired meanwhile): before
        # saying CONNECTED again, catch up through a read index, as sync() does.
        connection = self._connection
        if self._node.lead is None or self._lead_silent():
            connection.contact_lost()
            return
        if connection.confirmed or connection.confirm_request is not None:
            return
        request_id = connection.confirm_request = self._requests.internal_id()
        pending = Pending(request_id, None, 0, self._now + self.config.session_timeout, started=self._now)
        self._requests.add(pending)
        self._ask_read_index(pending)

    def _ping_leader(self) -> None:
        lead = self._node.lead
        if lead is None or lead == self.id or self.session_id is None or self.membership.phase is Phase.REMOVED:
            return
        interval = max(1, int(self.config.session_timeout / 3 / self.config.tick_interval))
        if self._session.ping_due(self._ticks, interval):
            self._outbox.append(_addressed(lead, SessionPing((self.session_id,))))

    def _expire_sessions(self) -> None:
        if self.session_id is not None:
            self._tracker.touch(self.session_id, self._now)
        timeouts = {sid: timeout for sid, (_owner, timeout) in self.tree.sessions().items()}
        for session_id in self._tracker.expired(timeouts, self._now, retry_after=self.config.session_timeout):
            self._housekeeping(CloseSessionOp(session_id))

    def _reap(self) -> None:
        if self._now - self._last_reap < self.config.reap_interval:
            return
        self._last_reap = self._now
        for path in self.tree.reap_candidates(max(self._wall_ms, self._last_time_ms)):
            proposed = self._reaping.get(path)
            if proposed is not None and self._now - proposed < 10 * self.config.reap_interval:
                continue
            self._reaping[path] = self._now
            self._housekeeping(DeleteContainerOp(path))

    def _housekeeping(self, op: Op) -> None:
        try:
            self._propose(Command(self.id, self.incarnation, 0, self._txn(0, op)))
        except ProposalDroppedError:
            pass  # proposed again on a later tick

    # leadership and state ---------------------------------------------------------------------------------------

    def _on_soft_state(self, out: ReplicaOutput) -> None:
        lead = self._node.lead
        if lead != self._lead:
            self._lead = lead
            out.leader_changed = True
        if self.is_leader:
            self._tracker.reset(self.tree.sessions().keys(), self._now)
            self._reaping.clear()
            self._catch_up_clock()
            self.membership.became_leader()
        # Requests waiting for a leader can go now.
        self._retry_pending()

    def _catch_up_clock(self) -> None:
        """A new leader's time stamps must not go back within the log: entries of its predecessor that it holds
        but has not applied yet may carry a later time (its clock was ahead). Take the latest of them."""
        log_ = self._node.raft.log
        lo, hi = self.applied + 1, log_.last_index() + 1
        while lo < hi:
            batch = log_.slice(lo, hi, log_.max_applying_bytes)
            for entry in batch:
                if entry.type == EntryType.NORMAL and entry.data:
                    command = self._decode_entry(entry, count_failure=False)
                    if isinstance(command, Command):
                        self._last_time_ms = max(self._last_time_ms, command.txn.time_ms)
            lo = batch[-1].index + 1

    def _lead_silent(self) -> bool:
        # A follower loses its leader through its election timer; a learner has none, so a learner whose leader
        # fell silent (the voters lost their quorum, or it was cut off) would keep believing in it: time it here.
        return not self.is_leader and self._ticks - self._last_lead_contact > 2 * self.config.election_tick

    def _connection_event(self) -> Event:
        return Connection.event_for(
            removed=self.membership.phase is Phase.REMOVED,
            session_lost=self._session.lost,
            in_touch=self._node.lead is not None and not self._lead_silent(),
            session_open=self.session_id is not None,
            confirmed=self._connection.confirmed,
        )

    def _report_membership(self, out: ReplicaOutput) -> None:
        membership = self.membership
        if membership.refusal is not None and not self._refusal_reported:
            self._refusal_reported = True
            out.refusal = membership.refusal
        if membership.removed_reason is not None and not self._removal_reported:
            self._removal_reported = True
            out.removed = membership.removed_reason
        if self.cluster_version != self._reported_version:
            self._reported_version = self.cluster_version
            out.version_changed = True

    def _update_state(self, out: ReplicaOutput) -> None:
        self._confirm_currency()
        state = self._connection.advance(self._connection_event())
        if state is not None:
            out.state = state



class _SeenRequests:
    """The request ids of one origin proposed in this term, bounded: ids more than ``KEEP`` behind the newest
    are forgotten, and a forward that old is treated as seen (its sender gave up on it long ago)."""

    KEEP = 10_000
    __slots__ = ("_floor", "_ids")

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._floor = 0

    def seen(self, request_id: int) -> bool:
        # Negative ids are the replica's own (session requests): few, never trimmed.
        return 0 < request_id <= self._floor or request_id in self._ids

    def add(self, request_id: int) -> None:
        self._ids.add(request_id)
        if len(self._ids) > 2 * self.KEEP:
            newest = max(self._ids)
            self._floor = newest - self.KEEP
            self._ids = {i for i in self._ids if i > self._floor or i < 0}


#: Seconds a request that needs ACLs waits for the cluster to run the protocol version that replicates them.
ACL_VERSION_WAIT = 3.0

# Operations no ACL governs: they carry no requester's identities.
_SESSION_OPS = (CreateSessionOp, CloseSessionOp, DeleteContainerOp)


def _needs_acls(op: Op) -> bool:
    """Whether ``op`` is or holds a transaction that only peers of protocol version ACLS can decode."""
    if isinstance(op, (WithACL, SetACLOp, Authorized)):
        return True
    return isinstance(op, MultiOp) and any(isinstance(sub, WithACL) for sub in op.ops)


def _needs_session(op: Op) -> bool:
    if isinstance(op, Authorized):
        op = op.op
    if isinstance(op, WithACL):
        op = op.op
    if isinstance(op, CreateOp):
        return op.ephemeral
    if isinstance(op, MultiOp):
        return any(_needs_session(sub) for sub in op.ops)
    return False


def _addressed(to: str, msg: Any) -> tuple[str, Any]:
    return (to, msg)


def _read_ctx(replica_id: str, incarnation: int, request_id: int) -> bytes:
    # The incarnation too: request ids start again at every start, and a read asked by an earlier incarnation may
    # still be answered (at an older index) after a restart.
    return f"{replica_id}\x00{incarnation}\x00{request_id}".encode()


def _parse_read_ctx(replica_id: str, incarnation: int, ctx: bytes) -> int | None:
    try:
        owner, their_incarnation, number = ctx.decode().split("\x00")
        if owner != replica_id or int(their_incarnation) != incarnation:
            return None
        return int(number)
    except (UnicodeDecodeError, ValueError):
        return None
