"""Transport speed over tcp loopback: one-way frames/s and round-trip latency, beside raw pyzmq.

    python benchmarks/transport_bench.py

Prints medians of 3 runs. The raw pyzmq figure (a DEALER to a ROUTER, no framing, no checks) is measured in the
same run, so the ratio says what the transport's own work costs.
"""

from __future__ import annotations

import statistics
import time

import zmq

from embedzk.transport import ZmqTransport

FRAME = b"x" * 200
BATCH, ROUNDS = 5000, 10


def transport_one_way() -> float:
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    b = ZmqTransport("b", "tcp://127.0.0.1:0")
    a.start()
    b.start()
    try:
        a.set_peers({"b": b.endpoint})
        b.set_peers({"a": a.endpoint})
        while not (a.send("b", b"w") and b.receive(1.0)):
            time.sleep(0.01)
        received = 0
        start = time.perf_counter()
        for _ in range(ROUNDS):
            sent = sum(a.send("b", FRAME) for _ in range(BATCH))
            want = received + sent
            while received < want:
                received += len(b.receive(1.0))
        return received / (time.perf_counter() - start)
    finally:
        a.close()
        b.close()


def transport_round_trip() -> float:
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    b = ZmqTransport("b", "tcp://127.0.0.1:0")
    a.start()
    b.start()
    try:
        a.set_peers({"b": b.endpoint})
        b.set_peers({"a": a.endpoint})
        while not (a.send("b", b"w") and b.receive(1.0)):
            time.sleep(0.01)
        while not (b.send("a", b"w") and a.receive(1.0)):
            time.sleep(0.01)
        samples = []
        for _ in range(2000):
            t0 = time.perf_counter()
            a.send("b", FRAME)
            while not b.receive(1.0):
                pass
            b.send("a", FRAME)
            while not a.receive(1.0):
                pass
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)
    finally:
        a.close()
        b.close()


def raw_zmq_one_way() -> float:
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"a")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    try:
        dealer.send(b"w")
        router.recv_multipart()
        start = time.perf_counter()
        for _ in range(ROUNDS):
            for _ in range(BATCH):
                dealer.send(FRAME)
            for _ in range(BATCH):
                router.recv_multipart()
        return BATCH * ROUNDS / (time.perf_counter() - start)
    finally:
        dealer.close(0)
        router.close(0)


def main() -> None:
    ours = statistics.median(transport_one_way() for _ in range(3))
    raw = statistics.median(raw_zmq_one_way() for _ in range(3))
    rtt = statistics.median(transport_round_trip() for _ in range(3))
    print(f"one way, 200 B frames: embedzk {ours:,.0f} frames/s, raw pyzmq {raw:,.0f} frames/s, ratio {ours / raw:.2f}")
    print(f"round trip p50: {rtt * 1e6:.0f} us")


if __name__ == "__main__":
    main()
