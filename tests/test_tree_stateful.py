"""The DataTree against a plain reference model, driven by hypothesis through every operation.

The model below is written for obviousness, not speed: a dict from path to node fields, children found by scanning,
a multi made atomic by deep-copying the whole state. It shares no code with the tree. Each step applies the same
transaction to both and compares the error, the value and the events; after each step the invariants compare the
whole contents, the sessions, the ephemerals, the reap candidates, and the digest against a recomputation from
scratch. Snapshots are taken and restored along the way, and the run then continues on the restored tree.

ACLs: nodes are created with ACLs from a small pool (some invalid, some with ``auth`` entries), ACLs are replaced
with right and wrong versions, and operations are asked on behalf of random identities; the model decides every
check with its own table of which identity matches which entry, in ZooKeeper's order of checks.
"""

from __future__ import annotations

import copy
import itertools
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from embedzk.errors import (
    BadArgumentsError,
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistencyError,
    SessionExpiredError,
)
from embedzk.model import EventType, Stat
from embedzk.tree import (
    Authorized,
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteContainerOp,
    DeleteOp,
    MultiOp,
    SetACLOp,
    SetDataOp,
    Txn,
    WithACL,
)

MAX_DATA = 8
MAX_TTL = 0xFFFFFFFFFF
CONTAINER = -(1 << 63)
SESSION_IDS = [1, 2, 3]
NAMES = ["a", "b", "c"]
POOL = ["/"] + ["/" + "/".join(p) for n in (1, 2, 3) for p in itertools.product(NAMES, repeat=n)]
SHALLOW = [p for p in POOL if p.count("/") <= 2]
INVALID = ["/a/", "//a", "/a/./b", "a", ""]

# -- ACLs: a pool of identities and ACLs, and the model's own table of which identity an entry matches.
ALICE = "alice:" + "A" * 27 + "="
BOB = "bob:" + "B" * 27 + "="
SUPER = ("super", "")
OPEN = ((31, "world", "anyone"),)
R, W, C, D, A = 1, 2, 4, 8, 16
#: The ip entries of the pool, and the ip identities each one admits.
IP_MATCHES = {
    "10.0.0.0/8": {"10.1.2.3", "10.9.9.9", "::ffff:10.9.9.9"},
    "10.1.2.3": {"10.1.2.3"},
    "fd00::/8": {"fd00::1"},
}
VALID_DIGESTS = {ALICE, BOB}
IDENTITIES = [
    (),
    (("digest", ALICE),),
    (("digest", BOB),),
    (("ip", "10.1.2.3"),),
    (("ip", "192.168.0.1"),),
    (("ip", "fd00::1"),),
    (("ip", "::ffff:10.9.9.9"),),
    (("digest", ALICE), ("ip", "10.9.9.9")),
    (("digest", BOB), ("digest", ALICE)),
    (SUPER,),
]
ACLS: list[Any] = [
    OPEN,
    ((R, "world", "anyone"),),
    ((R | W | C | D, "world", "anyone"),),
    ((31, "digest", ALICE),),
    ((31, "digest", ALICE), (R, "world", "anyone")),
    ((31, "digest", BOB), (31, "digest", BOB)),  # a duplicate, collapsed
    ((31, "ip", "10.0.0.0/8"),),
    ((C | D, "ip", "10.1.2.3"), (R | W, "world", "anyone")),
    ((31, "ip", "fd00::/8"), (A, "digest", BOB)),
    ((31, "auth", ""),),
    ((R | A, "auth", ""), (C, "world", "anyone")),
    ((31, "digest", ALICE), (31, "auth", "")),  # alice twice once expanded for her: collapsed
    # invalid
    (),
    ((0, "world", "anyone"),),
    ((32, "world", "anyone"),),
    ((31, "world", "someone"),),
    ((31, "sasl", "x"),),
    ((31, "digest", "alice:short"),),
    ((31, "ip", "10.0.0.0/33"),),
]


def acl_valid(acl: Any) -> bool:
    known = {"world": {"anyone"}, "digest": VALID_DIGESTS, "ip": set(IP_MATCHES)}
    return bool(acl) and all(
        1 <= perms <= 31 and (scheme == "auth" or ident in known.get(scheme, ())) for perms, scheme, ident in acl
    )


