"""Recipes across processes: Lock handoffs per second, and how long leadership takes to move after a SIGKILL.

    python benchmarks/recipes_bench.py [--session-timeout 2.0] [--acquisitions 300]

Three worker processes (``tests/recipe_worker.py``: one Peer each, tcp on loopback, state in memory) form a
cluster.

- Lock: every worker takes and releases the same Lock ``--acquisitions`` times as fast as it can; handoffs per
  second is the number of acquisitions over the time from the first acquire to the last release (from the
  workers' CLOCK_MONOTONIC logs), and the mutual exclusion of the log is checked on the way.
- Election: every worker runs an Election; the leader's process is SIGKILLed and the time until the next
  contender's function starts is measured, twice: with the elected process a Raft follower, and with it the Raft
  leader (which adds a Raft election). The contender's node goes when its session expires, so the figure is
  about the session timeout (pings reach the leader every third of it, so expiry comes 2/3 to 1 of it after death).

Each figure is the median of 3 runs, each on a new cluster.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.recipe_worker import RecipeWorker, WorkerError, start_cluster  # noqa: E402

RUNS = 3


def lock_handoffs(session_timeout: float, acquisitions: int) -> tuple[float, float]:
    """(acquisitions per second, share of acquisitions that moved to another process)."""
    workers = start_cluster(3, session_timeout, prefix="b")
    try:
        path = f"/bench-lock-{uuid.uuid4().hex[:6]}"
        futures = [w.submit("lock_loop", path=path, count=acquisitions) for w in workers]
        logs = [f.result(600) for f in futures]
    finally:
        for w in workers:
            w.kill()
    intervals = sorted((log[i][0], log[i + 1][0], log[i][1]) for log in logs for i in range(0, len(log), 2))
    for (_s, end, _p), (start, _e, _q) in itertools.pairwise(intervals):
        assert end < start, "two holders at once"
    elapsed = (intervals[-1][1] - intervals[0][0]) / 1e9
    moved = sum(1 for a, b in itertools.pairwise(intervals) if a[2] != b[2])
    return len(intervals) / elapsed, moved / max(1, len(intervals) - 1)


def election_failover(session_timeout: float, kill_raft_leader: bool) -> float:
    """Seconds from SIGKILL of the elected process to the next contender's function starting."""
    workers = start_cluster(3, session_timeout, prefix="e")
    try:
        # The first contender is the process that leads the Raft cluster, or one that does not.
        ordered = sorted(workers, key=lambda w: bool(w.peer("is_leader")) != kill_raft_leader)
        path = f"/bench-election-{uuid.uuid4().hex[:6]}"
        for i, w in enumerate(ordered):
            w.new("e", "Election", path, f"c{i}")
        for n, w in enumerate(ordered):
            w.submit("elect", name="e")
            _wait_children(w, path, n + 1)
        ordered[0].next_event("leader")
        killed_at = ordered[0].kill()
        event = ordered[1].next_event("leader", timeout=60)
        return (event["t"] - killed_at) / 1e9
    finally:
        for w in workers:
            w.kill()


def _wait_children(worker: RecipeWorker, path: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        worker.peer("sync")
        try:
            if len(worker.peer("get_children", path)) >= n:
                return
        except WorkerError as exc:
            if exc.kind != "NoNodeError":
                raise
        time.sleep(0.02)
    raise TimeoutError(f"{path} never had {n} contenders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--session-timeout", type=float, default=2.0)
    parser.add_argument("--acquisitions", type=int, default=300, help="per process")
    args = parser.parse_args()

    rates, moved = zip(*(lock_handoffs(args.session_timeout, args.acquisitions) for _ in range(RUNS)))
    print(f"Lock, 3 processes x {args.acquisitions} acquisitions (tcp loopback, median of {RUNS}):")
    print(f"  {statistics.median(rates):8.0f} acquisitions/s   "
          f"({statistics.median(moved):.0%} of them handed to another process; runs: "
          f"{', '.join(f'{r:.0f}' for r in rates)})")

    print(f"Election, leader's process SIGKILLed, session timeout {args.session_timeout:g} s (median of {RUNS}):")
    for label, kill_raft_leader in (("elected process is a Raft follower", False),
                                    ("elected process is the Raft leader", True)):
        times = [election_failover(args.session_timeout, kill_raft_leader) for _ in range(RUNS)]
        print(f"  {label}: {statistics.median(times):6.2f} s until the next leader runs   "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
