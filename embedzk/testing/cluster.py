"""LocalCluster: a whole embedzk cluster inside one process, for users' own tests.

``LocalCluster(n=3)`` starts n peers talking over ``inproc://`` (one shared ZeroMQ context), each in memory or in a
data directory of its own, and offers the faults a test wants to inject: stop or restart a member, partition
members from each other, heal. ``observers=k`` adds k observers (non-voting peers) ``o0`` ... ``o{k-1}``.

    from embedzk.testing import LocalCluster

    with LocalCluster(n=3) as cluster:
        a, b, c = cluster.peers
        a.create("/config", b"v1")
        b.sync()
        assert b.get("/config")[0] == b"v1"

        leader = cluster.leader()
        cluster.isolate(leader.id)               # the others elect a new leader; the old one is SUSPENDED
        others = [p for p in cluster.peers if p is not leader]
        cluster.leader(among=others).set("/config", b"v2")
        cluster.heal()
        cluster.wait_connected()
        leader.sync()
        assert leader.get("/config")[0] == b"v2"

        cluster.stop_member("p2")                # a clean stop; close_session=False: as if it crashed
        cluster.restart_member("p2").sync()
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from embedzk.errors import OperationTimeoutError
from embedzk.membership.identity import is_address, user_id
from embedzk.peer import Peer
from embedzk.persist.memory import MemoryStorage
from embedzk.transport.base import Transport


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true, and return that; AssertionError after ``timeout``.

    For tests of replicated state: a change made on one peer reaches the others a little later (or call
    ``peer.sync()`` first, which waits exactly long enough).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout}s: {what or predicate}")
        time.sleep(interval)


class _CutLinks:
    """The set of cut links of a LocalCluster (between peer ids), shared by all its members' transports."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self._cut: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._by_address = {address: pid for pid, address in addresses.items()}

    def blocked(self, frm: str, to: str) -> bool:
        """Whether frames from ``frm`` to ``to`` (member keys, or an address for ``to``) are lost."""
        target = self._by_address.get(to, to) if is_address(to) else user_id(to)
        with self._lock:
            return (user_id(frm), target) in self._cut

    def set(self, cut: set[tuple[str, str]]) -> None:
        with self._lock:
            self._cut = cut


class _PartitionableTransport:
    """Wraps a transport and drops what a partition cuts, in both directions."""

    def __init__(self, inner: Transport, links: _CutLinks) -> None:
        self._inner = inner
        self._links = links
        self.id = inner.id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def version(self) -> int:
        return int(self._inner.version)  # type: ignore[attr-defined]

    @version.setter
    def version(self, version: int) -> None:
        self._inner.version = version  # type: ignore[attr-defined]

    def start(self) -> None:
        self._inner.start()

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        self._inner.set_peers(addresses)

    def send(self, to: str, frame: bytes) -> bool:
        if self._links.blocked(self.id, to):
            return False
        return self._inner.send(to, frame)

    def receive(self, timeout: float) -> list[tuple[str, bytes]]:
        frames = self._inner.receive(timeout)
        return [(frm, frame) for frm, frame in frames if not self._links.blocked(frm, self.id)]

    def wake(self) -> None:
        self._inner.wake()

    def stats(self) -> dict[str, int]:
        return self._inner.stats()

    def close(self) -> None:
        self._inner.close()


