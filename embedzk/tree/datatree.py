"""DataTree: ZooKeeper's replicated state machine, pure and deterministic.

Every replica applies the same transactions, in log order, to its own :class:`DataTree` and must end in the same
state: :meth:`DataTree.apply` reads no clock, does no I/O, draws no random number and starts no thread. Everything
that is not a function of the log (the time, session ids, the decision to reap a container) arrives inside the
:class:`~embedzk.tree.txn.Txn`. Conditions (versions, existence, open sessions) are evaluated at apply time, so every
replica computes the same result, and a transaction that fails is a *result*, never an exception.

The semantics are ZooKeeper's (``DataTree.java`` for the effects, ``PrepRequestProcessor.java`` for the checks and
their order, ``PathUtils.java`` for path syntax, ``EphemeralType.java`` for the owner encoding of containers and
TTL nodes). Where this tree differs, the comment at the spot says so.

Representation, chosen for memory (under 380 bytes per znode holding 100 bytes, see benchmarks/tree_bench.py): a
znode is a :class:`Node` with three slots, its ``data``, its stat packed into 60 bytes (``meta``, see :data:`META`),
and a ``children`` dict from name to Node, or None for a leaf. Nodes are reached by walking from the root; there is no
global path index. ``num_children`` and ``data_length`` are derived. A Node's ``data`` and ``meta`` are never
changed in place: a change builds a new Node (sharing the children dict) and stores it in its parent's dict, so a
reader on another thread that fetched a Node always sees a consistent data/stat pair, and an undo log of replaced
slots makes a failed multi roll back exactly.

ACLs (:mod:`embedzk.tree.acl`): a node whose ACL is not OPEN_ACL is an :class:`AclNode`, a Node with one more slot,
so that the nodes of a tree without ACLs cost what they cost before ACLs existed; every change that rebuilds a node
rebuilds it with its ACL. The checks are ZooKeeper's (``PrepRequestProcessor``): made when the transaction is
applied, against the identities an :class:`~embedzk.tree.txn.Authorized` carries, before anything changes, so every
replica refuses the same transactions.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from zlib import crc32 as _crc32

from embedzk.errors import (
    BadArgumentsError,
    BadVersionError,
    DataInconsistencyError,
    DecodeError,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistencyError,
    SessionExpiredError,
    ZnodeError,
)
from embedzk.model import EventType, Stat
from embedzk.tree import snapshot as _snapshot
from embedzk.tree.acl import OPEN_ACL, AclEntry, Identity, Perm, allowed, expand_auth, validate_acl
from embedzk.tree.digest import acl_digest, node_digest, node_digest_seeded, path_seed, session_digest
from embedzk.tree.paths import _BAD_CHAR, ROOT, split_path, validate_path
from embedzk.tree.txn import (
    Authorized,
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DeleteContainerOp,
    DeleteOp,
    MultiOp,
    SetACLOp,
    SetDataOp,
    Txn,
    WithACL,
)

__all__ = [
    "CONTAINER_OWNER",
    "AclNode",
    "MAX_SESSION_ID",
    "MAX_TTL",
    "META",
    "ApplyResult",
    "DataTree",
    "Node",
    "SnapshotStream",
    "TreeEvent",
    "TreeRestorer",
    "ttl_of",
    "ttl_owner",
]

#: The packed stat of a znode: czxid, mzxid, pzxid, ctime, mtime (int64), version, cversion, aversion (int32),
#: ephemeral_owner (int64); little-endian, 60 bytes. The field widths are ZooKeeper's (StatPersisted). As in
#: StatPersisted, the cversion kept here counts the children ever created (the sequential suffix is taken from it);
#: the Stat a reader gets counts deletions too (see _stat).
META = struct.Struct("<qqqqqiiiq")
_pack = META.pack
_unpack = META.unpack
_OWNER = struct.Struct("<q")
_OWNER_OFFSET = 52
_CZXID, _MZXID, _PZXID, _CTIME, _MTIME, _VERSION, _CVERSION, _AVERSION, _EPHEMERAL_OWNER = range(9)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1

# EphemeralType.java: the high byte 0xFF marks an "extended" owner, whose next two bytes say which feature (0 is
# TTL) and whose low 40 bits carry the value; Long.MIN_VALUE marks a container. Session ids stay below 2**56, so
# they can never be mistaken for either.
#: ephemeral_owner of a container node (0x8000000000000000 as a signed 64-bit value).
CONTAINER_OWNER = _INT64_MIN
_EXTENDED_MASK = 0xFF00000000000000
_EXTENDED_BIT_MASK = 0x00FFFF0000000000
#: The largest TTL in milliseconds (EphemeralType.TTL.maxValue(), about 34 years).
MAX_TTL = 0xFFFFFFFFFF
#: Session ids are 1 <= id < MAX_SESSION_ID.
MAX_SESSION_ID = 1 << 56
_MAX_TIMEOUT = (1 << 31) - 1  # ZooKeeper keeps session timeouts in an int


def ttl_owner(ttl: int) -> int:
    """The ephemeral_owner that marks a TTL node (EphemeralType.TTL.toEphemeralOwner), as a signed 64-bit int."""
    return (_EXTENDED_MASK | ttl) - (1 << 64)


def ttl_of(owner: int) -> int | None:
    """The TTL encoded in ``owner`` if it marks a TTL node, else None."""
    if owner >= 0 or owner == CONTAINER_OWNER:
        return None
    unsigned = owner & 0xFFFFFFFFFFFFFFFF
    if unsigned & _EXTENDED_MASK == _EXTENDED_MASK and unsigned & _EXTENDED_BIT_MASK == 0:
        return unsigned & MAX_TTL
    return None


_T = TypeVar("_T")


def _nth(index: int) -> str:
    """How messages name an operation of a multi: by its index in the list of results, which counts from 0."""
    return f"operation {index} (counting from 0)"


def _int32_inc(value: int) -> int:
    # Java int arithmetic: versions wrap around at 2**31 exactly as ZooKeeper's do.
    return ((value + 1 + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _fast_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor for a frozen slotted dataclass that sets the slots directly.

    A frozen dataclass's ``__init__`` goes through ``object.__setattr__`` for every field (0.2 us apiece, 2.5 us
    for a Stat); the slot descriptors do the same work in a fraction of that, and reads build a Stat every time.
    The result is an ordinary instance. Falls back to the class itself unless it is a plain slotted dataclass
    whose ``__init__`` only stores its fields.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # any dataclass; checked below
    plain = not hasattr(cls, "__post_init__") and all(
        f.init and isinstance(cls.__dict__.get(f.name), types.MemberDescriptorType) for f in fields
    )
    if not plain:
        return cls
    names = [f.name for f in fields]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_set_{name}": cls.__dict__[name].__set__ for name in names})
    body = "".join(f"    _set_{name}(obj, {name})\n" for name in names)
    exec(f"def make({', '.join(names)}):\n    obj = _new(_cls)\n{body}    return obj\n", namespace)  # noqa: S102
    return namespace["make"]  # type: ignore[no-any-return]


_new_stat = _fast_constructor(Stat)


class Node:
    """One znode: its data, its packed stat (:data:`META`), and its children (None for a leaf, never empty)."""

    __slots__ = ("children", "data", "meta")

    #: The node's ACL: None, which means OPEN_ACL, unless the node is an :class:`AclNode`. A class attribute, so
    #: that it costs a plain node nothing.
    acl: tuple[AclEntry, ...] | None = None

    def __init__(self, data: bytes, meta: bytes, children: dict[str, Node] | None) -> None:
        self.data = data
        self.meta = meta
        self.children = children


class AclNode(Node):
    """A znode with an ACL of its own: never OPEN_ACL (a node with that is a plain :class:`Node`), always in the
    normal form of :func:`~embedzk.tree.acl.validate_acl` with no ``auth`` entry."""

    __slots__ = ("acl",)

    def __init__(
        self, data: bytes, meta: bytes, children: dict[str, Node] | None, acl: tuple[AclEntry, ...]
    ) -> None:
        self.data = data
        self.meta = meta
        self.children = children
        self.acl = acl


def _new_node(data: bytes, meta: bytes, children: dict[str, Node] | None, acl: tuple[AclEntry, ...] | None) -> Node:
    """A node with ``acl`` (None: OPEN_ACL), of the class that holds it."""
    if acl is None:
        return Node(data, meta, children)
    return AclNode(data, meta, children, acl)


def _rebuilt(node: Node, data: bytes, meta: bytes, children: dict[str, Node] | None) -> Node:
    """``node`` with new data, stat or children and the same ACL: how every change keeps a node's ACL."""
    return _new_node(data, meta, children, node.acl)


