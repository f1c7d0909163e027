"""Machine instructions per pipelined write, counted by valgrind: a measure of the CPU a write costs that does not
move with the machine's speed.

    python benchmarks/instructions_bench.py [--writes 2000] [--runs 2] [--checkout DIR ...]

On a shared or virtual machine the CPU time of the same build can drift by 30 % from one run to the next (the
host's load, its clock), which hides any change smaller than that. Instructions do not drift: this counts them
with ``valgrind --tool=callgrind`` for a whole cluster in one process (``LocalCluster``: three peers over
``inproc://``, in memory, a client on a follower creating 100-byte znodes with at most 100 outstanding), once with
a few writes and once with ``--writes`` more, and divides the difference by ``--writes``: what starting, warming up
and stopping cost cancels out. Each checkout given (default: this one) is measured ``--runs`` times, in turns, and
the median printed, with the ratio to the first. Runs of one build differ by a few percent (the threads' turns
change how many writes each loop iteration batches).

What it leaves out: the disks (the storage is in memory), ZeroMQ's tcp path and I/O threads, and the costs that are
not instructions (cache misses, waiting for a thread to be scheduled). It is for comparing two builds of the code,
not for predicting throughput: ``peer_bench.py`` does that. valgrind runs the interpreter about 50 times slower; a
run takes a minute or two.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))

# The workload, run under valgrind by the interpreter itself (not a launcher script: valgrind does not follow the
# exec of a shim such as pyenv's unless told to).
_WORKLOAD = r"""
import sys, threading
sys.path.insert(0, sys.argv[1])
from embedzk.testing import LocalCluster

n, window = int(sys.argv[2]), 100
# Long ticks: under valgrind the loops run about 50 times slower, so a tick's work (heartbeats, session pings, the
# membership's rounds) would count for 50 times more of it per write than in a real run, and vary with how fast the
# machine is that day. And a long election timeout: an election midway would count its own instructions.
with LocalCluster(n=3, tick_interval=0.5, election_tick=10, session_timeout=30.0) as cluster:
    cluster.wait_connected()
    leader = cluster.leader()
    client = next(p for p in cluster.peers if p is not leader)
    client.ensure_path("/bench")
    slots = threading.BoundedSemaphore(window)
    done = threading.Event()
    left = [n]
    lock = threading.Lock()

    def completed(_future):
        slots.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    for i in range(n):
        slots.acquire()
        client.create_async(f"/bench/n{i}", b"x" * 100).add_done_callback(completed)
    if not done.wait(3600):
        raise SystemExit("the writes did not complete")
    for peer in cluster.peers:
        peer.sync()
"""

_BASE_WRITES = 200


def _instructions(checkout: str, writes: int, workdir: str) -> int:
    script = os.path.join(workdir, "workload.py")
    with open(script, "w") as f:
        f.write(_WORKLOAD)
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={os.path.join(workdir, 'callgrind.out')}",
            sys.executable,
            script,
            checkout,
            str(writes),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run failed ({out.returncode}): {out.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000, help="writes counted (beyond the base run's)")
    parser.add_argument("--runs", type=int, default=2, help="measurements per checkout")
    parser.add_argument(
        "--checkout", action="append", default=None, help="a checkout of embedzk to measure (repeatable)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    checkouts = [os.path.abspath(c) for c in (args.checkout or [os.path.dirname(_HERE)])]
    per_write: dict[str, list[float]] = {c: [] for c in checkouts}
    with tempfile.TemporaryDirectory(prefix="embedzk-instructions-") as workdir:
        for run in range(args.runs):
            for checkout in checkouts:
                base = _instructions(checkout, _BASE_WRITES, workdir)
                more = _instructions(checkout, _BASE_WRITES + args.writes, workdir)
                value = (more - base) / args.writes
                per_write[checkout].append(value)
                print(f"run {run + 1}, {checkout}: {value:,.0f} instructions per write", flush=True)
    first = statistics.median(per_write[checkouts[0]])
    print(f"\ninstructions per pipelined write (3 peers and the client in one process), median of {args.runs}:")
    for checkout in checkouts:
        value = statistics.median(per_write[checkout])
        print(f"  {checkout:<50} {value:>12,.0f}   {value / first:.3f}x")


if __name__ == "__main__":
    main()
