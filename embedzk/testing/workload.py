"""What the simulated clients ask for: flat keys for the linearizability checker, and a small tree with nested
paths, sequential and ephemeral nodes and watches for the checks against the committed log.

Every call is a ``(kind, args)`` pair of plain values (see :mod:`embedzk.testing.history` for the flat kinds); the
tree's kinds start with ``t``:

=================  ===========================================  =====================================================
``tcreate``        ``(path, data, ephemeral, sequential, mkp)``  ``("ok", created path)``
``tset``           ``(path, data, version)``                     ``("ok", new version)``
``tdelete``        ``(path, version)``                           ``("ok", None)``
``tget``           ``(path,)``                                   ``("ok", (data, version))``: a plain, local read
``tsync_get``      ``(path,)``                                   the same after ``sync()``
``tsync_children`` ``(path,)``                                   ``("ok", sorted names)`` after ``sync()``
``watch``          ``(kind, path)``                              ``("ok", None)``: a one-shot watch set locally
=================  ===========================================  =====================================================
"""

from __future__ import annotations

import random
from typing import Any

from embedzk.errors import EmbedZKError
from embedzk.tree.txn import CheckOp, CreateOp, DeleteOp, MultiOp, Op, SetDataOp

__all__ = [
    "FLAT_KINDS",
    "READ_KINDS",
    "SYNCED_READS",
    "TREE_PATHS",
    "Workload",
    "error_name",
    "result_of",
    "to_op",
]

#: Kinds the linearizability checker judges (flat keys only).
FLAT_KINDS = frozenset({"create", "set", "delete", "get", "sync_get", "multi"})
#: Kinds that read (and are answered from the local tree): plain ones, and ones after a sync().
READ_KINDS = frozenset({"get", "sync_get", "tget", "tsync_get", "tsync_children", "watch"})
SYNCED_READS = frozenset({"sync_get", "tsync_get", "tsync_children"})
#: The tree the tree kinds work in: nested, so creates meet missing parents and deletes meet children.
TREE_PATHS = ("/t", "/t/a", "/t/b", "/t/a/c", "/t/a/c/d", "/t/b/e")
_SEQUENCE_PARENTS = ("/t/a", "/t/b")
_WATCH_KINDS = ("data", "exist", "child")


