"""LocalCluster's hooks (stop, restart, partition, heal), its docstring example, and the cluster state a Peer reports
through them: leader, is_leader, CONNECTED / SUSPENDED / LOST, listeners and signals."""

from __future__ import annotations

import queue
import textwrap
import time
from typing import Any

import pytest

import embedzk.testing.cluster as cluster_module
from embedzk import (
    ConnectionLossError,
    EventType,
    KeeperState,
    OperationTimeoutError,
    Peer,
    StorageError,
)
from embedzk.testing import LocalCluster
from embedzk.testing.cluster import wait_until

pytestmark = pytest.mark.timeout(90)

#: The peers' tick (Peer's default tick_interval): the granularity of the leader's clock for session expiry.
TICK = 0.02
#: How late a loop or dispatch thread may run on a loaded machine: added to upper bounds of timings, never to
#: lower ones.
SLACK = 1.0


class StateLog:
    """Records a peer's states through both a listener and the state_changed signal, and its leader changes."""

    def __init__(self, peer: Peer) -> None:
        self.listened: list[KeeperState] = []
        self.signalled: list[KeeperState] = []
        self.leaders: list[str | None] = []
        peer.add_listener(self.listened.append)
        peer.state_changed.connect(self._on_state, weak=False)
        peer.leader_changed.connect(self._on_leader, weak=False)

    def _on_state(self, sender: Any, state: KeeperState) -> None:
        self.signalled.append(state)

    def _on_leader(self, sender: Any, leader: str | None) -> None:
        self.leaders.append(leader)


def test_the_docstring_example_runs() -> None:
    doc = cluster_module.__doc__ or ""
    example = textwrap.dedent(doc[doc.index("    from embedzk.testing") :])
    exec(compile(example, "embedzk/testing/cluster.py docstring", "exec"), {})


def test_every_member_agrees_on_one_leader() -> None:
    with LocalCluster(n=3) as c:
        leader = c.leader()
        assert [p.is_leader for p in c.peers].count(True) == 1
        assert {p.leader for p in c.peers} == {leader.id}
        assert all(p.state is KeeperState.CONNECTED and p.session_id for p in c.peers)
        assert len({p.session_id for p in c.peers}) == 3
        assert c["p1"].id == "p1" and c.voters == c.peers and c.observers == []


def test_stop_and_restart_a_member_from_its_data_directory(tmp_path: Any) -> None:
    with LocalCluster(n=3, data_dir=str(tmp_path)) as c:
        c["p0"].create("/kept", b"1")
        c.stop_member("p2")
        assert [p.id for p in c.peers] == ["p0", "p1"]
        with pytest.raises(KeyError):
            c["p2"]
        c["p0"].create("/while-down", b"2")  # two of three still make a majority
        p2 = c.restart_member("p2")
        p2.sync()
        assert p2.get("/kept")[0] == b"1" and p2.get("/while-down")[0] == b"2"
        assert (tmp_path / "p2").is_dir()


def test_a_memory_only_member_comes_back_empty_and_catches_up() -> None:
    with LocalCluster(n=3) as c:
        for i in range(20):
            c["p0"].create(f"/n{i}")
        old_key = c["p1"].stats()["member_key"]
        c.stop_member("p1", close_session=False)
        p1 = c.restart_member("p1", wipe=True)
        # Empty, it is a new member: the old one (which voted with a log this one lacks) was replaced.
        new_key = p1.stats()["member_key"]
        assert new_key != old_key
        p1.sync()
        assert len(p1.get_children("/")) == 20
        members = c["p0"].members()
        assert members["p1"].key == new_key and members["p1"].voter
        assert old_key not in {m.key for m in members.values()}


def test_a_member_restarted_on_its_disk_keeps_its_key() -> None:
    with LocalCluster(n=3) as c:
        key = c["p1"].stats()["member_key"]
        c.stop_member("p1", close_session=False)
        assert c.restart_member("p1").stats()["member_key"] == key


