"""What a ZooKeeper client's request means to a peer: the operation it proposes, or the read it makes.

Sans-IO, as :mod:`embedzk.zkwire`: nothing here touches a socket or a thread. The connection calls these on the
peer's loop thread (:func:`run_read` reads the tree and sets watches atomically there, and :func:`write_reply`
reads the stat of what a write made) or on its own thread (:func:`write_op`, which only translates).

ZooKeeper's reserved subtree ``/zookeeper`` is answered here, not stored: ``/zookeeper/config`` lists the members
as ZooKeeper formats its dynamic configuration, ``/zookeeper/quota`` exists and is empty, and every write there is
refused with BADARGUMENTS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Hashable
from typing import Any, Final

from embedzk._auth import add_identity
from embedzk.errors import (
    BadArgumentsError,
    ConfigurationError,
    EmbedZKError,
    InvalidACLError,
    NoAuthError,
    NoNodeError,
    NoWatcherError,
    RolledBackError,
    UnimplementedError,
)
from embedzk.model import Stat as ModelStat
from embedzk.settings import check_endpoint
from embedzk.tree import validate_path
from embedzk.tree.datatree import MAX_SESSION_ID
from embedzk.tree.acl import OPEN_ACL, SUPER, Perm, allowed
from embedzk.tree.txn import CheckOp, CloseSessionOp, CreateOp, DeleteOp, MultiOp, Op, SetACLOp, SetDataOp, SubOp, WithACL
from embedzk.tree.watches import WatchKind, WatchRegistry
from embedzk.zkwire import OpCode, Request, error_code
from embedzk.zkwire.codes import AddWatchMode, CreateMode, Perms, WatcherType
from embedzk.zkwire.records import (
    ACL,
    AddWatchRequest,
    CheckResult,
    CheckVersionRequest,
    CheckWatchesRequest,
    ClientInfo,
    Create2Response,
    CreateRequest,
    CreateResponse,
    CreateTTLRequest,
    DeleteRequest,
    DeleteResult,
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
    Id,
    JuteRecord,
    MultiRequest,
    MultiResponse,
    ReconfigRequest,
    RemoveWatchesRequest,
    SetACLRequest,
    SetACLResponse,
    SetDataRequest,
    SetDataResponse,
    SetWatches,
    SetWatches2,
    Stat,
    WhoAmIResponse,
)

__all__ = [
    "CLIENT_SESSION_OWNER",
    "READS",
    "WRITES",
    "ClientIdentity",
    "new_session_id",
    "check_reconfig_addresses",
    "parse_reconfig",
    "reserved_stat",
    "run_read",
    "session_password",
    "write_op",
    "write_reply",
]

#: The owner recorded for a ZooKeeper client's session: no peer's, as the client may move to any peer.
CLIENT_SESSION_OWNER: Final = ""

#: Everything to everyone (ZooKeeper's OPEN_ACL_UNSAFE), as the wire carries it: the reserved nodes' ACL.
_OPEN_WIRE_ACL: Final = (ACL(int(Perms.ALL), Id("world", "anyone")),)

#: Requests that go through the log.
WRITES: Final = frozenset(
    {
        OpCode.CREATE,
        OpCode.CREATE2,
        OpCode.CREATE_CONTAINER,
        OpCode.CREATE_TTL,
        OpCode.DELETE,
        OpCode.SET_DATA,
        OpCode.CHECK,
        OpCode.MULTI,
        OpCode.SET_ACL,
        OpCode.CLOSE_SESSION,
    }
)

#: Requests answered from the local replica (with the watches they set).
READS: Final = frozenset(
    {
        OpCode.EXISTS,
        OpCode.GET_DATA,
        OpCode.GET_CHILDREN,
        OpCode.GET_CHILDREN2,
        OpCode.GET_ACL,
        OpCode.GET_ALL_CHILDREN_NUMBER,
        OpCode.GET_EPHEMERALS,
        OpCode.MULTI_READ,
        OpCode.SET_WATCHES,
        OpCode.SET_WATCHES2,
        OpCode.ADD_WATCH,
        OpCode.REMOVE_WATCHES,
        OpCode.CHECK_WATCHES,
        OpCode.WHO_AM_I,
    }
)

_RESERVED = "/zookeeper"
_CONFIG = "/zookeeper/config"
_QUOTA = "/zookeeper/quota"
_RESERVED_CHILDREN: Final = {_RESERVED: ("config", "quota"), _CONFIG: (), _QUOTA: ()}
_EMPTY_STAT: Final = ModelStat(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


class ClientIdentity:
    """Who a connection's client is: its address (its ``ip`` identity), and the identities its auth packets added."""

    __slots__ = ("added", "host", "ids")

    def __init__(self, host: str) -> None:
        #: The client's IP address.
        self.host = host
        #: (scheme, id) pairs added by auth packets (a superuser's among them), in order.
        self.added: tuple[tuple[str, str], ...] = ()
        #: Every identity of the client, for the ACL checks: its address, then the authenticated ones. Kept, not
        #: rebuilt: every write and read of the connection carries it.
        self.ids: tuple[tuple[str, str], ...] = (("ip", host),)

    def authenticate(self, scheme: str, credential: str, super_digest: str | None) -> None:
        """Add the identities an auth packet proves (AuthFailedError for one that proves none)."""
        self.added = add_identity(self.added, scheme, credential, super_digest)
        self.ids = (("ip", self.host), *self.added)

    def client_info(self) -> tuple[ClientInfo, ...]:
        """What whoAmI answers: the ip identity, then the authenticated ones (not the superuser marker)."""
        return tuple(ClientInfo(scheme, ident) for scheme, ident in self.ids if (scheme, ident) != SUPER)


