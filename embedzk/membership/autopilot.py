"""The autopilot: the leader keeps the cluster's voters by itself while members come, go and die.

Consul's autopilot is the model: dead members are cleaned up, new ones are promoted only once they are stable and
caught up. Rules, in order of urgency; the leader takes at most one change at a time (Raft's single-server
changes, thesis 4.1), and asks :func:`next_change` again once it is applied:

1. a member leaving (``stop(leave=True)``): a voter's seat is handed to a ready learner first, then it is removed;
2. a voter unreachable longer than ``member_timeout``: it is removed, then (rule 4) a ready learner is promoted in its
   place. Removing first is the safer order: with the dead voter still counted, a promotion would leave a
   configuration that also needs the learner being promoted, so a second death, of that learner, would leave the
   cluster without a quorum for good; once the dead voter is out, that death costs nothing (a leaving voter, alive,
   is the other way round: its seat is handed over first);
3. a learner unreachable longer than ``member_timeout``: removed;
4. fewer voters than the target: the best ready learner is promoted;
5. more voters than the target: the voter least fit to vote is demoted to a learner (never the leader).

A learner is *ready* when it is reachable, within ``max_lag`` entries of the leader's commit index, and has been
reachable without a break for ``stabilization`` seconds, so that a member coming and going around the timeout
never flaps between voter and learner. A learner that wants a vote (a static member, or a voter's replacement: the
same id back on a fresh disk) is ready once caught up, without the wait: a rolling restart of voters on fresh disks
must not find the previous one still waiting to be promoted. No change is ever made that would leave fewer than a majority of the
voters reachable, and no learner is promoted while a voter is away unless the voters reachable without that learner
are a majority of the new configuration: the away voter goes first (rule 2), as above. Reachable, for those two
rules, means shown to be by fresh evidence, an echo of one of this leader's probes (``MemberView.proven``): a
member judged by any frame it sends may be dead, its frames late copies (crash-heavy seed 76630: a voter dead for
good passed for reachable on replayed frames, so the leader removed the other voter, which was away, and was left
with the dead one as the other half of a two-voter configuration: no quorum for good, once the away voter came
back to find itself removed), and a new leader's fresh start for every member is no evidence at all. Such a
member is kept, as a reachable one is; a change that needs it waits for its echoes.

Static clusters (``peers=``) have no target: their voters are the members configured to vote
(``MemberView.wants_vote``), promoted once ready; nobody is removed for being unreachable.

Everything here is a pure function of what the leader knows, so it is tested table by table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embedzk.consensus.types import ConfChange, ConfChangeType

__all__ = ["AutopilotPolicy", "MemberView", "next_change"]


@dataclass(frozen=True, slots=True)
class MemberView:
    """What the leader knows of one member."""

    key: str
    voter: bool
    #: Heard from recently (within a few heartbeats).
    reachable: bool
    #: Seconds since last heard from (0.0 while reachable).
    unreachable_for: float
    #: Seconds reachable without a break (0.0 while unreachable).
    stable_for: float
    #: Entries behind the leader's commit index.
    lag: int
    #: Configured to vote (a static member), or added with ``voter=True``.
    wants_vote: bool = False
    #: Stopping with ``leave=True``.
    leaving: bool = False
    #: It has acknowledged an entry of this leader's (its Raft progress matched something). A learner that never
    #: did is not caught up, however short the log: it may be a process gone since it asked to join, whose request
    #: the network replayed.
    acknowledged: bool = True
    #: Shown alive within the reach window by fresh evidence: an echo of one of this leader's probes (the leader
    #: itself always is). False for a member reachable only on weaker grounds: any frame of a member of a release
    #: before liveness probes (or not yet known to answer them), which may be a late copy sent before it died, or
    #: the fresh start every member gets from a new leader. Such a member is kept as a reachable one is, but no
    #: change is made whose quorum would rest on it.
    proven: bool = True


@dataclass(frozen=True, slots=True)
class AutopilotPolicy:
    """How the autopilot behaves. ``voters`` None: a static cluster (see the module docstring)."""

    voters: int | None
    member_timeout: float | None
    stabilization: float
    max_lag: int


def next_change(leader: str, members: Sequence[MemberView], policy: AutopilotPolicy) -> ConfChange | None:
    """The one membership change the leader should propose now, or None."""
    voters = [m for m in members if m.voter]
    learners = [m for m in members if not m.voter]
    ready = sorted(
        (m for m in learners if _ready(m, policy)),
        key=lambda m: (not m.wants_vote, m.lag, -m.stable_for, m.key),
    )
    timeout = policy.member_timeout
    target = policy.voters

    def dead(m: MemberView) -> bool:
        return timeout is not None and not m.reachable and m.unreachable_for > timeout and m.key != leader

    candidates: list[ConfChange] = []
    # 1. Leaving members.
    for m in sorted(members, key=lambda m: m.key):
        if not m.leaving or m.key == leader:
            continue
        if m.voter and ready and (target is None or len(voters) <= target):
            candidates.append(_promote(ready[0]))
        candidates.append(ConfChange(ConfChangeType.REMOVE, m.key))
    # 2. Dead voters: out first (see the module docstring), the promotion follows.
    candidates += [ConfChange(ConfChangeType.REMOVE, m.key) for m in sorted(voters, key=lambda m: m.key) if dead(m)]
    # 3. Dead learners.
    candidates += [ConfChange(ConfChangeType.REMOVE, m.key) for m in sorted(learners, key=lambda m: m.key) if dead(m)]
    # 4-5. The number of voters.
    if target is None:
        candidates += [_promote(m) for m in ready if m.wants_vote]
    elif len(voters) < target:
        candidates += [_promote(m) for m in ready]
    elif len(voters) > target:
        worst = sorted(
            (m for m in voters if m.key != leader and not m.wants_vote),
            key=lambda m: (m.reachable, -m.lag, m.stable_for, m.key),
        ) or sorted((m for m in voters if m.key != leader), key=lambda m: (m.reachable, -m.lag, m.key))
        candidates += [ConfChange(ConfChangeType.ADD_LEARNER, m.key) for m in worst]
    for change in candidates:
        if _keeps_quorum(change, members):
            return change
    return None


def _ready(m: MemberView, policy: AutopilotPolicy) -> bool:
    stable = m.wants_vote or m.stable_for >= policy.stabilization
    return m.reachable and not m.leaving and m.acknowledged and m.lag <= policy.max_lag and stable


def _promote(m: MemberView) -> ConfChange:
    return ConfChange(ConfChangeType.PROMOTE, m.key)


def _keeps_quorum(change: ConfChange, members: Sequence[MemberView]) -> bool:
    """Whether a majority of the voters after ``change`` is reachable, as shown by fresh evidence (the leader
    counts as reachable)."""
    voters = {m.key: m.reachable and m.proven for m in members if m.voter}
    if change.type == ConfChangeType.PROMOTE:
        learner = next((m for m in members if m.key == change.node_id and not m.voter), None)
        if learner is None:
            return False
        up = sum(1 for reachable in voters.values() if reachable)
        if up < len(voters) and up < (len(voters) + 1) // 2 + 1:
            # A voter is away: the new configuration would need the learner too, and a death of the learner then
            # would leave it without a quorum for good (churn seed 26406: a new leader gave a voter dead since long
            # a fresh start, promoted a learner beside it, and the learner died). The away voter goes first.
            return False
        voters[learner.key] = learner.reachable and learner.proven
    elif change.type in (ConfChangeType.REMOVE, ConfChangeType.ADD_LEARNER):
        if change.node_id in voters:
            if len(voters) == 1:
                return False
            del voters[change.node_id]
    reachable = sum(1 for up in voters.values() if up)
    return reachable >= len(voters) // 2 + 1