def test_stopping_the_leader_elects_another_and_signals_it() -> None:
    with LocalCluster(n=3) as c:
        old = c.leader()
        logs = {p.id: StateLog(p) for p in c.peers if p is not old}
        c.stop_member(old.id)
        new = c.leader()
        assert new.id != old.id
        for pid, log in logs.items():
            wait_until(lambda log=log: log.leaders and log.leaders[-1] == new.id, what=f"{pid} hears of {new.id}")
            assert c[pid].leader == new.id
        new.create("/after")  # writes resume


def test_an_isolated_follower_is_suspended_then_connected_again_on_heal() -> None:
    with LocalCluster(n=3, session_timeout=4.0) as c:
        leader = c.leader()
        follower = next(p for p in c.peers if p is not leader)
        follower.create("/eph", b"", ephemeral=True)
        session = follower.session_id
        log = StateLog(follower)
        c.isolate(follower.id)
        wait_until(lambda: follower.state is KeeperState.SUSPENDED, timeout=10)
        wait_until(lambda: log.listened == [KeeperState.SUSPENDED] and log.signalled == [KeeperState.SUSPENDED])
        assert follower.get("/eph")[1].ephemeral_owner == session  # local reads still answer
        leader.create("/while-isolated")
        assert follower.exists("/while-isolated") is None
        c.heal()
        wait_until(lambda: follower.state is KeeperState.CONNECTED, timeout=10)
        wait_until(lambda: log.listened == [KeeperState.SUSPENDED, KeeperState.CONNECTED])
        assert log.signalled == log.listened
        assert follower.session_id == session  # shorter than the session timeout: the session survived
        follower.sync()
        assert follower.exists("/while-isolated") is not None and follower.exists("/eph") is not None


def test_an_isolated_leader_steps_down_and_follows_the_new_one_after_heal() -> None:
    with LocalCluster(n=3, session_timeout=4.0) as c:
        old = c.leader()
        log = StateLog(old)
        c.isolate(old.id)
        wait_until(lambda: old.state is KeeperState.SUSPENDED and not old.is_leader, timeout=10)
        others = [p for p in c.peers if p is not old]
        new = wait_until(lambda: next((p for p in others if p.is_leader), None), timeout=10)
        new.create("/by-the-new-leader")
        c.heal()
        wait_until(lambda: old.state is KeeperState.CONNECTED and old.leader == new.id, timeout=10)
        wait_until(lambda: log.listened[-1:] == [KeeperState.CONNECTED] and new.id in log.leaders)  # dispatched later
        old.sync()
        assert old.exists("/by-the-new-leader") is not None
        assert KeeperState.SUSPENDED in log.listened and log.listened[-1] is KeeperState.CONNECTED
        assert new.id in log.leaders


def test_a_session_that_expires_during_a_partition_is_lost_then_renewed() -> None:
    with LocalCluster(n=3, session_timeout=1.0) as c:
        leader = c.leader()
        follower = next(p for p in c.peers if p is not leader)
        # The leader heard from the follower's session when it proposed this create, at the tick whose wall clock
        # stamped its mtime: the session cannot expire earlier than its timeout after that.
        _path, stat = follower.create("/mine", b"", ephemeral=True, include_data=True)
        leader.sync()  # the follower may apply its write before the leader does: reads elsewhere need a sync
        assert leader.exists("/mine") is not None
        old_session = follower.session_id
        log = StateLog(follower)
        c.isolate(follower.id)
        isolated = time.time()  # nothing from the follower reaches the leader after this
        wait_until(lambda: leader.exists("/mine") is None, timeout=10, interval=0.005, what="the session expires")
        gone = time.time()
        # The leader closes it once its monotonic clock says it was silent for longer than the timeout, looking
        # every tick; the close is applied a commit later. (A tick below: the leader reads its wall clock just
        # after its monotonic one, and may be preempted in between.)
        assert gone - stat.mtime / 1000 > 1.0 - TICK
        assert gone - isolated <= 1.0 + TICK + SLACK
        assert follower.exists("/mine") is not None  # the isolated peer cannot know yet
        c.heal()
        wait_until(lambda: KeeperState.LOST in log.listened, timeout=10)
        wait_until(lambda: follower.state is KeeperState.CONNECTED and follower.session_id not in (None, old_session))
        # The state changes on the loop thread, listeners hear of it a moment later on the dispatcher's.
        wait_until(lambda: log.listened[-1:] == [KeeperState.CONNECTED])
        assert log.listened[0] is KeeperState.SUSPENDED and log.listened[-1] is KeeperState.CONNECTED
        assert log.listened.index(KeeperState.LOST) < len(log.listened) - 1
        assert follower.exists("/mine") is None
        follower.create("/mine", b"", ephemeral=True)  # the new session owns ephemerals again
        assert follower.exists("/mine").ephemeral_owner == follower.session_id  # type: ignore[union-attr]


