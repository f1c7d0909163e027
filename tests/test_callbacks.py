"""Application callbacks never run on the peer's loop thread: a blocking call inside a future's done-callback works,
as under kazoo, and a blocking call on the loop thread itself fails at once instead of deadlocking."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest

from embedzk import LoopThreadError, Peer
from embedzk.testing import LocalCluster, wait_until

pytestmark = pytest.mark.timeout(60)


def test_a_blocking_call_in_a_done_callback_completes_and_leadership_stays() -> None:
    with LocalCluster(n=3) as cluster:
        leader = cluster.leader()
        term = leader.stats()["term"]
        done = threading.Event()
        seen: dict[str, Any] = {}

        def callback(future: Future[Any]) -> None:
            seen["thread"] = threading.current_thread().name
            seen["stat"] = leader.set("/cb", b"from the callback")  # blocks until committed
            done.set()

        leader.create_async("/cb", b"").add_done_callback(callback)
        assert done.wait(10), "the blocking call inside the callback did not complete"
        assert "loop" not in seen["thread"]
        assert seen["stat"].version == 1
        assert leader.is_leader and leader.stats()["term"] == term  # nobody stalled: no election


def test_callbacks_of_a_future_done_already_run_at_once_on_the_caller() -> None:
    with Peer("solo") as peer:
        future = peer.create_async("/x", b"")
        future.result(5)
        ran = []
        future.add_done_callback(lambda f: ran.append(threading.current_thread()))
        wait_until(lambda: ran, 5)


def test_a_blocking_call_on_the_loop_thread_fails_at_once() -> None:
    with Peer("solo") as peer:
        outcome: Future[Any] = peer._on_loop(lambda: peer.create("/never"))
        with pytest.raises(LoopThreadError, match="would wait for itself forever"):
            outcome.result(5)
        assert peer.exists("/never") is None
        peer.create("/after", b"")  # the peer goes on
