"""LocalCluster: a whole embedzk cluster inside one process, for users' own tests.

``LocalCluster(n=3)`` starts n peers talking over ``inproc://`` (one shared ZeroMQ context), each in memory or in a
data directory of its own, and offers the faults a test wants to inject: stop or restart a member, partition
members from each other, heal.

    with LocalCluster(n=3) as cluster:
        a, b, c = cluster.peers
        a.create("/config", b"v1")
        b.sync()
        assert b.get("/config")[0] == b"v1"
        cluster.partition(["p0"], ["p1", "p2"])
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from embedzk.errors import OperationTimeoutError
from embedzk.peer import Peer
from embedzk.transport.base import Transport


class _CutLinks:
    """The set of cut links of a LocalCluster, shared by all its members' transports."""

    def __init__(self) -> None:
        self._cut: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def blocked(self, frm: str, to: str) -> bool:
        with self._lock:
            return (frm, to) in self._cut

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

    Peer ids are ``p0`` ... ``p{n-1}``. ``data_dir``: a directory under which each peer keeps ``<id>/`` (None:
    memory only, so a restarted member comes back empty and catches up from the others). Extra keyword arguments
    go to every Peer (``session_timeout``, ``tick_interval`` ...).
    """

    def __init__(self, n: int = 3, data_dir: str | os.PathLike[str] | None = None, **peer_options: Any) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one member")
        self.ids = [f"p{i}" for i in range(n)]
        self._tag = uuid.uuid4().hex[:8]
        self.addresses = {pid: f"inproc://embedzk-local-{self._tag}-{pid}" for pid in self.ids}
        self._data_dir = os.fspath(data_dir) if data_dir is not None else None
        self._options = dict(peer_options)
        self._options.setdefault("session_timeout", 2.0)
        self._links = _CutLinks()
        self.members: dict[str, Peer | None] = dict.fromkeys(self.ids)
        self._incarnation: dict[str, int] = dict.fromkeys(self.ids, 0)

    # life cycle --------------------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start every member; return once all are connected."""
        for pid in self.ids:
            self.members[pid] = self._make(pid)
        deadline = time.monotonic() + timeout
        threads = [threading.Thread(target=self._start_one, args=(pid, deadline)) for pid in self.ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for pid in self.ids:
            peer = self.members[pid]
            if peer is None or not peer.connected:
                self.stop()
                raise OperationTimeoutError(f"{pid} did not connect within {timeout}s")
        return self

    def _start_one(self, pid: str, deadline: float) -> None:
        peer = self.members[pid]
        assert peer is not None
        try:
            peer.start(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            pass  # reported by start()

    def _make(self, pid: str) -> Peer:
        from embedzk.transport.zmq import ZmqTransport

        self._incarnation[pid] += 1
        inner = ZmqTransport(pid, self.addresses[pid], cluster=f"local-{self._tag}".encode())
        inner.start()
        transport = _PartitionableTransport(inner, self._links)
        data_dir = os.path.join(self._data_dir, pid) if self._data_dir is not None else None
        others = {other: addr for other, addr in self.addresses.items() if other != pid}
        return Peer(
            pid,
            bind=self.addresses[pid],
            peers=others,
            data_dir=data_dir,
            cluster=f"local-{self._tag}",
            transport=transport,  # type: ignore[arg-type]
            **self._options,
        )

    def stop(self) -> None:
        """Stop every member."""
        for pid in self.ids:
            self.stop_member(pid)

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

    def leader(self, timeout: float = 10.0) -> Peer:
        """The running member that leads, waiting up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for peer in self.peers:
                if peer.is_leader:
                    return peer
            time.sleep(0.01)
        raise OperationTimeoutError(f"no leader within {timeout}s")

    def stop_member(self, pid: str, close_session: bool = True) -> None:
        """Stop one member (``close_session`` False: as if its process died; its session then expires)."""
        peer = self.members[pid]
        if peer is None:
            return
        self.members[pid] = None
        peer.stop(close_session=close_session)

    def restart_member(self, pid: str, timeout: float = 30.0) -> Peer:
        """Start a stopped member again (from its data directory if the cluster has one)."""
        if self.members[pid] is not None:
            self.stop_member(pid)
        peer = self._make(pid)
        self.members[pid] = peer
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
