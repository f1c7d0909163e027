"""The driver contract (ready, persist, send, apply, advance), the wire form of messages, and configuration."""

from __future__ import annotations

import pytest

from embedzk.codec import decode, encode
from embedzk.consensus import (
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    RawNode,
    ReadyProtocolError,
    SnapshotMeta,
    SoftState,
    StateRole,
)
from embedzk.errors import DecodeError
from embedzk.persist.memory import MemoryStorage
from tests.raft_harness import Network, drive, fresh


@pytest.mark.parametrize(
    "msg",
    [
        Message(type=MessageType.HEARTBEAT, to="b", frm="a", term=3, commit=7, context=b"ctx"),
        Message(
            type=MessageType.APP,
            to="b",
            frm="a",
            term=3,
            index=4,
            log_term=2,
            commit=4,
            entries=(Entry(3, 5, EntryType.NORMAL, b"x"), Entry(3, 6, EntryType.CONF_CHANGE, b"\x00")),
        ),
        Message(
            type=MessageType.SNAP,
            to="b",
            frm="a",
            term=3,
            snapshot=SnapshotMeta(index=9, term=2, conf_state=ConfState(voters=("a", "b"), learners=("l",))),
            chunk_index=1,
            chunk_count=4,
            chunk=b"\x01" * 10,
        ),
        Message(type=MessageType.APP_RESP, to="a", frm="b", term=3, index=4, reject=True, reject_hint=2, log_term=1),
    ],
)
def test_messages_survive_the_codec(msg: Message) -> None:
    assert decode(encode(msg), expect=Message) == msg


def test_garbage_is_a_decode_error() -> None:
    good = encode(Message(type=MessageType.HEARTBEAT, to="b", frm="a", term=1))
    for bad in (good[:-1], good.replace(b"\x07", b"\x63", 1), b"\xff\x00"):
        with pytest.raises(DecodeError):
            decode(bad, expect=Message)


def test_ready_hands_out_hard_state_only_when_it_changed() -> None:
    node, storage = fresh(voters=("a",))
    assert not node.has_ready()
    node.campaign()
    assert node.has_ready()
    rd = node.ready()  # the candidate's term and vote, to persist before its vote counts
    assert rd.soft_state == SoftState(lead=None, role=StateRole.CANDIDATE)
    assert rd.hard_state == HardState(term=1, vote="a", commit=0)
    assert rd.must_sync
    storage.append(rd.entries, rd.hard_state)
    node.advance(rd)
    rd = node.ready()  # leader: its empty entry
    assert rd.soft_state == SoftState(lead="a", role=StateRole.LEADER)
    assert rd.hard_state is None
    assert [(e.term, e.index) for e in rd.entries] == [(1, 1)]
    assert rd.must_sync
    storage.append(rd.entries, rd.hard_state)
    node.advance(rd)
    rd = node.ready()  # the self-acknowledgement committed entry 1
    assert rd.hard_state == HardState(term=1, vote="a", commit=1)
    assert rd.soft_state is None
    assert not rd.must_sync  # a commit-only change need not be synced
    assert [e.index for e in rd.committed_entries] == [1]
    storage.append(rd.entries, rd.hard_state)
    node.advance(rd)
    assert not node.has_ready()


def test_only_one_ready_is_outstanding() -> None:
    node, storage = fresh(voters=("a",))
    node.campaign()
    rd = node.ready()
    assert rd.hard_state is not None
    with pytest.raises(ReadyProtocolError):
        node.ready()
    with pytest.raises(ReadyProtocolError):
        node.advance(type(rd)())
    storage.append(rd.entries, rd.hard_state)
    node.advance(rd)
    with pytest.raises(ReadyProtocolError):
        node.advance(rd)


def test_messages_that_need_durability_come_with_what_they_depend_on() -> None:
    # A vote: the Ready that carries the vote response also carries the hard state recording the vote.
    node, _ = fresh()
    node.step(Message(type=MessageType.VOTE, to="a", frm="b", term=5))
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == "b"
    assert [m.type for m in rd.messages] == [MessageType.VOTE_RESP]
    node.advance(rd)
    # An append: the acknowledgement travels with the entries it acknowledges.
    node.step(Message(type=MessageType.APP, to="a", frm="b", term=5, entries=(Entry(5, 1, data=b"v"),)))
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"v"]
    (ack,) = rd.messages
    assert ack.type == MessageType.APP_RESP and ack.index == 1 and not ack.reject
    assert rd.must_sync