class LocalCluster:
    """n peers in this process over inproc://, with hooks to stop, restart and partition them.

    Voting peers are ``p0`` ... ``p{n-1}``, observers ``o0`` ... ``o{observers-1}``. ``data_dir``: a directory under
    which each peer keeps ``<id>/`` in LevelDB; None keeps each member's log and snapshots in memory, where they
    outlive a stop of that member as a disk would, so ``restart_member`` brings it back with what it had. Extra keyword arguments go to every Peer (``session_timeout`` defaults to 2 s here, so that
    expiry tests run quickly).
    """

    def __init__(
        self,
        n: int = 3,
        data_dir: str | os.PathLike[str] | None = None,
        observers: int = 0,
        **peer_options: Any,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one voting member")
        if observers < 0:
            raise ValueError("observers must be >= 0")
        self.voter_ids = [f"p{i}" for i in range(n)]
        self.observer_ids = [f"o{i}" for i in range(observers)]
        self.ids = self.voter_ids + self.observer_ids
        self._tag = uuid.uuid4().hex[:8]
        self.addresses = {pid: f"inproc://embedzk-local-{self._tag}-{pid}" for pid in self.ids}
        self._data_dir = os.fspath(data_dir) if data_dir is not None else None
        self._options = dict(peer_options)
        self._options.setdefault("session_timeout", 2.0)
        self._links = _CutLinks(self.addresses)
        self._memory: dict[str, MemoryStorage] = {}
        self.members: dict[str, Peer | None] = dict.fromkeys(self.ids)
        self._incarnation: dict[str, int] = dict.fromkeys(self.ids, 0)

    # life cycle --------------------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every member; return once all are connected (OperationTimeoutError after ``timeout``).

        If a member cannot start (its data directory is unusable, say), every member is stopped again and that
        member's error is raised.
        """
        deadline = time.monotonic() + timeout
        errors: dict[str, BaseException] = {}
        try:
            for pid in self.ids:
                self.members[pid] = self._make(pid)
        except BaseException:
            self.stop()
            raise
        threads = [threading.Thread(target=self._start_one, args=(pid, deadline, errors)) for pid in self.ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            if errors:
                # The cause first: a member that could not start at all, rather than those that waited for it.
                causes = [pid for pid in sorted(errors) if not isinstance(errors[pid], OperationTimeoutError)]
                raise errors[(causes or sorted(errors))[0]]
            self.wait_connected(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_one(self, pid: str, deadline: float, errors: dict[str, BaseException]) -> None:
        peer = self.members[pid]
        assert peer is not None
        try:
            peer.start(timeout=max(0.1, deadline - time.monotonic()))
        except BaseException as exc:
            errors[pid] = exc

    def wait_connected(self, timeout: float = 30.0) -> None:
        """Wait until every running member is CONNECTED and agrees on one leader."""
        deadline = time.monotonic() + timeout
        while True:
            peers = self.peers
            leaders = {p.leader for p in peers}
            if all(p.connected for p in peers) and len(leaders) == 1 and None not in leaders:
                return
            if time.monotonic() >= deadline:
                states = ", ".join(f"{p.id}: {p.state.value} leader={p.leader}" for p in peers)
                raise OperationTimeoutError(f"the cluster did not settle within {timeout}s ({states})")
            time.sleep(0.01)

    def _make(self, pid: str) -> Peer:
        from embedzk.transport.zmq import ZmqTransport

        self._incarnation[pid] += 1
        cluster = f"local-{self._tag}"
        links = self._links

        def transport(key: str, bind: str) -> Transport:
            inner = ZmqTransport(key, bind, cluster=cluster.encode())
            return _PartitionableTransport(inner, links)  # type: ignore[return-value]

        data_dir = os.path.join(self._data_dir, pid) if self._data_dir is not None else None
        storage = None
        if data_dir is None:
            if pid not in self._memory:
                self._memory[pid] = MemoryStorage()
            storage = self._memory[pid]
        # Everyone is told where the voters are; observers announce themselves to the leader when they join.
        others = {other: self.addresses[other] for other in self.voter_ids if other != pid}
        return Peer(
            pid,
            bind=self.addresses[pid],
            peers=others,
            data_dir=data_dir,
            observer=pid in self.observer_ids,
            cluster=cluster,
            transport_factory=transport,
            storage=storage,
            **self._options,
        )

    def stop(self) -> None:
        """Stop every member, closing their sessions first (all at once, while the cluster still has a quorum)."""
        running = [(pid, p) for pid, p in self.members.items() if p is not None]
        connected = [p for _pid, p in running if p.connected]
        closing = [f for f in (p._close_session_async(2.0) for p in connected) if f is not None]
        deadline = time.monotonic() + 2.0
        for future in closing:
            try:
                future.result(max(0.0, deadline - time.monotonic()))
            except Exception:
                pass  # no quorum: the sessions die with the cluster
        threads = [
            threading.Thread(target=self.stop_member, args=(pid, False), name=f"stop-{pid}") for pid, _p in running
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # members -----------------------------------------------------------------------------------------------------

    @property
    def peers(self) -> list[Peer]:
        """The running members, in id order."""
        return [p for p in (self.members[pid] for pid in self.ids) if p is not None]

    def __getitem__(self, pid: str) -> Peer:
        peer = self.members[pid]
        if peer is None:
            raise KeyError(f"{pid} is not running")
        return peer

    @property
    def voters(self) -> list[Peer]:
        """The running voting members, in id order."""
        return [p for p in self.peers if p.id in self.voter_ids]

    @property
    def observers(self) -> list[Peer]:
        """The running observers, in id order."""
        return [p for p in self.peers if p.id in self.observer_ids]

    def leader(self, timeout: float = 10.0, among: Iterable[Peer] | None = None) -> Peer:
        """The running member that leads (``among`` those given), waiting up to ``timeout`` for one.

        An isolated old leader goes on believing it leads for up to an election timeout; ``among`` the members
        on the majority's side finds the leader that can actually commit.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for peer in self.peers if among is None else list(among):
                if peer.is_leader:
                    return peer
            time.sleep(0.01)
        raise OperationTimeoutError(f"no leader within {timeout}s")

    def stop_member(self, pid: str, close_session: bool = True) -> None:
        """Stop one member.

        A clean stop (the default) closes its session, so its ephemeral nodes go at once, and if it led, hands
        leadership over and returns once the others agree on the new leader. ``close_session=False`` stops it as
        if its process died: its session expires after the session timeout and, if it led, the others notice
        only after an election timeout.
        """
        peer = self.members[pid]
        if peer is None:
            return
        self.members[pid] = None
        was_leader = peer.is_leader
        peer.stop(close_session=close_session)
        if close_session and was_leader and 2 * len(self.voters) > len(self.voter_ids):
            try:
                self.wait_connected(5.0)
            except OperationTimeoutError:
                pass  # the caller will see it

    def restart_member(self, pid: str, timeout: float = 30.0, wipe: bool = False) -> Peer:
        """Start a stopped member again, from its disk (its data directory, or the memory that plays its disk).

        ``wipe=True`` starts it on a fresh, empty disk, as a container restarted on a new volume: it comes back as
        a new member under the same id, and the cluster replaces the old one with it.
        """
        if self.members[pid] is not None:
            self.stop_member(pid)
        if wipe:
            self._memory.pop(pid, None)
            if self._data_dir is not None:
                shutil.rmtree(os.path.join(self._data_dir, pid), ignore_errors=True)
        peer = self._make(pid)
        self.members[pid] = peer
        # The other members' connections to the old incarnation are dead (ZeroMQ never reconnects inproc://): their
        # transports connect anew at their first send that fails, having seen that the address was bound again.
        peer.start(timeout=timeout)
        return peer

    # faults ------------------------------------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between members of different groups (members in no group keep their links)."""
        sets = [set(g) for g in groups]
        cut: set[tuple[str, str]] = set()
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        cut.add((x, y))
                        cut.add((y, x))
        self._links.set(cut)

    def isolate(self, pid: str) -> None:
        """Cut ``pid`` off from every other member."""
        self.partition([pid], [other for other in self.ids if other != pid])

    def heal(self) -> None:
        """Restore every link."""
        self._links.set(set())