def new_session_id() -> int:
    """A fresh random session id (1 <= id < 2**56, the tree's range)."""
    return secrets.randbelow(MAX_SESSION_ID - 1) + 1


def session_password(secret: str, session_id: int) -> bytes:
    """The 16-byte password of ``session_id``: derived from the cluster's secret, so that every peer can check a
    client that comes back with it, and no client can forge another's without the secret."""
    return hmac.new(secret.encode("utf-8"), session_id.to_bytes(8, "big"), hashlib.sha256).digest()[:16]


# -- writes -------------------------------------------------------------------------------------------------------


def _check_writable(path: str) -> None:
    if path == _RESERVED or path.startswith(_RESERVED + "/"):
        raise BadArgumentsError(f"{path} is in the reserved subtree /zookeeper, which cannot be written")


def _acl_of(acl: Any, path: str) -> tuple[tuple[int, str, str], ...]:
    """A request's ACL (jute ACL records) as the tree's (perms, scheme, id) triples; what they mean is for the tree
    to check when it applies the change."""
    # As ZooKeeper's fixupACL: a request must name an ACL.
    if not acl:
        raise InvalidACLError(f"{path}: a create or setACL must give a non-empty ACL")
    entries = []
    for index, entry in enumerate(acl):
        if entry.id is None:
            raise InvalidACLError(f"{path}: ACL entry {index} has no id")
        # jute has no empty string apart from null, and kazoo sends "" as null (CREATOR_ALL_ACL's id is ""): both
        # mean "".
        entries.append((entry.perms, entry.id.scheme or "", entry.id.id or ""))
    return tuple(entries)


def _create_op(opcode: int, body: CreateRequest | CreateTTLRequest) -> CreateOp | WithACL:
    try:
        mode = CreateMode(body.flags)
    except ValueError:
        raise BadArgumentsError(f"{body.path}: unknown create mode {body.flags}") from None
    path = body.path or ""
    _check_writable(path)
    entries = _acl_of(body.acl, path)
    ttl: int | None = None
    if opcode == OpCode.CREATE_TTL:
        assert isinstance(body, CreateTTLRequest)
        if not mode.is_ttl:
            raise BadArgumentsError(f"{path}: createTTL needs a TTL create mode, not {mode.name}")
        ttl = body.ttl
    elif mode.is_ttl:
        raise BadArgumentsError(f"{path}: a TTL create mode needs createTTL")
    if opcode == OpCode.CREATE_CONTAINER and not mode.is_container:
        raise BadArgumentsError(f"{path}: createContainer needs the CONTAINER create mode")
    create = CreateOp(
        path,
        bytes(body.data or b""),
        ephemeral=mode.is_ephemeral,
        sequential=mode.is_sequential,
        container=mode.is_container,
        ttl=ttl,
    )
    # A node open to everyone needs no ACL carried (and so no newer protocol version to replicate it).
    return create if entries == OPEN_ACL else WithACL(create, entries)


