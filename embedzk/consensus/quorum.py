"""Majority rules over a set of voters (etcd: quorum/majority.go).

Only voters count; learners are never part of a quorum. With single-server membership changes (thesis 4.1) there
is never a joint configuration, so one majority rule is all there is.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping

__all__ = ["VoteResult", "committed_index", "vote_result", "quorum_size"]


class VoteResult(enum.Enum):
    """The outcome of a vote so far."""

    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def quorum_size(voters: Collection[str]) -> int:
    """How many voters make a majority."""
    return len(voters) // 2 + 1


def committed_index(voters: Collection[str], match: Callable[[str], int]) -> int:
    """The largest index that a majority of ``voters`` hold (``match(id)`` for each).

    An empty voter set commits nothing here (etcd returns "infinity", which only matters for joint configurations,
    and we have none).
    """
    n = len(voters)
    if n == 0:
        return 0
    if n == 1:
        for v in voters:
            return match(v)
    acked = sorted((match(v) for v in voters), reverse=True)
    return acked[n // 2]


def vote_result(voters: Collection[str], votes: Mapping[str, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer grant, PENDING otherwise.

    Votes from non-voters are ignored.
    """
    if not voters:
        # etcd: an empty configuration wins every vote; it cannot happen here (a candidate is a voter).
        return VoteResult.WON
    granted = rejected = 0
    for v in voters:
        answer = votes.get(v)
        if answer is True:
            granted += 1
        elif answer is False:
            rejected += 1
    q = quorum_size(voters)
    if granted >= q:
        return VoteResult.WON
    if len(voters) - rejected < q:
        return VoteResult.LOST
    return VoteResult.PENDING
