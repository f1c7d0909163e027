"""embedzk beside Apache ZooKeeper (driven by kazoo) and PySyncObj: the same workloads, in one run, on one machine.

embedzk runs twice: embedded (its own API, in the members' processes) and as a ZooKeeper server driven by the
same kazoo client code as ZooKeeper (embedzk-kazoo).

    bash benchmarks/setup_compare.sh        # once: ZooKeeper 3.8 (Debian), kazoo, pysyncobj, matplotlib, psutil
    python benchmarks/compare.py            # 7 to 8 minutes, at most 10 (--budget); --help for the sizes

Systems, each 3 members on loopback (see the compare_<system>.py modules):
  embedzk             3 worker processes, one Peer each, LevelDB with sync, default settings but the session
                      timeout (4 s, as for the kazoo clients)
  zookeeper-tick2000  3 ZooKeeper JVMs (tickTime 2000 ms), a kazoo worker process beside each
  zookeeper-tick200   the same with tickTime 200 ms ("zookeeper" in --systems: zookeeper-tick2000)
  embedzk-kazoo       3 embedzk peers serving ZooKeeper's client protocol, each in its own process, a kazoo worker
                      process beside each: the ZooKeeper systems' client code, embedzk's servers
  pysyncobj           3 worker processes, one SyncObj each (ReplDict + ReplLockManager), journal on disk

Workloads (each repeated --reps times; the table shows the median of the repetitions), from a client on a
follower unless said otherwise:
  pipelined writes    creates of 100-byte nodes from one thread, at most --window (1,000) outstanding: writes/s
  write latency       sequential sets of one 100-byte node, one at a time: p50 and p99
  read latency        gets of one node, each timed: p50 and p99 (ZooKeeper: a round trip to the client's
                      server, as kazoo users see it; embedzk and PySyncObj: local, in the process)
  read throughput     reads/s from one thread for 1 s (ZooKeeper: get_async pipelined, 1,000 outstanding;
                      the others: get in a loop)
  watch latency       one process sets a node every 20 ms, another is notified: time from just before the set
                      to the callback, same clock (not PySyncObj: it has no watches)
  lock handoffs/s     3 processes acquire and release one lock in a loop for --lock-seconds; the number of
                      times the holder changed, per second (kazoo Lock, embedzk Lock, PySyncObj ReplLockManager)
  election            3 processes contend in one election (kazoo Election, embedzk Election; PySyncObj has
                      none); the elected worker is SIGKILLed: time until the next one's function runs, which
                      is mostly its session expiring (session timeout 4 s for both, common.SESSION_TIMEOUT_S);
                      the worker is restarted (embedzk: the member, on its data) before the next repetition
  failover            SIGKILL of the leader's process; time until a write from a client on a survivor commits
                      (the killed member is restarted and rejoins before the next repetition)
  session move        (kazoo systems) a kazoo client holding an ephemeral node; its server, a follower, is
                      SIGKILLed: time until the client is CONNECTED to another server, same session; the
                      ephemeral is then checked to be still the session's
  memory              RSS of each member's process (psutil) holding --znodes (100k) nodes of 100 bytes; the
                      three members are the three samples (a ZooKeeper member is its JVM)
  restart             a follower holding those nodes is SIGKILLed and started again on its data: time from the
                      process' launch until it serves them again (JVM or interpreter start included)

Every process started is killed by its pid at the end, also on error or Ctrl-C; a system that cannot be started
is skipped with the reason printed. Results: benchmarks/results/compare.json and compare.png.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common

# metric key -> (label, unit, True if higher is better)
METRICS: dict[str, tuple[str, str, bool]] = {
    "writes_per_s": ("pipelined writes (window 1,000)", "writes/s", True),
    "write_p50_ms": ("write latency p50 (sequential)", "ms", False),
    "write_p99_ms": ("write latency p99 (sequential)", "ms", False),
    "read_p50_us": ("read latency p50", "µs", False),
    "read_p99_us": ("read latency p99", "µs", False),
    "reads_per_s": ("read throughput (one thread)", "reads/s", True),
    "watch_p50_ms": ("watch latency p50 (across processes)", "ms", False),
    "watch_p99_ms": ("watch latency p99 (across processes)", "ms", False),
    "lock_handoffs_per_s": ("lock handoffs/s (3 processes)", "handoffs/s", True),
    "failover_ms": ("failover: SIGKILL leader -> write commits", "ms", False),
    "session_move_ms": ("session move: SIGKILL client's server -> CONNECTED", "ms", False),
    "election_s": ("election: SIGKILL elected -> next one leads", "s", False),
    "rss_mb": ("RSS per member holding 100k nodes", "MiB", False),
    "restart_s": ("restart of a member holding 100k nodes", "s", False),
}
# Reported in the JSON and below the table, not compared.
EXTRA = {
    "lock_acquisitions_per_s": ("lock acquisitions/s (3 processes)", "acq/s"),
    "rss_empty_mb": ("RSS per member, empty", "MiB"),
    "load_s": ("bulk load of the 100k nodes (batches of 500)", "s"),
    "session_move_checked_ms": ("session move, until the ephemeral is read back", "ms"),
}
ALL_SYSTEMS = ["embedzk", "zookeeper-tick2000", "zookeeper-tick200", "embedzk-kazoo", "pysyncobj"]
#: Other names --systems takes: "zookeeper" is ZooKeeper at its default tickTime.
ALIASES = {"zookeeper": "zookeeper-tick2000"}
SHORT = {"embedzk": "embedzk", "zookeeper-tick2000": "zk tick2000", "zookeeper-tick200": "zk tick200",
         "embedzk-kazoo": "ezk-kazoo", "pysyncobj": "pysyncobj"}
#: The ratio columns: each base system over the others it is compared with. embedzk-kazoo is compared with
#: ZooKeeper only: the two are the ones driven through the same client.
RATIO_BASES: dict[str, tuple[str, ...]] = {
    "embedzk": ("zookeeper-tick2000", "zookeeper-tick200", "pysyncobj"),
    "embedzk-kazoo": ("zookeeper-tick2000", "zookeeper-tick200"),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------------------
# one system


def make_system(name: str, root: str) -> Any:
    if name == "embedzk":
        import compare_embedzk

        return compare_embedzk.System(root)
    if name.startswith("zookeeper-tick"):
        import compare_zookeeper

        return compare_zookeeper.System(root, int(name[len("zookeeper-tick"):]))
    if name == "embedzk-kazoo":
        import compare_embedzk_kazoo

        return compare_embedzk_kazoo.System(root)
    if name == "pysyncobj":
        import compare_pysyncobj

        return compare_pysyncobj.System(root)
    raise ValueError(f"unknown system {name}")


class Run:
    """The workloads on one started system."""

    def __init__(self, system: Any, args: argparse.Namespace) -> None:
        self.system = system
        self.args = args
        self.reps: dict[str, list[float]] = {}
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.printed: list[str] = []
        self.profiles: list[str] = []

    def add(self, key: str, value: float) -> None:
        self.reps.setdefault(key, []).append(value)

    def say(self, note: str) -> None:
        """A note for the JSON that is also printed below the table."""
        self.notes.append(note)
        self.printed.append(note)

    def heal(self) -> None:
        """Restart any member or worker a failed workload left dead, so that the next workload finds three."""
        for i in range(3):
            if not self.system.member_alive(i):
                log(f"  {self.system.name}: member {i + 1} is down; restarting it")
                self.system.restart_member(i)
                self.system.wait_member_ready(i)
            elif not self.system.client_alive(i):
                log(f"  {self.system.name}: the worker beside member {i + 1} is down; restarting it")
                self.system.restart_client(i)

    def phase(self, keys: list[str], fn: Any) -> None:
        """Run one workload; on failure its rows get the reason and the run goes on."""
        began = time.monotonic()
        try:
            self.heal()
            fn()
        except NotImplementedError as exc:
            for key in keys:
                self.skipped[key] = str(exc) or "not supported"
            log(f"  {self.system.name}: {', '.join(keys)}: not measured: {exc}")
            return
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log(f"  {self.system.name}: {keys[0]} failed: {reason}")
            if self.args.verbose:
                traceback.print_exc()
            for key in keys:
                if key not in self.reps or len(self.reps[key]) < self.args.reps:
                    self.skipped.setdefault(key, reason[:300])
        finally:
            log(f"  {self.system.name}: {', '.join(keys)} done in {time.monotonic() - began:.1f}s: "
                + ", ".join(f"{k}={self.reps[k]}" for k in keys if k in self.reps))

    # -- the workloads --------------------------------------------------------------------------------------

    def roles(self) -> tuple[int, int, int]:
        leader = self.system.leader()
        return leader, (leader + 1) % 3, (leader + 2) % 3

    def repeat(self, key: str, body: Any) -> None:
        """Run ``body(rep)`` --reps times; a repetition that fails (a leader change on a loaded machine, a
        timeout) is noted, the cluster healed, and tried once more."""
        for rep in range(self.args.reps):
            for attempt in (1, 2):
                try:
                    body(rep)
                    break
                except common.AgentError as exc:
                    if attempt == 2:
                        raise
                    self.notes.append(f"{key} rep {rep + 1}: failed once, tried again: {exc}"[:300])
                    log(f"  {self.system.name}: {key} rep {rep + 1} failed ({exc}); trying once more")
                    self.heal()

    @contextlib.contextmanager
    def profiling(self, workload: str, agents: dict[str, common.Agent]) -> Iterator[None]:
        """With --profile, cProfile embedzk's workers ``agents`` (by role) while inside; the files are named
        ``embedzk-<workload>-<role>-<thread>.prof``. Without it, or for another system, nothing."""
        on = bool(self.args.profile) and self.system.name == "embedzk"
        for agent in agents.values() if on else ():
            agent.call("profile", on=True)
        yield
        for who, agent in agents.items() if on else ():
            self.profiles += agent.call("profile", on=False,
                                        prefix=os.path.join(self.args.profile, f"embedzk-{workload}-{who}"))

    def election_round(self, rep: int) -> float:
        """One election failover; seconds from the SIGKILL of the elected worker until the next one's function
        runs.

        The three workers join a new election one after another: first the client on a follower (so that it
        is elected, and so that for embedzk the kill takes a Raft follower and no Raft election mixes in), then
        the other follower's worker (next in line), then the leader's. Once all three are in line, the elected
        worker is SIGKILLed (for ZooKeeper the kazoo worker only: its server goes on) --settle s plus a random
        part of a heartbeat interval later; its contender node goes when its session expires, which is most of
        the figure. The worker is then restarted (for embedzk: the member, on its data) and the survivors leave
        the election.
        """
        s = self.system
        leader, first, second = self.roles()
        path = f"/bench/election/r{rep}-{time.time_ns()}"
        joined: list[int] = []
        try:
            for i in (first, second, leader):
                s.client(i).call("election_join", path=path, me=str(i))
                joined.append(i)
                if i == first and s.client(first).call("election_wait", path=path, seconds=30) is None:
                    raise common.AgentError(f"member {first + 1}'s worker, alone in the election, was not elected")
                self.wait_contenders(s.client(first), path, len(joined))
            # How long after its last heartbeat a session is lost decides the figure; heartbeats go every third
            # of the timeout (kazoo: a little more often). The kill comes at a random point of that interval,
            # the same points (seeded by the repetition) for every system.
            time.sleep(self.args.settle + random.Random(rep).uniform(0, common.SESSION_TIMEOUT_S / 3))
            killed_at = time.time()
            s.kill_client(first)
            joined.remove(first)
            led_at = s.client(second).call("election_wait", path=path, seconds=60, timeout=90)
            if led_at is None:
                raise common.AgentError(f"no worker led within 60 s of the kill (member {first + 1}'s)")
            if s.client(leader).call("election_wait", path=path, seconds=0) is not None:
                self.notes.append(f"election rep {rep + 1}: the last in line led too")
            s.restart_client(first)
            s.wait_member_ready(first)
        finally:
            for i in joined:  # the survivors step down or stop waiting, so the next round starts afresh
                try:
                    s.client(i).call("election_leave", path=path, timeout=60)
                except common.AgentError as exc:  # a worker gone is restarted by heal(); the rest is noted
                    self.notes.append(f"election rep {rep + 1}: leaving failed: {exc}"[:300])
        for i in range(3):  # everyone agrees on a leader again before the next round
            s.client(i).call("sync", timeout=60)
        return led_at - killed_at

    def session_move_round(self, rep: int) -> tuple[float, float]:
        """One session move; seconds from the SIGKILL of a client's server until the client is CONNECTED to
        another server with the same session, and until it has read its ephemeral node back from there.

        The client is the kazoo worker beside a follower, connected to that follower's server (a worker that
        moved in an earlier round is replaced by a new one connected there first). It creates an ephemeral node;
        --settle s later its server is SIGKILLed (on loopback the client's connection is reset at once), and
        kazoo tries the next server of its list (the other two, in member order: the leader's or the other
        follower's). The worker notes the moment kazoo reports CONNECTED again, checks that the session is the
        same, then reads the ephemeral (``exists``) and checks that its owner is still the session. The killed
        server is restarted before the next round.
        """
        s = self.system
        _leader, mover, _other = self.roles()
        if s.connected_member(mover) != mover:
            s.rehome_client(mover)
        agent = s.client(mover)
        armed = agent.call("move_arm", path=f"/bench/move/r{rep}-{time.time_ns()}")
        if armed["port"] != s.client_ports[mover]:
            raise common.AgentError(f"the client beside member {mover + 1} is connected to port {armed['port']}")
        time.sleep(self.args.settle)
        killed_at = time.time()
        s.kill_member(mover)
        try:
            r = agent.call("move_wait", seconds=60, timeout=90)
        finally:
            s.restart_member(mover)
            s.wait_member_ready(mover)
        to = s.client_ports.index(r["port"]) + 1 if r["port"] in s.client_ports else r["port"]
        self.notes.append(f"session move rep {rep + 1}: server {mover + 1} killed, the client CONNECTED to "
                          f"server {to} after {(r['connected_at'] - killed_at) * 1e3:.1f} ms (SUSPENDED after "
                          f"{((r['suspended_at'] or killed_at) - killed_at) * 1e3:.1f} ms), ephemeral read back "
                          f"after {(r['verified_at'] - killed_at) * 1e3:.1f} ms; states {r['states']}")
        for i in range(3):  # everyone agrees on a leader again before the next round
            s.client(i).call("sync", timeout=60)
        return r["connected_at"] - killed_at, r["verified_at"] - killed_at

    def wait_contenders(self, agent: common.Agent, path: str, n: int, timeout: float = 30.0) -> None:
        """Wait until ``agent`` sees ``n`` contenders in the election at ``path``."""
        deadline = time.monotonic() + timeout
        while agent.call("election_contenders", path=path) < n:
            if time.monotonic() > deadline:
                raise common.AgentError(f"{path}: fewer than {n} contenders after {timeout:.0f}s")
            time.sleep(0.02)

    def run(self) -> None:
        a = self.args
        s = self.system
        leader, c, w = self.roles()

        def client() -> common.Agent:  # the worker on member c (a new one after a restart)
            return s.client(c)

        log(f"  {s.name}: leader is member {leader + 1}; client on member {c + 1}, watcher on member {w + 1}")
        self.rss_empty = [common.rss_bytes(s.member_pid(i)) / 2**20 for i in range(3)]
        client().call("ensure", path="/bench")
        client().call("pipelined", prefix="/bench/seqdir", n=1, window=1)  # creates /bench/seqdir/n0
        seq_path = "/bench/seqdir/n0"

        def warmup() -> None:
            # The same warm-up for every system: it matters most for ZooKeeper's JVM (JIT compilation).
            client().call("pipelined", prefix="/bench/warmup", n=a.warmup, window=a.window, timeout=300)
            client().call("sequential", path=seq_path, n=100, max_seconds=3.0)
            client().call("read_latency", path=seq_path, n=1000)

        self.phase(["warmup"], warmup)

        def pipelined() -> None:
            def body(rep: int) -> None:
                self.add("writes_per_s", client().call("pipelined", prefix=f"/bench/pipe{rep}-{time.time_ns()}",
                                                       n=a.writes, window=a.window, timeout=600))

            with self.profiling("pipelined", {"client": client(), "leader": s.client(leader)}):
                self.repeat("writes_per_s", body)

        self.phase(["writes_per_s"], pipelined)

        def sequential() -> None:
            def body(rep: int) -> None:
                r = client().call("sequential", path=seq_path, n=a.sequential, max_seconds=a.sequential_seconds,
                                  timeout=600)
                if r["n"] < a.sequential:
                    self.notes.append(f"sequential writes rep {rep + 1}: {r['n']} timed "
                                      f"(cut at {a.sequential_seconds}s)")
                self.add("write_p50_ms", r["p50"] * 1e3)
                self.add("write_p99_ms", r["p99"] * 1e3)

            with self.profiling("sequential", {"client": client(), "leader": s.client(leader)}):
                self.repeat("write_latency", body)

        self.phase(["write_p50_ms", "write_p99_ms"], sequential)

        def reads() -> None:
            client().call("sync")

            def body(rep: int) -> None:
                r = client().call("read_latency", path=seq_path,
                                  n=a.reads if s.local_reads else a.remote_reads, timeout=600)
                self.add("read_p50_us", r["p50"] * 1e6)
                self.add("read_p99_us", r["p99"] * 1e6)

            self.repeat("read_latency", body)

        self.phase(["read_p50_us", "read_p99_us"], reads)

        def read_throughput() -> None:
            self.repeat("reads_per_s", lambda rep: self.add(
                "reads_per_s", client().call("read_throughput", path=seq_path, seconds=1.0)))

        self.phase(["reads_per_s"], read_throughput)

        def watches() -> None:
            if not s.supports_watches:
                raise NotImplementedError(f"{s.name} has no watches")
            client().call("pipelined", prefix="/bench/watchdir", n=1, window=1)
            watch_path = "/bench/watchdir/n0"
            s.client(w).call("sync")
            s.client(w).call("watch_setup", path=watch_path)
            counts = [0, 0]  # notifications, writes: a figure from fewer notifications than writes says so below

            def body(rep: int) -> None:
                sent = client().call("watch_write", path=watch_path, n=a.watch_writes, gap=0.02, timeout=300)
                time.sleep(0.5)
                seen = s.client(w).call("watch_results")
                lat = match_watches(sent, seen)
                counts[0] += len(seen)
                counts[1] += len(sent)
                if len(seen) != len(sent):
                    self.notes.append(f"watch rep {rep + 1}: {len(seen)} notifications for {len(sent)} writes "
                                      "(matched by time)")
                if not lat:
                    raise RuntimeError("no watch notification arrived")
                self.add("watch_p50_ms", common.percentile(lat, 0.5) * 1e3)
                self.add("watch_p99_ms", common.percentile(lat, 0.99) * 1e3)

            self.repeat("watch", body)
            if counts[0] != counts[1]:
                self.say(f"watch: {counts[0]} notifications for {counts[1]} writes; the latencies are those of the "
                         "notifications that came, each against the latest write before it")

        self.phase(["watch_p50_ms", "watch_p99_ms"], watches)

        def locks() -> None:
            def body(rep: int) -> None:
                start_at = time.time() + 1.0
                agents = [s.client(i) for i in range(3)]
                for i, agent in enumerate(agents):
                    agent.send("lock_run", path="/bench/lock", start_at=start_at, seconds=a.lock_seconds,
                               me=str(i))
                got: list[tuple[float, str]] = []
                for agent in agents:
                    got += [tuple(x) for x in agent.answer(timeout=a.lock_seconds + 60)]
                got.sort()
                handoffs = sum(1 for k in range(1, len(got)) if got[k][1] != got[k - 1][1])
                self.add("lock_handoffs_per_s", handoffs / a.lock_seconds)
                self.add("lock_acquisitions_per_s", len(got) / a.lock_seconds)
                self.notes.append(f"lock rep {rep + 1}: {len(got)} acquisitions, {handoffs} handoffs, by member "
                                  + str({str(m + 1): sum(1 for _, x in got if x == str(m)) for m in range(3)}))

            self.repeat("locks", body)

        self.phase(["lock_handoffs_per_s"], locks)

        def election() -> None:
            if not getattr(s, "supports_election", False):
                raise NotImplementedError(f"{s.name} has no election recipe")
            if hasattr(s, "session_timeouts"):  # what the servers granted, which may differ from what was asked
                granted = ", ".join(f"{t:g} s" for t in sorted(set(s.session_timeouts())))
                timeout = f"session timeout {common.SESSION_TIMEOUT_S:g} s asked for, granted {granted}"
            else:
                timeout = f"session timeout {common.SESSION_TIMEOUT_S:g} s"

            def body(rep: int) -> None:
                took = self.election_round(rep)
                self.add("election_s", took)
                self.notes.append(f"election rep {rep + 1}: the next worker led {took:.2f} s after the kill")

            self.repeat("election", body)
            self.say(f"election: {timeout}; repetitions " + ", ".join(f"{t:.2f}" for t in self.reps["election_s"])
                     + " s")

        self.phase(["election_s"], election)

        def failover() -> None:
            client().call("ensure", path="/bench/failover")

            def body(rep: int) -> None:
                old, survivor, _other = self.roles()
                time.sleep(a.settle)
                probe = s.client(survivor)
                killed_at = time.time()
                s.kill_member(old)
                probe.send("write_until_ok", path="/bench/failover/w", attempt_timeout=1.0, limit=60)
                r = probe.answer(timeout=90)
                self.add("failover_ms", (r["ok_at"] - killed_at) * 1e3)
                s.restart_member(old)
                s.wait_member_ready(old)
                for i in range(3):  # everyone agrees on a leader again before the next round
                    s.client(i).call("sync", timeout=60)

            self.repeat("failover", body)

        self.phase(["failover_ms"], failover)

        def session_move() -> None:
            if not getattr(s, "supports_session_move", False):
                raise NotImplementedError(f"{s.name} has no client sessions that move between servers")
            client().call("ensure", path="/bench/move")

            def body(rep: int) -> None:
                took, checked = self.session_move_round(rep)
                self.add("session_move_ms", took * 1e3)
                self.add("session_move_checked_ms", checked * 1e3)

            self.repeat("session_move", body)

        self.phase(["session_move_ms"], session_move)

        def memory_and_restart() -> None:
            _leader, c2, _w2 = self.roles()
            load_s = s.client(c2).call("load", prefix="/load", start=0, count=a.znodes, batch=500, timeout=900)
            self.add("load_s", load_s)
            last = f"/load/n{a.znodes - 1}"
            for i in range(3):
                s.client(i).call("sync", timeout=120)
            expect_count = s.node_count() if hasattr(s, "node_count") else None
            time.sleep(1.0)  # let the members settle (apply, compact) before reading their memory
            for i in range(3):
                self.add("rss_mb", common.rss_bytes(s.member_pid(i)) / 2**20)

            def body(rep: int) -> None:
                ld = s.leader()
                victim = [i for i in range(3) if i != ld][rep % 2]
                s.kill_member(victim)
                time.sleep(0.2)
                self.add("restart_s", s.restart_member(victim, expect_path=last, expect_count=expect_count))
                info = getattr(s.client(victim), "start_info", None)
                if isinstance(info, dict) and "start_s" in info:
                    self.notes.append(f"restart rep {rep + 1}: " + ", ".join(
                        f"{k} {v:.2f}s" for k, v in info.items() if k.endswith("_s")))
                s.client(victim).call("sync", timeout=60)

            self.repeat("restart", body)

        self.phase(["rss_mb", "restart_s"], memory_and_restart)
        for v in self.rss_empty:
            self.add("rss_empty_mb", v)


def match_watches(sent: list[float], seen: list[float]) -> list[float]:
    """Latencies of the notifications: pairwise when every write was notified once, else each notification
    against the latest write sent before it."""
    if len(seen) == len(sent):
        return [b - a for a, b in zip(sent, seen)]
    out = []
    for t in seen:
        before = [x for x in sent if x <= t]
        if before:
            out.append(t - before[-1])
    return out


def run_system(name: str, root: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name}
    began = time.monotonic()
    system = None
    try:
        system = make_system(name, root)
        result["description"] = system.description
        system.check()
        log(f"{name}: starting ({system.description})")
        t0 = time.monotonic()
        system.start()
        log(f"{name}: started in {time.monotonic() - t0:.1f}s")
    except KeyboardInterrupt:
        if system is not None:  # kill what it had started, by pid, before leaving
            system.stop()
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log(f"{name}: SKIPPED, could not start: {reason}")
        result["skipped"] = reason
        if system is not None:
            try:
                system.stop()
            except Exception:
                pass
        return result
    if args.profile and hasattr(system, "profile_dir"):
        system.profile_dir = args.profile
    run = Run(system, args)
    try:
        run.run()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log(f"{name}: run stopped early: {reason}")
        if args.verbose:
            traceback.print_exc()
        result["error"] = reason
    finally:
        system.stop()
    result["reps"] = run.reps
    result["median"] = {k: common.median(v) for k, v in run.reps.items() if v}
    result["skipped_metrics"] = run.skipped
    result["notes"] = run.notes
    result["printed_notes"] = run.printed
    if run.profiles:
        result["profiles"] = run.profiles
    result["seconds"] = time.monotonic() - began
    log(f"{name}: finished in {result['seconds']:.0f}s")
    return result


# ----------------------------------------------------------------------------------------------------------------
# reporting


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratios(results: dict[str, Any], base_name: str = "embedzk") -> dict[str, dict[str, float]]:
    """base / other for every metric both have, for each system ``base_name`` is compared with (RATIO_BASES)."""
    base = results.get(base_name, {}).get("median", {})
    out: dict[str, dict[str, float]] = {}
    if not base:
        return out
    for name in RATIO_BASES[base_name]:
        med = results.get(name, {}).get("median", {})
        if med:
            out[name] = {k: base[k] / med[k] for k in METRICS if k in base and k in med and med[k]}
    return out


def table(results: dict[str, Any], rats: dict[str, dict[str, dict[str, float]]]) -> str:
    """The table: a column per system, then a ratio column per (base, other) pair of ``rats``."""
    names = [n for n in results]
    pairs = [(b, n) for b in RATIO_BASES if b in rats for n in rats[b]]
    head = ["metric", "unit", "better"] + [SHORT.get(n, n) for n in names] + [
        f"{'ezk' if b == 'embedzk' else SHORT.get(b, b)}/{SHORT.get(n, n)}" for b, n in pairs]
    rows = [head]
    for key, (label, unit, higher) in METRICS.items():
        row = [label, unit, "higher" if higher else "lower"]
        for n in names:
            med = results[n].get("median", {})
            row.append(fmt(med.get(key)) if key in med else ("n/a" if key in results[n].get(
                "skipped_metrics", {}) or "skipped" in results[n] else "-"))
        for b, n in pairs:
            ratio = rats[b][n].get(key)
            row.append("-" if ratio is None else (f"{ratio:.2f}x" if ratio < 100 else f"{ratio:,.0f}x"))
        rows.append(row)
    for key, (label, unit) in EXTRA.items():
        row = [label, unit, ""]
        for n in names:
            med = results[n].get("median", {})
            row.append(fmt(med.get(key)) if key in med else "-")
        row += [""] * len(pairs)
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = []
    for k, r in enumerate(rows):
        cells = [str(c).ljust(widths[i]) if i < 3 else str(c).rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("| " + " | ".join(cells) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) if i < 3 else "-" * (w + 1) + ":" for i, w in
                                        enumerate(widths)) + "|")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if results[n].get("median")]
    keys = [k for k in METRICS if any(k in results[n]["median"] for n in names)]
    if not keys:
        return
    cols = 4
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows))
    colors = {"embedzk": "#2a7ab9", "zookeeper-tick2000": "#d9822b", "zookeeper-tick200": "#f2b36b",
              "embedzk-kazoo": "#7fb3dd", "pysyncobj": "#5aa05a"}
    flat = axes.flatten() if hasattr(axes, "flatten") else [axes]
    for ax, key in zip(flat, keys):
        label, unit, higher = METRICS[key]
        vals = [results[n]["median"].get(key) for n in names]
        xs = [SHORT.get(n, n) for n in names]
        heights = [v if v is not None else 0 for v in vals]
        bars = ax.bar(xs, heights, color=[colors.get(n, "grey") for n in names])
        present = [v for v in vals if v]
        if present and max(present) / max(min(present), 1e-12) > 30:
            ax.set_yscale("log")
        for bar, v in zip(bars, vals):
            ax.annotate("n/a" if v is None else fmt(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_title(f"{label}\n({unit}, {'higher' if higher else 'lower'} is better)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=15)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        import compare_zookeeper

        info["java"] = compare_zookeeper.java_version()
        info["zookeeper"] = compare_zookeeper.zookeeper_version()
    except Exception as exc:
        info["java"] = f"unavailable ({exc})"
    for mod in ("kazoo", "pysyncobj", "embedzk", "psutil"):
        try:
            from importlib.metadata import version

            info[mod] = version(mod)
        except Exception:
            info[mod] = "not installed"
    try:
        info["embedzk_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO, check=False,
                                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "embedzk"], cwd=common.REPO, check=False,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["embedzk_uncommitted_changes"] = bool(dirty)
    except Exception:
        pass
    return info


# ----------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=None)
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help="comma-separated, of " + ", ".join(ALL_SYSTEMS) + " (zookeeper: zookeeper-tick2000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each workload (default 3)")
    parser.add_argument("--writes", type=int, default=8000, help="pipelined writes per repetition")
    parser.add_argument("--window", type=int, default=1000, help="outstanding pipelined writes")
    parser.add_argument("--warmup", type=int, default=2000, help="pipelined writes of the warm-up")
    parser.add_argument("--sequential", type=int, default=300, help="sequential writes per repetition")
    parser.add_argument("--sequential-seconds", type=float, default=6.0,
                        help="at most this long per repetition of sequential writes (at least 20 are timed)")
    parser.add_argument("--reads", type=int, default=20000, help="timed local reads per repetition")
    parser.add_argument("--remote-reads", type=int, default=2000, help="timed reads per repetition, ZooKeeper")
    parser.add_argument("--watch-writes", type=int, default=50, help="watched writes per repetition")
    parser.add_argument("--lock-seconds", type=float, default=2.0, help="seconds of lock contention per repetition")
    parser.add_argument("--znodes", type=int, default=100_000, help="nodes held for the memory and restart figures")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of calm before each leader kill")
    parser.add_argument("--budget", type=float, default=570.0,
                        help="seconds for the whole run: a system that would start with less than 60 s left is "
                             "skipped (with that reason)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that everything runs")
    parser.add_argument("--profile", default=None,
                        help="directory: cProfile embedzk's client and leader (command and loop threads) during the "
                             "pipelined and the sequential writes, and start() of each restart (slows embedzk down)")
    parser.add_argument("--out", default=os.path.join(common.HERE, "results"), help="where the JSON and PNG go")
    parser.add_argument("--tmp", default=None, help="parent of the temporary data directories (default: system's)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.writes, args.warmup, args.sequential, args.reads, args.remote_reads = 500, 200, 50, 2000, 200
        args.watch_writes, args.lock_seconds, args.znodes, args.settle = 10, 0.5, 5000, 0.3
    n = f"{args.znodes // 1000}k" if args.znodes >= 1000 and args.znodes % 1000 == 0 else str(args.znodes)
    for key in ("rss_mb", "restart_s"):
        label, unit, higher = METRICS[key]
        METRICS[key] = (label.replace("100k", n), unit, higher)
    EXTRA["load_s"] = (EXTRA["load_s"][0].replace("100k", n), EXTRA["load_s"][1])
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        args.profile = os.path.abspath(args.profile)
    systems = [ALIASES.get(s.strip(), s.strip()) for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in ALL_SYSTEMS:
            parser.error(f"unknown system {s}")

    atexit.register(common.PROCESSES.kill_all)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    began = time.monotonic()
    info = machine_info()
    log(f"machine: {info['nproc']} cores, Python {info['python']}, {info.get('java')}, "
        f"ZooKeeper {info.get('zookeeper')}, load average {info['loadavg_start']}")
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="embedzk-compare-", dir=args.tmp) as root:
            for name in systems:
                left = args.budget - (time.monotonic() - began)
                if left < 60:
                    reason = f"time budget: {left:.0f}s of --budget {args.budget:.0f}s left"
                    log(f"{name}: SKIPPED, {reason}")
                    results[name] = {"name": name, "skipped": reason}
                    continue
                results[name] = run_system(name, root, args)
                common.PROCESSES.kill_all()  # nothing of one system outlives its turn
    except KeyboardInterrupt:
        log("interrupted: killing every process started")
        common.PROCESSES.kill_all()
        return 130
    finally:
        common.PROCESSES.kill_all()
    info["loadavg_end"] = os.getloadavg()
    info["seconds"] = round(time.monotonic() - began, 1)
    rats = {base: ratios(results, base) for base in RATIO_BASES}
    rats = {base: r for base, r in rats.items() if r}
    text = table(results, rats)
    print()
    print(f"{info['date']}, {info['nproc']} cores, Python {info['python']}, {info.get('java')}, ZooKeeper "
          f"{info.get('zookeeper')}; median of {args.reps} repetitions; ratio = embedzk (or embedzk-kazoo) / other "
          f"(above 1 is better for embedzk where higher is better, below 1 where lower is better)")
    print(text)
    for name, res in results.items():
        if "skipped" in res:
            print(f"- {name} skipped: {res['skipped']}")
        for key, reason in res.get("skipped_metrics", {}).items():
            print(f"- {name}: {key} not measured: {reason}")
        if "error" in res:
            print(f"- {name}: stopped early: {res['error']}")
        for note in res.get("printed_notes", []):
            print(f"- {name}: {note}")
    print(f"total {info['seconds']:.0f}s")
    os.makedirs(args.out, exist_ok=True)
    payload = {"machine": info, "params": {k: v for k, v in vars(args).items()}, "metrics": {
        k: {"label": v[0], "unit": v[1], "higher_is_better": v[2]} for k, v in METRICS.items()},
        "results": results, "ratios_embedzk_over": rats.get("embedzk", {}),
        "ratios_embedzk_kazoo_over": rats.get("embedzk-kazoo", {}), "table": text}
    with open(os.path.join(args.out, "compare.json"), "w") as f:
        json.dump(payload, f, indent=1)
    try:
        chart(results, os.path.join(args.out, "compare.png"),
              " vs ".join(SHORT.get(n, n) for n in results) + f", 3 members each on loopback; {info['date']}, "
              f"{info['nproc']} cores (shared); median of {args.reps}")
    except Exception as exc:
        log(f"chart not written: {exc!r}")
    log(f"wrote {os.path.join(args.out, 'compare.json')} and compare.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
