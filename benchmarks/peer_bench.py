"""Three peers in three processes over tcp on loopback, LevelDB with sync: what an application sees.

    python benchmarks/peer_bench.py [--reps 3] [--writes 20000] [--profile DIR]

Each repetition starts a fresh cluster of three worker processes (default Peer settings, data in a temporary
directory), then measures, from a client inside one worker process (a follower unless ``--client leader``):

- pipelined writes/s: ``create_async`` of 100-byte znodes with at most 1,000 outstanding;
- write latency p50/p99: sequential ``set`` calls, one at a time;
- local read latency: ``get`` of a 100-byte znode (the median of many);
- watch latency across processes: one worker sets a value carrying its clock, another's persistent watch receives
  it (same machine, same clock);
- failover: the leader's process is SIGKILLed; the time until a survivor knows a new leader, and until a write on
  it commits.

It prints the median of the repetitions for each figure. ``--profile DIR`` writes cProfiles of the client's thread
and of the loop threads of the client's and the leader's processes during the pipelined and sequential writes, as
DIR/rep<N>-<peer>-<thread>.prof (read them with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

VALUE = b"x" * 100

# ----------------------------------------------------------------------------------------------------------------
# the worker process


def _agent(config: dict[str, Any]) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from embedzk import Peer

    out = sys.stdout
    lock = threading.Lock()

    def emit(obj: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(obj) + "\n")
            out.flush()

    peer = Peer(config["id"], bind=config["bind"], peers=config["peers"], data_dir=config["data_dir"])
    peer.start(timeout=60)
    emit({"started": peer.id})
    watch_seen: list[float] = []
    receivers: list[Any] = []

    def run(op: str, args: dict[str, Any]) -> Any:
        if op == "leader":
            return peer.leader
        if op == "pid":
            return os.getpid()
        if op == "profile":
            _profile(peer, args["on"], config["profile"])
            return None
        if op == "pipelined":
            return _pipelined(peer, args["n"], args["window"], args["prefix"])
        if op == "sequential":
            return _sequential(peer, args["n"])
        if op == "reads":
            return _reads(peer, args["n"])
        if op == "watch_setup":
            sig = peer.watch("/bench/watch")

            def receiver(sender: Any, event: Any) -> None:
                now = time.time()
                try:
                    data, _stat = peer.get("/bench/watch")
                except Exception:
                    return
                watch_seen.append(now - float(data.decode()))

            receivers.append(receiver)
            sig.connect(receiver, weak=False)
            return None
        if op == "watch_write":
            peer.ensure_path("/bench")
            if peer.exists("/bench/watch") is None:
                peer.create("/bench/watch", b"0")
            for _ in range(args["n"]):
                peer.set("/bench/watch", repr(time.time()).encode())
                time.sleep(args["gap"])
            return None
        if op == "watch_results":
            seen = list(watch_seen)
            watch_seen.clear()
            return seen
        if op == "await_failover":
            old = args["old"]
            killed = args["killed_at"]
            while peer.leader in (None, old):
                time.sleep(0.0005)
            elected = time.time()
            while True:
                try:
                    peer.create("/bench/after-failover", b"", sequence=True)
                    break
                except Exception:
                    time.sleep(0.001)
            return {"elected": elected - killed, "write": time.time() - killed}
        if op == "sync":
            peer.sync()
            return None
        raise ValueError(f"unknown op {op}")

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "stop":
            break
        try:
            emit({"ok": run(cmd["op"], cmd.get("args", {}))})
        except Exception as exc:  # report, keep serving
            emit({"error": f"{type(exc).__name__}: {exc}"})
    peer.stop()
    emit({"ok": "stopped"})


_profilers: dict[str, Any] = {}


def _profile(peer: Any, on: bool, prefix: str) -> None:
    # cProfile sees only the thread that enables it: one profiler for this (the client's) thread, one for the
    # peer's loop thread, enabled and disabled on that thread through the loop's call queue.
    import cProfile

    if on:
        _profilers["client"] = cProfile.Profile()
        _profilers["loop"] = cProfile.Profile()
        _profilers["client"].enable()
        peer._loop.call(_profilers["loop"].enable).result(10)
    else:
        _profilers["client"].disable()
        peer._loop.call(_profilers["loop"].disable).result(10)
        for name, profiler in _profilers.items():
            profiler.dump_stats(f"{prefix}-{name}.prof")


def _pipelined(peer: Any, n: int, window: int, prefix: str) -> float:
    peer.ensure_path(prefix)
    slots = threading.Semaphore(window)
    done = threading.Event()
    errors: list[BaseException] = []
    left = [n]
    left_lock = threading.Lock()

    def finished(future: Any) -> None:
        exc = future.exception()
        if exc is not None:
            errors.append(exc)
        slots.release()
        with left_lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    began = time.perf_counter()
    for i in range(n):
        slots.acquire()
        peer.create_async(f"{prefix}/n{i}", VALUE).add_done_callback(finished)
    done.wait()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} writes failed, first: {errors[0]!r}")
    return n / elapsed


def _sequential(peer: Any, n: int) -> dict[str, float]:
    peer.ensure_path("/bench")
    if peer.exists("/bench/seq") is None:
        peer.create("/bench/seq", VALUE)
    times = []
    for _ in range(n):
        began = time.perf_counter()
        peer.set("/bench/seq", VALUE)
        times.append(time.perf_counter() - began)
    times.sort()
    return {"p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99)]}


def _reads(peer: Any, n: int) -> float:
    peer.ensure_path("/bench")
    if peer.exists("/bench/read") is None:
        peer.create("/bench/read", VALUE)
    peer.sync()
    batch = 100
    samples = []
    get = peer.get
    for _ in range(n // batch):
        began = time.perf_counter()
        for _ in range(batch):
            get("/bench/read")
        samples.append((time.perf_counter() - began) / batch)
    return statistics.median(samples)


# ----------------------------------------------------------------------------------------------------------------
# the driver


class Agent:
    """A worker process, driven over its stdin/stdout."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.id = config["id"]
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--agent", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def wait_started(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.id} died while starting")

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.id} died")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"worker {self.id}: {msg['error']}")
        return msg["ok"]

    def call(self, op: str, **args: Any) -> Any:
        self.send(op, **args)
        return self.answer()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("stop")
                self.proc.wait(10)
            except Exception:
                pass
        self.kill()


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def one_repetition(rep: int, args: argparse.Namespace, root: str) -> dict[str, float]:
    ids = ["a", "b", "c"]
    addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(ids, _free_ports(3))}
    agents: dict[str, Agent] = {}
    try:
        for pid in ids:
            config = {
                "id": pid,
                "bind": addresses[pid],
                "peers": {o: a for o, a in addresses.items() if o != pid},
                "data_dir": os.path.join(root, f"rep{rep}", pid),
            }
            if args.profile:
                config["profile"] = os.path.join(args.profile, f"rep{rep}-{pid}")
            agents[pid] = Agent(config)
        for agent in agents.values():
            agent.wait_started()
        leader_id = agents["a"].call("leader")
        followers = [pid for pid in ids if pid != leader_id]
        client = agents[leader_id if args.client == "leader" else followers[0]]
        other = agents[followers[1] if args.client == "leader" else followers[1]]
        results: dict[str, float] = {}

        if args.profile:
            for agent in (client, agents[leader_id]):
                agent.call("profile", on=True)
        client.call("pipelined", n=1000, window=args.window, prefix="/bench/warmup")
        results["writes_per_s"] = client.call("pipelined", n=args.writes, window=args.window, prefix="/bench/pipe")
        seq = client.call("sequential", n=args.sequential)
        if args.profile:
            for agent in {client.id: client, leader_id: agents[leader_id]}.values():
                agent.call("profile", on=False)
        results["write_p50_ms"] = seq["p50"] * 1000
        results["write_p99_ms"] = seq["p99"] * 1000
        results["read_us"] = client.call("reads", n=100_000) * 1e6

        other.call("watch_setup")
        client.call("watch_write", n=200, gap=0.005)
        time.sleep(0.5)
        seen = sorted(other.call("watch_results"))
        if not seen:
            raise RuntimeError("no watch notification arrived")
        results["watch_p50_ms"] = seen[len(seen) // 2] * 1000
        results["watch_p99_ms"] = seen[int(len(seen) * 0.99)] * 1000

        survivor = agents[followers[0]]
        time.sleep(1.0)  # let the cluster settle (sessions pinged, logs caught up)
        survivor.send("await_failover", old=leader_id, killed_at=time.time())
        agents[leader_id].kill()
        failover = survivor.answer()
        results["failover_elected_ms"] = failover["elected"] * 1000
        results["failover_write_ms"] = failover["write"] * 1000
        return results
    finally:
        for agent in agents.values():
            agent.close()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--agent":
        _agent(json.loads(sys.argv[2]))
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
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="embedzk-bench-") as root:
        for rep in range(args.reps):
            result = one_repetition(rep, args, root)
            print(f"repetition {rep + 1}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()), flush=True)
            runs.append(result)
    print(f"\n3 peers, 3 processes, tcp on loopback, LevelDB with sync; client on the {args.client}; "
          f"median of {len(runs)} repetitions")
    labels = {
        "writes_per_s": ("pipelined writes (window %d)" % args.window, "writes/s"),
        "write_p50_ms": ("write latency p50 (sequential)", "ms"),
        "write_p99_ms": ("write latency p99 (sequential)", "ms"),
        "read_us": ("local read latency (get)", "µs"),
        "watch_p50_ms": ("watch latency p50 across processes", "ms"),
        "watch_p99_ms": ("watch latency p99 across processes", "ms"),
        "failover_elected_ms": ("failover: SIGKILL -> new leader known", "ms"),
        "failover_write_ms": ("failover: SIGKILL -> first write committed", "ms"),
    }
    for key, (label, unit) in labels.items():
        value = statistics.median(r[key] for r in runs)
        print(f"  {label:<46} {value:>10.3f} {unit}")


if __name__ == "__main__":
    main()
