"""Synced appends per second of LevelDBStorage, by batch size.

Each append() is one LevelDB write batch with sync=True (one fsync), as the peer's loop issues once per iteration
(group commit). Prints, for batches of 1, 10, 100 and 1000 entries of ~150 bytes, the median over 3 runs of
appends/s and entries/s. Run: ``python benchmarks/persist_bench.py [--seconds S] [--dir PATH]``; ``--dir`` picks
the file system measured (the default is a temporary directory).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from embedzk.consensus.types import ConfState, Entry, HardState
from embedzk.persist import LevelDBStorage

BATCH_SIZES = (1, 10, 100, 1000)
RUNS = 3
ENTRY_BYTES = 150


def run_once(path: Path, batch: int, seconds: float) -> float:
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


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one run (default 2)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as root:
        print(f"synced appends of ~{ENTRY_BYTES}-byte entries in {root}; median of {RUNS} runs of {args.seconds} s")
        print(f"{'batch':>6} {'appends/s':>12} {'entries/s':>12} {'ms/append':>10}")
        for batch in BATCH_SIZES:
            rates = [run_once(Path(root) / f"b{batch}-{n}", batch, args.seconds) for n in range(RUNS)]
            rate = statistics.median(rates)
            print(f"{batch:>6} {rate:>12.0f} {rate * batch:>12.0f} {1000 / rate:>10.3f}")


if __name__ == "__main__":
    main()
