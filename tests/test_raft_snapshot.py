"""Log compaction and snapshot transfer in chunks (thesis 5.1-5.3; etcd: MsgSnap, with chunking of our own).

A leader whose log no longer holds what a follower needs sends ``storage.snapshot_chunks()`` one SNAP per chunk,
the next chunk only after the follower acknowledged the previous one; the follower restores once it has them all.
"""

from __future__ import annotations

from embedzk.consensus import ConfState, Message, MessageType, Ready, SnapshotMeta, StateRole
from tests.raft_harness import ABC, Driver, Network, Observer, conf_change


def lagging_cluster(entries: int = 20, chunk_bytes: int = 16) -> Network:
    """a leads; c missed ``entries`` proposals that a's log no longer holds."""
    net = Network(ABC)
    net.elect("a")
    net.isolate("c")
    for i in range(entries):
        net.propose("a", b"value-%02d" % i)
    meta = net.driver("a").take_snapshot(chunk_bytes=chunk_bytes)
    assert meta.index == entries + 1
    assert net["a"].status().first_index == entries + 2
    return net


def snaps(msgs: list[Message]) -> list[Message]:
    return [m for m in msgs if m.type == MessageType.SNAP]


def step_round(net: Network, msgs: list[Message]) -> list[Message]:
    """Deliver ``msgs``, let everyone process, return what they sent."""
    for m in msgs:
        net.deliver(m)
    return net.take()


def test_lagging_follower_receives_the_snapshot_chunk_by_chunk() -> None:
    net = lagging_cluster()
    chunks = net.driver("a").storage.snapshot_chunks()
    assert len(chunks) > 3
    net.heal()
    net["a"].tick()
    msgs = net.take()
    seen: list[int] = []
    for _ in range(200):
        outgoing = snaps(msgs)
        # Flow control: never more than one chunk in flight.
        assert len(outgoing) <= 1
        seen += [m.chunk_index for m in outgoing]
        if not msgs:
            break
        msgs = step_round(net, msgs)
    assert seen == list(range(len(chunks)))
    assert net.applied("c") == net.applied("a")
    assert net["c"].status().first_index == net["a"].status().first_index
    # Back to normal replication afterwards.
    net.propose("a", b"after")
    assert net.applied("c")[-1] == b"after"
    assert net["a"].status().progress["c"].state == "replicate"


def test_the_follower_hands_out_the_complete_snapshot_once() -> None:
    net = lagging_cluster()
    expected_meta = net.driver("a").storage.snapshot_meta()
    expected_chunks = list(net.driver("a").storage.snapshot_chunks())
    net.heal()
    got: list[tuple[SnapshotMeta, list[bytes]]] = []

    class Spy(Observer):
        def on_ready(self, driver: Driver, rd: Ready) -> None:
            if driver.id == "c" and rd.snapshot is not None:
                got.append(rd.snapshot)
                assert rd.committed_entries == []  # applied only after the snapshot

    net.observer = Spy()
    net.tick(10)
    net.observer = None
    assert got == [(expected_meta, expected_chunks)]


def test_a_lost_chunk_is_sent_again() -> None:
    net = lagging_cluster()
    net.heal()
    dropped: list[Message] = []

    def drop_chunk_two(m: Message) -> bool:
        if m.type == MessageType.SNAP and m.chunk_index == 2 and not dropped:
            dropped.append(m)
            return False
        return True

    net.filter = drop_chunk_two
    net.tick(10)
    assert dropped
    assert net.applied("c") == net.applied("a")


def test_a_lost_acknowledgement_is_recovered() -> None:
    net = lagging_cluster()
    net.heal()
    lost: list[Message] = []

    def drop_an_ack(m: Message) -> bool:
        if m.type == MessageType.SNAP_RESP and m.chunk_index == 1 and not lost:
            lost.append(m)
            return False
        return True

    net.filter = drop_an_ack
    net.tick(10)
    assert lost
    assert net.applied("c") == net.applied("a")


