"""Persistence benchmarks: synced appends, the loop's pause for a snapshot, and a peer's restart time.

    python benchmarks/persist_bench.py [appends] [pause] [restart] [--znodes 100000,1000000] [--runs 3]
                                       [--seconds S] [--dir PATH] [--profile]

``appends``: synced appends per second of LevelDBStorage, for batches of 1, 10, 100 and 1000 entries of ~150
bytes. Each append() is one LevelDB write batch with sync=True (one fsync), as the peer's loop issues once per
iteration (group commit).

``pause``: how long a snapshot of a tree of N znodes (100 bytes each, 1000 per parent) stops the peer's loop.
*Synchronous* is what taking it in one go costs (encode every chunk, then ``save_snapshot``); *in parts* is what
the replica does (embedzk/replica/snapshots.py): one bounded step per loop iteration, each step encoding about
``STEP_BYTES`` of chunks and saving them as a SnapshotPart, while transactions go on being applied between steps
(copy-on-write). For the parts, the longest step is the loop's pause; all steps together are the work.

``restart``: the time from ``Peer(...).start()`` on an existing data_dir until the peer is CONNECTED and reads
its tree, for a peer holding N znodes of 100 bytes: restore of the snapshot from LevelDB, replay of the log after
it (a few thousand entries), election and session. The data_dir is made directly (LevelDBStorage plus a tree
snapshot: minutes faster than a million creates), then a solo Peer writes 2000 more znodes on it so that there is
a log to replay; each restart runs in a fresh process. ``--profile`` prints cProfile's top functions of one
restart.

Figures are medians of ``--runs`` runs (restart and the synchronous pause) and go to stdout as a table.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from embedzk.codec import encode
from embedzk.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from embedzk.persist import LevelDBStorage
from embedzk.replica import snapshots
from embedzk.replica.messages import SnapshotHeader
from embedzk.replica.replica import SNAPSHOT_FORMAT
from embedzk.tree import DataTree, SetDataOp, Txn
from embedzk.tree import snapshot as tree_snapshot
from embedzk.tree.digest import node_digest

BATCH_SIZES = (1, 10, 100, 1000)
ENTRY_BYTES = 150
DATA_BYTES = 100
FANOUT = 1000
#: Znodes the solo peer writes after the snapshot, for a log to replay at restart.
LOG_TAIL = 2000
_META = struct.Struct("<qqqqqiiiq")
_TIME_MS = 1_700_000_000_000


# --- appends ---------------------------------------------------------------------------------------------------


def append_rate(path: Path, batch: int, seconds: float) -> float:
    """Append batches of ``batch`` entries for about ``seconds``; return appends per second."""
    data = os.urandom(ENTRY_BYTES)
    with LevelDBStorage.open(path, cluster_id="bench", peer_id="a", conf_state=ConfState(("a",))) as storage:
        index = storage.last_index()
        appends = 0
        start = time.perf_counter()
        while True:
            entries = [Entry(1, index + k + 1, data=data) for k in range(batch)]
            storage.append(entries, HardState(term=1, vote="a", commit=index))
            index += batch
            appends += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and appends >= 3:
                return appends / elapsed


def bench_appends(root: Path, runs: int, seconds: float) -> None:
    print(f"\nsynced appends of ~{ENTRY_BYTES}-byte entries in {root}; median of {runs} runs of {seconds} s")
    print(f"{'batch':>6} {'appends/s':>12} {'entries/s':>12} {'ms/append':>10}")
    for batch in BATCH_SIZES:
        rates = [append_rate(root / f"b{batch}-{n}", batch, seconds) for n in range(runs)]
        rate = statistics.median(rates)
        print(f"{batch:>6} {rate:>12.0f} {rate * batch:>12.0f} {1000 / rate:>10.3f}", flush=True)


# --- a big tree, fast -----------------------------------------------------------------------------------------


def tree_chunks(znodes: int, max_chunk_bytes: int = snapshots.CHUNK_BYTES) -> tuple[list[bytes], int]:
    """The snapshot chunks of a tree of ``znodes`` znodes (plus the root): ``znodes / 1000`` parents of 999 znodes
    of 100 bytes, as if created by one create per entry (zxids 1..N); and the last zxid. Written straight in the snapshot format: building the tree
    through a million apply() calls would take minutes, and restore() checks every record all the same."""
    data = b"x" * DATA_BYTES

    parents = max(1, znodes // FANOUT)

    def records() -> Any:
        # The root, then /d{p} and its FANOUT - 1 children, in pre-order (zxid = creation order).
        yield ("/", b"", 0, 0, 1 + (parents - 1) * FANOUT, 0, 0, 0, parents, 0, 0)
        for p in range(parents):
            zxid = 1 + p * FANOUT
            yield (f"/d{p}", b"", zxid, zxid, zxid + FANOUT - 1, _TIME_MS, _TIME_MS, 0, FANOUT - 1, 0, 0)
            for c in range(FANOUT - 1):
                zxid += 1
                yield (f"/d{p}/n{c}", data, zxid, zxid, zxid, _TIME_MS, _TIME_MS, 0, 0, 0, 0)

    digest = 0
    count = 0
    last = 0
    for record in records():
        digest += node_digest(record[0], _META.pack(*record[2:]), record[1])
        count += 1
        last = max(last, record[2])
    header = tree_snapshot.SnapshotHeader(tree_snapshot.FORMAT_VERSION, last, 1 << 20)
    trailer = tree_snapshot.SnapshotTrailer(count, 0, digest, last)
    return list(tree_snapshot.write_snapshot(header, [], records(), trailer, max_chunk_bytes)), last


# --- the loop's pause for a snapshot ------------------------------------------------------------------------------


def _storage_at(path: Path, index: int) -> LevelDBStorage:
    """A storage whose log holds entry ``index`` (term 1), so a snapshot at ``index`` can be saved."""
    storage = LevelDBStorage.open(path, cluster_id="bench", peer_id="a", conf_state=ConfState(("a",)))
    storage.install_snapshot(SnapshotMeta(index - 1, 1, ConfState(("a",))), [])
    storage.append([Entry(1, index)], HardState(1, "a", index))
    return storage


def pause_sync(tree: DataTree, storage: LevelDBStorage, meta: SnapshotMeta) -> float:
    """The old way: every chunk at once, then one save_snapshot; the whole of it is the loop's pause."""
    began = time.perf_counter()
    chunks = [encode(SnapshotHeader(SNAPSHOT_FORMAT, {}, 0)), *tree.snapshot_chunks()]
    storage.save_snapshot(meta, chunks)
    return time.perf_counter() - began