def acl_fixed(acl: Any, ids: tuple[tuple[str, str], ...]) -> tuple[Any, ...]:
    """What a node asked to have ``acl`` gets: ZooKeeper's fixupACL, as plainly as it can be written."""
    if not acl_valid(acl):
        raise Fail(InvalidACLError)
    out: list[Any] = []
    for perms, scheme, ident in acl:
        if scheme != "auth":
            entries = [(perms, scheme, ident)]
        else:
            entries = [(perms, "digest", i) for s, i in ids if s == "digest"]
            if not entries:
                raise Fail(InvalidACLError)
        for entry in entries:
            if entry not in out:
                out.append(entry)
    return tuple(out)


def may(acl: tuple[Any, ...], perm: int, ids: tuple[tuple[str, str], ...]) -> bool:
    if SUPER in ids:
        return True
    for perms, scheme, ident in acl:
        if perms & perm and (
            scheme == "world"
            or (scheme == "digest" and ("digest", ident) in ids)
            or (scheme == "ip" and any(s == "ip" and i in IP_MATCHES[ident] for s, i in ids))
        ):
            return True
    return False


class Fail(Exception):
    """The model's way of saying an operation fails with ``kind``."""

    def __init__(self, kind: type[Exception]) -> None:
        super().__init__(kind.__name__)
        self.kind = kind


@dataclass
class MNode:
    data: bytes
    czxid: int
    mzxid: int
    pzxid: int
    ctime: int
    mtime: int
    version: int = 0
    creations: int = 0  # children ever created: the sequential suffix, and a container's "had children"
    deletions: int = 0  # children ever deleted: with creations, what Stat.cversion counts (ZooKeeper 3.8)
    owner: int = 0
    acl: tuple[Any, ...] = OPEN
    aversion: int = 0


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def valid(path: str) -> bool:
    if not path.startswith("/"):
        return False
    if path == "/":
        return True
    return not path.endswith("/") and all(s not in ("", ".", "..") for s in path.split("/")[1:])


def ttl_of(owner: int) -> int | None:
    if owner < 0 and owner != CONTAINER:
        return (owner + (1 << 64)) & MAX_TTL
    return None


