"""Leader election: randomized timeouts, the voting rules, pre-vote, check-quorum and the leader lease
(thesis 3.4, 3.6.1, 4.2.3, 6.2, 9.6; after etcd's raft_test.go and raft_paper_test.go)."""

from __future__ import annotations

import random

import pytest

from embedzk.consensus import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    RawNode,
    StateRole,
    encode_conf_change,
)
from embedzk.persist.memory import MemoryStorage
from tests.raft_harness import ABC, Network, conf_change, drain, node_with_log


def test_single_node_elects_itself_and_commits_its_first_entry() -> None:
    net = Network(["a"])
    net.tick(20)
    node = net["a"]
    assert node.role == StateRole.LEADER
    assert node.term == 1
    # The empty entry of the new term is committed and applied.
    assert node.status().commit == 1
    assert net.driver("a").applied_index == 1


def test_three_nodes_elect_one_leader() -> None:
    net = Network(ABC)
    net.elect("a")
    assert [net[i].role for i in ABC] == [StateRole.LEADER, StateRole.FOLLOWER, StateRole.FOLLOWER]
    assert all(net[i].term == 1 and net[i].lead == "a" for i in ABC)
    # Every node applied the leader's empty entry.
    assert all(net.driver(i).applied_index == 1 for i in ABC)


def test_followers_elect_a_leader_by_timeout_alone() -> None:
    net = Network(["a", "b", "c", "d", "e"], seed=3)
    for _ in range(60):
        net.tick()
        if net.leader() is not None:
            break
    leader = net.leader()
    assert leader is not None
    assert all(net[i].lead == leader for i in net.drivers)


@pytest.mark.parametrize("seed", range(5))
def test_randomized_election_timeout_is_in_range(seed: int) -> None:
    storage = MemoryStorage(ConfState(voters=("a", "b", "c")))
    node = RawNode(Config(id="a", election_tick=10, rng=random.Random(seed)), storage)
    seen = set()
    for _ in range(200):
        node.raft.become_follower(node.term + 1, None)
        seen.add(node.raft.randomized_election_timeout)
    assert min(seen) >= 10 and max(seen) < 20
    assert len(seen) > 5  # actually random


def test_follower_campaigns_once_its_timeout_passes() -> None:
    storage = MemoryStorage(ConfState(voters=("a", "b", "c")))
    node = RawNode(Config(id="a", election_tick=10, pre_vote=False), storage)
    timeout = node.raft.randomized_election_timeout
    for _ in range(timeout - 1):
        node.tick()
    assert node.role == StateRole.FOLLOWER
    node.tick()
    assert node.role == StateRole.CANDIDATE
    assert node.term == 1
    msgs = drain(node)
    assert sorted(m.to for m in msgs if m.type == MessageType.VOTE) == ["b", "c"]


def test_pre_vote_does_not_change_term_until_won() -> None:
    storage = MemoryStorage(ConfState(voters=("a", "b", "c")))
    node = RawNode(Config(id="a"), storage)
    node.campaign()
    assert node.role == StateRole.PRE_CANDIDATE
    assert node.term == 0
    msgs = drain(node)
    pre = [m for m in msgs if m.type == MessageType.PRE_VOTE]
    assert {m.to for m in pre} == {"b", "c"}
    assert all(m.term == 1 for m in pre)  # the term it would campaign in
    node.step(Message(type=MessageType.PRE_VOTE_RESP, to="a", frm="b", term=1))
    assert node.role == StateRole.CANDIDATE
    assert node.term == 1


