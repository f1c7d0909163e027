"""Read-index (thesis 6.4, etcd ReadOnlySafe) and leadership transfer (thesis 3.10, etcd MsgTimeoutNow)."""

from __future__ import annotations

import pytest

from embedzk.consensus import (
    Config,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    ReadState,
    StateRole,
)
from tests.raft_harness import ABC, Network, drive, storage_with_log


# --- read index ------------------------------------------------------------------------------------------------


def test_leader_read_index_after_a_heartbeat_round() -> None:
    net = Network(ABC)
    net.elect("a")
    net.propose("a", b"w")
    net["a"].read_index(b"r1")
    msgs = net.take()
    # The request waits for a majority to confirm the leader: a heartbeat round carrying its context.
    assert {m.to for m in msgs if m.type == MessageType.HEARTBEAT and m.context == b"r1"} == {"b", "c"}
    assert net.driver("a").read_states == []
    for m in msgs:
        net.deliver(m)
    net.stabilize()
    assert net.driver("a").read_states == [ReadState(index=2, request_ctx=b"r1")]


def test_follower_read_index_is_forwarded_and_answered() -> None:
    net = Network(ABC)
    net.elect("a")
    net.propose("a", b"w")
    net["b"].read_index(b"from-b")
    net.stabilize()
    assert net.driver("b").read_states == [ReadState(index=2, request_ctx=b"from-b")]
    assert net.driver("a").read_states == []


def test_a_leader_cut_off_from_the_majority_answers_no_read() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("a")
    net["a"].read_index(b"r")
    net.tick(3)
    assert net.driver("a").read_states == []


def test_one_majority_ack_releases_every_earlier_read() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("b")
    net.isolate("c")
    net["a"].read_index(b"r1")
    net["a"].read_index(b"r2")
    net["a"].read_index(b"r2")  # a duplicate context is one request
    net.stabilize()
    net.heal()
    net.tick(1)  # the next heartbeat carries the newest context
    assert [rs.request_ctx for rs in net.driver("a").read_states] == [b"r1", b"r2"]


def test_a_new_leader_answers_reads_only_after_committing_in_its_term() -> None:
    storages = {i: storage_with_log([1, 1], term=1) for i in ABC}
    net = Network(ABC, storages=storages, pre_vote=False)
    a = net["a"]
    a.campaign()
    for m in net.take():
        net.deliver(m)
    net.process()
    for m in net.take():
        if m.type == MessageType.VOTE_RESP:
            net.deliver(m)
    assert a.role == StateRole.LEADER
    a.read_index(b"early")
    net.process(["a"])
    # Nothing about the read went out: the leader does not know its commit index yet (thesis 6.4 step 1).
    assert not any(m.context == b"early" for m in net.queue)
    net.stabilize()
    net.tick(1)
    (rs,) = net.driver("a").read_states
    assert rs.request_ctx == b"early" and rs.index == 3


def test_single_voter_reads_at_once() -> None:
    net = Network(["a"])
    net.tick(20)
    net["a"].read_index(b"solo")
    net.stabilize()
    assert net.driver("a").read_states == [ReadState(index=1, request_ctx=b"solo")]


def test_read_index_without_a_leader_is_refused() -> None:
    net = Network(ABC)
    with pytest.raises(ProposalDroppedError):
        net["a"].read_index(b"x")


# --- leadership transfer -----------------------------------------------------------------------------------------


def test_transfer_to_an_up_to_date_follower() -> None:
    net = Network(ABC)
    net.elect("a")
    net.propose("a", b"x")
    net["a"].transfer_leadership("b")
    net.stabilize()
    assert net["b"].role == StateRole.LEADER
    assert net["a"].role == StateRole.FOLLOWER and net["a"].lead == "b"
    assert net["b"].term == 2
    net.propose("b", b"y")
    assert net.applied("a") == [b"x", b"y"]


def test_transfer_to_a_lagging_follower_catches_it_up_first() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("c")
    for i in range(5):
        net.propose("a", b"%d" % i)
    net.heal()
    net.record_delivered = True
    net["a"].transfer_leadership("c")
    net.stabilize()
    assert net["c"].role == StateRole.LEADER
    kinds = [m.type for m in net.delivered if m.to == "c"]
    # The appends that catch c up come before the order to campaign.
    assert MessageType.APP in kinds
    assert kinds.index(MessageType.TIMEOUT_NOW) > kinds.index(MessageType.APP)


def test_proposals_are_refused_during_a_transfer_and_it_aborts_after_a_timeout() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("c")
    net["a"].transfer_leadership("c")
    with pytest.raises(ProposalDroppedError):
        net["a"].propose(b"x")
    net.tick(10, ["a", "b"])
    assert net["a"].role == StateRole.LEADER
    net.propose("a", b"x")  # the transfer was abandoned
    assert net.applied("b") == [b"x"]


def test_transfer_requested_on_a_follower_is_forwarded() -> None:
    net = Network(ABC)
    net.elect("a")
    net["c"].transfer_leadership("c")
    net.stabilize()
    assert net["c"].role == StateRole.LEADER


def test_transfer_to_a_learner_or_a_stranger_is_ignored() -> None:
    net = Network(["a", "b"], learners=["l"])
    net.elect("a")
    net["a"].transfer_leadership("l")
    net["a"].transfer_leadership("zz")
    net.stabilize()
    assert net["a"].role == StateRole.LEADER
    net.propose("a", b"ok")


def test_timeout_now_from_a_stale_term_is_ignored() -> None:
    storage = storage_with_log([1], term=3)
    node = RawNode(Config(id="b"), storage)
    node.step(Message(type=MessageType.TIMEOUT_NOW, to="b", frm="a", term=2))
    drive(node, storage)
    assert node.role == StateRole.FOLLOWER and node.term == 3