class Model:
    """ZooKeeper's tree, as plainly as it can be written."""

    def __init__(self) -> None:
        self.nodes: dict[str, MNode] = {"/": MNode(b"", 0, 0, 0, 0, 0)}
        self.sessions: dict[int, tuple[str, int]] = {}

    def kids(self, path: str) -> list[str]:
        return sorted(p.rsplit("/", 1)[1] for p in self.nodes if p != "/" and parent(p) == path)

    def stat(self, path: str) -> Stat:
        n = self.nodes[path]
        return Stat(
            n.czxid, n.mzxid, n.ctime, n.mtime, n.version, n.creations + n.deletions, n.aversion, n.owner,
            len(n.data), len(self.kids(path)), n.pzxid,
        )  # fmt: skip

    def ephemerals(self, sid: int) -> list[str]:
        return sorted(p for p, n in self.nodes.items() if n.owner == sid)

    def reap(self, now: int) -> list[str]:
        out = []
        for path, n in self.nodes.items():
            if self.kids(path):
                continue
            ttl = ttl_of(n.owner)
            if (n.owner == CONTAINER and n.creations > 0) or (ttl is not None and now - n.mtime > ttl):
                out.append(path)
        return sorted(out)

    # -- applying

    def apply(self, txn: Txn, zxid: int) -> tuple[Any, type[Exception] | None, list[tuple[EventType, str]]]:
        saved = copy.deepcopy((self.nodes, self.sessions))
        events: list[tuple[EventType, str]] = []
        op: Any = txn.op
        ids: tuple[tuple[str, str], ...] = ()
        if isinstance(op, Authorized):
            if (
                type(op.ids) is not tuple
                or any(type(p) is not tuple or len(p) != 2 or {type(p[0]), type(p[1])} != {str} for p in op.ids)
                or isinstance(op.op, (Authorized, CreateSessionOp, CloseSessionOp))
            ):
                return None, BadArgumentsError, []
            ids, op = op.ids, op.op
        if isinstance(op, MultiOp):
            results: list[Any] = []
            for i, sub in enumerate(op.ops):
                try:
                    if not isinstance(sub, (CreateOp, DeleteOp, SetDataOp, CheckOp, WithACL)):
                        raise Fail(BadArgumentsError)
                    value = self.run(sub, txn, zxid, events, ids)
                except Fail as f:
                    self.nodes, self.sessions = saved
                    failed = [RolledBackError] * i + [f.kind] + [RuntimeInconsistencyError] * (len(op.ops) - i - 1)
                    return failed, f.kind, []
                results.append(True if value is None else value)
            return results, None, events
        try:
            value = self.run(op, txn, zxid, events, ids)
        except Fail as f:
            self.nodes, self.sessions = saved
            return None, f.kind, []
        return value, None, events

    def run(
        self, op: Any, txn: Txn, zxid: int, events: list[tuple[EventType, str]], ids: tuple[tuple[str, str], ...]
    ) -> Any:
        t = txn.time_ms
        if isinstance(op, CreateOp):
            return self.create(op, None, ids, txn.session_id, t, zxid, events)
        if isinstance(op, WithACL):
            return self.create(op.op, op.acl, ids, txn.session_id, t, zxid, events)
        if isinstance(op, SetACLOp):
            if not valid(op.path):
                raise Fail(BadArgumentsError)
            acl = acl_fixed(op.acl, ids)
            n = self.existing(op.path)
            self.require(op.path, A, ids)
            if op.version not in (-1, n.aversion):
                raise Fail(BadVersionError)
            n.acl, n.aversion = acl, n.aversion + 1
            return self.stat(op.path)
        if isinstance(op, DeleteOp):
            if not valid(op.path) or op.path == "/":
                raise Fail(BadArgumentsError)
            self.existing(parent(op.path))
            self.require(parent(op.path), D, ids)
            n = self.existing(op.path)
            if op.version not in (-1, n.version):
                raise Fail(BadVersionError)
            if self.kids(op.path):
                raise Fail(NotEmptyError)
            self.remove(op.path, zxid, events)
            return None
        if isinstance(op, SetDataOp):
            if not valid(op.path) or len(op.data) > MAX_DATA:
                raise Fail(BadArgumentsError)
            n = self.existing(op.path)
            self.require(op.path, W, ids)
            if op.version not in (-1, n.version):
                raise Fail(BadVersionError)
            n.data, n.version, n.mzxid, n.mtime = op.data, n.version + 1, zxid, t
            events.append((EventType.CHANGED, op.path))
            return self.stat(op.path)
        if isinstance(op, CheckOp):
            if not valid(op.path):
                raise Fail(BadArgumentsError)
            n = self.existing(op.path)
            self.require(op.path, R, ids)
            if op.version not in (-1, n.version):
                raise Fail(BadVersionError)
            return None
        if isinstance(op, CreateSessionOp):
            if not (1 <= op.session_id < 1 << 56 and 1 <= op.timeout_ms < 1 << 31) or op.session_id in self.sessions:
                raise Fail(BadArgumentsError)
            self.sessions[op.session_id] = (op.owner, op.timeout_ms)
            return None
        if isinstance(op, CloseSessionOp):
            if op.session_id not in self.sessions:
                raise Fail(SessionExpiredError)
            for path in self.ephemerals(op.session_id):
                self.remove(path, zxid, events)
            del self.sessions[op.session_id]
            return None
        if isinstance(op, DeleteContainerOp):
            if not valid(op.path) or op.path == "/":
                raise Fail(BadArgumentsError)
            n = self.existing(op.path)
            if self.kids(op.path):
                raise Fail(NotEmptyError)
            ttl = ttl_of(n.owner)
            if n.owner == CONTAINER:
                if n.creations == 0:
                    raise Fail(BadArgumentsError)
            elif ttl is None or not t - n.mtime > ttl:
                raise Fail(BadArgumentsError)
            self.remove(op.path, zxid, events)
            return None
        raise Fail(BadArgumentsError)  # a nested multi or anything else

    def existing(self, path: str) -> MNode:
        if path not in self.nodes:
            raise Fail(NoNodeError)
        return self.nodes[path]

    def require(self, path: str, perm: int, ids: tuple[tuple[str, str], ...]) -> None:
        if not may(self.nodes[path].acl, perm, ids):
            raise Fail(NoAuthError)

    def create(
        self,
        op: CreateOp,
        asked_acl: Any,
        ids: tuple[tuple[str, str], ...],
        session: int,
        t: int,
        zxid: int,
        events: list[tuple[EventType, str]],
    ) -> str:
        if op.ttl is not None and (op.ephemeral or op.container or not 1 <= op.ttl <= MAX_TTL):
            raise Fail(BadArgumentsError)
        if op.container and (op.ephemeral or op.sequential):
            raise Fail(BadArgumentsError)
        if not valid(op.path + ("1" if op.sequential else "")) or len(op.data) > MAX_DATA:
            raise Fail(BadArgumentsError)
        owner = 0
        if op.ephemeral:
            if session not in self.sessions:
                raise Fail(SessionExpiredError)
            owner = session
        elif op.container:
            owner = CONTAINER
        elif op.ttl is not None:
            owner = (0xFF00000000000000 | op.ttl) - (1 << 64)
        acl = OPEN if asked_acl is None else acl_fixed(asked_acl, ids)
        if op.path == "/" and not op.sequential:
            raise Fail(NodeExistsError)
        par = parent(op.path)
        if par not in self.nodes:
            if not op.makepath:
                raise Fail(NoNodeError)
            names = par.split("/")[1:]
            made: set[str] = set()
            for i in range(1, len(names) + 1):
                ancestor = "/" + "/".join(names[:i])
                if ancestor not in self.nodes:
                    if parent(ancestor) not in made:  # CREATE is checked where a node existed before
                        self.require(parent(ancestor), C, ids)
                    self.add(ancestor, b"", 0, t, zxid, events, acl)
                    made.add(ancestor)
        else:
            self.require(par, C, ids)
        path = op.path
        if op.sequential:
            path += f"{self.nodes[par].creations:010d}"
        if path in self.nodes:
            raise Fail(NodeExistsError)
        self.add(path, op.data, owner, t, zxid, events, acl)
        return path

    def add(
        self,
        path: str,
        data: bytes,
        owner: int,
        t: int,
        zxid: int,
        events: list[tuple[EventType, str]],
        acl: tuple[Any, ...],
    ) -> None:
        p = self.nodes[parent(path)]
        if p.owner > 0:
            raise Fail(NoChildrenForEphemeralsError)
        self.nodes[path] = MNode(data, zxid, zxid, zxid, t, t, owner=owner, acl=acl)
        p.creations += 1
        p.pzxid = zxid
        events += [(EventType.CREATED, path), (EventType.CHILD, parent(path))]

    def remove(self, path: str, zxid: int, events: list[tuple[EventType, str]]) -> None:
        del self.nodes[path]
        p = self.nodes[parent(path)]
        p.deletions += 1
        p.pzxid = zxid
        events += [(EventType.DELETED, path), (EventType.CHILD, parent(path))]


