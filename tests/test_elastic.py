"""Elastic clusters in one process: founding through seeds, joining, the autopilot, members(), add/remove, leaving,
addresses that change, removed members, protocol versions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from embedzk import ConfigurationError, KeeperState, OperationTimeoutError, Peer
from embedzk.membership.versions import PROTOCOL_MAX
from embedzk.errors import BadArgumentsError
from embedzk.testing import wait_until

pytestmark = pytest.mark.timeout(120)

FAST = {"tick_interval": 0.01, "election_tick": 10, "session_timeout": 1.0}


class _Fleet:
    """Peers of one elastic cluster over inproc://, all with the same seeds line."""

    def __init__(self, seeds: int = 3, voters: int = 3, member_timeout: float = 1.0, **options: Any) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.seeds = [self.address(f"s{i}") for i in range(seeds)]
        self.voters = voters
        self.member_timeout = member_timeout
        self.options = {**FAST, **options}
        self.peers: dict[str, Peer] = {}

    def address(self, pid: str) -> str:
        return f"inproc://elastic-{self.tag}-{pid}"

    def make(self, pid: str, bind: str | None = None, **options: Any) -> Peer:
        peer = Peer(
            pid,
            bind=bind or self.address(pid),
            seeds=self.seeds,
            voters=self.voters,
            member_timeout=self.member_timeout,
            cluster=f"elastic-{self.tag}",
            **{**self.options, **options},
        )
        self.peers[pid] = peer
        return peer

    def start(self, *pids: str, timeout: float = 20.0, **options: Any) -> list[Peer]:
        peers = [self.make(pid, **options) for pid in pids]
        errors: list[BaseException] = []

        def run(peer: Peer) -> None:
            try:
                peer.start(timeout)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(p,)) for p in peers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return peers

    def running(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.state is not KeeperState.LOST]

    def leader(self) -> Peer:
        return wait_until(lambda: next((p for p in self.running() if p.is_leader), None), 10, what="a leader")

    def stop_all(self) -> None:
        for peer in list(self.peers.values()):
            peer.stop(close_session=False)


@pytest.fixture
def fleet() -> Iterator[_Fleet]:
    f = _Fleet()
    try:
        yield f
    finally:
        f.stop_all()


def _voters(peer: Peer) -> list[str]:
    return sorted(m.id for m in peer.members().values() if m.voter)


def test_the_seeds_found_the_cluster_and_workers_join_through_them(fleet: _Fleet) -> None:
    s0, s1, s2 = fleet.start("s0", "s1", "s2")
    w1, w2 = fleet.start("w1", "w2")
    members = s0.members()
    assert sorted(members) == ["s0", "s1", "s2", "w1", "w2"]
    assert sum(m.voter for m in members.values()) == 3
    assert sum(m.leader for m in members.values()) == 1
    assert len({p.stats()["cluster_uuid"] for p in fleet.peers.values()}) == 1
    w2.create("/hello", b"from a worker")
    s1.sync()
    assert s1.get("/hello")[0] == b"from a worker"
    # The cluster keeps three voters, whichever they are; the others observe.
    leader = fleet.leader()
    wait_until(lambda: len(_voters(leader)) == 3, 5)


def test_a_majority_of_the_seeds_is_enough_to_found(fleet: _Fleet) -> None:
    s0, s1 = fleet.start("s0", "s1")
    assert sorted(s0.members()) == ["s0", "s1"]
    [s2] = fleet.start("s2")  # the last seed arrives later: it joins the cluster, it does not found another
    wait_until(lambda: sorted(_voters(s0)) == ["s0", "s1", "s2"], 10)
    assert {p.stats()["cluster_uuid"] for p in (s0, s1, s2)} == {s0.stats()["cluster_uuid"]}