def test_a_lost_session_is_reported_without_a_connected_state_first() -> None:
    with LocalCluster(n=3, session_timeout=1.0) as c:
        leader = c.leader()
        follower = next(p for p in c.peers if p is not leader)
        old_session = follower.session_id
        log = StateLog(follower)
        c.isolate(follower.id)
        wait_until(lambda: old_session not in _sessions(leader), timeout=10)
        c.heal()
        wait_until(lambda: KeeperState.LOST in log.listened, timeout=10)
        # kazoo (and ZooKeeper's client) go SUSPENDED -> LOST -> CONNECTED: no CONNECTED with a dead session.
        assert log.listened[: log.listened.index(KeeperState.LOST)] == [KeeperState.SUSPENDED]


def _sessions(peer: Peer) -> Any:
    return peer._replica.tree.sessions()  # type: ignore[union-attr]


def test_a_write_forwarded_into_a_partition_completes_after_heal() -> None:
    with LocalCluster(n=3, session_timeout=4.0, request_timeout=6.0) as c:
        leader = c.leader()
        follower = next(p for p in c.peers if p is not leader)
        c.isolate(follower.id)
        future = follower.create_async("/during")  # forwarded to the leader at once; the partition drops it
        # stats() runs on the loop thread after the iteration that took the call in and forwarded it.
        wait_until(lambda: follower.stats()["outstanding_requests"] == 1, timeout=5)
        c.heal()
        try:
            assert future.result(4.0) == "/during"  # well before the request timeout
        except (OperationTimeoutError, ConnectionLossError, TimeoutError) as exc:
            pytest.fail(f"the write did not complete after the heal: {exc!r}")


def test_partition_groups_and_members_in_no_group() -> None:
    with LocalCluster(n=5) as c:
        c.partition(["p0", "p1"], ["p2", "p3"])  # p4 keeps its links to everyone
        majority_side = wait_until(
            lambda: next((p for p in c.peers if p.is_leader and p.state is KeeperState.CONNECTED), None), timeout=10
        )
        majority_side.create("/x")
        c.heal()
        c.wait_connected(10)
        for p in c.peers:
            p.sync()
            assert p.exists("/x") is not None


def test_a_minority_cannot_write() -> None:
    with LocalCluster(n=3, session_timeout=4.0, request_timeout=1.0) as c:
        leader = c.leader()
        c.isolate(leader.id)
        wait_until(lambda: not leader.is_leader, timeout=10)
        # Asked once it stepped down, the write is never proposed: no leader answers within the request timeout.
        # (Its term stays as it was while it is cut off: pre-vote keeps it from campaigning.)
        with pytest.raises(OperationTimeoutError):
            leader.create("/minority")
        c.heal()
        c.wait_connected(10)
        leader.sync()
        assert leader.exists("/minority") is None


