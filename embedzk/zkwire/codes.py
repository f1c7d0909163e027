"""The numbers of ZooKeeper's client protocol: operation codes, error codes, watch event types and states, create
modes, watch modes, permissions and the reserved xids; and the error code that answers each of embedzk's errors.

The values are ZooKeeper's own (``ZooDefs.OpCode``, ``KeeperException.Code``, ``Watcher.Event.EventType``,
``Watcher.Event.KeeperState``, ``Watcher.WatcherType``, ``CreateMode``, ``ZooDefs.AddWatchModes``, ``ZooDefs.Perms``
and ``ClientCnxn``'s xids, as of ZooKeeper 3.9). The records of :mod:`embedzk.zkwire.records` hold these as plain
ints, so that a value this module does not know still decodes; the enums here are ints too and compare equal to them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from embedzk import errors
from embedzk.model import EventType as ModelEventType
from embedzk.tree.acl import Perm

__all__ = [
    "AUTH_XID",
    "ERROR_CODES",
    "NOTIFICATION_XID",
    "PING_XID",
    "PROTOCOL_VERSION",
    "SET_WATCHES_XID",
    "AddWatchMode",
    "CreateMode",
    "ErrorCode",
    "EventType",
    "KeeperState",
    "OpCode",
    "Perms",
    "WatcherType",
    "error_code",
    "event_type_from_model",
    "op_name",
]

#: The protocol version a ZooKeeper 3.x client sends in its ConnectRequest and a server answers with.
PROTOCOL_VERSION: Final = 0

#: The xid of a reply that carries a watch notification (a WatcherEvent), not the answer to a request.
NOTIFICATION_XID: Final = -1
#: The xid of a ping request and of its reply.
PING_XID: Final = -2
#: The xid of an auth request (AuthPacket) and of its reply.
AUTH_XID: Final = -4
#: The xid of a setWatches or setWatches2 request and of its reply.
SET_WATCHES_XID: Final = -8


class OpCode(enum.IntEnum):
    """The type of a request (``RequestHeader.type``) and of an operation within a multi (``ZooDefs.OpCode``)."""

    NOTIFICATION = 0
    CREATE = 1
    DELETE = 2
    EXISTS = 3
    GET_DATA = 4
    SET_DATA = 5
    GET_ACL = 6
    SET_ACL = 7
    GET_CHILDREN = 8
    SYNC = 9
    PING = 11
    GET_CHILDREN2 = 12
    CHECK = 13
    MULTI = 14
    CREATE2 = 15
    RECONFIG = 16
    CHECK_WATCHES = 17
    REMOVE_WATCHES = 18
    CREATE_CONTAINER = 19
    DELETE_CONTAINER = 20
    CREATE_TTL = 21
    MULTI_READ = 22
    AUTH = 100
    SET_WATCHES = 101
    SASL = 102
    GET_EPHEMERALS = 103
    GET_ALL_CHILDREN_NUMBER = 104
    SET_WATCHES2 = 105
    ADD_WATCH = 106
    WHO_AM_I = 107
    CREATE_SESSION = -10
    CLOSE_SESSION = -11
    ERROR = -1


_OP_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        OpCode.NOTIFICATION: "notification",
        OpCode.CREATE: "create",
        OpCode.DELETE: "delete",
        OpCode.EXISTS: "exists",
        OpCode.GET_DATA: "getData",
        OpCode.SET_DATA: "setData",
        OpCode.GET_ACL: "getACL",
        OpCode.SET_ACL: "setACL",
        OpCode.GET_CHILDREN: "getChildren",
        OpCode.SYNC: "sync",
        OpCode.PING: "ping",
        OpCode.GET_CHILDREN2: "getChildren2",
        OpCode.CHECK: "check",
        OpCode.MULTI: "multi",
        OpCode.CREATE2: "create2",
        OpCode.RECONFIG: "reconfig",
        OpCode.CHECK_WATCHES: "checkWatches",
        OpCode.REMOVE_WATCHES: "removeWatches",
        OpCode.CREATE_CONTAINER: "createContainer",
        OpCode.DELETE_CONTAINER: "deleteContainer",
        OpCode.CREATE_TTL: "createTTL",
        OpCode.MULTI_READ: "multiRead",
        OpCode.AUTH: "auth",
        OpCode.SET_WATCHES: "setWatches",
        OpCode.SASL: "sasl",
        OpCode.GET_EPHEMERALS: "getEphemerals",
        OpCode.GET_ALL_CHILDREN_NUMBER: "getAllChildrenNumber",
        OpCode.SET_WATCHES2: "setWatches2",
        OpCode.ADD_WATCH: "addWatch",
        OpCode.WHO_AM_I: "whoAmI",
        OpCode.CREATE_SESSION: "createSession",
        OpCode.CLOSE_SESSION: "closeSession",
        OpCode.ERROR: "error",
    }
)


def op_name(code: int) -> str:
    """ZooKeeper's name of an opcode (``"getChildren2"``), or ``"unknown opcode N"``."""
    return _OP_NAMES.get(code, f"unknown opcode {code}")


