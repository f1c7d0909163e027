"""The packets of a ZooKeeper client connection, and the frames that carry them over a stream.

Every packet, both ways, travels as a frame: a 4-byte big-endian length, then that many bytes. :func:`frame` makes
one; :class:`FrameDecoder` takes the bytes of a stream as they arrive and gives back whole packets, refusing a length
that is negative or over the maximum (ZooKeeper's ``jute.maxbuffer``, 0xfffff bytes unless configured otherwise)
with a :class:`FrameLengthError`.

A connection's first packet from the client is a ConnectRequest, without a header; the server answers a
ConnectResponse, without a header. After that, each request is a RequestHeader and the body its opcode calls for
(:data:`REQUEST_BODIES`), and each reply a ReplyHeader and the body of the request's opcode
(:data:`RESPONSE_BODIES`), or none when the header carries an error. Replies with a reserved xid are not answers to
a request: -1 carries a WatcherEvent, -2 answers a ping, -4 an auth, -8 a setWatches.

The server side: :func:`decode_connect_request`, :func:`decode_request`, :func:`encode_connect_response`,
:func:`encode_reply`, :func:`encode_notification`. The client side, for tests and tools: :func:`encode_connect_request`,
:func:`encode_request`, :func:`decode_connect_response`, :func:`decode_reply`. Decoders raise nothing but
:class:`~embedzk.errors.DecodeError`, and refuse bytes left over after the body (ZooKeeper ignores them). Nothing
here does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from embedzk.errors import DecodeError
from embedzk.zkwire.codes import AUTH_XID, NOTIFICATION_XID, PING_XID, SET_WATCHES_XID, OpCode, op_name
from embedzk.zkwire.jute import JUTE_MAX_BUFFER, BytesLike, JuteReader, JuteRecord, JuteWriter
from embedzk.zkwire.records import (
    AddWatchRequest,
    AuthPacket,
    CheckVersionRequest,
    CheckWatchesRequest,
    ConnectRequest,
    ConnectResponse,
    Create2Response,
    CreateRequest,
    CreateResponse,
    CreateTTLRequest,
    DeleteRequest,
    ErrorResponse,
    ExistsRequest,
    ExistsResponse,
    GetACLRequest,
    GetACLResponse,
    GetAllChildrenNumberRequest,
    GetAllChildrenNumberResponse,
    GetChildren2Request,
    GetChildren2Response,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    GetSASLRequest,
    MultiRequest,
    MultiResponse,
    ReconfigRequest,
    RemoveWatchesRequest,
    ReplyHeader,
    RequestHeader,
    SetACLRequest,
    SetACLResponse,
    SetDataRequest,
    SetDataResponse,
    SetSASLResponse,
    SetWatches,
    SetWatches2,
    SyncRequest,
    SyncResponse,
    WatcherEvent,
    WhoAmIResponse,
)

__all__ = [
    "DEFAULT_MAX_PACKET",
    "REQUEST_BODIES",
    "RESPONSE_BODIES",
    "FrameDecoder",
    "FrameLengthError",
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
    "frame",
]

#: The longest packet accepted unless told otherwise: ZooKeeper's default ``jute.maxbuffer``, 0xfffff bytes.
DEFAULT_MAX_PACKET: Final = JUTE_MAX_BUFFER

_LENGTH = struct.Struct(">i")

# Past this many consumed bytes at the front of its buffer, the decoder drops them even while packets remain.
_COMPACT_AT = 64 * 1024


class FrameLengthError(DecodeError):
    """A frame's length is negative or over the maximum: the stream cannot be read further.

    ``length`` is the length as read and ``prefix`` its 4 raw bytes. Before a connection's first packet, a ZooKeeper
    server reads those 4 bytes as a four-letter word (``ruok``, ``stat``, ``mntr``...) when they spell one, which is
    why they are kept here.
    """

    def __init__(self, message: str, length: int, prefix: bytes) -> None:
        super().__init__(message)
        #: The length the frame announced.
        self.length = length
        #: The 4 bytes the length was read from.
        self.prefix = prefix


def frame(packet: BytesLike) -> bytes:
    """``packet`` with its 4-byte big-endian length in front."""
    return _LENGTH.pack(len(packet)) + bytes(packet)


class FrameDecoder:
    """Cuts a byte stream into packets: feed it bytes as they arrive, take the whole packets it gives back.

    ``max_packet`` is the longest packet accepted. A frame announcing a negative or longer length raises
    :class:`FrameLengthError` when it is reached, after the packets before it were given; every later call raises
    the same error, the stream having no boundary left to resume at.
    """

    __slots__ = ("_base", "_buf", "_error", "_pos", "max_packet")

    def __init__(self, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        if max_packet < 0:
            raise ValueError(f"max_packet must not be negative, not {max_packet}")
        #: The longest packet accepted, in bytes.
        self.max_packet = max_packet
        self._buf = bytearray()
        self._pos = 0
        self._base = 0  # the stream offset of the first byte of _buf
        self._error: FrameLengthError | None = None

    @property
    def buffered(self) -> int:
        """How many bytes were fed that no packet given back holds yet."""
        return len(self._buf) - self._pos

    def feed(self, data: BytesLike) -> Iterator[bytes]:
        """Take ``data``, the next bytes of the stream, and iterate over the whole packets now available.

        The bytes are taken at once; packets not iterated over stay for the next call.
        """
        if self._error is not None:
            raise self._error
        if data:
            self._buf += data
        return self._packets()

    def _packets(self) -> Iterator[bytes]:
        while (packet := self.next_packet()) is not None:
            yield packet

    def next_packet(self) -> bytes | None:
        """The next whole packet fed, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            self._compact()
            return None
        length: int = _LENGTH.unpack_from(buf, pos)[0]
        if length < 0 or length > self.max_packet:
            prefix = bytes(buf[pos : pos + 4])
            problem = "negative" if length < 0 else f"over the maximum of {self.max_packet} bytes"
            self._error = FrameLengthError(
                f"frame length {length} (bytes {prefix.hex()}) at stream offset {self._base + pos} is {problem}",
                length,
                prefix,
            )
            raise self._error
        end = pos + 4 + length
        if len(buf) < end:
            self._compact()
            return None
        packet = bytes(buf[pos + 4 : end])
        self._pos = end
        if end >= _COMPACT_AT:
            self._compact()
        return packet

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0


