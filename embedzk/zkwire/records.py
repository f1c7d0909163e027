"""The records a ZooKeeper 3.5-3.9 client and server exchange, with their jute encoding.

Each record is a frozen dataclass whose fields are those of the class of the same name in ZooKeeper's
``zookeeper.jute``, in the same order, named in snake case (``lastZxidSeen`` is ``last_zxid_seen``). What jute lets
be null is typed so: a ``ustring`` is ``str | None``, a ``buffer`` ``bytes | None``, a ``vector`` a tuple or None.
Clients do send nulls: kazoo writes every empty string as null, so an ACL's ``Id("auth", "")`` arrives with a null
id. Integers are plain ints (codes and flags too, so that a value unknown here still decodes); the enums of
:mod:`embedzk.zkwire.codes` compare equal to them.

``record.encode()`` gives the record's bytes and ``Record.decode(data)`` the record that ``data`` holds, all of it;
decoding raises nothing but :class:`~embedzk.errors.DecodeError`.

Besides the records of ``zookeeper.jute``:

* :class:`ConnectRequest` and :class:`ConnectResponse` carry the ``readOnly`` boolean that 3.5+ clients and servers
  append after the jute record (None when absent, as from a 3.4 client);
* :class:`MultiRequest` and :class:`MultiResponse` are ZooKeeper's ``MultiOperationRecord`` and ``MultiResponse``: a
  list of operations or results, each after a :class:`MultiHeader`, closed by a header with ``done`` set;
  :class:`DeleteResult` and :class:`CheckResult` stand for the results that have no body.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Final, Self, TypeAlias, TypeVar

from embedzk import model
from embedzk.errors import DecodeError
from embedzk.zkwire.codes import OpCode
from embedzk.zkwire.jute import (
    BOOL,
    BUFFER,
    INT,
    LONG,
    USTRING,
    JuteReader,
    JuteRecord,
    JuteWriter,
    record,
    vector,
)

__all__ = [
    "ACL",
    "AddWatchRequest",
    "AuthPacket",
    "CheckResult",
    "CheckVersionRequest",
    "CheckWatchesRequest",
    "ClientInfo",
    "ConnectRequest",
    "ConnectResponse",
    "Create2Response",
    "CreateRequest",
    "CreateResponse",
    "CreateTTLRequest",
    "DeleteRequest",
    "DeleteResult",
    "ErrorResponse",
    "ExistsRequest",
    "ExistsResponse",
    "GetACLRequest",
    "GetACLResponse",
    "GetAllChildrenNumberRequest",
    "GetAllChildrenNumberResponse",
    "GetChildren2Request",
    "GetChildren2Response",
    "GetChildrenRequest",
    "GetChildrenResponse",
    "GetDataRequest",
    "GetDataResponse",
    "GetEphemeralsRequest",
    "GetEphemeralsResponse",
    "GetSASLRequest",
    "Id",
    "MultiHeader",
    "MultiOp",
    "MultiOpRequest",
    "MultiRequest",
    "MultiResponse",
    "MultiResult",
    "ReconfigRequest",
    "RemoveWatchesRequest",
    "ReplyHeader",
    "RequestHeader",
    "SetACLRequest",
    "SetACLResponse",
    "SetDataRequest",
    "SetDataResponse",
    "SetSASLRequest",
    "SetSASLResponse",
    "SetWatches",
    "SetWatches2",
    "Stat",
    "SyncRequest",
    "SyncResponse",
    "WatcherEvent",
    "WhoAmIResponse",
]

_STRINGS = vector(USTRING)

C = TypeVar("C", bound=JuteRecord)

# -- org.apache.zookeeper.data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Id(JuteRecord):
    """An identity: an auth scheme and an id within it (``world``/``anyone``, ``digest``/``user:hash``, ...)."""

    scheme: str | None
    id: str | None

    _jute_fields = (("scheme", USTRING), ("id", USTRING))


@dataclass(frozen=True, slots=True)
class ACL(JuteRecord):
    """One entry of a node's access control list: the permissions (``codes.Perms`` bits) an identity has."""

    perms: int
    id: Id

    _jute_fields = (("perms", INT), ("id", record(Id)))