def _stat(node: Node) -> Stat:
    czxid, mzxid, pzxid, ctime, mtime, version, creations, aversion, owner = _unpack(node.meta)
    children = node.children
    count = len(children) if children else 0
    # DataNode.copyStat: "for every create there is a delete except for the children still present", so a reader's
    # cversion is creations + deletions = 2 * creations - children, in Java int arithmetic.
    cversion = 2 * creations - count
    if not _INT32_MIN <= cversion <= _INT32_MAX:
        cversion = ((cversion - _INT32_MIN) & 0xFFFFFFFF) + _INT32_MIN
    return _new_stat(
        czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, len(node.data), count, pzxid,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TreeEvent:
    """What a change triggers, before any watcher is involved; the watch registry maps these to watchers.

    ``type`` is CREATED, DELETED, CHANGED (data) or CHILD (the children of ``path`` changed).
    """

    type: EventType
    path: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of applying one transaction.

    ``value``: for create the created path; for set and setACL the new Stat; None for delete, check,
    createSession, closeSession and deleteContainer. For a multi, a list with one entry per operation (create: the
    path, delete: True, set: the Stat, check: True); when the multi failed, the list holds errors instead:
    RolledBackError for the operations before the failing one, that operation's error, RuntimeInconsistencyError
    for the rest (ZooKeeper's DataTree.processTxn). ``error``: the deterministic error (for a multi, the failing
    operation's), None on success. ``events``: what the change triggers, in the order ZooKeeper triggers them; empty
    on failure.
    """

    value: Any
    error: ZnodeError | SessionExpiredError | None
    events: tuple[TreeEvent, ...]


# An undo record: (holder, name, path, previous). ``holder`` is the children dict that held ``name`` (None for the
# root), ``previous`` the Node that was there (None if there was none).
_Undo = tuple[dict[str, Node] | None, str, str, Node | None]
_Events = list[TreeEvent]
_Ids = tuple[Identity, ...]
# A handler gets the operation, its transaction, the zxid, the requester's identities, and where to put the events
# and the undo records.
_Handler = Callable[[Any, Txn, int, _Ids, _Events, list[_Undo]], Any]
# What a failed transaction restores besides the slots: the digest, the node count and the count of ACL nodes.
_Counters = tuple[int, int, int]

_new_event = _fast_constructor(TreeEvent)
_new_result = _fast_constructor(ApplyResult)
_NO_EVENTS: tuple[TreeEvent, ...] = ()

_CREATED = EventType.CREATED
_DELETED = EventType.DELETED
_CHANGED = EventType.CHANGED
_CHILD = EventType.CHILD

_READ = Perm.READ
_WRITE = Perm.WRITE
_CREATE = Perm.CREATE
_DELETE = Perm.DELETE
_ADMIN = Perm.ADMIN

# Interned ACLs: many nodes usually share a few ACLs, and one tuple for each saves about 200 bytes a node. The pool
# only shares equal immutable values, so what it holds never changes a result; past this size it starts afresh.
_ACL_POOL_SIZE = 4096


class DataTree:
    """The znode tree with ZooKeeper's semantics, driven by :meth:`apply`.

    Writes happen only through :meth:`apply`, with strictly increasing zxids (the log index of the entry). Reads
    (:meth:`get`, :meth:`exists`, :meth:`get_children`) answer from memory in microseconds. A thread may read while
    another applies: each read sees a consistent node, though not necessarily a consistent tree.
    """

    def __init__(self, *, max_data_bytes: int = 1 << 20) -> None:
        """An empty tree holding only ``"/"``; values larger than ``max_data_bytes`` are refused."""
        if type(max_data_bytes) is not int or max_data_bytes < 0:
            raise ValueError(f"max_data_bytes must be an int >= 0, got {max_data_bytes!r}")
        self._max_data_bytes = max_data_bytes
        self._root = Node(b"", _pack(0, 0, 0, 0, 0, 0, 0, 0, 0), None)
        self._digest = node_digest(ROOT, self._root.meta, self._root.data)
        self._count = 1
        self._acl_nodes = 0
        self._acl_pool: dict[tuple[AclEntry, ...], tuple[AclEntry, ...]] = {}
        self._last_zxid = 0
        self._sessions: dict[int, tuple[str, int]] = {}
        self._ephemerals: dict[int, set[str]] = {}
        self._containers: set[str] = set()
        self._ttls: set[str] = set()
        # Copy-on-write while snapshot streams read the tree (see snapshot_chunks): the streams that may still be
        # read (weakly: a stream dropped unread must not keep the tree copying), whether any may be, and the ids of
        # the children dicts made since the newest one began, which are safe to change in place. All three change
        # only on the thread that applies transactions (see _forget_dropped_streams).
        self._stream_refs: list[weakref.ref[SnapshotStream]] = []
        self._copying = False
        self._fresh: set[int] = set()
        self._handlers: dict[type, _Handler] = {
            CreateOp: self._create,
            DeleteOp: self._delete,
            SetDataOp: self._set_data,
            CheckOp: self._check,
            CreateSessionOp: self._create_session,
            CloseSessionOp: self._close_session,
            DeleteContainerOp: self._delete_container,
            WithACL: self._create_with_acl,
            SetACLOp: self._set_acl,
        }

    # -----------------------------------------------------------------------------------------------------------
    # reads

    @property
    def max_data_bytes(self) -> int:
        """The largest value, in bytes, that a create or set may carry."""
        return self._max_data_bytes

    @property
    def digest(self) -> int:
        """The sum of every node's and every open session's CRC32 (see :mod:`embedzk.tree.digest`); O(1)."""
        return self._digest

    @property
    def last_zxid(self) -> int:
        """The zxid of the last transaction applied (0 for a new tree)."""
        return self._last_zxid

    def get(self, path: str) -> tuple[bytes, Stat]:
        """The data and Stat of ``path``; NoNodeError if it does not exist, BadArgumentsError if it is invalid."""
        node = self._find(path)
        if node is None:
            self._raise_missing(path)
        return node.data, _stat(node)

    def exists(self, path: str) -> Stat | None:
        """The Stat of ``path``, or None if it does not exist; BadArgumentsError if the path is invalid."""
        node = self._find(path)
        if node is None:
            validate_path(path)
            return None
        return _stat(node)

    def get_children(self, path: str) -> list[str]:
        """The names of the children of ``path``, in no particular order (as ZooKeeper); NoNodeError if missing."""
        node = self._find(path)
        if node is None:
            self._raise_missing(path)
        children = node.children
        return list(children) if children else []

    def node_count(self) -> int:
        """How many znodes exist, ``"/"`` included."""
        return self._count

    def get_acl(self, path: str) -> tuple[tuple[AclEntry, ...], Stat]:
        """The ACL and Stat of ``path`` (OPEN_ACL for a node without one of its own); NoNodeError if it does not
        exist. No permission is checked: ZooKeeper's getACL needs READ or ADMIN, which the caller decides."""
        node = self._find(path)
        if node is None:
            self._raise_missing(path)
        return node.acl or OPEN_ACL, _stat(node)

    def check_read(self, path: str, ids: tuple[Identity, ...]) -> None:
        """Raise NoNodeError if ``path`` does not exist, NoAuthError unless a requester with ``ids`` may read it
        (READ, as ZooKeeper's getData, getChildren and exists with a node); for the reads served above the tree."""
        node = self._find(path)
        if node is None:
            self._raise_missing(path)
        if node.acl is not None and not allowed(node.acl, _READ, ids):
            raise NoAuthError(f"NoAuth for {path}: no READ permission")

    def acl_count(self) -> int:
        """How many znodes hold an ACL other than OPEN_ACL; 0 lets a reader skip the checks altogether."""
        return self._acl_nodes

    def sessions(self) -> dict[int, tuple[str, int]]:
        """The open sessions: session id -> (owner, timeout in ms); a copy."""
        return dict(self._sessions)

    def ephemeral_count(self) -> int:
        """How many ephemeral znodes exist (ZooKeeper's ``zk_ephemerals_count``), in time proportional to the
        sessions, not to their nodes."""
        return sum(len(paths) for paths in self._ephemerals.values())

    def ephemerals(self, session_id: int) -> list[str]:
        """The paths of the ephemeral nodes that ``session_id`` owns, sorted."""
        return sorted(self._ephemerals.get(session_id, ()))

    def reap_candidates(self, now_ms: int) -> list[str]:
        """Paths the leader should propose to reap with a DeleteContainerOp, sorted.

        As ZooKeeper's ContainerManager: containers that have had children (cversion > 0) and have none left, and
        TTL nodes without children not modified for longer than their TTL (``now_ms - mtime > ttl``). Only the
        container and TTL nodes are visited, never the whole tree.
        """
        found = []
        for path in self._containers:
            node = self._find(path)
            if node is not None and node.children is None and _unpack(node.meta)[_CVERSION] > 0:
                found.append(path)
        for path in self._ttls:
            node = self._find(path)
            if node is not None and node.children is None:
                fields = _unpack(node.meta)
                ttl = ttl_of(fields[_EPHEMERAL_OWNER])
                if ttl is not None and now_ms - fields[_MTIME] > ttl:
                    found.append(path)
        return sorted(found)

    def _find(self, path: str) -> Node | None:
        """The node at ``path`` or None. An invalid path is never found: no invalid name is ever created."""
        node = self._root
        if path != ROOT:
            try:
                names = path.split("/")
            except (AttributeError, TypeError):
                validate_path(path)  # raises: not a str
                raise
            if len(names) < 2 or names[0]:
                return None  # "" or a relative path
            for i in range(1, len(names)):
                children = node.children
                if children is None:
                    return None
                child = children.get(names[i])
                if child is None:
                    return None
                node = child
        return node

    @staticmethod
    def _raise_missing(path: str) -> NoReturn:
        validate_path(path)
        raise NoNodeError(f"NoNode for {path}")

    # -----------------------------------------------------------------------------------------------------------
    # validation before proposing

    def check_op(self, op: Any) -> None:
        """Check an operation before it is proposed; raise BadArgumentsError or InvalidACLError saying what is wrong.

        Checks what does not depend on the tree's state: path syntax, value size, flag combinations, TTL range,
        session id range, no nested multi, the ACLs (an ``auth`` entry needs a digest identity among those of the
        :class:`~embedzk.tree.txn.Authorized` around it: a bare operation is applied as asked by no one), the shape
        of an Authorized. :meth:`apply` repeats these checks, so a transaction that skipped this step still fails
        the same way on every replica.
        """
        ids: _Ids = ()
        if isinstance(op, Authorized):
            ids = self._check_authorized(op)
            op = op.op
        self._check_plain(op, ids)

    def _check_plain(self, op: Any, ids: _Ids) -> None:
        if isinstance(op, MultiOp):
            self._check_multi_shape(op)
            for index, sub in enumerate(op.ops):
                try:
                    self._check_plain(sub, ids)
                except BadArgumentsError as err:
                    raise BadArgumentsError(f"{_nth(index)} of the multi: {err}") from None
                except InvalidACLError as err:
                    raise InvalidACLError(f"{_nth(index)} of the multi: {err}") from None
            return
        if isinstance(op, (WithACL, SetACLOp)):
            path = op.op.path if isinstance(op, WithACL) else op.path
            expand_auth(self._check_acl_op(op), ids, path)
            return
        checker = _CHECKERS.get(type(op))
        if checker is None:
            raise BadArgumentsError(f"{type(op).__name__} is not a tree operation")
        checker(self, op)

    @staticmethod
    def _check_authorized(op: Authorized) -> _Ids:
        """The identities of ``op``; BadArgumentsError unless they are a tuple of (str, str) tuples and ``op``
        wraps an operation that may be wrapped (neither another Authorized nor a session operation)."""
        ids = op.ids
        if type(ids) is not tuple or not all(
            type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str for pair in ids
        ):
            # Exact tuples: the checks look identities up by equality, and a list never equals a tuple.
            raise BadArgumentsError("an Authorized's ids must be a tuple of (scheme, id) tuples of str")
        if isinstance(op.op, Authorized):
            raise BadArgumentsError("an Authorized may not hold another Authorized")
        if isinstance(op.op, (CreateSessionOp, CloseSessionOp)):
            raise BadArgumentsError(f"a {type(op.op).__name__} is not asked on anyone's behalf: no Authorized")
        return ids

    def _check_acl_op(self, op: WithACL | SetACLOp) -> tuple[AclEntry, ...]:
        """Check a create with an ACL or a setACL as :meth:`check_op` does; the ACL in normal form."""
        if isinstance(op, WithACL):
            if not isinstance(op.op, CreateOp):
                raise BadArgumentsError(f"a WithACL holds a CreateOp, not a {type(op.op).__name__}")
            self._check_create(op.op)
            return validate_acl(op.acl, op.op.path)
        validate_path(op.path)
        self._check_version(op.path, op.version)
        return validate_acl(op.acl, op.path)

    @staticmethod
    def _check_multi_shape(op: MultiOp) -> None:
        if not isinstance(op.ops, (tuple, list)):
            raise BadArgumentsError("a multi's ops must be a sequence of operations")
        for index, sub in enumerate(op.ops):
            if isinstance(sub, MultiOp):
                raise BadArgumentsError(f"{_nth(index)} of the multi is a multi: multis do not nest")
            if type(sub) not in _SUB_OPS:
                raise BadArgumentsError(
                    f"{_nth(index)} of the multi is a {type(sub).__name__}: only create, delete, set and check"
                    " may be part of a multi"
                )

    def _check_value(self, path: str, data: Any) -> None:
        if type(data) is not bytes:
            raise BadArgumentsError(f"{path}: the value must be bytes, got {type(data).__name__}")
        if len(data) > self._max_data_bytes:
            raise BadArgumentsError(
                f"{path}: the value of {len(data)} bytes exceeds the limit of {self._max_data_bytes} bytes"
            )

    @staticmethod
    def _check_version(path: str, version: Any) -> None:
        if type(version) is not int:
            raise BadArgumentsError(f"{path}: the version must be an int, got {type(version).__name__}")

    def _check_create(self, op: CreateOp) -> None:
        if not (
            type(op.ephemeral) is bool
            and type(op.sequential) is bool
            and type(op.container) is bool
            and type(op.makepath) is bool
        ):
            raise BadArgumentsError(f"create {op.path!r}: ephemeral, sequential, container and makepath are bools")
        validate_path(op.path, op.sequential)
        self._check_value(op.path, op.data)
        ttl = op.ttl
        if ttl is not None:
            # PrepRequestProcessor.validateCreateRequest / EphemeralType.TTL: TTL only for persistent nodes.
            if type(ttl) is not int:
                raise BadArgumentsError(f"create {op.path}: ttl must be an int, got {type(ttl).__name__}")
            if op.ephemeral or op.container:
                raise BadArgumentsError(f"create {op.path}: a ttl cannot be combined with ephemeral or container")
            if not 1 <= ttl <= MAX_TTL:
                raise BadArgumentsError(f"create {op.path}: ttl must be in 1..{MAX_TTL} ms, got {ttl}")
        if op.container and (op.ephemeral or op.sequential):
            # CreateMode has no ephemeral or sequential container.
            raise BadArgumentsError(f"create {op.path}: a container cannot be ephemeral or sequential")

    def _check_delete(self, op: DeleteOp) -> None:
        self._check_not_root(op.path, "delete")
        self._check_version(op.path, op.version)

    def _check_set(self, op: SetDataOp) -> None:
        validate_path(op.path)
        self._check_value(op.path, op.data)
        self._check_version(op.path, op.version)

    def _check_check(self, op: CheckOp) -> None:
        validate_path(op.path)
        self._check_version(op.path, op.version)

    @staticmethod
    def _check_not_root(path: str, what: str) -> None:
        validate_path(path)
        if path == ROOT:
            # PrepRequestProcessor.getParentPathAndValidate: "/" is a special path and cannot be removed.
            raise BadArgumentsError(f"{what} /: the root cannot be deleted")

    def _check_delete_container(self, op: DeleteContainerOp) -> None:
        self._check_not_root(op.path, "deleteContainer")

    @staticmethod
    def _check_create_session(op: CreateSessionOp) -> None:
        sid = op.session_id
        if type(sid) is not int or not 1 <= sid < MAX_SESSION_ID:
            raise BadArgumentsError(f"session id {sid!r} is out of range 1..2**56-1")
        if type(op.timeout_ms) is not int or not 1 <= op.timeout_ms <= _MAX_TIMEOUT:
            raise BadArgumentsError(f"session {sid}: timeout {op.timeout_ms!r} ms is out of range 1..{_MAX_TIMEOUT}")
        if type(op.owner) is not str:
            raise BadArgumentsError(f"session {sid}: the owner must be a str")
        try:
            op.owner.encode("utf-8")
        except UnicodeEncodeError:
            raise BadArgumentsError(f"session {sid}: the owner is not valid unicode") from None

    @staticmethod
    def _check_close_session(op: CloseSessionOp) -> None:
        if type(op.session_id) is not int:
            raise BadArgumentsError(f"session id {op.session_id!r} must be an int")

    # -----------------------------------------------------------------------------------------------------------
    # apply

    def apply(self, txn: Txn, zxid: int) -> ApplyResult:
        """Apply ``txn``, the log entry at index ``zxid``, and say what happened.

        Never raises for a bad transaction: a failed condition or an invalid argument is the result's ``error``,
        and a transaction that fails changes nothing (but still counts as applied: ``last_zxid`` becomes
        ``zxid``). Raises ValueError only if ``zxid`` does not exceed :attr:`last_zxid`, which means the driver
        applied the log out of order.
        """
        if type(zxid) is not int or not self._last_zxid < zxid <= _INT64_MAX:
            raise ValueError(f"zxid {zxid!r} must be an int greater than the last applied zxid {self._last_zxid}")
        self._last_zxid = zxid
        if self._copying:
            self._forget_dropped_streams()
        undo: list[_Undo] = []
        events: _Events = []
        saved = (self._digest, self._count, self._acl_nodes)
        try:
            if not isinstance(txn, Txn):
                raise BadArgumentsError(f"expected a Txn, got {type(txn).__name__}")
            if type(txn.time_ms) is not int or not _INT64_MIN <= txn.time_ms <= _INT64_MAX:
                raise BadArgumentsError(f"time_ms {txn.time_ms!r} is not a 64-bit int")
            if type(txn.session_id) is not int:
                raise BadArgumentsError(f"session_id {txn.session_id!r} is not an int")
            op = txn.op
            ids: _Ids = ()
            if type(op) is Authorized:
                ids = self._check_authorized(op)
                op = op.op
            if isinstance(op, MultiOp):
                return self._multi(op, txn, zxid, ids, undo, saved)
            handler = self._handlers.get(type(op))
            if handler is None:
                raise BadArgumentsError(f"{type(op).__name__} is not a tree operation")
            value = handler(op, txn, zxid, ids, events, undo)
        except (ZnodeError, SessionExpiredError) as err:
            self._rollback(undo, saved)
            return _new_result(None, err, _NO_EVENTS)
        except BaseException:
            self._rollback(undo, saved)  # a bug: leave the tree as it was, then let it surface
            raise
        return _new_result(value, None, tuple(events))

    def _multi(
        self, op: MultiOp, txn: Txn, zxid: int, ids: _Ids, undo: list[_Undo], saved: _Counters
    ) -> ApplyResult:
        # All or nothing: each operation sees the effects of those before it (PrepRequestProcessor keeps them as
        # pending change records); on the first failure everything is undone and nothing is triggered.
        ops = op.ops
        if not isinstance(ops, (tuple, list)):
            raise BadArgumentsError("a multi's ops must be a sequence of operations")
        events: _Events = []
        values: list[Any] = []
        for index, sub in enumerate(ops):
            try:
                handler = self._sub_handler(index, sub)
                value = handler(sub, txn, zxid, ids, events, undo)
            except (ZnodeError, SessionExpiredError) as err:
                self._rollback(undo, saved)
                failed = f"{_nth(index)} failed: {type(err).__name__}: {err}"
                results: list[Any] = [RolledBackError(f"rolled back, as {failed}") for _ in range(index)]
                results.append(err)
                results.extend(RuntimeInconsistencyError(f"not attempted, as {failed}") for _ in range(index + 1, len(ops)))
                return _new_result(results, err, _NO_EVENTS)
            values.append(True if value is None else value)
        return _new_result(values, None, tuple(events))

    def _sub_handler(self, index: int, sub: Any) -> _Handler:
        if isinstance(sub, MultiOp):
            raise BadArgumentsError(f"{_nth(index)} of the multi is a multi: multis do not nest")
        if type(sub) not in _SUB_OPS:
            raise BadArgumentsError(f"{_nth(index)} of the multi is a {type(sub).__name__}: not allowed in a multi")
        return self._handlers[type(sub)]

    # -- the operations. Each checks everything before its first change, so one that fails alone changes nothing;
    # -- the undo log is what makes a multi all or nothing (and leaves the tree intact should a bug raise).

    def _create(
        self,
        op: CreateOp,
        txn: Txn,
        zxid: int,
        ids: _Ids,
        events: _Events,
        undo: list[_Undo],
        requested_acl: Any = None,
    ) -> str:
        # requested_acl: a WithACL's ACL as asked for, None for a plain create (OPEN_ACL).
        self._check_create(op)
        if op.ephemeral:
            owner = txn.session_id
            if owner not in self._sessions:
                raise SessionExpiredError(f"create {op.path}: session {owner:#x} is not open")
        elif op.container:
            owner = CONTAINER_OWNER
        elif op.ttl is not None:
            owner = ttl_owner(op.ttl)
        else:
            owner = 0
        path = op.path
        # PrepRequestProcessor.pRequest2TxnCreate: fixupACL (InvalidACL) before the parent is looked up (NoNode),
        # then CREATE on the parent (NoAuth), then NodeExists and NoChildrenForEphemerals.
        acl = None if requested_acl is None else self._stored_acl(validate_acl(requested_acl, path), path, ids)
        if path == ROOT and not op.sequential:
            raise NodeExistsError("NodeExists for /")
        parent_path, name = split_path(path)
        chain = self._chain(parent_path)
        if chain is None:
            if not op.makepath:
                raise NoNodeError(f"NoNode for {path}: parent {parent_path} does not exist")
            chain = self._make_ancestors(parent_path, txn.time_ms, zxid, ids, acl, events, undo)
        elif chain[-1].acl is not None:
            self._require(chain[-1], _CREATE, ids, path, parent_path)
        parent = chain[-1]
        parent_fields = _unpack(parent.meta)
        if op.sequential:
            # PrepRequestProcessor: the suffix is the parent's cversion as kept (its creations) before this create
            # bumps it; deletions, which a reader's Stat.cversion counts too, do not move it.
            suffix = f"{parent_fields[_CVERSION]:010d}"
            path += suffix
            name += suffix
        children = parent.children
        if children is not None and name in children:
            raise NodeExistsError(f"NodeExists for {path}")
        if parent_fields[_EPHEMERAL_OWNER] > 0:  # EphemeralType.NORMAL: only plain ephemerals refuse children
            raise NoChildrenForEphemeralsError(f"NoChildrenForEphemerals for {path}")
        time_ms = txn.time_ms
        meta = _pack(zxid, zxid, zxid, time_ms, time_ms, 0, 0, 0, owner)
        child = Node(op.data, meta, None) if acl is None else AclNode(op.data, meta, None, acl)
        self._attach(chain, parent_path, parent_fields, name, path, child, zxid, undo)
        events.append(_new_event(_CREATED, path))
        events.append(_new_event(_CHILD, parent_path))
        return path

    def _create_with_acl(
        self, op: WithACL, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]
    ) -> str:
        if not isinstance(op.op, CreateOp):
            raise BadArgumentsError(f"a WithACL holds a CreateOp, not a {type(op.op).__name__}")
        return self._create(op.op, txn, zxid, ids, events, undo, op.acl)

    def _stored_acl(self, valid: tuple[AclEntry, ...], path: str, ids: _Ids) -> tuple[AclEntry, ...] | None:
        """What a node asked to have the ACL ``valid`` (validated) holds: its ``auth`` entries expanded for ``ids``
        (InvalidACLError naming ``path`` if one cannot be), interned; None if that is OPEN_ACL."""
        acl = expand_auth(valid, ids, path)
        if acl == OPEN_ACL:
            return None
        pool = self._acl_pool
        pooled = pool.get(acl)
        if pooled is not None:
            return pooled
        if len(pool) >= _ACL_POOL_SIZE:
            pool.clear()
        pool[acl] = acl
        return acl

    @staticmethod
    def _require(node: Node, perm: Perm, ids: _Ids, path: str, node_path: str) -> None:
        """NoAuthError for an operation on ``path`` unless ``ids`` hold ``perm`` on ``node`` (at ``node_path``).

        The busy paths (create, set, delete, check) test ``node.acl`` before they call this: a node without an ACL
        of its own, by far the most common, then costs no call.
        """
        acl = node.acl
        if acl is not None and not allowed(acl, perm, ids):
            what = "" if node_path == path else f" on {node_path}"
            raise NoAuthError(f"NoAuth for {path}: no {perm.name} permission{what}")

    def _make_ancestors(
        self,
        parent_path: str,
        time_ms: int,
        zxid: int,
        ids: _Ids,
        acl: tuple[AclEntry, ...] | None,
        events: _Events,
        undo: list[_Undo],
    ) -> list[Node]:
        # kazoo's makepath, done inside the transaction: each missing ancestor is an ordinary persistent create,
        # with its own events and its own bump of its parent's cversion, and the ACL of the node asked for. Only
        # the deepest existing ancestor is checked for CREATE: the others are created by this very transaction.
        streams = self._copying
        checked = False
        chain = [self._thawed(None, ROOT, self._root) if streams else self._root]
        path = ""
        for name in parent_path.split("/")[1:]:
            node = chain[-1]
            node_path = path or ROOT
            path = path + "/" + name
            children = node.children
            child = children.get(name) if children is not None else None
            if child is not None and streams:
                child = self._thawed(children, name, child)
            if child is None:
                if not checked:
                    self._require(node, _CREATE, ids, path, node_path)
                    checked = True
                fields = _unpack(node.meta)
                if fields[_EPHEMERAL_OWNER] > 0:
                    raise NoChildrenForEphemeralsError(f"NoChildrenForEphemerals for {path}")
                child = _new_node(b"", _pack(zxid, zxid, zxid, time_ms, time_ms, 0, 0, 0, 0), None, acl)
                self._attach(chain, node_path, fields, name, path, child, zxid, undo)
                events.append(_new_event(_CREATED, path))
                events.append(_new_event(_CHILD, node_path))
            chain.append(child)
        return chain

    def _delete(self, op: DeleteOp, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]) -> None:
        self._check_delete(op)
        path = op.path
        chain = self._chain(path)
        # PrepRequestProcessor.pRequest2TxnDelete checks DELETE on the parent before it looks for the node: one who
        # may not delete there learns nothing of what exists there.
        if chain is None:
            parent_path = split_path(path)[0]
            parent = self._find(parent_path)
            if parent is not None:
                self._require(parent, _DELETE, ids, path, parent_path)
            raise NoNodeError(f"NoNode for {path}")
        if chain[-2].acl is not None:
            self._require(chain[-2], _DELETE, ids, path, split_path(path)[0])
        node = chain[-1]
        # PrepRequestProcessor's order: NoNode (parent), NoAuth, NoNode, then BadVersion, then NotEmpty.
        version = _unpack(node.meta)[_VERSION]
        if op.version != -1 and op.version != version:
            raise BadVersionError(f"BadVersion for {path}: expected {op.version}, the node is at {version}")
        if node.children is not None:
            raise NotEmptyError(f"Directory not empty for {path}")
        self._detach(chain, path, zxid, events, undo)

    def _set_data(self, op: SetDataOp, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]) -> Stat:
        self._check_set(op)
        path = op.path
        chain = self._chain(path)
        if chain is None:
            raise NoNodeError(f"NoNode for {path}")
        node = chain[-1]
        if node.acl is not None:
            self._require(node, _WRITE, ids, path, path)
        f = _unpack(node.meta)
        if op.version != -1 and op.version != f[_VERSION]:
            raise BadVersionError(f"BadVersion for {path}: expected {op.version}, the node is at {f[_VERSION]}")
        # DataTree.setData: new data, mzxid, mtime and version; pzxid and the children are untouched.
        meta = _pack(f[0], zxid, f[2], f[3], txn.time_ms, _int32_inc(f[_VERSION]), f[6], f[7], f[8])
        new = Node(op.data, meta, node.children) if node.acl is None else _rebuilt(node, op.data, meta, node.children)
        self._replace(chain, path, new, undo)
        events.append(_new_event(_CHANGED, path))
        return _stat(new)

    def _check(self, op: CheckOp, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]) -> None:
        self._check_check(op)
        node = self._find(op.path)
        if node is None:
            raise NoNodeError(f"NoNode for {op.path}")
        if node.acl is not None:
            self._require(node, _READ, ids, op.path, op.path)
        version = _unpack(node.meta)[_VERSION]
        if op.version != -1 and op.version != version:
            raise BadVersionError(f"BadVersion for {op.path}: expected {op.version}, the node is at {version}")

    def _create_session(
        self, op: CreateSessionOp, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]
    ) -> None:
        self._check_create_session(op)
        if op.session_id in self._sessions:
            raise BadArgumentsError(f"session {op.session_id:#x} is already open")
        self._sessions[op.session_id] = (op.owner, op.timeout_ms)
        self._digest += session_digest(op.session_id, op.owner, op.timeout_ms)

    def _close_session(
        self, op: CloseSessionOp, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]
    ) -> None:
        self._check_close_session(op)
        sid = op.session_id
        session = self._sessions.get(sid)
        if session is None:
            raise SessionExpiredError(f"session {sid:#x} is not open")
        # DataTree.killSession deletes each ephemeral like a delete (events, parent pzxid). Sorted, so that every
        # replica fires the events in the same order. Ephemerals have no children, so none of this can fail.
        for path in sorted(self._ephemerals.get(sid, ())):
            chain = self._chain(path)
            if chain is None:  # pragma: no cover - the index and the tree agree by construction
                raise DataInconsistencyError(f"ephemeral {path} of session {sid:#x} is missing")
            self._detach(chain, path, zxid, events, undo)
        self._ephemerals.pop(sid, None)
        del self._sessions[sid]
        self._digest -= session_digest(sid, session[0], session[1])

    def _delete_container(
        self, op: DeleteContainerOp, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]
    ) -> None:
        # The leader reaps for no one: like ZooKeeper's ContainerManager, with no ACL check.
        self._check_delete_container(op)
        path = op.path
        chain = self._chain(path)
        if chain is None:
            raise NoNodeError(f"NoNode for {path}")
        node = chain[-1]
        if node.children is not None:
            raise NotEmptyError(f"Directory not empty for {path}")
        f = _unpack(node.meta)
        owner = f[_EPHEMERAL_OWNER]
        # The leader proposed this from reap_candidates; re-check at apply time so that a create or set that
        # raced with the proposal wins. (ZooKeeper answers BadVersion for a plain ephemeral and does not re-check
        # the TTL; here any node that is not reapable now is refused the same way.)
        if owner == CONTAINER_OWNER:
            if f[_CVERSION] <= 0:
                raise BadArgumentsError(f"deleteContainer {path}: the container never had children")
        else:
            ttl = ttl_of(owner)
            if ttl is None:
                raise BadArgumentsError(f"deleteContainer {path}: neither a container nor a TTL node")
            if not txn.time_ms - f[_MTIME] > ttl:
                raise BadArgumentsError(f"deleteContainer {path}: the TTL of {ttl} ms has not expired")
        self._detach(chain, path, zxid, events, undo)

    def _set_acl(self, op: SetACLOp, txn: Txn, zxid: int, ids: _Ids, events: _Events, undo: list[_Undo]) -> Stat:
        # PrepRequestProcessor's setACL: fixupACL (InvalidACL), NoNode, ADMIN on the node (NoAuth), then the ACL
        # version (BadVersion). DataTree.setACL changes the ACL and aversion alone, and triggers no watch.
        path = op.path
        acl = self._stored_acl(self._check_acl_op(op), path, ids)  # the arguments' checks, then fixupACL
        chain = self._chain(path)
        if chain is None:
            raise NoNodeError(f"NoNode for {path}")
        node = chain[-1]
        self._require(node, _ADMIN, ids, path, path)
        f = _unpack(node.meta)
        if op.version != -1 and op.version != f[_AVERSION]:
            raise BadVersionError(
                f"BadVersion for {path}: expected ACL version {op.version}, the node is at {f[_AVERSION]}"
            )
        meta = _pack(f[0], f[1], f[2], f[3], f[4], f[5], f[6], _int32_inc(f[_AVERSION]), f[8])
        new = _new_node(node.data, meta, node.children, acl)
        self._replace(chain, path, new, undo)
        self._digest += self._acl_term(path, acl) - self._acl_term(path, node.acl)
        self._acl_nodes += (acl is not None) - (node.acl is not None)
        return _stat(new)

    @staticmethod
    def _acl_term(path: str, acl: tuple[AclEntry, ...] | None) -> int:
        """The digest term of a node's ACL: none for OPEN_ACL, so trees without ACLs keep their digest."""
        return 0 if acl is None else acl_digest(path, acl)

    # -- the primitives: every structural change goes through them, and each one logs what it replaced.

    def _chain(self, path: str) -> list[Node] | None:
        """The nodes from the root to ``path`` (both included), or None if ``path`` does not exist.

        The caller is about to change the tree along this chain: while a snapshot stream is open, every children
        dict on it is first made one that the stream does not read (see :meth:`_thawed`).
        """
        node = self._root
        chain = [node]
        if path != ROOT:
            names = path.split("/")
            for i in range(1, len(names)):
                children = node.children
                if children is None:
                    return None
                child = children.get(names[i])
                if child is None:
                    return None
                node = child
                chain.append(node)
        if self._copying:
            chain[0] = self._thawed(None, ROOT, chain[0])
            if len(chain) > 1:
                names = path.split("/")
                for i in range(1, len(chain)):
                    chain[i] = self._thawed(chain[i - 1].children, names[i], chain[i])
        return chain

    def _thawed(self, holder: dict[str, Node] | None, name: str, node: Node) -> Node:
        """``node`` (held in ``holder[name]``, or the root if ``holder`` is None), made safe to change in place.

        Copy-on-write for snapshot streams: a node's ``data`` and ``meta`` never change in place, but its children
        dict does. While a stream is open, a dict made before the newest stream began may still be walked by one,
        so it is copied before its first change since then: ``node`` is replaced, in its holder (which the caller
        has thawed already), by a node with the same data and stat and a copy of the dict. The replacement changes
        nothing a reader can see (the digest stays), so it needs no undo record: a rolled back transaction leaves
        the copy in place, holding what the original held.
        """
        children = node.children
        if children is None or id(children) in self._fresh:
            return node
        # An id in _fresh is that of a dict made after the newest stream began; such a dict is never reachable from
        # what a stream reads, so even if it dies and its id is reused, the reuse is by a dict made later still.
        copy = dict(children)
        self._fresh.add(id(copy))
        new = _rebuilt(node, node.data, node.meta, copy)
        if holder is None:
            self._root = new
        else:
            holder[name] = new
        return new

    def _store(
        self, holder: dict[str, Node] | None, name: str, path: str, node: Node | None, undo: list[_Undo]
    ) -> None:
        """Put ``node`` in slot ``holder[name]`` (None removes it; holder None is the root), logging the old one."""
        if holder is None:
            undo.append((None, name, path, self._root))
            self._root = node  # type: ignore[assignment]
            return
        undo.append((holder, name, path, holder.get(name)))
        if node is None:
            del holder[name]
        else:
            holder[name] = node

    def _replace(self, chain: list[Node], path: str, new: Node, undo: list[_Undo]) -> None:
        """Replace the last node of ``chain`` (at ``path``) by ``new``, in the tree, the chain and the digest."""
        old = chain[-1]
        holder = chain[-2].children if len(chain) > 1 else None
        self._store(holder, path.rpartition("/")[2], path, new, undo)
        chain[-1] = new
        seed = path_seed(path)
        self._digest += node_digest_seeded(seed, new.meta, new.data) - node_digest_seeded(seed, old.meta, old.data)

    def _attach(
        self,
        chain: list[Node],
        parent_path: str,
        parent_fields: tuple[int, ...],
        name: str,
        path: str,
        child: Node,
        zxid: int,
        undo: list[_Undo],
    ) -> None:
        """Add ``child`` under the last node of ``chain``, which gets cversion + 1 and pzxid = zxid."""
        parent = chain[-1]
        f = parent_fields
        children = parent.children
        if children is None:
            children = {}
            if self._copying:
                self._fresh.add(id(children))
        meta = _pack(f[0], f[1], zxid, f[3], f[4], f[5], _int32_inc(f[_CVERSION]), f[7], f[8])
        if parent.acl is None:  # the common case without a call
            self._replace(chain, parent_path, Node(parent.data, meta, children), undo)
        else:
            self._replace(chain, parent_path, _rebuilt(parent, parent.data, meta, children), undo)
        self._store(children, name, path, child, undo)
        self._count += 1
        self._digest += node_digest(path, child.meta, child.data)
        if child.acl is not None:
            self._digest += acl_digest(path, child.acl)
            self._acl_nodes += 1
        self._index_add(path, child)

    def _detach(self, chain: list[Node], path: str, zxid: int, events: _Events, undo: list[_Undo]) -> None:
        """Remove the last node of ``chain`` (a leaf); its parent gets pzxid = zxid.

        ZooKeeper's DataTree.deleteNode and PrepRequestProcessor touch only the parent's pzxid on a delete: the
        cversion kept counts creations alone, which is why sequential numbers never repeat. The deletion shows in
        the parent's Stat all the same, whose cversion is derived from that count and the children left (_stat).
        """
        node = chain.pop()
        parent = chain[-1]
        parent_path, name = split_path(path)
        children = parent.children
        assert children is not None
        self._store(children, name, path, None, undo)
        self._count -= 1
        self._digest -= node_digest(path, node.meta, node.data)
        if node.acl is not None:
            self._digest -= acl_digest(path, node.acl)
            self._acl_nodes -= 1
        self._index_remove(path, node)
        f = _unpack(parent.meta)
        meta = _pack(f[0], f[1], zxid, f[3], f[4], f[5], f[6], f[7], f[8])
        if parent.acl is None:  # the common case without a call
            self._replace(chain, parent_path, Node(parent.data, meta, children or None), undo)
        else:
            self._replace(chain, parent_path, _rebuilt(parent, parent.data, meta, children or None), undo)
        events.append(_new_event(_DELETED, path))
        events.append(_new_event(_CHILD, parent_path))

    def _index_add(self, path: str, node: Node) -> None:
        owner = _OWNER.unpack_from(node.meta, _OWNER_OFFSET)[0]
        if owner > 0:
            self._ephemerals.setdefault(owner, set()).add(path)
        elif owner == CONTAINER_OWNER:
            self._containers.add(path)
        elif owner < 0:
            self._ttls.add(path)

    def _index_remove(self, path: str, node: Node) -> None:
        owner = _OWNER.unpack_from(node.meta, _OWNER_OFFSET)[0]
        if owner > 0:
            paths = self._ephemerals.get(owner)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._ephemerals[owner]
        elif owner == CONTAINER_OWNER:
            self._containers.discard(path)
        elif owner < 0:
            self._ttls.discard(path)

    def _rollback(self, undo: list[_Undo], saved: _Counters) -> None:
        """Undo the slot changes of a failed transaction, newest first, and restore the counters."""
        for holder, name, path, previous in reversed(undo):
            if holder is None:
                self._root = previous  # type: ignore[assignment]
                continue
            current = holder.get(name)
            if previous is None:
                del holder[name]
                if current is not None:
                    self._index_remove(path, current)
            else:
                holder[name] = previous
                if current is None:
                    self._index_add(path, previous)
        undo.clear()
        self._digest, self._count, self._acl_nodes = saved

    # -----------------------------------------------------------------------------------------------------------
    # snapshots

    def snapshot_chunks(self, max_chunk_bytes: int = 1 << 20) -> SnapshotStream:
        """The whole state as a stream of CBOR chunks of at most ``max_chunk_bytes`` each.

        Nodes come in pre-order, after the sessions, between a header (format version, last_zxid,
        max_data_bytes) and a trailer (counts and digest). A node whose record alone exceeds the bound gets a
        chunk of its own.

        The stream is the state at the moment of this call, read lazily: transactions may be applied while it is
        consumed (copy-on-write: a node is never changed in place, and a children dict that an open stream may
        still walk is copied before its first change). A stream costs O(1) to open; each dict changed while it
        is open is copied once. Exhaust it or :meth:`SnapshotStream.close` it to end the copying (a stream dropped
        unread ends it at the tree's next change); the stream and the tree must be used from one thread at a time
        (the one applying transactions), though the stream may be dropped on any.
        """
        sessions = [(sid, owner, timeout) for sid, (owner, timeout) in sorted(self._sessions.items())]
        chunks = _snapshot.write_snapshot(
            _snapshot.SnapshotHeader(_snapshot.FORMAT_VERSION, self._last_zxid, self._max_data_bytes),
            sessions,
            _node_records(self._root),
            _snapshot.SnapshotTrailer(self._count, len(sessions), self._digest, self._last_zxid),
            max_chunk_bytes,
        )
        return SnapshotStream(self, chunks)

    @property
    def _streams(self) -> int:
        """How many snapshot streams may still be read: open, and not garbage-collected."""
        return sum(1 for ref in self._stream_refs if (stream := ref()) is not None and stream.open)

    def _stream_opened(self, stream: SnapshotStream) -> None:
        self._stream_refs.append(weakref.ref(stream))
        self._copying = True
        # Every dict reachable now is one the new stream may walk: none is fresh any more.
        self._fresh = set()

    def _forget_dropped_streams(self) -> None:
        # A stream dropped without close() is noticed here, on the thread that applies transactions, never by the
        # thread that happens to collect it: a weak reference that died, or a stream closed since, stops counting.
        self._stream_refs = refs = [ref for ref in self._stream_refs if (s := ref()) is not None and s.open]
        if not refs:
            self._copying = False
            self._fresh = set()

    @classmethod
    def restore(cls, chunks: Iterable[bytes], *, max_data_bytes: int = 1 << 20) -> DataTree:
        """Rebuild a tree from :meth:`snapshot_chunks`; it has the same digest as the tree that was saved.

        The restored tree refuses values larger than ``max_data_bytes`` from now on, as a new tree would. Raises
        DecodeError for bytes that are not a snapshot (garbled, truncated, out of order) and
        DataInconsistencyError for a well-formed snapshot that contradicts itself (a node without its parent,
        an ephemeral without its session, a digest that does not match); nothing else.
        """
        restorer = TreeRestorer(chunks, max_data_bytes=max_data_bytes)
        while not restorer.step(1 << 62):
            pass
        return restorer.tree


