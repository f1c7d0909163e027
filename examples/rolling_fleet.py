"""A fleet replaced worker by worker, on fresh disks, while a lock and an election keep working.

    python examples/rolling_fleet.py

Five worker processes run the same line (tcp on loopback):

    Peer(id, bind=address, seeds=SEEDS, voters=3, member_timeout=2.0, data_dir=a_fresh_directory)

The three whose address is a seed found the cluster; the other two join through them. Every worker takes a Lock in
turn to add one to a shared total, and runs an Election whose winner keeps a heartbeat counter going. This script
then replaces every worker, one at a time, by a new process on a fresh data directory: the seeds' replacements come
back at the seed addresses (as the pods of a Kubernetes StatefulSet do, with their stable names), the others at new
addresses; half of the old workers are SIGKILLed, half leave with ``stop(leave=True)``. The leader's autopilot keeps
three voters among the live workers all along. At the end no original worker is left, the total equals the number
of increments the workers saw succeed, give or take those whose outcome they could not know (none lost,
none doubled), the election's heartbeat went on, and the cluster
has exactly three voters, all alive. Exits 0 if all of that holds, 1 otherwise.
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

from embedzk import CancelledError, EmbedZKError, Peer, PeerStoppedError  # noqa: E402
from embedzk.testing import free_ports  # noqa: E402

TOTAL = "/fleet/total"
BEAT = "/fleet/beat"
VOTERS = 3

# ----------------------------------------------------------------------------------------------------------------
# a worker process


def worker(me: str, bind: str, seeds: list[str], data_dir: str) -> None:
    out = threading.Lock()

    def tell(**event: Any) -> None:  # one JSON line per event, for the parent
        line = json.dumps({"worker": me, "t": time.time(), **event}) + "\n"
        with out:
            sys.stdout.write(line)
            sys.stdout.flush()

    # session_timeout: a dead worker's lock and election claims go 2 s after its death.
    peer = Peer(me, bind=bind, seeds=seeds, voters=VOTERS, member_timeout=2.0, data_dir=data_dir,
                session_timeout=2.0)
    peer.start(timeout=60)
    tell(started=True, pid=os.getpid())
    stopping = threading.Event()

    paused = threading.Event()

    def add_one() -> None:  # the lock keeps the read-modify-write of the total to one worker at a time
        lock = peer.Lock("/fleet/lock", identifier=me)
        while not stopping.is_set() and not paused.is_set():
            try:
                with lock:
                    peer.sync()
                    if peer.exists(TOTAL) is None:
                        peer.create(TOTAL, b"0", makepath=True)
                    data, stat = peer.get(TOTAL)
                    peer.set(TOTAL, str(int(data) + 1).encode(), version=stat.version)
                tell(added=True)
            except PeerStoppedError:
                return
            except EmbedZKError as exc:  # a leader change under the write: its outcome is unknown, not counted
                tell(unsure=repr(exc))
            time.sleep(0.05)

    def lead() -> None:  # only the election's winner beats; when it dies, the next one goes on
        tell(leading=True)
        while not stopping.is_set():
            try:
                if peer.exists(BEAT) is None:
                    peer.create(BEAT, b"0", makepath=True)
                data, stat = peer.get(BEAT)
                peer.set(BEAT, str(int(data) + 1).encode(), version=stat.version)
                tell(beat=int(data) + 1)
            except PeerStoppedError:
                return
            except EmbedZKError:
                pass
            time.sleep(0.1)

    def report() -> None:
        while not stopping.wait(0.3):
            try:
                members = peer.members()
            except EmbedZKError:
                continue
            voters = sorted(m.id for m in members.values() if m.voter)
            alive = all(m.reachable for m in members.values() if m.voter)
            tell(members=sorted(members), voters=voters, voters_reachable=alive)

    election = peer.Election("/fleet/election", identifier=me)

    def campaign() -> None:
        try:
            election.run(lead)
        except (CancelledError, EmbedZKError) as exc:
            tell(election_ended=repr(exc))

    adder = threading.Thread(target=add_one, daemon=True)
    threads = [
        adder,
        threading.Thread(target=campaign, daemon=True),
        threading.Thread(target=report, daemon=True),
    ]
    for t in threads:
        t.start()
    command = sys.stdin.readline().strip()  # "pause", "leave", or the end of stdin: stop
    if command == "pause":  # stop adding (and say so once the last increment is reported), then wait
        paused.set()
        adder.join()
        tell(paused=True)
        command = sys.stdin.readline().strip()
    stopping.set()
    election.cancel()
    peer.stop(leave=command == "leave")


# ----------------------------------------------------------------------------------------------------------------
# the parent


class Worker:
    def __init__(self, pid: str, bind: str, seeds: list[str], root: str, events: queue.Queue[Any]) -> None:
        self.id = pid
        self.bind = bind
        args = [sys.executable, os.path.abspath(__file__), "--worker", pid, bind, json.dumps(seeds),
                os.path.join(root, pid)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events: queue.Queue[Any]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                events.put(json.loads(line))
            except ValueError:
                print(f"[{self.id}] {line.rstrip()}")

    def leave(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("leave\n")
        self.proc.stdin.flush()
        self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


class Fleet:
    """The workers, and what their events told the parent."""

    def __init__(self, seeds: list[str], root: str) -> None:
        self.seeds = seeds
        self.root = root
        self.events: queue.Queue[Any] = queue.Queue()
        self.workers: dict[str, Worker] = {}
        self.started: set[str] = set()
        self.added = 0
        self.status: dict[str, dict[str, Any]] = {}
        self.count = 0
        self.beater = ""
        self.unsure = 0
        self.paused: set[str] = set()

    def spawn(self, bind: str) -> Worker:
        self.count += 1
        w = Worker(f"w{self.count}", bind, self.seeds, self.root, self.events)
        self.workers[w.id] = w
        return w

    def pump(self, until: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} did not happen within {timeout}s")
            try:
                event = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            who = event["worker"]
            if event.get("started"):
                self.started.add(who)
            if event.get("paused"):
                self.paused.add(who)
            if event.get("added"):
                self.added += 1
            if "unsure" in event:
                self.unsure += 1
            if "beat" in event:
                self.beater = who
            if event.get("leading") or event.get("election_ended"):
                print(f"  [{who}] {'wins the election' if event.get('leading') else event['election_ended']}")
            if "members" in event:
                self.status[who] = event

    def alive(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.proc.poll() is None]

    def settled(self) -> bool:
        """Every live worker's latest report says: the members are the live workers, three voters, all reachable."""
        alive = {w.id for w in self.alive()}
        reports = [self.status.get(pid) for pid in alive]
        return all(
            r is not None and set(r["members"]) == alive and len(r["voters"]) == VOTERS and r["voters_reachable"]
            and time.time() - r["t"] < 1.0
            for r in reports
        )


