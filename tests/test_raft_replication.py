"""Log replication: batching, pipelining, conflict resolution with fast backtracking, the commit rule, and
tolerance of duplicated, reordered and stale messages (thesis 3.5, 3.6.2, 10.2; after etcd's raft_test.go and
raft_paper_test.go)."""

from __future__ import annotations

import pytest

from embedzk.consensus import (
    Config,
    ConfState,
    Entry,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    StateRole,
)
from embedzk.persist.memory import MemoryStorage
from tests.raft_harness import ABC, Network, drive, log_terms, storage_with_log


def apps(msgs: list[Message], to: str | None = None) -> list[Message]:
    return [m for m in msgs if m.type == MessageType.APP and (to is None or m.to == to)]


def test_entries_are_replicated_and_applied_in_order() -> None:
    net = Network(ABC)
    net.elect("a")
    for i in range(10):
        net.propose("a", b"%d" % i)
    expected = [b"%d" % i for i in range(10)]
    assert all(net.applied(i) == expected for i in ABC)
    assert all(net[i].status().commit == 11 for i in ABC)


def test_many_proposals_go_out_in_one_append_per_follower() -> None:
    net = Network(ABC)
    net.elect("a")
    for _i in range(100):
        net["a"].propose(b"x" * 10)
    msgs = net.take()
    for follower in ("b", "c"):
        (app,) = apps(msgs, follower)
        assert len(app.entries) == 100


def test_appends_are_split_by_max_size_per_msg() -> None:
    net = Network(ABC, max_size_per_msg=35)
    net.elect("a")
    net.isolate("b")
    for _i in range(10):
        net["a"].propose(b"x" * 10)
    msgs = apps(net.take(), "c")
    # Replicate state: several size-limited messages go out at once (pipelining).
    assert [len(m.entries) for m in msgs] == [3, 3, 3, 1]
    net.heal()
    for m in msgs:
        net.deliver(m)
    net.stabilize()
    assert net.applied("c") == [b"x" * 10] * 10


def test_an_entry_larger_than_max_size_still_goes_out() -> None:
    net = Network(ABC, max_size_per_msg=8)
    net.elect("a")
    net.propose("a", b"y" * 100)
    assert net.applied("b") == [b"y" * 100]


def test_pipelining_stops_at_max_inflight_until_acknowledged() -> None:
    net = Network(ABC, max_size_per_msg=10, max_inflight_msgs=2)
    net.elect("a")
    for _i in range(6):
        net["a"].propose(b"z" * 10)
    msgs = net.take()
    assert len(apps(msgs, "b")) == 2  # two in flight, then paused
    assert net["a"].status().progress["b"].paused
    # Each acknowledgement frees a slot and the next append follows.
    for m in apps(msgs, "b"):
        net.deliver(m)
    net.process(["b"])
    for m in net.take():
        if m.to == "a" and m.frm == "b":
            net.deliver(m)
    assert len(apps(net.take(), "b")) == 2
    net.queue.clear()
    net.stabilize()
    net.tick(3)
    assert net.applied("b") == [b"z" * 10] * 6


def test_probe_sends_one_append_at_a_time() -> None:
    net = Network(ABC, max_size_per_msg=10)
    net.elect("a")
    net["a"].report_unreachable("b")  # back to probing
    assert net["a"].status().progress["b"].state == "probe"
    for _i in range(5):
        net["a"].propose(b"p" * 10)
    assert len(apps(net.take(), "b")) == 1


def test_a_single_node_commits_only_what_it_persisted() -> None:
    storage = MemoryStorage(ConfState(voters=("a",)))
    node = RawNode(Config(id="a"), storage)
    node.campaign()
    drive(node, storage)
    node.propose(b"v")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"v"]
    assert rd.committed_entries == []  # not yet durable: the leader does not count itself
    storage.append(rd.entries, rd.hard_state)
    node.advance(rd)
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"v"]
    node.advance(rd)


def test_leader_commits_old_entries_only_through_an_entry_of_its_term() -> None:
    # thesis 3.6.2 (Figure 3.7): a's log holds entries of terms 1 and 2 that no majority acknowledged yet.
    storage = storage_with_log([1, 2], term=2)
    a = RawNode(Config(id="a", pre_vote=False), storage)
    a.campaign()
    drive(a, storage)
    a.step(Message(type=MessageType.VOTE_RESP, to="a", frm="b", term=3))
    assert a.role == StateRole.LEADER
    drive(a, storage)
    assert log_terms(a) == [1, 2, 3]
    # b acknowledges the old entries only: a majority holds entry 2, but it is of term 2.
    a.step(Message(type=MessageType.APP_RESP, to="a", frm="b", term=3, index=2))
    drive(a, storage)
    assert a.status().commit == 0
    # b acknowledges the new leader's empty entry: now 3, and everything before it, commits.
    a.step(Message(type=MessageType.APP_RESP, to="a", frm="b", term=3, index=3))
    _, applied = drive(a, storage)
    assert a.status().commit == 3
    assert [e.index for e in applied] == [1, 2, 3]