def test_a_write_in_flight_when_its_leader_is_cut_off_fails_with_connection_loss() -> None:
    # An election timeout of 1 s: the cut-off leader goes on leading that long, ample time to see that it took the
    # write in (and so proposed it, in its own term) before it stepped down.
    with LocalCluster(n=3, election_tick=50, session_timeout=10.0, request_timeout=30.0) as c:
        old = c.leader()
        c.isolate(old.id)
        future = old.create_async("/in-flight")
        # stats() runs on the loop thread after the iteration that took the write in: still leading then, it
        # proposed the write at once, in a term whose entries nobody else will ever hold.
        stats = old.stats()
        assert stats["role"] == "leader" and stats["outstanding_requests"] == 1, stats
        term = stats["term"]
        others = [p for p in c.peers if p is not old]
        new = c.leader(among=others, timeout=30)
        new.create("/after")  # committed in the new leader's term
        assert not future.done()  # cut off, the old leader cannot know the outcome: it waits
        assert old.stats()["term"] == term
        c.heal()
        # On hearing of the new term, the write proposed in the old one has an unknown outcome: ConnectionLossError,
        # at once (long before the request timeout), not a timeout.
        with pytest.raises(ConnectionLossError):
            future.result(10)
        old.sync()
        assert old.exists("/after") is not None and old.exists("/in-flight") is None


def test_a_write_forwarded_to_a_leader_that_died_fails_with_connection_loss() -> None:
    # An election timeout of 1 s: a follower goes on believing in the dead leader that long.
    with LocalCluster(n=3, election_tick=50, session_timeout=10.0, request_timeout=30.0) as c:
        old = c.leader()
        follower = next(p for p in c.peers if p is not old)
        term = follower.stats()["term"]
        c.stop_member(old.id, close_session=False)  # as if its process died
        future = follower.create_async("/in-flight")
        # stats() runs on the loop thread after the iteration that took the write in: the follower still followed
        # the dead leader then, so it forwarded the write to it, in that term.
        stats = follower.stats()
        assert (stats["leader"], stats["term"], stats["outstanding_requests"]) == (old.id, term, 1), stats
        # The survivors elect a new leader: the forward's outcome is unknown (it may have been proposed before
        # the leader died), and the follower says so at once, long before the request timeout.
        with pytest.raises(ConnectionLossError):
            future.result(20)
        assert follower.stats()["term"] > term
        follower.create("/after")  # a write asked now goes to the new leader


def test_start_fails_clearly_when_a_member_cannot_start(tmp_path: Any) -> None:
    (tmp_path / "p1").write_text("not a directory")  # p1's data directory cannot be opened
    c = LocalCluster(n=3, data_dir=str(tmp_path))
    with pytest.raises(StorageError, match="p1"):
        c.start(timeout=5)
    assert c.peers == []


def test_cluster_events_are_queued_for_users_in_order() -> None:
    with LocalCluster(n=3) as c:
        events: queue.Queue[Any] = queue.Queue()
        c["p2"].watch("/", recursive=True).connect(lambda s, event: events.put(event.path), weak=False)
        for i in range(10):
            c["p0"].create(f"/e{i}")
        assert [events.get(timeout=5) for _ in range(10)] == [f"/e{i}" for i in range(10)]


def test_a_clean_stop_of_the_leader_hands_leadership_over_without_an_election_timeout() -> None:
    # An election timeout of 2 s: a new leader within 1.5 s can only come from the hand-over.
    with LocalCluster(n=3, tick_interval=0.01, election_tick=200, session_timeout=10.0) as c:
        old = c.leader(timeout=30)
        began = time.monotonic()
        c.stop_member(old.id)
        new = c.leader(timeout=1.5)
        assert new.id != old.id and time.monotonic() - began < 1.5
        assert all(p.leader == new.id for p in c.peers)
        new.create("/after-hand-over")


