"""Elastic clusters in real processes on loopback: how fast the cluster heals itself and admits a newcomer.

    python benchmarks/membership_bench.py [--reps 3] [--znodes 100000]

Every worker runs ``Peer(id, bind, seeds=[three seed addresses], voters=3, member_timeout=..., data_dir=...)`` with
LevelDB in a temporary directory. Figures, medians of the repetitions:

- **voter replaced**: four workers (the three seeds vote, the fourth observes and has been up long enough to be
  promoted); a voter that does not lead is SIGKILLed; the time until the leader's ``members()`` shows three voters
  again, all reachable, and no trace of the dead one. Measured with the default ``member_timeout`` (30 s) and a short
  one (3 s): the timeout is most of it, by design (a member away for less keeps its place);
- **join and catch up**: a cluster of three seeds holding ``--znodes`` znodes of 100 bytes; a new worker process is
  started on a fresh disk; the time from its launch until ``start()`` returns (it is a member with a session) and
  until it holds all the znodes (it installed the leader's snapshot, or caught up from the log).

ZooKeeper has no automatic replacement of a dead server to measure beside it: its dynamic reconfiguration
(``reconfig``) is driven by an operator, so the first figure has no anchor. Results go to
``benchmarks/results/membership.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common  # noqa: E402
import compare_embedzk  # noqa: E402

HERE = os.path.abspath(__file__)
PREFIX = "/bench"

# ----------------------------------------------------------------------------------------------------------------
# the worker process


def _open(config: dict[str, Any]) -> tuple[common.Ops, dict[str, Any]]:
    sys.path.insert(0, common.REPO)
    from embedzk import Peer

    launched = config.get("launched_at", time.time())
    peer = Peer(
        config["id"],
        bind=config["bind"],
        seeds=config["seeds"],
        voters=3,
        member_timeout=config["member_timeout"],
        data_dir=config["data_dir"],
    )
    peer.start(timeout=120)
    started = time.time()
    expect = config.get("expect_path")
    if expect:
        deadline = time.monotonic() + 300
        while peer.exists(expect) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{expect} not visible after joining")
            time.sleep(0.002)
    return compare_embedzk.EmbedZKOps(peer), {
        "started_s": started - launched,
        "caught_up_s": time.time() - launched,
    }


def _extra(ops: common.Ops, op: str, args: dict[str, Any]) -> Any:
    assert isinstance(ops, compare_embedzk.EmbedZKOps)
    peer = ops.peer
    if op == "members":
        return {pid: {"voter": m.voter, "reachable": m.reachable, "leader": m.leader, "key": m.key}
                for pid, m in peer.members().items()}
    if op == "is_leader":
        return peer.is_leader
    return compare_embedzk._extra(ops, op, args)


# ----------------------------------------------------------------------------------------------------------------
# the driver


class Fleet:
    def __init__(self, root: str, member_timeout: float) -> None:
        self.root = root
        self.member_timeout = member_timeout
        self.seeds = [f"tcp://127.0.0.1:{port}" for port in common.free_ports(3)]
        self.agents: dict[str, common.Agent] = {}
        self.count = 0

    def launch(self, bind: str | None = None, expect_path: str | None = None) -> common.Agent:
        self.count += 1
        pid = f"w{self.count}"
        config = {
            "id": pid,
            "bind": bind or f"tcp://127.0.0.1:{common.free_ports(1)[0]}",
            "seeds": self.seeds,
            "member_timeout": self.member_timeout,
            "data_dir": os.path.join(self.root, pid),
            "launched_at": time.time(),
            "expect_path": expect_path,
        }
        agent = common.Agent(HERE, config, pid)
        self.agents[pid] = agent
        return agent

    def start_seeds(self) -> None:
        seeds = [self.launch(bind) for bind in self.seeds]
        for agent in seeds:
            agent.wait_started(120)

    def alive(self) -> list[common.Agent]:
        return [a for a in self.agents.values() if a.proc.poll() is None]

    def leader(self) -> common.Agent:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for agent in self.alive():
                if agent.call("is_leader", timeout=10):
                    return agent
            time.sleep(0.05)
        raise RuntimeError("no leader")

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()


def _healed(leader: common.Agent, dead: str, alive: set[str]) -> bool:
    members = leader.call("members", timeout=10)
    voters = [m for m in members.values() if m["voter"]]
    return dead not in members and len(voters) == 3 and all(m["reachable"] for m in voters) and set(members) <= alive


def replacement(member_timeout: float) -> float:
    """Seconds from a voter's SIGKILL until the cluster has three live voters again."""
    with tempfile.TemporaryDirectory(prefix="embedzk-members-") as root:
        fleet = Fleet(root, member_timeout)
        try:
            fleet.start_seeds()
            fleet.launch().wait_started(120)
            # The observer must have been reachable for the stabilization time (a quarter of member_timeout, at
            # most 10 s) to be promoted: a long-running fleet is in that state.
            time.sleep(min(10.0, member_timeout / 4) + 1.0)
            leader = fleet.leader()
            victim = next(
                pid for pid, m in leader.call("members").items() if m["voter"] and not m["leader"]
            )
            fleet.agents[victim].kill()
            killed = time.perf_counter()
            alive = {pid for pid, a in fleet.agents.items() if a.proc.poll() is None}
            while True:
                try:
                    if _healed(leader, victim, alive):
                        return time.perf_counter() - killed
                except common.AgentError:
                    leader = fleet.leader()
                time.sleep(0.02)
        finally:
            fleet.close()