# ---------------------------------------------------------------------------------------------------------------


def dump(tree: DataTree) -> dict[str, tuple[bytes, Stat]]:
    out = {}
    todo = ["/"]
    while todo:
        path = todo.pop()
        out[path] = tree.get(path)
        todo += [("" if path == "/" else path) + "/" + name for name in tree.get_children(path)]
    return out


def acls(tree: DataTree) -> dict[str, tuple[Any, ...]]:
    return {path: tree.get_acl(path)[0] for path in dump(tree)}


def digest_from_scratch(tree: DataTree) -> int:
    """The digest as documented in embedzk.tree.digest, from what the tree answers to reads."""
    total = 0
    for path, (data, s) in dump(tree).items():
        creations = (s.cversion + s.num_children) // 2  # the digest covers the cversion kept: creations only
        meta = struct.pack(
            "<qqqqqiiiq", s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime, s.version, creations, s.aversion,
            s.ephemeral_owner,
        )  # fmt: skip
        total += zlib.crc32(data, zlib.crc32(meta, zlib.crc32(path.encode())))
        acl = tree.get_acl(path)[0]
        if acl != OPEN:
            crc = zlib.crc32(b"\x00acl\x00", zlib.crc32(path.encode()))
            for perms, scheme, ident in acl:
                crc = zlib.crc32(struct.pack("<iII", perms, len(scheme.encode()), len(ident.encode())), crc)
                crc = zlib.crc32(ident.encode(), zlib.crc32(scheme.encode(), crc))
            total += crc
    for sid, (owner, timeout) in tree.sessions().items():
        total += zlib.crc32(owner.encode(), zlib.crc32(b"\x00session\x00" + struct.pack("<qq", sid, timeout)))
    return total