def test_follower_commit_never_passes_what_it_matched() -> None:
    net = Network(ABC)
    net.elect("a")
    net.isolate("c")
    net.propose("a", b"1")
    heartbeats = []
    net.heal()
    net.tick(1)  # heartbeats flow
    net.record_delivered = True
    net["a"].tick()
    net.process()
    heartbeats = [m for m in net.queue if m.type == MessageType.HEARTBEAT]
    by_to = {m.to: m.commit for m in heartbeats}
    assert by_to["b"] == 2
    assert by_to["c"] <= net["a"].status().progress["c"].match


# Figure 3.7 of the thesis (Figure 7 of the Raft paper): whatever the follower holds, the leader of term 8
# makes the follower's log equal to its own.
LEADER_LOG = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FOLLOWER_LOGS = {
    "a-missing-one": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b-missing-many": [1, 1, 1, 4],
    "c-one-extra": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d-extra-of-higher-term": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e-divergent-term-4": [1, 1, 1, 4, 4, 4, 4],
    "f-divergent-terms-2-3": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FOLLOWER_LOGS))
def test_leader_brings_any_follower_log_in_line(case: str) -> None:
    follower = FOLLOWER_LOGS[case]
    storages = {
        "a": storage_with_log(LEADER_LOG, term=7),
        "b": storage_with_log(follower, term=7),
        "c": storage_with_log([], term=7),  # votes for a, so a wins whatever b thinks
    }
    net = Network(ABC, storages=storages, pre_vote=False)
    net.record_delivered = True
    net.elect("a")
    assert net["a"].role == StateRole.LEADER and net["a"].term == 8
    assert log_terms(net["b"]) == LEADER_LOG + [8]
    rejections = [m for m in net.delivered if m.type == MessageType.APP_RESP and m.frm == "b" and m.reject]
    # Fast backtracking: at most one rejection per term the logs disagree on, not one per entry.
    assert len(rejections) <= 3


def test_fast_backtracking_skips_a_long_divergent_tail() -> None:
    # etcd's example: the follower holds a long uncommitted tail of higher terms than the leader's entries there.
    leader = [1, 3, 3, 3, 3, 3, 3, 3, 7]
    follower = [1, 3, 3, 4, 4, 5, 5, 5, 6]
    storages = {
        "a": storage_with_log(leader, term=7),
        "b": storage_with_log(follower, term=7),
        "c": storage_with_log([], term=7),
    }
    net = Network(ABC, storages=storages, pre_vote=False)
    net.record_delivered = True
    net.elect("a")
    assert log_terms(net["b"]) == leader + [8]
    rejections = [m for m in net.delivered if m.type == MessageType.APP_RESP and m.frm == "b" and m.reject]
    assert len(rejections) <= 2


def test_a_follower_far_behind_catches_up_in_a_few_round_trips() -> None:
    net = Network(ABC, max_size_per_msg=1 << 16)
    net.elect("a")
    net.isolate("c")
    for i in range(1000):
        net["a"].propose(b"%d" % i)
        if i % 100 == 0:
            net.stabilize()
    net.stabilize()
    net.heal()
    net.record_delivered = True
    net.tick(2)
    assert net.applied("c") == net.applied("a")
    assert len(net.applied("c")) == 1000
    rejections = [m for m in net.delivered if m.type == MessageType.APP_RESP and m.frm == "c" and m.reject]
    assert len(rejections) <= 1


def test_duplicated_and_reordered_appends_are_harmless() -> None:
    net = Network(ABC, max_size_per_msg=10)
    net.elect("a")
    for i in range(8):
        net["a"].propose(b"%09d" % i)
    msgs = net.take()
    to_b = apps(msgs, "b")
    assert len(to_b) == 8
    # Deliver b's appends backwards, twice, then the rest of the traffic.
    for m in list(reversed(to_b)) + to_b:
        net.deliver(m)
    for m in msgs:
        if m.to != "b":
            net.deliver(m)
    net.stabilize()
    net.tick(3)
    expected = [b"%09d" % i for i in range(8)]
    assert net.applied("b") == expected and net.applied("c") == expected
    # A stale acknowledgement (from the first append) moves nothing backwards.
    before = net["a"].status().progress["b"]
    net["a"].step(Message(type=MessageType.APP_RESP, to="a", frm="b", term=1, index=1))
    net["a"].step(Message(type=MessageType.APP_RESP, to="a", frm="b", term=1, index=1, reject=True, reject_hint=0))
    after = net["a"].status().progress["b"]
    assert (after.match, after.next) == (before.match, before.next)