def join_and_catch_up(znodes: int, reps: int) -> list[dict[str, float]]:
    """A newcomer's start() and catch-up times, with ``znodes`` znodes in the cluster."""
    with tempfile.TemporaryDirectory(prefix="embedzk-join-") as root:
        fleet = Fleet(root, 30.0)
        results = []
        try:
            fleet.start_seeds()
            loader = fleet.agents["w1"]
            began = time.perf_counter()
            loader.call("load", prefix=PREFIX, start=0, count=znodes, batch=200, timeout=600)
            print(f"  loaded {znodes} znodes in {time.perf_counter() - began:.1f}s", flush=True)
            last = f"{PREFIX}/n{znodes - 1}"
            for _ in range(reps):
                newcomer = fleet.launch(expect_path=last)
                newcomer.wait_started(300)
                info = newcomer.start_info
                results.append({"started_s": info["started_s"], "caught_up_s": info["caught_up_s"]})
                print(f"  newcomer {newcomer.label}: member with a session after {info['started_s']:.2f}s, "
                      f"holds all {znodes} znodes after {info['caught_up_s']:.2f}s", flush=True)
                newcomer.close()
        finally:
            fleet.close()
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--znodes", type=int, default=100_000)
    parser.add_argument("--timeouts", default="30,3", help="member_timeout values to measure, comma-separated")
    args = parser.parse_args()
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "reps": args.reps}
    for timeout in (float(t) for t in args.timeouts.split(",")):
        times = []
        for rep in range(args.reps):
            seconds = replacement(timeout)
            times.append(seconds)
            print(f"member_timeout {timeout:g}s, rep {rep + 1}: three live voters again {seconds:.2f}s after the "
                  f"SIGKILL", flush=True)
        report[f"replaced_s_member_timeout_{timeout:g}"] = statistics.median(times)
    joins = join_and_catch_up(args.znodes, args.reps)
    report["join_started_s"] = statistics.median(j["started_s"] for j in joins)
    report["join_caught_up_s"] = statistics.median(j["caught_up_s"] for j in joins)
    report["znodes"] = args.znodes
    print(json.dumps(report, indent=2))
    out = os.path.join(os.path.dirname(HERE), "results", "membership.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--agent":
        common.worker_main(_open, _extra)
    else:
        main()