# -- packets ------------------------------------------------------------------------------------------------------

#: The body of a request, by opcode: a record class, or None for a request that is its header alone. Opcodes a
#: client never sends (notification, createSession, deleteContainer, error) are absent.
REQUEST_BODIES: Final[Mapping[int, type[JuteRecord] | None]] = MappingProxyType(
    {
        OpCode.CREATE: CreateRequest,
        OpCode.DELETE: DeleteRequest,
        OpCode.EXISTS: ExistsRequest,
        OpCode.GET_DATA: GetDataRequest,
        OpCode.SET_DATA: SetDataRequest,
        OpCode.GET_ACL: GetACLRequest,
        OpCode.SET_ACL: SetACLRequest,
        OpCode.GET_CHILDREN: GetChildrenRequest,
        OpCode.SYNC: SyncRequest,
        OpCode.PING: None,
        OpCode.GET_CHILDREN2: GetChildren2Request,
        OpCode.CHECK: CheckVersionRequest,
        OpCode.MULTI: MultiRequest,
        OpCode.CREATE2: CreateRequest,
        OpCode.RECONFIG: ReconfigRequest,
        OpCode.CHECK_WATCHES: CheckWatchesRequest,
        OpCode.REMOVE_WATCHES: RemoveWatchesRequest,
        OpCode.CREATE_CONTAINER: CreateRequest,
        OpCode.CREATE_TTL: CreateTTLRequest,
        OpCode.MULTI_READ: MultiRequest,
        OpCode.AUTH: AuthPacket,
        OpCode.SET_WATCHES: SetWatches,
        OpCode.SASL: GetSASLRequest,
        OpCode.GET_EPHEMERALS: GetEphemeralsRequest,
        OpCode.GET_ALL_CHILDREN_NUMBER: GetAllChildrenNumberRequest,
        OpCode.SET_WATCHES2: SetWatches2,
        OpCode.ADD_WATCH: AddWatchRequest,
        OpCode.WHO_AM_I: None,
        OpCode.CLOSE_SESSION: None,
    }
)