_ACLS = vector(record(ACL))


@dataclass(frozen=True, slots=True)
class Stat(JuteRecord):
    """A znode's metadata as the wire carries it: the eleven fields of :class:`embedzk.model.Stat`, in its order."""

    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int

    _jute_fields = (
        ("czxid", LONG),
        ("mzxid", LONG),
        ("ctime", LONG),
        ("mtime", LONG),
        ("version", INT),
        ("cversion", INT),
        ("aversion", INT),
        ("ephemeral_owner", LONG),
        ("data_length", INT),
        ("num_children", INT),
        ("pzxid", LONG),
    )

    @classmethod
    def from_model(cls, stat: model.Stat) -> Self:
        """The wire form of embedzk's :class:`~embedzk.model.Stat` (the same fields, in the same order)."""
        return cls(**{name: getattr(stat, name) for name, _kind in cls._jute_fields})

    def to_model(self) -> model.Stat:
        """This Stat as embedzk's :class:`~embedzk.model.Stat`."""
        return model.Stat(**{name: getattr(self, name) for name, _kind in self._jute_fields})


_STAT = record(Stat)


@dataclass(frozen=True, slots=True)
class ClientInfo(JuteRecord):
    """One identity of a session as whoAmI reports it: the auth scheme and the user (or address) within it."""

    auth_scheme: str | None
    user: str | None

    _jute_fields = (("auth_scheme", USTRING), ("user", USTRING))


# -- session ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequest(JuteRecord):
    """The first packet of a connection, sent without a RequestHeader: open a session, or resume ``session_id``.

    ``read_only`` is the boolean that clients from 3.5 on append after the record (whether they accept a read-only
    server); None when the packet ends without it, as from a 3.4 client.
    """

    protocol_version: int
    last_zxid_seen: int
    time_out: int
    session_id: int
    passwd: bytes | None
    read_only: bool | None = None

    _jute_fields = (
        ("protocol_version", INT),
        ("last_zxid_seen", LONG),
        ("time_out", INT),
        ("session_id", LONG),
        ("passwd", BUFFER),
    )

    def write(self, writer: JuteWriter) -> None:
        """Write the record, then ``read_only`` unless it is None."""
        JuteRecord.write(self, writer)
        if self.read_only is not None:
            writer.write_bool(self.read_only, "ConnectRequest.read_only")

    @classmethod
    def read(cls, reader: JuteReader) -> Self:
        """Read the record, and ``read_only`` if a byte follows it."""
        return _read_with_trailing_bool(cls, reader)


@dataclass(frozen=True, slots=True)
class ConnectResponse(JuteRecord):
    """The server's answer to a ConnectRequest, sent without a ReplyHeader.

    A ``time_out`` of 0 (with ``session_id`` 0) refuses the session: it expired, or the password was wrong.
    ``read_only`` (whether this server is read-only) follows the record for clients that sent it; None otherwise.
    """

    protocol_version: int
    time_out: int
    session_id: int
    passwd: bytes | None
    read_only: bool | None = None

    _jute_fields = (("protocol_version", INT), ("time_out", INT), ("session_id", LONG), ("passwd", BUFFER))

    def write(self, writer: JuteWriter) -> None:
        """Write the record, then ``read_only`` unless it is None."""
        JuteRecord.write(self, writer)
        if self.read_only is not None:
            writer.write_bool(self.read_only, "ConnectResponse.read_only")

    @classmethod
    def read(cls, reader: JuteReader) -> Self:
        """Read the record, and ``read_only`` if a byte follows it."""
        return _read_with_trailing_bool(cls, reader)


def _read_with_trailing_bool(cls: type[C], reader: JuteReader) -> C:
    """Read the record's fields, then ``read_only`` if a byte follows them (None if the input ends there)."""
    values: list[Any] = [jtype.read(reader, what) for _, jtype, what in cls._jute_plan]
    values.append(reader.read_bool(f"{cls.__name__}.read_only") if reader.remaining else None)
    factory: Callable[..., C] = cls
    return factory(*values)


