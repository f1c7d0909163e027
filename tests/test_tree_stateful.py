"""The DataTree against a plain reference model, driven by hypothesis through every operation.

The model below is written for obviousness, not speed: a dict from path to node fields, children found by scanning,
a multi made atomic by deep-copying the whole state. It shares no code with the tree. Each step applies the same
transaction to both and compares the error, the value and the events; after each step the invariants compare the
whole contents, the sessions, the ephemerals, the reap candidates, and the digest against a recomputation from
scratch. Snapshots are taken and restored along the way, and the run then continues on the restored tree.
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
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteContainerOp,
    DeleteOp,
    MultiOp,
    SetDataOp,
    Txn,
)

MAX_DATA = 8
MAX_TTL = 0xFFFFFFFFFF
CONTAINER = -(1 << 63)
SESSION_IDS = [1, 2, 3]
NAMES = ["a", "b", "c"]
POOL = ["/"] + ["/" + "/".join(p) for n in (1, 2, 3) for p in itertools.product(NAMES, repeat=n)]
SHALLOW = [p for p in POOL if p.count("/") <= 2]
INVALID = ["/a/", "//a", "/a/./b", "a", ""]


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
            n.czxid, n.mzxid, n.ctime, n.mtime, n.version, n.creations + n.deletions, 0, n.owner,
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
        op = txn.op
        if isinstance(op, MultiOp):
            results: list[Any] = []
            for i, sub in enumerate(op.ops):
                try:
                    if not isinstance(sub, (CreateOp, DeleteOp, SetDataOp, CheckOp)):
                        raise Fail(BadArgumentsError)
                    value = self.run(sub, txn, zxid, events)
                except Fail as f:
                    self.nodes, self.sessions = saved
                    failed = [RolledBackError] * i + [f.kind] + [RuntimeInconsistencyError] * (len(op.ops) - i - 1)
                    return failed, f.kind, []
                results.append(True if value is None else value)
            return results, None, events
        try:
            value = self.run(op, txn, zxid, events)
        except Fail as f:
            self.nodes, self.sessions = saved
            return None, f.kind, []
        return value, None, events

    def run(self, op: Any, txn: Txn, zxid: int, events: list[tuple[EventType, str]]) -> Any:
        t = txn.time_ms
        if isinstance(op, CreateOp):
            return self.create(op, txn.session_id, t, zxid, events)
        if isinstance(op, DeleteOp):
            if not valid(op.path) or op.path == "/":
                raise Fail(BadArgumentsError)
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
            if op.version not in (-1, n.version):
                raise Fail(BadVersionError)
            n.data, n.version, n.mzxid, n.mtime = op.data, n.version + 1, zxid, t
            events.append((EventType.CHANGED, op.path))
            return self.stat(op.path)
        if isinstance(op, CheckOp):
            if not valid(op.path):
                raise Fail(BadArgumentsError)
            if op.version not in (-1, self.existing(op.path).version):
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

    def create(self, op: CreateOp, session: int, t: int, zxid: int, events: list[tuple[EventType, str]]) -> str:
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
        if op.path == "/" and not op.sequential:
            raise Fail(NodeExistsError)
        par = parent(op.path)
        if par not in self.nodes:
            if not op.makepath:
                raise Fail(NoNodeError)
            names = par.split("/")[1:]
            for i in range(1, len(names) + 1):
                ancestor = "/" + "/".join(names[:i])
                if ancestor not in self.nodes:
                    self.add(ancestor, b"", 0, t, zxid, events)
        path = op.path
        if op.sequential:
            path += f"{self.nodes[par].creations:010d}"
        if path in self.nodes:
            raise Fail(NodeExistsError)
        self.add(path, op.data, owner, t, zxid, events)
        return path

    def add(self, path: str, data: bytes, owner: int, t: int, zxid: int, events: list[tuple[EventType, str]]) -> None:
        p = self.nodes[parent(path)]
        if p.owner > 0:
            raise Fail(NoChildrenForEphemeralsError)
        self.nodes[path] = MNode(data, zxid, zxid, zxid, t, t, owner=owner)
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
    for sid, (owner, timeout) in tree.sessions().items():
        total += zlib.crc32(owner.encode(), zlib.crc32(b"\x00session\x00" + struct.pack("<qq", sid, timeout)))
    return total


values = st.sampled_from([b"", b"x", b"abc", b"12345678"] * 2 + [b"123456789"])  # the last one exceeds MAX_DATA
versions = st.sampled_from(["any", "right", "wrong"])
create_modes = st.sampled_from(
    ["persistent"] * 6 + ["ephemeral"] * 3 + ["container", "container", "ttl", "ttl", "ttl+ephemeral", "container+seq"]
)
ttls = st.sampled_from([1, 20, 100] * 2 + [0])


class TreeMachine(RuleBasedStateMachine):
    """Applies the same transactions to a DataTree and to the model."""

    def __init__(self) -> None:
        super().__init__()
        self.tree = DataTree(max_data_bytes=MAX_DATA)
        self.model = Model()
        self.zxid = 0
        self.now = 10_000

    # -- helpers

    def run(self, op: Any, session: int = 0) -> None:
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

    def make_sub_op(self, data: st.DataObject) -> Any:
        path = self.pick_path(data)
        kind = data.draw(st.sampled_from(["create", "create", "delete", "set", "check", "nested", "session"]))
        if kind == "create":
            return self.make_create(data, path)
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
        ops = []
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
        if special and data.draw(st.booleans()):
            path = data.draw(st.sampled_from(special))
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
        assert restored.sessions() == self.tree.sessions()
        assert restored.last_zxid == self.tree.last_zxid
        self.tree = restored

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
    def reap_candidates_match_the_model(self) -> None:
        for now in (self.now, self.now + 150):
            assert self.tree.reap_candidates(now) == self.model.reap(now)

    @invariant()
    def digest_matches_a_recomputation(self) -> None:
        assert self.tree.digest == digest_from_scratch(self.tree)


TreeMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestTree = TreeMachine.TestCase
