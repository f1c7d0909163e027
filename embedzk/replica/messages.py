"""What replicas say to each other above the consensus protocol, and what a log entry of theirs holds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from embedzk.codec import encode, encode_spliced, message
from embedzk.consensus import Message
from embedzk.membership.messages import (
    ClusterInfo,
    FoundAccept,
    FoundAccepted,
    Founded,
    FoundPrepare,
    FoundPromise,
    FoundRefused,
    FoundReject,
    JoinChallenge,
    JoinProof,
    JoinRefused,
    JoinRequest,
    LeaveRequest,
    LivenessEcho,
    LivenessProbe,
    MemberChange,
    MemberChangeResult,
    MemberStatus,
    Presence,
    Removed,
)
from embedzk.tree.txn import Op, Txn

#: Messages bundled into one frame add up to at most this many bytes; a larger one goes alone. Bundling pays for
#: many small messages (forwards, acknowledgements); a big append gains nothing from company.
BUNDLE_LIMIT = 256 * 1024


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
class SnapshotHeaderV1:
    """The first chunk of a replica snapshot in format 1 (read, never written any more)."""

    format: int
    addresses: dict[str, str] = field(default_factory=dict)
    last_time_ms: int = 0


@message(71)
@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """The first chunk of a replica snapshot: what the replica keeps beside the tree. The tree's chunks follow.

    Format 2 added the cluster's id and protocol version, and the keys of removed members. ``format`` says which layout the rest of the snapshot
    has; a newer one than the reader knows is refused with an error naming both.
    """

    format: int
    addresses: dict[str, str] = field(default_factory=dict)
    last_time_ms: int = 0
    cluster_uuid: str = ""
    cluster_version: int = 0
    #: Member keys removed from the cluster, newest last (bounded): never admitted again.
    removed: tuple[str, ...] = ()


@message(88)
@dataclass(frozen=True, slots=True)
class SetClusterId:
    """The cluster's id, proposed by its first leader (a founded cluster's id from the founding)."""

    cluster_uuid: str


@message(89)
@dataclass(frozen=True, slots=True)
class SetClusterVersion:
    """The protocol version the cluster runs from here on (only ever raised)."""

    version: int


@message(90)
@dataclass(frozen=True, slots=True)
class SetMemberAddress:
    """Member ``key`` listens at ``address`` now (it came back somewhere else)."""

    key: str
    address: str


@message(91)
@dataclass(frozen=True, slots=True)
class ClusterCommand:
    """The data of a normal log entry that changes what the replicas know of the cluster, not the tree."""

    op: SetClusterId | SetClusterVersion | SetMemberAddress


@message(70)
@dataclass(frozen=True, slots=True)
class Bundle:
    """Several messages to one recipient in one frame, in the order they were sent: one transport send and one
    receive instead of many (a follower under load forwards many requests per loop iteration)."""

    messages: tuple[
        Message
        | Forward
        | ForwardRejected
        | SessionPing
        | FoundPrepare
        | FoundPromise
        | FoundReject
        | FoundAccept
        | FoundAccepted
        | Founded
        | FoundRefused
        | ClusterInfo
        | JoinRequest
        | JoinRefused
        | JoinChallenge
        | JoinProof
        | LivenessProbe
        | LivenessEcho
        | Presence
        | Removed
        | MemberStatus
        | LeaveRequest
        | MemberChange
        | MemberChangeResult,
        ...,
    ]


def pack(messages: Iterable[tuple[str, Any]], limit: int = BUNDLE_LIMIT) -> list[tuple[str, bytes]]:
    """Encode ``(recipient, message)`` pairs into frames: per recipient, its messages in order, several small ones
    in one :class:`Bundle` (up to ``limit`` bytes), a lone one as it is."""
    by_recipient: dict[str, list[bytes]] = {}
    for to, msg in messages:
        encoded = by_recipient.get(to)
        if encoded is None:
            encoded = by_recipient[to] = []
        encoded.append(encode(msg))
    frames: list[tuple[str, bytes]] = []
    for to, encoded in by_recipient.items():
        if len(encoded) == 1:
            frames.append((to, encoded[0]))
            continue
        group: list[bytes] = []
        size = 0
        for item in encoded:
            if group and size + len(item) > limit:
                frames.append((to, _frame(group)))
                group, size = [], 0
            group.append(item)
            size += len(item)
        frames.append((to, _frame(group)))
    return frames


def _frame(group: list[bytes]) -> bytes:
    return group[0] if len(group) == 1 else encode_spliced(Bundle, group)
