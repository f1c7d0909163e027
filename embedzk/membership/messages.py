"""What peers say to each other about membership: founding a cluster, joining it, leaving it, being there.

These travel in frames like every other message (codec tags 72-87 and 92-95). Founding messages go between founders by
address, because a founder does not know the others' member keys before the founding; replies go to the address
the request carries. The rest are addressed by member key, except a joiner's first requests, which go to the seed
or member addresses it was configured with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embedzk.codec import message
from embedzk.membership.identity import Ballot, FoundingValue

__all__ = [
    "ClusterInfo",
    "FoundAccept",
    "FoundAccepted",
    "FoundPrepare",
    "FoundPromise",
    "FoundRefused",
    "FoundReject",
    "Founded",
    "JoinChallenge",
    "JoinProof",
    "JoinRefused",
    "JoinRequest",
    "LeaveRequest",
    "LivenessEcho",
    "LivenessProbe",
    "MemberChange",
    "MemberChangeResult",
    "MemberStatus",
    "Presence",
    "Removed",
]


@message(72)
@dataclass(frozen=True, slots=True)
class FoundPrepare:
    """Paxos phase 1a: a founder asks the others to promise ``ballot`` (and say what they accepted before)."""

    ballot: Ballot
    founders: tuple[str, ...]
    reply_to: str


@message(73)
@dataclass(frozen=True, slots=True)
class FoundPromise:
    """Phase 1b: the sender (member key ``key`` at ``address``) promises ``ballot``; ``accepted`` is what it accepted
    earlier, under ``accepted_ballot``."""

    ballot: Ballot
    key: str
    address: str
    accepted_ballot: Ballot | None = None
    accepted: FoundingValue | None = None


@message(74)
@dataclass(frozen=True, slots=True)
class FoundReject:
    """The sender promised ``promised``, higher than ``ballot``: the proposer starts a higher round later."""

    ballot: Ballot
    promised: Ballot


@message(75)
@dataclass(frozen=True, slots=True)
class FoundAccept:
    """Paxos phase 2a: accept ``value`` under ``ballot``."""

    ballot: Ballot
    value: FoundingValue
    reply_to: str


@message(76)
@dataclass(frozen=True, slots=True)
class FoundAccepted:
    """Phase 2b: the sender (member key ``key`` at ``address``) accepted the value of ``ballot``."""

    ballot: Ballot
    key: str
    address: str


@message(77)
@dataclass(frozen=True, slots=True)
class Founded:
    """The founding is decided: ``value`` is the cluster."""

    value: FoundingValue


@message(78)
@dataclass(frozen=True, slots=True)
class FoundRefused:
    """The sender will not take part: its configuration differs (``reason`` names both sides)."""

    reason: str


@message(79)
@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """A member's answer to a founder or joiner: the cluster exists. ``leader`` is its key ("" if unknown);
    ``members`` maps member keys to addresses; ``version`` is the protocol version the cluster runs."""

    cluster_uuid: str
    leader: str
    members: dict[str, str] = field(default_factory=dict)
    version: int = 0


@message(80)
@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A peer that is not a member asks to be added (as a learner). ``voter``: it is configured to vote (a static
    member); ``versions``: the lowest and highest protocol versions it speaks."""

    key: str
    address: str
    min_version: int
    max_version: int
    voter: bool = False


@message(81)
@dataclass(frozen=True, slots=True)
class JoinRefused:
    """The leader will not add the sender; ``reason`` says why (a clear error for the joiner's start())."""

    key: str
    reason: str


@message(82)
@dataclass(frozen=True, slots=True)
class Presence:
    """A member tells the leader (or, knowing none, every member) where it listens and what it speaks, every
    second or so: how the leader finds a member that came back at a new address, and learns the cluster's
    version. ``voter``: it is configured to vote; ``leaving``: it is stopping with ``leave=True``."""

    address: str
    min_version: int
    max_version: int
    voter: bool = False
    leaving: bool = False


@message(83)
@dataclass(frozen=True, slots=True)
class Removed:
    """The leader of ``term`` tells member ``key``, which is not in its membership, that it was removed.

    Sent to an address: the key says whom it is for, since a new member may listen at that address by the time it
    arrives (a worker back on a fresh disk, a delayed frame), and it must not take the news for its own."""

    key: str
    term: int
    reason: str


@message(84)
@dataclass(frozen=True, slots=True)
class MemberStatus:
    """The leader's view of every member (protocol version 3): keys of the reachable ones, and each one's lag
    (entries behind the leader's commit index). Lets ``members()`` on any peer say what the leader sees."""

    term: int
    reachable: tuple[str, ...]
    lag: dict[str, int] = field(default_factory=dict)


@message(85)
@dataclass(frozen=True, slots=True)
class LeaveRequest:
    """A member stopping with ``leave=True`` asks the leader to hand its seat on and remove it."""

    key: str


@message(86)
@dataclass(frozen=True, slots=True)
class MemberChange:
    """An application's add_member/remove_member, forwarded to the leader. ``kind`` is "add" or "remove";
    ``request`` numbers it so that the answer finds its caller; ``key`` is the member a removal is for (the one
    that had the id when it was asked: a peer that then joins again under the id is another member)."""

    request: int
    kind: str
    peer_id: str
    address: str = ""
    voter: bool = False
    key: str = ""


@message(87)
@dataclass(frozen=True, slots=True)
class MemberChangeResult:
    """The leader's answer to a MemberChange: ``error`` is "" once the change is committed, else why not."""

    request: int
    error: str = ""
    done: bool = True


@message(92)
@dataclass(frozen=True, slots=True)
class JoinChallenge:
    """The leader asks joiner ``key`` to show that it is alive now, before it removes a member on its behalf
    (protocol version 5, sent only to a joiner that speaks it). The joiner answers with a :class:`JoinProof`
    carrying ``nonce``, sent to ``reply_to`` (the leader's address: a joiner may not know its key's route yet).

    Sent to the address the join request named: a process that has stopped since it asked, whose request a
    partition held back or the network replayed, cannot answer, and must not have a live member replaced by its
    stale request (whoever listens at that address now is another member, and ignores a challenge for another
    key)."""

    key: str
    nonce: int
    reply_to: str


@message(93)
@dataclass(frozen=True, slots=True)
class JoinProof:
    """Joiner ``key`` answers a :class:`JoinChallenge`: it is alive, and listens where it said it does."""

    key: str
    nonce: int


@message(94)
@dataclass(frozen=True, slots=True)
class LivenessProbe:
    """The leader of ``term`` asks a member to show that it is alive now (protocol version 6, sent only to a member
    that speaks it). The member answers with a :class:`LivenessEcho` of the same ``term`` and ``seq``.

    The leader judges a member reachable only by echoes of its own probes, dated when the probe was sent: any other
    frame may be a copy of one sent before the member died, which a slow or replaying network delivers late (an
    echo of an old probe is dated by that probe, so it says nothing of now). ``(term, seq)`` names a probe once:
    a member leads at most once per term, and counts its probes up within it."""

    term: int
    seq: int


@message(95)
@dataclass(frozen=True, slots=True)
class LivenessEcho:
    """A member answers the :class:`LivenessProbe` of ``term`` numbered ``seq``."""

    term: int
    seq: int
