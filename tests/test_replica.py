"""The replica layer, driven step by step without I/O: forwarding, sessions, ephemerals, reaping, sync."""

from __future__ import annotations

import random
from typing import Any

import pytest

from embedzk.codec import decode
from embedzk.consensus.types import ConfState
from embedzk.errors import BadArgumentsError, NodeExistsError, SessionExpiredError
from embedzk.persist.memory import MemoryStorage
from embedzk.replica import Completion, Replica, ReplicaConfig
from embedzk.replica.messages import Forward, pack
from embedzk.tree.txn import CreateOp, SetDataOp

TICK = 0.01


class Cluster:
    """Replicas over memory disks, a FIFO network with cut links, and a manual clock."""

    def __init__(self, n: int = 3, session_timeout: float = 0.5, seed: int = 1) -> None:
        self.ids = [f"r{i}" for i in range(n)]
        conf = ConfState(voters=tuple(self.ids))
        rng = random.Random(seed)
        self.disks = {i: MemoryStorage(conf) for i in self.ids}
        self.replicas = {
            i: Replica(
                ReplicaConfig(id=i, tick_interval=TICK, session_timeout=session_timeout, reap_interval=0.05),
                self.disks[i],
                random.Random(rng.random()),
            )
            for i in self.ids
        }
        self.now = 0.0
        self.queue: list[tuple[str, str, bytes]] = []
        self.cut: set[str] = set()
        self.completions: dict[str, list[Completion]] = {i: [] for i in self.ids}
        self.events: dict[str, list[Any]] = {i: [] for i in self.ids}

    def pump(self, node_id: str) -> None:
        replica = self.replicas[node_id]
        while replica.has_ready():
            rd = replica.ready()
            self.queue.extend((node_id, to, frame) for to, frame in pack(rd.early_messages))
            if rd.raft is not None:
                if rd.raft.snapshot is not None:
                    self.disks[node_id].install_snapshot(*rd.raft.snapshot)
                if rd.raft.entries or rd.raft.hard_state is not None:
                    self.disks[node_id].append(rd.raft.entries, rd.raft.hard_state)
            out = replica.advance(rd)
            if out.snapshot is not None:
                self.disks[node_id].save_snapshot(*out.snapshot)
                self.disks[node_id].compact(out.compact_to)
            self.queue.extend((node_id, to, frame) for to, frame in pack(out.messages))
            self.completions[node_id].extend(out.completions)
            self.events[node_id].extend(out.applied)

    def deliver_all(self) -> None:
        while self.queue:
            frm, to, data = self.queue.pop(0)
            if frm in self.cut or to in self.cut or to not in self.replicas:
                continue
            self.replicas[to].receive(frm, decode(data))
            self.pump(to)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / TICK)):
            self.now += TICK
            for node_id, replica in self.replicas.items():
                replica.tick(self.now, 1_700_000_000_000 + int(self.now * 1000))
                self.pump(node_id)
            self.deliver_all()

    def leader(self) -> Replica:
        leaders = [r for r in self.replicas.values() if r.is_leader]
        assert len(leaders) == 1, [r.id for r in leaders]
        return leaders[0]

    def follower(self) -> Replica:
        return next(r for r in self.replicas.values() if not r.is_leader)

    def request(self, replica: Replica, op: Any, request_id: int, timeout: float = 2.0) -> Completion:
        immediate = replica.submit(request_id, op, timeout)
        if immediate is not None:
            return immediate
        self.pump(replica.id)
        for _ in range(int(timeout / TICK) + 10):
            for done in self.completions[replica.id]:
                if done.request_id == request_id:
                    return done
            self.run(TICK)
        raise AssertionError(f"request {request_id} never completed")


@pytest.fixture
def cluster() -> Cluster:
    c = Cluster()
    c.run(1.0)
    return c


