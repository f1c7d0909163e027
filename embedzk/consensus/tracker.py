"""The membership in force and the leader's per-member progress (etcd: tracker/tracker.go)."""

from __future__ import annotations

from collections.abc import Iterator

from embedzk.consensus.progress import Inflights, Progress
from embedzk.consensus.quorum import VoteResult, committed_index, vote_result
from embedzk.consensus.types import ConfState

__all__ = ["ProgressTracker"]


class ProgressTracker:
    """Voters, learners, a :class:`Progress` for every member (this node included) and the votes of an
    election."""

    __slots__ = ("voters", "learners", "outgoing", "progress", "votes", "max_inflight", "max_inflight_bytes")

    def __init__(self, max_inflight: int, max_inflight_bytes: int | None = None) -> None:
        self.voters: tuple[str, ...] = ()
        self.learners: tuple[str, ...] = ()
        #: Members that the membership change in flight removes: still replicated to (so they learn that the change
        #: committed), never counted.
        self.outgoing: tuple[str, ...] = ()
        self.progress: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def conf_state(self) -> ConfState:
        """The membership in force."""
        return ConfState(voters=self.voters, learners=self.learners)

    def new_progress(self, next_index: int, is_learner: bool) -> Progress:
        """A fresh progress probing at ``next_index``."""
        return Progress(
            match=0,
            next=next_index,
            inflights=Inflights(self.max_inflight, self.max_inflight_bytes),
            is_learner=is_learner,
        )

    def set_conf(self, cs: ConfState, last_index: int, outgoing: tuple[str, ...] = ()) -> None:
        """Switch to ``cs`` (replicating to ``outgoing`` too): members that stay keep their progress, new ones
        probe from ``last_index + 1`` and count as recently active (so check-quorum does not depose a leader
        before they could answer: etcd initProgress), departed ones are forgotten."""
        progress: dict[str, Progress] = {}
        learners = set(cs.learners)
        for member in cs.members() + outgoing:
            pr = self.progress.get(member)
            if pr is None:
                pr = self.new_progress(last_index + 1, member in learners)
                pr.recent_active = True
            pr.is_learner = member in learners
            progress[member] = pr
        self.voters = tuple(cs.voters)
        self.learners = tuple(cs.learners)
        self.outgoing = outgoing
        self.progress = progress

    def committed(self) -> int:
        """The largest index a majority of voters hold."""
        progress = self.progress
        return committed_index(self.voters, lambda v: progress[v].match)

    def quorum_active(self, me: str) -> bool:
        """Whether a majority of voters (this node counted) was heard from recently (check-quorum)."""
        votes = {v: (v == me or self.progress[v].recent_active) for v in self.voters}
        return vote_result(self.voters, votes) == VoteResult.WON

    def reset_votes(self) -> None:
        """Forget the votes of the previous election."""
        self.votes = {}

    def record_vote(self, member: str, granted: bool) -> None:
        """Record the first answer of ``member`` in this election (duplicates do not change it)."""
        if member not in self.votes:
            self.votes[member] = granted

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """(granted, rejected, result) among voters."""
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        return granted, rejected, vote_result(self.voters, self.votes)

    def followers(self, me: str) -> Iterator[tuple[str, Progress]]:
        """Every member (and outgoing member) but ``me``, voters first, in configuration order (deterministic)."""
        for member in self.voters + self.learners + self.outgoing:
            if member != me:
                yield member, self.progress[member]
