"""embedzk in compare.py: three worker processes, each embedding one Peer (default settings but the session
timeout, which is compare_common.SESSION_TIMEOUT_S as for the kazoo clients; tcp on loopback, LevelDB with sync in
its own data directory). A member is its worker: killing the member kills the process.

Run as ``python benchmarks/compare_embedzk.py --agent CONFIG`` it is one such worker (see compare_common).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common

NAME = "embedzk"


# ----------------------------------------------------------------------------------------------------------------
# the worker


class EmbedZKOps(common.Ops):
    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def ensure(self, path: str) -> None:
        self.peer.ensure_path(path)

    def create_async(self, path: str, value: bytes, done: Callable[[BaseException | None], None]) -> None:
        self.peer.create_async(path, value).add_done_callback(lambda f: done(f.exception()))

    def set(self, path: str, value: bytes) -> None:
        self.peer.set(path, value)

    def get(self, path: str) -> Any:
        return self.peer.get(path)

    def sync(self) -> None:
        self.peer.sync()

    def watch(self, path: str, on_event: Callable[[], None]) -> None:
        # A persistent watch: a blinker signal that fires on every change of the node.
        self.peer.watch(path).connect(lambda sender, event: on_event(), weak=False)

    def lock(self, path: str) -> tuple[Callable[[float], bool], Callable[[], None]]:
        from embedzk.recipes import LockTimeout

        lock = self.peer.Lock(path)

        def acquire(timeout: float) -> bool:
            try:
                return bool(lock.acquire(timeout=timeout))
            except LockTimeout:
                return False

        return acquire, lock.release

    def write_once(self, path: str, timeout: float) -> None:
        self.peer.create_async(path, b"", sequence=True).result(timeout)

    def election(self, path: str, identifier: str) -> Any:
        return self.peer.Election(path, identifier)

    def load(self, prefix: str, start: int, count: int, batch: int) -> None:
        self.peer.ensure_path(prefix)
        pending: list[Any] = []
        for first in range(start, start + count, batch):
            txn = self.peer.transaction()
            for i in range(first, min(first + batch, start + count)):
                txn.create(f"{prefix}/n{i}", common.VALUE)
            pending.append(txn.commit_async())
            if len(pending) >= 8:
                pending.pop(0).result(120)
        for fut in pending:
            fut.result(120)

    def loop_call(self, fn: Callable[[], Any]) -> None:
        self.peer._loop.call(fn).result(10)

    def close(self) -> None:
        self.peer.stop()


def _open(config: dict[str, Any]) -> tuple[common.Ops, dict[str, Any]]:
    t0 = time.perf_counter()
    sys.path.insert(0, common.REPO)
    from embedzk import Peer

    t1 = time.perf_counter()
    profiler = None
    if config.get("profile_start"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    # No session_timeout in the config (peer_bench.py) leaves Peer's default.
    options: dict[str, Any] = {"session_timeout": config["session_timeout"]} if config.get("session_timeout") else {}
    # A longer election timeout for the 1M-znode runs, whose full garbage collections outlast the default 0.3 s
    # (benchmarks/README.md, Restart): EMBEDZK_BENCH_ELECTION_TICK=50 makes it 1 s.
    if os.environ.get("EMBEDZK_BENCH_ELECTION_TICK"):
        options["election_tick"] = int(os.environ["EMBEDZK_BENCH_ELECTION_TICK"])
    peer = Peer(config["id"], bind=config["bind"], peers=config["peers"], data_dir=config["data_dir"], **options)
    leader_known: list[float] = []

    def on_leader(sender: Any, leader: Any = None, **kw: Any) -> None:
        if leader is not None and not leader_known:
            leader_known.append(time.perf_counter())

    peer.leader_changed.connect(on_leader, weak=False)
    peer.start(timeout=60)
    t2 = time.perf_counter()
    if profiler is not None:
        # This thread's part of start(): opening and replaying the storage happens here, on the caller's thread.
        profiler.disable()
        profiler.dump_stats(config["profile_start"])
    expect = config.get("expect_path")
    if expect:
        # After a restart: ready once the data written before the kill is visible to local reads.
        deadline = time.monotonic() + 120
        while peer.exists(expect) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{expect} not visible after restart")
            time.sleep(0.002)
    # Where a restart's time goes: importing embedzk, start() (storage opened and replayed, leader known,
    # session open), then catching up until the data is visible.
    info = {"id": peer.id, "import_s": t1 - t0, "start_s": t2 - t1, "catchup_s": time.perf_counter() - t2}
    if leader_known:
        info["leader_known_s"] = leader_known[0] - t1  # of start_s: until this peer heard of a leader
    return EmbedZKOps(peer), info


def _extra(ops: common.Ops, op: str, args: dict[str, Any]) -> Any:
    assert isinstance(ops, EmbedZKOps)
    if op == "leader":
        return ops.peer.leader
    if op == "count":
        return ops.peer.stats().get("znode_count")
    raise ValueError(f"unknown op {op}")


# ----------------------------------------------------------------------------------------------------------------
# the driver's side


class System(common.WorkerMembers):
    """Three embedzk peers, one per worker process."""

    name = NAME
    module_file = os.path.abspath(__file__)
    description = (f"embedzk: 3 peers in 3 worker processes, tcp on loopback, LevelDB with sync, default settings "
                   f"but session timeout {common.SESSION_TIMEOUT_S:g} s")
    supports_watches = True
    supports_election = True
    local_reads = True

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        self.names = ["a", "b", "c"]
        ports = common.free_ports(3)
        self.addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(self.names, ports)}
        #: Where restarts holding data write a cProfile of start() (compare.py --profile), else None.
        self.profile_dir: str | None = None
        self.restarts = 0

    def _config(self, i: int, expect_path: str | None = None) -> dict[str, Any]:
        pid = self.names[i]
        config = {
            "id": pid,
            "bind": self.addresses[pid],
            "peers": {o: a for o, a in self.addresses.items() if o != pid},
            "data_dir": os.path.join(self.root, "embedzk", pid),
            "session_timeout": common.SESSION_TIMEOUT_S,
            "expect_path": expect_path,
        }
        if expect_path and self.profile_dir:
            self.restarts += 1
            config["profile_start"] = os.path.join(self.profile_dir, f"embedzk-restart{self.restarts}.prof")
        return config

    def check(self) -> None:
        """Raise with the reason if embedzk cannot run here."""
        import plyvel  # noqa: F401
        import zmq  # noqa: F401

        import embedzk  # noqa: F401


if __name__ == "__main__":
    common.worker_main(_open, _extra)