def pause_in_parts(tree: DataTree, storage: LevelDBStorage, meta: SnapshotMeta) -> dict[str, Any]:
    """The replica's way, with 20 setData applied between steps (on random nodes, so copy-on-write works)."""
    rng = random.Random(1)
    parents = max(1, (tree.node_count() - 1) // FANOUT)
    began = time.perf_counter()
    job = snapshots.SnapshotJob(
        meta, tree, encode(SnapshotHeader(SNAPSHOT_FORMAT, {}, 0)), tree.snapshot_chunks(snapshots.CHUNK_BYTES), 0
    )
    steps: list[float] = []
    writes: list[float] = []
    zxid = tree.last_zxid
    done = False
    while not done:
        t = time.perf_counter()
        chunks, done = job.step()
        storage.save_snapshot(meta, chunks)
        steps.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(20):
            zxid += 1
            path = f"/d{rng.randrange(parents)}/n{rng.randrange(FANOUT - 1)}"
            tree.apply(Txn(0, _TIME_MS, SetDataOp(path, b"y" * DATA_BYTES)), zxid)
        writes.append(time.perf_counter() - t)
    total = time.perf_counter() - began
    steps.sort()
    return {
        "steps": len(steps),
        "max": steps[-1],
        "p99": steps[min(len(steps) - 1, int(len(steps) * 0.99))],
        "median": statistics.median(steps),
        "work": sum(steps),
        "total": total,
        "write_max": max(writes),
    }


def bench_pause(root: Path, sizes: list[int], runs: int) -> None:
    print(f"\nloop pause for a snapshot (tree chunks of {snapshots.CHUNK_BYTES // 1024} KiB, steps of "
          f"{snapshots.STEP_BYTES // 1024} KiB); synchronous: median of {runs} runs")
    print(f"{'znodes':>9} {'sync pause s':>13} | {'parts':>6} {'max step ms':>12} {'p99 ms':>8} {'median ms':>10} "
          f"{'work s':>8} {'20 writes max ms':>17}")
    for n in sizes:
        chunks, last = tree_chunks(n)
        tree = DataTree.restore(chunks)
        del chunks
        gc.collect()
        meta = SnapshotMeta(last, 1, ConfState(("a",)))
        sync = []
        for run in range(runs):
            with _storage_at(root / f"pause-sync-{n}-{run}", last) as storage:
                sync.append(pause_sync(tree, storage, meta))
        with _storage_at(root / f"pause-parts-{n}", last) as storage:
            parts = pause_in_parts(tree, storage, meta)
            assert storage.snapshot_meta() == meta
        print(f"{n:>9} {statistics.median(sync):>13.2f} | {parts['steps']:>6} {parts['max'] * 1000:>12.1f} "
              f"{parts['p99'] * 1000:>8.1f} {parts['median'] * 1000:>10.1f} {parts['work']:>8.2f} "
              f"{parts['write_max'] * 1000:>17.2f}", flush=True)
        del tree
        gc.collect()


# --- restart ---------------------------------------------------------------------------------------------------


def make_data_dir(path: Path, znodes: int) -> None:
    """A solo peer's data_dir holding ``znodes`` znodes in its snapshot, then LOG_TAIL more written by a Peer."""
    chunks, last = tree_chunks(znodes)
    conf = ConfState(("a",))
    with LevelDBStorage.open(path, cluster_id="bench", peer_id="a", conf_state=conf) as storage:
        header = encode(SnapshotHeader(SNAPSHOT_FORMAT, {}, _TIME_MS))
        storage.install_snapshot(SnapshotMeta(last, 1, conf), [header, *chunks])
        storage.append([], HardState(1, "a", last))
    del chunks
    gc.collect()
    from embedzk import Peer

    peer = Peer("a", data_dir=path, cluster="bench", snapshot_entries=1_000_000)
    peer.start()
    futures = []
    for i in range(LOG_TAIL):
        futures.append(peer.create_async(f"/tail{i}", b"t" * DATA_BYTES))
        if len(futures) >= 1000:
            for f in futures:
                f.result()
            futures = []
    for f in futures:
        f.result()
    peer.stop()


def restart_once(path: Path, expected: int, profile: bool) -> float:
    """Restart a Peer on ``path`` in a fresh process; return seconds until it is connected and reads its tree."""
    cmd = [sys.executable, os.path.abspath(__file__), "_restart", str(path), str(expected)]
    if profile:
        cmd.append("--profile")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    if profile:
        print(out.stderr)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def _restart_child(path: str, expected: int, profile: bool) -> None:
    from embedzk import Peer

    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    peer = Peer("a", data_dir=path, cluster="bench", snapshot_entries=1_000_000)
    peer.start(timeout=300)
    data, _stat = peer.get("/d0/n0")
    tail, _stat = peer.get(f"/tail{LOG_TAIL - 1}")
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - began
    assert data == b"x" * DATA_BYTES and tail == b"t" * DATA_BYTES
    count = peer.stats()["znode_count"]
    assert count == expected, (count, expected)
    peer.stop(close_session=False)
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(25)
        stats.sort_stats("tottime").print_stats(15)
    print(json.dumps({"seconds": seconds}))


def bench_restart(root: Path, sizes: list[int], runs: int, profile: bool) -> None:
    print(f"\nrestart of a solo peer on its data_dir: Peer.start() until CONNECTED and the tree reads; "
          f"snapshot + {LOG_TAIL} entries of log; median of {runs} runs, each in a fresh process")
    print(f"{'znodes':>9} {'build s':>8} {'restart s':>10} {'runs':>24}")
    for n in sizes:
        path = root / f"restart-{n}"
        began = time.perf_counter()
        make_data_dir(path, n)
        built = time.perf_counter() - began
        expected = n + 1 + LOG_TAIL  # the root too
        times = [restart_once(path, expected, profile and run == 0) for run in range(runs)]
        shown = ", ".join(f"{t:.2f}" for t in times)
        print(f"{n:>9} {built:>8.1f} {statistics.median(times):>10.2f} {shown:>24}", flush=True)


def main() -> None:
    """Measure and print the tables."""
    if len(sys.argv) > 1 and sys.argv[1] == "_restart":
        _restart_child(sys.argv[2], int(sys.argv[3]), "--profile" in sys.argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", help="appends, pause, restart: what to measure (default: all three)")
    parser.add_argument("--znodes", default="100000,1000000", help="tree sizes for pause and restart")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one append run (default 2)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    parser.add_argument("--profile", action="store_true", help="cProfile the first restart of each size")
    args = parser.parse_args()
    what = args.what or ["appends", "pause", "restart"]
    unknown = set(what) - {"appends", "pause", "restart"}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    sizes = [int(s) for s in args.znodes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        if "appends" in what:
            bench_appends(root, args.runs, args.seconds)
        if "pause" in what:
            bench_pause(root, sizes, args.runs)
        if "restart" in what:
            bench_restart(root, sizes, args.runs, args.profile)


if __name__ == "__main__":
    main()
