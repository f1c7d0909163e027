"""ZooKeeper's client protocol on the wire: jute records over length-prefixed frames, as ZooKeeper 3.5-3.9 clients
(kazoo, zkCli, Curator, the C client) speak it.

Sans-IO: nothing here opens a socket or starts a thread. :mod:`~embedzk.zkwire.jute` has the encoding of jute's
primitives, :mod:`~embedzk.zkwire.records` the records, :mod:`~embedzk.zkwire.codes` the numbers (opcodes, error
codes, event types, create modes) and :mod:`~embedzk.zkwire.frames` the framing and the packets of a connection.
Every decoder raises nothing but :class:`~embedzk.errors.DecodeError`, whatever the bytes.
"""

from embedzk.errors import DecodeError
from embedzk.zkwire.codes import ErrorCode, OpCode, error_code
from embedzk.zkwire.frames import (
    DEFAULT_MAX_PACKET,
    FrameDecoder,
    FrameLengthError,
    Reply,
    Request,
    decode_connect_request,
    decode_connect_response,
    decode_reply,
    decode_request,
    encode_connect_request,
    encode_connect_response,
    encode_notification,
    encode_reply,
    encode_request,
    frame,
)
from embedzk.zkwire.jute import JUTE_MAX_BUFFER, JuteReader, JuteRecord, JuteWriter

__all__ = [
    "DEFAULT_MAX_PACKET",
    "JUTE_MAX_BUFFER",
    "DecodeError",
    "ErrorCode",
    "FrameDecoder",
    "FrameLengthError",
    "JuteReader",
    "JuteRecord",
    "JuteWriter",
    "OpCode",
    "Reply",
    "Request",
    "decode_connect_request",
    "decode_connect_response",
    "decode_reply",
    "decode_request",
    "encode_connect_request",
    "encode_connect_response",
    "encode_notification",
    "encode_reply",
    "encode_request",
    "error_code",
    "frame",
]
