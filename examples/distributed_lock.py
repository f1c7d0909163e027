"""A distributed lock: three worker processes take turns in a critical section.

    python examples/distributed_lock.py

Three workers start a Peer each (tcp on loopback, state in memory). Each takes the Lock /example/lock three times;
inside it, it reads a shared total, waits a little (as real work would) and writes the total plus one. Without the
lock the workers would overwrite each other's updates; with it the total ends at exactly 9. The lock is a queue of
ephemeral sequential nodes: had a worker died holding it, the lock would have passed on once its session expired.
The workers then finish together through a DoubleBarrier.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _workers import cluster_addresses, say, spawn, stop_all  # noqa: E402

from embedzk import Peer  # noqa: E402

TURNS = 3
TOTAL = "/example/total"


def worker(me: str, addresses: dict[str, str]) -> None:
    others = {pid: addr for pid, addr in addresses.items() if pid != me}
    with Peer(me, bind=addresses[me], peers=others, session_timeout=4.0) as peer:
        try:
            peer.create(TOTAL, b"0", makepath=True)
        except Exception:
            pass  # another worker made it first
        lock = peer.Lock("/example/lock", identifier=me)
        for turn in range(1, TURNS + 1):
            with lock:  # blocks until this worker holds the lock
                peer.sync()  # read the latest total, not this replica's possibly older copy
                data, stat = peer.get(TOTAL)
                total = int(data)
                say(f"[{me}] has the lock (turn {turn}); total is {total}")
                time.sleep(0.2)  # the work: any other worker writing now would be overwritten
                peer.set(TOTAL, str(total + 1).encode(), version=stat.version)
            time.sleep(0.05)  # let the others have a go
        # Finish together (a DoubleBarrier), so the cluster keeps its majority while anyone still needs it:
        # nobody gets out of leave() before everyone has entered, read the total, and left.
        finish = peer.DoubleBarrier("/example/finish", num_clients=len(addresses))
        finish.enter()
        peer.sync()
        final = int(peer.get(TOTAL)[0])
        say(f"[{me}] done; the total is {final}")
        finish.leave()
    sys.exit(0 if final == TURNS * len(addresses) else 1)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], json.loads(sys.argv[3]))
        return
    addresses = cluster_addresses(3)
    workers = [spawn(__file__, ["--worker", pid, json.dumps(addresses)]) for pid in addresses]
    stop_all(workers, timeout=60)
    failed = [p.returncode for p in workers if p.returncode]
    print("the lock kept every update: total is 9" if not failed else f"workers failed: {failed}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
