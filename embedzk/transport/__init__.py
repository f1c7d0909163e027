"""Transports: how peers exchange frames.

:class:`Transport` is the interface the peer's loop drives. :class:`ZmqTransport` is the real one (ZeroMQ over
``tcp://``, ``ipc://`` or ``inproc://``); :class:`MemoryTransport` on a :class:`MemoryNetwork` is an in-process one
for tests, with partitions, cut links and random losses on demand.
"""

from embedzk.transport.base import (
    DEFAULT_HWM,
    DEFAULT_MAX_FRAME_BYTES,
    Transport,
    TransportClosedError,
    check_peer_id,
)
from embedzk.transport.memory import MemoryNetwork, MemoryTransport
from embedzk.transport.zmq import MAGIC, PROTOCOL_VERSION, CurveKeys, ZmqTransport, frame_header

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
