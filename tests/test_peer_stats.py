"""stats() counts what it says it counts."""

from __future__ import annotations

import pytest
import zmq

from embedzk import Peer
from embedzk.testing import free_ports, wait_until
from embedzk.transport.zmq import frame_header

pytestmark = pytest.mark.timeout(60)


def test_frames_rejected_counts_what_the_transport_and_the_codec_turn_away() -> None:
    [port] = free_ports(1)
    with Peer("solo", bind=f"tcp://127.0.0.1:{port}") as peer:
        assert peer.stats()["frames_rejected"] == 0
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, b"stranger")
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        try:
            sock.send_multipart([b"GET / HTTP/1.1", b"x"])  # not an embedzk frame: the transport turns it away
            sock.send_multipart([frame_header(b"embedzk"), b"\xff\x00 not cbor"])  # ours, but no message
            wait_until(lambda: peer.stats()["frames_rejected"] >= 2, 10, what="both frames counted")
        finally:
            sock.close()
        assert peer.stats()["transport"]["rejected_magic"] == 1