def test_a_follower_that_lost_its_chunks_makes_the_leader_restart_at_chunk_zero() -> None:
    net = lagging_cluster()
    net.heal()
    net["a"].tick()
    msgs = net.take()
    # Let three chunks through, then crash c.
    for _ in range(12):
        msgs = step_round(net, msgs)
        if any(m.type == MessageType.SNAP and m.chunk_index == 3 for m in msgs):
            break
    net.restart("c")
    net.record_delivered = True
    for m in msgs:
        net.deliver(m)
    net.stabilize()
    rejected = [m for m in net.delivered if m.type == MessageType.SNAP_RESP and m.reject]
    assert rejected and rejected[0].chunk_index == 3
    restarted = [m for m in net.delivered if m.type == MessageType.SNAP and m.chunk_index == 0]
    assert restarted
    net.tick(5)
    assert net.applied("c") == net.applied("a")


def test_duplicated_chunks_and_acks_are_harmless() -> None:
    net = lagging_cluster()
    net.heal()
    net["a"].tick()
    msgs = net.take()
    for _ in range(100):
        if not msgs:
            break
        # Every message twice, the second copy after the others.
        for m in msgs + msgs:
            net.deliver(m)
        msgs = net.take()
    net.tick(5)
    assert net.applied("c") == net.applied("a")


def test_a_new_leader_restarts_the_transfer_with_its_own_snapshot() -> None:
    net = lagging_cluster()
    net.driver("b").take_snapshot()  # b compacted too: whoever leads next must send a snapshot
    net.heal()
    net["a"].tick()
    msgs = net.take()
    for _ in range(3):
        msgs = step_round(net, msgs)
    # a loses leadership mid-transfer.
    net.isolate("a")
    net.queue.clear()
    net.tick(40, ["b", "c"])
    assert net["b"].role == StateRole.LEADER
    net.heal()
    net.tick(10)
    assert net.applied("c") == net.applied("b")
    assert net.applied("a") == net.applied("b")


def test_a_snapshot_the_follower_already_holds_only_moves_its_commit() -> None:
    net = Network(ABC)
    net.elect("a")
    for i in range(5):
        net.propose("a", b"%d" % i)
    meta = net.driver("a").storage.snapshot_meta()
    net.driver("a").take_snapshot(compact=False)
    meta = net.driver("a").storage.snapshot_meta()
    b = net["b"]
    before = b.status()
    b.step(
        Message(
            type=MessageType.SNAP,
            to="b",
            frm="a",
            term=1,
            snapshot=meta,
            chunk_index=0,
            chunk_count=1,
            chunk=b"",
        )
    )
    (resp,) = net.take()
    assert resp.type == MessageType.APP_RESP and resp.index == before.commit
    assert b.status().last_index == before.last_index


def test_a_node_added_after_compaction_joins_through_a_snapshot() -> None:
    net = Network(ABC)
    net.elect("a")
    for i in range(10):
        net.propose("a", b"%d" % i)
    net.driver("a").take_snapshot()
    d = net.add_node("d")  # empty storage, knows no members
    net["a"].propose_conf_change(conf_change("add", "d"))
    net.stabilize()
    net.tick(5)
    assert d.applied == net.applied("a")
    assert d.node.status().conf_state.voters == ("a", "b", "c", "d")
    # d counts in the new majority.
    net.isolate("b")
    net.isolate("c")
    net.tick(1)
    net.heal()
    net.propose("a", b"with-d")
    assert d.applied[-1] == b"with-d"


def test_a_node_added_before_compaction_learns_the_initial_membership() -> None:
    net = Network(ABC)
    net.elect("a")
    net.propose("a", b"x")
    d = net.add_node("d", ConfState())
    net["a"].propose_conf_change(conf_change("learner", "d"))
    net.stabilize()
    net.tick(5)
    # d replayed the log from index 1 against the cluster's initial membership, not its own empty one.
    assert d.node.status().conf_state == ConfState(voters=("a", "b", "c"), learners=("d",))
    assert d.storage.snapshot_meta().conf_state == ConfState(voters=("a", "b", "c"))
    # ... and keeps it over a restart.
    net.restart("d")
    net.tick(3)
    assert net["d"].status().conf_state == ConfState(voters=("a", "b", "c"), learners=("d",))