def _sub_op(opcode: int, body: Any) -> SubOp:
    if opcode in (OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL):
        return _create_op(opcode, body)
    if opcode == OpCode.DELETE:
        _check_writable(body.path or "")
        return DeleteOp(body.path or "", body.version)
    if opcode == OpCode.SET_DATA:
        _check_writable(body.path or "")
        return SetDataOp(body.path or "", bytes(body.data or b""), body.version)
    if opcode == OpCode.CHECK:
        return CheckOp(body.path or "", body.version)
    raise BadArgumentsError(f"opcode {opcode} cannot be part of a multi")


def write_op(request: Request, session_id: int) -> Op | None:
    """The operation a write request proposes (None for nothing to propose).

    Raises an :class:`~embedzk.errors.EmbedZKError` for a request that cannot be proposed (answered with its code).
    """
    opcode, body = request.opcode, request.body
    if opcode == OpCode.CLOSE_SESSION:
        return CloseSessionOp(session_id)
    if opcode == OpCode.MULTI:
        assert isinstance(body, MultiRequest)
        return MultiOp(tuple(_sub_op(op.type, op.request) for op in body.ops))
    if opcode == OpCode.SET_ACL:
        assert isinstance(body, SetACLRequest)
        path = body.path or ""
        _check_writable(path)
        return SetACLOp(path, _acl_of(body.acl, path), body.version)
    if opcode == OpCode.CHECK:
        # A lone check goes through the log as a multi of one, so that it is ordered with the writes around it.
        assert isinstance(body, CheckVersionRequest)
        return MultiOp((CheckOp(body.path or "", body.version),))
    return _sub_op(opcode, body)


def _stat_of(tree: Any, path: str) -> Stat:
    stat = tree.exists(path)
    return Stat.from_model(stat if stat is not None else _EMPTY_STAT)


def write_reply(request: Request, value: Any, tree: Any) -> JuteRecord | None:
    """The body answering a write request that was applied with ``value`` (the completion's value). Runs on the
    loop thread, right after the change was applied, so the stats read from ``tree`` are the change's."""
    opcode = request.opcode
    if opcode in (OpCode.CREATE,):
        return CreateResponse(value)
    if opcode in (OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL):
        return Create2Response(value, _stat_of(tree, value))
    if opcode == OpCode.SET_DATA:
        return SetDataResponse(Stat.from_model(value))
    if opcode == OpCode.SET_ACL:
        return SetACLResponse(Stat.from_model(value))
    if opcode == OpCode.MULTI:
        assert isinstance(request.body, MultiRequest)
        return MultiResponse(tuple(_multi_result(op.type, result, tree) for op, result in zip(request.body.ops, value)))
    return None  # delete, check, closeSession: the header says it all


def _multi_result(opcode: int, result: Any, tree: Any) -> Any:
    if isinstance(result, BaseException):
        code = 0 if isinstance(result, RolledBackError) else int(error_code(result))
        return ErrorResponse(code)
    if opcode == OpCode.CREATE:
        return CreateResponse(result)
    if opcode in (OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL):
        return Create2Response(result, _stat_of(tree, result))
    if opcode == OpCode.DELETE:
        return DeleteResult()
    if opcode == OpCode.SET_DATA:
        return SetDataResponse(Stat.from_model(result))
    return CheckResult()


def check_reconfig_addresses(changes: list[tuple[str, str, str, bool]]) -> None:
    """BadArgumentsError unless every member a reconfig adds is given an address a peer can listen at (a ZeroMQ
    endpoint, ``tcp://host:port``: ZooKeeper's ``host:port:port`` form names no such thing)."""
    for kind, member, address, _voter in changes:
        if kind != "add":
            continue
        try:
            check_endpoint(address, f"reconfig: the address of server.{member}")
        except ConfigurationError as exc:
            raise BadArgumentsError(str(exc)) from None


