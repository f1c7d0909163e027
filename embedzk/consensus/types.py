"""The values the consensus core shares with its driver and with storage: entries, hard state, membership.

These mirror etcd-io/raft's raftpb: an :class:`Entry` is one slot of the replicated log, :class:`HardState` is what
must be on disk before a node acknowledges or votes, :class:`ConfState` is the membership in force, and
:class:`SnapshotMeta` names the state a snapshot stands for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from embedzk.codec import message


class EntryType(enum.IntEnum):
    """What an entry's data holds."""

    #: An application command (an encoded tree transaction or replica command); empty data is a no-op.
    NORMAL = 0
    #: An encoded :class:`ConfChange`.
    CONF_CHANGE = 1


@message(32)
@dataclass(frozen=True, slots=True)
class Entry:
    """One slot of the replicated log. ``index`` is the zxid of whatever the entry changes."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@message(33)
@dataclass(frozen=True, slots=True)
class HardState:
    """What a node must persist before it sends anything that depends on it (a vote, an acknowledgment)."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@message(34)
@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership in force: who votes, and who only learns (our observers)."""

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        overlap = set(self.voters) & set(self.learners)
        if overlap:
            raise ValueError(f"{sorted(overlap)} cannot be both voter and learner")

    def members(self) -> tuple[str, ...]:
        """Every member, voters first."""
        return self.voters + self.learners


class ConfChangeType(enum.IntEnum):
    """One membership change at a time (thesis, 4.1): never two in flight."""

    ADD_VOTER = 0
    ADD_LEARNER = 1
    REMOVE = 2
    #: A learner becomes a voter (it already has the log, so the cluster never waits for it to catch up).
    PROMOTE = 3


@message(35)
@dataclass(frozen=True, slots=True)
class ConfChange:
    """A membership change; ``context`` carries what the layer above needs (the new member's address)."""

    type: ConfChangeType
    node_id: str
    context: bytes = b""


@message(36)
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The state a snapshot stands for: the log up to ``index`` (of ``term``) applied, with ``conf_state`` in force."""

    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)
