"""Transports: the ZeroMQ one over tcp/ipc/inproc, the in-memory one, and what they share.

Loopback addresses and free ports only. ZeroMQ connects asynchronously and DEALERs refuse to queue for a peer that
is not connected yet, so tests that need a frame through retry the send until it arrives, within a deadline.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from embedzk.errors import ConfigurationError
from embedzk.transport import (
    CurveKeys,
    MemoryNetwork,
    MemoryTransport,
    Transport,
    TransportClosedError,
    ZmqTransport,
    frame_header,
)
from embedzk.transport.base import RateLimitedLog

pytestmark = pytest.mark.timeout(20)

Frames = list[tuple[str, bytes]]


# --- helpers -----------------------------------------------------------------------------------------------------


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deliver(sender: Transport, receiver: Transport, to: str, frame: bytes, timeout: float = 5.0) -> Frames:
    """Send ``frame`` until ``receiver`` gets it (connections come up asynchronously); every frame received."""
    got: Frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sender.send(to, frame)
        got += receiver.receive(0.02)
        if any(f == frame for _, f in got):
            return got
    raise AssertionError(f"{frame[:20]!r} from {sender.id} never reached {receiver.id}; got {got[:5]}")


def receive_until(receiver: Transport, done: Callable[[Frames], bool], timeout: float = 5.0) -> Frames:
    got: Frames = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        got += receiver.receive(0.02)
    return got


def wire(*transports: Transport, endpoints: dict[str, str]) -> None:
    for t in transports:
        t.set_peers({pid: ep for pid, ep in endpoints.items() if pid != t.id})


@pytest.fixture
def closing() -> Iterator[list[Transport]]:
    """Transports appended here are closed after the test, whatever happens."""
    made: list[Transport] = []
    yield made
    for t in made:
        t.close()


def zmq_address(kind: str, tmp_path: Path, name: str) -> str:
    if kind == "tcp":
        return "tcp://127.0.0.1:0"
    if kind == "ipc":
        return f"ipc://{tmp_path}/{name}.sock"
    return f"inproc://embedzk-test-{name}-{uuid.uuid4().hex}"


# --- ZeroMQ: reaching peers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "ipc", "inproc"])
def test_round_trip(kind: str, tmp_path: Path, closing: list[Transport]) -> None:
    a = ZmqTransport("a", zmq_address(kind, tmp_path, "a"), cluster=b"test")
    b = ZmqTransport("b", zmq_address(kind, tmp_path, "b"), cluster=b"test")
    closing += [a, b]
    a.start()
    b.start()
    if kind == "tcp":
        assert not a.endpoint.endswith(":0")
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})

    got = deliver(a, b, "b", b"ping")
    assert ("a", b"ping") in got
    got = deliver(b, a, "a", b"pong")
    assert ("b", b"pong") in got
    assert a.stats()["received"] >= 1 and b.stats()["sent"] >= 1
    assert a.stats()["rejected"] == b.stats()["rejected"] == 0


def test_three_transports_all_talking(closing: list[Transport]) -> None:
    ts = {pid: ZmqTransport(pid, "tcp://127.0.0.1:0") for pid in "abc"}
    closing += list(ts.values())
    for t in ts.values():
        t.start()
    wire(*ts.values(), endpoints={pid: t.endpoint for pid, t in ts.items()})
    for frm in "abc":
        for to in "abc":
            if frm != to:
                frame = f"{frm}->{to}".encode()
                assert (frm, frame) in deliver(ts[frm], ts[to], to, frame)


def test_peer_that_starts_later_is_reached(closing: list[Transport]) -> None:
    address = f"tcp://127.0.0.1:{free_tcp_port()}"
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    closing.append(a)
    a.set_peers({"b": address})  # before start(): kept for start()
    a.start()
    assert a.send("b", b"too early") is False  # nobody there, and IMMEDIATE keeps nothing queued for later
    assert a.stats()["dropped_send_blocked"] == 1
    time.sleep(0.3)  # let a's connection attempts fail and back off a little
    b = ZmqTransport("b", address)
    closing.append(b)
    b.start()
    got = deliver(a, b, "b", b"hello", timeout=5.0)
    assert ("a", b"too early") not in got


def test_peer_restarted_on_the_same_port_is_reached_again(closing: list[Transport]) -> None:
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    b = ZmqTransport("b", "tcp://127.0.0.1:0")
    closing += [a, b]
    a.start()
    b.start()
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})
    deliver(a, b, "b", b"first")
    deliver(b, a, "a", b"first back")

    b.close()
    b2 = ZmqTransport("b", b.endpoint)
    closing.append(b2)
    b2.start()
    b2.set_peers({"a": a.endpoint})
    assert ("a", b"again") in deliver(a, b2, "b", b"again")
    # b2 takes over the routing id "b" on a's ROUTER.
    assert ("b", b"again back") in deliver(b2, a, "a", b"again back")


def test_peer_restarted_on_the_same_inproc_address_is_reached_again(closing: list[Transport]) -> None:
    # ZeroMQ never reconnects inproc://: the transport connects anew once it sees the address bound again.
    a = ZmqTransport("a", zmq_address("inproc", Path(), "a"))
    b = ZmqTransport("b", zmq_address("inproc", Path(), "b"))
    closing += [a, b]
    a.start()
    b.start()
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})
    deliver(a, b, "b", b"first")

    b.close()
    dealer = a._dealers[a._addresses["b"]]
    wait_for_drop = time.monotonic() + 5
    while a.send("b", b"lost") and time.monotonic() < wait_for_drop:
        time.sleep(0.01)
    assert not any(a.send("b", b"lost") for _ in range(100))
    assert a._dealers[a._addresses["b"]] is dealer  # down but not bound again: no new socket per failed send

    b2 = ZmqTransport("b", b.endpoint)
    closing.append(b2)
    b2.start()
    assert ("a", b"again") in deliver(a, b2, "b", b"again")
    assert a._dealers[a._addresses["b"]] is not dealer
    b2.set_peers({"a": a.endpoint})
    assert ("b", b"again back") in deliver(b2, a, "a", b"again back")


def test_tcp_peers_do_not_track_inproc_binds(closing: list[Transport]) -> None:
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    closing.append(a)
    a.start()
    a.set_peers({"b": f"tcp://127.0.0.1:{free_tcp_port()}", "c": "inproc://embedzk-test-nobody"})
    assert a._inproc_generations.keys() == {"inproc://embedzk-test-nobody"}


def test_set_peers_connects_new_and_disconnects_removed(closing: list[Transport]) -> None:
    a, b, c = (ZmqTransport(pid, "tcp://127.0.0.1:0") for pid in "abc")
    closing += [a, b, c]
    for t in (a, b, c):
        t.start()
    a.set_peers({"b": b.endpoint})
    deliver(a, b, "b", b"to b")
    a.set_peers({"c": c.endpoint})
    assert a.send("b", b"gone") is False
    assert a.stats()["dropped_send_unknown_peer"] == 1
    deliver(a, c, "c", b"to c")
    # A changed endpoint reconnects: "c" now lives at b's address.
    a.set_peers({"c": b.endpoint})
    assert ("a", b"moved") in deliver(a, b, "c", b"moved")
    assert a.stats()["peers"] == 1


# --- ZeroMQ: what a remote sends cannot hurt us ------------------------------------------------------------------


def test_oversized_frame_is_dropped_and_the_next_good_frame_arrives(closing: list[Transport]) -> None:
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    b = ZmqTransport("b", "tcp://127.0.0.1:0", max_frame_bytes=1024)
    closing += [a, b]
    a.start()
    b.start()
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})
    deliver(a, b, "b", b"warm up")

    big = b"x" * 4096
    assert a.send("b", big) is True  # a allows it; b's ZeroMQ refuses it (MAXMSGSIZE) and resets the connection
    got = deliver(a, b, "b", b"good")
    assert all(frame != big for _, frame in got)
    assert ("a", b"good") in got


def test_oversized_frame_over_inproc_is_rejected_in_python(closing: list[Transport]) -> None:
    # inproc has no MAXMSGSIZE check: the transport's own check must catch it.
    a = ZmqTransport("a", zmq_address("inproc", Path(), "a"))
    b = ZmqTransport("b", zmq_address("inproc", Path(), "b"), max_frame_bytes=1024)
    closing += [a, b]
    a.start()
    b.start()
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})
    deliver(a, b, "b", b"warm up")
    assert a.send("b", b"x" * 4096)
    got = deliver(a, b, "b", b"good")
    assert all(len(frame) <= 1024 for _, frame in got)
    assert b.stats()["rejected_oversized"] == 1


def test_send_refuses_a_frame_over_its_own_limit(closing: list[Transport]) -> None:
    a = ZmqTransport("a", "tcp://127.0.0.1:0", max_frame_bytes=100)
    closing.append(a)
    a.start()
    a.set_peers({"b": f"tcp://127.0.0.1:{free_tcp_port()}"})
    assert a.send("b", b"x" * 101) is False
    assert a.stats()["dropped_send_oversized"] == 1


def test_garbage_frames_are_rejected_and_the_loop_keeps_receiving(
    closing: list[Transport], caplog: pytest.LogCaptureFixture
) -> None:
    rx = ZmqTransport("rx", "tcp://127.0.0.1:0", cluster=b"ours")
    closing.append(rx)
    rx.start()
    good = frame_header(b"ours")
    ctx = zmq.Context.instance()

    def raw_dealer(identity: bytes | None) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.connect(rx.endpoint)
        return sock

    evil = raw_dealer(b"evil")
    bad_id = raw_dealer(b"\xff\xfe")
    anonymous = raw_dealer(None)
    try:
        with caplog.at_level(logging.WARNING, logger="embedzk.transport"):
            for _ in range(20):
                evil.send_multipart([b"XYZ\x01ours", b"payload"])  # wrong magic
            evil.send_multipart([b"EZ", b"payload"])  # header too short to hold magic and version
            evil.send_multipart([good])  # one part
            evil.send_multipart([good, b"1", b"2", b"3", b"4"])  # five parts
            evil.send_multipart([frame_header(b"theirs"), b"payload"])  # another cluster
            evil.send_multipart([frame_header(b"ours", version=99), b"payload"])  # unknown version
            bad_id.send_multipart([good, b"payload"])  # identity not UTF-8
            anonymous.send_multipart([good, b"payload"])  # no identity at all
            evil.send_multipart([good, b"finally"])  # well-formed: delivered

            def done(got: Frames) -> bool:
                return ("evil", b"finally") in got and rx.stats()["rejected"] >= 27

            got = receive_until(rx, done)
    finally:
        for sock in (evil, bad_id, anonymous):
            sock.close(linger=0)

    assert got == [("evil", b"finally")]
    stats = rx.stats()
    assert stats["rejected_magic"] == 21
    assert stats["rejected_parts"] == 2
    assert stats["rejected_cluster"] == 1
    assert stats["rejected_version"] == 1
    assert stats["rejected_identity"] == 2
    assert stats["rejected"] == 27 and stats["received"] == 1
    # Logged with a reason, but 21 bad-magic frames make one line, not 21.
    lines = [r.getMessage() for r in caplog.records if r.name == "embedzk.transport"]
    assert sum("does not start with" in line for line in lines) == 1
    assert any("cluster" in line for line in lines) and any("UTF-8" in line for line in lines)

    # Still receiving from regular peers afterwards.
    tx = ZmqTransport("tx", "tcp://127.0.0.1:0", cluster=b"ours")
    closing.append(tx)
    tx.start()
    tx.set_peers({"rx": rx.endpoint})
    assert ("tx", b"after") in deliver(tx, rx, "rx", b"after")


def test_a_peer_of_another_cluster_is_rejected(closing: list[Transport]) -> None:
    a = ZmqTransport("a", "tcp://127.0.0.1:0", cluster=b"one")
    b = ZmqTransport("b", "tcp://127.0.0.1:0", cluster=b"two")
    closing += [a, b]
    a.start()
    b.start()
    a.set_peers({"b": b.endpoint})
    assert _send_n(a, "b", 3)
    assert receive_until(b, lambda got: b.stats()["rejected_cluster"] >= 3) == []
    assert b.stats()["rejected_cluster"] >= 3


def _send_n(t: Transport, to: str, n: int, timeout: float = 3.0) -> bool:
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < n and time.monotonic() < deadline:
        if t.send(to, b"frame"):
            sent += 1
        else:
            time.sleep(0.01)
    return sent == n


# --- ZeroMQ: CURVE -----------------------------------------------------------------------------------------------


def test_curve_round_trip_and_an_outsider_is_refused(closing: list[Transport]) -> None:
    keys = CurveKeys.generate()
    a = ZmqTransport("a", "tcp://127.0.0.1:0", curve=keys)
    b = ZmqTransport("b", "tcp://127.0.0.1:0", curve=keys)
    closing += [a, b]
    a.start()
    b.start()
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})
    assert ("a", b"secret") in deliver(a, b, "b", b"secret")
    assert ("b", b"secret back") in deliver(b, a, "a", b"secret back")

    # Knows the cluster's public key (it is public) but not the secret one: the ZAP handler turns it away.
    other = CurveKeys.generate()
    outsider = ZmqTransport("x", "tcp://127.0.0.1:0", curve=CurveKeys(keys.public_key, other.secret_key))
    plain = ZmqTransport("y", "tcp://127.0.0.1:0")
    closing += [outsider, plain]
    for t in (outsider, plain):
        t.start()
        t.set_peers({"a": a.endpoint})
    deadline = time.monotonic() + 0.5
    got: Frames = []
    while time.monotonic() < deadline:
        outsider.send("a", b"let me in")
        plain.send("a", b"let me in")
        got += a.receive(0.02)
    assert got == []
    assert outsider.stats()["sent"] == 0 and plain.stats()["sent"] == 0


# --- contract tests, for both transports -------------------------------------------------------------------------


@pytest.fixture(params=["zmq", "memory"])
def pair(request: pytest.FixtureRequest, closing: list[Transport]) -> tuple[Transport, Transport]:
    a: Transport
    b: Transport
    if request.param == "zmq":
        a = ZmqTransport("a", "tcp://127.0.0.1:0")
        b = ZmqTransport("b", "tcp://127.0.0.1:0")
    else:
        net = MemoryNetwork(random.Random(1))
        a = MemoryTransport("a", net)
        b = MemoryTransport("b", net)
    closing += [a, b]
    a.start()
    b.start()
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})  # type: ignore[attr-defined]
    return a, b


def test_both_are_transports(pair: tuple[Transport, Transport]) -> None:
    for t in pair:
        assert isinstance(t, Transport)


def test_send_to_an_unknown_peer_returns_false(pair: tuple[Transport, Transport]) -> None:
    a, _ = pair
    assert a.send("nobody", b"x") is False
    assert a.stats()["dropped_send_unknown_peer"] == 1
    assert a.stats()["dropped_send"] == 1


def test_wake_from_another_thread_interrupts_receive(pair: tuple[Transport, Transport]) -> None:
    a, _ = pair
    timer = threading.Timer(0.1, a.wake)
    start = time.monotonic()
    timer.start()
    try:
        assert a.receive(10.0) == []
    finally:
        timer.cancel()
    assert time.monotonic() - start < 1.0


def test_wake_before_receive_makes_the_next_receive_return_at_once(pair: tuple[Transport, Transport]) -> None:
    a, _ = pair
    for _ in range(1000):  # many wakes coalesce; none blocks
        a.wake()
    start = time.monotonic()
    a.receive(10.0)
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    assert a.receive(0.05) == []  # the wakes were used up
    assert time.monotonic() - start >= 0.04


def test_receive_times_out_without_frames(pair: tuple[Transport, Transport]) -> None:
    a, _ = pair
    start = time.monotonic()
    assert a.receive(0.1) == []
    assert 0.08 <= time.monotonic() - start < 2.0


def test_frames_keep_their_order(pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    deliver(a, b, "b", b"warm up")
    frames = [f"frame {i}".encode() for i in range(500)]
    assert all(a.send("b", f) for f in frames)
    got = receive_until(b, lambda got: len(got) >= 500)
    assert [f for _, f in got] == frames


def test_close_is_idempotent_and_final(pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    a.close()
    a.close()
    assert a.send("b", b"x") is False
    assert a.stats()["dropped_send_closed"] == 1
    assert a.receive(0.5) == []
    a.wake()  # harmless
    with pytest.raises(TransportClosedError):
        a.start()


# --- configuration errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["", "\x00x", "x" * 256, "\udc80", 7])
def test_invalid_ids_are_refused(bad_id: object) -> None:
    with pytest.raises(ConfigurationError):
        ZmqTransport(bad_id, "tcp://127.0.0.1:0")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        MemoryTransport(bad_id, MemoryNetwork())  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["127.0.0.1:7000", "udp://127.0.0.1:1", "tcp://", "", None])
def test_invalid_endpoints_are_refused(bad: object, closing: list[Transport]) -> None:
    with pytest.raises(ConfigurationError):
        ZmqTransport("a", bad)  # type: ignore[arg-type]
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    closing.append(a)
    with pytest.raises(ConfigurationError):
        a.set_peers({"b": bad})  # type: ignore[dict-item]


def test_an_address_in_use_is_a_configuration_error(closing: list[Transport]) -> None:
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    closing.append(a)
    a.start()
    b = ZmqTransport("b", a.endpoint)
    closing.append(b)
    with pytest.raises(ConfigurationError, match="cannot bind"):
        b.start()
    net = MemoryNetwork()
    m1, m2 = MemoryTransport("m", net), MemoryTransport("m", net)
    closing += [m1, m2]
    m1.start()
    with pytest.raises(ConfigurationError):
        m2.start()


# --- memory transport: faults ------------------------------------------------------------------------------------


def memory_cluster(net: MemoryNetwork, ids: str, **kwargs: int) -> dict[str, MemoryTransport]:
    ts = {pid: MemoryTransport(pid, net, **kwargs) for pid in ids}
    for t in ts.values():
        t.start()
    wire(*ts.values(), endpoints={pid: t.endpoint for pid, t in ts.items()})
    return ts


def reachable(ts: dict[str, MemoryTransport]) -> set[tuple[str, str]]:
    """Every directed link a frame gets through now."""
    links = set()
    for frm in ts:
        for to in ts:
            if frm != to:
                assert ts[frm].send(to, f"{frm}>{to}".encode())  # lost to a fault or not, send() cannot tell
    for to, t in ts.items():
        for frm, _ in t.receive(0):
            links.add((frm, to))
    return links


def test_memory_partition_cut_isolate_heal() -> None:
    net = MemoryNetwork(random.Random(7))
    ts = memory_cluster(net, "abcde")
    everything = {(f, t) for f in "abcde" for t in "abcde" if f != t}
    assert reachable(ts) == everything

    net.partition([{"a", "b"}, {"c", "d"}])  # e is in no group: keeps its links
    assert reachable(ts) == everything - {
        (x, y) for x in "ab" for y in "cd"
    } - {(y, x) for x in "ab" for y in "cd"}

    net.heal()
    net.cut("a", "b", one_way=True)
    assert reachable(ts) == everything - {("a", "b")}

    net.heal()
    net.isolate("c")
    assert reachable(ts) == {(f, t) for f, t in everything if "c" not in (f, t)}

    net.heal()
    assert reachable(ts) == everything
    assert net.stats()["lost_cut"] == 8 + 1 + 8


def test_memory_drop_rate_is_deterministic_with_a_seed() -> None:
    def run(seed: int) -> list[bytes]:
        net = MemoryNetwork(random.Random(seed), drop_rate=0.3)
        ts = memory_cluster(net, "ab")
        for i in range(200):
            ts["a"].send("b", str(i).encode())
        return [f for _, f in ts["b"].receive(0)]

    first = run(42)
    assert first == run(42)
    assert first != run(43)
    assert 100 < len(first) < 180


def test_memory_bounded_queue_and_absent_peer() -> None:
    net = MemoryNetwork()
    ts = memory_cluster(net, "ab", hwm=10)
    a, b = ts["a"], ts["b"]
    assert sum(a.send("b", b"x") for _ in range(15)) == 10
    assert a.stats()["dropped_send_full"] == 5
    assert len(b.receive(0)) == 10

    b.close()
    assert a.send("b", b"x") is False
    assert a.stats()["dropped_send_not_connected"] == 1
    b2 = MemoryTransport("b", net)  # restarted at the same address: reached again
    b2.start()
    assert a.send("b", b"back")
    assert b2.receive(0) == [("a", b"back")]


def test_memory_rejects_frames_over_the_receivers_limit() -> None:
    net = MemoryNetwork()
    a = MemoryTransport("a", net)
    b = MemoryTransport("b", net, max_frame_bytes=10)
    for t in (a, b):
        t.start()
    a.set_peers({"b": b.endpoint})
    assert a.send("b", b"x" * 11)  # lost on arrival, as with ZeroMQ's MAXMSGSIZE
    assert a.send("b", b"ok")
    assert b.receive(0) == [("a", b"ok")]
    assert b.stats()["rejected_oversized"] == 1


def test_memory_transports_across_threads() -> None:
    net = MemoryNetwork()
    ts = memory_cluster(net, "abc")
    n = 2000
    got: dict[str, list[tuple[str, bytes]]] = {"c": []}

    def sender(t: MemoryTransport) -> None:
        for i in range(n):
            while not t.send("c", str(i).encode()):
                time.sleep(0.001)

    def receiver() -> None:
        while len(got["c"]) < 2 * n:
            got["c"] += ts["c"].receive(1.0)

    threads = [threading.Thread(target=sender, args=(ts[p],)) for p in "ab"] + [threading.Thread(target=receiver)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    for frm in "ab":
        assert [f for s, f in got["c"] if s == frm] == [str(i).encode() for i in range(n)]


# --- logging -----------------------------------------------------------------------------------------------------


def test_rate_limited_log_counts_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger("embedzk.test"), interval=0.05)
    with caplog.at_level(logging.WARNING, logger="embedzk.test"):
        for _ in range(5):
            limited.warning("r", "bad %s", "thing")
        limited.warning("other", "another")
        time.sleep(0.06)
        limited.warning("r", "bad %s", "thing")
    assert [r.getMessage() for r in caplog.records] == [
        "bad thing",
        "another",
        "bad thing (and 4 more like it not logged)",
    ]


# --- measurements ------------------------------------------------------------------------------------------------


def test_bulk_and_ping_pong_over_tcp_lose_nothing(closing: list[Transport]) -> None:
    """Speed is measured by benchmarks/transport_bench.py; here only that nothing is lost on loopback."""
    a = ZmqTransport("a", "tcp://127.0.0.1:0")
    b = ZmqTransport("b", "tcp://127.0.0.1:0")
    closing += [a, b]
    a.start()
    b.start()
    wire(a, b, endpoints={"a": a.endpoint, "b": b.endpoint})
    deliver(a, b, "b", b"warm up")
    deliver(b, a, "a", b"warm up")

    # One way: batches of 5,000 frames of 200 bytes, sent at once, then received.
    frame = b"x" * 200
    batch, rounds = 5000, 10
    received = 0
    for _ in range(rounds):
        sent = sum(a.send("b", frame) for _ in range(batch))
        want = received + sent
        while received < want:
            got = b.receive(1.0)
            assert got, "frames lost on loopback"
            received += len(got)
    assert received == batch * rounds

    # Round trip: a -> b -> a, one frame at a time, both ends in this thread.
    for _ in range(1000):
        assert a.send("b", frame)
        assert b.receive(1.0)
        assert b.send("a", frame)
        assert a.receive(1.0)
