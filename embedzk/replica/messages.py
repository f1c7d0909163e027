"""What replicas say to each other above the consensus protocol, and what a log entry of theirs holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from embedzk.codec import message
from embedzk.tree.txn import Op, Txn


@message(64)
@dataclass(frozen=True, slots=True)
class Command:
    """The data of a normal log entry: a transaction, and who asked for it.

    ``origin``, ``incarnation`` (a number the replica draws at each start, because request ids start again then)
    and ``request_id`` let the peer that asked recognise its own request when the entry is applied; every other replica applies the transaction all the same. ``request_id`` 0 means nobody waits for it (a
    leader's own housekeeping: expiring sessions, reaping containers).
    """

    origin: str
    incarnation: int
    request_id: int
    txn: Txn


@message(65)
@dataclass(frozen=True, slots=True)
class Forward:
    """A follower's request, sent to the leader it knows, which stamps the time and proposes it.

    ``term`` is the term the follower knew when it sent this: a leader proposes a forward only in that same term,
    so a copy delayed or duplicated by the network can never be proposed twice (the follower gives up on requests
    still pending when the term changes, their outcome unknown).
    """

    term: int
    incarnation: int
    request_id: int
    session_id: int
    op: Op


@message(66)
@dataclass(frozen=True, slots=True)
class ForwardRejected:
    """A forward was not proposed (not leader, other term, busy).

    ``term`` and ``incarnation`` are the forward's own, so that an answer to an older copy is told apart from a
    current one. ``retry_safe`` says that no copy of the request can have been proposed in that term: the node
    refusing it leads that term now (and would have recognised an earlier copy) or never led it. Otherwise an
    earlier copy may be in the log, and sending the request again could apply it twice: the follower waits for
    the term to end instead, and the outcome is unknown."""

    term: int
    incarnation: int
    request_id: int
    reason: str
    retry_safe: bool


@message(67)
@dataclass(frozen=True, slots=True)
class SessionPing:
    """A follower's heartbeat for the sessions it holds, so the leader keeps them alive."""

    session_ids: tuple[int, ...]


@message(68)
@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """The first chunk of a replica snapshot: what the replica keeps beside the tree. The tree's chunks follow."""

    format: int
    addresses: dict[str, str] = field(default_factory=dict)
    last_time_ms: int = 0


@message(69)
@dataclass(frozen=True, slots=True)
class Join:
    """A peer that is not yet a member asks to be added: as a learner (an observer) or as a voter.

    Sent to every known member until the peer sees itself in the membership; only the leader acts on it.
    """

    address: str
    learner: bool = True