class TreeRestorer:
    """A tree rebuilt from :meth:`DataTree.snapshot_chunks` a few chunks at a time, so that a loop that has other
    work (heartbeats, requests) can rebuild a large tree between it: :meth:`step` until it returns True, then take
    :attr:`tree`. What :meth:`DataTree.restore` checks and raises, :meth:`step` checks and raises."""

    __slots__ = ("_done", "_loader", "_records", "tree")

    def __init__(self, chunks: Iterable[bytes], *, max_data_bytes: int = 1 << 20) -> None:
        #: The tree being built: complete (and to be used) only once :meth:`step` returned True.
        self.tree = DataTree(max_data_bytes=max_data_bytes)
        self._loader = _Loader(self.tree)
        self._records = _snapshot.read_snapshot(chunks)
        self._done = False

    @property
    def done(self) -> bool:
        """Whether the tree is complete."""
        return self._done

    def step(self, chunks: int) -> bool:
        """Load up to ``chunks`` more chunks (one snapshot record each); True once the tree is complete."""
        if self._done:
            return True
        try:
            for _ in range(chunks):
                record = next(self._records, None)
                if record is None:
                    self._loader.finish()
                    self._done = True
                    return True
                self._loader.load(record)
        except (DecodeError, DataInconsistencyError):
            raise
        except Exception as exc:  # noqa: BLE001 - the loader checks before it trusts; this is the last guard
            raise DecodeError(f"snapshot rejected: {type(exc).__name__}: {exc}") from None
        return False


