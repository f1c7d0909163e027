"""PySyncObj in compare.py: three worker processes, each a SyncObj node (tcp on loopback) replicating a ReplDict
and a ReplLockManager, with its journal (``journalFile``) and full dump (``fullDumpFile``) on disk.

PySyncObj has no paths: a path is a key of the replicated dict. It has no watches and no election recipe, so the
watch and the election workloads do not run on it. Its journal is a memory-mapped file that it never fsyncs (the operating system writes it back when it
likes), so its writes do not pay for an fsync, where ZooKeeper's and embedzk's do. ``useFork`` is off so that log
compaction does not fork processes this run did not start (compaction then serializes in the node's thread).

Run as ``python benchmarks/compare_pysyncobj.py --agent CONFIG`` it is one such worker (see compare_common).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common

NAME = "pysyncobj"


# ----------------------------------------------------------------------------------------------------------------
# the worker


class PySyncObjOps(common.Ops):
    def __init__(self, node: Any, data: Any, locks: Any) -> None:
        self.node = node
        self.data = data
        self.locks = locks
        self._seq = 0

    def ensure(self, path: str) -> None:
        pass  # no hierarchy

    def create_async(self, path: str, value: bytes, done: Callable[[BaseException | None], None]) -> None:
        from pysyncobj import FAIL_REASON

        def finished(result: Any, error: Any) -> None:
            done(None if error == FAIL_REASON.SUCCESS else RuntimeError(f"PySyncObj fail reason {error}"))

        self.data.set(path, value, callback=finished)

    def set(self, path: str, value: bytes) -> None:
        self.data.set(path, value, sync=True, timeout=30)

    def get(self, path: str) -> Any:
        return self.data.get(path)

    def watch(self, path: str, on_event: Callable[[], None]) -> None:
        raise NotImplementedError("PySyncObj has no watches")

    def lock(self, path: str) -> tuple[Callable[[float], bool], Callable[[], None]]:
        # ReplLockManager has no blocking acquire: tryAcquire (one replicated command) until it succeeds.
        from pysyncobj import SyncObjException

        locks = self.locks

        def acquire(timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if locks.tryAcquire(path, sync=True, timeout=max(1.0, deadline - time.monotonic())):
                        return True
                except SyncObjException:  # the command timed out: try again while time is left
                    pass
            return False

        def release() -> None:
            locks.release(path, sync=True, timeout=30)

        return acquire, release

    def write_once(self, path: str, timeout: float) -> None:
        self._seq += 1
        self.data.set(f"{path}-{os.getpid()}-{self._seq}", b"", sync=True, timeout=timeout)

    def load(self, prefix: str, start: int, count: int, batch: int) -> None:
        from pysyncobj import FAIL_REASON

        slots = threading.Semaphore(8)
        errors: list[Any] = []
        done = threading.Semaphore(0)

        def finished(result: Any, error: Any) -> None:
            if error != FAIL_REASON.SUCCESS:
                errors.append(error)
            slots.release()
            done.release()

        n = 0
        for first in range(start, start + count, batch):
            slots.acquire()
            chunk = {f"{prefix}/n{i}": common.VALUE for i in range(first, min(first + batch, start + count))}
            self.data.update(chunk, callback=finished)
            n += 1
        for _ in range(n):
            if not done.acquire(timeout=120):
                raise RuntimeError("bulk load did not complete")
        if errors:
            raise RuntimeError(f"{len(errors)} bulk updates failed: {errors[0]}")

    def close(self) -> None:
        self.locks.destroy()
        self.node.destroy()


def _open(config: dict[str, Any]) -> tuple[common.Ops, dict[str, Any]]:
    from pysyncobj import SyncObj, SyncObjConf
    from pysyncobj.batteries import ReplDict, ReplLockManager

    os.makedirs(config["data_dir"], exist_ok=True)
    conf = SyncObjConf(
        journalFile=os.path.join(config["data_dir"], "journal.bin"),
        fullDumpFile=os.path.join(config["data_dir"], "dump.bin"),
        useFork=False,
        dynamicMembershipChange=False,
    )
    data = ReplDict()
    locks = ReplLockManager(autoUnlockTime=10.0)
    node = SyncObj(config["self"], config["partners"], conf=conf, consumers=[data, locks])
    deadline = time.monotonic() + 120
    expect = config.get("expect_key")
    while not (node.isReady() and node._getLeader() is not None and (expect is None or expect in data)):
        if time.monotonic() > deadline:
            raise RuntimeError("PySyncObj node not ready within 120s")
        time.sleep(0.002)
    return PySyncObjOps(node, data, locks), {"self": config["self"]}


def _extra(ops: common.Ops, op: str, args: dict[str, Any]) -> Any:
    assert isinstance(ops, PySyncObjOps)
    if op == "leader":
        leader = ops.node._getLeader()
        return None if leader is None else str(getattr(leader, "address", leader))
    if op == "count":
        return len(ops.data)
    raise ValueError(f"unknown op {op}")


# ----------------------------------------------------------------------------------------------------------------
# the driver's side


class System(common.WorkerMembers):
    """Three PySyncObj nodes, one per worker process."""

    name = NAME
    module_file = os.path.abspath(__file__)
    description = ("PySyncObj: 3 nodes in 3 worker processes, tcp on loopback, ReplDict + ReplLockManager, "
                   "journal and dump files on disk (journal not fsynced), default timeouts")
    supports_watches = False
    supports_election = False  # no election recipe among its batteries
    local_reads = True

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root
        ports = common.free_ports(3)
        self.names = [f"127.0.0.1:{p}" for p in ports]  # a node's address is its name, as the leader op answers

    def _config(self, i: int, expect_path: str | None = None) -> dict[str, Any]:
        return {
            "self": self.names[i],
            "partners": [a for j, a in enumerate(self.names) if j != i],
            "data_dir": os.path.join(self.root, "pysyncobj", f"n{i + 1}"),
            "expect_key": expect_path,
        }

    def check(self) -> None:
        import pysyncobj  # noqa: F401


if __name__ == "__main__":
    common.worker_main(_open, _extra)