def test_zmq_transport_reconnects_to_a_restarted_inproc_peer() -> None:
    # ZeroMQ itself never reconnects inproc:// (tcp:// and ipc:// do): the transport must; LocalCluster relies on it.
    from embedzk.transport.zmq import ZmqTransport

    a = ZmqTransport("a", "inproc://reconnect-a")
    b = ZmqTransport("b", "inproc://reconnect-b")
    a.start()
    b.start()
    a.set_peers({"b": "inproc://reconnect-b"})
    try:
        wait_until(lambda: a.send("b", b"first") and b.receive(0.05), timeout=5)
        b.close()
        b = ZmqTransport("b", "inproc://reconnect-b")
        b.start()
        got: list[Any] = []
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            a.send("b", b"second")
            got = b.receive(0.05)
        assert got == [("a", b"second")]
    finally:
        a.close()
        b.close()


def test_a_member_far_behind_catches_up_by_snapshot_and_its_watches_fire() -> None:
    # The leader snapshots every 100 entries and keeps 1,000 behind; 1,500 writes while p2 is cut off leave it
    # behind the compacted log, so it can only catch up by installing the leader's snapshot.
    with LocalCluster(n=3, snapshot_entries=100, session_timeout=30.0) as c:
        c["p0"].create("/config", b"v1")
        lagging = next(p for p in c.peers if not p.is_leader)
        writer = next(p for p in c.peers if p is not lagging)
        lagging.sync()
        data_calls: queue.Queue[Any] = queue.Queue()
        lagging.DataWatch("/config", lambda data, stat: data_calls.put(data))
        assert data_calls.get(timeout=5) == b"v1"
        one_shot: queue.Queue[Any] = queue.Queue()
        lagging.exists("/created-while-away", watch=one_shot.put)
        children: queue.Queue[Any] = queue.Queue()
        lagging.ensure_path("/bulk")
        lagging.get_children("/bulk", watch=children.put)
        untouched: queue.Queue[Any] = queue.Queue()
        lagging.create("/untouched")
        lagging.get("/untouched", watch=untouched.put)
        c.isolate(lagging.id)
        wait_until(lambda: lagging.state is KeeperState.SUSPENDED, timeout=10)
        others = [p for p in c.peers if p is not lagging]
        writer = c.leader(among=others)
        futures = [writer.create_async(f"/bulk/n{i}", b"x" * 50) for i in range(1500)]
        for f in futures:
            f.result(30)
        writer.set("/config", b"v2")
        writer.create("/created-while-away")
        assert writer.stats()["snapshot_index"] > lagging.stats()["applied_index"] + 100
        c.heal()
        wait_until(lambda: data_calls.qsize() and list(data_calls.queue)[-1] == b"v2", timeout=20)
        event = one_shot.get(timeout=5)
        assert (event.type, event.path) == (EventType.CREATED, "/created-while-away")
        event = children.get(timeout=5)
        assert (event.type, event.path) == (EventType.CHILD, "/bulk")
        assert untouched.empty()  # a node the snapshot did not change fires nothing
        lagging.sync()
        assert len(lagging.get_children("/bulk")) == 1500
        assert lagging.stats()["snapshot_index"] > 0  # it holds the snapshot it installed


def test_writes_of_a_member_restarted_within_one_term_are_not_taken_for_copies() -> None:
    with LocalCluster(n=3, session_timeout=2.0, request_timeout=5.0) as c:
        follower = next(p for p in c.peers if not p.is_leader)
        for i in range(5):
            follower.create(f"/before-{i}")
        c.stop_member(follower.id, close_session=False)
        restarted = c.restart_member(follower.id, timeout=30)
        for i in range(5):  # the same request ids as before the restart would be dropped by the leader
            assert restarted.create(f"/after-{i}") == f"/after-{i}"


def test_a_member_restarted_within_one_term_gets_a_session_at_once() -> None:
    with LocalCluster(n=3, session_timeout=10.0) as c:
        follower = next(p for p in c.peers if not p.is_leader)
        c.stop_member(follower.id, close_session=False)
        c.restart_member(follower.id, timeout=3)  # well under the session timeout
