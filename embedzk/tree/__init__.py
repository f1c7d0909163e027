"""The replicated state machine: the znode tree with ZooKeeper's semantics, pure and deterministic.

:class:`DataTree` applies :class:`Txn` transactions in log order and answers reads; :class:`ApplyResult` says
what a transaction did and :class:`TreeEvent` what it triggers. The tree does no I/O and reads no clock.
:class:`WatchRegistry` matches those events against the watches of one peer. ACLs (:mod:`embedzk.tree.acl`) live
in the tree, travel in the transactions (:class:`WithACL`, :class:`SetACLOp`, :class:`Authorized`) and are checked
when a transaction is applied.
"""

from embedzk.tree.acl import OPEN_ACL, SUPER, Perm
from embedzk.tree.datatree import ApplyResult, DataTree, TreeEvent
from embedzk.tree.paths import validate_path
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
from embedzk.tree.watches import WatchKind, WatchRegistry

__all__ = [
    "OPEN_ACL",
    "SUPER",
    "ApplyResult",
    "Authorized",
    "CheckOp",
    "CloseSessionOp",
    "CreateOp",
    "CreateSessionOp",
    "DataTree",
    "DeleteContainerOp",
    "DeleteOp",
    "MultiOp",
    "Perm",
    "SetACLOp",
    "SetDataOp",
    "TreeEvent",
    "Txn",
    "WatchKind",
    "WithACL",
    "WatchRegistry",
    "validate_path",
]