@pytest.mark.parametrize(
    "voter_terms, cand_index, cand_term, granted",
    [
        # etcd TestVoter / thesis 3.6.1: grant only to a log at least as up to date.
        ([1], 1, 1, True),
        ([1], 1, 2, True),
        ([1, 1], 1, 1, False),  # same last term, shorter log
        ([1, 1], 3, 1, True),
        ([1, 1], 1, 2, True),  # higher last term wins over length
        ([2], 1, 1, False),  # lower last term
        ([2], 5, 1, False),
        ([1, 2], 2, 2, True),
        ([1, 2], 1, 2, True),  # candidate's last term 2 at index 1 still beats? same term, shorter: see below
    ],
)
def test_vote_granted_only_to_up_to_date_logs(
    voter_terms: list[int], cand_index: int, cand_term: int, granted: bool
) -> None:
    if voter_terms == [1, 2] and cand_index == 1:
        granted = False  # same last term, shorter log
    node = node_with_log("a", voter_terms, term=2)
    node.step(Message(type=MessageType.VOTE, to="a", frm="b", term=3, index=cand_index, log_term=cand_term))
    (resp,) = [m for m in drain(node) if m.type == MessageType.VOTE_RESP]
    assert resp.reject is not granted
    assert node.term == 3
    assert node.raft.vote == ("b" if granted else None)


def test_one_vote_per_term_and_repeat_votes_are_granted() -> None:
    node = node_with_log("a", [1], term=1)
    vote = Message(type=MessageType.VOTE, to="a", frm="b", term=2, index=1, log_term=1)
    node.step(vote)
    node.step(Message(type=MessageType.VOTE, to="a", frm="c", term=2, index=1, log_term=1))
    node.step(vote)  # a duplicate of the request we granted
    answers = [(m.to, m.reject) for m in drain(node) if m.type == MessageType.VOTE_RESP]
    assert answers == [("b", False), ("c", True), ("b", False)]


def test_vote_survives_a_restart() -> None:
    storage = MemoryStorage(ConfState(voters=tuple(ABC)))
    node = RawNode(Config(id="a"), storage)
    node.step(Message(type=MessageType.VOTE, to="a", frm="b", term=2))
    rd = node.ready()
    assert rd.hard_state == HardState(term=2, vote="b", commit=0)
    assert rd.must_sync
    storage.append(rd.entries, rd.hard_state)
    node.advance(rd)
    restarted = RawNode(Config(id="a"), storage)
    restarted.step(Message(type=MessageType.VOTE, to="a", frm="c", term=2))
    (resp,) = drain(restarted)
    assert resp.reject


def test_leader_steps_down_on_a_higher_term() -> None:
    net = Network(ABC)
    net.elect("a")
    net["a"].step(Message(type=MessageType.APP_RESP, to="a", frm="b", term=5))
    assert net["a"].role == StateRole.FOLLOWER
    assert net["a"].term == 5


def test_a_candidates_own_vote_counts_only_once_persisted() -> None:
    # A single voter: it must not lead before its vote for itself is on disk, or a crash could leave it free to
    # vote for someone else in the same term.
    storage = MemoryStorage(ConfState(voters=("a",)))
    node = RawNode(Config(id="a"), storage)
    node.campaign()
    assert node.role == StateRole.CANDIDATE
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote="a", commit=0)
    assert node.role == StateRole.CANDIDATE
    storage.append(rd.entries, rd.hard_state)
    node.advance(rd)
    assert node.role == StateRole.LEADER


def test_candidate_follows_a_leader_of_its_term() -> None:
    storage = MemoryStorage(ConfState(voters=tuple(ABC)))
    node = RawNode(Config(id="a", pre_vote=False), storage)
    node.campaign()
    assert node.role == StateRole.CANDIDATE
    node.step(Message(type=MessageType.HEARTBEAT, to="a", frm="b", term=1))
    assert node.role == StateRole.FOLLOWER
    assert node.lead == "b"


def test_candidate_that_loses_returns_to_follower() -> None:
    storage = MemoryStorage(ConfState(voters=tuple(ABC)))
    node = RawNode(Config(id="a", pre_vote=False), storage)
    node.campaign()
    node.step(Message(type=MessageType.VOTE_RESP, to="a", frm="b", term=1, reject=True))
    assert node.role == StateRole.CANDIDATE
    node.step(Message(type=MessageType.VOTE_RESP, to="a", frm="c", term=1, reject=True))
    assert node.role == StateRole.FOLLOWER


