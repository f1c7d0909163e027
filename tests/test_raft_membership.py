"""Membership changes one server at a time (thesis 4.1-4.2; etcd confchange ``Simple``, pendingConfIndex,
StepDownOnRemoval), and learners."""

from __future__ import annotations

import pytest

from embedzk.consensus import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    StateRole,
    apply_change,
    encode_conf_change,
)
from tests.raft_harness import ABC, Network, conf_change
CS = ConfState(voters=("a", "b", "c"), learners=("l",))


@pytest.mark.parametrize(
    "change, result",
    [
        (("add", "d"), ConfState(voters=("a", "b", "c", "d"), learners=("l",))),
        (("add", "l"), ConfState(voters=("a", "b", "c", "l"), learners=())),  # adding a learner as voter promotes
        (("add", "a"), CS),  # no-op
        (("learner", "d"), ConfState(voters=("a", "b", "c"), learners=("l", "d"))),
        (("learner", "c"), ConfState(voters=("a", "b"), learners=("l", "c"))),  # demotion
        (("learner", "l"), CS),
        (("remove", "b"), ConfState(voters=("a", "c"), learners=("l",))),
        (("remove", "l"), ConfState(voters=("a", "b", "c"), learners=())),
        (("remove", "zz"), CS),
        (("promote", "l"), ConfState(voters=("a", "b", "c", "l"), learners=())),
        (("promote", "a"), CS),
        (("promote", "zz"), CS),
    ],
)
def test_apply_change_table(change: tuple[str, str], result: ConfState) -> None:
    assert apply_change(CS, conf_change(*change)) == result


def test_the_last_voter_is_never_removed() -> None:
    solo = ConfState(voters=("a",))
    assert apply_change(solo, conf_change("remove", "a")) == solo
    assert apply_change(solo, conf_change("learner", "a")) == solo


def settle(net: Network, ticks: int = 3) -> None:
    net.stabilize()
    net.tick(ticks)


def test_add_a_voter_and_it_counts_in_the_majority() -> None:
    net = Network(ABC)
    net.elect("a")
    net.propose("a", b"before")
    net.add_node("d")
    net["a"].propose_conf_change(conf_change("add", "d"))
    settle(net)
    for i in ("a", "b", "c", "d"):
        assert net[i].status().conf_state.voters == ("a", "b", "c", "d")
    assert net.applied("d") == [b"before"]
    # With four voters a majority is three: a and d alone cannot commit.
    net.isolate("b")
    net.isolate("c")
    net.heal()
    net.partition(["a", "d"], ["b", "c"])
    net["a"].propose(b"needs-three")
    net.stabilize()
    assert net.applied("a") == [b"before"]
    net.heal()
    net.tick(2)
    assert net.applied("a") == [b"before", b"needs-three"]


def test_learners_receive_the_log_but_never_count() -> None:
    net = Network(["a", "b"], learners=["l"])
    net.elect("a")
    net.propose("a", b"x")
    assert net.applied("l") == [b"x"]
    # Without b there is no majority of voters, whatever the learner acknowledges.
    net.isolate("b")
    net["a"].propose(b"y")
    net.stabilize()
    assert net.applied("a") == [b"x"]
    assert net["l"].status().last_index == net["a"].status().last_index


def test_promote_a_learner() -> None:
    net = Network(["a", "b"], learners=["l"])
    net.elect("a")
    net["a"].propose_conf_change(conf_change("promote", "l"))
    settle(net)
    assert net["l"].status().conf_state == ConfState(voters=("a", "b", "l"))
    # l now votes and may lead.
    net["a"].transfer_leadership("l")
    net.stabilize()
    assert net["l"].role == StateRole.LEADER


def test_remove_a_follower() -> None:
    net = Network(ABC)
    net.elect("a")
    net["a"].propose_conf_change(conf_change("remove", "c"))
    settle(net)
    assert net["a"].status().conf_state.voters == ("a", "b")
    assert "c" not in net["a"].status().progress
    # c heard that its removal committed (the leader replicates to it until it applied the change) ...
    assert net.driver("c").conf_state.voters == ("a", "b")
    # ... and from then on gets nothing, and never campaigns.
    net.propose("a", b"two-voters")
    assert net.applied("b") == [b"two-voters"]
    assert net.applied("c") == []
    net.tick(50)
    assert net["c"].role == StateRole.FOLLOWER and net["a"].term == 1


def test_a_removed_leader_steps_down_and_the_rest_elect_a_new_one() -> None:
    net = Network(ABC)
    net.elect("a")
    net["a"].propose_conf_change(conf_change("remove", "a"))
    net.stabilize()
    assert net["a"].role == StateRole.FOLLOWER
    net.tick(30)
    leader = net.leader()
    assert leader in ("b", "c")
    assert net[leader].status().conf_state.voters == ("b", "c")
    net.propose(leader, b"after")
    assert net.applied("b")[-1] == b"after"
    # The removed node never campaigns again.
    net.tick(50, ["a"])
    assert net["a"].role == StateRole.FOLLOWER


def test_removing_the_leader_of_two_leaves_a_working_single_voter() -> None:
    net = Network(["a", "b"])
    net.elect("a")
    net.isolate("b")  # b will not hear that the removal committed...
    net.heal()
    net["a"].propose_conf_change(conf_change("remove", "a"))
    net.stabilize()
    net.tick(40)
    assert net["b"].role == StateRole.LEADER
    assert net["b"].status().conf_state.voters == ("b",)


