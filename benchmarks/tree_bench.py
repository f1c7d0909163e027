"""DataTree benchmark: create and read rates, Python memory per znode, and restoring a tree from a snapshot.

    python benchmarks/tree_bench.py [--sizes 100000,1000000] [--runs 3] [--groups 10]

For each size N it builds a tree of N znodes holding 100 bytes each under a few parents (/bench/g{k}/n{i}) by
applying CreateOp transactions, then reads every node back with get(). Rates are the median of ``--runs`` runs.
Memory is measured in a separate build under tracemalloc: traced memory after building minus before, divided by
N. Every node gets its own data object, as values decoded from the log would, so the data is counted.

Restore: the tree's snapshot in the chunks a replica stores (128 KiB) rebuilt at once (what a restart does), and
in the slices a follower installing a leader's snapshot takes between its other work (the replica's
RESTORE_CHUNKS_PER_STEP chunks a step): the total, and the longest step, which is the longest the peer's loop waits
on it (medians of the runs).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc

from embedzk.replica.replica import RESTORE_CHUNKS_PER_STEP
from embedzk.replica.snapshots import CHUNK_BYTES
from embedzk.tree import CreateOp, DataTree, Txn
from embedzk.tree.datatree import TreeRestorer

DATA_BYTES = 100


def _paths(n: int, groups: int) -> list[str]:
    return [f"/bench/g{i % groups}/n{i}" for i in range(n)]


def _prepare(groups: int) -> tuple[DataTree, int]:
    tree = DataTree()
    zxid = 0
    for path in ["/bench"] + [f"/bench/g{k}" for k in range(groups)]:
        zxid += 1
        tree.apply(Txn(0, 0, CreateOp(path)), zxid)
    return tree, zxid


def _build(tree: DataTree, zxid: int, paths: list[str]) -> float:
    """Apply one create per path; return the elapsed seconds. Data objects are made outside the timed loop."""
    txns = [Txn(0, 1_700_000_000_000, CreateOp(p, b"%0100d" % i)) for i, p in enumerate(paths)]
    apply = tree.apply
    start = time.perf_counter()
    for txn in txns:
        zxid += 1
        result = apply(txn, zxid)
        if result.error is not None:
            raise RuntimeError(f"benchmark create failed: {result.error!r}")
    return time.perf_counter() - start


def _read(tree: DataTree, paths: list[str]) -> float:
    get = tree.get
    start = time.perf_counter()
    for path in paths:
        get(path)
    return time.perf_counter() - start


class _FullCollections:
    """Time spent in CPython's full (generation 2) garbage collections while in use."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.count += 1

    def __enter__(self) -> _FullCollections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _restore(tree: DataTree) -> tuple[float, float, float, float, int]:
    """Seconds to restore ``tree`` from its snapshot at once; in steps, the total, the longest step, the longest
    step leaving out full garbage collections, and how many of those ran during the steps."""
    chunks = list(tree.snapshot_chunks(CHUNK_BYTES))
    began = time.perf_counter()
    DataTree.restore(chunks)
    at_once = time.perf_counter() - began
    gc.collect()
    restorer = TreeRestorer(chunks)
    longest = longest_own = 0.0
    with _FullCollections() as collections:
        began = time.perf_counter()
        while True:
            step = time.perf_counter()
            collected = collections.seconds
            done = restorer.step(RESTORE_CHUNKS_PER_STEP)
            took = time.perf_counter() - step
            longest = max(longest, took)
            longest_own = max(longest_own, took - (collections.seconds - collected))
            if done:
                break
        stepped = time.perf_counter() - began
    return at_once, stepped, longest, longest_own, collections.count


def _memory_per_node(n: int, groups: int) -> float:
    paths = _paths(n, groups)
    tree, zxid = _prepare(groups)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, path in enumerate(paths):
        zxid += 1
        # The txn and its result are garbage at once; only what the tree keeps stays traced.
        tree.apply(Txn(0, 1_700_000_000_000, CreateOp(path, b"%0100d" % i)), zxid)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert tree.node_count() == n + groups + 2
    return (after - before) / n


def run(sizes: list[int], runs: int, groups: int) -> None:
    """Print the figures for every size."""
    print(f"python {sys.version.split()[0]}, {DATA_BYTES}-byte values under {groups} parents, median of {runs} runs")
    print(
        f"{'znodes':>10} {'creates/s':>12} {'reads/s':>12} {'read us':>8} {'bytes/znode':>12} "
        f"{'restore s':>10} {'in steps s':>11} {'longest step ms':>16} {'without full gc ms':>19} {'full gcs':>9}"
    )
    for n in sizes:
        paths = _paths(n, groups)
        create_rates, read_rates, restores = [], [], []
        for _ in range(runs):
            tree, zxid = _prepare(groups)
            create_rates.append(n / _build(tree, zxid, paths))
            read_rates.append(n / _read(tree, paths))
            restores.append(_restore(tree))
            del tree
            gc.collect()
        per_node = _memory_per_node(n, groups)
        reads = statistics.median(read_rates)
        at_once, stepped, longest, own, full = (statistics.median(r[k] for r in restores) for k in range(5))
        print(
            f"{n:>10} {statistics.median(create_rates):>12,.0f} {reads:>12,.0f} {1e6 / reads:>8.2f} {per_node:>12.1f} "
            f"{at_once:>10.2f} {stepped:>11.2f} {longest * 1000:>16.1f} {own * 1000:>19.1f} {full:>9.0f}"
        )


def main() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated znode counts")
    parser.add_argument("--runs", type=int, default=3, help="runs per size for the rates (median reported)")
    parser.add_argument("--groups", type=int, default=10, help="how many parents the znodes are spread over")
    args = parser.parse_args()
    run([int(s) for s in args.sizes.split(",")], args.runs, args.groups)


if __name__ == "__main__":
    main()