def parse_reconfig(body: ReconfigRequest) -> list[tuple[str, str, str, bool]]:
    """The membership changes an incremental reconfig asks for, in order: ("add", id, address, voter) for each
    ``server.<id>=<address>[:participant|:observer][;<client address>]`` joining, ("remove", id, "", False) for each
    id leaving. A non-incremental reconfig (``new_members``) and a ``cur_config_id`` other than -1 are refused: the
    membership changes one member at a time, and configuration versions are not kept."""
    if body.new_members:
        raise BadArgumentsError("a non-incremental reconfig (new members) is not supported: join and leave instead")
    if body.cur_config_id != -1:
        raise BadArgumentsError("reconfig's from-config must be -1: configuration versions are not kept")
    changes: list[tuple[str, str, str, bool]] = []
    for spec in filter(None, (part.strip() for part in (body.joining_servers or "").split(","))):
        name, sep, rest = spec.partition("=")
        if not sep or not name.startswith("server.") or not name[len("server."):]:
            raise BadArgumentsError(f"reconfig: {spec!r} is not server.<id>=<address>[:participant|:observer]")
        address = rest.partition(";")[0]
        voter = True
        for role, votes in ((":participant", True), (":observer", False)):
            if address.endswith(role):
                address, voter = address[: -len(role)], votes
        changes.append(("add", name[len("server."):], address, voter))
    for member in filter(None, (part.strip() for part in (body.leaving_servers or "").split(","))):
        changes.append(("remove", member.removeprefix("server."), "", False))
    if not changes:
        raise BadArgumentsError("reconfig asks for no change")
    return changes


# -- reads --------------------------------------------------------------------------------------------------------


class ReadContext:
    """What a read needs besides the request: the tree, the watch registry and this connection's watcher in it, the
    session, the client's identity, and the cluster's configuration text (for ``/zookeeper/config``)."""

    __slots__ = ("config_text", "identity", "ids", "registry", "session_id", "tree", "watcher")

    def __init__(
        self,
        tree: Any,
        registry: WatchRegistry,
        watcher: Hashable,
        session_id: int,
        identity: ClientIdentity,
        config_text: Callable[[], str],
    ) -> None:
        self.tree = tree
        self.registry = registry
        self.watcher = watcher
        self.session_id = session_id
        self.identity = identity
        self.config_text = config_text
        #: The requester's identities for the ACL checks.
        self.ids = identity.ids


def _reserved(path: str) -> bool:
    return path in _RESERVED_CHILDREN


def reserved_stat(data_length: int, children: int = 0) -> Stat:
    """The stat of a node of the reserved subtree, which no change ever made."""
    return Stat(0, 0, 0, 0, 0, 0, 0, 0, data_length, children, 0)


def _reserved_data(path: str, ctx: ReadContext) -> tuple[bytes, ModelStat]:
    data = ctx.config_text().encode("utf-8") if path == _CONFIG else b""
    children = _RESERVED_CHILDREN[path]
    return data, ModelStat(0, 0, 0, 0, 0, 0, 0, 0, len(data), len(children), 0)


def _exists(path: str, watch: bool, ctx: ReadContext) -> ExistsResponse:
    validate_path(path)
    if _reserved(path):
        return ExistsResponse(Stat.from_model(_reserved_data(path, ctx)[1]))
    stat = ctx.tree.exists(path)
    if watch:
        ctx.registry.add(WatchKind.DATA if stat is not None else WatchKind.EXIST, path, ctx.watcher)
    if stat is None:
        raise NoNodeError(path)
    return ExistsResponse(Stat.from_model(stat))


def _get_data(path: str, watch: bool, ctx: ReadContext) -> GetDataResponse:
    validate_path(path)
    if _reserved(path):
        data, stat = _reserved_data(path, ctx)
        return GetDataResponse(data, Stat.from_model(stat))
    _check_read(path, ctx)
    data, stat = ctx.tree.get(path)  # NoNodeError leaves no watch, as in ZooKeeper
    if watch:
        ctx.registry.add(WatchKind.DATA, path, ctx.watcher)
    return GetDataResponse(data, Stat.from_model(stat))


def _children(path: str, watch: bool, ctx: ReadContext) -> tuple[list[str], ModelStat]:
    validate_path(path)
    if _reserved(path):
        return list(_RESERVED_CHILDREN[path]), _reserved_data(path, ctx)[1]
    _check_read(path, ctx)
    children = ctx.tree.get_children(path)
    stat = ctx.tree.exists(path)
    if watch:
        ctx.registry.add(WatchKind.CHILD, path, ctx.watcher)
    if path == "/":
        children = [*children, "zookeeper"]
    return children, stat