@dataclass(frozen=True, slots=True)
class RequestHeader(JuteRecord):
    """What precedes every request after the ConnectRequest: the client's request id and the opcode."""

    xid: int
    type: int

    _jute_fields = (("xid", INT), ("type", INT))


@dataclass(frozen=True, slots=True)
class ReplyHeader(JuteRecord):
    """What precedes every reply after the ConnectResponse: the request's xid (or a reserved one), the zxid the
    server had reached, and the error code (0 for success; a reply with an error has no body)."""

    xid: int
    zxid: int
    err: int

    _jute_fields = (("xid", INT), ("zxid", LONG), ("err", INT))


@dataclass(frozen=True, slots=True)
class AuthPacket(JuteRecord):
    """An auth request (xid ``AUTH_XID``): credentials ``auth`` in ``scheme``; ``type`` is 0 in every client."""

    type: int
    scheme: str | None
    auth: bytes | None

    _jute_fields = (("type", INT), ("scheme", USTRING), ("auth", BUFFER))


@dataclass(frozen=True, slots=True)
class SetWatches(JuteRecord):
    """Re-register, after a reconnection, the watches a client holds (xid ``SET_WATCHES_XID``); the server fires
    at once those whose node changed after ``relative_zxid``."""

    relative_zxid: int
    data_watches: tuple[str | None, ...] | None
    exist_watches: tuple[str | None, ...] | None
    child_watches: tuple[str | None, ...] | None

    _jute_fields = (
        ("relative_zxid", LONG),
        ("data_watches", _STRINGS),
        ("exist_watches", _STRINGS),
        ("child_watches", _STRINGS),
    )


@dataclass(frozen=True, slots=True)
class SetWatches2(JuteRecord):
    """SetWatches with the persistent and persistent recursive watches of 3.6+ clients."""

    relative_zxid: int
    data_watches: tuple[str | None, ...] | None
    exist_watches: tuple[str | None, ...] | None
    child_watches: tuple[str | None, ...] | None
    persistent_watches: tuple[str | None, ...] | None
    persistent_recursive_watches: tuple[str | None, ...] | None

    _jute_fields = (
        ("relative_zxid", LONG),
        ("data_watches", _STRINGS),
        ("exist_watches", _STRINGS),
        ("child_watches", _STRINGS),
        ("persistent_watches", _STRINGS),
        ("persistent_recursive_watches", _STRINGS),
    )


@dataclass(frozen=True, slots=True)
class WatcherEvent(JuteRecord):
    """A watch notification, sent after a ReplyHeader with xid ``NOTIFICATION_XID``: ``codes.EventType``,
    ``codes.KeeperState`` and the path."""

    type: int
    state: int
    path: str | None

    _jute_fields = (("type", INT), ("state", INT), ("path", USTRING))


@dataclass(frozen=True, slots=True)
class ErrorResponse(JuteRecord):
    """An error code as a body: the result of a failed operation within a multi, and the body of addWatch's reply."""

    err: int

    _jute_fields = (("err", INT),)


@dataclass(frozen=True, slots=True)
class WhoAmIResponse(JuteRecord):
    """The identities the session has authenticated as (whoAmI has no request body)."""

    client_info: tuple[ClientInfo, ...] | None

    _jute_fields = (("client_info", vector(record(ClientInfo))),)


@dataclass(frozen=True, slots=True)
class GetSASLRequest(JuteRecord):
    """A SASL token from the client (opcode sasl)."""

    token: bytes | None

    _jute_fields = (("token", BUFFER),)


@dataclass(frozen=True, slots=True)
class SetSASLRequest(JuteRecord):
    """A SASL token: a record of ``zookeeper.jute`` that the client protocol leaves unused (clients send a
    GetSASLRequest), here for completeness."""

    token: bytes | None

    _jute_fields = (("token", BUFFER),)


