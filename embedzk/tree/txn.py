"""Transactions: what the log carries for the tree, and what :meth:`DataTree.apply` takes.

A transaction is decided by the leader: everything that is not a pure function of the log (the time, the session
id of a new session, the decision to reap a container) is written into it. Conditions (versions, existence) are
evaluated when it is applied, identically on every replica.

ACLs travel in the transactions too (:class:`WithACL`, :class:`SetACLOp`), and so do the identities the ACL checks
are made against (:class:`Authorized`): the peer that serves a client vouches for who it is, and every replica then
decides the same way whether the client may do what it asks. An ACL here is a tuple of ``(perms, scheme, id)``
entries (see :mod:`embedzk.tree.acl`).

Tags are the wire format and never move: 1-9 here, 10-13 the snapshot's messages (:mod:`embedzk.tree.snapshot`),
14-16 the ACL transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from embedzk.codec import message


@message(1)
@dataclass(frozen=True, slots=True)
class CreateOp:
    """Create ``path`` with ``data``.

    ``ephemeral``: owned by the transaction's session, removed when it closes. ``sequential``: a ``%010d`` suffix
    is appended, the number of children the parent has had created (ZooKeeper's kept cversion: deletions do not
    count). ``container``: removed by the leader once its last child is gone. ``ttl``: milliseconds; removed once
    unmodified that long and childless. ``makepath``: missing ancestors are created as empty persistent nodes first.
    """

    path: str
    data: bytes = b""
    ephemeral: bool = False
    sequential: bool = False
    container: bool = False
    ttl: int | None = None
    makepath: bool = False


@message(2)
@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete ``path`` if its version is ``version`` (-1: any)."""

    path: str
    version: int = -1


@message(3)
@dataclass(frozen=True, slots=True)
class SetDataOp:
    """Replace the data of ``path`` if its version is ``version`` (-1: any)."""

    path: str
    data: bytes
    version: int = -1


@message(4)
@dataclass(frozen=True, slots=True)
class CheckOp:
    """In a multi: fail unless ``path`` exists with version ``version`` (-1: any)."""

    path: str
    version: int = -1


@message(15)
@dataclass(frozen=True, slots=True)
class WithACL:
    """``op``, a create, whose node (and, with makepath, every ancestor it creates) gets ``acl`` instead of the
    open ACL. An ``auth`` entry stands for the requester's digest identities (see :class:`Authorized`)."""

    op: CreateOp
    acl: tuple[tuple[int, str, str], ...]


SubOp = Union[CreateOp, DeleteOp, SetDataOp, CheckOp, WithACL]


@message(5)
@dataclass(frozen=True, slots=True)
class MultiOp:
    """Operations applied all or nothing, in order."""

    ops: tuple[SubOp, ...]


@message(6)
@dataclass(frozen=True, slots=True)
class CreateSessionOp:
    """Open session ``session_id`` (chosen by the proposer; 1 <= id < 2**56) for the peer ``owner``."""

    session_id: int
    timeout_ms: int
    owner: str


@message(7)
@dataclass(frozen=True, slots=True)
class CloseSessionOp:
    """Close ``session_id``: every ephemeral node it owns is deleted."""

    session_id: int


@message(8)
@dataclass(frozen=True, slots=True)
class DeleteContainerOp:
    """Reap ``path``, a container whose children are gone or a TTL node that expired; proposed by the leader.

    Applied only if the condition still holds at apply time (evaluated against the transaction's time), so a
    change that raced with the proposal wins.
    """

    path: str


@message(14)
@dataclass(frozen=True, slots=True)
class SetACLOp:
    """Replace the ACL of ``path`` if its ACL version (Stat.aversion) is ``version`` (-1: any); needs ADMIN."""

    path: str
    acl: tuple[tuple[int, str, str], ...]
    version: int = -1


@message(16)
@dataclass(frozen=True, slots=True)
class Authorized:
    """``op`` asked by a requester with the identities ``ids``, ``(scheme, id)`` pairs, that its ACL checks use.

    The peer serving the requester vouches for the identities (it checked the credentials); an operation without
    this wrapper is checked as asked by nobody in particular, whom only ``world`` entries admit. ``op`` is neither
    an Authorized nor a session operation.
    """

    ids: tuple[tuple[str, str], ...]
    op: Op


Op = Union[
    CreateOp,
    DeleteOp,
    SetDataOp,
    CheckOp,
    MultiOp,
    CreateSessionOp,
    CloseSessionOp,
    DeleteContainerOp,
    SetACLOp,
    WithACL,
    Authorized,
]


@message(9)
@dataclass(frozen=True, slots=True)
class Txn:
    """One change to the tree: the operation, the session that asked for it, and the leader's time in ms."""

    session_id: int
    time_ms: int
    op: Op