values = st.sampled_from([b"", b"x", b"abc", b"12345678"] * 2 + [b"123456789"])  # the last one exceeds MAX_DATA
versions = st.sampled_from(["any", "right", "wrong"])
create_modes = st.sampled_from(
    ["persistent"] * 6 + ["ephemeral"] * 3 + ["container", "container", "ttl", "ttl", "ttl+ephemeral", "container+seq"]
)
ttls = st.sampled_from([1, 20, 100] * 2 + [0])
identities = st.sampled_from(IDENTITIES)
acl_choices = st.sampled_from(ACLS)


class TreeMachine(RuleBasedStateMachine):
    """Applies the same transactions to a DataTree and to the model."""

    def __init__(self) -> None:
        super().__init__()
        self.tree = DataTree(max_data_bytes=MAX_DATA)
        self.model = Model()
        self.zxid = 0
        self.now = 10_000

    # -- helpers

    def run(self, op: Any, session: int = 0, ids: Any = None) -> None:
        """Apply ``op`` to both, on behalf of ``ids`` (an Authorized) unless that is None."""
        if ids is not None:
            op = Authorized(ids, op)
        self.zxid += 1
        txn = Txn(session, self.now, op)
        got = self.tree.apply(txn, self.zxid)
        value, error, events = self.model.apply(txn, self.zxid)
        assert type(got.error) is (error or type(None)), (op, got, error)
        if isinstance(value, list):
            assert isinstance(got.value, list) and len(got.value) == len(value), (got.value, value)
            for g, e in zip(got.value, value):
                assert (type(g) is e) if isinstance(e, type) else (g == e), (op, got.value, value)
        else:
            assert got.value == value, (op, got.value, value)
        assert [(e.type, e.path) for e in got.events] == events, (op, got.events, events)

    def pick_path(self, data: st.DataObject, leaf: bool = False) -> str:
        # Mostly paths that exist or could: a run full of invalid paths would test only the argument checks.
        source = data.draw(st.integers(0, 9))
        if leaf and source >= 5:
            source = 5
        if source == 0:
            return data.draw(st.sampled_from(INVALID))
        if source <= 2:
            return data.draw(st.sampled_from(POOL))
        if source <= 4:
            return data.draw(st.sampled_from(SHALLOW))
        leaves = sorted(p for p in self.model.nodes if not self.model.kids(p) and p != "/")
        return data.draw(st.sampled_from((leaves or ["/"]) if source <= 6 else sorted(self.model.nodes)))

    def pick_existing_or_any(self, data: st.DataObject) -> str:
        if data.draw(st.booleans()):
            return data.draw(st.sampled_from(sorted(self.model.nodes)))
        return self.pick_path(data)

    def pick_version(self, data: st.DataObject, path: str) -> int:
        kind = data.draw(versions)
        current = self.model.nodes[path].version if path in self.model.nodes else 0
        return {"any": -1, "right": current, "wrong": current + 1}[kind]

    def make_create(self, data: st.DataObject, path: str) -> CreateOp:
        mode = data.draw(create_modes)
        return CreateOp(
            path,
            data.draw(values),
            ephemeral=mode in ("ephemeral", "ttl+ephemeral"),
            sequential=mode == "container+seq" or (mode != "container" and data.draw(st.booleans())),
            container=mode.startswith("container"),
            ttl=data.draw(ttls) if mode.startswith("ttl") else None,
            makepath=data.draw(st.booleans()),
        )

    def pick_aversion(self, data: st.DataObject, path: str) -> int:
        kind = data.draw(versions)
        current = self.model.nodes[path].aversion if path in self.model.nodes else 0
        return {"any": -1, "right": current, "wrong": current + 1}[kind]

    def make_sub_op(self, data: st.DataObject) -> Any:
        path = self.pick_path(data)
        kind = data.draw(
            st.sampled_from(["create", "create", "create_acl", "delete", "set", "check", "nested", "session"])
        )
        if kind == "create":
            return self.make_create(data, path)
        if kind == "create_acl":
            return WithACL(self.make_create(data, path), data.draw(acl_choices))
        if kind == "delete":
            path = self.pick_path(data, leaf=True)
            return DeleteOp(path, self.pick_version(data, path))
        if kind == "set":
            return SetDataOp(path, data.draw(values), self.pick_version(data, path))
        if kind == "check":
            return CheckOp(path, self.pick_version(data, path))
        if kind == "nested":
            return MultiOp((CreateOp("/nested"),))
        return CreateSessionOp(9, 1000, "in-a-multi")

    # -- rules

    @rule(data=st.data(), session=st.sampled_from([0] + SESSION_IDS * 2))
    def create(self, data: st.DataObject, session: int) -> None:
        self.run(self.make_create(data, self.pick_path(data)), session)

    @rule(data=st.data(), name=st.sampled_from(NAMES), session=st.sampled_from([0] + SESSION_IDS * 2))
    def create_under_an_existing_node(self, data: st.DataObject, name: str, session: int) -> None:
        # Most creates of this rule succeed, so that the tree grows deep and wide enough to be interesting.
        under = data.draw(st.sampled_from(sorted(self.model.nodes)))
        op = self.make_create(data, ("" if under == "/" else under) + "/" + name)
        self.run(op, session)

    @rule(data=st.data(), name=st.sampled_from(NAMES), session=st.sampled_from([0] + SESSION_IDS), ids=identities)
    def create_with_an_acl(self, data: st.DataObject, name: str, session: int, ids: Any) -> None:
        # Mostly under an existing node, so that the ACL lands and the checks below it matter.
        if data.draw(st.booleans()):
            under = data.draw(st.sampled_from(sorted(self.model.nodes)))
            path = ("" if under == "/" else under) + "/" + name
        else:
            path = self.pick_path(data)
        create = self.make_create(data, path)
        if data.draw(st.booleans()):  # makepath often: the ancestors it makes get the ACL and are not checked
            create = CreateOp(path, create.data, makepath=True)
        op = WithACL(create, data.draw(acl_choices))
        self.run(op, session, ids if data.draw(st.booleans()) else None)

    @rule(data=st.data(), ids=identities)
    def deep_create_with_an_acl(self, data: st.DataObject, ids: Any) -> None:
        # Several ancestors made at once: only the existing one is checked, the made ones get the ACL.
        deep = sorted(p for p in POOL if p.count("/") == 3 and parent(parent(p)) not in self.model.nodes)
        path = data.draw(st.sampled_from(deep or POOL))
        self.run(WithACL(CreateOp(path, b"d", makepath=True), data.draw(acl_choices)), 0, ids)

    @rule(data=st.data(), name=st.sampled_from(NAMES))
    def create_with_auth_entries(self, data: st.DataObject, name: str) -> None:
        # auth entries for requesters who have digest identities (their expansion, and its duplicates).
        under = data.draw(st.sampled_from(sorted(self.model.nodes)))
        acl = data.draw(st.sampled_from([a for a in ACLS if any(e[1] == "auth" for e in a)]))
        ids = data.draw(st.sampled_from([i for i in IDENTITIES if any(s == "digest" for s, _ in i)]))
        op: Any = WithACL(CreateOp(("" if under == "/" else under) + "/" + name), acl)
        if data.draw(st.booleans()):
            op = SetACLOp(under, acl)
        self.run(op, 0, ids)

    @rule(data=st.data(), ids=identities)
    def set_acl(self, data: st.DataObject, ids: Any) -> None:
        # Seldom the root, and OPEN a quarter of the time: a tree locked from the top would test little else.
        source = data.draw(st.integers(0, 9))
        if source == 0:
            path = self.pick_path(data)
        else:
            below = sorted(p for p in self.model.nodes if p != "/" or source == 1)
            path = data.draw(st.sampled_from(below or ["/"]))
        acl = OPEN if data.draw(st.integers(0, 3)) == 0 else data.draw(acl_choices)
        op = SetACLOp(path, acl, self.pick_aversion(data, path))
        self.run(op, 0, ids if data.draw(st.integers(0, 3)) else None)

    @rule(data=st.data(), ids=identities, session=st.sampled_from([0] + SESSION_IDS))
    def as_someone(self, data: st.DataObject, ids: Any, session: int) -> None:
        # Any operation on behalf of someone: the checks of every kind against every kind of identity.
        path = self.pick_existing_or_any(data)
        kind = data.draw(st.sampled_from(["create", "delete", "set", "check", "multi", "reap"]))
        if kind == "create":
            op: Any = self.make_create(data, ("" if path == "/" else path) + "/" + data.draw(st.sampled_from(NAMES)))
        elif kind == "delete":
            op = DeleteOp(path, self.pick_version(data, path))
        elif kind == "set":
            op = SetDataOp(path, data.draw(values), self.pick_version(data, path))
        elif kind == "check":
            op = CheckOp(path, self.pick_version(data, path))
        elif kind == "multi":
            op = MultiOp(tuple(self.make_sub_op(data) for _ in range(data.draw(st.integers(1, 3)))))
        else:
            op = DeleteContainerOp(path)  # reaping is no one's: never checked
        self.run(op, session, ids)

    @rule(data=st.data())
    def malformed_authorized(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["nested", "session", "list", "pair", "bytes"]))
        op: Any = {
            "nested": Authorized((SUPER,), Authorized((SUPER,), CheckOp("/"))),
            "session": Authorized((SUPER,), CreateSessionOp(7, 1000, "x")),
            "list": Authorized([SUPER], CheckOp("/")),  # type: ignore[arg-type]
            "pair": Authorized((("digest",),), CheckOp("/")),  # type: ignore[arg-type]
            "bytes": Authorized(((b"ip", b"10.1.2.3"),), CheckOp("/")),  # type: ignore[arg-type]
        }[kind]
        self.run(op)

    @rule(data=st.data(), ids=identities)
    def read_check(self, data: st.DataObject, ids: Any) -> None:
        path = self.pick_existing_or_any(data)
        if not valid(path):
            expected: type[Exception] | None = BadArgumentsError
        elif path not in self.model.nodes:
            expected = NoNodeError
        else:
            expected = None if may(self.model.nodes[path].acl, R, ids) else NoAuthError
        try:
            self.tree.check_read(path, ids)
            got: type[Exception] | None = None
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            got = type(exc)
        assert got is expected, (path, ids, got, expected)

    @rule(data=st.data())
    def set_data(self, data: st.DataObject) -> None:
        path = self.pick_path(data)
        self.run(SetDataOp(path, data.draw(values), self.pick_version(data, path)))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        path = self.pick_path(data, leaf=True)
        self.run(DeleteOp(path, self.pick_version(data, path)))

    @rule(data=st.data())
    def check(self, data: st.DataObject) -> None:
        path = self.pick_path(data)
        self.run(CheckOp(path, self.pick_version(data, path)))

    @rule(data=st.data(), size=st.integers(0, 4), session=st.sampled_from([0] + SESSION_IDS))
    def multi(self, data: st.DataObject, size: int, session: int) -> None:
        # Mostly plain ops; a nested multi or a session op now and then makes the whole multi fail.
        ops = []
        for _ in range(size):
            op = self.make_sub_op(data)
            if isinstance(op, (MultiOp, CreateSessionOp)) and data.draw(st.integers(0, 3)) != 0:
                op = CheckOp("/")
            ops.append(op)
        self.run(MultiOp(tuple(ops)), session)

    @initialize()
    def open_two_sessions(self) -> None:
        self.run(CreateSessionOp(1, 5_000, "peer-1"))
        self.run(CreateSessionOp(2, 5_000, "peer-2"))

    @rule(data=st.data(), session=st.sampled_from(SESSION_IDS), count=st.integers(1, 3))
    def ephemerals_in_one_multi(self, data: st.DataObject, session: int, count: int) -> None:
        # Several ephemerals for one session, so that closing it has several to delete, in order.
        parents = sorted(p for p, n in self.model.nodes.items() if n.owner <= 0)
        ops = []
        for _ in range(count):
            under = data.draw(st.sampled_from(parents))
            name = data.draw(st.sampled_from(["e", "f", "g-"]))
            path = ("" if under == "/" else under) + "/" + name
            ops.append(CreateOp(path, ephemeral=True, sequential=name.endswith("-")))
        self.run(MultiOp(tuple(ops)), session)

    @rule(data=st.data(), size=st.integers(1, 3))
    def multi_that_fails_at_the_end(self, data: st.DataObject, size: int) -> None:
        # Whatever the first operations did (deleting ephemerals, containers, TTL nodes ...) must be undone.
        ops: list[Any] = []
        for _ in range(size):
            path = self.pick_path(data, leaf=True)
            kind = data.draw(st.sampled_from(["delete", "delete", "set", "create"]))
            if kind == "delete":
                ops.append(DeleteOp(path))
            elif kind == "set":
                ops.append(SetDataOp(path, b"z"))
            else:
                ops.append(self.make_create(data, path))
        ops.append(CheckOp("/never/there"))
        self.run(MultiOp(tuple(ops)))

    @rule(sid=st.sampled_from(SESSION_IDS * 3 + [0, 1 << 56]), timeout=st.sampled_from([5_000] * 4 + [0]))
    def create_session(self, sid: int, timeout: int) -> None:
        self.run(CreateSessionOp(sid, timeout, f"peer-{sid}"))

    @rule(sid=st.sampled_from(SESSION_IDS + [4]))
    def close_session(self, sid: int) -> None:
        self.run(CloseSessionOp(sid))

    @rule(ms=st.sampled_from([0, 1, 10, 20, 100, 200]))  # 1, 20 and 100 are the TTLs: land on the boundary
    def advance_time(self, ms: int) -> None:
        self.now += ms

    @rule(data=st.data())
    def delete_container(self, data: st.DataObject) -> None:
        # Half the time a container or TTL node, reapable or not yet: the interesting refusals are there.
        special = sorted(p for p, n in self.model.nodes.items() if n.owner < 0)
        pick_special: bool = data.draw(st.booleans())
        if special and pick_special:
            path: str = data.draw(st.sampled_from(special))
        else:
            path = self.pick_path(data)
        self.run(DeleteContainerOp(path))

    @precondition(lambda self: self.model.reap(self.now))
    @rule()
    def reap(self) -> None:
        # What the leader does: propose every candidate. Reaping a container's last child makes the container a
        # candidate in turn, so go round until nothing is left.
        for _ in range(len(self.model.nodes)):
            candidates = self.tree.reap_candidates(self.now)
            if not candidates:
                break
            for path in candidates:
                self.run(DeleteContainerOp(path))
        assert self.model.reap(self.now) == []

    @rule(chunk=st.sampled_from([128, 300, 1 << 16]))
    def snapshot_and_continue_on_the_restored_tree(self, chunk: int) -> None:
        chunks = list(self.tree.snapshot_chunks(chunk))
        restored = DataTree.restore(iter(chunks), max_data_bytes=MAX_DATA)
        assert restored.digest == self.tree.digest
        assert dump(restored) == dump(self.tree)
        assert acls(restored) == acls(self.tree)
        assert restored.acl_count() == self.tree.acl_count()
        assert restored.sessions() == self.tree.sessions()
        assert restored.last_zxid == self.tree.last_zxid
        self.tree = restored

    @rule(data=st.data(), chunk=st.sampled_from([128, 300]))
    def snapshot_while_the_tree_changes(self, data: st.DataObject, chunk: int) -> None:
        # Copy-on-write: a stream opened before some changes restores the tree as it was when it was opened,
        # ACLs included, and the changes rebuild nodes (with their ACLs) instead of touching what it reads.
        before = (dump(self.tree), acls(self.tree), self.tree.digest)
        stream = self.tree.snapshot_chunks(chunk)
        first = next(stream)
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(sorted(self.model.nodes)))
            kind = data.draw(st.sampled_from(["create", "set", "set_acl", "delete"]))
            child = ("" if path == "/" else path) + "/" + data.draw(st.sampled_from(NAMES))
            op: Any = {
                "create": CreateOp(child),
                "set": SetDataOp(path, b"cow"),
                "set_acl": SetACLOp(path, data.draw(acl_choices)),
                "delete": DeleteOp(path),
            }[kind]
            self.run(op, 0, (SUPER,) if data.draw(st.booleans()) else None)
        restored = DataTree.restore([first, *stream], max_data_bytes=MAX_DATA)
        assert (dump(restored), acls(restored), restored.digest) == before

    # -- invariants

    @invariant()
    def contents_match_the_model(self) -> None:
        expected = {path: (n.data, self.model.stat(path)) for path, n in self.model.nodes.items()}
        assert dump(self.tree) == expected
        assert self.tree.node_count() == len(expected)
        assert self.tree.last_zxid == self.zxid
        assert self.tree.sessions() == self.model.sessions
        for sid in SESSION_IDS:
            assert self.tree.ephemerals(sid) == self.model.ephemerals(sid)

    @invariant()
    def acls_match_the_model(self) -> None:
        assert acls(self.tree) == {path: n.acl for path, n in self.model.nodes.items()}
        assert self.tree.acl_count() == sum(n.acl != OPEN for n in self.model.nodes.values())

    @invariant()
    def reap_candidates_match_the_model(self) -> None:
        for now in (self.now, self.now + 150):
            assert self.tree.reap_candidates(now) == self.model.reap(now)

    @invariant()
    def digest_matches_a_recomputation(self) -> None:
        assert self.tree.digest == digest_from_scratch(self.tree)


TreeMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestTree = TreeMachine.TestCase
