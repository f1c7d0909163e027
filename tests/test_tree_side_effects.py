"""The tree has no process-wide side effects: restoring leaves the garbage collector alone, and a snapshot stream
dropped on any thread changes nothing of the tree there (the tree notices on its own thread, at its next change)."""

from __future__ import annotations

import copy
import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from embedzk.tree import CreateOp, DataTree, SetDataOp, Txn


def _tree(nodes: int) -> DataTree:
    tree = DataTree()
    zxid = 0
    for path in ["/d", "/e"] + [f"/d/n{i}" for i in range(nodes)]:
        zxid += 1
        tree.apply(Txn(0, 1_000, CreateOp(path, b"x")), zxid)
    return tree


def _state(tree: DataTree) -> dict[str, Any]:
    """Every attribute of the tree, by identity and (for containers) by content."""
    return {
        name: (id(value), copy.copy(value) if isinstance(value, (list, set, dict)) else value)
        for name, value in vars(tree).items()
    }


@pytest.fixture
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_restore_leaves_the_garbage_collector_on_while_it_reads(collector_enabled: None) -> None:
    chunks = list(_tree(2_000).snapshot_chunks(1024))
    seen: list[bool] = []

    def lazily() -> Iterator[bytes]:
        for chunk in chunks:
            seen.append(gc.isenabled())  # what any other thread of the process finds meanwhile
            yield chunk

    restored = DataTree.restore(lazily())
    assert restored.node_count() == 2_003
    assert len(seen) == len(chunks) > 10 and all(seen)
    assert gc.isenabled()


def test_restore_leaves_a_disabled_collector_disabled() -> None:
    chunks = list(_tree(100).snapshot_chunks())
    was = gc.isenabled()
    gc.disable()
    try:
        DataTree.restore(chunks)
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def test_a_stream_dropped_on_another_thread_changes_nothing_of_the_tree_there() -> None:
    tree = _tree(10)
    stream = tree.snapshot_chunks(256)
    next(stream)
    tree.apply(Txn(0, 2_000, SetDataOp("/d/n1", b"y")), 100)  # copying: the stream still reads the old /d
    holder = [stream]
    del stream
    before = _state(tree)
    dropper = threading.Thread(target=holder.clear)  # the last reference goes on that thread
    dropper.start()
    dropper.join()
    assert _state(tree) == before
    # The tree's own thread notices at its next change, and changes in place again from then on.
    tree.apply(Txn(0, 2_000, SetDataOp("/d/n2", b"y")), 101)
    assert tree._streams == 0 and not tree._copying and not tree._fresh
    root, d = tree._root, tree._root.children["d"]  # type: ignore[index]
    tree.apply(Txn(0, 2_000, SetDataOp("/d/n3", b"y")), 102)
    assert tree._root is root and tree._root.children["d"] is d  # type: ignore[index]


def test_a_dropped_stream_does_not_end_the_copying_for_one_still_read() -> None:
    tree = _tree(10)
    expected = list(tree.snapshot_chunks(256))
    kept = tree.snapshot_chunks(256)
    dropped = tree.snapshot_chunks(256)
    read = [next(kept)]
    del dropped
    for zxid, path in enumerate(["/d/n1", "/d/n2", "/e"], start=100):
        tree.apply(Txn(0, 2_000, SetDataOp(path, b"changed")), zxid)
        assert tree._streams == 1 and tree._copying
    read.extend(kept)
    assert read == expected and not kept.open
    assert tree._streams == 0 and not tree._copying
    assert DataTree.restore(tree.snapshot_chunks()).digest == tree.digest