class ErrorCode(enum.IntEnum):
    """``KeeperException.Code``: the ``err`` of a ReplyHeader, of an ErrorResponse and of a MultiHeader.

    0 is success; within a failed multi, the operations before the one that failed answer 0 too (rolled back), those
    after it RUNTIMEINCONSISTENCY. SYSTEMERROR and APIERROR only mark where the ranges of system and API errors begin.
    """

    OK = 0
    SYSTEMERROR = -1
    RUNTIMEINCONSISTENCY = -2
    DATAINCONSISTENCY = -3
    CONNECTIONLOSS = -4
    MARSHALLINGERROR = -5
    UNIMPLEMENTED = -6
    OPERATIONTIMEOUT = -7
    BADARGUMENTS = -8
    UNKNOWNSESSION = -12
    NEWCONFIGNOQUORUM = -13
    RECONFIGINPROGRESS = -14
    APIERROR = -100
    NONODE = -101
    NOAUTH = -102
    BADVERSION = -103
    NOCHILDRENFOREPHEMERALS = -108
    NODEEXISTS = -110
    NOTEMPTY = -111
    SESSIONEXPIRED = -112
    INVALIDCALLBACK = -113
    INVALIDACL = -114
    AUTHFAILED = -115
    SESSIONMOVED = -118
    NOTREADONLY = -119
    EPHEMERALONLOCALSESSION = -120
    NOWATCHER = -121
    REQUESTTIMEOUT = -122
    RECONFIGDISABLED = -123
    SESSIONCLOSEDREQUIRESASLAUTH = -124
    QUOTAEXCEEDED = -125
    THROTTLEDOP = -127


class EventType(enum.IntEnum):
    """``Watcher.Event.EventType``: the ``type`` of a WatcherEvent (not to be confused with embedzk's own
    :class:`embedzk.model.EventType`; :func:`event_type_from_model` maps one to the other)."""

    NONE = -1
    NODE_CREATED = 1
    NODE_DELETED = 2
    NODE_DATA_CHANGED = 3
    NODE_CHILDREN_CHANGED = 4
    DATA_WATCH_REMOVED = 5
    CHILD_WATCH_REMOVED = 6
    PERSISTENT_WATCH_REMOVED = 7


class KeeperState(enum.IntEnum):
    """``Watcher.Event.KeeperState``: the ``state`` of a WatcherEvent. A server sends SYNC_CONNECTED with every
    notification of a change; UNKNOWN and NO_SYNC_CONNECTED are unused, CLOSED only ever arises in a client."""

    UNKNOWN = -1
    DISCONNECTED = 0
    NO_SYNC_CONNECTED = 1
    SYNC_CONNECTED = 3
    AUTH_FAILED = 4
    CONNECTED_READ_ONLY = 5
    SASL_AUTHENTICATED = 6
    EXPIRED = -112
    CLOSED = 7


class WatcherType(enum.IntEnum):
    """``Watcher.WatcherType``: the ``type`` of a CheckWatchesRequest or RemoveWatchesRequest."""

    CHILDREN = 1
    DATA = 2
    ANY = 3
    PERSISTENT = 4
    PERSISTENT_RECURSIVE = 5


class CreateMode(enum.IntEnum):
    """``CreateMode``: the ``flags`` of a create request."""

    PERSISTENT = 0
    EPHEMERAL = 1
    PERSISTENT_SEQUENTIAL = 2
    EPHEMERAL_SEQUENTIAL = 3
    CONTAINER = 4
    PERSISTENT_WITH_TTL = 5
    PERSISTENT_SEQUENTIAL_WITH_TTL = 6

    @property
    def is_ephemeral(self) -> bool:
        """Whether the node goes with its session."""
        return self in (CreateMode.EPHEMERAL, CreateMode.EPHEMERAL_SEQUENTIAL)

    @property
    def is_sequential(self) -> bool:
        """Whether the server appends a sequence number to the name."""
        return self in (
            CreateMode.PERSISTENT_SEQUENTIAL,
            CreateMode.EPHEMERAL_SEQUENTIAL,
            CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL,
        )

    @property
    def is_container(self) -> bool:
        """Whether the node is a container, removed once its last child is."""
        return self is CreateMode.CONTAINER

    @property
    def is_ttl(self) -> bool:
        """Whether the node has a time to live (created with createTTL)."""
        return self in (CreateMode.PERSISTENT_WITH_TTL, CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL)


