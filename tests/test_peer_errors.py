"""What the application hears when the cluster cannot answer: promptly, and in words that say why."""

from __future__ import annotations

import time

import pytest

from embedzk import ConnectionLossError, KeeperState, OperationTimeoutError, Peer
from embedzk.testing import LocalCluster, wait_until

pytestmark = pytest.mark.timeout(60)


def test_a_write_while_no_leader_is_known_fails_with_connection_loss_in_a_bounded_time() -> None:
    with LocalCluster(n=3, no_leader_timeout=0.5) as cluster:
        survivor = cluster["p0"]
        for pid in ("p1", "p2"):
            cluster.stop_member(pid, close_session=False)
        wait_until(lambda: survivor.leader is None, 10, what="the survivor knows no leader")
        began = time.monotonic()
        with pytest.raises(ConnectionLossError, match=r"create /x: no leader known for .*majority of the voters \['p0', 'p1', 'p2'\]"):
            survivor.create("/x", b"")
        # Within the no-leader timeout and a tick or two, far below the request timeout (30 s).
        assert time.monotonic() - began < 0.5 + 1.0


def test_a_timeout_names_the_operation_the_time_and_what_is_missing() -> None:
    with LocalCluster(n=3, request_timeout=0.5, no_leader_timeout=30.0) as cluster:
        survivor = cluster["p0"]
        for pid in ("p1", "p2"):
            cluster.stop_member(pid, close_session=False)
        with pytest.raises(OperationTimeoutError, match=r"set /x: no answer within 0\.5s .*majority of the voters"):
            survivor.set("/x", b"")


def test_stopping_the_last_peer_returns_promptly() -> None:
    cluster = LocalCluster(n=3).start()
    last = cluster["p2"]
    cluster.stop_member("p0")
    cluster.stop_member("p1", close_session=False)
    began = time.monotonic()
    cluster.stop_member("p2")  # no quorum left to close its session: it expires by itself
    assert time.monotonic() - began < 2.0
    assert last.state is KeeperState.LOST


def test_an_unstarted_peer_says_lost_as_kazoo_does() -> None:
    peer = Peer("idle")
    assert peer.state is KeeperState.LOST and "LOST" in repr(peer)


@pytest.mark.parametrize("bad", [0, -1.0, True, "1"])
def test_no_leader_timeout_must_be_a_positive_number(bad: object) -> None:
    with pytest.raises(Exception, match="no_leader_timeout must be a positive number"):
        Peer("x", no_leader_timeout=bad)  # type: ignore[arg-type]