def _node_records(root: Node) -> Iterator[_snapshot.NodeRecord]:
    """Every node under (and including) ``root`` as (path, data, czxid, mzxid, pzxid, ctime, mtime, version,
    cversion, aversion, owner), followed by its ACL if it has one of its own, in pre-order; it walks only dicts
    that copy-on-write keeps unchanged."""
    if root.acl is None:
        yield (ROOT, root.data, *_unpack(root.meta))
    else:
        yield (ROOT, root.data, *_unpack(root.meta), root.acl)
    stack: list[tuple[str, Iterator[tuple[str, Node]]]] = []
    if root.children:
        stack.append(("", iter(root.children.items())))
    unpack = _unpack
    while stack:
        prefix, items = stack[-1]
        for name, node in items:
            path = prefix + "/" + name
            if node.acl is None:
                yield (path, node.data, *unpack(node.meta))
            else:
                yield (path, node.data, *unpack(node.meta), node.acl)
            if node.children:
                stack.append((path, iter(node.children.items())))
                break
        else:
            stack.pop()


class SnapshotStream:
    """The chunks of a snapshot of a :class:`DataTree` as it was when :meth:`DataTree.snapshot_chunks` was called.

    An iterator; while it is open the tree copies a children dict before changing it (see
    :meth:`DataTree._thawed`). It closes itself once exhausted, or on :meth:`close`. A stream dropped without
    either stops the copying too: the tree holds it weakly and notices, at its next change, that it is gone (the
    collector touches nothing of the tree, whatever thread it runs on).
    """

    __slots__ = ("__weakref__", "_chunks", "_tree")

    def __init__(self, tree: DataTree, chunks: Iterator[bytes]) -> None:
        self._tree: DataTree | None = tree
        self._chunks = chunks
        tree._stream_opened(self)

    def __iter__(self) -> SnapshotStream:
        return self

    def __next__(self) -> bytes:
        if self._tree is None:
            raise StopIteration
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    @property
    def open(self) -> bool:
        """True until the stream is exhausted or closed."""
        return self._tree is not None

    def close(self) -> None:
        """Stop reading: the tree stops copying for this stream. Idempotent; call it on the thread that applies
        transactions to the tree."""
        tree, self._tree = self._tree, None
        if tree is not None:
            self._chunks = iter(())
            tree._forget_dropped_streams()