class AddWatchMode(enum.IntEnum):
    """``ZooDefs.AddWatchModes``: the ``mode`` of an AddWatchRequest."""

    PERSISTENT = 0
    PERSISTENT_RECURSIVE = 1


#: ``ZooDefs.Perms``: the bits of an ACL's ``perms`` (the tree's own, which checks them).
Perms = Perm


#: The error code that answers each of embedzk's errors (those of :mod:`embedzk.errors`). RolledBackError is 0:
#: inside a failed multi, ZooKeeper answers the operations before the failing one with an ErrorResponse of 0.
ERROR_CODES: Final[Mapping[type[errors.EmbedZKError], ErrorCode]] = MappingProxyType(
    {
        errors.EmbedZKError: ErrorCode.SYSTEMERROR,
        errors.ZnodeError: ErrorCode.SYSTEMERROR,
        errors.SystemZookeeperError: ErrorCode.SYSTEMERROR,
        errors.RuntimeInconsistencyError: ErrorCode.RUNTIMEINCONSISTENCY,
        errors.DataInconsistencyError: ErrorCode.DATAINCONSISTENCY,
        errors.ConnectionLossError: ErrorCode.CONNECTIONLOSS,
        errors.MarshallingError: ErrorCode.MARSHALLINGERROR,
        errors.UnimplementedError: ErrorCode.UNIMPLEMENTED,
        errors.OperationTimeoutError: ErrorCode.OPERATIONTIMEOUT,
        errors.BadArgumentsError: ErrorCode.BADARGUMENTS,
        errors.NoNodeError: ErrorCode.NONODE,
        errors.NoAuthError: ErrorCode.NOAUTH,
        errors.BadVersionError: ErrorCode.BADVERSION,
        errors.NoChildrenForEphemeralsError: ErrorCode.NOCHILDRENFOREPHEMERALS,
        errors.NodeExistsError: ErrorCode.NODEEXISTS,
        errors.NotEmptyError: ErrorCode.NOTEMPTY,
        errors.SessionExpiredError: ErrorCode.SESSIONEXPIRED,
        errors.InvalidACLError: ErrorCode.INVALIDACL,
        errors.SessionMovedError: ErrorCode.SESSIONMOVED,
        errors.NoWatcherError: ErrorCode.NOWATCHER,
        errors.ReconfigDisabledError: ErrorCode.RECONFIGDISABLED,
        errors.NewConfigNoQuorumError: ErrorCode.NEWCONFIGNOQUORUM,
        errors.AuthFailedError: ErrorCode.AUTHFAILED,
        errors.NotReadOnlyCallError: ErrorCode.NOTREADONLY,
        errors.RolledBackError: ErrorCode.OK,
        errors.NotLeaderError: ErrorCode.CONNECTIONLOSS,
        errors.PeerStoppedError: ErrorCode.CONNECTIONLOSS,
        errors.ConfigurationError: ErrorCode.SYSTEMERROR,
        errors.LoopThreadError: ErrorCode.SYSTEMERROR,
        errors.MembershipError: ErrorCode.SYSTEMERROR,
        errors.StorageError: ErrorCode.SYSTEMERROR,
        errors.DecodeError: ErrorCode.MARSHALLINGERROR,
    }
)


def error_code(error: BaseException | type[BaseException]) -> ErrorCode:
    """The error code that answers ``error`` (an exception or its class) to a ZooKeeper client.

    An embedzk error answers the code of its class in :data:`ERROR_CODES`, or of its nearest listed base class;
    anything else answers SYSTEMERROR.
    """
    cls = error if isinstance(error, type) else type(error)
    for base in cls.__mro__:
        code = _CODES_BY_CLASS.get(base)
        if code is not None:
            return code
    return ErrorCode.SYSTEMERROR


_CODES_BY_CLASS: Final[dict[type, ErrorCode]] = dict(ERROR_CODES.items())


_MODEL_EVENT_TYPES: Final[Mapping[ModelEventType, EventType]] = MappingProxyType(
    {
        ModelEventType.CREATED: EventType.NODE_CREATED,
        ModelEventType.DELETED: EventType.NODE_DELETED,
        ModelEventType.CHANGED: EventType.NODE_DATA_CHANGED,
        ModelEventType.CHILD: EventType.NODE_CHILDREN_CHANGED,
        ModelEventType.NONE: EventType.NONE,
    }
)


def event_type_from_model(event_type: ModelEventType) -> EventType:
    """The WatcherEvent type that tells a ZooKeeper client of an embedzk :class:`~embedzk.model.EventType`."""
    return _MODEL_EVENT_TYPES[event_type]