@dataclass(frozen=True, slots=True)
class SetSASLResponse(JuteRecord):
    """The server's SASL token, in reply to a GetSASLRequest."""

    token: bytes | None

    _jute_fields = (("token", BUFFER),)


# -- requests and responses on nodes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateRequest(JuteRecord):
    """Create a node (opcodes create, create2, createContainer): ``flags`` is a ``codes.CreateMode``."""

    path: str | None
    data: bytes | None
    acl: tuple[ACL, ...] | None
    flags: int

    _jute_fields = (("path", USTRING), ("data", BUFFER), ("acl", _ACLS), ("flags", INT))


@dataclass(frozen=True, slots=True)
class CreateTTLRequest(JuteRecord):
    """Create a node with a time to live in milliseconds (opcode createTTL)."""

    path: str | None
    data: bytes | None
    acl: tuple[ACL, ...] | None
    flags: int
    ttl: int

    _jute_fields = (("path", USTRING), ("data", BUFFER), ("acl", _ACLS), ("flags", INT), ("ttl", LONG))


@dataclass(frozen=True, slots=True)
class CreateResponse(JuteRecord):
    """The created node's path (reply to create)."""

    path: str | None

    _jute_fields = (("path", USTRING),)


@dataclass(frozen=True, slots=True)
class Create2Response(JuteRecord):
    """The created node's path and Stat (reply to create2, createContainer and createTTL)."""

    path: str | None
    stat: Stat

    _jute_fields = (("path", USTRING), ("stat", _STAT))


@dataclass(frozen=True, slots=True)
class DeleteRequest(JuteRecord):
    """Delete a node if its version is ``version`` (-1: any). Its reply has no body."""

    path: str | None
    version: int

    _jute_fields = (("path", USTRING), ("version", INT))


@dataclass(frozen=True, slots=True)
class ExistsRequest(JuteRecord):
    """Stat a node, and leave an exists watch on its path if ``watch``."""

    path: str | None
    watch: bool

    _jute_fields = (("path", USTRING), ("watch", BOOL))


@dataclass(frozen=True, slots=True)
class ExistsResponse(JuteRecord):
    """The node's Stat (a missing node is the error NONODE, with no body)."""

    stat: Stat

    _jute_fields = (("stat", _STAT),)


@dataclass(frozen=True, slots=True)
class GetDataRequest(JuteRecord):
    """Read a node's data, and leave a data watch if ``watch``."""

    path: str | None
    watch: bool

    _jute_fields = (("path", USTRING), ("watch", BOOL))


@dataclass(frozen=True, slots=True)
class GetDataResponse(JuteRecord):
    """A node's data and Stat (also the reply to reconfig, whose data is the new configuration)."""

    data: bytes | None
    stat: Stat

    _jute_fields = (("data", BUFFER), ("stat", _STAT))


@dataclass(frozen=True, slots=True)
class SetDataRequest(JuteRecord):
    """Replace a node's data if its version is ``version`` (-1: any)."""

    path: str | None
    data: bytes | None
    version: int

    _jute_fields = (("path", USTRING), ("data", BUFFER), ("version", INT))


@dataclass(frozen=True, slots=True)
class SetDataResponse(JuteRecord):
    """The node's Stat after setData."""

    stat: Stat

    _jute_fields = (("stat", _STAT),)


@dataclass(frozen=True, slots=True)
class GetChildrenRequest(JuteRecord):
    """List a node's children, and leave a child watch if ``watch``."""

    path: str | None
    watch: bool

    _jute_fields = (("path", USTRING), ("watch", BOOL))


@dataclass(frozen=True, slots=True)
class GetChildrenResponse(JuteRecord):
    """A node's children, as names relative to it."""

    children: tuple[str | None, ...] | None

    _jute_fields = (("children", _STRINGS),)


@dataclass(frozen=True, slots=True)
class GetChildren2Request(JuteRecord):
    """List a node's children and return its Stat, and leave a child watch if ``watch``."""

    path: str | None
    watch: bool

    _jute_fields = (("path", USTRING), ("watch", BOOL))


