"""Who a member is: its id, and the disk it holds its log on.

A Raft voter that forgets its vote or its log and votes again breaks the proof of Raft's safety: an entry that a
majority acknowledged can lose that majority. With embedded peers a fresh disk under an old id is the ordinary case
(a container restarted on an empty volume, ``data_dir=None``), so a member is its id *and* its disk: every disk
draws a random tag when it is created, and the member's name in the consensus protocol, its **member key**, is
``"<id>@<tag>"``. A peer on a fresh disk is thereby a new member as far as Raft is concerned: it cannot vote,
campaign or count in a quorum in the place of the member that had its id before. It joins as a new member, and the
old one is replaced through a membership change (see :mod:`embedzk.membership.autopilot`).

Data directories written before disks had tags hold a member whose key is the bare id (a *legacy* key); such a key
is only ever used by the disk that recorded it, so the rule holds for them too.

The :class:`MemberRecord` is what a disk keeps about its member beside the log: its key, the cluster it belongs to,
and its part in the founding of a cluster (:mod:`embedzk.membership.founding`).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from embedzk.codec import message

__all__ = [
    "Ballot",
    "FoundingValue",
    "MemberRecord",
    "TAG_LENGTH",
    "is_address",
    "member_key",
    "new_tag",
    "user_id",
]

#: Hex digits in a disk's tag: 48 random bits, so two disks of one id never share one in practice.
TAG_LENGTH = 12
_HEX = frozenset(string.hexdigits.lower())


def new_tag(rng: random.Random | None = None) -> str:
    """A fresh disk tag (``rng`` for reproducible runs; the system's randomness otherwise)."""
    bits = (rng or random.SystemRandom()).getrandbits(4 * TAG_LENGTH)
    return f"{bits:0{TAG_LENGTH}x}"


def member_key(peer_id: str, tag: str) -> str:
    """The member key of ``peer_id`` on the disk tagged ``tag``."""
    return f"{peer_id}@{tag}"


def user_id(key: str) -> str:
    """The peer id inside a member key (a legacy key is the id itself)."""
    if len(key) > TAG_LENGTH + 1 and key[-TAG_LENGTH - 1] == "@" and _HEX.issuperset(key[-TAG_LENGTH:]):
        return key[: -TAG_LENGTH - 1]
    return key


def is_address(name: str) -> bool:
    """Whether a recipient name is an address (``tcp://...``) rather than a member key: peer ids never hold
    ``://``, so the two never meet."""
    return "://" in name


@message(131)
@dataclass(frozen=True, order=True, slots=True)
class Ballot:
    """A founding proposal's number: rounds compare first, the proposer's key breaks ties (Paxos ballots)."""

    round: int
    proposer: str


@message(132)
@dataclass(frozen=True, slots=True)
class FoundingValue:
    """What a founding decides: the cluster's id and its first voters, as (member key, address) pairs.

    ``founders`` is the founder address list it was decided among, so that peers configured with another list can
    tell (and refuse to take part) instead of silently founding a second cluster.
    """

    cluster_uuid: str
    voters: tuple[tuple[str, str], ...]
    founders: tuple[str, ...]

    def voter_keys(self) -> tuple[str, ...]:
        """The member keys of the first voters."""
        return tuple(key for key, _address in self.voters)


@message(133)
@dataclass(frozen=True, slots=True)
class MemberRecord:
    """What a disk keeps about its member (persisted beside the log, synced before anything depends on it).

    ``key`` is the member key (fixed when the disk is created). ``cluster_uuid`` is the cluster the disk belongs to,
    "" until it is known (a fresh disk, or a legacy one). ``promised`` and ``accepted`` are the disk's part as an
    acceptor in founding a cluster; they matter only until the cluster is founded, and must survive a restart
    like a Raft vote (a founder that forgot a promise could help decide two different foundings).
    """

    key: str
    cluster_uuid: str = ""
    promised: Ballot | None = None
    accepted: FoundingValue | None = None
    accepted_ballot: Ballot | None = None