#: The body of a successful reply, by the opcode of the request it answers: a record class, or None for a reply
#: that is its header alone (as ZooKeeper's FinalRequestProcessor answers).
RESPONSE_BODIES: Final[Mapping[int, type[JuteRecord] | None]] = MappingProxyType(
    {
        OpCode.CREATE: CreateResponse,
        OpCode.DELETE: None,
        OpCode.EXISTS: ExistsResponse,
        OpCode.GET_DATA: GetDataResponse,
        OpCode.SET_DATA: SetDataResponse,
        OpCode.GET_ACL: GetACLResponse,
        OpCode.SET_ACL: SetACLResponse,
        OpCode.GET_CHILDREN: GetChildrenResponse,
        OpCode.SYNC: SyncResponse,
        OpCode.PING: None,
        OpCode.GET_CHILDREN2: GetChildren2Response,
        OpCode.CHECK: None,
        OpCode.MULTI: MultiResponse,
        OpCode.CREATE2: Create2Response,
        OpCode.RECONFIG: GetDataResponse,
        OpCode.CHECK_WATCHES: None,
        OpCode.REMOVE_WATCHES: None,
        OpCode.CREATE_CONTAINER: Create2Response,
        OpCode.CREATE_TTL: Create2Response,
        OpCode.MULTI_READ: MultiResponse,
        OpCode.AUTH: None,
        OpCode.SET_WATCHES: None,
        OpCode.SASL: SetSASLResponse,
        OpCode.GET_EPHEMERALS: GetEphemeralsResponse,
        OpCode.GET_ALL_CHILDREN_NUMBER: GetAllChildrenNumberResponse,
        OpCode.SET_WATCHES2: None,
        OpCode.ADD_WATCH: ErrorResponse,
        OpCode.WHO_AM_I: WhoAmIResponse,
        OpCode.CLOSE_SESSION: None,
    }
)

_NOT_FROM_CLIENTS: Final = frozenset(
    {OpCode.NOTIFICATION, OpCode.CREATE_SESSION, OpCode.DELETE_CONTAINER, OpCode.ERROR}
)


@dataclass(frozen=True, slots=True)
class Request:
    """A client's request: its header and the body its opcode calls for (None for ping, whoAmI, closeSession)."""

    header: RequestHeader
    body: JuteRecord | None

    @property
    def xid(self) -> int:
        """The request's xid, which its reply repeats."""
        return self.header.xid

    @property
    def opcode(self) -> int:
        """The request's opcode (``codes.OpCode``)."""
        return self.header.type


@dataclass(frozen=True, slots=True)
class Reply:
    """A server's reply: its header and its body (None when the header carries an error, or the reply has none)."""

    header: ReplyHeader
    body: JuteRecord | None


def _check_body(body: JuteRecord | None, expected: type[JuteRecord] | None, what: str) -> None:
    if expected is None:
        if body is not None:
            raise ValueError(f"{what} has no body, not a {type(body).__name__}")
    elif type(body) is not expected:
        raise ValueError(f"{what} takes a {expected.__name__}, not {type(body).__name__}")


def decode_connect_request(packet: BytesLike, *, max_length: int = JUTE_MAX_BUFFER) -> ConnectRequest:
    """The ConnectRequest a connection's first packet holds, with or without the 3.5+ ``read_only`` trailer."""
    return ConnectRequest.decode(packet, max_length=max_length)


def decode_request(packet: BytesLike, *, max_length: int = JUTE_MAX_BUFFER) -> Request:
    """The request a packet after the ConnectRequest holds: its header, then the body its opcode calls for.

    An opcode unknown here, or one that no client sends, is a DecodeError naming it. ``max_length`` bounds any one
    buffer or string within the packet.
    """
    reader = JuteReader(packet, max_length=max_length)
    try:
        header = RequestHeader.read(reader)
    except DecodeError as exc:
        raise DecodeError(f"request header -> {exc}") from None
    opcode = header.type
    if opcode not in REQUEST_BODIES:
        if opcode in _NOT_FROM_CLIENTS:
            problem = f"opcode {opcode} ({op_name(opcode)}) is not a request a client sends"
        else:
            problem = f"unknown opcode {opcode}"
        raise DecodeError(f"request header: {problem} (xid {header.xid})")
    body_class = REQUEST_BODIES[opcode]
    body: JuteRecord | None = None
    if body_class is not None:
        try:
            body = body_class.read(reader)
        except DecodeError as exc:
            raise DecodeError(f"{op_name(opcode)} request (xid {header.xid}) -> {exc}") from None
    reader.expect_end(f"{op_name(opcode)} request (xid {header.xid})")
    return Request(header, body)


