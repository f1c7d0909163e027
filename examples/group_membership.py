"""Group membership: workers register ephemeral nodes under /members and all watch the group change.

    python examples/group_membership.py

Five worker processes run a Peer each (tcp on loopback, LevelDB in a temporary directory). Each registers itself
as an ephemeral znode /members/<id> holding its pid, and watches the group with a ChildrenWatch. Then one worker
leaves politely (``peer.stop()`` closes its session: its node goes at once) and another is SIGKILLed (its
session expires after ``session_timeout``, 3 s here, and the leader deletes its node). Every remaining worker sees
both leave. Exits 0 when they all did, 1 otherwise.
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

from embedzk import Peer  # noqa: E402

SESSION_TIMEOUT = 3.0  # seconds before a dead worker's session, and its /members node, goes


# ----------------------------------------------------------------------------------------------------------------
# a worker process


def worker(me: str, addresses: dict[str, str], data_root: str) -> None:
    def tell(**event: Any) -> None:  # one JSON line per event, for the parent
        say(json.dumps({"worker": me, "t": time.time(), **event}))

    others = {pid: addr for pid, addr in addresses.items() if pid != me}
    peer = Peer(me, bind=addresses[me], peers=others, data_dir=os.path.join(data_root, me),
                session_timeout=SESSION_TIMEOUT)
    peer.start()
    peer.ensure_path("/members")
    peer.create(f"/members/{me}", str(os.getpid()).encode(), ephemeral=True)

    @peer.ChildrenWatch("/members")
    def on_membership(children: list[str]) -> None:
        tell(members=sorted(children), leader=peer.is_leader)

    sys.stdin.readline()  # the parent says when to leave: a line ("leave") or end of input
    peer.stop()
    tell(left=True)


# ----------------------------------------------------------------------------------------------------------------
# the parent


class Worker:
    def __init__(self, pid: str, addresses: dict[str, str], data_root: str, events: queue.Queue[Any]) -> None:
        self.id = pid
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", pid, json.dumps(addresses), data_root],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.members: list[str] = []
        self.leader = False
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events: queue.Queue[Any]) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                print(f"[{self.id}] {line.rstrip()}")
                continue
            if "members" in event:
                self.members, self.leader = event["members"], event["leader"]
            events.put(event)

    def leave(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("leave\n")
                self.proc.stdin.close()
            except OSError:
                pass

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def wait_until(events: queue.Queue[Any], deadline: float, condition: Any) -> None:
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the group did not reach the expected membership in time")
        try:
            events.get(timeout=min(left, 0.5))
        except queue.Empty:
            pass


def main() -> int:
    addresses = cluster_addresses(5)
    events: queue.Queue[Any] = queue.Queue()
    deadline = time.monotonic() + 25
    everyone = sorted(addresses)
    with tempfile.TemporaryDirectory(prefix="embedzk-members-") as data_root:
        workers = {pid: Worker(pid, addresses, data_root, events) for pid in addresses}
        ok = False
        try:
            wait_until(events, deadline, lambda: all(w.members == everyone for w in workers.values()))
            print(f"every worker sees the whole group: {everyone}")
            followers = [w for w in workers.values() if not w.leader]
            polite, victim = followers[0], followers[1]

            polite.leave()
            began = time.monotonic()
            rest = [w for w in workers.values() if w is not polite]
            expected = [pid for pid in everyone if pid != polite.id]
            wait_until(events, deadline, lambda: all(w.members == expected for w in rest))
            print(f"{polite.id} left politely; everyone saw it within {time.monotonic() - began:.2f} s: {expected}")

            print(f"SIGKILL {victim.id} (pid {victim.proc.pid})")
            victim.kill()
            began = time.monotonic()
            rest = [w for w in rest if w is not victim]
            expected = [pid for pid in expected if pid != victim.id]
            wait_until(events, deadline, lambda: all(w.members == expected for w in rest))
            print(f"everyone saw {victim.id} go {time.monotonic() - began:.2f} s after its death "
                  f"(session timeout {SESSION_TIMEOUT} s): {expected}")
            ok = True
        except TimeoutError as exc:
            print(f"failed: {exc}; last seen: { {w.id: w.members for w in workers.values()} }")
        finally:
            for w in workers.values():  # all at once, so that they close their sessions while they have a quorum
                w.leave()
            for w in workers.values():
                try:
                    code = w.proc.wait(15)
                except subprocess.TimeoutExpired:
                    code = -9
                if w is not victim and code != 0 and ok:
                    print(f"{w.id} exited with {code}")
                    ok = False
                w.kill()
    print("every worker saw both departures" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(main())
