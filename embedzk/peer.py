"""Peer: one member of an embedzk cluster, living inside the application's process.

The public contract is ../shared/API.md: kazoo's names with ZooKeeper's semantics. A peer owns a loop thread (see
:mod:`embedzk._loop`) that runs the replica, the storage and the transport, and a dispatch thread that runs watch
callbacks and listeners. Application threads talk to the loop through a queue and futures; plain reads go straight
to the local tree, which is why they take microseconds.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import blinker

from embedzk._dispatch import Dispatcher
from embedzk._loop import Loop
from embedzk.consensus.types import ConfState
from embedzk.errors import (
    BadArgumentsError,
    ConfigurationError,
    EmbedZKError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    PeerStoppedError,
)
from embedzk.model import EventType, KeeperState, Stat, WatchedEvent
from embedzk.persist.base import Storage
from embedzk.persist.memory import MemoryStorage
from embedzk.replica import Replica, ReplicaConfig, ReplicaOutput
from embedzk.transport.base import Transport
from embedzk.tree import validate_path
from embedzk.tree.txn import CheckOp, CloseSessionOp, CreateOp, DeleteOp, MultiOp, Op, SetDataOp
from embedzk.tree.watches import WatchKind, WatchRegistry

log = logging.getLogger(__name__)

WatchFn = Callable[[WatchedEvent], Any]
_SCHEMES = ("tcp://", "ipc://", "inproc://")


class _SignalTarget:
    """A persistent watch's registry entry: fires its blinker signal."""

    __slots__ = ("signal", "recursive")

    def __init__(self, signal: blinker.Signal, recursive: bool) -> None:
        self.signal = signal
        self.recursive = recursive


