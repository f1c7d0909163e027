"""Observers: peers that replicate, serve local reads and forward writes, but never vote.

One cluster of 3 voters and 10 observers, in this process over inproc://, serves the tests that stop no member; a
test that stops members has a cluster of its own, so the tests pass in any order.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest

from embedzk import (
    ConnectionLossError,
    EventType,
    KeeperState,
    OperationTimeoutError,
    Peer,
)
from embedzk.testing import LocalCluster
from embedzk.testing.cluster import wait_until

pytestmark = pytest.mark.timeout(120)


def _cluster() -> LocalCluster:
    # request_timeout: short, so that a write refused for want of a quorum fails quickly.
    return LocalCluster(n=3, observers=10, session_timeout=3.0, request_timeout=1.5)


@pytest.fixture(scope="module")
def big() -> Iterator[LocalCluster]:
    """The cluster shared by the tests that stop no member."""
    with _cluster() as cluster:
        yield cluster


@pytest.fixture
def own() -> Iterator[LocalCluster]:
    """A cluster of the test's own, for a test that stops members."""
    with _cluster() as cluster:
        yield cluster


def _lose_the_quorum(cluster: LocalCluster) -> Peer:
    """Stop two of the three voters as if their processes died; return the lone voter, once it stepped down."""
    leader = cluster.leader()
    for voter in [v for v in cluster.voters if v is not leader]:
        cluster.stop_member(voter.id, close_session=False)
    wait_until(lambda: not leader.is_leader, timeout=10, what="the lone voter steps down")
    return leader


def test_three_voters_and_ten_observers_form_one_cluster(big: LocalCluster) -> None:
    assert len(big.voters) == 3 and len(big.observers) == 10
    leader = big.leader()
    assert leader in big.voters
    stats = leader.stats()
    assert sorted(stats["voters"]) == ["p0", "p1", "p2"]
    assert sorted(stats["observers"]) == [f"o{i}" for i in range(10)]
    for observer in big.observers:
        assert observer.observer and observer.state is KeeperState.CONNECTED
        assert observer.leader == leader.id and not observer.is_leader
        assert observer.stats()["role"] != "leader"
    assert len({p.session_id for p in big.peers}) == 13  # every observer has a session of its own
    assert leader.stats()["sessions"] >= 13


def test_observers_replicate_and_serve_local_reads(big: LocalCluster) -> None:
    big["p0"].create("/replicated", b"to everyone")
    for observer in big.observers:
        observer.sync()
        assert observer.get("/replicated")[0] == b"to everyone"
    last = big.observers[-1]
    applied = last.stats()["applied_index"]
    wait_until(lambda: all(o.stats()["applied_index"] >= applied for o in big.observers))


def test_observers_forward_writes(big: LocalCluster) -> None:
    for i, observer in enumerate(big.observers):
        assert observer.create(f"/from-o{i}", str(i).encode()) == f"/from-o{i}"
        assert observer.get(f"/from-o{i}")[0] == str(i).encode()  # it reads its own write at once
    t = big["o3"].transaction()
    t.create("/obs-txn")
    t.set_data("/from-o3", b"changed", version=0)
    assert t.commit()[0] == "/obs-txn"
    for voter in big.voters:
        voter.sync()
        assert len([c for c in voter.get_children("/") if c.startswith("from-o")]) == 10
        assert voter.get("/from-o3")[0] == b"changed"


def test_observer_ephemerals_and_watches(own: LocalCluster) -> None:
    events: queue.Queue[Any] = queue.Queue()
    own["o5"].watch("/obs-watched").connect(lambda sender, event: events.put(event), weak=False)
    own["p1"].create("/obs-watched", b"x")
    assert events.get(timeout=10).type is EventType.CREATED
    path = own["o7"].create("/o7-alive", b"", ephemeral=True)
    own["p0"].sync()
    assert own["p0"].exists(path).ephemeral_owner == own["o7"].session_id  # type: ignore[union-attr]
    own.stop_member("o7")
    own["p0"].sync()
    assert own["p0"].exists(path) is None


def test_stopping_observers_never_costs_the_quorum(own: LocalCluster) -> None:
    for pid in ("o0", "o1", "o2", "o3", "o4", "o6"):
        own.stop_member(pid, close_session=False)
    assert own.leader().create("/after-observers-left") == "/after-observers-left"
    own["o8"].create("/observer-still-writes")
    own["p2"].sync()
    assert own["p2"].exists("/observer-still-writes") is not None


def test_observers_never_vote(own: LocalCluster) -> None:
    # Stopping two of the three voters loses the quorum, however many observers are up: here the ten observers
    # outnumber the one voter left many times over, and still nobody is elected.
    own["o0"].create("/before-the-quorum-went", b"kept")
    for observer in own.observers:
        observer.sync()
    leader = _lose_the_quorum(own)
    # Every leader any member hears of from now on: an election would be announced to the observers at once.
    announced: queue.Queue[tuple[str, str | None]] = queue.Queue()
    for peer in own.peers:
        peer.leader_changed.connect(lambda sender, leader: announced.put((sender.id, leader)), weak=False)
    assert not any(p.is_leader for p in own.peers)
    # The writes wait for a leader until their request timeout (1.5 s): five election timeouts, in which the
    # lone voter tries again and again to be elected, and would be if the observers' votes counted.
    writes = [own.observers[0].create_async("/no-quorum"), leader.create_async("/no-quorum")]
    for write in writes:  # nobody takes them (a timeout, or no leader known for too long)
        assert isinstance(write.exception(10), (OperationTimeoutError, ConnectionLossError))
    assert not any(p.is_leader for p in own.peers)
    heard = [announced.get_nowait() for _ in range(announced.qsize())]
    assert all(new_leader is None for _peer, new_leader in heard), heard
    assert leader.state is KeeperState.SUSPENDED
    for observer in own.observers:
        assert observer.get("/before-the-quorum-went")[0] == b"kept"  # local reads still answer


def test_observers_are_suspended_once_the_voters_lost_their_quorum(own: LocalCluster) -> None:
    _lose_the_quorum(own)
    wait_until(lambda: all(o.state is KeeperState.SUSPENDED for o in own.observers), timeout=5)
    assert not any(p.is_leader for p in own.peers)


def test_an_observer_process_needs_the_voters() -> None:
    peer = Peer("lonely-observer", bind="inproc://lonely-observer", peers={"p0": "inproc://nobody-p0"},
                observer=True)
    with pytest.raises(OperationTimeoutError):
        peer.start(timeout=0.5)