def test_one_leader_and_every_replica_opens_a_session(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert all(r.lead == leader.id for r in cluster.replicas.values())
    assert all(r.session_id for r in cluster.replicas.values())
    assert len(leader.tree.sessions()) == 3


def test_a_follower_forwards_and_reads_its_own_write(cluster: Cluster) -> None:
    follower = cluster.follower()
    done = cluster.request(follower, CreateOp("/x", b"1"), 1)
    assert done.error is None and done.value == "/x"
    # Answered only once applied here: the follower's own tree already has it.
    assert follower.tree.get("/x")[0] == b"1"
    again = cluster.request(follower, CreateOp("/x", b"2"), 2)
    assert isinstance(again.error, NodeExistsError)


def test_a_duplicated_forward_is_proposed_once(cluster: Cluster) -> None:
    leader, follower = cluster.leader(), cluster.follower()
    fwd = Forward(leader.term, follower.incarnation, 77, 0, SetDataOp("/", b"", -1))
    leader.receive(follower.id, fwd)
    leader.receive(follower.id, fwd)
    cluster.pump(leader.id)
    cluster.deliver_all()
    cluster.run(0.1)
    assert leader.tree.exists("/").version == 1  # one set, not two


def test_a_forward_from_another_term_is_not_proposed(cluster: Cluster) -> None:
    leader, follower = cluster.leader(), cluster.follower()
    leader.receive(follower.id, Forward(leader.term - 1, follower.incarnation, 78, 0, SetDataOp("/", b"old", -1)))
    cluster.pump(leader.id)
    cluster.deliver_all()
    cluster.run(0.1)
    assert leader.tree.get("/")[0] == b""


def test_invalid_requests_are_refused_before_the_log(cluster: Cluster) -> None:
    leader = cluster.leader()
    before = leader.applied
    done = leader.submit(5, CreateOp("/a/", b""), 1.0)
    assert done is not None and isinstance(done.error, BadArgumentsError)
    done = leader.submit(6, CreateOp("/big", b"x" * (2 << 20)), 1.0)
    assert done is not None and isinstance(done.error, BadArgumentsError)
    assert leader.applied == before


def test_ephemerals_go_when_their_owner_is_cut_off_past_its_session_timeout(cluster: Cluster) -> None:
    follower = cluster.follower()
    done = cluster.request(follower, CreateOp("/eph", b"", ephemeral=True), 1)
    assert done.error is None
    old_session = follower.session_id
    cluster.cut.add(follower.id)
    cluster.run(1.0)  # twice the session timeout
    leader = cluster.leader()
    assert leader.tree.exists("/eph") is None
    assert old_session not in leader.tree.sessions()
    cluster.cut.clear()
    cluster.run(1.0)
    # Back in touch: it learnt its session expired, opened a new one, and its tree agrees.
    assert follower.session_id not in (None, old_session)
    assert follower.tree.exists("/eph") is None
    assert follower.tree.digest == leader.tree.digest


def test_ephemeral_create_without_a_session_fails_clearly() -> None:
    c = Cluster()
    replica = c.replicas["r0"]
    done = replica.submit(1, CreateOp("/e", b"", ephemeral=True), 1.0)
    assert done is not None and isinstance(done.error, SessionExpiredError)


def test_the_leader_reaps_empty_containers_and_expired_ttl_nodes(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert cluster.request(leader, CreateOp("/box", b"", container=True), 1).error is None
    assert cluster.request(leader, CreateOp("/box/item", b""), 2).error is None
    assert cluster.request(leader, CreateOp("/ttl", b"", ttl=100), 3).error is None
    cluster.run(0.3)
    assert leader.tree.exists("/box") is not None  # has a child
    assert leader.tree.exists("/ttl") is None  # unmodified for longer than 100 ms
    from embedzk.tree.txn import DeleteOp

    assert cluster.request(leader, DeleteOp("/box/item"), 4).error is None
    cluster.run(0.3)
    assert all(r.tree.exists("/box") is None for r in cluster.replicas.values())


def test_sync_completes_after_every_earlier_commit_is_applied(cluster: Cluster) -> None:
    leader, follower = cluster.leader(), cluster.follower()
    assert cluster.request(leader, CreateOp("/s", b"v"), 1).error is None
    follower.sync(2, 2.0)
    for _ in range(200):
        cluster.run(TICK)
        if any(c.request_id == 2 for c in cluster.completions[follower.id]):
            break
    assert any(c.request_id == 2 and c.error is None for c in cluster.completions[follower.id])
    assert follower.tree.get("/s")[0] == b"v"


def test_a_new_leader_keeps_sessions_alive(cluster: Cluster) -> None:
    old = cluster.leader()
    sessions = set(old.tree.sessions())
    cluster.cut.add(old.id)
    cluster.run(0.3)  # shorter than the session timeout, long enough for an election
    cluster.cut.clear()
    cluster.run(0.3)
    new = cluster.leader()
    # The old leader's session may go (it was cut off); the others' must survive the change of leader.
    survivors = {r.session_id for r in cluster.replicas.values() if r.id != old.id}
    assert survivors <= set(new.tree.sessions())
    assert survivors <= sessions


def test_the_record_of_proposed_forwards_stays_bounded() -> None:
    from embedzk.replica.replica import _SeenRequests

    seen = _SeenRequests()
    seen.add(-1)
    for request_id in range(1, 3 * _SeenRequests.KEEP):
        assert not seen.seen(request_id)
        seen.add(request_id)
    assert seen.seen(-1) and not seen.seen(-2)
    assert seen.seen(1)  # forgotten, and treated as seen: too old to propose again
    assert len(seen._ids) <= 2 * _SeenRequests.KEEP + 1


def test_a_replica_cut_off_past_its_session_never_says_connected_with_the_dead_session(cluster: Cluster) -> None:
    follower = cluster.follower()
    old_session = follower.session_id
    states: list[tuple[Any, Any]] = []
    original = follower._update_state

    def record(out: Any) -> None:
        original(out)
        if out.state is not None:
            states.append((out.state, follower.session_id))

    follower._update_state = record  # type: ignore[method-assign]
    cluster.cut.add(follower.id)
    cluster.run(1.0)  # twice the session timeout: the leader closed the session
    cluster.cut.clear()
    cluster.run(1.0)
    from embedzk.model import KeeperState

    assert (KeeperState.CONNECTED, old_session) not in states[1:], states
    assert follower.state is KeeperState.CONNECTED and follower.session_id not in (None, old_session)


def test_entries_of_an_earlier_incarnation_never_answer_this_ones_requests() -> None:
    c = Cluster()
    c.run(1.0)
    follower = c.follower()
    assert c.request(follower, CreateOp("/first", b""), 1).error is None
    # Restart the follower from its disk: request ids start again at 1, and it replays the entry above.
    fid = follower.id
    c.replicas[fid] = Replica(
        ReplicaConfig(id=fid, tick_interval=TICK, session_timeout=0.5, reap_interval=0.05),
        c.disks[fid],
        random.Random(99),
    )
    c.completions[fid] = []
    restarted = c.replicas[fid]
    assert restarted.submit(1, CreateOp("/second", b""), 2.0) is None
    c.pump(fid)
    c.run(0.5)
    answers = [done for done in c.completions[fid] if done.request_id == 1]
    assert len(answers) == 1 and answers[0].value == "/second", answers


def test_a_forward_lost_in_transit_is_sent_again(cluster: Cluster) -> None:
    follower = cluster.follower()
    assert follower.submit(9, CreateOp("/lost-once", b""), 5.0) is None
    cluster.pump(follower.id)
    cluster.queue.clear()  # the forward is lost on the way
    for _ in range(100):  # one second, far below the request's five
        cluster.run(TICK)
        if any(c.request_id == 9 for c in cluster.completions[follower.id]):
            break
    answers = [c for c in cluster.completions[follower.id] if c.request_id == 9]
    assert answers and answers[0].error is None and answers[0].value == "/lost-once"


def test_a_read_asked_by_an_earlier_incarnation_never_answers_this_ones_sync() -> None:
    # Request ids start again at every start. A read index the previous incarnation asked for (answered late, at
    # an older index) must not complete the restarted replica's sync of the same request id.
    c = Cluster()
    c.run(1.0)
    follower = c.follower()
    fid = follower.id
    old_incarnation = follower.incarnation
    follower.sync(1, 5.0)
    c.pump(fid)
    asked = [frame for frm, to, frame in c.queue if frm == fid]
    assert asked, "the follower asked the leader for a read index"
    c.queue = [item for item in c.queue if item[0] != fid]  # the old process's question is still out there
    c.replicas[fid] = restarted = Replica(
        ReplicaConfig(id=fid, tick_interval=TICK, session_timeout=0.5, reap_interval=0.05),
        c.disks[fid],
        random.Random(98),
    )
    assert restarted.incarnation != old_incarnation
    c.completions[fid] = []
    restarted.sync(1, 5.0)
    # The old question's answer arrives: an index from before (0 here).
    from embedzk.replica.replica import _read_ctx

    restarted._on_read_state(0, _read_ctx(fid, old_incarnation, 1))
    c.pump(fid)
    assert not [done for done in c.completions[fid] if done.request_id == 1], "answered by the old read"
    c.run(1.0)
    answers = [done for done in c.completions[fid] if done.request_id == 1]
    assert len(answers) == 1 and answers[0].error is None


def test_a_snapshot_from_the_leader_is_rebuilt_in_slices_while_the_replica_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from embedzk.replica import replica as replica_module
    from embedzk.tree.datatree import TreeRestorer

    cluster = Cluster(session_timeout=2.0)
    cluster.run(0.5)
    leader = cluster.leader()
    follower = cluster.follower()
    for r in cluster.replicas.values():
        r.config.snapshot_entries, r.config.keep_entries = 200, 0
    cluster.cut.add(follower.id)
    # About 3 MB of data: a snapshot of some two dozen chunks of 128 KiB.
    for i in range(1, 1501):
        assert leader.submit(i, CreateOp(f"/n{i:05}", bytes(2000)), timeout=30.0) is None
    cluster.pump(leader.id)
    cluster.run(1.0)
    assert leader.tree.node_count() > 1500 and leader.stats()["snapshot_index"] > 1000

    steps: list[int] = []
    original = TreeRestorer.step

    def counted(self: TreeRestorer, chunks: int) -> bool:
        steps.append(chunks)
        return original(self, chunks)

    monkeypatch.setattr(TreeRestorer, "step", counted)
    cluster.cut.clear()
    busy_ticks = 0
    asked = False
    for _ in range(500):
        cluster.run(TICK)
        if follower.busy:
            busy_ticks += 1
            # Not in place until whole: reads go on seeing the old tree, and a write asked meanwhile is taken.
            assert follower.tree.node_count() < 100
            if not asked:
                assert follower.submit(9999, CreateOp("/during", b"x"), timeout=30.0) is None
                asked = True
        elif busy_ticks:
            break
    assert busy_ticks >= 3, busy_ticks  # spread over several ticks, a few chunks each
    assert steps and max(steps) <= replica_module.RESTORE_CHUNKS_PER_STEP
    cluster.run(0.5)
    assert follower.tree.digest == leader.tree.digest and follower.tree.exists("/n01500") is not None
    done = [c for c in cluster.completions[follower.id] if c.request_id == 9999]
    assert done and done[0].error is None and follower.tree.exists("/during") is not None


def test_a_request_waits_for_a_leader_no_leader_timeout_from_when_it_was_asked() -> None:
    from embedzk.errors import ConnectionLossError

    cluster = Cluster(session_timeout=5.0)
    cluster.run(0.5)
    follower = cluster.follower()
    follower.config.no_leader_timeout = 0.3
    cluster.cut.add(follower.id)
    cluster.run(1.0)  # long past the limit without a leader
    assert follower.lead is None
    # Asked now, it still gets its own 0.3 s: healed within them, it is written, not failed at once.
    assert follower.submit(1, CreateOp("/late", b""), timeout=10.0) is None
    cluster.run(0.1)
    assert not cluster.completions[follower.id]
    cluster.cut.clear()
    cluster.run(0.5)
    assert [(c.request_id, c.error) for c in cluster.completions[follower.id]] == [(1, None)]
    # And one asked while still cut off fails after its 0.3 s, not at its request timeout.
    cluster.cut.add(follower.id)
    cluster.run(1.0)
    assert follower.submit(2, CreateOp("/cut", b""), timeout=10.0) is None
    cluster.run(0.2)
    assert len(cluster.completions[follower.id]) == 1
    cluster.run(0.2)
    last = cluster.completions[follower.id][-1]
    assert last.request_id == 2 and isinstance(last.error, ConnectionLossError), last


def test_a_few_large_entries_trigger_a_snapshot_and_the_bar_rises_with_the_snapshots_size() -> None:
    # A bulk load in large entries never reaches snapshot_entries: without a bound in bytes, a restart would replay
    # all of it. With one fixed bound in bytes, a large tree would be snapshotted again and again; the bar is the
    # last snapshot's size, so taking snapshots costs about what the writes do.
    cluster = Cluster(session_timeout=5.0)
    cluster.run(0.5)
    leader = cluster.leader()
    for r in cluster.replicas.values():
        r.config.snapshot_entries, r.config.snapshot_bytes = 10**9, 20_000
    taken: list[int] = []
    for i in range(1, 201):
        assert cluster.request(leader, CreateOp(f"/n{i:04}", bytes(2000)), i).error is None
        index = leader.stats()["snapshot_index"]
        if not taken or index != taken[-1]:
            taken.append(index)
    taken = [index for index in taken if index > 0]
    assert taken and taken[0] <= 20  # about 20,000 bytes in: ten nodes, after the sessions' entries
    others = taken[0] - 10  # entries before the first node (sessions, a new leader's empty entry)
    # Each later one waited for about as many bytes as the one before held: 2 KB per node so far.
    for before, after in zip(taken, taken[1:]):
        assert after - before >= 0.9 * (before - others), taken
    assert 3 <= len(taken) <= 6, taken


def test_a_restarted_replica_waits_for_as_many_bytes_as_the_snapshot_it_restored() -> None:
    # The bar is the last snapshot's size also after a restart: a member coming back with a large tree must not
    # snapshot all of it again after only snapshot_bytes of entries (those it replays from its log count too), as if
    # its tree were small.
    cluster = Cluster(session_timeout=5.0)
    cluster.run(0.5)
    leader = cluster.leader()
    for r in cluster.replicas.values():
        r.config.snapshot_entries, r.config.snapshot_bytes = 10**9, 20_000
    for i in range(1, 101):
        assert cluster.request(leader, CreateOp(f"/n{i:04}", bytes(2000)), i).error is None
    follower = cluster.follower()
    restored_index = follower.stats()["snapshot_index"]
    disk = cluster.disks[follower.id]
    restored = sum(len(chunk) for chunk in disk.snapshot_chunks())
    assert restored > 80_000  # much more than the configured bar
    config = ReplicaConfig(
        id=follower.id, tick_interval=TICK, session_timeout=5.0, reap_interval=0.05,
        snapshot_entries=10**9, snapshot_bytes=20_000,
    )  # fmt: skip
    cluster.replicas[follower.id] = restarted = Replica(config, disk, random.Random(5))
    cluster.run(0.5)
    # 20 more nodes: with the entries replayed since the snapshot, past snapshot_bytes, short of the snapshot's size.
    for i in range(101, 121):
        assert cluster.request(leader, CreateOp(f"/n{i:04}", bytes(2000)), i).error is None
    cluster.run(0.2)
    assert restarted.stats()["snapshot_index"] == restored_index
    # As many bytes as that snapshot held: the next one is taken.
    for i in range(121, 121 + restored // 2000 + 5):
        assert cluster.request(leader, CreateOp(f"/n{i:04}", bytes(2000)), i).error is None
    cluster.run(0.2)
    assert restarted.stats()["snapshot_index"] > restored_index


def test_a_replica_that_installed_the_leaders_snapshot_waits_for_as_many_bytes_as_it_held() -> None:
    cluster = Cluster(session_timeout=5.0)
    cluster.run(0.5)
    leader = cluster.leader()
    for r in cluster.replicas.values():
        r.config.snapshot_entries, r.config.snapshot_bytes, r.config.keep_entries = 10**9, 20_000, 0
    follower = cluster.follower()
    cluster.cut.add(follower.id)
    for i in range(1, 101):
        assert cluster.request(leader, CreateOp(f"/n{i:04}", bytes(2000)), i).error is None
    installed_index = leader.stats()["snapshot_index"]
    assert installed_index > 0
    cluster.cut.clear()
    cluster.run(0.5)
    assert follower.tree.get("/n0100")[0] == bytes(2000)
    # Caught up by the leader's snapshot, then the entries since (with the 20 below, past snapshot_bytes): no
    # snapshot of its own yet.
    installed = sum(len(chunk) for chunk in cluster.disks[follower.id].snapshot_chunks())
    assert installed > 80_000
    for i in range(101, 121):  # 40,000 bytes: past snapshot_bytes, short of the snapshot's size
        assert cluster.request(leader, CreateOp(f"/n{i:04}", bytes(2000)), i).error is None
    cluster.run(0.2)
    assert follower.stats()["snapshot_index"] == installed_index
    for i in range(121, 121 + installed // 2000 + 5):
        assert cluster.request(leader, CreateOp(f"/n{i:04}", bytes(2000)), i).error is None
    cluster.run(0.2)
    assert follower.stats()["snapshot_index"] > installed_index