@dataclass(frozen=True, slots=True)
class GetChildren2Response(JuteRecord):
    """A node's children and its Stat."""

    children: tuple[str | None, ...] | None
    stat: Stat

    _jute_fields = (("children", _STRINGS), ("stat", _STAT))


@dataclass(frozen=True, slots=True)
class GetAllChildrenNumberRequest(JuteRecord):
    """Count all descendants of a node."""

    path: str | None

    _jute_fields = (("path", USTRING),)


@dataclass(frozen=True, slots=True)
class GetAllChildrenNumberResponse(JuteRecord):
    """The number of descendants of a node."""

    total_number: int

    _jute_fields = (("total_number", INT),)


@dataclass(frozen=True, slots=True)
class GetEphemeralsRequest(JuteRecord):
    """List the session's ephemeral nodes whose path starts with ``prefix_path`` (all of them for "/" or empty)."""

    prefix_path: str | None

    _jute_fields = (("prefix_path", USTRING),)


@dataclass(frozen=True, slots=True)
class GetEphemeralsResponse(JuteRecord):
    """The paths of the session's ephemeral nodes."""

    ephemerals: tuple[str | None, ...] | None

    _jute_fields = (("ephemerals", _STRINGS),)


@dataclass(frozen=True, slots=True)
class SyncRequest(JuteRecord):
    """Bring the server the client talks to up to date with the leader before the client's next read."""

    path: str | None

    _jute_fields = (("path", USTRING),)


@dataclass(frozen=True, slots=True)
class SyncResponse(JuteRecord):
    """The path of the sync request."""

    path: str | None

    _jute_fields = (("path", USTRING),)


@dataclass(frozen=True, slots=True)
class CheckVersionRequest(JuteRecord):
    """Check that a node's version is ``version`` (-1: that it exists): an operation of a multi, and in recent
    servers a request of its own whose reply has no body."""

    path: str | None
    version: int

    _jute_fields = (("path", USTRING), ("version", INT))


@dataclass(frozen=True, slots=True)
class GetACLRequest(JuteRecord):
    """Read a node's ACL."""

    path: str | None

    _jute_fields = (("path", USTRING),)


@dataclass(frozen=True, slots=True)
class GetACLResponse(JuteRecord):
    """A node's ACL and Stat."""

    acl: tuple[ACL, ...] | None
    stat: Stat

    _jute_fields = (("acl", _ACLS), ("stat", _STAT))


@dataclass(frozen=True, slots=True)
class SetACLRequest(JuteRecord):
    """Replace a node's ACL if its ACL version is ``version`` (-1: any)."""

    path: str | None
    acl: tuple[ACL, ...] | None
    version: int

    _jute_fields = (("path", USTRING), ("acl", _ACLS), ("version", INT))


@dataclass(frozen=True, slots=True)
class SetACLResponse(JuteRecord):
    """The node's Stat after setACL."""

    stat: Stat

    _jute_fields = (("stat", _STAT),)


@dataclass(frozen=True, slots=True)
class AddWatchRequest(JuteRecord):
    """Add a persistent watch on a path, recursive or not (``mode`` is a ``codes.AddWatchMode``). The reply's body
    is an ErrorResponse of 0."""

    path: str | None
    mode: int

    _jute_fields = (("path", USTRING), ("mode", INT))


@dataclass(frozen=True, slots=True)
class CheckWatchesRequest(JuteRecord):
    """Ask whether the session has a watch of ``type`` (a ``codes.WatcherType``) on a path; NOWATCHER if not."""

    path: str | None
    type: int

    _jute_fields = (("path", USTRING), ("type", INT))


@dataclass(frozen=True, slots=True)
class RemoveWatchesRequest(JuteRecord):
    """Remove the session's watches of ``type`` (a ``codes.WatcherType``) on a path; NOWATCHER if there are none."""

    path: str | None
    type: int

    _jute_fields = (("path", USTRING), ("type", INT))


