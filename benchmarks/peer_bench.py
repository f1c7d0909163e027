"""Three peers in three processes over tcp on loopback, LevelDB with sync: what an application sees.

    python benchmarks/peer_bench.py [--reps 3] [--writes 20000] [--profile DIR]

Each repetition starts a fresh cluster of three worker processes (default Peer settings, data in a temporary
directory), then measures, from a client inside one worker process (a follower unless ``--client leader``):

- pipelined writes/s: ``create_async`` of 100-byte znodes with at most 1,000 outstanding; and the CPU time
  (user + system, every thread) each process spent per write meanwhile: on a shared machine, the figure that moves
  least from run to run, and the one that bounds throughput (the three processes share the cores);
- write latency p50/p99: sequential ``set`` calls, one at a time;
- local read latency: ``get`` of a 100-byte znode (the median of many);
- watch latency across processes: one worker sets a value carrying its clock, 5 ms apart, another's persistent
  watch receives it (same machine, same clock); and those writes' own latency, which the idling between them makes
  longer than back-to-back writes';
- failover: the leader's process is SIGKILLed; the time until a survivor knows a new leader, and until a write on
  it commits.

It prints the median of the repetitions for each figure. ``--profile DIR`` writes cProfiles of the client's thread
and of the loop threads of the client's and the leader's processes during the pipelined and sequential writes, as
DIR/rep<N>-<peer>-<thread>.prof (read them with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The worker protocol and the process bookkeeping are compare.py's; so is the embedzk worker, which opens the Peer
# with default settings when its configuration names no session_timeout.
import compare_common as common
import compare_embedzk

# ----------------------------------------------------------------------------------------------------------------
# the worker process: compare.py's embedzk worker (pipelined and sequential writes, profiles, the leader) with the
# figures only this benchmark takes


_watch_seen: list[float] = []


def _extra(ops: common.Ops, op: str, args: dict[str, Any]) -> Any:
    """The operations of this benchmark's own, then those of compare.py's embedzk worker."""
    assert isinstance(ops, compare_embedzk.EmbedZKOps)
    peer = ops.peer
    if op == "create":
        peer.ensure_path(args["path"].rsplit("/", 1)[0] or "/")
        if peer.exists(args["path"]) is None:
            peer.create(args["path"], common.VALUE)
        return None
    if op == "reads":
        return _reads(peer, args["path"], args["n"])
    if op == "stamped_watch_setup":
        _stamped_watch(peer, args["path"])
        return None
    if op == "stamped_watch_write":
        took = []
        for _ in range(args["n"]):
            began = time.time()
            peer.set(args["path"], repr(began).encode())
            took.append(time.time() - began)
            time.sleep(args["gap"])
        return took
    if op == "stamped_watch_results":
        seen = list(_watch_seen)
        _watch_seen.clear()
        return seen
    if op == "await_failover":
        return _await_failover(peer, args["old"], args["killed_at"])
    if op == "cpu_seconds":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    return compare_embedzk._extra(ops, op, args)


def _reads(peer: Any, path: str, n: int) -> float:
    """The median over batches of 100 local gets of the time per get, in seconds."""
    peer.sync()
    batch = 100
    samples = []
    get = peer.get
    for _ in range(n // batch):
        began = time.perf_counter()
        for _ in range(batch):
            get(path)
        samples.append((time.perf_counter() - began) / batch)
    return statistics.median(samples)


def _stamped_watch(peer: Any, path: str) -> None:
    """A persistent watch on ``path``, whose value is the writer's clock: each notification's latency is the time
    it arrived minus that value (same machine, same clock)."""

    def receiver(sender: Any, event: Any) -> None:
        now = time.time()
        try:
            data, _stat = peer.get(path)
            _watch_seen.append(now - float(data.decode()))
        except Exception:  # the node is gone, or holds no clock yet
            return

    peer.watch(path).connect(receiver, weak=False)


def _await_failover(peer: Any, old: str, killed_at: float) -> dict[str, float]:
    """After the leader ``old`` was killed at ``killed_at``: seconds until this peer knows another leader, and
    until a write from it commits."""
    while peer.leader in (None, old):
        time.sleep(0.0005)
    elected = time.time()
    while True:
        try:
            peer.create("/bench/after-failover", b"", sequence=True)
            break
        except Exception:
            time.sleep(0.001)
    return {"elected": elected - killed_at, "write": time.time() - killed_at}


# ----------------------------------------------------------------------------------------------------------------
# the driver


def one_repetition(rep: int, args: argparse.Namespace, root: str) -> dict[str, float]:
    ids = ["a", "b", "c"]
    addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(ids, common.free_ports(3))}
    agents: dict[str, common.Agent] = {}
    try:
        for pid in ids:
            config = {
                "id": pid,
                "bind": addresses[pid],
                "peers": {o: a for o, a in addresses.items() if o != pid},
                "data_dir": os.path.join(root, f"rep{rep}", pid),
            }
            agents[pid] = common.Agent(os.path.abspath(__file__), config, f"peer-{pid}")
        for agent in agents.values():
            agent.wait_started(90)
        leader_id = agents["a"].call("leader")
        followers = [pid for pid in ids if pid != leader_id]
        client_id = leader_id if args.client == "leader" else followers[0]
        client = agents[client_id]
        other = agents[followers[1]]
        results: dict[str, float] = {}
        client.call("create", path="/bench/seq")
        client.call("create", path="/bench/read")
        client.call("create", path="/bench/watch")

        # The client's process and the leader's (one process when the client is the leader).
        profiled = {pid: agents[pid] for pid in (client_id, leader_id)}
        if args.profile:
            for agent in profiled.values():
                agent.call("profile", on=True)
        client.call("pipelined", n=1000, window=args.window, prefix="/bench/warmup", timeout=600)
        cpu_before = {pid: agent.call("cpu_seconds") for pid, agent in agents.items()}
        results["writes_per_s"] = client.call("pipelined", n=args.writes, window=args.window, prefix="/bench/pipe",
                                              timeout=600)
        time.sleep(0.2)  # the last commits reach the third member
        roles = {leader_id: "leader", client_id: "client"} if client_id != leader_id else {leader_id: "leader"}
        for n, pid in enumerate(pid for pid in ids if pid not in roles):
            roles[pid] = "follower" if n == 0 else "follower2"
        for pid, agent in agents.items():
            spent = agent.call("cpu_seconds") - cpu_before[pid]
            results[f"cpu_us_{roles[pid]}"] = spent / args.writes * 1e6
        results["cpu_us_total"] = sum(results[f"cpu_us_{role}"] for role in roles.values())
        seq = client.call("sequential", path="/bench/seq", n=args.sequential, timeout=600)
        if args.profile:
            for pid, agent in profiled.items():
                agent.call("profile", on=False, prefix=os.path.join(args.profile, f"rep{rep}-{pid}"))
        results["write_p50_ms"] = seq["p50"] * 1000
        results["write_p99_ms"] = seq["p99"] * 1000
        results["read_us"] = client.call("reads", path="/bench/read", n=100_000, timeout=600) * 1e6

        other.call("stamped_watch_setup", path="/bench/watch")
        spaced = sorted(client.call("stamped_watch_write", path="/bench/watch", n=200, gap=0.005, timeout=600))
        time.sleep(0.5)
        seen = sorted(other.call("stamped_watch_results"))
        if not seen:
            raise RuntimeError("no watch notification arrived")
        results["watch_p50_ms"] = seen[len(seen) // 2] * 1000
        results["watch_p99_ms"] = seen[int(len(seen) * 0.99)] * 1000
        # The same writes' own latency: 5 ms apart, every process idles between them and wakes up for each, which
        # back-to-back writes do not (the watch latency is this plus the hand-over, not the sequential figure).
        results["write_spaced_p50_ms"] = spaced[len(spaced) // 2] * 1000

        survivor = agents[followers[0]]
        time.sleep(1.0)  # let the cluster settle (sessions pinged, logs caught up)
        survivor.send("await_failover", old=leader_id, killed_at=time.time())
        agents[leader_id].kill()
        failover = survivor.answer(timeout=120)
        results["failover_elected_ms"] = failover["elected"] * 1000
        results["failover_write_ms"] = failover["write"] * 1000
        return results
    finally:
        for agent in agents.values():
            agent.close()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--agent":
        common.serve(compare_embedzk._open, json.loads(sys.argv[2]), _extra)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--writes", type=int, default=20_000, help="pipelined writes per repetition")
    parser.add_argument("--window", type=int, default=1000, help="outstanding pipelined writes")
    parser.add_argument("--sequential", type=int, default=2000, help="sequential writes per repetition")
    parser.add_argument("--client", choices=("follower", "leader"), default="follower")
    parser.add_argument("--profile", default=None, help="write cProfile output of the client and leader here")
    args = parser.parse_args()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        args.profile = os.path.abspath(args.profile)
    atexit.register(common.PROCESSES.kill_all)  # no worker outlives the run, whatever happens
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="embedzk-bench-") as root:
        for rep in range(args.reps):
            result = one_repetition(rep, args, root)
            print(f"repetition {rep + 1}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()), flush=True)
            runs.append(result)
    print(f"\n3 peers, 3 processes, tcp on loopback, LevelDB with sync; client on the {args.client}; "
          f"median of {len(runs)} repetitions")
    labels = {
        "writes_per_s": (f"pipelined writes (window {args.window})", "writes/s"),
        "cpu_us_client": ("  CPU per write: the client's process", "µs"),
        "cpu_us_leader": ("  CPU per write: the leader's process", "µs"),
        "cpu_us_follower": ("  CPU per write: a follower's process (not the client)", "µs"),
        "cpu_us_follower2": ("  CPU per write: the other follower's process", "µs"),
        "cpu_us_total": ("  CPU per write: all three", "µs"),
        "write_p50_ms": ("write latency p50 (sequential)", "ms"),
        "write_p99_ms": ("write latency p99 (sequential)", "ms"),
        "read_us": ("local read latency (get)", "µs"),
        "watch_p50_ms": ("watch latency p50 across processes", "ms"),
        "write_spaced_p50_ms": ("  the watched writes' own latency p50 (5 ms apart)", "ms"),
        "watch_p99_ms": ("watch latency p99 across processes", "ms"),
        "failover_elected_ms": ("failover: SIGKILL -> new leader known", "ms"),
        "failover_write_ms": ("failover: SIGKILL -> first write committed", "ms"),
    }
    for key, (label, unit) in labels.items():
        if not all(key in r for r in runs):
            continue  # the leader was the client: no separate client figure
        value = statistics.median(r[key] for r in runs)
        print(f"  {label:<54} {value:>10.3f} {unit}")


if __name__ == "__main__":
    main()
