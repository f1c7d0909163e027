"""How the leader tells a live member from a dead one, with a stand-in for the replica: by echoes of its own probes
(protocol 6), never by a frame that may be a late copy of one sent before the member died."""

from __future__ import annotations

import random

from embedzk.consensus.types import ConfChangeType
from embedzk.membership.identity import MemberRecord
from embedzk.membership.messages import LivenessEcho, LivenessProbe, Presence, Removed
from embedzk.membership.versions import LIVENESS_PROBES
from embedzk.replica.membership import Membership, MembershipConfig, Phase
from tests.membership_standin import LEADER, W1, ReplicaStandIn

LEARNER = W1


def _leader(cluster_version: int = LIVENESS_PROBES) -> tuple[Membership, ReplicaStandIn]:
    replica = ReplicaStandIn(cluster_version=cluster_version)
    config = MembershipConfig(address="sim://s0", max_version=cluster_version)
    membership = Membership(replica, config, MemberRecord(LEADER), random.Random(7))  # type: ignore[arg-type]
    assert membership.phase is Phase.MEMBER
    membership.became_leader()
    return membership, replica


def _probes(replica: ReplicaStandIn) -> list[LivenessProbe]:
    probes = [msg for to, msg in replica.sent if isinstance(msg, LivenessProbe) and to == LEARNER]
    replica.sent.clear()
    return probes


def _reachable(membership: Membership) -> bool:
    [learner] = [m for m in membership.members() if m.key == LEARNER]
    assert learner.reachable is not None
    return learner.reachable


def _run(membership: Membership, replica: ReplicaStandIn, seconds: float, echo: bool = False, frames: bool = False) -> None:
    """Tick the leader for ``seconds``; the learner echoes every probe (``echo``), or only some other frame of it
    arrives with every tick (``frames``: a late copy, say)."""
    end = replica.now + seconds
    while replica.now < end:
        replica.now += 0.01
        membership.tick()
        for probe in _probes(replica):
            if echo:
                membership.receive(LEARNER, LivenessEcho(probe.term, probe.seq))
        if frames:
            membership.frame_from(LEARNER, replica.now)


def test_the_leader_probes_a_member_and_counts_it_alive_by_its_echoes() -> None:
    membership, replica = _leader()
    _run(membership, replica, 3 * membership.reach_window, echo=True)
    assert _reachable(membership)
    # Probes go out several times per reach window, each numbered anew within the term.
    membership.tick()
    replica.now += membership.reach_window / 6
    membership.tick()
    [probe] = _probes(replica)
    assert probe.term == replica.term and probe.seq > 1


def test_frames_of_a_member_that_answers_probes_do_not_keep_it_alive() -> None:
    # Crash-heavy seed 32920: the network kept delivering copies of frames a dead learner had sent; the leader
    # took each for a sign of life, and the autopilot gave the learner a vote.
    membership, replica = _leader()
    _run(membership, replica, 2 * membership.reach_window, frames=True)
    assert not _reachable(membership)


def test_an_echo_counts_from_when_its_probe_was_sent() -> None:
    membership, replica = _leader()
    membership.tick()
    [probe] = _probes(replica)
    # The learner died; an echo of that first probe, held up in the network, comes late.
    _run(membership, replica, 0.9 * membership.reach_window)
    membership.receive(LEARNER, LivenessEcho(probe.term, probe.seq))
    _run(membership, replica, 0.3 * membership.reach_window)
    assert not _reachable(membership)


def test_an_echo_of_a_probe_older_than_the_reach_window_is_ignored() -> None:
    membership, replica = _leader()
    membership.tick()
    [probe] = _probes(replica)
    _run(membership, replica, 1.5 * membership.reach_window)
    membership.receive(LEARNER, LivenessEcho(probe.term, probe.seq))
    assert not _reachable(membership)


