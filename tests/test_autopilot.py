"""The autopilot's decisions, table by table: one change at a time, never one that loses the quorum."""

from __future__ import annotations

import pytest

from embedzk.consensus.types import ConfChange, ConfChangeType
from embedzk.membership.autopilot import AutopilotPolicy, MemberView, next_change

SEEDS = AutopilotPolicy(voters=3, member_timeout=30.0, stabilization=5.0, max_lag=100)
STATIC = AutopilotPolicy(voters=None, member_timeout=None, stabilization=1.0, max_lag=100)


def up(key: str, voter: bool = True, lag: int = 0, stable: float = 60.0, **kw: bool) -> MemberView:
    return MemberView(key, voter, True, 0.0, stable, lag, **kw)


def down(key: str, voter: bool = True, for_: float = 60.0, **kw: bool) -> MemberView:
    return MemberView(key, voter, False, for_, 0.0, 0, **kw)


P, R, L = ConfChangeType.PROMOTE, ConfChangeType.REMOVE, ConfChangeType.ADD_LEARNER


@pytest.mark.parametrize(
    "members, policy, expected",
    [
        # Steady state: nothing to do.
        ([up("a"), up("b"), up("c")], SEEDS, None),
        ([up("a"), up("b"), up("c"), up("d", voter=False)], SEEDS, None),
        # Too few voters: promote the best ready learner (caught up, stable), never one behind or just arrived.
        ([up("a"), up("d", voter=False)], SEEDS, (P, "d")),
        ([up("a"), up("d", voter=False, lag=5000)], SEEDS, None),
        ([up("a"), up("d", voter=False, stable=1.0)], SEEDS, None),
        # ... unless it wants a vote (a voter's replacement on a fresh disk): then caught up is enough.
        ([up("a"), up("d", voter=False, stable=1.0, wants_vote=True)], SEEDS, (P, "d")),
        ([up("a"), up("d", voter=False, lag=50), up("e", voter=False, lag=0)], SEEDS, (P, "e")),
        # A voter dead past the timeout goes first (were the learner promoted first, its death would leave two
        # dead of four: no quorum for good) ...
        ([up("a"), up("b"), down("c"), up("d", voter=False)], SEEDS, (R, "c")),
        # ... and a ready learner takes its seat then.
        ([up("a"), up("b"), up("d", voter=False)], SEEDS, (P, "d")),
        # Over the target with a dead voter: the dead one is removed before any demotion.
        ([up("a"), up("b"), down("c"), up("d")], SEEDS, (R, "c")),
        # No learner ready: removed all the same.
        ([up("a"), up("b"), down("c")], SEEDS, (R, "c")),
        # Not yet past the timeout: kept (its seat waits for its return).
        ([up("a"), up("b"), down("c", for_=10.0), up("d", voter=False)], SEEDS, None),
        # A dead learner is removed.
        ([up("a"), up("b"), up("c"), down("d", voter=False)], SEEDS, (R, "d")),
        # Too many voters: the least fit (not the leader) becomes a learner.
        ([up("a"), up("b"), up("c"), up("d"), up("e", lag=7)], SEEDS, (L, "e")),
        # Leaving: the seat is handed over first, then the member goes.
        ([up("a"), up("b"), up("c", leaving=True), up("d", voter=False)], SEEDS, (P, "d")),
        ([up("a"), up("b"), up("c", leaving=True), up("d")], SEEDS, (R, "c")),
        ([up("a"), up("b"), up("d", voter=False, leaving=True)], SEEDS, (R, "d")),
        # Never a change that leaves fewer than a majority of the voters reachable.
        ([up("a"), down("b"), down("c"), up("d", voter=False, stable=1.0)], SEEDS, None),
        # Too many voters, one of them away: it is the one demoted.
        ([up("a"), up("b"), down("c", for_=5.0), up("d"), up("e")], SEEDS, (L, "c")),
        # A voter reachable only on weak evidence (any frame of a member not known to answer probes, or a new
        # leader's fresh start) is kept, but no change rests on it. Crash-heavy seed 76630: dead voter a2 passed for
        # reachable on replayed frames; removing the away voter a3 would leave {a, a2}, which needs the dead one.
        ([up("a"), up("a2", proven=False), down("a3"), up("d", voter=False)], SEEDS, None),
        ([up("a"), up("a2"), down("a3"), up("d", voter=False)], SEEDS, (R, "a3")),
        ([up("a"), up("b"), up("c", proven=False)], SEEDS, None),
        # A learner whose vote the new configuration would need, reachable only on weak evidence, waits ...
        ([up("a"), up("d", voter=False, proven=False)], SEEDS, None),
        # ... unless the configuration does not need it.
        ([up("a"), up("b"), up("d", voter=False, proven=False)], SEEDS, (P, "d")),
        ([up("a"), up("b", proven=False), up("d", voter=False)], SEEDS, None),
        # Static clusters: configured voters are promoted once ready; nobody is removed for being away.
        ([up("a"), up("b"), up("c", voter=False, wants_vote=True)], STATIC, (P, "c")),
        ([up("a"), up("b"), up("o", voter=False)], STATIC, None),
        ([up("a"), up("b"), down("c", for_=3600.0)], STATIC, None),
    ],
)
def test_next_change(members: list[MemberView], policy: AutopilotPolicy, expected: tuple[ConfChangeType, str] | None) -> None:
    change = next_change("a", members, policy)
    assert (None if change is None else (change.type, change.node_id)) == expected


