"""Restart of a member holding many znodes: embedzk against ZooKeeper, with where embedzk's time goes.

    python benchmarks/restart_bench.py [--systems embedzk,zookeeper-tick2000] [--znodes 100000] [--reps 3]

The same cluster and workers as compare.py's "restart" figure (benchmarks/compare_*.py): three members, each in a
worker process; ``--znodes`` nodes of 100 bytes are created through one of them; then, --reps times, a follower is
SIGKILLed and started again on its data, timed from the process' launch until it serves the last node created
(interpreter or JVM start included). For embedzk each repetition also prints the parts: importing embedzk, start()
(storage opened and replayed, a leader heard of, the session open; ``leader_known_s`` of it until a leader was
heard of) and catching up until the node is visible. With 1M znodes, set EMBEDZK_BENCH_ELECTION_TICK=50 (a 1 s
election timeout): CPython's full collections, 0.3-0.7 s with a million znodes in the process, outlast the default
0.3 s and the load loses its leader. Medians; every process is killed by its pid at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import compare_common as common  # noqa: E402


def measure(name: str, znodes: int, reps: int) -> dict[str, Any]:
    """Load ``znodes`` into a fresh cluster of ``name`` and restart a follower ``reps`` times."""
    root = tempfile.mkdtemp(prefix="restart-bench-")
    system = compare.make_system(name, root)
    try:
        system.check()
        system.start()
        leader = system.leader()
        loader = (leader + 1) % 3
        began = time.monotonic()
        system.client(loader).call("load", prefix="/load", start=0, count=znodes, batch=500, timeout=1800)
        loaded = time.monotonic() - began
        last = f"/load/n{znodes - 1}"
        for i in range(3):
            system.client(i).call("sync", timeout=300)
        expect_count = system.node_count() if hasattr(system, "node_count") else None
        time.sleep(1.0)  # let the members apply and compact before the first kill
        times: list[float] = []
        parts: list[dict[str, float]] = []
        for rep in range(reps):
            leader = system.leader()
            victim = [i for i in range(3) if i != leader][rep % 2]
            system.kill_member(victim)
            time.sleep(0.2)
            times.append(system.restart_member(victim, expect_path=last, expect_count=expect_count))
            info = getattr(system.client(victim), "start_info", None)
            if isinstance(info, dict):
                parts.append({k: v for k, v in info.items() if k.endswith("_s")})
            system.client(victim).call("sync", timeout=300)
            print(f"  {name} rep {rep + 1}: {times[-1]:.3f} s"
                  + (" (" + ", ".join(f"{k} {v:.3f}" for k, v in parts[-1].items()) + ")" if parts else ""),
                  flush=True)
        return {"load_s": loaded, "restart_s": times, "parts": parts}
    finally:
        system.stop()
        common.PROCESSES.kill_all()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="embedzk,zookeeper-tick2000")
    parser.add_argument("--znodes", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name in args.systems.split(","):
        print(f"{name}: loading {args.znodes:,} znodes", flush=True)
        try:
            results[name] = measure(name, args.znodes, args.reps)
        except Exception as exc:  # a system that cannot run here is reported, the others still measured
            print(f"  {name}: skipped: {exc}", flush=True)
    print()
    for name, result in results.items():
        parts = result["parts"]
        keys = sorted({k for p in parts for k in p})
        medians = ", ".join(f"{k} {statistics.median(p[k] for p in parts if k in p):.3f}" for k in keys)
        print(f"{name}: load {result['load_s']:.1f} s; restart median {statistics.median(result['restart_s']):.3f} s"
              + (f" ({medians})" if medians else ""))
    names = list(results)
    if len(names) == 2:
        a, b = (statistics.median(results[n]["restart_s"]) for n in names)
        print(f"{names[0]} / {names[1]}: {a / b:.2f}x")


if __name__ == "__main__":
    main()