def test_a_founder_back_on_an_empty_disk_joins_the_cluster_it_does_not_found_another(fleet: _Fleet) -> None:
    s0, s1, s2 = fleet.start("s0", "s1", "s2")
    cluster = s0.stats()["cluster_uuid"]
    s0.create("/data", b"1")
    old_key = s2.stats()["member_key"]
    s2.stop(close_session=False)
    [s2] = fleet.start("s2")  # data_dir None: a fresh disk every start
    assert s2.stats()["cluster_uuid"] == cluster
    assert s2.stats()["member_key"] != old_key
    s2.sync()
    assert s2.get("/data")[0] == b"1"
    wait_until(lambda: old_key not in {m.key for m in s0.members().values()}, 10, what="old key replaced")


def test_a_dead_voter_is_replaced_by_a_caught_up_observer(fleet: _Fleet) -> None:
    fleet.start("s0", "s1", "s2")
    fleet.start("w1")
    leader = fleet.leader()
    victim = next(p for p in fleet.running() if p is not leader and p.id in _voters(leader))
    victim.stop(close_session=False)  # as if it died; it keeps its seat for member_timeout (1 s here)
    wait_until(
        lambda: victim.id not in leader.members() and len(_voters(leader)) == 3,
        15,
        what=f"{victim.id} replaced",
    )
    assert "w1" in _voters(leader)


def test_a_leaving_voter_hands_its_seat_over_first(fleet: _Fleet) -> None:
    fleet.start("s0", "s1", "s2")
    fleet.start("w1")
    leader = fleet.leader()
    wait_until(lambda: "w1" in leader.members(), 5)
    time.sleep(0.5)  # w1 becomes stable (the stabilization time is a quarter of member_timeout here)
    leaving = next(p for p in fleet.running() if p.id in _voters(leader) and p is not leader)
    leaving.stop(leave=True)
    leader = fleet.leader()
    assert leaving.id not in leader.members()
    wait_until(lambda: len(_voters(leader)) == 3 and "w1" in _voters(leader), 10)


def test_seeds_back_on_fresh_disks_join_the_cluster_that_moved_away_from_them(fleet: _Fleet) -> None:
    # Crash-heavy seed 26235: every seed address lost its member (one left, two lost their disks) while the cluster
    # lived on among the workers; two seeds back on fresh disks, a majority of the seeds, heard nobody at the seed
    # addresses and founded a second cluster. The leader now tells the seed addresses that the cluster exists.
    fleet.start("s0", "s1", "s2")
    fleet.start("w1", "w2", "w3")
    cluster = fleet.peers["s0"].stats()["cluster_uuid"]
    fleet.peers["s0"].create("/before", b"1")
    for seed in ("s0", "s1", "s2"):
        time.sleep(0.5)  # the workers become stable, so that each seat can be handed over
        fleet.peers[seed].stop(leave=True)
        survivor = fleet.peers["w1"]
        wait_until(lambda: seed not in survivor.members() and len(_voters(survivor)) == 3, 10, what=f"{seed} gone")
    s0, s1 = fleet.start("s0", "s1")  # data_dir None: fresh disks, at two of the three seed addresses
    assert s0.stats()["cluster_uuid"] == cluster and s1.stats()["cluster_uuid"] == cluster
    s1.sync()
    assert s1.get("/before")[0] == b"1"


def test_the_leader_can_leave_too(fleet: _Fleet) -> None:
    fleet.start("s0", "s1", "s2")
    fleet.start("w1")
    leader = fleet.leader()
    time.sleep(0.5)
    leader.stop(leave=True)
    successor = fleet.leader()
    assert successor is not leader and leader.id not in successor.members()
    wait_until(lambda: len(_voters(successor)) == 3, 10)


