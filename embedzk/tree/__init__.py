"""The replicated state machine: the znode tree with ZooKeeper's semantics, pure and deterministic.

:class:`DataTree` applies :class:`Txn` transactions in log order and answers reads; :class:`ApplyResult` says
what a transaction did and :class:`TreeEvent` what it triggers. The tree does no I/O and reads no clock.
:class:`WatchRegistry` matches those events against the watches of one peer.
"""

from embedzk.tree.datatree import ApplyResult, DataTree, TreeEvent
from embedzk.tree.paths import validate_path
from embedzk.tree.txn import (
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DeleteContainerOp,
    DeleteOp,
    MultiOp,
    SetDataOp,
    Txn,
)
from embedzk.tree.watches import WatchKind, WatchRegistry

__all__ = [
    "ApplyResult",
    "CheckOp",
    "CloseSessionOp",
    "CreateOp",
    "CreateSessionOp",
    "DataTree",
    "DeleteContainerOp",
    "DeleteOp",
    "MultiOp",
    "SetDataOp",
    "TreeEvent",
    "Txn",
    "WatchKind",
    "WatchRegistry",
    "validate_path",
]