class _Loader:
    """Builds a tree from snapshot records, checking that they describe a tree ZooKeeper could have produced."""

    def __init__(self, tree: DataTree) -> None:
        self.tree = tree
        self.header: _snapshot.SnapshotHeader | None = None
        self.saw_root = False
        self.trailer: _snapshot.SnapshotTrailer | None = None
        # The path of the last node loaded and of its ancestors ("" for the root), and those nodes.
        self.stack_paths: list[str] = []
        self.stack_nodes: list[Node] = []
        # The last node loaded, if it may have children (it joins the stack when a child of it comes).
        self.prev_path: str | None = None
        self.prev_node: Node | None = None
        # The restoring tree's own root counts again once the snapshot's root record replaces it.
        tree._count = 0
        tree._digest = 0

    def load(self, record: _snapshot.SnapshotItem) -> None:
        if isinstance(record, _snapshot.SnapshotHeader):
            self.header = record
            if record.max_data_bytes < 0:
                raise DataInconsistencyError(f"snapshot: max_data_bytes {record.max_data_bytes} is negative")
            if record.last_zxid < 0:
                raise DataInconsistencyError(f"snapshot: last_zxid {record.last_zxid} is negative")
            self.tree._last_zxid = record.last_zxid
        elif isinstance(record, _snapshot.SessionBatch):
            for session in record.records:
                self._session(session)
        elif isinstance(record, _snapshot.NodeBatch):
            self._nodes(record)
        else:
            self.trailer = record

    def _session(self, record: _snapshot.SessionRecord) -> None:
        sid, owner, timeout = record
        tree = self.tree
        try:
            tree._check_create_session(CreateSessionOp(sid, timeout, owner))
        except BadArgumentsError as err:
            raise DataInconsistencyError(f"snapshot: {err}") from None
        if sid in tree._sessions:
            raise DataInconsistencyError(f"snapshot: session {sid:#x} appears twice")
        tree._sessions[sid] = (owner, timeout)
        tree._digest += session_digest(sid, owner, timeout)

    def _nodes(self, batch: _snapshot.NodeBatch) -> None:
        """Load a batch of node records: the common case inline, anything unusual through :meth:`_node`.

        The common case is a persistent node whose parent is the previous node or one of its ancestors (which
        pre-order makes the rule): its parent is found on a stack of the previous node's ancestors instead of by
        a walk from the root, and as the parent's path is valid, only the new name needs checking. Every check
        :meth:`_node` makes is made here too, or holds by construction. (A million nodes load in seconds: this
        loop is most of a peer's restart.)
        """
        header = self.header
        assert header is not None  # read_snapshot yields the header first
        tree = self.tree
        last_zxid = header.last_zxid
        max_bytes = header.max_data_bytes
        stack_paths = self.stack_paths
        stack_nodes = self.stack_nodes
        bad_char = _BAD_CHAR.search
        odd_names = _ODD_NAMES
        crc32 = _crc32
        new_node = Node
        digest = 0
        count = 0
        # The previous node, if it may have children: pushed on the stack only once it turns out to have some.
        prev_path, prev_node = self.prev_path, self.prev_node
        for record, meta in zip(batch.records, batch.metas):
            if len(record) != _PLAIN_RECORD:  # a node with an ACL: rare, and _node checks it
                self.prev_path, self.prev_node = prev_path, prev_node
                self._node(record, meta)
                prev_path, prev_node = self.prev_path, self.prev_node
                continue
            path, data, czxid, mzxid, pzxid, _ctime, _mtime, _version, _cversion, _aversion, owner = record
            parent_path, slash, name = path.rpartition("/")
            if (
                owner
                or not slash
                or not (0 <= czxid <= last_zxid and 0 <= mzxid <= last_zxid and 0 <= pzxid <= last_zxid)
                or len(data) > max_bytes
                or name in odd_names
                or bad_char(name) is not None
            ):
                parent = None
            elif prev_node is not None and parent_path == prev_path:
                stack_paths.append(parent_path)
                stack_nodes.append(prev_node)
                parent = prev_node
            else:
                while stack_paths and stack_paths[-1] != parent_path:
                    stack_paths.pop()
                    stack_nodes.pop()
                parent = stack_nodes[-1] if stack_nodes else None
            if parent is None:
                self.prev_path, self.prev_node = prev_path, prev_node
                self._node(record, meta)
                prev_path, prev_node = self.prev_path, self.prev_node
                continue
            node = new_node(data, meta, None)
            children = parent.children
            if children is None:
                children = parent.children = {}
            if children.setdefault(name, node) is not node:
                raise DataInconsistencyError(f"snapshot: {path} appears twice")
            prev_path, prev_node = path, node
            count += 1
            digest += crc32(data, crc32(meta, crc32(path.encode("utf-8"))))
        self.prev_path, self.prev_node = prev_path, prev_node
        tree._digest += digest
        tree._count += count

    def _node(self, record: _snapshot.NodeRecord, meta: bytes) -> None:
        path, data = record[0], record[1]
        fields = record[2:_PLAIN_RECORD]
        tree = self.tree
        assert self.header is not None  # read_snapshot yields the header first
        try:
            validate_path(path)
        except BadArgumentsError as err:
            raise DataInconsistencyError(f"snapshot: {err}") from None
        if len(data) > self.header.max_data_bytes:
            raise DataInconsistencyError(
                f"snapshot: {path} holds {len(data)} bytes, more than the limit of {self.header.max_data_bytes}"
            )
        last = self.header.last_zxid
        for name, index in (("czxid", _CZXID), ("mzxid", _MZXID), ("pzxid", _PZXID)):
            if not 0 <= fields[index] <= last:
                raise DataInconsistencyError(f"snapshot: {path} has {name} {fields[index]} beyond last_zxid {last}")
        owner = fields[_EPHEMERAL_OWNER]
        if owner > 0 and owner not in tree._sessions:
            raise DataInconsistencyError(f"snapshot: ephemeral {path} belongs to session {owner:#x}, not open")
        if owner < 0 and owner != CONTAINER_OWNER and not ttl_of(owner):
            raise DataInconsistencyError(f"snapshot: {path} has an invalid ephemeral owner {owner:#x}")
        acl = self._acl(path, record[_PLAIN_RECORD]) if len(record) > _PLAIN_RECORD else None
        node = _new_node(data, meta, None, acl)
        if path == ROOT:
            if self.saw_root:
                raise DataInconsistencyError("snapshot: the root appears twice")
            if owner != 0:
                raise DataInconsistencyError("snapshot: the root must be a persistent node")
            self.saw_root = True
            tree._root = node
            self.stack_paths.clear()
            self.stack_nodes.clear()
            self.prev_path, self.prev_node = "", node
        else:
            if not self.saw_root:
                raise DataInconsistencyError(f"snapshot: {path} comes before the root")
            parent_path, name = split_path(path)
            parent = tree._find(parent_path)
            if parent is None:
                raise DataInconsistencyError(f"snapshot: {path} comes before its parent {parent_path}")
            if _OWNER.unpack_from(parent.meta, _OWNER_OFFSET)[0] > 0:
                raise DataInconsistencyError(f"snapshot: {path} is a child of the ephemeral {parent_path}")
            if parent.children is None:
                parent.children = {}
            elif name in parent.children:
                raise DataInconsistencyError(f"snapshot: {path} appears twice")
            parent.children[name] = node
            tree._index_add(path, node)
            self._follow(parent_path, parent, path, node if owner <= 0 else None)
        tree._count += 1
        tree._digest += node_digest(path, node.meta, data)
        if acl is not None:
            tree._digest += acl_digest(path, acl)
            tree._acl_nodes += 1

    def _acl(self, path: str, acl: tuple[AclEntry, ...]) -> tuple[AclEntry, ...]:
        """The ACL a snapshot gives ``path``, interned, once it is one the tree could hold: valid, in normal form,
        with no ``auth`` entry, not OPEN_ACL (which is never written)."""
        try:
            valid = validate_acl(acl, path)
        except InvalidACLError as err:
            raise DataInconsistencyError(f"snapshot: {path} has an invalid ACL: {err}") from None
        if valid != acl:
            raise DataInconsistencyError(f"snapshot: the ACL of {path} has duplicate entries")
        if any(scheme == "auth" for _, scheme, _ in acl):
            raise DataInconsistencyError(f"snapshot: the ACL of {path} has an auth entry, which is never stored")
        if acl == OPEN_ACL:
            raise DataInconsistencyError(f"snapshot: {path} has OPEN_ACL written out, which is never stored")
        stored = self.tree._stored_acl(acl, path, ())
        assert stored is not None  # not OPEN_ACL, checked above
        return stored

    def _follow(self, parent_path: str, parent: Node, path: str, node: Node | None) -> None:
        """Where :meth:`_nodes` looks for the next record's parent: ``node`` (at ``path``; None for an ephemeral,
        which has no children), then its ancestors. The parent was found by a walk from the root, so the stack of
        ancestors restarts from it if the previous node's does not lead there."""
        stack_paths, stack_nodes = self.stack_paths, self.stack_nodes
        parent_key = parent_path if parent_path != ROOT else ""
        if self.prev_node is not None and self.prev_path == parent_key:
            stack_paths.append(parent_key)
            stack_nodes.append(self.prev_node)
        while stack_paths and stack_paths[-1] != parent_key:
            stack_paths.pop()
            stack_nodes.pop()
        if not stack_paths:
            stack_paths.append(parent_key)
            stack_nodes.append(parent)
        self.prev_path, self.prev_node = (path, node) if node is not None else (None, None)

    def finish(self) -> None:
        trailer = self.trailer
        tree = self.tree
        assert trailer is not None  # read_snapshot ends with the trailer or raises
        if not self.saw_root:
            raise DataInconsistencyError("snapshot: the root is missing")
        if trailer.last_zxid != -1 and trailer.last_zxid != tree._last_zxid:
            raise DataInconsistencyError(
                f"snapshot: the header says last_zxid {tree._last_zxid}, the trailer {trailer.last_zxid}"
            )
        if trailer.node_count != tree._count:
            raise DataInconsistencyError(f"snapshot: {tree._count} nodes read, the trailer says {trailer.node_count}")
        if trailer.session_count != len(tree._sessions):
            raise DataInconsistencyError(
                f"snapshot: {len(tree._sessions)} sessions read, the trailer says {trailer.session_count}"
            )
        if trailer.digest != tree._digest:
            raise DataInconsistencyError(
                f"snapshot: the digest of what was read is {tree._digest:#x}, the trailer says {trailer.digest:#x}"
            )


_SUB_OPS = frozenset({CreateOp, DeleteOp, SetDataOp, CheckOp, WithACL})
#: The length of the record of a node without an ACL; a node with one has its ACL as one more field.
_PLAIN_RECORD = 11
#: Names that no znode may have (PathUtils: an empty, "." or ".." segment).
_ODD_NAMES = frozenset({"", ".", ".."})

_CHECKERS: dict[type, Callable[[DataTree, Any], None]] = {
    CreateOp: DataTree._check_create,
    DeleteOp: DataTree._check_delete,
    SetDataOp: DataTree._check_set,
    CheckOp: DataTree._check_check,
    CreateSessionOp: lambda tree, op: DataTree._check_create_session(op),
    CloseSessionOp: lambda tree, op: DataTree._check_close_session(op),
    DeleteContainerOp: DataTree._check_delete_container,
}