@dataclass(frozen=True, slots=True)
class ReconfigRequest(JuteRecord):
    """Change the ensemble: servers joining and leaving, or a whole new member list, if the configuration's version
    is ``cur_config_id`` (-1: any). Its reply is a GetDataResponse."""

    joining_servers: str | None
    leaving_servers: str | None
    new_members: str | None
    cur_config_id: int

    _jute_fields = (
        ("joining_servers", USTRING),
        ("leaving_servers", USTRING),
        ("new_members", USTRING),
        ("cur_config_id", LONG),
    )


# -- multi --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiHeader(JuteRecord):
    """What precedes each operation of a multi request and each result of its reply.

    ``type`` is the operation's opcode, or -1 (``OpCode.ERROR``) for a failed result; ``err`` is -1 in a request
    and the error code in a reply. A header with ``done`` set (written as type -1, err -1) ends the list.
    """

    type: int
    done: bool
    err: int

    _jute_fields = (("type", INT), ("done", BOOL), ("err", INT))


_END = MultiHeader(-1, True, -1)

#: What a multi operation's request may be.
MultiOpRequest: TypeAlias = (
    CreateRequest
    | CreateTTLRequest
    | DeleteRequest
    | SetDataRequest
    | CheckVersionRequest
    | GetChildrenRequest
    | GetDataRequest
)

#: The record that follows a multi operation's header, by its opcode (as ZooKeeper's MultiOperationRecord reads).
MULTI_OP_REQUESTS: Final[dict[int, type[MultiOpRequest]]] = {
    OpCode.CREATE: CreateRequest,
    OpCode.CREATE2: CreateRequest,
    OpCode.CREATE_CONTAINER: CreateRequest,
    OpCode.CREATE_TTL: CreateTTLRequest,
    OpCode.DELETE: DeleteRequest,
    OpCode.SET_DATA: SetDataRequest,
    OpCode.CHECK: CheckVersionRequest,
    OpCode.GET_CHILDREN: GetChildrenRequest,
    OpCode.GET_DATA: GetDataRequest,
}

#: The opcodes of the operations of a multiRead; a multi holds only the others.
READ_OPS: Final = frozenset({OpCode.GET_CHILDREN, OpCode.GET_DATA})


@dataclass(frozen=True, slots=True)
class MultiOp:
    """One operation of a multi: its opcode and its request.

    The opcode says more than the request's class: a CreateRequest goes with create, create2 or createContainer.
    A mismatch raises ValueError.
    """

    type: int
    request: MultiOpRequest

    def __post_init__(self) -> None:
        """Refuse an opcode that cannot be in a multi, or a request of another class than the opcode's."""
        expected = MULTI_OP_REQUESTS.get(self.type)
        if expected is None:
            raise ValueError(f"opcode {self.type} cannot be an operation of a multi")
        if type(self.request) is not expected:
            raise ValueError(
                f"a multi operation of opcode {self.type} takes a {expected.__name__}, "
                f"not a {type(self.request).__name__}"
            )


@dataclass(frozen=True, slots=True)
class MultiRequest(JuteRecord):
    """The body of a multi or multiRead request: its operations, all writes (multi) or all reads (multiRead).

    Decoding refuses a list that mixes reads and writes, as ZooKeeper does.
    """

    ops: tuple[MultiOp, ...]

    def write(self, writer: JuteWriter) -> None:
        """Write each operation after its header, then the closing header."""
        for op in self.ops:
            MultiHeader(op.type, False, -1).write(writer)
            op.request.write(writer)
        _END.write(writer)

    @classmethod
    def read(cls, reader: JuteReader) -> Self:
        """Read operations up to the header that has ``done`` set."""
        ops: list[MultiOp] = []
        kinds: set[bool] = set()
        while True:
            index = len(ops)
            header = _read_multi_header(reader, f"MultiRequest.ops[{index}]")
            if header.done:
                return cls(tuple(ops))
            request_class = MULTI_OP_REQUESTS.get(header.type)
            if request_class is None:
                raise DecodeError(
                    f"MultiRequest.ops[{index}]: opcode {header.type} cannot be an operation of a multi "
                    f"(at offset {reader.position - 9})"
                )
            kinds.add(header.type in READ_OPS)
            if len(kinds) > 1:
                raise DecodeError(
                    f"MultiRequest.ops[{index}]: a multi mixes reads and writes (at offset {reader.position - 9})"
                )
            try:
                request = request_class.read(reader)
            except DecodeError as exc:
                raise DecodeError(f"MultiRequest.ops[{index}] -> {exc}") from None
            ops.append(MultiOp(header.type, request))

    @classmethod
    def min_size(cls) -> int:
        """The closing header alone."""
        return MultiHeader.min_size()