def _check_read(path: str, ctx: ReadContext) -> None:
    tree = ctx.tree
    if tree.acl_count():  # most trees hold no ACL: no lookup at all then
        tree.check_read(path, ctx.ids)


def _count_descendants(tree: Any, path: str) -> int:
    total = 0
    stack = [path]
    while stack:
        parent = stack.pop()
        for child in tree.get_children(parent):
            total += 1
            stack.append(f"{parent}/{child}" if parent != "/" else f"/{child}")
    return total


_REMOVABLE: Final = {
    WatcherType.CHILDREN: (WatchKind.CHILD,),
    WatcherType.DATA: (WatchKind.DATA, WatchKind.EXIST),
    WatcherType.ANY: tuple(WatchKind),
    WatcherType.PERSISTENT: (WatchKind.PERSISTENT,),
    WatcherType.PERSISTENT_RECURSIVE: (WatchKind.PERSISTENT_RECURSIVE,),
}


def _watch_kinds(path: str, watcher_type: int) -> tuple[WatchKind, ...]:
    validate_path(path)
    try:
        return _REMOVABLE[WatcherType(watcher_type)]
    except ValueError:
        raise BadArgumentsError(f"{path}: unknown watcher type {watcher_type}") from None


def _paths(paths: Any) -> list[str]:
    checked = []
    for path in paths or ():
        validate_path(path)  # BadArgumentsError for None or anything else that is not a path
        checked.append(path)
    return checked


def _set_watches(body: SetWatches | SetWatches2, ctx: ReadContext) -> list[tuple[str, str]]:
    """Re-register a reconnecting client's watches; returns the (event kind, path) of those that must fire at once
    because the change they wait for happened after ``relative_zxid`` (as ZooKeeper's DataTree.setWatches)."""
    tree, registry, watcher, rel = ctx.tree, ctx.registry, ctx.watcher, body.relative_zxid
    data, exist, child = _paths(body.data_watches), _paths(body.exist_watches), _paths(body.child_watches)
    persistent: list[str] = []
    recursive: list[str] = []
    if isinstance(body, SetWatches2):
        persistent, recursive = _paths(body.persistent_watches), _paths(body.persistent_recursive_watches)
    fire: list[tuple[str, str]] = []
    for path in data:
        stat = tree.exists(path)
        if stat is None:
            fire.append(("deleted", path))
        elif stat.mzxid > rel:
            fire.append(("changed", path))
        else:
            registry.add(WatchKind.DATA, path, watcher)
    for path in exist:
        if tree.exists(path) is not None:
            fire.append(("created", path))
        else:
            registry.add(WatchKind.EXIST, path, watcher)
    for path in child:
        stat = tree.exists(path)
        if stat is None:
            fire.append(("deleted", path))
        elif stat.pzxid > rel:
            fire.append(("child", path))
        else:
            registry.add(WatchKind.CHILD, path, watcher)
    for path in persistent:
        registry.add(WatchKind.PERSISTENT, path, watcher)
    for path in recursive:
        registry.add(WatchKind.PERSISTENT_RECURSIVE, path, watcher)
    return fire


def _multi_read(body: MultiRequest, ctx: ReadContext) -> MultiResponse:
    results: list[Any] = []
    for op in body.ops:
        request = op.request
        try:
            if op.type == OpCode.GET_DATA:
                assert isinstance(request, GetDataRequest)
                results.append(_get_data(request.path or "", request.watch, ctx))
            else:
                assert isinstance(request, GetChildrenRequest)
                children, _stat = _children(request.path or "", request.watch, ctx)
                results.append(GetChildrenResponse(tuple(children)))
        except EmbedZKError as exc:
            results.append(ErrorResponse(int(error_code(exc))))
    return MultiResponse(tuple(results))