def test_no_demotion_when_every_choice_would_lose_the_quorum() -> None:
    # Five voters, three away (within the timeout): demoting any of them leaves 2 of 4 reachable, demoting b
    # leaves 1 of 4.
    members = [up("a"), up("b"), down("c", for_=5.0), down("d", for_=5.0), down("e", for_=5.0)]
    assert next_change("a", members, SEEDS) is None
    # With one more reachable voter, the away one goes first.
    assert next_change("a", [*members, up("f")], SEEDS) == ConfChange(L, "c")


def test_a_learner_gone_silent_is_not_counted_stable_while_it_still_passes_for_reachable() -> None:
    # Crash-heavy seed 13787: a learner that had just joined lost its disk; for the reach window after its last
    # message it still passed for reachable, and its stability kept growing with the clock, so the autopilot
    # promoted a dead learner into a configuration that already held a dead voter: 2 of 4 voters alive, no quorum
    # ever again. Stability may only be what was seen: up to the last message.
    from types import SimpleNamespace

    from embedzk.consensus.types import ConfState
    from embedzk.replica.membership import Membership

    status = SimpleNamespace(log_conf_state=ConfState(voters=("a", "b", "c"), learners=("l",)), commit=10, progress={})
    membership = Membership.__new__(Membership)
    membership._replica = SimpleNamespace(node=SimpleNamespace(status=lambda: status))  # type: ignore[assignment]
    membership.key = "a"
    membership.reach_window = 1.0
    # Leader since 0.0: every member judged from then on.
    membership._heard = dict.fromkeys(("a", "b", "c", "l"), 0.0)
    membership._since = dict.fromkeys(("a", "b", "c", "l"), 0.0)
    membership._echoed = {}
    membership._wants_vote = set()
    membership._leaving = set()
    for t in (0.1, 0.2, 0.3):  # the learner is heard until 0.3, then never again
        membership.heard("l", t)
    learner = next(v for v in membership._views(1.2) if v.key == "l")
    assert learner.reachable  # 0.9 s since its last message, within the window
    assert learner.stable_for == pytest.approx(0.3)  # not 1.2: it was never seen stable after 0.3


def test_a_learner_that_never_acknowledged_anything_is_not_promoted() -> None:
    # Churn seed 15988: a join request of a worker gone for good, replayed by the network, made the leader add it as
    # a learner; as a static voter's replacement it wanted its seat back "once caught up", and with a log shorter
    # than max_lag a learner that had acknowledged nothing passed for caught up: promoted 9 ms after it was added, a
    # dead voter, and with another voter dead the configuration had no quorum left.
    replacement = up("d", voter=False, lag=10, stable=0.0, wants_vote=True, acknowledged=False)
    members = [up("a"), up("b"), down("c", for_=1.0), replacement]
    assert next_change("a", members, STATIC) is None
    acknowledged = up("d", voter=False, lag=10, stable=0.0, wants_vote=True)
    assert next_change("a", [up("a"), up("b"), up("c"), acknowledged], STATIC) == ConfChange(P, "d")


def test_no_learner_is_promoted_beside_a_voter_that_is_away() -> None:
    # Churn seed 26406: a new leader gave a voter dead for good a fresh start, so it was away but not yet past
    # member_timeout; the autopilot promoted a learner beside it (3 of 4 voters reachable), the learner died, and
    # 2 of 4 voters could never commit anything again. The away voter goes first (once dead), then the promotion.
    five = AutopilotPolicy(voters=5, member_timeout=30.0, stabilization=5.0, max_lag=100)
    learner = up("d", voter=False, stable=10.0)
    assert next_change("a", [up("a"), up("b"), down("c", for_=0.5), learner], five) is None
    assert next_change("a", [up("a"), up("b"), down("c", for_=60.0), learner], five) == ConfChange(R, "c")
    assert next_change("a", [up("a"), up("b"), learner], five) == ConfChange(P, "d")
    assert next_change("a", [up("a"), up("b"), up("c"), learner], five) == ConfChange(P, "d")
