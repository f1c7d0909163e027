"""The physical floor under a write's latency, measured on this machine: what no code of ours can go below.

    python benchmarks/floor.py [--rounds 2000]

A write from a follower's client crosses four network hops (forward, append, acknowledgement, commit), one fsync
on the path (a follower's: the leader's overlaps it) and two hand-overs between the application's thread and the
peer's loop thread. This measures each of those steps alone, with the same libraries and the same shapes as
embedzk (medians of ``--rounds``):

- **ZeroMQ hop**: half the round trip of a small frame between two processes over tcp on loopback, DEALER to
  ROUTER each way, each side's Python thread blocked in a poll as the peer's loop is (ZeroMQ's I/O thread and the
  kernel in between, as in embedzk);
- **thread hand-over**: half the round trip between two Python threads of one process through a queue and a
  blocking get, as an application thread hands a call to the loop and the loop wakes it with the answer;
- **fsync**: a LevelDB write of 100 bytes with ``sync=True`` (plyvel), in a directory on the disk the temporary
  directory lives on, as a member syncs its log.

It prints the floor of a write, 4 hops + 1 fsync + 2 hand-overs, beside the parts.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embedzk.testing import free_ports  # noqa: E402


def _echo(endpoint_in: str, endpoint_out: str, rounds: int) -> None:
    """The far side of the ZeroMQ round trip: receive a frame, send it back."""
    import zmq

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(endpoint_in)
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint_out)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    for _ in range(rounds):
        poller.poll(5000)
        _ident, payload = router.recv_multipart()
        dealer.send(payload)
    time.sleep(0.2)
    ctx.destroy(linger=0)


def zmq_hop(rounds: int) -> float:
    """Median one-way time (half a round trip) of a 100-byte frame between two processes, in seconds."""
    import zmq

    port_far, port_near = free_ports(2)
    far = f"tcp://127.0.0.1:{port_far}"
    near = f"tcp://127.0.0.1:{port_near}"
    proc = mp.Process(target=_echo, args=(far, near, rounds + 100))
    proc.start()
    ctx = zmq.Context()
    try:
        router = ctx.socket(zmq.ROUTER)
        router.bind(near)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IMMEDIATE, 1)
        dealer.connect(far)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        payload = b"x" * 100
        times: list[float] = []
        deadline = time.monotonic() + 10
        while True:  # until both connections are up (IMMEDIATE refuses to queue before)
            try:
                dealer.send(payload, zmq.NOBLOCK)
                break
            except zmq.Again:
                if time.monotonic() > deadline:
                    raise RuntimeError("the echo process did not come up") from None
                time.sleep(0.01)
        poller.poll(5000)
        router.recv_multipart()
        for i in range(rounds + 99):
            began = time.perf_counter()
            dealer.send(payload)
            poller.poll(5000)
            router.recv_multipart()
            if i >= 99:  # the first hundred warm up
                times.append((time.perf_counter() - began) / 2)
        return statistics.median(times)
    finally:
        ctx.destroy(linger=0)
        proc.join(5)
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, 9)  # by pid, never left behind
            proc.join()


def thread_handover(rounds: int) -> float:
    """Median one-way time between two threads through queues, in seconds."""
    to_loop: queue.SimpleQueue[float] = queue.SimpleQueue()
    to_app: queue.SimpleQueue[float] = queue.SimpleQueue()

    def loop() -> None:
        for _ in range(rounds + 100):
            to_app.put(to_loop.get())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    times: list[float] = []
    for i in range(rounds + 100):
        began = time.perf_counter()
        to_loop.put(began)
        to_app.get()
        if i >= 100:
            times.append((time.perf_counter() - began) / 2)
    thread.join(5)
    return statistics.median(times)


def fsync(rounds: int) -> float:
    """Median time of a synced 100-byte LevelDB write, in seconds."""
    import plyvel

    where = tempfile.mkdtemp(prefix="floor-fsync-")
    try:
        db = plyvel.DB(where, create_if_missing=True)
        times: list[float] = []
        value = b"v" * 100
        for i in range(rounds + 20):
            began = time.perf_counter()
            db.put(b"k%d" % i, value, sync=True)
            if i >= 20:
                times.append(time.perf_counter() - began)
        db.close()
        return statistics.median(times)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    hop = zmq_hop(args.rounds)
    handover = thread_handover(args.rounds)
    synced = fsync(min(args.rounds, 500))
    print(f"ZeroMQ hop (half a round trip, tcp loopback, two processes): {hop * 1e6:8.1f} us")
    print(f"thread hand-over (half a round trip through queues):         {handover * 1e6:8.1f} us")
    print(f"fsync (a synced 100-byte LevelDB write):                     {synced * 1e6:8.1f} us")
    floor = 4 * hop + synced + 2 * handover
    print(f"floor of a follower's write, 4 hops + 1 fsync + 2 hand-overs: {floor * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