class Workload:
    """Draws the clients' next calls from the simulation's RNG."""

    def __init__(self, rng: random.Random, keys: int) -> None:
        self._rng = rng
        self._keys = keys
        #: Paths of sequential nodes created so far (the latest few), so later calls can touch them.
        self.sequential: list[str] = []

    def created(self, path: str) -> None:
        """A create answered ``path``: remember sequential ones as targets."""
        if path not in TREE_PATHS and path.startswith("/t/"):
            self.sequential.append(path)
            del self.sequential[:-8]

    def next_call(self, reader: bool = False) -> tuple[str, tuple[Any, ...]]:
        """A random call: half on the flat keys, the rest on the tree. A ``reader`` (most workloads are read-mostly)
        only reads, mostly after a sync."""
        rng = self._rng
        if reader:
            if rng.random() < 0.5:
                return rng.choice(("sync_get", "sync_get", "get")), (f"/k{rng.randrange(self._keys)}",)
            return rng.choice(("tsync_get", "tsync_children", "tget")), (self._target(),)
        if rng.random() < 0.5:
            return self._flat()
        return self._tree()

    def _flat(self) -> tuple[str, tuple[Any, ...]]:
        rng = self._rng
        key = f"/k{rng.randrange(self._keys)}"
        value = f"v{rng.randrange(1000)}".encode()
        roll = rng.random()
        if roll < 0.2:
            return "create", (key, value)
        if roll < 0.45:
            return "set", (key, value, rng.choice((-1, -1, 0, 1, 2, 3)))
        if roll < 0.55:
            return "delete", (key, rng.choice((-1, -1, 0, 1, 2)))
        if roll < 0.65:
            return "get", (key,)
        if roll < 0.85:
            return "sync_get", (key,)
        subs: list[tuple[Any, ...]] = []
        for _ in range(rng.randint(1, 3)):
            k = f"/k{rng.randrange(self._keys)}"
            v = f"m{rng.randrange(1000)}".encode()
            sub = rng.choice(("create", "set", "delete", "check"))
            if sub == "create":
                subs.append(("create", k, v))
            elif sub == "set":
                subs.append(("set", k, v, rng.choice((-1, 0, 1))))
            elif sub == "delete":
                subs.append(("delete", k, rng.choice((-1, 0, 1))))
            else:
                subs.append(("check", k, rng.choice((-1, 0, 1))))
        return "multi", tuple(subs)

    def _target(self) -> str:
        rng = self._rng
        if self.sequential and rng.random() < 0.3:
            return rng.choice(self.sequential)
        return rng.choice(TREE_PATHS)

    def _tree(self) -> tuple[str, tuple[Any, ...]]:
        rng = self._rng
        value = f"t{rng.randrange(1000)}".encode()
        roll = rng.random()
        if roll < 0.3:
            if rng.random() < 0.3:
                parent = rng.choice(_SEQUENCE_PARENTS)
                return "tcreate", (f"{parent}/s-", value, rng.random() < 0.5, True, False)
            return "tcreate", (rng.choice(TREE_PATHS), value, rng.random() < 0.3, False, rng.random() < 0.2)
        if roll < 0.45:
            return "tset", (self._target(), value, rng.choice((-1, -1, 0, 1)))
        if roll < 0.6:
            return "tdelete", (self._target(), rng.choice((-1, -1, 0)))
        if roll < 0.7:
            return "tget", (self._target(),)
        if roll < 0.8:
            return "tsync_get", (self._target(),)
        if roll < 0.88:
            return "tsync_children", (rng.choice(TREE_PATHS),)
        return "watch", (rng.choice(_WATCH_KINDS), rng.choice(TREE_PATHS + tuple(self.sequential[-2:])))


def to_op(kind: str, args: tuple[Any, ...]) -> Op:
    """The tree operation a write call submits."""
    if kind == "create":
        return CreateOp(args[0], args[1])
    if kind == "set" or kind == "tset":
        return SetDataOp(args[0], args[1], args[2])
    if kind == "delete" or kind == "tdelete":
        return DeleteOp(args[0], args[1])
    if kind == "tcreate":
        path, data, ephemeral, sequential, makepath = args
        return CreateOp(path, data, ephemeral=ephemeral, sequential=sequential, makepath=makepath)
    if kind == "multi":
        ops: list[Any] = []
        for sub in args:
            if sub[0] == "create":
                ops.append(CreateOp(sub[1], sub[2]))
            elif sub[0] == "set":
                ops.append(SetDataOp(sub[1], sub[2], sub[3]))
            elif sub[0] == "delete":
                ops.append(DeleteOp(sub[1], sub[2]))
            else:
                ops.append(CheckOp(sub[1], sub[2]))
        return MultiOp(tuple(ops))
    raise ValueError(kind)


_ERROR_NAMES = {
    "NoNodeError": "NoNode",
    "NodeExistsError": "NodeExists",
    "BadVersionError": "BadVersion",
    "NotEmptyError": "NotEmpty",
    "SessionExpiredError": "SessionExpired",
    "NoChildrenForEphemeralsError": "NoChildrenForEphemerals",
}


def error_name(error: EmbedZKError) -> str:
    """The code a history records for ``error`` (ZooKeeper's names for the errors the tree decides)."""
    return _ERROR_NAMES.get(type(error).__name__, type(error).__name__)


def result_of(kind: str, value: Any, error: EmbedZKError | None) -> tuple[Any, ...]:
    """The output a history records for a write's (or a sync's) completion."""
    if error is not None:
        return ("err", error_name(error))
    if kind in SYNCED_READS:
        return ("ok", None)
    if kind == "create" or kind == "tcreate":
        return ("ok", value)
    if kind == "set" or kind == "tset":
        return ("ok", value.version)
    return ("ok", None)