def test_a_leader_manages_its_own_removal_without_counting_itself() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("c")
    net["a"].propose_conf_change(conf_change("remove", "a"))
    net.stabilize()
    # In force at once: a leads {b, c} without counting itself, so b alone cannot commit the change.
    assert net["a"].status().log_conf_state.voters == ("b", "c")
    assert net["a"].status().conf_state.voters == ("a", "b", "c")  # not applied yet
    assert net["a"].role == StateRole.LEADER
    assert net["a"].status().commit < net["a"].status().last_index
    net.heal()
    net.tick(2)
    assert net["a"].role == StateRole.FOLLOWER  # stepped down once the change committed
    net.tick(30)
    assert net.leader() in ("b", "c")


def test_a_removed_leader_that_lost_leadership_before_the_commit_finishes_the_change() -> None:
    # b removes itself from {b, e}; e never hears of it and b loses leadership (check-quorum). e still counts b
    # as a voter and needs its vote, which b refuses (b's log is longer): b must be able to campaign, in {e}, to
    # get its removal committed.
    net = Network(["b", "e"])
    net.elect("b")
    net.isolate("e")
    net["b"].propose_conf_change(conf_change("remove", "b"))
    net.stabilize()
    net.tick(25, ["b"])
    assert net["b"].role == StateRole.FOLLOWER
    net.heal()
    net.tick(80)
    assert net.leader() == "e"
    assert net["e"].status().conf_state.voters == ("e",)
    assert net["b"].role == StateRole.FOLLOWER
    net.propose("e", b"alone")
    assert net.applied("e")[-1] == b"alone"


def test_only_one_change_at_a_time() -> None:
    net = Network(ABC)
    net.elect("a")
    net["a"].propose_conf_change(conf_change("learner", "d"))
    with pytest.raises(ProposalDroppedError):
        net["a"].propose_conf_change(conf_change("learner", "e"))
    settle(net)
    net["a"].propose_conf_change(conf_change("learner", "e"))  # the first one is applied now
    settle(net)
    assert net["a"].status().conf_state.learners == ("d", "e")


def test_no_change_before_the_leaders_first_entry_is_applied() -> None:
    net = Network(ABC)
    net["a"].campaign()
    for _ in range(4):
        net.process()
        for m in net.take():
            net.deliver(m)
    a = net["a"]
    assert a.role == StateRole.LEADER
    assert a.status().applied == 0  # the empty entry of the term is not applied yet
    with pytest.raises(ProposalDroppedError):
        a.propose_conf_change(conf_change("learner", "d"))
    settle(net)
    a.propose_conf_change(conf_change("learner", "d"))


def test_a_change_that_changes_nothing_is_refused() -> None:
    net = Network(ABC)
    net.elect("a")
    with pytest.raises(ProposalDroppedError):
        net["a"].propose_conf_change(conf_change("add", "b"))
    with pytest.raises(ProposalDroppedError):
        net["a"].propose_conf_change(conf_change("promote", "zz"))


def test_a_forwarded_change_the_leader_refuses_becomes_a_no_op() -> None:
    net = Network(ABC)
    net.elect("a")
    net["a"].propose_conf_change(conf_change("learner", "d"))
    cc = Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=encode_conf_change(conf_change("learner", "e")))
    net["a"].step(Message(type=MessageType.PROP, to="a", frm="b", term=1, entries=(cc,)))
    settle(net)
    assert net["a"].status().conf_state.learners == ("d",)


def test_a_change_proposed_on_a_follower_is_forwarded() -> None:
    net = Network(ABC)
    net.elect("a")
    net["b"].propose_conf_change(ConfChange(type=ConfChangeType.ADD_LEARNER, node_id="d"))
    settle(net)
    assert net["a"].status().conf_state.learners == ("d",)


def test_membership_is_restored_on_restart() -> None:
    net = Network(ABC)
    net.elect("a")
    net["a"].propose_conf_change(conf_change("learner", "d"))
    settle(net)
    net["a"].propose_conf_change(conf_change("remove", "c"))
    settle(net)
    # b restarts with its state machine at its applied index: the changes are not handed out again, so the node
    # replays them from the log itself.
    b = net.driver("b")
    assert b.applied_index >= 3
    restarted = RawNode(Config(id="b", applied=b.applied_index), b.storage)
    assert restarted.status().conf_state == ConfState(voters=("a", "b"), learners=("d",))
    assert restarted.ready().committed_entries == []


def test_a_fresh_node_is_bootstrapped_once_and_founds_the_cluster() -> None:
    from embedzk.persist.memory import MemoryStorage

    storage = MemoryStorage(ConfState())
    node = RawNode(Config(id="a"), storage)
    node.campaign()
    assert node.role is StateRole.FOLLOWER  # no membership: it may not campaign
    node.bootstrap(ConfState(voters=("a",)))
    rd = node.ready()
    assert rd.snapshot is not None and rd.snapshot[0].index == 0 and rd.snapshot[0].conf_state.voters == ("a",)
    storage.install_snapshot(*rd.snapshot)
    node.advance(rd)
    node.campaign()
    while node.has_ready():
        rd = node.ready()
        storage.append(rd.entries, rd.hard_state)
        node.advance(rd)
    assert node.role is StateRole.LEADER
    # A membership is founded once: every later change goes through the log.
    with pytest.raises(ValueError, match="holds a log"):
        node.bootstrap(ConfState(voters=("a", "b")))
    restarted = RawNode(Config(id="a"), storage)
    with pytest.raises(ValueError, match="cannot be bootstrapped"):
        restarted.bootstrap(ConfState(voters=("b",)))