def test_echoes_of_probes_the_leader_did_not_send_prove_nothing() -> None:
    membership, replica = _leader()
    membership.tick()
    [probe] = _probes(replica)
    _run(membership, replica, 1.5 * membership.reach_window)
    # Another term's probe of the same number (an earlier leader's, say), and a number never sent.
    membership.receive(LEARNER, LivenessEcho(probe.term - 1, probe.seq + 20))
    membership.receive(LEARNER, LivenessEcho(probe.term, probe.seq + 1000))
    assert not _reachable(membership)
    # A current probe's echo does.
    membership.tick()
    replica.now += membership.reach_window / 6
    membership.tick()
    [probe] = _probes(replica)
    membership.receive(LEARNER, LivenessEcho(probe.term, probe.seq))
    assert _reachable(membership)


def test_a_member_of_an_older_release_is_not_probed_and_counts_alive_by_any_frame() -> None:
    # A rolling upgrade: the cluster speaks 5, and this learner said it speaks no newer.
    membership, replica = _leader(cluster_version=LIVENESS_PROBES - 1)
    membership.receive(LEARNER, Presence("sim://w1", 2, LIVENESS_PROBES - 1, False, False))
    _run(membership, replica, 2 * membership.reach_window, frames=True)
    assert _reachable(membership)
    assert not any(isinstance(msg, LivenessProbe) for _to, msg in replica.sent)
    _run(membership, replica, 2 * membership.reach_window)
    assert not _reachable(membership)


def test_a_member_of_this_release_is_probed_during_a_rolling_upgrade() -> None:
    membership, replica = _leader(cluster_version=LIVENESS_PROBES - 1)
    membership.receive(LEARNER, Presence("sim://w1", 2, LIVENESS_PROBES, False, False))
    _run(membership, replica, 2 * membership.reach_window, frames=True)
    assert not _reachable(membership)
    _run(membership, replica, membership.reach_window, echo=True)
    assert _reachable(membership)


def test_a_member_echoes_a_probe_to_whoever_sent_it_until_it_is_removed() -> None:
    follower = ReplicaStandIn(id=LEARNER)
    membership = Membership(follower, MembershipConfig(address="sim://w1"), MemberRecord(LEARNER), random.Random(1))  # type: ignore[arg-type]
    membership.receive(follower.lead, LivenessProbe(5, 17))
    assert follower.sent == [(follower.lead, LivenessEcho(5, 17))]
    membership.phase = Phase.REMOVED
    membership.receive(follower.lead, LivenessProbe(5, 18))
    assert follower.sent == [(follower.lead, LivenessEcho(5, 17))]


def test_a_member_that_dies_under_a_new_leader_is_found_out_within_the_reach_window() -> None:
    membership, replica = _leader()
    _run(membership, replica, membership.reach_window / 2, echo=True)
    _run(membership, replica, 1.2 * membership.reach_window)  # it died: no more echoes
    assert not _reachable(membership)
    # A leader of a later term starts everyone afresh, and finds the dead member out again.
    replica.term += 1
    membership.became_leader()
    assert _reachable(membership)
    _run(membership, replica, 1.2 * membership.reach_window, frames=True)
    assert not _reachable(membership)


def test_a_member_added_later_is_judged_from_when_it_was_added_not_by_what_was_heard_before() -> None:
    # Crash-heavy seed 33114: a joiner was heard from while it asked to join, until the cluster spoke protocol 6
    # (then its frames counted for nothing); when it was added, its last sign of life was long past, and the
    # autopilot removed it as dead 9 ms later.
    joiner = "w2@cccccccccccc"
    membership, replica = _leader(cluster_version=LIVENESS_PROBES - 1)
    membership.frame_from(joiner, replica.now)
    _run(membership, replica, 3 * membership.reach_window, echo=True)
    replica.learners = (LEARNER, joiner)
    replica.addresses[joiner] = "sim://w2"
    membership.tick()
    [view] = [m for m in membership.members() if m.key == joiner]
    assert view.reachable