def test_remove_member_and_add_member(fleet: _Fleet) -> None:
    s0, s1, s2 = fleet.start("s0", "s1", "s2")
    [w1] = fleet.start("w1")
    key = w1.stats()["member_key"]
    w1.stop(close_session=False)  # gone (a running peer with seeds would join again as a new member)
    s0.remove_member("w1")
    assert "w1" not in s0.members()  # applied here before remove_member returned
    # A peer started with seeds=[] waits to be added.
    waiting = Peer("w2", bind=fleet.address("w2"), seeds=[], cluster=f"elastic-{fleet.tag}", **FAST)
    fleet.peers["w2"] = waiting
    starter = threading.Thread(target=waiting.start, kwargs={"timeout": 20})
    starter.start()
    s1.add_member("w2", fleet.address("w2"))
    starter.join()
    assert waiting.connected and "w2" in s0.members()
    waiting.sync()
    assert key not in {m.key for m in s0.members().values()}


def test_member_changes_refuse_bad_input(fleet: _Fleet) -> None:
    s0, _s1, _s2 = fleet.start("s0", "s1", "s2")
    with pytest.raises(BadArgumentsError, match="'nobody' is not a member"):
        s0.remove_member("nobody")
    with pytest.raises(BadArgumentsError, match="this peer itself: use stop"):
        s0.remove_member("s0")
    with pytest.raises(BadArgumentsError, match="is a member already"):
        s0.add_member("s1", fleet.address("s1"))
    with pytest.raises(BadArgumentsError, match="keeps voters=3 by itself"):
        s0.add_member("w9", fleet.address("w9"), voter=True)
    with pytest.raises(BadArgumentsError, match="tcp://, ipc:// or inproc://"):
        s0.add_member("w9", "10.0.0.9:7000")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seeds": ["inproc://x"], "peers": {"b": "inproc://b"}}, "either peers= .* or seeds="),
        ({"seeds": ["inproc://x"], "voters": 4}, "voters must be 1, 3, 5 or 7"),
        ({"seeds": ["inproc://x"], "voters": 0}, "voters must be 1, 3, 5 or 7"),
        ({"seeds": ["inproc://x"], "member_timeout": 0.1}, "member_timeout 0.1s is too short"),
        ({"seeds": "inproc://x"}, "seeds must be a list of addresses"),
        ({"seeds": ["inproc://x", "inproc://x"]}, "lists an address twice"),
        ({"seeds": ["10.0.0.1:7000"]}, "a seed address must start with tcp://"),
        ({"seeds": ["inproc://x"], "observer": True}, "observer=True is for static memberships"),
        ({"seeds": ["tcp://127.0.0.1:0"], "bind": "tcp://127.0.0.1:0"}, "a seed must have a fixed port"),
        ({"protocol_version": 9}, "not within what this build speaks"),
    ],
)
def test_membership_settings_are_checked(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("bind", "inproc://me")
    with pytest.raises(ConfigurationError, match=message):
        Peer("me", **kwargs)


def test_an_id_holding_an_address_separator_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must not contain '://'"):
        Peer("tcp://me")


def test_a_member_back_at_a_new_address_is_found_there(fleet: _Fleet) -> None:
    from embedzk.persist.memory import MemoryStorage

    fleet.start("s0", "s1", "s2")
    disk = MemoryStorage()
    worker = fleet.make("w1", storage=disk)
    worker.start(20)
    key = worker.stats()["member_key"]
    worker.stop(close_session=False)
    moved = fleet.make("w1", bind=fleet.address("w1-moved"), storage=disk)  # same disk, a pod's new IP
    moved.start(20)
    assert moved.stats()["member_key"] == key
    leader = fleet.leader()
    wait_until(lambda: leader.members()["w1"].address == fleet.address("w1-moved"), 10)
    moved.sync()
    leader.create("/after-move", b"")
    moved.sync()
    assert moved.exists("/after-move") is not None


def test_a_removed_member_learns_it_and_joins_again_as_a_new_member(fleet: _Fleet) -> None:
    s0, _s1, _s2 = fleet.start("s0", "s1", "s2")
    [w1] = fleet.start("w1")
    key = w1.stats()["member_key"]
    states: list[KeeperState] = []
    w1.add_listener(states.append)
    s0.remove_member("w1")
    # w1 hears it, reports LOST, and (having seeds) joins again on a fresh disk under a new key.
    wait_until(lambda: KeeperState.LOST in states, 10, what="LOST reported")
    wait_until(lambda: w1.connected and w1.stats()["member_key"] != key, 20, what="joined again")
    assert "w1" in s0.members() and s0.members()["w1"].key != key


def test_members_changed_is_signalled(fleet: _Fleet) -> None:
    s0, _s1, _s2 = fleet.start("s0", "s1", "s2")
    seen = threading.Event()
    s0.members_changed.connect(lambda sender: seen.set(), weak=False)
    fleet.start("w1")
    assert seen.wait(10)


def test_the_cluster_runs_the_highest_version_every_member_speaks(fleet: _Fleet) -> None:
    # One founder still runs the older release (pinned to protocol version 2), two the newer one.
    pinned = fleet.make("s0", protocol_version=2)
    newer = [fleet.make("s1"), fleet.make("s2")]
    threads = [threading.Thread(target=p.start, args=(20,)) for p in (pinned, *newer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fleet.start("w1")
    leader = fleet.leader()
    # The cluster stays at 2 while s0 is in it: once the leader has heard every member say what it speaks (the
    # moment it decides), the version is still 2.
    replica = leader._replica
    assert replica is not None
    wait_until(lambda: set(leader.members()) <= {m.partition("@")[0] for m in replica.membership._versions}, 10)
    assert leader.stats()["cluster_version"] == 2
    # At version 2 a follower has no word from the leader on reachability and lag.
    follower = next(p for p in fleet.running() if not p.is_leader and p is not pinned)
    assert all(m.reachable is None for m in follower.members().values() if m.id != follower.id)
    pinned.stop(leave=True)  # the last old peer goes: the version rises
    leader = fleet.leader()
    wait_until(lambda: leader.stats()["cluster_version"] == PROTOCOL_MAX, 10, what="the version rises")
    wait_until(lambda: all(m.reachable for m in follower.members().values()), 10)


def test_a_peer_too_old_for_the_cluster_is_refused_naming_both_versions(fleet: _Fleet) -> None:
    leader_side = fleet.start("s0", "s1", "s2")
    wait_until(lambda: leader_side[0].stats()["cluster_version"] == PROTOCOL_MAX, 10)
    with pytest.raises(ConfigurationError, match="too old for the cluster: it speaks protocol versions 2..2, the "
                                                  f"cluster runs version {PROTOCOL_MAX}"):
        fleet.start("w1", protocol_version=2, timeout=10)


def test_founders_given_different_seed_lists_refuse_to_found_two_clusters() -> None:
    tag = uuid.uuid4().hex[:8]
    a, b, c = (f"inproc://mismatch-{tag}-{x}" for x in "abc")
    first = Peer("a", bind=a, seeds=[a, b], cluster=tag, **FAST)
    second = Peer("b", bind=b, seeds=[a, b, c], cluster=tag, **FAST)
    errors: list[BaseException] = []

    def run(peer: Peer) -> None:
        try:
            peer.start(5)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors and all(isinstance(e, (ConfigurationError, OperationTimeoutError)) for e in errors)
        refusals = [str(e) for e in errors if isinstance(e, ConfigurationError)]
        assert refusals and all("founders differ" in r and a in r and c in r for r in refusals)
    finally:
        first.stop(close_session=False)
        second.stop(close_session=False)


def test_a_static_member_removed_is_lost_and_says_why() -> None:
    from embedzk.testing import LocalCluster

    with LocalCluster(n=3, **FAST) as cluster:
        p2 = cluster["p2"]
        cluster["p0"].remove_member("p2")
        wait_until(lambda: p2.state is KeeperState.LOST, 10, what="p2 lost")
        assert "was removed from the cluster" in (p2.stats()["removed"] or "")
        assert sorted(cluster["p0"].members()) == ["p0", "p1"]
        cluster["p1"].create("/two-voters", b"")  # the two left make the majority
