"""Transports: how peers exchange frames.

:class:`Transport` is the interface the peer's loop drives. :class:`ZmqTransport` is the real one (ZeroMQ over
``tcp://``, ``ipc://`` or ``inproc://``); :class:`MemoryTransport` on a :class:`MemoryNetwork` is an in-process one
for tests, with partitions, cut links and random losses on demand. The ZeroMQ names load on first use, so that
the in-process transport does not need zmq.
"""

from __future__ import annotations

from typing import Any

from embedzk.transport.base import (
    DEFAULT_HWM,
    DEFAULT_MAX_FRAME_BYTES,
    Transport,
    TransportClosedError,
    check_peer_id,
)
from embedzk.transport.memory import MemoryNetwork, MemoryTransport

__all__ = [
    "DEFAULT_HWM",
    "DEFAULT_MAX_FRAME_BYTES",
    "MAGIC",
    "PROTOCOL_VERSION",
    "CurveKeys",
    "MemoryNetwork",
    "MemoryTransport",
    "Transport",
    "TransportClosedError",
    "ZmqTransport",
    "check_peer_id",
    "frame_header",
]

_ZMQ_NAMES = ("MAGIC", "PROTOCOL_VERSION", "CurveKeys", "ZmqTransport", "frame_header")


def __getattr__(name: str) -> Any:
    if name in _ZMQ_NAMES:
        from embedzk.transport import zmq as zmq_transport

        return getattr(zmq_transport, name)
    raise AttributeError(f"module 'embedzk.transport' has no attribute {name!r}")