def main() -> int:
    seeds = [f"tcp://127.0.0.1:{port}" for port in free_ports(VOTERS)]
    with tempfile.TemporaryDirectory(prefix="embedzk-fleet-") as root:
        fleet = Fleet(seeds, root)
        originals = [fleet.spawn(seed) for seed in seeds]
        originals += [fleet.spawn(f"tcp://127.0.0.1:{port}") for port in free_ports(2)]
        ok = False
        try:
            fleet.pump(lambda: fleet.started >= {w.id for w in originals}, 60, "the first five starting")
            fleet.pump(fleet.settled, 30, "the fleet settling")
            print(f"five workers up, voters {fleet.status[originals[0].id]['voters']}; replacing them one by one")
            for n, old in enumerate(originals):
                added_before = fleet.added
                if n % 2:
                    old.leave()
                    how = "left (stop(leave=True))"
                else:
                    old.kill()
                    fleet.unsure += 1  # it may have died between an increment and telling us
                    how = "was SIGKILLed"
                # A seed's replacement comes back at the seed's address (a stable name); the others anywhere.
                bind = old.bind if old.bind in seeds else f"tcp://127.0.0.1:{free_ports(1)[0]}"
                new = fleet.spawn(bind)
                fleet.pump(lambda new=new: new.id in fleet.started, 60, f"{new.id} starting")
                fleet.pump(fleet.settled, 60, f"the fleet settling after {old.id} went")
                fleet.pump(lambda before=added_before: fleet.added > before + 3, 30, "the lock being taken again")
                fleet.beater = ""
                fleet.pump(lambda: fleet.beater in {w.id for w in fleet.alive()}, 30, "a live election winner")
                voters = fleet.status[new.id]["voters"]
                print(f"{old.id} {how}; {new.id} joined on a fresh disk; voters now {voters}")
            ok = True
        except TimeoutError as exc:
            print(f"FAILED: {exc}")
        finally:
            alive = fleet.alive()
            final = None
            if ok:
                # Stop the increments and count the last ones before reading the total.
                for w in alive:
                    if w.proc.stdin is not None:
                        w.proc.stdin.write("pause\n")
                        w.proc.stdin.flush()
                try:
                    fleet.pump(lambda: fleet.paused >= {w.id for w in alive}, 30, "the workers pausing")
                    final = _final_state(alive)
                except TimeoutError as exc:
                    print(f"FAILED: {exc}")
            for w in alive:  # all at once, so that they close their sessions while they have a quorum
                if w.proc.stdin is not None:
                    try:
                        w.proc.stdin.close()
                    except OSError:
                        pass
            for w in fleet.workers.values():
                w.stop()
        if final is None:
            return 1
        total, beats = final
        originals_left = {w.id for w in originals} & {w.id for w in alive}
        print(f"the total is {total}; the workers saw {fleet.added} increments succeed and {fleet.unsure} end with "
              f"their outcome unknown; the election's heartbeat reached {beats}")
        good = not originals_left and fleet.added <= total <= fleet.added + fleet.unsure and beats > 0
        print("every worker replaced, no increment lost, the election went on" if good else "FAILED")
        return 0 if good else 1


def _final_state(alive: list[Worker]) -> tuple[int, int] | None:
    """Read the total and the heartbeat through a peer of our own, joining the fleet as an observer would."""
    port = free_ports(1)[0]
    peer = Peer("checker", bind=f"tcp://127.0.0.1:{port}", seeds=[w.bind for w in alive], voters=VOTERS,
                member_timeout=2.0)
    try:
        peer.start(timeout=30)
        peer.sync()
        return int(peer.get(TOTAL)[0]), int(peer.get(BEAT)[0])
    except EmbedZKError as exc:
        print(f"FAILED to read the final state: {exc!r}")
        return None
    finally:
        peer.stop(leave=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(main())
