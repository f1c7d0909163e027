"""DataTree: ZooKeeper's semantics operation by operation, with the exact Stat fields, errors and events."""

from __future__ import annotations

from typing import Any

import pytest

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
    ApplyResult,
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
    TreeEvent,
    Txn,
    WithACL,
)
from embedzk.tree import snapshot as snap

CREATED, DELETED, CHANGED, CHILD = EventType.CREATED, EventType.DELETED, EventType.CHANGED, EventType.CHILD
CONTAINER = -(1 << 63)


class Driver:
    """Applies operations with increasing zxids and a controllable clock."""

    def __init__(self, **kwargs: Any) -> None:
        self.tree = DataTree(**kwargs)
        self.zxid = 0
        self.now = 1_000

    def apply(self, op: Any, session: int = 0) -> ApplyResult:
        self.zxid += 1
        return self.tree.apply(Txn(session, self.now, op), self.zxid)

    def ok(self, op: Any, session: int = 0) -> Any:
        result = self.apply(op, session)
        assert result.error is None, result.error
        return result.value

    def fails(self, op: Any, error: type[Exception], session: int = 0) -> ApplyResult:
        """Apply an operation that must fail with ``error`` and change nothing."""
        before = dump(self.tree)
        digest = self.tree.digest
        result = self.apply(op, session)
        assert type(result.error) is error, result
        assert result.events == ()
        assert self.tree.digest == digest
        assert dump(self.tree) == before
        assert self.tree.last_zxid == self.zxid  # a failed transaction still counts as applied
        return result

    def open_session(self, sid: int, timeout: int = 10_000, owner: str = "peer") -> None:
        self.ok(CreateSessionOp(sid, timeout, owner))


def dump(tree: DataTree, path: str = "/") -> dict[str, tuple[bytes, Stat]]:
    """Every node of the tree, by path, read through the public API."""
    out = {path: tree.get(path)}
    for name in tree.get_children(path):
        out.update(dump(tree, ("" if path == "/" else path) + "/" + name))
    return out


def events(*pairs: tuple[EventType, str]) -> tuple[TreeEvent, ...]:
    return tuple(TreeEvent(t, p) for t, p in pairs)


# ---------------------------------------------------------------------------------------------------------------
# the root