def test_a_leaders_appends_may_leave_before_its_own_disk_write() -> None:
    # Thesis 10.2.1: the leader replicates while it writes. Only a leader's appends, heartbeats and snapshot chunks
    # come early; whatever promises durability (acknowledgements, votes) waits in Ready.messages.
    net = Network(["a", "b", "c"])
    net.elect("a")
    leader = net["a"]
    leader.propose(b"v")
    rd = leader.ready()
    assert [e.data for e in rd.entries] == [b"v"]
    assert sorted(m.to for m in rd.early_messages) == ["b", "c"]
    assert {m.type for m in rd.early_messages} == {MessageType.APP}
    assert all(m.type in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP) for m in rd.early_messages)
    assert not [m for m in rd.messages if m.type == MessageType.APP]
    # The leader counts itself only after advance(): one follower's acknowledgement is not a quorum yet; both
    # followers' are, whatever became of the leader's own write.
    for m in rd.early_messages:
        net.deliver(m)
    acks = [m for m in net.take() if m.to == "a"]
    assert {m.type for m in acks} == {MessageType.APP_RESP}
    leader.step(acks[0])
    assert leader.status().commit < rd.entries[0].index
    leader.step(acks[1])
    assert leader.status().commit == rd.entries[0].index
    net.driver("a").storage.append(rd.entries, rd.hard_state)
    leader.advance(rd)
    # A follower's acknowledgement never comes early: it promises the entries are on its disk.
    follower = net["b"]
    leader.propose(b"w")
    (app,) = [m for m in leader.ready().early_messages if m.to == "b"]
    follower.step(app)
    frd = follower.ready()
    assert frd.early_messages == []
    assert [m.type for m in frd.messages] == [MessageType.APP_RESP]


def test_step_ignores_messages_for_someone_else_or_from_itself() -> None:
    node, _ = fresh()
    node.step(Message(type=MessageType.VOTE, to="b", frm="c", term=5))
    node.step(Message(type=MessageType.VOTE, to="a", frm="a", term=5))
    node.step(Message(type=MessageType.HEARTBEAT, to="a", frm="b", term=-1))
    assert node.term == 0
    assert not node.has_ready()


def test_responses_from_unknown_senders_are_ignored() -> None:
    net = Network(["a", "b", "c"])
    net.elect("a")
    net["a"].step(Message(type=MessageType.APP_RESP, to="a", frm="zz", term=1, index=100))
    net["a"].step(Message(type=MessageType.HEARTBEAT_RESP, to="a", frm="zz", term=1))
    assert "zz" not in net["a"].status().progress
    assert not net.take()


def test_status_reports_the_leaders_view() -> None:
    net = Network(["a", "b", "c"])
    net.elect("a")
    net.propose("a", b"x")
    st = net["a"].status()
    assert (st.id, st.term, st.lead, st.role, st.commit, st.applied) == ("a", 1, "a", StateRole.LEADER, 2, 2)
    assert st.conf_state == ConfState(voters=("a", "b", "c"))
    assert {k: (p.match, p.next, p.state) for k, p in st.progress.items()} == {
        "a": (2, 3, "replicate"),
        "b": (2, 3, "replicate"),
        "c": (2, 3, "replicate"),
    }
    assert net["b"].status().progress == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"id": ""},
        {"id": "a", "heartbeat_tick": 0},
        {"id": "a", "election_tick": 1, "heartbeat_tick": 1},
        {"id": "a", "max_inflight_msgs": 0},
    ],
)
def test_invalid_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RawNode(Config(**bad), MemoryStorage(ConfState(voters=("a",))))  # type: ignore[arg-type]


def test_the_default_rng_is_seeded_from_the_id() -> None:
    a1, _ = fresh("a")
    a2, _ = fresh("a")
    b, _ = fresh("b")
    assert a1.raft.randomized_election_timeout == a2.raft.randomized_election_timeout
    timeouts_a = []
    timeouts_b = []
    for _ in range(20):
        a1.raft.become_follower(a1.term + 1, None)
        b.raft.become_follower(b.term + 1, None)
        timeouts_a.append(a1.raft.randomized_election_timeout)
        timeouts_b.append(b.raft.randomized_election_timeout)
    assert timeouts_a != timeouts_b


def test_drive_helper_runs_a_single_node_to_quiescence() -> None:
    node, storage = fresh(voters=("a",))
    node.campaign()
    drive(node, storage)
    node.propose(b"1")
    msgs, applied = drive(node, storage)
    assert msgs == []
    assert [e.data for e in applied] == [b"1"]
    assert storage.last_index() == 2