@dataclass(frozen=True, slots=True)
class DeleteResult(JuteRecord):
    """The result of a delete within a multi: nothing but its header."""


@dataclass(frozen=True, slots=True)
class CheckResult(JuteRecord):
    """The result of a check within a multi: nothing but its header."""


#: What a multi's result may be: ErrorResponse for a failed operation (0 for one rolled back).
MultiResult: TypeAlias = (
    CreateResponse
    | Create2Response
    | DeleteResult
    | SetDataResponse
    | CheckResult
    | GetChildrenResponse
    | GetDataResponse
    | ErrorResponse
)

#: The opcode in the header of each kind of result, as ZooKeeper's MultiResponse writes it.
MULTI_RESULT_TYPES: Final[dict[type[MultiResult], int]] = {
    CreateResponse: OpCode.CREATE,
    Create2Response: OpCode.CREATE2,
    DeleteResult: OpCode.DELETE,
    SetDataResponse: OpCode.SET_DATA,
    CheckResult: OpCode.CHECK,
    GetChildrenResponse: OpCode.GET_CHILDREN,
    GetDataResponse: OpCode.GET_DATA,
    ErrorResponse: OpCode.ERROR,
}
_MULTI_RESULT_CLASSES: Final[dict[int, type[MultiResult]]] = {
    code: cls for cls, code in MULTI_RESULT_TYPES.items()
}


@dataclass(frozen=True, slots=True)
class MultiResponse(JuteRecord):
    """The body of the reply to a multi or multiRead: one result per operation, in order.

    A failed multi still has a ReplyHeader err of 0: its results say what failed (an ErrorResponse for every
    operation; 0 for those before the failing one, RUNTIMEINCONSISTENCY for those after it). A failed read of a
    multiRead is an ErrorResponse among successful results.
    """

    results: tuple[MultiResult, ...]

    def write(self, writer: JuteWriter) -> None:
        """Write each result after its header, then the closing header."""
        for index, result in enumerate(self.results):
            code = MULTI_RESULT_TYPES.get(type(result))
            if code is None:
                raise TypeError(f"MultiResponse.results[{index}]: a {type(result).__name__} is not a multi result")
            err = result.err if isinstance(result, ErrorResponse) else 0
            MultiHeader(code, False, err).write(writer)
            result.write(writer)
        _END.write(writer)

    @classmethod
    def read(cls, reader: JuteReader) -> Self:
        """Read results up to the header that has ``done`` set."""
        results: list[MultiResult] = []
        while True:
            index = len(results)
            header = _read_multi_header(reader, f"MultiResponse.results[{index}]")
            if header.done:
                return cls(tuple(results))
            result_class = _MULTI_RESULT_CLASSES.get(header.type)
            if result_class is None:
                raise DecodeError(
                    f"MultiResponse.results[{index}]: opcode {header.type} is not a multi result "
                    f"(at offset {reader.position - 9})"
                )
            try:
                results.append(result_class.read(reader))
            except DecodeError as exc:
                raise DecodeError(f"MultiResponse.results[{index}] -> {exc}") from None

    @classmethod
    def min_size(cls) -> int:
        """The closing header alone."""
        return MultiHeader.min_size()


def _read_multi_header(reader: JuteReader, what: str) -> MultiHeader:
    try:
        return MultiHeader.read(reader)
    except DecodeError as exc:
        raise DecodeError(f"{what} -> {exc}") from None