def test_an_append_below_the_commit_index_is_answered_with_the_commit_index() -> None:
    net = Network(ABC)
    net.elect("a")
    net.propose("a", b"x")
    commit = net["b"].status().commit
    net["b"].step(Message(type=MessageType.APP, to="b", frm="a", term=1, index=0, log_term=0, commit=0))
    (resp,) = net.take()
    assert resp.type == MessageType.APP_RESP and resp.index == commit and not resp.reject


def test_a_malformed_append_is_ignored() -> None:
    net = Network(ABC)
    net.elect("a")
    bad = Message(type=MessageType.APP, to="b", frm="a", term=1, index=1, log_term=1, entries=(Entry(1, 5),))
    net["b"].step(bad)
    assert not net.take()


def test_a_follower_forwards_proposals_to_the_leader() -> None:
    net = Network(ABC)
    net.elect("a")
    net["b"].propose(b"via-b")
    (prop,) = net.take()
    assert prop.type == MessageType.PROP and prop.to == "a" and prop.term == 1
    net.deliver(prop)
    net.stabilize()
    assert all(net.applied(i) == [b"via-b"] for i in ABC)


def test_a_forwarded_proposal_from_another_term_is_dropped() -> None:
    net = Network(ABC)
    net.elect("a")
    stale = Message(type=MessageType.PROP, to="a", frm="b", term=0, entries=(Entry(0, 0, data=b"old"),))
    net["a"].step(stale)
    net.stabilize()
    assert net.applied("a") == []


def test_proposals_are_refused_without_a_leader() -> None:
    net = Network(ABC)
    with pytest.raises(ProposalDroppedError):
        net["a"].propose(b"x")
    net["a"].campaign()
    assert net["a"].role == StateRole.PRE_CANDIDATE
    with pytest.raises(ProposalDroppedError):
        net["a"].propose(b"x")


def test_uncommitted_bytes_are_bounded() -> None:
    net = Network(ABC, max_uncommitted_bytes=100)
    net.elect("a")
    net.isolate("a")
    net["a"].propose(b"x" * 60)  # an empty tail accepts any size
    with pytest.raises(ProposalDroppedError):
        net["a"].propose(b"x" * 60)
    net["a"].propose(b"")  # empty entries are never refused
    net.heal()
    net.stabilize()
    net.tick(2)
    net["a"].propose(b"x" * 60)  # applied entries freed the budget


def test_entries_survive_a_restart() -> None:
    net = Network(ABC)
    net.elect("a")
    for i in range(5):
        net.propose("a", b"%d" % i)
    net.restart("b")
    assert net["b"].term == 1
    assert net["b"].status().last_index == 6
    net.tick(3)
    net.propose("a", b"after")
    assert net.applied("b") == [b"0", b"1", b"2", b"3", b"4", b"after"]


def test_restart_with_applied_does_not_hand_out_entries_again() -> None:
    net = Network(ABC)
    net.elect("a")
    for i in range(5):
        net.propose("a", b"%d" % i)
    storage = net.driver("b").storage
    node = RawNode(Config(id="b", applied=4), storage)
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [5, 6]


def test_inputs_between_ready_and_advance_are_safe() -> None:
    net = Network(ABC)
    net.elect("a")
    b = net.driver("b")
    net["a"].propose(b"one")
    net.process(["a"])
    first = net.take()
    for m in first:
        net.deliver(m)
    rd = b.node.ready()  # b holds "one" in this Ready
    net["a"].propose(b"two")
    for m in net.take():
        net.deliver(m)  # "two" reaches b before it advanced
    b.storage.append(rd.entries, rd.hard_state)
    b.node.advance(rd)
    rd2 = b.node.ready()
    assert [e.data for e in rd2.entries] == [b"two"]  # not handed out twice, not lost
    b.storage.append(rd2.entries, rd2.hard_state)
    net.queue.extend(rd.early_messages + rd.messages + rd2.early_messages + rd2.messages)
    b.node.advance(rd2)
    net.stabilize()
    net.tick(2)
    assert net.applied("b") == [b"one", b"two"]
