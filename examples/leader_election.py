"""Leader election among worker processes: the cluster's own leader does the leader work; kill it, the next takes over.

    python examples/leader_election.py

Three worker processes run a Peer each (tcp on loopback, LevelDB in a temporary directory). Whichever worker the
cluster elects (``peer.is_leader``, announced by the ``leader_changed`` signal) does the "leader work": it bumps a
counter in /election/work every 0.1 s. This script then SIGKILLs the leader's process, watches another worker take
over the work where it stopped, prints the failover time (SIGKILL to the new leader's first committed work), and
stops everyone. Exits 0 once the work has moved to a new leader, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _workers import cluster_addresses, say  # noqa: E402

from embedzk import EmbedZKError, Peer, PeerStoppedError  # noqa: E402

WORK = "/election/work"


# ----------------------------------------------------------------------------------------------------------------
# a worker process


def worker(me: str, addresses: dict[str, str], data_root: str) -> None:
    def tell(**event: Any) -> None:  # one JSON line per event, for the parent
        say(json.dumps({"worker": me, "t": time.time(), **event}))

    others = {pid: addr for pid, addr in addresses.items() if pid != me}
    peer = Peer(me, bind=addresses[me], peers=others, data_dir=os.path.join(data_root, me))
    peer.start()
    tell(started=True, pid=os.getpid())
    wake = threading.Event()
    peer.leader_changed.connect(lambda sender, leader: wake.set(), weak=False)
    stopping = threading.Event()

    def work_loop() -> None:
        leading = False
        while not stopping.is_set():
            if peer.is_leader != leading:
                leading = peer.is_leader
                tell(leader=leading)
            if leading:
                try:
                    tell(work=do_leader_work(peer))
                except PeerStoppedError:
                    return
                except EmbedZKError as exc:  # leadership may be changing under us: try again next round
                    tell(error=repr(exc))
            wake.wait(0.1)
            wake.clear()

    thread = threading.Thread(target=work_loop)
    thread.start()
    sys.stdin.read()  # the parent closes our stdin to stop us
    stopping.set()
    peer.stop()  # closes the session; a write still waiting fails with PeerStoppedError
    thread.join()


def do_leader_work(peer: Peer) -> int:
    """The work only the leader does: bump the shared counter (with a version check, so no two leaders ever
    step on each other's update)."""
    if peer.exists(WORK) is None:
        try:
            peer.create(WORK, b"0", makepath=True)
        except EmbedZKError:
            pass
    data, stat = peer.get(WORK)
    count = int(data) + 1
    peer.set(WORK, str(count).encode(), version=stat.version)
    return count


# ----------------------------------------------------------------------------------------------------------------
# the parent: start the workers, kill the leader, watch the next one take over


class Worker:
    def __init__(self, pid: str, addresses: dict[str, str], data_root: str, events: queue.Queue[Any]) -> None:
        self.id = pid
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", pid, json.dumps(addresses), data_root],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events: queue.Queue[Any]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                print(f"[{self.id}] {line.rstrip()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def ask_to_stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # the worker stops its Peer cleanly and exits
            except OSError:
                pass

    def stop(self, timeout: float = 15.0) -> int:
        self.ask_to_stop()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


def next_event(events: queue.Queue[Any], deadline: float, **match: Any) -> dict[str, Any]:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no event matching {match} in time")
        event = events.get(timeout=left)
        if "error" in event:
            print(f"  [{event['worker']}] {event['error']}")
        if all(event.get(k) == v if not callable(v) else v(event.get(k)) for k, v in match.items()):
            return event


def main() -> int:
    addresses = cluster_addresses(3)
    events: queue.Queue[Any] = queue.Queue()
    deadline = time.monotonic() + 25
    with tempfile.TemporaryDirectory(prefix="embedzk-election-") as data_root:
        workers = {pid: Worker(pid, addresses, data_root, events) for pid in addresses}
        try:
            started: set[str] = set()
            old = ""
            while len(started) < len(workers) or not old:  # start() returns once a worker votes
                event = next_event(events, deadline)
                if event.get("started"):
                    started.add(event["worker"])
                if event.get("leader") is True:
                    old = event["worker"]
                elif event.get("leader") is False and event["worker"] == old:
                    old = ""
            print(f"{old} (pid {workers[old].proc.pid}) is the leader and does the leader work")
            work = next_event(events, deadline, worker=old, work=lambda n: n is not None and n >= 5)
            print(f"{old} has done the work {work['work']} times; SIGKILL {old} (pid {workers[old].proc.pid})")
            killed_at = time.time()
            workers[old].kill()
            new = next_event(events, deadline, leader=True, worker=lambda w: w != old)
            taken = next_event(events, deadline, worker=new["worker"], work=lambda n: n is not None)
            elected = new["t"] - killed_at
            failover = taken["t"] - killed_at
            print(f"{new['worker']} took over: elected {elected * 1000:.0f} ms after the SIGKILL, its first "
                  f"work (count {taken['work']}, continuing from {work['work']}) committed {failover * 1000:.0f} ms "
                  f"after it")
            more = next_event(events, deadline, worker=new["worker"], work=lambda n: n is not None and n >= taken["work"] + 3)
            print(f"{new['worker']} goes on working (count {more['work']}); stopping everyone")
            ok = taken["work"] > work["work"]
        except (TimeoutError, queue.Empty) as exc:
            print(f"failed: {exc}")
            ok = False
        finally:
            running = {pid: w for pid, w in workers.items() if w.proc.returncode is None}
            for w in running.values():  # all at once, so that they close their sessions while they have a quorum
                w.ask_to_stop()
            codes = {pid: w.stop() for pid, w in running.items()}
            for w in workers.values():
                w.kill()
        if any(codes.values()):
            print(f"workers exited with {codes}")
            ok = False
    print("leadership moved to a new leader after the SIGKILL" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())