class Peer:
    """A member of an embedzk cluster. See API.md; every public method is thread-safe.

    ``peers`` maps the other voting members' ids to where they listen. With no peers the peer is a working
    one-member cluster (the embedded default). ``data_dir`` None keeps everything in memory (lost on stop).
    ``observer`` True makes a replica that does not vote: it serves local reads, forwards writes and joins the
    cluster as a learner. Times are seconds.
    """

    def __init__(
        self,
        id: str,
        bind: str | None = None,
        peers: Mapping[str, str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        observer: bool = False,
        session_timeout: float = 10.0,
        *,
        cluster: str = "embedzk",
        tick_interval: float = 0.02,
        election_tick: int = 15,
        request_timeout: float = 30.0,
        snapshot_entries: int = 10_000,
        max_data_bytes: int = 1 << 20,
        transport: Transport | None = None,
        zmq_context: Any = None,
    ) -> None:
        peers = dict(peers or {})
        _check_config(id, bind, peers, observer, session_timeout, tick_interval, election_tick)
        self.id = id
        self.observer = observer
        self.cluster = cluster
        self.session_timeout = session_timeout
        self.request_timeout = request_timeout
        self._peers = peers
        self._data_dir = os.fspath(data_dir) if data_dir is not None else None
        self._bind = bind or f"inproc://embedzk-{cluster}-{id}-{uuid.uuid4().hex[:8]}"
        self._tick_interval = tick_interval
        self._election_tick = election_tick
        self._snapshot_entries = snapshot_entries
        self._max_data_bytes = max_data_bytes
        self._transport_given = transport
        self._zmq_context = zmq_context
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
        self._state = KeeperState.SUSPENDED
        self._leader: str | None = None
        #: Sent with ``leader=`` (the new leader's id, or None) whenever the known leader changes.
        self.leader_changed = blinker.Signal("leader_changed")
        #: Sent with ``state=`` (a KeeperState) whenever this peer's state changes.
        self.state_changed = blinker.Signal("state_changed")

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
        if not self._connected.wait(timeout):
            self.stop(close_session=False)
            raise OperationTimeoutError(
                f"peer {self.id} found no leader within {timeout}s (is a majority of {sorted(self._voters())} up?)"
            )

    def stop(self, close_session: bool = True, timeout: float = 5.0) -> None:
        """Close the session (its ephemeral nodes go at once), then free sockets, files and threads. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if not self._started:
                return
        loop = self._loop
        assert loop is not None and self._replica is not None
        session = self._replica.session_id
        if close_session and session and loop.crashed is None:
            try:
                self._write(CloseSessionOp(session), lambda v: None).result(timeout)
            except Exception as exc:  # the cluster may have no quorum: the session then expires by itself
                log.info("peer %s: could not close session %#x at stop: %s", self.id, session, exc)
        loop.stop()
        self._dispatcher.stop()
        if self._transport is not None:
            self._transport.close()
        if self._storage is not None:
            self._storage.close()

    def __enter__(self) -> Peer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _voters(self) -> list[str]:
        return sorted(self._peers) if self.observer else sorted([*self._peers, self.id])

    def _open(self) -> None:
        voters = tuple(self._voters())
        conf = ConfState(voters=voters)
        if self._data_dir is None:
            storage: Storage = MemoryStorage(conf)
        else:
            from embedzk.persist.leveldb import LevelDBStorage

            storage = LevelDBStorage.open(self._data_dir, cluster_id=self.cluster, peer_id=self.id, conf_state=conf)
        self._storage = storage
        try:
            transport = self._transport_given or self._make_transport()
            self._transport = transport
            addresses = dict(self._peers)
            addresses[self.id] = getattr(transport, "endpoint", self._bind)
            config = ReplicaConfig(
                id=self.id,
                tick_interval=self._tick_interval,
                election_tick=self._election_tick,
                session_timeout=self.session_timeout,
                snapshot_entries=self._snapshot_entries,
                max_data_bytes=self._max_data_bytes,
                addresses=addresses,
                join_as="learner" if self.observer else None,
            )
            replica = Replica(config, storage, random.Random())
            self._replica = replica
            transport.set_peers({k: v for k, v in replica.addresses.items() if k != self.id})
            self._loop = Loop(
                replica,
                storage,
                transport,
                tick_interval=self._tick_interval,
                on_output=self._on_output,
                name=f"embedzk-{self.id}-loop",
            )
            self._dispatcher.start()
            self._loop.start()
        except BaseException:
            storage.close()
            if self._transport is not None:
                self._transport.close()
            raise

    def _make_transport(self) -> Transport:
        from embedzk.transport.zmq import ZmqTransport

        transport = ZmqTransport(self.id, self._bind, context=self._zmq_context, cluster=self.cluster.encode())
        transport.start()
        return transport

    # ----------------------------------------------------------------------------------------------------------
    # the loop's output (runs on the loop thread)

    def _on_output(self, out: ReplicaOutput) -> None:
        replica = self._replica
        assert replica is not None
        if out.members_changed and self._transport is not None:
            self._transport.set_peers({k: v for k, v in replica.addresses.items() if k != self.id})
        if out.tree_replaced:
            self._fire_for_replaced_tree()
        state = replica.state
        for zxid, events in out.applied:
            for watcher, event in self._registry.trigger(events, zxid, state):
                self._dispatch(watcher, event)
        if out.leader_changed:
            leader = replica.lead
            self._leader = leader
            self._dispatcher.submit(self.leader_changed.send, self, leader=leader)
        if out.state is not None:
            self._state = out.state
            if out.state is KeeperState.CONNECTED:
                self._connected.set()
            self._dispatcher.submit(self._notify_state, out.state)

    def _dispatch(self, watcher: Any, event: WatchedEvent) -> None:
        if isinstance(watcher, _SignalTarget):
            self._dispatcher.submit(watcher.signal.send, self, event=event)
        else:
            self._dispatcher.submit(watcher, event)

    def _fire_for_replaced_tree(self) -> None:
        # A snapshot from the leader replaced the tree wholesale: change-by-change events are gone. Tell every
        # watcher that its path may have changed (as ZooKeeper does for watches re-set after a reconnection).
        replica = self._replica
        assert replica is not None
        zxid = replica.applied
        events = []
        for kind in (WatchKind.DATA, WatchKind.EXIST, WatchKind.PERSISTENT, WatchKind.PERSISTENT_RECURSIVE):
            for path in self._registry.paths(kind):
                stat = replica.tree.exists(path)
                events.append(_ReplacedEvent(EventType.CHANGED if stat else EventType.DELETED, path))
        for path in self._registry.paths(WatchKind.CHILD):
            events.append(_ReplacedEvent(EventType.CHILD, path))
        for watcher, event in self._registry.trigger(events, zxid, replica.state):
            self._dispatch(watcher, event)

    def _notify_state(self, state: KeeperState) -> None:
        self.state_changed.send(self, state=state)
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                log.exception("a state listener raised")

    # ----------------------------------------------------------------------------------------------------------
    # plumbing for requests

    def _running_loop(self) -> Loop:
        loop = self._loop
        if loop is None or not self._started:
            raise PeerStoppedError(f"peer {self.id} is not started")
        return loop

    def _running_replica(self) -> Replica:
        replica = self._replica
        if replica is None or not self._started:
            raise PeerStoppedError(f"peer {self.id} is not started")
        return replica

    def _write(self, op: Op, transform: Callable[[Any], Any], errors_as_values: bool = False) -> Future[Any]:
        loop = self._running_loop()
        replica = self._running_replica()
        timeout = self.request_timeout
        return loop.request(lambda rid: replica.submit(rid, op, timeout), transform, errors_as_values)

    def _on_loop(self, fn: Callable[[], Any]) -> Future[Any]:
        return self._running_loop().call(fn)

    def _wait(self, future: Future[Any]) -> Any:
        try:
            return future.result(self.request_timeout + 5.0)
        except TimeoutError:
            raise OperationTimeoutError(f"no answer within {self.request_timeout}s") from None

    # ----------------------------------------------------------------------------------------------------------
    # znode operations

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
        returns ``(path, Stat)`` as kazoo does. ``acl`` is accepted for kazoo compatibility and ignored.
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
        op = _create_op(path, value, ephemeral, sequence, makepath, container, ttl)
        if include_data:
            return self._write(op, lambda created: (created, self._tree_stat(created)))
        return self._write(op, lambda created: created)

    def get(self, path: str, watch: WatchFn | None = None) -> tuple[bytes, Stat]:
        """``(data, Stat)`` of ``path`` from the local replica; NoNodeError if absent. ``watch`` fires once on
        its next change or deletion."""
        if watch is None:
            validate_path(path)
            return self._running_replica().tree.get(path)
        return self._wait(self.get_async(path, watch))

    def get_async(self, path: str, watch: WatchFn | None = None) -> Future[tuple[bytes, Stat]]:
        """:meth:`get`, returning a Future."""
        validate_path(path)
        _check_watch(watch)

        def read() -> tuple[bytes, Stat]:
            result = self._running_replica().tree.get(path)  # raises NoNodeError: no watch is left, as kazoo
            if watch is not None:
                self._registry.add(WatchKind.DATA, path, watch)
            return result

        return self._on_loop(read)

    def exists(self, path: str, watch: WatchFn | None = None) -> Stat | None:
        """The Stat of ``path``, or None. ``watch`` fires once when it is created, changed or deleted."""
        if watch is None:
            validate_path(path)
            return self._running_replica().tree.exists(path)
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
            validate_path(path)
            return self._children(path, include_data)
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

    def set(self, path: str, value: bytes, version: int = -1) -> Stat:
        """Replace the data of ``path`` if its version is ``version`` (-1: any); return the new Stat."""
        return self._wait(self.set_async(path, value, version))

    def set_async(self, path: str, value: bytes, version: int = -1) -> Future[Stat]:
        """:meth:`set`, returning a Future."""
        _check_value(value)
        _check_version(version)
        return self._write(SetDataOp(path, bytes(value), version), lambda stat: stat)

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
            return self._write(DeleteOp(path, version), lambda _v: None)
        validate_path(path)
        tree = self._running_replica().tree
        ops: list[Op] = []
        self._subtree_deletes(tree, path, ops)
        ops.append(DeleteOp(path, version))
        return self._write(MultiOp(tuple(ops)), lambda _v: None)

    def _subtree_deletes(self, tree: Any, path: str, ops: list[Op]) -> None:
        try:
            names = tree.get_children(path)
        except NoNodeError:
            return
        for name in names:
            child = path.rstrip("/") + "/" + name
            self._subtree_deletes(tree, child, ops)
            ops.append(DeleteOp(child, -1))

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
        outer: Future[None] = Future()
        inner = self.create_async(path, b"", makepath=True)

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            if exc is None or isinstance(exc, NodeExistsError):
                outer.set_result(None)
            else:
                outer.set_exception(exc)

        inner.add_done_callback(done)
        return outer

    def transaction(self) -> Transaction:
        """Start a transaction: ``create``, ``delete``, ``set_data``, ``check``, then ``commit()``."""
        return Transaction(self)

    def sync(self, path: str = "/") -> None:
        """A linearizable read barrier: afterwards local reads reflect every write committed before the call."""
        self._wait(self.sync_async(path))

    def sync_async(self, path: str = "/") -> Future[None]:
        """:meth:`sync`, returning a Future."""
        validate_path(path)
        loop = self._running_loop()
        replica = self._running_replica()
        timeout = self.request_timeout

        def submit(request_id: int) -> None:
            replica.sync(request_id, timeout)

        return loop.request(submit, lambda _v: None)

    # ----------------------------------------------------------------------------------------------------------
    # persistent watches

    def watch(self, path: str, recursive: bool = False) -> blinker.Signal:
        """A persistent watch on ``path`` (and, if ``recursive``, its whole subtree), as a blinker signal.

        Receivers get ``(sender, event=WatchedEvent)`` for every change, in zxid order, on the dispatch thread.
        Recursive watches see CREATED, DELETED and CHANGED, never CHILD (ZooKeeper's rule). Connect receivers with
        ``weak=False`` (or keep a reference to them): blinker holds them weakly by default.
        """
        validate_path(path)
        key = (path, recursive)
        with self._lock:
            target = self._signals.get(key)
            if target is None:
                target = _SignalTarget(blinker.Signal(f"watch {path}{' recursive' if recursive else ''}"), recursive)
                self._signals[key] = target
                kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
                self._wait(self._on_loop(lambda: self._registry.add(kind, path, target)))
        return target.signal

    def unwatch(self, path: str) -> None:
        """End the persistent watches on ``path`` (recursive or not)."""
        with self._lock:
            for recursive in (False, True):
                target = self._signals.pop((path, recursive), None)
                if target is not None:
                    kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
                    self._wait(self._on_loop(lambda t=target, k=kind: self._registry.remove(k, path, t)))

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
    def aio(self) -> Any:
        """The asyncio face: the same calls as coroutines (:class:`embedzk.aio.AsyncPeer`)."""
        from embedzk.aio import AsyncPeer

        return AsyncPeer(self)

    # ----------------------------------------------------------------------------------------------------------
    # cluster state

    @property
    def leader(self) -> str | None:
        """The id of the leader this peer knows, or None."""
        replica = self._replica
        return replica.lead if replica is not None else None

    @property
    def is_leader(self) -> bool:
        """True while this peer leads the cluster."""
        replica = self._replica
        return bool(replica is not None and replica.is_leader)

    @property
    def session_id(self) -> int | None:
        """This peer's session id, or None while it has none."""
        replica = self._replica
        return replica.session_id if replica is not None else None

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
        replica = self._running_replica()
        loop = self._running_loop()

        def gather() -> dict[str, Any]:
            stats = replica.stats()
            stats["watch_count"] = self._registry.count()
            latencies = sorted(loop.write_latencies)
            if latencies:
                stats["latency_p50_ms"] = latencies[len(latencies) // 2] * 1000
                stats["latency_p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
                stats["latency_max_ms"] = latencies[-1] * 1000
            stats["frames_rejected"] = loop.decode_errors
            if self._transport is not None:
                stats["transport"] = self._transport.stats()
            return stats

        return self._wait(self._on_loop(gather))

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self._state.value} leader={self.leader}>"


class Transaction:
    """A ZooKeeper multi: the operations are applied all or nothing, in order, by :meth:`commit`."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer
        self._ops: list[Op] = []
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
        """Add a create."""
        self._ops.append(_create_op(path, value, ephemeral, sequence, False, container, ttl))

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
        return self._peer._write(MultiOp(tuple(self._ops)), lambda results: results, errors_as_values=True)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None and not self.committed:
            self.commit()


class _ReplacedEvent:
    __slots__ = ("type", "path")

    def __init__(self, type: EventType, path: str) -> None:  # noqa: A002 - mirrors TreeEvent
        self.type = type
        self.path = path


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


def _check_value(value: Any) -> None:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise BadArgumentsError(f"value must be bytes, got {type(value).__name__}")


def _check_version(version: Any) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < -1:
        raise BadArgumentsError(f"version must be an int >= -1, got {version!r}")


def _check_watch(watch: Any) -> None:
    if watch is not None and not callable(watch):
        raise BadArgumentsError(f"watch must be callable, got {type(watch).__name__}")


def _check_config(
    id: str,
    bind: str | None,
    peers: dict[str, str],
    observer: bool,
    session_timeout: float,
    tick_interval: float,
    election_tick: int,
) -> None:
    if not isinstance(id, str) or not id or len(id) > 128 or any(ord(c) < 32 for c in id):
        raise ConfigurationError(f"peer id must be a non-empty printable string of at most 128 chars, got {id!r}")
    if id in peers:
        raise ConfigurationError(f"peers must list the other members, not this peer's own id {id!r}")
    for other, address in peers.items():
        if not isinstance(other, str) or not other:
            raise ConfigurationError(f"peer ids must be non-empty strings, got {other!r}")
        if not isinstance(address, str) or not address.startswith(_SCHEMES):
            raise ConfigurationError(f"address of peer {other!r} must start with tcp://, ipc:// or inproc://: {address!r}")
    if bind is not None and (not isinstance(bind, str) or not bind.startswith(_SCHEMES)):
        raise ConfigurationError(f"bind must start with tcp://, ipc:// or inproc://, got {bind!r}")
    if peers and bind is None:
        raise ConfigurationError("a peer with other members must say where it listens (bind=...)")
    if observer and not peers:
        raise ConfigurationError("an observer needs the voting members in peers={...}")
    election = tick_interval * election_tick
    if session_timeout < 2 * election:
        raise ConfigurationError(
            f"session_timeout {session_timeout}s must be at least twice the election timeout ({election:.2f}s)"
        )