def test_a_new_tree_holds_only_the_root() -> None:
    tree = DataTree()
    data, stat = tree.get("/")
    assert data == b"" and stat == Stat(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert tree.get_children("/") == [] and tree.node_count() == 1 and tree.last_zxid == 0


def test_the_root_can_be_neither_created_nor_deleted() -> None:
    d = Driver()
    d.fails(CreateOp("/"), NodeExistsError)
    d.fails(DeleteOp("/"), BadArgumentsError)
    d.fails(DeleteContainerOp("/"), BadArgumentsError)
    stat = d.ok(SetDataOp("/", b"root"))
    assert stat.version == 1 and d.tree.get("/")[0] == b"root"


# ---------------------------------------------------------------------------------------------------------------
# create


def test_create_sets_every_stat_field_and_touches_the_parent() -> None:
    d = Driver()
    d.now = 5_000
    result = d.apply(CreateOp("/a", b"hello"))
    assert result.value == "/a" and result.error is None
    assert result.events == events((CREATED, "/a"), (CHILD, "/"))
    data, stat = d.tree.get("/a")
    assert data == b"hello"
    assert stat == Stat(
        czxid=1, mzxid=1, ctime=5_000, mtime=5_000, version=0, cversion=0, aversion=0,
        ephemeral_owner=0, data_length=5, num_children=0, pzxid=1,
    )  # fmt: skip
    root = d.tree.get("/")[1]
    assert (root.cversion, root.pzxid, root.num_children, root.mzxid) == (1, 1, 1, 0)
    assert d.tree.node_count() == 2


def test_create_errors() -> None:
    d = Driver()
    d.fails(CreateOp("/a/b"), NoNodeError)
    d.ok(CreateOp("/a"))
    d.fails(CreateOp("/a"), NodeExistsError)
    d.fails(CreateOp("/a/"), BadArgumentsError)
    d.fails(CreateOp("/x/./y"), BadArgumentsError)  # syntax is checked before the parent's existence


def test_sequential_numbers_come_from_the_parents_cversion() -> None:
    d = Driver()
    d.ok(CreateOp("/q"))
    assert d.ok(CreateOp("/q/job-", sequential=True)) == "/q/job-0000000000"
    assert d.ok(CreateOp("/q/other")) == "/q/other"  # any create counts
    assert d.ok(CreateOp("/q/job-", sequential=True)) == "/q/job-0000000002"
    assert d.ok(CreateOp("/q/", sequential=True)) == "/q/0000000003"
    assert d.ok(CreateOp("/", sequential=True)) == "/0000000001"


def test_delete_counts_in_cversion_but_not_in_sequence_numbers_so_they_never_repeat() -> None:
    # ZooKeeper: DataTree.deleteNode touches only the parent's pzxid, so the suffix goes on from the creations;
    # DataNode.copyStat reports cversion as creations + deletions all the same.
    d = Driver()
    d.ok(CreateOp("/q"))
    d.ok(CreateOp("/q/n-", sequential=True))
    assert d.tree.get("/q")[1].cversion == 1
    d.ok(DeleteOp("/q/n-0000000000"))
    stat = d.tree.get("/q")[1]
    assert stat.cversion == 2
    assert stat.pzxid == d.zxid
    assert d.ok(CreateOp("/q/n-", sequential=True)) == "/q/n-0000000001"
    assert d.tree.get("/q")[1].cversion == 3


def test_sequential_name_taken_by_a_plain_node_is_node_exists() -> None:
    d = Driver()
    d.ok(CreateOp("/q"))
    d.ok(CreateOp("/q/n0000000001"))  # cversion is now 1
    d.fails(CreateOp("/q/n", sequential=True), NodeExistsError)


def test_makepath_creates_missing_ancestors_each_with_its_events() -> None:
    d = Driver()
    d.ok(CreateOp("/a"))
    result = d.apply(CreateOp("/a/b/c/d", b"x", makepath=True))
    assert result.value == "/a/b/c/d"
    assert result.events == events(
        (CREATED, "/a/b"), (CHILD, "/a"),
        (CREATED, "/a/b/c"), (CHILD, "/a/b"),
        (CREATED, "/a/b/c/d"), (CHILD, "/a/b/c"),
    )  # fmt: skip
    for path in ("/a/b", "/a/b/c"):
        data, stat = d.tree.get(path)
        assert data == b"" and stat.ephemeral_owner == 0 and stat.cversion == 1 and stat.czxid == d.zxid
    assert d.tree.get("/a")[1].cversion == 1
    assert d.tree.node_count() == 5


def test_makepath_with_sequential_numbers_under_the_new_parent() -> None:
    d = Driver()
    assert d.ok(CreateOp("/x/y/", sequential=True, makepath=True)) == "/x/y/0000000000"


def test_makepath_failures_leave_no_ancestor_behind() -> None:
    d = Driver()
    d.open_session(7)
    d.ok(CreateOp("/e", ephemeral=True), session=7)
    d.fails(CreateOp("/e/a/b", makepath=True), NoChildrenForEphemeralsError)
    d.fails(CreateOp("/m/n", makepath=True, ephemeral=True), SessionExpiredError)
    d.ok(CreateOp("/z/y", makepath=True))
    d.fails(CreateOp("/z/y", makepath=True), NodeExistsError)
    # Ancestors made by a multi's create are undone with the rest when a later operation fails.
    d.fails(MultiOp((CreateOp("/m/n/o", makepath=True), CheckOp("/missing"))), NoNodeError)
    assert d.tree.exists("/m") is None


def test_ephemeral_nodes_belong_to_an_open_session_and_have_no_children() -> None:
    d = Driver()
    d.fails(CreateOp("/e", ephemeral=True), SessionExpiredError, session=5)
    d.open_session(5)
    d.ok(CreateOp("/e", ephemeral=True), session=5)
    assert d.tree.get("/e")[1].ephemeral_owner == 5
    assert d.tree.ephemerals(5) == ["/e"]
    d.fails(CreateOp("/e/c"), NoChildrenForEphemeralsError)
    d.fails(CreateOp("/e/c", sequential=True), NoChildrenForEphemeralsError)
    d.fails(CreateOp("/e"), NodeExistsError)  # NodeExists is checked before the parent's kind


def test_container_and_ttl_owners_use_zookeepers_encoding() -> None:
    d = Driver()
    d.ok(CreateOp("/c", container=True))
    d.ok(CreateOp("/t", ttl=1234))
    d.ok(CreateOp("/m", ttl=0xFFFFFFFFFF))
    assert d.tree.get("/c")[1].ephemeral_owner == CONTAINER
    assert d.tree.get("/t")[1].ephemeral_owner == (0xFF00000000000000 | 1234) - (1 << 64)
    assert d.tree.get("/m")[1].ephemeral_owner == 0xFF0000FFFFFFFFFF - (1 << 64)
    # Containers and TTL nodes may have children, unlike ephemerals.
    d.ok(CreateOp("/c/x"))
    d.ok(CreateOp("/t/x"))


@pytest.mark.parametrize(
    "op",
    [
        CreateOp("/x", ttl=10, ephemeral=True),
        CreateOp("/x", ttl=10, container=True),
        CreateOp("/x", ttl=0),
        CreateOp("/x", ttl=-5),
        CreateOp("/x", ttl=0x10000000000),
        CreateOp("/x", container=True, ephemeral=True),
        CreateOp("/x", container=True, sequential=True),
        CreateOp("/x", data="text"),  # type: ignore[arg-type]
        CreateOp("/x", data=bytearray(b"no")),  # type: ignore[arg-type]
        CreateOp("/x", ttl=True),  # type: ignore[arg-type]
        CreateOp("/x", ephemeral=1),  # type: ignore[arg-type]
        CreateOp("x"),
        CreateOp("/x/"),
    ],
)
def test_bad_create_arguments(op: CreateOp) -> None:
    d = Driver()
    d.open_session(1)
    with pytest.raises(BadArgumentsError):
        d.tree.check_op(op)
    d.fails(op, BadArgumentsError, session=1)


def test_value_size_limit_names_path_and_sizes() -> None:
    d = Driver(max_data_bytes=10)
    d.ok(CreateOp("/a", b"x" * 10))
    result = d.fails(CreateOp("/b", b"x" * 11), BadArgumentsError)
    assert "/b" in str(result.error) and "11" in str(result.error) and "10" in str(result.error)
    d.fails(SetDataOp("/a", b"y" * 11), BadArgumentsError)
    with pytest.raises(BadArgumentsError, match="/a.*11 bytes.*10"):
        d.tree.check_op(SetDataOp("/a", b"y" * 11))


# ---------------------------------------------------------------------------------------------------------------
# set, delete, check


def test_set_data_bumps_version_and_mtime_only() -> None:
    d = Driver()
    d.ok(CreateOp("/a", b"1"))
    d.ok(CreateOp("/a/child"))
    d.now = 9_000
    result = d.apply(SetDataOp("/a", b"22", version=0))
    assert result.events == events((CHANGED, "/a"))
    stat = result.value
    assert stat == d.tree.get("/a")[1]
    assert (stat.version, stat.mzxid, stat.mtime, stat.data_length) == (1, d.zxid, 9_000, 2)
    assert (stat.czxid, stat.ctime, stat.cversion, stat.pzxid, stat.num_children) == (1, 1_000, 1, 2, 1)
    d.fails(SetDataOp("/a", b"3", version=0), BadVersionError)
    d.fails(SetDataOp("/nope", b"3"), NoNodeError)
    assert d.ok(SetDataOp("/a", b"3", version=-1)).version == 2


def test_delete_checks_in_zookeepers_order() -> None:
    d = Driver()
    d.fails(DeleteOp("/a"), NoNodeError)
    d.ok(CreateOp("/a"))
    d.ok(CreateOp("/a/b"))
    d.fails(DeleteOp("/a", version=3), BadVersionError)  # BadVersion before NotEmpty
    d.fails(DeleteOp("/a"), NotEmptyError)
    result = d.apply(DeleteOp("/a/b", version=0))
    assert result.value is None and result.events == events((DELETED, "/a/b"), (CHILD, "/a"))
    assert d.tree.exists("/a/b") is None
    assert d.tree.get("/a")[1].num_children == 0
    d.ok(DeleteOp("/a"))
    assert d.tree.node_count() == 1


def test_check_outside_a_multi() -> None:
    d = Driver()
    d.fails(CheckOp("/a"), NoNodeError)
    d.ok(CreateOp("/a"))
    assert d.apply(CheckOp("/a", 0)) == ApplyResult(None, None, ())
    d.fails(CheckOp("/a", 1), BadVersionError)


def test_versions_wrap_like_java_ints() -> None:
    # Reachable only after 2**31 sets; build the state through a snapshot instead.
    fields = [1, 1, 1, 0, 0, 2**31 - 1, 0, 0, 0]
    chunks = snap.write_snapshot(
        snap.SnapshotHeader(snap.FORMAT_VERSION, 5, 1 << 20),
        [],
        [("/", b"", 0, 0, 1, 0, 0, 0, 1, 0, 0), ("/a", b"", *fields)],
        snap.SnapshotTrailer(2, 0, _digest_of([("/", b"", 0, 0, 1, 0, 0, 0, 1, 0, 0), ("/a", b"", *fields)])),
        1 << 20,
    )
    tree = DataTree.restore(chunks)
    result = tree.apply(Txn(0, 0, SetDataOp("/a", b"x", version=2**31 - 1)), 6)
    assert result.value.version == -(2**31)


def _digest_of(records: list[tuple[Any, ...]]) -> int:
    import struct
    import zlib

    total = 0
    for path, data, *fields in records:
        total += zlib.crc32(data, zlib.crc32(struct.pack("<qqqqqiiiq", *fields), zlib.crc32(path.encode())))
    return total


# ---------------------------------------------------------------------------------------------------------------
# multi


def test_multi_success_returns_one_result_per_op_and_all_events_in_order() -> None:
    d = Driver()
    d.ok(CreateOp("/a", b"0"))
    d.ok(CreateOp("/gone"))
    result = d.apply(MultiOp((CreateOp("/a/b"), SetDataOp("/a/b", b"x", 0), CheckOp("/a", 0), DeleteOp("/gone"))))
    assert result.error is None
    path, stat, check, deleted = result.value
    assert path == "/a/b" and isinstance(stat, Stat) and stat.version == 1 and check is True and deleted is True
    assert result.events == events(
        (CREATED, "/a/b"), (CHILD, "/a"), (CHANGED, "/a/b"), (DELETED, "/gone"), (CHILD, "/")
    )


def test_failed_multi_changes_nothing_and_reports_like_zookeeper() -> None:
    d = Driver()
    d.ok(CreateOp("/a"))
    result = d.fails(
        MultiOp((CreateOp("/a/b"), SetDataOp("/a", b"x"), DeleteOp("/a"), CreateOp("/c"), CheckOp("/a"))),
        NotEmptyError,
    )
    assert [type(v) for v in result.value] == [
        RolledBackError,
        RolledBackError,
        NotEmptyError,
        RuntimeInconsistencyError,
        RuntimeInconsistencyError,
    ]
    assert result.value[2] is result.error
    assert d.tree.exists("/a/b") is None and d.tree.get("/a")[1].version == 0
    # The messages say which operation failed and how, by its index in these results, which counts from 0.
    rolled_back, not_attempted = str(result.value[0]), str(result.value[4])
    assert "operation 2 (counting from 0) failed: NotEmptyError" in rolled_back
    assert "operation 2 (counting from 0) failed: NotEmptyError" in not_attempted


def test_failed_multi_restores_deleted_nodes_and_indexes() -> None:
    d = Driver()
    d.open_session(3)
    d.ok(CreateOp("/c", container=True))
    d.ok(CreateOp("/c/e", ephemeral=True), session=3)
    d.ok(CreateOp("/t", ttl=5))
    digest = d.tree.digest
    d.fails(MultiOp((DeleteOp("/c/e"), DeleteOp("/c"), DeleteOp("/t"), CheckOp("/c", 99))), NoNodeError)
    assert d.tree.digest == digest
    assert d.tree.ephemerals(3) == ["/c/e"]
    d.now += 1_000
    assert d.tree.reap_candidates(d.now) == ["/t"]
    # The restored nodes are fully alive: the session still owns its ephemeral.
    assert d.apply(CloseSessionOp(3)).events == events((DELETED, "/c/e"), (CHILD, "/c"))


def test_multi_ops_see_earlier_ops_and_sequential_numbers_advance_inside() -> None:
    d = Driver()
    result = d.apply(MultiOp((CreateOp("/q"), CreateOp("/q/n", sequential=True), CreateOp("/q/n", sequential=True))))
    assert result.value == ["/q", "/q/n0000000000", "/q/n0000000001"]


@pytest.mark.parametrize(
    "bad",
    [
        MultiOp((CreateOp("/x"),)),
        CreateSessionOp(9, 100, "x"),
        CloseSessionOp(9),
        DeleteContainerOp("/x"),
    ],
)
def test_multi_only_takes_create_delete_set_and_check(bad: Any) -> None:
    d = Driver()
    op = MultiOp((CreateOp("/y"), bad))
    with pytest.raises(BadArgumentsError, match="operation 1"):
        d.tree.check_op(op)
    result = d.fails(op, BadArgumentsError)
    assert [type(v) for v in result.value] == [RolledBackError, BadArgumentsError]


def test_empty_multi_succeeds_with_no_results() -> None:
    assert Driver().apply(MultiOp(())) == ApplyResult([], None, ())


def test_multi_with_ephemeral_of_a_closed_session() -> None:
    d = Driver()
    result = d.fails(MultiOp((CreateOp("/a"), CreateOp("/a/e", ephemeral=True))), SessionExpiredError, session=4)
    assert [type(v) for v in result.value] == [RolledBackError, SessionExpiredError]


# ---------------------------------------------------------------------------------------------------------------
# sessions


def test_sessions_open_and_close_with_their_ephemerals() -> None:
    d = Driver()
    d.open_session(1, 5_000, "a")
    d.open_session(2, 6_000, "b")
    assert d.tree.sessions() == {1: ("a", 5_000), 2: ("b", 6_000)}
    d.tree.sessions().clear()  # a copy
    assert len(d.tree.sessions()) == 2
    d.ok(CreateOp("/p"))
    d.ok(CreateOp("/p/z", ephemeral=True), session=1)
    d.ok(CreateOp("/p/a", ephemeral=True), session=1)
    d.ok(CreateOp("/b", ephemeral=True), session=2)
    result = d.apply(CloseSessionOp(1))
    assert result == ApplyResult(None, None, events((DELETED, "/p/a"), (CHILD, "/p"), (DELETED, "/p/z"), (CHILD, "/p")))
    assert d.tree.get_children("/p") == [] and d.tree.get("/p")[1].pzxid == d.zxid
    assert d.tree.ephemerals(1) == [] and d.tree.ephemerals(2) == ["/b"]
    assert d.tree.sessions() == {2: ("b", 6_000)}
    d.fails(CloseSessionOp(1), SessionExpiredError)
    d.fails(CreateOp("/again", ephemeral=True), SessionExpiredError, session=1)


@pytest.mark.parametrize(
    "op",
    [
        CreateSessionOp(0, 1000, "a"),
        CreateSessionOp(-1, 1000, "a"),
        CreateSessionOp(1 << 56, 1000, "a"),
        CreateSessionOp(1, 0, "a"),
        CreateSessionOp(1, 1 << 31, "a"),
        CreateSessionOp(1, 1000, "\ud800"),
    ],
)
def test_bad_sessions(op: CreateSessionOp) -> None:
    d = Driver()
    with pytest.raises(BadArgumentsError):
        d.tree.check_op(op)
    d.fails(op, BadArgumentsError)


def test_a_session_id_cannot_be_opened_twice() -> None:
    d = Driver()
    d.open_session((1 << 56) - 1)
    d.fails(CreateSessionOp((1 << 56) - 1, 10, "again"), BadArgumentsError)


def test_sessions_are_part_of_the_digest() -> None:
    a, b = Driver(), Driver()
    a.open_session(1, owner="x")
    b.open_session(1, owner="y")
    assert a.tree.digest != b.tree.digest
    digest = a.tree.digest
    a.ok(CloseSessionOp(1))
    assert a.tree.digest != digest and a.tree.digest == DataTree().digest


# ---------------------------------------------------------------------------------------------------------------
# containers and TTL nodes


def test_container_is_reaped_only_after_its_last_child_goes() -> None:
    d = Driver()
    d.ok(CreateOp("/c", container=True))
    assert d.tree.reap_candidates(d.now) == []  # never had a child
    d.fails(DeleteContainerOp("/c"), BadArgumentsError)
    d.ok(CreateOp("/c/x"))
    assert d.tree.reap_candidates(d.now) == []
    d.fails(DeleteContainerOp("/c"), NotEmptyError)
    d.ok(DeleteOp("/c/x"))
    assert d.tree.reap_candidates(d.now) == ["/c"]
    result = d.apply(DeleteContainerOp("/c"))
    assert result == ApplyResult(None, None, events((DELETED, "/c"), (CHILD, "/")))
    assert d.tree.reap_candidates(d.now) == []
    d.fails(DeleteContainerOp("/c"), NoNodeError)


def test_ttl_node_expires_when_unmodified_and_childless() -> None:
    d = Driver()
    d.ok(CreateOp("/t", ttl=100))  # mtime 1000
    assert d.tree.reap_candidates(1_100) == []  # elapsed must exceed the ttl
    assert d.tree.reap_candidates(1_101) == ["/t"]
    d.now = 1_100
    d.fails(DeleteContainerOp("/t"), BadArgumentsError)
    d.ok(SetDataOp("/t", b"touch"))  # mtime 1100
    assert d.tree.reap_candidates(1_150) == []
    d.ok(CreateOp("/t/kid"))
    assert d.tree.reap_candidates(10_000) == []
    d.ok(DeleteOp("/t/kid"))
    assert d.tree.reap_candidates(10_000) == ["/t"]
    d.now = 1_201
    d.ok(DeleteContainerOp("/t"))
    assert d.tree.exists("/t") is None and d.tree.reap_candidates(10_000) == []


def test_delete_container_refuses_ordinary_nodes() -> None:
    d = Driver()
    d.open_session(1)
    d.ok(CreateOp("/p"))
    d.ok(CreateOp("/e", ephemeral=True), session=1)
    d.fails(DeleteContainerOp("/p"), BadArgumentsError)
    d.fails(DeleteContainerOp("/e"), BadArgumentsError)
    d.fails(DeleteContainerOp("/nope"), NoNodeError)


# ---------------------------------------------------------------------------------------------------------------
# reads, apply's contract, digest


@pytest.mark.parametrize("path", ["", "a", "/a/", "//", "/a/../b", "/\x00"])
def test_reads_of_invalid_paths_are_bad_arguments(path: str) -> None:
    tree = DataTree()
    with pytest.raises(BadArgumentsError):
        tree.get(path)
    with pytest.raises(BadArgumentsError):
        tree.exists(path)
    with pytest.raises(BadArgumentsError):
        tree.get_children(path)


def test_reads_of_missing_nodes() -> None:
    d = Driver()
    d.ok(CreateOp("/a"))
    with pytest.raises(NoNodeError):
        d.tree.get("/a/b")
    with pytest.raises(NoNodeError):
        d.tree.get_children("/b")
    assert d.tree.exists("/a/b") is None
    d.ok(CreateOp("/a/b"))
    d.ok(CreateOp("/a/c"))
    assert sorted(d.tree.get_children("/a")) == ["b", "c"]


def test_apply_refuses_a_zxid_that_does_not_advance() -> None:
    d = Driver()
    d.ok(CreateOp("/a"))
    with pytest.raises(ValueError):
        d.tree.apply(Txn(0, 0, CreateOp("/b")), d.zxid)
    with pytest.raises(ValueError):
        d.tree.apply(Txn(0, 0, CreateOp("/b")), 0)
    assert d.tree.exists("/b") is None


def test_apply_turns_garbage_into_a_result() -> None:
    d = Driver()
    for op in (None, "create /x", Txn(0, 0, CreateOp("/x"))):
        d.fails(op, BadArgumentsError)
    d.zxid += 1
    assert type(d.tree.apply("not a txn", d.zxid).error) is BadArgumentsError  # type: ignore[arg-type]
    d.zxid += 1
    assert type(d.tree.apply(Txn(0, 1.5, CreateOp("/x")), d.zxid).error) is BadArgumentsError  # type: ignore[arg-type]


def test_check_op_accepts_good_operations() -> None:
    tree = DataTree()
    for op in (
        CreateOp("/a", b"x", sequential=True, ttl=5),
        CreateOp("/q/", sequential=True, ephemeral=True),
        DeleteOp("/a", 3),
        SetDataOp("/", b""),
        CheckOp("/a"),
        MultiOp((CreateOp("/a"), DeleteOp("/a"))),
        CreateSessionOp(1, 100, "p"),
        CloseSessionOp(1),
        DeleteContainerOp("/c"),
    ):
        tree.check_op(op)
    with pytest.raises(BadArgumentsError, match="not a tree operation"):
        tree.check_op(Txn(0, 0, CheckOp("/")))


def test_same_transactions_give_the_same_digest_and_each_change_moves_it() -> None:
    ops = [
        CreateOp("/a", b"1"),
        CreateOp("/a/b", b"2"),
        SetDataOp("/a", b"3"),
        DeleteOp("/a/b"),
        WithACL(CreateOp("/c"), ((17, "world", "anyone"),)),  # READ and ADMIN
        SetACLOp("/c", ((19, "world", "anyone"),)),
        SetACLOp("/c", ((19, "world", "anyone"),)),  # the same ACL again: only aversion moves
    ]
    a, b = Driver(), Driver()
    seen = {a.tree.digest}
    for op in ops:
        a.ok(op)
        b.ok(op)
        assert a.tree.digest == b.tree.digest
        seen.add(a.tree.digest)
    assert len(seen) == len(ops) + 1
    # The digest covers the stat, not only paths and data: a set of the same bytes still changes it.
    before = a.tree.digest
    a.ok(SetDataOp("/a", b"3"))
    assert a.tree.digest != before


def test_the_digest_covers_the_acl_itself() -> None:
    # Two trees whose one difference is an ACL's content (same stat, same aversion) have different digests.
    a, b = Driver(), Driver()
    a.ok(WithACL(CreateOp("/c"), ((1, "world", "anyone"),)))
    b.ok(WithACL(CreateOp("/c"), ((3, "world", "anyone"),)))
    assert dump(a.tree) == dump(b.tree)
    assert a.tree.digest != b.tree.digest


def test_a_node_read_before_a_change_keeps_its_old_data_and_stat() -> None:
    # Nodes are replaced, never mutated: a reader holding the old node sees a consistent pair.
    d = Driver()
    d.ok(CreateOp("/a", b"old"))
    node = d.tree._find("/a")
    d.ok(SetDataOp("/a", b"new"))
    assert node is not None and node.data == b"old"
    assert d.tree.get("/a")[0] == b"new"