def test_duplicate_votes_are_counted_once() -> None:
    storage = MemoryStorage(ConfState(voters=("a", "b", "c", "d", "e")))
    node = RawNode(Config(id="a", pre_vote=False), storage)
    node.campaign()
    drain(node)
    grant = Message(type=MessageType.VOTE_RESP, to="a", frm="b", term=1)
    node.step(grant)
    node.step(grant)
    assert node.role == StateRole.CANDIDATE  # 2 of 5, however often b says so
    node.step(Message(type=MessageType.VOTE_RESP, to="a", frm="c", term=1))
    assert node.role == StateRole.LEADER


def test_partitioned_node_rejoining_does_not_disrupt_the_leader() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("c")
    net.tick(100)
    # Pre-vote: c never won a pre-vote, so it never raised its term.
    assert net["c"].term == 1
    assert net["c"].role == StateRole.PRE_CANDIDATE
    net.heal()
    net.tick(5)
    assert net["a"].role == StateRole.LEADER
    assert net["a"].term == 1
    assert net["c"].lead == "a"


def test_without_pre_vote_a_rejoining_node_forces_a_new_term() -> None:
    net = Network(ABC, pre_vote=False)
    net.elect("a")
    net.isolate("c")
    net.tick(100)
    assert net["c"].term > 1
    net.heal()
    net.tick(40)
    # The stale leader learnt the higher term and a new election ran: the disruption pre-vote prevents.
    assert all(net[i].term > 1 for i in ABC)
    assert net.leader() is not None


def test_check_quorum_deposes_a_leader_cut_off_from_the_majority() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("a")
    net.tick(9, ["a"])
    assert net["a"].role == StateRole.LEADER  # everyone answered in the first period
    net.tick(11, ["a"])  # the second check finds nobody active
    assert net["a"].role == StateRole.FOLLOWER
    assert net["a"].lead is None
    # The majority elects a new leader.
    net.tick(40, ["b", "c"])
    assert net.leader() in ("b", "c")


def test_leader_keeps_its_role_while_the_majority_answers() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("c")
    net.tick(50)
    assert net["a"].role == StateRole.LEADER


def test_followers_in_lease_ignore_vote_requests() -> None:
    net = Network(ABC)
    net.elect("a")
    # b heard from a just now: a vote request for a higher term changes nothing (thesis 4.2.3).
    net["b"].step(Message(type=MessageType.VOTE, to="b", frm="c", term=9, index=50, log_term=9))
    assert net["b"].term == 1
    assert not net.take()


def test_a_transfer_vote_overrides_the_lease() -> None:
    net = Network(ABC)
    net.elect("a")
    net["b"].step(Message(type=MessageType.VOTE, to="b", frm="c", term=2, index=1, log_term=1, context=b"transfer"))
    assert net["b"].term == 2
    (resp,) = net.take()
    assert resp.type == MessageType.VOTE_RESP and not resp.reject


def test_stale_leader_gets_our_term_back() -> None:
    node = node_with_log("a", [1], term=3)
    node.step(Message(type=MessageType.APP, to="a", frm="b", term=2, index=1, log_term=1))
    (resp,) = drain(node)
    assert resp.type == MessageType.APP_RESP and resp.term == 3 and resp.to == "b"


def test_learners_never_campaign() -> None:
    net = Network(["a", "b"], learners=["l"])
    net.tick(100, ["l"])
    assert net["l"].role == StateRole.FOLLOWER
    assert not net.take()


def test_a_learners_vote_does_not_count() -> None:
    # a's configuration: voters a, b, c; learner l. l's grant is not part of any majority.
    storage = MemoryStorage(ConfState(voters=("a", "b", "c"), learners=("l",)))
    node = RawNode(Config(id="a", pre_vote=False), storage)
    node.campaign()
    msgs = drain(node)
    assert {m.to for m in msgs if m.type == MessageType.VOTE} == {"b", "c"}  # never asks l
    node.step(Message(type=MessageType.VOTE_RESP, to="a", frm="l", term=1))
    assert node.role == StateRole.CANDIDATE


