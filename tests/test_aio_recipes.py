"""The recipes for asyncio code (peer.aio.Lock, Election, LeaderLatch, Counter ...) against an in-process cluster:
mutual exclusion, leadership moving, atomic counting, cancellation that leaves nothing behind, and an event loop
that keeps running while they wait."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from embedzk import LockTimeout, Peer
from embedzk.recipes import CancelledError as RecipeCancelledError
from embedzk.recipes.aio import AsyncCounter, AsyncElection, AsyncLeaderLatch, AsyncLock, AsyncSemaphore
from embedzk.testing.cluster import LocalCluster
from tests.shared_cluster import SharedCluster

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with SharedCluster(n=3, session_timeout=2.0) as c:
        yield c


@pytest.fixture
def peers(cluster: LocalCluster) -> list[Peer]:
    cluster.heal()
    cluster.wait_connected()
    return cluster.peers


@pytest.fixture
def path() -> str:
    return f"/aio-{uuid.uuid4().hex[:8]}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Wait in the event loop until ``predicate()`` is true (polling); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what or predicate}"
        await asyncio.sleep(0.005)


async def nodes(peer: Peer, path: str) -> list[str]:
    """The children of ``path`` once ``peer`` has caught up with every write committed before."""
    await peer.aio.sync()
    return sorted(peer.get_children(path)) if peer.exists(path) else []


# ----------------------------------------------------------------------------------------------------------------
# locks


def test_async_locks_exclude_each_other_across_peers(peers: list[Peer], path: str) -> None:
    a, b, _c = peers

    async def main() -> None:
        inside: list[str] = []
        most = 0
        tokens: list[int] = []
        rounds = 0

        async def worker(lock: AsyncLock, name: str) -> None:
            nonlocal most, rounds
            for _ in range(4):
                async with lock:
                    inside.append(name)
                    most = max(most, len(inside))
                    token = lock.fencing_token
                    assert token is not None
                    tokens.append(token)
                    await asyncio.sleep(0.001)  # other tasks run meanwhile, and must stay out
                    await lock.peer.aio.set(path, name.encode())
                    inside.remove(name)
                    rounds += 1

        shared = b.aio.Lock(path, "b-shared")  # tasks sharing an instance take turns too
        workers = [worker(a.aio.Lock(path, f"a{i}"), f"a{i}") for i in range(3)]
        workers += [worker(b.aio.Lock(path, f"b{i}"), f"b{i}") for i in range(2)]
        workers += [worker(shared, f"b-shared-{i}") for i in range(2)]
        await asyncio.wait_for(asyncio.gather(*workers), 45)
        assert rounds == 7 * 4 and most == 1
        assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # each holder's token beats the last
        assert await nodes(a, path) == []
        assert not shared.is_acquired

    run(main())


def test_a_held_lock_is_reentrant_for_its_task_and_refused_without_blocking(peers: list[Peer], path: str) -> None:
    a, b, _c = peers

    async def main() -> None:
        lock = a.aio.Lock(path, "holder")
        assert await lock.acquire()
        assert await lock.acquire()  # the holding task again: at once
        other = b.aio.Lock(path, "other")
        assert await other.acquire(blocking=False) is False
        with pytest.raises(LockTimeout):
            await other.acquire(timeout=0.2)
        assert len(await nodes(b, path)) == 1  # neither attempt left a node
        # Another task of the holding instance waits for its turn: refused at once without blocking.
        assert await asyncio.create_task(lock.acquire(blocking=False)) is False
        assert await lock.release() is True
        assert await other.acquire(timeout=5)
        assert other.contenders() == ["other"]
        await other.release()

    run(main())


def test_a_cancelled_acquire_leaves_no_lock_node_behind(peers: list[Peer], path: str) -> None:
    a, b, c = peers

    async def main() -> None:
        holder = a.aio.Lock(path, "holder")
        await holder.acquire()
        waiter = b.aio.Lock(path, "waiter")
        task = asyncio.create_task(waiter.acquire())
        await until(lambda: len(b.get_children(path)) == 2, what="the waiter is in line")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiter.node is None
        assert [n for n in await nodes(b, path) if n.startswith(waiter.wrapped.prefix)] == []

        # The same with a timeout around `async with`: the waiter is gone as soon as the TimeoutError is raised.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                async with waiter:
                    pytest.fail("acquired a held lock")  # pragma: no cover
        assert len(await nodes(b, path)) == 1

        # No ghost in line: once the holder releases, another contender gets the lock at once.
        await holder.release()
        third = c.aio.Lock(path, "third")
        assert await third.acquire(timeout=5)
        await third.release()

        # Cancelled after its thread got the lock but before the task heard of it: the lock is released again.
        lock = b.aio.Lock(path, "racer")
        attempt = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0)  # the attempt's thread is started
        deadline = time.monotonic() + 10
        while not lock.is_acquired:  # blocking the loop on purpose: the task cannot take the answer meanwhile
            assert time.monotonic() < deadline
            time.sleep(0.001)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert not lock.is_acquired and await nodes(b, path) == []

        # Cancelled at any moment (queued, creating its node, just acquired): never a node left, never held.
        rng = random.Random(7)
        cancelled = 0
        for _ in range(15):
            attempt = asyncio.create_task(lock.acquire())
            await asyncio.sleep(rng.choice([0, 0, 0.001, 0.003, 0.01, 0.03]))
            attempt.cancel()
            try:
                got = await attempt
            except asyncio.CancelledError:
                cancelled += 1
                assert not lock.is_acquired
                assert await nodes(b, path) == []
            else:
                assert got and lock.is_acquired
                await lock.release()
        assert cancelled >= 3
        # And the instance is usable afterwards (no stale cancel).
        assert await lock.acquire(timeout=5)
        await lock.release()

    run(main())


def test_cancel_makes_a_waiting_acquire_raise_the_recipes_cancelled_error(peers: list[Peer], path: str) -> None:
    a, b, _c = peers

    async def main() -> None:
        holder = a.aio.Lock(path)
        await holder.acquire()
        waiter = b.aio.Lock(path)
        task = asyncio.create_task(waiter.acquire())
        await until(lambda: len(b.get_children(path)) == 2)
        waiter.cancel()
        with pytest.raises(RecipeCancelledError):
            await asyncio.wait_for(task, 10)
        assert len(await nodes(b, path)) == 1
        await holder.release()

    run(main())


def test_semaphore_and_read_locks(peers: list[Peer], path: str) -> None:
    a, b, c = peers

    async def main() -> None:
        holding = 0
        most = 0
        two_in = asyncio.Event()

        async def lease(sem: AsyncSemaphore) -> None:
            nonlocal holding, most
            async with sem:
                holding += 1
                most = max(most, holding)
                if holding == 2:
                    two_in.set()
                await asyncio.wait_for(two_in.wait(), 10)  # the first holds on until a second one is in
                holding -= 1

        sems = [p.aio.Semaphore(path + "/sem", f"s{i}", max_leases=2) for i, p in enumerate([a, b, c, a])]
        assert sems[0].max_leases == 2
        await asyncio.wait_for(asyncio.gather(*(lease(s) for s in sems)), 30)
        assert most == 2

        # Readers share; a writer waits for them.
        r1, r2 = a.aio.ReadLock(path + "/rw", "r1"), b.aio.ReadLock(path + "/rw", "r2")
        await r1.acquire()
        assert await r2.acquire(timeout=5)
        writer = c.aio.WriteLock(path + "/rw", "w")
        assert await writer.acquire(blocking=False) is False
        await r1.release()
        await r2.release()
        assert await writer.acquire(timeout=5)
        await writer.release()

    run(main())


# ----------------------------------------------------------------------------------------------------------------
# elections


def test_election_leadership_moves_and_cancellation_steps_down(peers: list[Peer], path: str) -> None:
    elections = {name: p.aio.Election(path, name) for name, p in zip("abc", peers)}

    async def main() -> None:
        led: list[str] = []
        step_down = {name: asyncio.Event() for name in elections}

        async def lead(name: str) -> str:
            election = elections[name]
            assert election.is_leader
            led.append(name)
            await step_down[name].wait()
            return name

        runs = {"a": asyncio.create_task(elections["a"].run(lead, "a"))}
        await until(lambda: led == ["a"])
        for line in (["a", "b"], ["a", "b", "c"]):  # one after the other: the line's order is the arrival's
            name = line[-1]
            runs[name] = asyncio.create_task(elections[name].run(lead, name))
            await until(lambda: elections["a"].contenders() == line)  # noqa: B023 - awaited in this round
        assert not elections["b"].is_leader and not elections["c"].is_leader

        # c gives up while waiting: out of the line, nothing left behind.
        runs["c"].cancel()
        with pytest.raises(asyncio.CancelledError):
            await runs["c"]
        await until(lambda: elections["a"].contenders() == ["a", "b"])

        # a steps down: b leads.
        step_down["a"].set()
        assert await asyncio.wait_for(runs["a"], 10) == "a"
        assert not elections["a"].is_leader
        await until(lambda: led == ["a", "b"])
        assert elections["b"].is_leader and elections["b"].contenders() == ["b"]

        # b is cancelled while leading: it steps down, and the election is free again.
        runs["b"].cancel()
        with pytest.raises(asyncio.CancelledError):
            await runs["b"]
        assert not elections["b"].is_leader
        assert await nodes(peers[0], path) == []

        # A plain function runs too (in the loop), and its result comes back.
        assert await asyncio.wait_for(elections["c"].run(lambda x: x * 2, 21), 10) == 42

    run(main())


def test_leader_latch_wait_listeners_and_handover(peers: list[Peer], path: str) -> None:
    a, b, _c = peers

    async def main() -> None:
        heard: dict[str, list[bool]] = {"a": [], "b": []}
        loop_thread = threading.current_thread()
        off_loop: list[str] = []

        def listener(name: str) -> Callable[[bool], Any]:
            async def on_change(leading: bool) -> None:
                if threading.current_thread() is not loop_thread:
                    off_loop.append(name)
                heard[name].append(leading)

            return on_change

        la: AsyncLeaderLatch = a.aio.LeaderLatch(path, "a")
        lb: AsyncLeaderLatch = b.aio.LeaderLatch(path, "b")
        la.add_listener(listener("a"))
        lb.add_listener(listener("b"))
        async with la:
            assert await la.wait(timeout=10)
            await lb.start()
            await until(lambda: la.contenders() == ["a", "b"])
            assert lb.get_leader() == "a"
            assert await lb.wait(timeout=0) is False and not lb.has_leadership
            waiting = asyncio.create_task(lb.wait())
        # la closed: b takes over, and its waiter returns.
        assert await asyncio.wait_for(waiting, 10) is True
        assert not la.has_leadership
        await until(lambda: heard == {"a": [True, False], "b": [True]})
        await lb.close()
        assert await lb.wait() is False  # closed: returns at once
        await until(lambda: heard["b"] == [True, False])
        assert off_loop == []
        assert await nodes(a, path) == []

    run(main())


# ----------------------------------------------------------------------------------------------------------------
# counter


def test_counter_increments_from_many_tasks_sum_up(peers: list[Peer], path: str) -> None:
    async def main() -> None:
        per_task = 4
        shared = [p.aio.Counter(path) for p in peers]  # one instance shared by several tasks, per peer

        async def bump(counter: AsyncCounter) -> None:
            for _ in range(per_task):
                await counter.add(1)

        tasks = [bump(shared[i % 3]) for i in range(9)]
        tasks += [bump(peers[i % 3].aio.Counter(path)) for i in range(6)]  # and instances of their own
        await asyncio.wait_for(asyncio.gather(*tasks), 45)
        expected = 15 * per_task
        for peer in peers:
            await peer.aio.sync()
            assert peer.aio.Counter(path).value == expected
        counter = shared[0]
        before = counter.value
        after = await counter.sub(5)
        assert after == before - 5 and (counter.pre_value, counter.post_value) == (before, after)
        with pytest.raises(TypeError):
            await counter.add(1.5)

        floats = peers[1].aio.Counter(path + "-f", default=0.0)
        assert floats.value == 0.0  # no node yet: the default, without waiting
        await asyncio.gather(*(floats.add(0.5) for _ in range(6)))
        assert floats.value == 3.0

    run(main())


# ----------------------------------------------------------------------------------------------------------------
# the event loop never stalls


def test_no_recipe_call_blocks_the_event_loop(peers: list[Peer], path: str) -> None:
    """Each call, started as a task and given one turn of the loop, is still waiting (for its thread or the peer)
    rather than done; then a waiter on a held lock, a latch and an election wait together while a ticker keeps
    ticking, and all three go ahead once the holder releases."""
    a, b, c = peers
    holder = a.Lock(path + "/lock", "threaded holder")  # the threaded recipe: the two exclude each other
    assert holder.acquire(timeout=10)
    # If a wait blocked the event loop, nothing in it could release the holder: this timer does, and the test
    # fails on its assertions instead of hanging.
    rescue = threading.Timer(20.0, holder.release)
    rescue.start()

    async def main() -> None:
        calls: list[Callable[[int], Any]] = [
            lambda i: b.aio.Lock(f"{path}/free{i}").acquire(),
            lambda i: b.aio.Counter(f"{path}/count").add(1),
            lambda i: b.aio.LeaderLatch(f"{path}/latch{i}").start(),
            lambda i: b.aio.Election(f"{path}/election{i}").run(lambda: None),
        ]
        pending = 0
        for i in range(5):
            for call in calls:
                task = asyncio.ensure_future(call(i))
                await asyncio.sleep(0)
                pending += not task.done()
                await asyncio.wait_for(task, 10)
        assert pending == len(calls) * 5

        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        waiter = b.aio.Lock(path + "/lock", "async waiter")
        acquiring = asyncio.create_task(waiter.acquire())
        leading = c.aio.LeaderLatch(path + "/latch")
        async with a.aio.LeaderLatch(path + "/latch") as first:
            assert await first.wait(10)  # first in line (its node is made by its own thread, after start())
            await leading.start()
            latch_waiting = asyncio.create_task(leading.wait())
            election = c.aio.Election(path + "/lock")  # behind the holder and the waiter
            electing = asyncio.create_task(election.run(lambda: "led"))
            await until(lambda: len(a.get_children(path + "/lock")) == 3)
            start = ticks
            await until(lambda: ticks >= start + 50, what="the ticker ticks while the recipes wait")
            assert not acquiring.done() and not latch_waiting.done() and not electing.done()
            assert rescue.is_alive()
            await asyncio.to_thread(holder.release)
        assert await asyncio.wait_for(acquiring, 10)
        assert await asyncio.wait_for(latch_waiting, 10)
        await waiter.release()
        assert await asyncio.wait_for(electing, 10) == "led"
        await leading.close()
        stop.set()
        await ticking

    try:
        run(main())
    finally:
        rescue.cancel()
        holder.release()
