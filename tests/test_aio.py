"""The asyncio face (peer.aio): every call as a coroutine, and an event loop that is never blocked."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from embedzk import (
    BadVersionError,
    ConnectionLossError,
    EventType,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    Peer,
    Stat,
)
from embedzk.testing import LocalCluster

pytestmark = pytest.mark.timeout(60)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_call_as_a_coroutine() -> None:
    async def main() -> None:
        async with Peer("aio").aio as zk:
            assert zk.is_leader and zk.leader == "aio" and zk.state.value == "CONNECTED"
            assert await zk.create("/a/b", b"1", makepath=True) == "/a/b"
            assert (await zk.create("/a/s-", b"", sequence=True)).startswith("/a/s-")
            data, stat = await zk.get("/a/b")
            assert data == b"1" and isinstance(stat, Stat)
            assert await zk.exists("/a/b") == stat
            assert await zk.exists("/nope") is None
            assert sorted(await zk.get_children("/a")) == ["b", "s-0000000001"]
            names, parent = await zk.get_children("/a", include_data=True)
            assert len(names) == parent.num_children == 2
            assert (await zk.set("/a/b", b"2", version=0)).version == 1
            with pytest.raises(BadVersionError):
                await zk.set("/a/b", b"3", version=0)
            with pytest.raises(NodeExistsError):
                await zk.create("/a/b")
            with pytest.raises(NoNodeError):
                await zk.get("/nope")
            await zk.ensure_path("/x/y/z")
            assert await zk.exists("/x/y/z") is not None
            await zk.delete("/x", recursive=True)
            assert await zk.exists("/x") is None
            await zk.delete("/a/b", version=1)
            await zk.sync()
            t = zk.transaction()
            t.create("/t1")
            t.create("/t2")
            assert await zk.commit(t) == ["/t1", "/t2"]
            stats = await zk.stats()
            assert stats["role"] == "leader" and stats["znode_count"] >= 4

    run(main())


def test_one_shot_watches_and_event_streams() -> None:
    async def main() -> None:
        async with Peer("aio-watch").aio as zk:
            fired = asyncio.Event()
            loop = asyncio.get_running_loop()
            assert await zk.exists("/w", watch=lambda e: loop.call_soon_threadsafe(fired.set)) is None
            events = zk.events("/tree", recursive=True)
            first = asyncio.ensure_future(events.__anext__())
            # The watch starts with the iteration: wait until its receiver is connected to the path's signal
            # (one signal per path, so the peer hands this one out again).
            signal = zk.peer.watch("/tree", recursive=True)

            async def connected() -> None:
                while not signal.receivers:
                    await asyncio.sleep(0.001)

            await asyncio.wait_for(connected(), 5)
            await zk.create("/w")
            await asyncio.wait_for(fired.wait(), 5)
            await zk.create("/tree")
            await zk.create("/tree/leaf", b"")
            got = [await asyncio.wait_for(first, 5), await asyncio.wait_for(events.__anext__(), 5)]
            assert [(e.type, e.path) for e in got] == [(EventType.CREATED, "/tree"), (EventType.CREATED, "/tree/leaf")]
            await events.aclose()

    run(main())


def test_the_event_loop_is_never_blocked_while_writes_wait() -> None:
    """A ticker task keeps ticking while writes await: none of the peer's calls blocks the event loop."""

    async def main() -> None:
        with LocalCluster(n=3) as cluster:
            follower = next(p for p in cluster.peers if not p.is_leader)
            zk = follower.aio  # writes are forwarded to the leader: each waits for a round trip and a commit
            ticks: list[float] = []
            stop = asyncio.Event()

            async def ticker() -> None:
                while not stop.is_set():
                    ticks.append(time.monotonic())
                    await asyncio.sleep(0.001)

            task = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            began = time.monotonic()
            await zk.ensure_path("/aio")
            for i in range(100):
                await zk.create(f"/aio/n{i}", b"x")
                await zk.set(f"/aio/n{i}", b"y")
            await asyncio.gather(*(zk.create(f"/aio/p{i}") for i in range(200)))
            await zk.sync()
            elapsed = time.monotonic() - began
            stop.set()
            await task
            during = [t for t in ticks if t >= began]
            assert len(await zk.get_children("/aio")) == 300
            assert len(during) >= 20 and elapsed > 0  # the ticker ran all along

            # Deterministic: a coroutine that blocked would have finished within its first step. Each call is
            # started as a task and the loop given one turn: the call must still be waiting for the peer.
            calls = [
                lambda i: zk.create(f"/aio/q{i}"),
                lambda i: zk.set(f"/aio/n{i}", b"z"),
                lambda i: zk.delete(f"/aio/p{i}"),
                lambda i: zk.sync(),
                lambda i: zk.ensure_path(f"/aio/e{i}/f"),
                lambda i: zk.get(f"/aio/n{i}", watch=lambda e: None),
            ]
            pending = 0
            for i in range(10):
                for call in calls:
                    task = asyncio.ensure_future(call(i))
                    await asyncio.sleep(0)
                    pending += not task.done()
                    await task
            assert pending >= len(calls) * 10 // 2
    run(main())


def test_a_slow_peer_call_does_not_hold_other_tasks() -> None:
    """A write that cannot commit (its peer lost the quorum) waits without blocking the loop."""

    async def main() -> None:
        with LocalCluster(n=3, request_timeout=2.0) as cluster:
            leader = cluster.leader()
            cluster.isolate(leader.id)
            others = [p for p in cluster.peers if p is not leader]
            cluster.leader(among=others)
            counter = 0

            async def count() -> None:
                nonlocal counter
                while True:
                    counter += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(count())
            # Which error depends on whether the cut-off leader still led when asked (the write then waits for
            # its timeout) or already knew no leader (it fails sooner); either way nothing answers it. What is
            # tested here is that the event loop runs other tasks all along.
            with pytest.raises((OperationTimeoutError, ConnectionLossError)):
                await leader.aio.create("/stuck")
            task.cancel()
            assert counter >= 20  # the loop ran other tasks for the whole wait
            cluster.heal()

    run(main())
