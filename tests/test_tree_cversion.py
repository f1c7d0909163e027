"""A parent's Stat.cversion counts its children's creations and deletions, as ZooKeeper 3.8 reports it, while the
sequential suffix counts creations only (so a sequential name never repeats); the simulator's TreeModel agrees."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from embedzk.testing.treemodel import TreeModel
from embedzk.tree import (
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteOp,
    MultiOp,
    SetDataOp,
    Txn,
)
from embedzk.tree import snapshot as tree_snapshot
from embedzk.tree.datatree import META
from embedzk.tree.digest import node_digest


class Both:
    """The DataTree and the TreeModel, fed the same transactions."""

    def __init__(self) -> None:
        self.tree = DataTree()
        self.model = TreeModel()
        self.zxid = 0

    def apply(self, op: Any, session: int = 0) -> Any:
        self.zxid += 1
        got = self.tree.apply(Txn(session, 1_000, op), self.zxid)
        expected = self.model.apply(op, session)
        if got.error is None:
            assert expected[0] == "ok", (op, got, expected)
            if isinstance(op, CreateOp):
                assert got.value == expected[1]
        else:
            assert expected[0] == "err", (op, got, expected)
        return got.value

    def cversion(self, path: str) -> int:
        stat = self.tree.get(path)[1]
        assert self.model.nodes[path].cversion == stat.cversion, path
        return stat.cversion


def test_the_sequence_measured_on_zookeeper_3_8() -> None:
    # Through kazoo against ZooKeeper 3.8: creates of item-, item-, plain, item- give suffixes 0, 1, 3; deleting
    # plain makes cversion 5; the next sequential child gets 4, and cversion is then 6.
    zk = Both()
    zk.apply(CreateOp("/q"))
    created = [zk.apply(CreateOp(p, sequential=p.endswith("-"))) for p in ("/q/item-", "/q/item-", "/q/plain", "/q/item-")]
    assert created == ["/q/item-0000000000", "/q/item-0000000001", "/q/plain", "/q/item-0000000003"]
    assert zk.cversion("/q") == 4
    zk.apply(DeleteOp("/q/plain"))
    assert zk.cversion("/q") == 5
    assert zk.apply(CreateOp("/q/item-", sequential=True)) == "/q/item-0000000004"
    assert zk.cversion("/q") == 6


def test_a_deletion_by_a_closing_session_and_in_a_multi_counts_too() -> None:
    zk = Both()
    zk.apply(CreateSessionOp(7, 5_000, "p"))
    zk.apply(CreateOp("/m"))
    zk.apply(CreateOp("/m/e", ephemeral=True), session=7)
    zk.apply(MultiOp((CreateOp("/m/a"), DeleteOp("/m/a"), CreateOp("/m/s-", sequential=True))))
    assert zk.cversion("/m") == 4  # e, a, -a, s-
    zk.apply(CloseSessionOp(7))
    assert zk.cversion("/m") == 5
    assert zk.apply(CreateOp("/m/s-", sequential=True)) == "/m/s-0000000003"


def test_a_failed_multi_leaves_cversion_as_it_was() -> None:
    zk = Both()
    zk.apply(CreateOp("/f"))
    zk.apply(CreateOp("/f/x"))
    zk.apply(MultiOp((DeleteOp("/f/x"), CreateOp("/f/y"), SetDataOp("/missing", b""))))
    assert zk.cversion("/f") == 1


def test_cversion_wraps_as_a_java_int() -> None:
    # A parent that had 2**31 - 1 children created and none left: ZooKeeper computes 2 * cversion - 0 in an int.
    creations = (1 << 31) - 1
    records = [
        ("/", b"", 0, 0, 2, 0, 0, 0, 1, 0, 0),
        ("/p", b"", 1, 1, 2, 10, 10, 0, creations, 0, 0),
    ]
    digest = sum(node_digest(r[0], META.pack(*r[2:]), r[1]) for r in records)
    chunks = tree_snapshot.write_snapshot(
        tree_snapshot.SnapshotHeader(tree_snapshot.FORMAT_VERSION, 2, 1 << 20),
        [],
        records,
        tree_snapshot.SnapshotTrailer(len(records), 0, digest, 2),
        1 << 16,
    )
    tree = DataTree.restore(chunks)
    assert tree.get("/p")[1].cversion == -2


paths = st.sampled_from(["/a", "/a/b", "/a/s-", "/c", "/c/d-", "/a/b/e"])
ops = st.one_of(
    st.builds(lambda p, s, e, m: CreateOp(p, sequential=s, ephemeral=e, makepath=m), paths, st.booleans(),
              st.booleans(), st.booleans()),
    st.builds(DeleteOp, paths),
    st.builds(lambda p: SetDataOp(p, b"v"), paths),
    st.just(CloseSessionOp(3)),
    st.just(CreateSessionOp(3, 5_000, "p")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ops, st.sampled_from([0, 3])), max_size=40), st.data())
def test_the_tree_and_the_simulators_model_agree_on_every_cversion(steps: list[tuple[Any, int]], data: Any) -> None:
    zk = Both()
    for op, session in steps:
        if isinstance(op, DeleteOp) and op.path in zk.model.nodes and zk.model.nodes[op.path].children:
            # Mostly leaves: a delete of a node with children fails and says nothing about cversion.
            op = DeleteOp(sorted(p for p in zk.model.nodes if p.startswith(op.path + "/"))[-1])
        if isinstance(op, (CreateOp, DeleteOp, SetDataOp)) and data.draw(st.integers(0, 5)) == 0:
            op = MultiOp((op, CreateOp("/a/s-", sequential=True, makepath=True)))
        zk.apply(op, session)
        for path in zk.model.nodes:
            zk.cversion(path)