def test_removed_node_cannot_disrupt_the_cluster() -> None:
    net = Network(ABC)
    net.elect("a")
    net["a"].propose_conf_change(conf_change("remove", "c"))
    net.stabilize()
    assert net.driver("a").conf_state.voters == ("a", "b")
    net.tick(100)
    assert net["a"].role == StateRole.LEADER
    assert net["a"].term == 1


def test_a_candidate_uses_the_latest_configuration_in_its_log() -> None:
    # a's log holds two membership changes it does not know are committed (add d, then add e). Under etcd's
    # apply-time rule a would campaign in {a, b, c} and could win with b alone while d leads {a..e} in the same
    # term with c, d, e. Here elections use the latest configuration in the log (thesis 4.1): a must win three of
    # {a, b, c, d, e}.
    storage = MemoryStorage(ConfState(voters=tuple(ABC)))
    add_d = Entry(1, 2, EntryType.CONF_CHANGE, encode_conf_change(conf_change("add", "d")))
    add_e = Entry(1, 3, EntryType.CONF_CHANGE, encode_conf_change(conf_change("add", "e")))
    storage.append([Entry(1, 1), add_d, add_e], HardState(term=1, vote=None, commit=1))
    a = RawNode(Config(id="a", pre_vote=False), storage)
    assert a.status().log_conf_state.voters == ("a", "b", "c", "d", "e")
    assert a.status().conf_state.voters == ("a", "b", "c")  # as applied
    a.campaign()
    asked = sorted(m.to for m in drain(a) if m.type == MessageType.VOTE)
    assert asked == ["b", "c", "d", "e"]
    a.step(Message(type=MessageType.VOTE_RESP, to="a", frm="b", term=2))
    assert a.role == StateRole.CANDIDATE  # a majority of {a, b, c}, not of the configuration in force
    a.step(Message(type=MessageType.VOTE_RESP, to="a", frm="d", term=2))
    assert a.role == StateRole.LEADER


def test_a_truncated_membership_change_is_undone() -> None:
    storage = MemoryStorage(ConfState(voters=tuple(ABC)))
    add_d = Entry(1, 2, EntryType.CONF_CHANGE, encode_conf_change(conf_change("add", "d")))
    storage.append([Entry(1, 1), add_d], HardState(term=1, commit=1))
    b = RawNode(Config(id="b"), storage)
    assert b.status().log_conf_state.voters == ("a", "b", "c", "d")
    # The leader of term 2 never had entry 2: its append overwrites it, and the configuration reverts.
    b.step(Message(type=MessageType.APP, to="b", frm="c", term=2, index=1, log_term=1, entries=(Entry(2, 2),)))
    assert b.status().log_conf_state.voters == ("a", "b", "c")


def test_refusing_a_candidate_with_a_shorter_log_does_not_reset_the_election_timer() -> None:
    # Thesis figure 3.1: a follower times out unless it hears from a leader or grants a vote. A candidate whose log
    # is behind, asking again and again with ever higher terms, must not hold off the one node that can win.
    node = node_with_log("b", [1, 1, 2], term=2, pre_vote=False, check_quorum=False)
    timeout = node.raft.randomized_election_timeout
    for tick in range(timeout - 1):
        node.tick()
        stale = Message(MessageType.VOTE, to="b", frm="c", term=3 + tick, index=1, log_term=1)
        node.step(stale)
        refusals = [m for m in drain(node) if m.type == MessageType.VOTE_RESP]
        assert refusals and all(m.reject for m in refusals)
    assert node.role is StateRole.FOLLOWER
    node.tick()  # its own timeout, unmoved by the refused candidate
    assert node.role is StateRole.CANDIDATE


def test_granting_a_vote_resets_the_election_timer() -> None:
    node = node_with_log("b", [1], term=1, pre_vote=False, check_quorum=False)
    for _ in range(node.raft.randomized_election_timeout - 1):
        node.tick()
    node.step(Message(MessageType.VOTE, to="b", frm="c", term=2, index=1, log_term=1))
    assert [m for m in drain(node) if m.type == MessageType.VOTE_RESP and not m.reject]
    node.tick()
    assert node.role is StateRole.FOLLOWER