def run_read(request: Request, ctx: ReadContext) -> tuple[JuteRecord | None, list[tuple[str, str]]]:
    """Answer a read request from the tree; returns the reply's body and the watch events to send at once (a
    setWatches'). Raises an :class:`~embedzk.errors.EmbedZKError` answered with its code. Runs on the loop thread."""
    opcode, body = request.opcode, request.body
    if opcode == OpCode.EXISTS:
        assert isinstance(body, ExistsRequest)
        return _exists(body.path or "", body.watch, ctx), []
    if opcode == OpCode.GET_DATA:
        assert isinstance(body, GetDataRequest)
        return _get_data(body.path or "", body.watch, ctx), []
    if opcode == OpCode.GET_CHILDREN:
        assert isinstance(body, GetChildrenRequest)
        return GetChildrenResponse(tuple(_children(body.path or "", body.watch, ctx)[0])), []
    if opcode == OpCode.GET_CHILDREN2:
        assert isinstance(body, GetChildren2Request)
        children, stat = _children(body.path or "", body.watch, ctx)
        return GetChildren2Response(tuple(children), Stat.from_model(stat)), []
    if opcode == OpCode.GET_ACL:
        assert isinstance(body, GetACLRequest)
        path = body.path or ""
        validate_path(path)
        if _reserved(path):
            return GetACLResponse(_OPEN_WIRE_ACL, Stat.from_model(_reserved_data(path, ctx)[1])), []
        entries, stat = ctx.tree.get_acl(path)
        if not (allowed(entries, Perm.READ, ctx.ids) or allowed(entries, Perm.ADMIN, ctx.ids)):
            raise NoAuthError(f"{path}: reading its ACL needs READ or ADMIN")
        acl = tuple(ACL(perms, Id(scheme, ident)) for perms, scheme, ident in entries)
        return GetACLResponse(acl, Stat.from_model(stat)), []
    if opcode == OpCode.GET_ALL_CHILDREN_NUMBER:
        assert isinstance(body, GetAllChildrenNumberRequest)
        path = body.path or ""
        validate_path(path)
        if _reserved(path):
            return GetAllChildrenNumberResponse(len(_RESERVED_CHILDREN[path])), []
        _check_read(path, ctx)
        if ctx.tree.exists(path) is None:
            raise NoNodeError(path)
        reserved = 1 + len(_RESERVED_CHILDREN[_RESERVED]) if path == "/" else 0  # /zookeeper and its children
        return GetAllChildrenNumberResponse(_count_descendants(ctx.tree, path) + reserved), []
    if opcode == OpCode.GET_EPHEMERALS:
        assert isinstance(body, GetEphemeralsRequest)
        prefix = body.prefix_path or "/"
        paths = [p for p in ctx.tree.ephemerals(ctx.session_id) if p.startswith(prefix)]
        return GetEphemeralsResponse(tuple(paths)), []
    if opcode == OpCode.MULTI_READ:
        assert isinstance(body, MultiRequest)
        return _multi_read(body, ctx), []
    if opcode in (OpCode.SET_WATCHES, OpCode.SET_WATCHES2):
        assert isinstance(body, (SetWatches, SetWatches2))
        return None, _set_watches(body, ctx)
    if opcode == OpCode.ADD_WATCH:
        assert isinstance(body, AddWatchRequest)
        path = body.path or ""
        validate_path(path)
        try:
            mode = AddWatchMode(body.mode)
        except ValueError:
            raise BadArgumentsError(f"{path}: unknown addWatch mode {body.mode}") from None
        kind = WatchKind.PERSISTENT if mode is AddWatchMode.PERSISTENT else WatchKind.PERSISTENT_RECURSIVE
        ctx.registry.add(kind, path, ctx.watcher)
        return ErrorResponse(0), []
    if opcode in (OpCode.REMOVE_WATCHES, OpCode.CHECK_WATCHES):
        assert isinstance(body, (RemoveWatchesRequest, CheckWatchesRequest))
        path = body.path or ""
        kinds = _watch_kinds(path, body.type)
        if opcode == OpCode.REMOVE_WATCHES:
            found = False
            for kind in kinds:
                found |= ctx.registry.remove(kind, path, ctx.watcher)
        else:
            held = ctx.registry.watches_of(ctx.watcher)
            found = any((kind, path) in held for kind in kinds)
        if not found:
            raise NoWatcherError(f"no watch of that type on {path}")
        return None, []
    if opcode == OpCode.WHO_AM_I:
        return WhoAmIResponse(ctx.identity.client_info()), []
    raise UnimplementedError(f"opcode {opcode} is not a read")