def test_a_joiner_told_its_key_was_removed_gives_it_up() -> None:
    # Added, then removed (it was down for the member timeout) before its disk learnt that it was a member: the key
    # never comes back, so asking to join with it would go on for ever (crash-heavy seed 33114).
    joiner = ReplicaStandIn(id=LEARNER)
    membership = Membership(joiner, MembershipConfig(address="sim://w1"), MemberRecord(LEARNER), random.Random(1))  # type: ignore[arg-type]
    membership.phase = Phase.JOINING
    membership.receive(LEADER, Removed("w1@cccccccccccc", joiner.term, "another disk's key"))
    assert membership.phase is Phase.JOINING  # meant for another process that listened at this address
    membership.receive(LEADER, Removed(LEARNER, joiner.term, "w1@bbbbbbbbbbbb was removed from the cluster"))
    assert membership.phase is Phase.REMOVED


def _autopilot_leader(cluster_version: int) -> tuple[Membership, ReplicaStandIn]:
    """A leader keeping 3 voters (one so far: itself) whose learner wants a vote and is caught up."""
    replica = ReplicaStandIn(cluster_version=cluster_version)
    config = MembershipConfig(address="sim://s0", voters=3, member_timeout=5.0)
    membership = Membership(replica, config, MemberRecord(LEADER), random.Random(7))  # type: ignore[arg-type]
    membership.became_leader()
    return membership, replica


def test_no_change_rests_on_a_member_judged_by_any_frame() -> None:
    # Crash-heavy seed 76630: a voter dead for good, whose version the new leader never learnt, passed for reachable
    # on replayed frames; the leader removed the other voter, which was away, and was left with the dead one as the
    # other half of its configuration. A member that does not answer probes is kept, but given no say in a quorum.
    membership, replica = _autopilot_leader(LIVENESS_PROBES - 1)
    membership.receive(LEARNER, Presence("sim://w1", 2, LIVENESS_PROBES - 1, True, False))
    _run(membership, replica, 3 * membership.reach_window, frames=True)
    assert _reachable(membership)
    assert replica.proposed == []  # promoting it would make a configuration of two that needs it
    # Upgraded, it answers probes: its echoes show it alive, and it gets its vote.
    membership.receive(LEARNER, Presence("sim://w1", 2, LIVENESS_PROBES, True, False))
    _run(membership, replica, membership.reach_window, echo=True)
    assert {(c.type, c.node_id) for c in replica.proposed} == {(ConfChangeType.PROMOTE, LEARNER)}  # (never applied here)


def test_a_new_leaders_fresh_start_is_no_evidence_for_a_change() -> None:
    membership, replica = _autopilot_leader(LIVENESS_PROBES)
    membership.receive(LEARNER, Presence("sim://w1", 2, LIVENESS_PROBES, True, False))
    _run(membership, replica, membership.reach_window / 2)
    assert _reachable(membership)  # the fresh start: not judged dead before it could answer
    assert replica.proposed == []  # nor counted on
    _run(membership, replica, membership.reach_window / 2, echo=True)
    assert {(c.type, c.node_id) for c in replica.proposed} == {(ConfChangeType.PROMOTE, LEARNER)}  # (never applied here)


class _FollowerStandIn(ReplicaStandIn):
    """A follower whose leader can change."""

    leader_key = LEADER

    @property
    def lead(self) -> str:
        return self.leader_key


def test_a_member_announces_itself_to_a_new_leader_at_once() -> None:
    # Until a new leader knows which protocol a member speaks it judges it by any frame, and makes no change that
    # rests on it: it must not wait for the next periodic announcement to learn.
    follower = _FollowerStandIn(id=LEARNER)
    membership = Membership(follower, MembershipConfig(address="sim://w1"), MemberRecord(LEARNER), random.Random(1))  # type: ignore[arg-type]
    membership.tick()
    membership.tick()
    assert [to for to, msg in follower.sent if isinstance(msg, Presence)] == [LEADER]
    follower.leader_key = "s1@dddddddddddd"
    follower.now += 0.01
    membership.tick()
    follower.now += 0.01
    membership.tick()
    assert [to for to, msg in follower.sent if isinstance(msg, Presence)] == [LEADER, "s1@dddddddddddd"]