def encode_connect_response(response: ConnectResponse) -> bytes:
    """The frame of a ConnectResponse. Give ``read_only`` (not None) to a client that sent it, as ZooKeeper does."""
    return frame(response.encode())


def encode_reply(header: ReplyHeader, body: JuteRecord | None = None) -> bytes:
    """The frame of a reply: ``header``, then ``body`` if any (none after an error, as a rule)."""
    writer = JuteWriter()
    header.write(writer)
    if body is not None:
        if not isinstance(body, JuteRecord):
            raise TypeError(f"a reply's body must be a jute record, not {type(body).__name__}")
        body.write(writer)
    return frame(writer.getvalue())


def encode_notification(event: WatcherEvent, zxid: int = -1) -> bytes:
    """The frame of a watch notification: a ReplyHeader with xid -1, then ``event``.

    ``zxid`` is the zxid of the change where known (recent servers send it; older ones send -1).
    """
    return encode_reply(ReplyHeader(NOTIFICATION_XID, zxid, 0), event)


# -- the client side ----------------------------------------------------------------------------------------------


def encode_connect_request(request: ConnectRequest) -> bytes:
    """The frame of a ConnectRequest (with the ``read_only`` trailer unless it is None)."""
    return frame(request.encode())


def encode_request(header: RequestHeader, body: JuteRecord | None = None) -> bytes:
    """The frame of a request; ``body`` must be of the class its opcode calls for (ValueError otherwise)."""
    if header.type not in REQUEST_BODIES:
        raise ValueError(f"{op_name(header.type)} is not a request a client sends")
    _check_body(body, REQUEST_BODIES[header.type], f"a {op_name(header.type)} request")
    writer = JuteWriter()
    header.write(writer)
    if body is not None:
        body.write(writer)
    return frame(writer.getvalue())


def decode_connect_response(packet: BytesLike, *, max_length: int = JUTE_MAX_BUFFER) -> ConnectResponse:
    """The ConnectResponse a connection's first packet from the server holds."""
    return ConnectResponse.decode(packet, max_length=max_length)


_RESERVED_XIDS: Final = frozenset({PING_XID, AUTH_XID, SET_WATCHES_XID})


def decode_reply(packet: BytesLike, opcode: int | None, *, max_length: int = JUTE_MAX_BUFFER) -> Reply:
    """The reply a packet from the server holds; ``opcode`` is that of the request it answers.

    A notification (xid -1) holds a WatcherEvent and the replies to ping, auth and setWatches (xids -2, -4, -8) no
    body, whatever ``opcode``; a reply whose header carries an error has no body either (bytes after the header are
    then ignored, as ZooKeeper's client does). An opcode with no known reply is a ValueError.
    """
    reader = JuteReader(packet, max_length=max_length)
    try:
        header = ReplyHeader.read(reader)
    except DecodeError as exc:
        raise DecodeError(f"reply header -> {exc}") from None
    if header.xid == NOTIFICATION_XID:
        what = "notification"
        body_class: type[JuteRecord] | None = WatcherEvent
    elif header.xid in _RESERVED_XIDS:
        what = f"reply to xid {header.xid}"
        body_class = None
    elif header.err != 0:
        return Reply(header, None)
    else:
        if opcode is None or opcode not in RESPONSE_BODIES:
            raise ValueError(f"no reply is known for {op_name(opcode) if opcode is not None else 'opcode None'}")
        what = f"{op_name(opcode)} reply (xid {header.xid})"
        body_class = RESPONSE_BODIES[opcode]
    body: JuteRecord | None = None
    if body_class is not None:
        try:
            body = body_class.read(reader)
        except DecodeError as exc:
            raise DecodeError(f"{what} -> {exc}") from None
    reader.expect_end(what)
    return Reply(header, body)
