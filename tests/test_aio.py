"""The asyncio face (peer.aio): every call as a coroutine, and an event loop that is never blocked."""

from __future__ import annotations

import ast
import asyncio
import gc
import inspect
import re
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from embedzk import (
    BadVersionError,
    ConnectionLossError,
    EventType,
    KeeperState,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    Peer,
    Stat,
    WatchedEvent,
)
from embedzk.aio import AsyncChildrenWatch, AsyncDataWatch, EventStream
from embedzk.testing import LocalCluster

pytestmark = pytest.mark.timeout(60)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def until(predicate: Any, timeout: float = 10.0, what: str = "") -> None:
    """Wait in the event loop until ``predicate()`` is true (polling); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what or predicate}"
        await asyncio.sleep(0.005)


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
            events = zk.events("/tree", recursive=True)  # connected before it returns: nothing to wait for
            first = asyncio.ensure_future(events.__anext__())
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


# ----------------------------------------------------------------------------------------------------------------
# event streams: registered when made


def test_a_stream_iterated_in_a_new_task_misses_no_event() -> None:
    """The reported loss: a consumer task iterates over ``events(path)``, the caller gives the loop one turn and
    writes. The watch used to start only once the iteration had received its registration, after the write (10
    runs of 20 missed the first event); it is connected when ``events()`` returns now."""

    async def main() -> list[int]:
        missed = []
        async with Peer("aio-race").aio as zk:
            for i in range(20):
                path = f"/race{i}"
                seen: list[WatchedEvent] = []
                done = asyncio.Event()

                async def consumer() -> None:
                    async for event in zk.events(path):  # noqa: B023 - run within this round
                        seen.append(event)  # noqa: B023
                        if event.type is EventType.CHANGED:
                            done.set()  # noqa: B023
                            return

                task = asyncio.create_task(consumer())
                await asyncio.sleep(0)
                await zk.create(path)
                await zk.set(path, b"x")
                # Events come in zxid order: once the set's event is in, the create's came before it or never.
                await asyncio.wait_for(done.wait(), 10)
                await task
                if [e.type for e in seen] != [EventType.CREATED, EventType.CHANGED]:
                    missed.append(i)
        return missed

    assert run(main()) == []


def test_a_stream_hears_changes_made_before_its_iteration_starts() -> None:
    async def main() -> None:
        async with Peer("aio-early").aio as zk:
            for i in range(20):
                events = zk.events(f"/early{i}", recursive=True)  # no await in between: not even one loop turn
                await zk.create(f"/early{i}")
                await zk.create(f"/early{i}/child")
                got = [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
                assert [(e.type, e.path) for e in got] == [
                    (EventType.CREATED, f"/early{i}"), (EventType.CREATED, f"/early{i}/child")
                ]
                await events.aclose()
                assert events.closed

    run(main())


def test_watch_is_registered_on_entering_for_changes_made_through_other_peers() -> None:
    async def main() -> None:
        with LocalCluster(n=3) as cluster:
            a, b = cluster.peers[0], cluster.peers[1]
            for i in range(10):
                async with a.aio.watch(f"/other{i}") as events:
                    assert isinstance(events, EventStream)
                    await b.aio.create(f"/other{i}", b"from b")
                    event = await asyncio.wait_for(anext(events), 10)
                    assert (event.type, event.path) == (EventType.CREATED, f"/other{i}")
                assert events.closed
                with pytest.raises(StopAsyncIteration):
                    await anext(events)

    run(main())


def test_a_stream_ends_when_closed_dropped_or_its_peer_stops() -> None:
    async def main() -> None:
        zk = Peer("aio-end").aio
        await zk.start()
        signal = zk.peer.watch("/end")  # the path's signal, which every stream of /end is connected to

        # Closed from another task: the waiting iteration ends.
        stream = zk.events("/end")
        waiting = asyncio.create_task(anext(stream))
        await asyncio.sleep(0)
        stream.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)

        # Leaving the loop (break, return) leaves nothing connected once the stream is no longer referenced.
        async def first_event() -> WatchedEvent:
            async for event in zk.events("/end"):
                return event
            raise AssertionError("the stream ended")  # pragma: no cover

        task = asyncio.create_task(first_event())
        await asyncio.sleep(0)
        assert signal.receivers
        await zk.create("/end")
        assert (await asyncio.wait_for(task, 5)).type is EventType.CREATED
        # (The dispatch thread holds the callback it ran last until it runs the next one: give it another.)
        fired = asyncio.Event()
        loop = asyncio.get_running_loop()
        await zk.exists("/next", watch=lambda e: loop.call_soon_threadsafe(fired.set))
        await zk.create("/next")
        await asyncio.wait_for(fired.wait(), 5)

        def disconnected() -> bool:
            gc.collect()
            return not signal.receivers

        await until(disconnected, what="the dropped stream's receiver is gone")

        # The peer stops: an iteration waiting on it ends instead of waiting forever.
        ended = asyncio.Event()

        async def consume() -> None:
            async for _event in zk.events("/end", recursive=True):
                pass
            ended.set()

        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await zk.stop()
        await asyncio.wait_for(ended.wait(), 10)
        await task
        with pytest.raises(Exception, match="stopped"):
            zk.events("/end")

    run(main())


def test_events_outside_an_event_loop_are_refused() -> None:
    peer = Peer("aio-noloop")
    peer.start()
    try:
        with pytest.raises(RuntimeError):
            peer.aio.events("/x")
        assert peer.aio is peer.aio
    finally:
        peer.stop()


# ----------------------------------------------------------------------------------------------------------------
# DataWatch and ChildrenWatch as async iterators


def test_data_watch_yields_the_data_now_and_after_every_change() -> None:
    async def main() -> None:
        async with Peer("aio-data").aio as zk:
            async with zk.DataWatch("/config") as config:
                assert isinstance(config, AsyncDataWatch)
                assert await asyncio.wait_for(anext(config), 5) == (None, None, None)  # not there yet
                # Each item is read when it is dispatched: take it before the next change, to see every state.
                got = []
                for change in (
                    zk.create("/config", b"v1"),
                    zk.set("/config", b"v2"),
                    zk.delete("/config"),
                    zk.create("/config", b"v3"),  # the watch outlives the node
                ):
                    await change
                    got.append(await asyncio.wait_for(anext(config), 5))
                assert [(data, event.type if event else None) for data, _stat, event in got] == [
                    (b"v1", EventType.CREATED), (b"v2", EventType.CHANGED), (None, EventType.DELETED),
                    (b"v3", EventType.CREATED),
                ]
                assert got[1][1] is not None and got[1][1].version == 1
                watch = config._watch
            assert config.closed and watch.stopped

            # Registered before DataWatch() returns: a change made at once is seen (after the first item).
            early = zk.DataWatch("/config")
            await zk.set("/config", b"v4")
            first, second = [await asyncio.wait_for(anext(early), 5) for _ in range(2)]
            assert first[2] is None and second[0] == b"v4" and second[2] is not None
            # Dropped: its watch ends with it.
            watch = early._watch
            del early, first, second
            gc.collect()
            assert watch.stopped

    run(main())


def test_children_watch_yields_children_and_ends_with_the_node() -> None:
    async def main() -> None:
        async with Peer("aio-children").aio as zk:
            children = zk.ChildrenWatch("/workers")  # not there yet: the first item comes when it is created
            assert isinstance(children, AsyncChildrenWatch)
            await zk.create("/workers")
            await zk.create("/workers/w1")
            await zk.create("/workers/w2")
            # Each item is read when it is dispatched: quick changes may show the latest children more than once.
            seen: list[list[str]] = []
            while not seen or sorted(seen[-1]) != ["w1", "w2"]:
                seen.append(await asyncio.wait_for(anext(children), 5))
            assert 1 <= len(seen) <= 4
            with_events = zk.ChildrenWatch("/workers", send_event=True)
            names, event = await asyncio.wait_for(anext(with_events), 5)
            assert sorted(names) == ["w1", "w2"] and event is None
            await zk.delete("/workers", recursive=True)
            # The node went: both iterations end (after what came before).
            rest = [names async for names in children]
            assert all(isinstance(names, list) for names in rest)
            async for names, event in with_events:
                assert event is not None and event.type is EventType.CHILD
            assert children.closed and with_events.closed

    run(main())


# ----------------------------------------------------------------------------------------------------------------
# state listeners in the event loop


def test_state_listeners_run_in_the_event_loop_one_call_at_a_time() -> None:
    async def main() -> None:
        # A session that outlives the cuts: the states go SUSPENDED and back, never LOST.
        with LocalCluster(n=3, session_timeout=10.0) as cluster:
            follower = next(p for p in cluster.peers if not p.is_leader)
            zk = follower.aio
            loop_thread = threading.current_thread()
            heard: list[tuple[str, KeeperState]] = []
            wrong: list[str] = []  # what a listener found amiss (an exception there would only be logged)
            busy = False

            async def slow(state: KeeperState) -> None:
                nonlocal busy
                if busy:
                    wrong.append("two calls at once")
                if threading.current_thread() is not loop_thread:
                    wrong.append("slow ran off the event loop")
                busy = True
                heard.append(("slow", state))
                await asyncio.sleep(0.01)
                busy = False

            def plain(state: KeeperState) -> None:
                if threading.current_thread() is not loop_thread:
                    wrong.append("plain ran off the event loop")
                heard.append(("plain", state))

            zk.add_listener(slow)
            zk.add_listener(plain)
            zk.add_listener(plain)  # once only
            cluster.isolate(follower.id)
            await until(lambda: {("slow", KeeperState.SUSPENDED), ("plain", KeeperState.SUSPENDED)} <= set(heard))
            cluster.heal()
            await until(lambda: {("slow", KeeperState.CONNECTED), ("plain", KeeperState.CONNECTED)} <= set(heard))
            await until(lambda: not busy)
            assert heard.count(("plain", KeeperState.SUSPENDED)) == 1  # added twice, called once
            zk.remove_listener(plain)
            zk.remove_listener(plain)  # not there any more: nothing happens
            plain_calls = [h for h in heard if h[0] == "plain"]
            cluster.isolate(follower.id)
            await until(lambda: heard.count(("slow", KeeperState.SUSPENDED)) == 2)
            cluster.heal()
            await until(lambda: heard.count(("slow", KeeperState.CONNECTED)) == 2)
            await until(lambda: not busy)
            assert [h for h in heard if h[0] == "plain"] == plain_calls
            # The slow listener's calls came in the order of the changes.
            slow_states = [state for name, state in heard if name == "slow"]
            assert slow_states == [KeeperState.SUSPENDED, KeeperState.CONNECTED] * 2
            assert wrong == []
            zk.remove_listener(slow)

    run(main())


# ----------------------------------------------------------------------------------------------------------------
# docs/asyncio.md

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "asyncio.md"
_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)
#: A block holding this comment is not run; the comment says why.
NOT_RUN = "# not run as a test:"


@pytest.mark.timeout(120)
def test_every_example_of_the_asyncio_guide_runs_as_written() -> None:
    """As ``python -m asyncio`` would run them: in order, in one namespace, with ``await`` at top level."""
    blocks = [textwrap.dedent(match.group(2)) for match in _BLOCK.finditer(GUIDE.read_text())]
    assert len(blocks) >= 12, "a block was lost: the pattern no longer matches the document"
    skipped = [number for number, block in enumerate(blocks, start=1) if NOT_RUN in block]
    assert skipped == [1], f"blocks {skipped} of docs/asyncio.md are not run"
    namespace: dict[str, Any] = {"__name__": "asyncio_md"}

    async def main() -> None:
        for number, block in enumerate(blocks, start=1):
            if number in skipped:
                continue
            if number == len(blocks):  # before the cluster stops: what the comments promise, where not obvious
                assert namespace["seen"] == ["/app/d"]
                assert namespace["children"] == ["w1"]
                assert namespace["changes"] == [True, False]
                assert namespace["hits"].value == 8 and namespace["seconds"].value == 0.5
            try:
                code = compile(
                    block, f"docs/asyncio.md, block {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
                )
                if code.co_flags & inspect.CO_COROUTINE:
                    await asyncio.wait_for(eval(code, namespace), 30)  # noqa: S307 - the guide's own code
                else:
                    exec(code, namespace)  # noqa: S102
            except Exception as exc:
                raise AssertionError(f"docs/asyncio.md block {number} failed: {exc!r}\n{block}") from exc

    try:
        run(main())
        assert namespace["cluster"].peers == []  # stopped by the last block
    finally:
        cluster = namespace.get("cluster")
        if cluster is not None:
            cluster.stop()
