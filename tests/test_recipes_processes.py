"""Every recipe across processes (tcp on loopback), and with a holder's process SIGKILLed.

Each worker is ``tests/recipe_worker.py``: a Peer and its recipes in a child process. Killing a worker kills a
cluster member; with three members the other two keep a quorum, the victim's session expires after the session
timeout (2 s here), and its ephemeral nodes go: the lock passes on, leadership moves, membership updates.
Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, shared by every process on Linux).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from embedzk.testing.cluster import wait_until
from tests.recipe_worker import RecipeWorker, WorkerError, start_cluster

pytestmark = pytest.mark.timeout(90)

SESSION_TIMEOUT = 2.0
#: The peers' tick (Peer's default tick_interval): the granularity of the leader's clock for session expiry.
TICK = 0.02
#: The longest election (Peer's default election timeout, 0.3 s, randomized up to twice that): a new leader gives
#: every session a fresh timeout when it takes over.
ELECTION = 0.6
#: How late a process, loop or dispatch thread may run on a loaded machine: added to upper bounds of timings,
#: never to lower ones.
SLACK = 1.0


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """wait_until with the longer patience that work across processes needs."""
    return wait_until(predicate, timeout, interval=0.05)


def _workers(prefix: str) -> Iterator[list[RecipeWorker]]:
    workers = start_cluster(3, SESSION_TIMEOUT, prefix=prefix)
    try:
        yield workers
    finally:
        for w in workers:
            w.kill()


@pytest.fixture(scope="module")
def procs() -> Iterator[list[RecipeWorker]]:
    """Three workers shared by the tests that kill nobody."""
    yield from _workers("s")


@pytest.fixture
def fresh() -> Iterator[list[RecipeWorker]]:
    """Three workers of a cluster of their own, for a test that kills one."""
    yield from _workers("k")


@pytest.fixture
def path() -> str:
    return f"/p-{uuid.uuid4().hex[:8]}"


def synced(worker: RecipeWorker, method: str, *args: Any) -> Any:
    """``peer.<method>(*args)`` in ``worker`` after a sync (a linearizable read)."""
    worker.peer("sync")
    return worker.peer(method, *args)


def children(worker: RecipeWorker, path: str) -> list[str]:
    """The children of ``path`` seen by ``worker`` after a sync (none while the path does not exist)."""
    try:
        return synced(worker, "get_children", path)
    except WorkerError as exc:
        if exc.kind != "NoNodeError":
            raise
        return []


def raft_leader_first(workers: list[RecipeWorker]) -> list[RecipeWorker]:
    """The workers, the one whose peer leads the cluster first."""
    return sorted(workers, key=lambda w: not w.peer("is_leader"))


def seconds_since(t_ns: int, event: dict[str, Any]) -> float:
    return (event["t"] - t_ns) / 1e9


def wall(t_ns: int) -> float:
    """A CLOCK_MONOTONIC time (the workers' event times) on the wall clock (which stamps mtimes)."""
    return t_ns / 1e9 + (time.time() - time.monotonic())


def heard_from(worker: RecipeWorker, path: str) -> float:
    """Have ``worker`` write (an ephemeral node at ``path``); the wall-clock time the leader stamped it with.

    The leader heard from the worker's session at that tick: the session cannot expire earlier than its timeout
    after it (the leader checks on its monotonic clock, read just before its wall clock: a tick of leeway).
    """
    _created, stat = worker.peer("create", path, b"", ephemeral=True, include_data=True)
    return float(stat["mtime"]) / 1000


def assert_expired_in_time(heard: float, killed_ns: int, seen_ns: int, election: bool = False) -> None:
    """The victim's session expired (seen at ``seen_ns``) within its real bounds: no earlier than the timeout after
    the leader last heard from it, and at most the timeout (plus an election, when the victim led) and a tick after
    it was killed."""
    assert wall(seen_ns) - heard > SESSION_TIMEOUT - TICK, wall(seen_ns) - heard
    latest = SESSION_TIMEOUT + (ELECTION if election else 0.0) + TICK + SLACK
    assert (seen_ns - killed_ns) / 1e9 <= latest, (seen_ns - killed_ns) / 1e9


def settled(workers: list[RecipeWorker], name: str, running: int = 1) -> None:
    """Wait until every change committed so far reached ``workers`` (their watch callbacks ran) and the blocked
    call on ``name`` in each (``running`` of them) has acted on it: asleep again with no wake-up pending."""
    for w in workers:
        w.call("dispatched")
    wait_for(lambda: all(w.call("settled", name=name) == running for w in workers))


# ----------------------------------------------------------------------------------------------------------------
# Lock


@pytest.mark.timeout(120)
def test_lock_mutual_exclusion_1000_acquisitions_in_3_processes(procs: list[RecipeWorker], path: str) -> None:
    counts = [334, 333, 333]
    futures = [w.submit("lock_loop", path=path, count=n) for w, n in zip(procs, counts)]
    logs = [f.result(100) for f in futures]
    intervals = []
    for log, n in zip(logs, counts):
        assert len(log) == 2 * n
        pids = {pid for _t, pid, _what in log}
        assert len(pids) == 1
        for (t_acq, _p, what_a), (t_rel, _q, what_r) in zip(log[::2], log[1::2]):
            assert (what_a, what_r) == ("acquire", "release") and t_acq <= t_rel
            intervals.append((t_acq, t_rel, pids.pop() if pids else _p))
    assert len(intervals) == 1000
    intervals.sort()
    for (_a_start, a_end, a_pid), (b_start, _b_end, b_pid) in itertools.pairwise(intervals):
        assert a_end < b_start, f"{a_pid} held until {a_end}, {b_pid} acquired at {b_start}"
    # the lock really moved between processes, not only within one
    handoffs = sum(1 for x, y in itertools.pairwise(intervals) if x[2] != y[2])
    assert handoffs >= 100


def test_lock_passes_on_when_the_holders_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = fresh
    for i, w in enumerate(fresh):
        w.new("lock", "Lock", path, f"w{i}")
    assert w0.do("lock", "acquire") is True
    first = w1.start_do("lock", "acquire")
    wait_for(lambda: w0.do("lock", "contenders") == ["w0", "w1"])
    second = w2.start_do("lock", "acquire")
    wait_for(lambda: w0.do("lock", "contenders") == ["w0", "w1", "w2"])
    heard = heard_from(w0, path + "-alive")
    killed_at = w0.kill()
    assert first.result(20) is True
    assert_expired_in_time(heard, killed_at, time.monotonic_ns())  # once the session expired, not before
    settled([w2], "lock")
    assert not second.done()
    assert w1.do("lock", "is_acquired") and w1.do("lock", "contenders") == ["w1", "w2"]
    assert w1.do("lock", "release") is True
    assert second.result(10) is True


# ----------------------------------------------------------------------------------------------------------------
# ReadLock / WriteLock / Semaphore


def test_read_write_lock_across_processes(procs: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = procs
    w0.new("r", "ReadLock", path, "r0")
    w1.new("r", "ReadLock", path, "r1")
    w2.new("w", "WriteLock", path, "w2")
    assert w0.do("r", "acquire", timeout=10) and w1.do("r", "acquire", timeout=10)  # shared
    writing = w2.start_do("w", "acquire")
    wait_for(lambda: len(children(w2, path)) == 3)
    settled([w2], "w")
    assert not writing.done()
    w0.do("r", "release")
    settled([w2], "w")
    assert not writing.done()
    w1.do("r", "release")
    assert writing.result(10) is True
    assert w0.do("r", "acquire", blocking=False) is False
    w2.do("w", "release")


def test_readers_get_in_when_the_writers_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = fresh
    w0.new("w", "WriteLock", path, "writer")
    w1.new("r", "ReadLock", path, "r1")
    w2.new("r", "ReadLock", path, "r2")
    assert w0.do("w", "acquire") is True
    readers = [w1.start_do("r", "acquire"), w2.start_do("r", "acquire")]
    wait_for(lambda: len(children(w1, path)) == 3)
    heard = heard_from(w0, path + "-alive")
    killed_at = w0.kill()
    assert all(f.result(20) is True for f in readers)  # both at once: readers share
    assert_expired_in_time(heard, killed_at, time.monotonic_ns())
    assert w1.do("r", "is_acquired") and w2.do("r", "is_acquired")


def test_semaphore_across_processes(procs: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(procs):
        w.new("sem", "Semaphore", path, f"w{i}", max_leases=2)
    w0, w1, w2 = procs
    assert w0.do("sem", "acquire") and w1.do("sem", "acquire")
    assert w2.do("sem", "acquire", blocking=False) is False
    waiting = w2.start_do("sem", "acquire")
    wait_for(lambda: len(children(w2, path)) == 3)
    assert w2.do("sem", "lease_holders") == ["w0", "w1"]
    w0.do("sem", "release")
    assert waiting.result(10) is True
    wait_for(lambda: (w2.peer("sync"), w2.do("sem", "lease_holders"))[1] == ["w1", "w2"])
    w1.do("sem", "release")
    w2.do("sem", "release")


def test_semaphore_lease_passes_on_when_a_holders_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(fresh):
        w.new("sem", "Semaphore", path, f"w{i}", max_leases=2)
    w0, w1, w2 = fresh
    assert w0.do("sem", "acquire") and w1.do("sem", "acquire")
    waiting = w2.start_do("sem", "acquire")
    wait_for(lambda: len(children(w2, path)) == 3)
    settled([w2], "sem")
    assert not waiting.done()
    w0.kill()
    assert waiting.result(20) is True
    w2.peer("sync")
    assert w2.do("sem", "lease_holders") == ["w1", "w2"]


# ----------------------------------------------------------------------------------------------------------------
# Election / LeaderLatch


def test_election_across_processes(procs: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(procs):
        w.new("e", "Election", path, f"w{i}")
        while not w.events.empty():
            w.events.get()
    runs = []
    for n, w in enumerate(procs, 1):
        runs.append(w.submit("elect", name="e"))
        wait_for(lambda n=n, w=w: len(children(w, path)) == n)
    first = procs[0].next_event("leader")
    assert first["pid"] == procs[0].pid
    procs[1].peer("sync")  # contenders() reads procs[1]'s own replica: the third candidate was waited for on procs[2]
    assert procs[1].do("e", "contenders") == ["w0", "w1", "w2"]
    procs[0].call("abdicate", name="e")
    assert runs[0].result(10) is True
    second = procs[1].next_event("leader")
    assert second["t"] > first["t"]
    procs[1].call("abdicate", name="e")
    procs[2].next_event("leader")
    procs[2].call("abdicate", name="e")
    assert all(r.result(10) is True for r in runs)
    for w in procs:
        while not w.events.empty():
            assert w.events.get()["tag"] != "relinquished"


def test_leadership_moves_when_the_leaders_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    """The elected contender runs on the peer that also leads the cluster: killing it costs a Raft election too."""
    workers = raft_leader_first(fresh)
    for i, w in enumerate(workers):
        w.new("e", "Election", path, f"c{i}")
    runs = []
    for n, w in enumerate(workers, 1):
        runs.append(w.submit("elect", name="e"))
        wait_for(lambda n=n, w=w: len(children(w, path)) == n)
    workers[0].next_event("leader")
    heard = heard_from(workers[0], path + "-alive")
    killed_at = workers[0].kill()
    event = workers[1].next_event("leader", timeout=20)
    # The new Raft leader gives the dead one's session a fresh timeout when it takes over, after the kill.
    assert seconds_since(killed_at, event) > SESSION_TIMEOUT
    assert_expired_in_time(heard, killed_at, event["t"], election=True)
    assert workers[2].events.empty() or all(e["tag"] != "leader" for e in list(workers[2].events.queue))
    workers[1].call("abdicate", name="e")
    workers[2].next_event("leader")
    workers[2].call("abdicate", name="e")


def test_leader_latch_across_processes(procs: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(procs):
        w.new("latch", "LeaderLatch", path, f"w{i}")
        w.call("listen", name="latch", method="add_listener", tag="latch")
    for n, w in enumerate(procs):
        w.do("latch", "start")
        wait_for(lambda n=n: len(children(procs[0], path)) == n + 1)
    assert procs[0].do("latch", "wait", 5) is True
    assert procs[0].next_event("latch")["args"] == [True]
    assert [w.do("latch", "has_leadership") for w in procs] == [True, False, False]
    assert procs[2].do("latch", "get_leader") == "w0"
    procs[0].do("latch", "close")
    assert procs[0].next_event("latch")["args"] == [False]
    assert procs[1].do("latch", "wait", 5) is True
    assert procs[1].next_event("latch")["args"] == [True]
    procs[1].do("latch", "close")
    procs[2].do("latch", "wait", 5)
    procs[2].do("latch", "close")


def test_leader_latch_moves_when_the_leaders_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(fresh):
        w.new("latch", "LeaderLatch", path, f"w{i}")
        w.call("listen", name="latch", method="add_listener", tag="latch")
    for n, w in enumerate(fresh):
        w.do("latch", "start")
        wait_for(lambda n=n: len(children(fresh[0], path)) == n + 1)
    assert fresh[0].do("latch", "wait", 5) is True
    heard = heard_from(fresh[0], path + "-alive")
    was_raft_leader = fresh[0].peer("is_leader")
    killed_at = fresh[0].kill()
    event = fresh[1].next_event("latch", timeout=20)
    assert event["args"] == [True]
    assert_expired_in_time(heard, killed_at, event["t"], election=was_raft_leader)
    assert fresh[2].do("latch", "has_leadership") is False


# ----------------------------------------------------------------------------------------------------------------
# Barrier / DoubleBarrier


def test_barrier_across_processes(procs: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = procs
    for w in procs:
        w.new("b", "Barrier", path)
    w0.do("b", "create")
    w1.peer("sync")
    w2.peer("sync")
    waits = [w1.start_do("b", "wait", 20), w2.start_do("b", "wait", 20)]
    settled([w1, w2], "b")
    w0.peer("set", path, b"still up")  # wakes the waiters (their watch fires), but does not lower it
    settled([w1, w2], "b")
    assert not any(f.done() for f in waits)
    assert w0.do("b", "remove") is True
    assert [f.result(10) for f in waits] == [True, True]


def test_barrier_outlives_the_process_that_raised_it(fresh: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = fresh
    for w in fresh:
        w.new("b", "Barrier", path)
    w0.do("b", "create")
    w1.peer("sync")
    waiting = w1.start_do("b", "wait", 30)
    heard_from(w0, path + "-alive")
    w0.kill()
    # The session of the process that raised it goes (its ephemeral node with it) ...
    wait_for(lambda: synced(w1, "exists", path + "-alive") is None, timeout=SESSION_TIMEOUT + ELECTION + SLACK + 5)
    settled([w1], "b")
    assert not waiting.done()  # ... but the barrier is persistent: still up
    w2.peer("sync")
    assert w2.do("b", "remove") is True
    assert waiting.result(10) is True


def test_double_barrier_across_processes(procs: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(procs):
        w.new("db", "DoubleBarrier", path, 3, f"w{i}")
    entering = []
    for w in procs[:2]:
        entering.append(w.start_do("db", "enter", 20))
    wait_for(lambda: len(children(procs[0], path)) == 2)
    settled(procs[:2], "db")
    assert not any(f.done() for f in entering)
    entering.append(procs[2].start_do("db", "enter", 20))
    assert [f.result(20) for f in entering] == [True, True, True]
    leaving = [w.start_do("db", "leave", 20) for w in procs[:2]]
    settled(procs[:2], "db")
    assert not any(f.done() for f in leaving)
    leaving.append(procs[2].start_do("db", "leave", 20))
    assert [f.result(20) for f in leaving] == [True, True, True]
    assert children(procs[0], path) == []


def test_double_barrier_leave_completes_when_a_participants_process_is_killed(
    fresh: list[RecipeWorker], path: str
) -> None:
    for i, w in enumerate(fresh):
        w.new("db", "DoubleBarrier", path, 3, f"w{i}")
    entering = [w.start_do("db", "enter", 20) for w in fresh]
    assert [f.result(20) for f in entering] == [True, True, True]
    leaving = [w.start_do("db", "leave", 30) for w in fresh[1:]]
    settled(fresh[1:], "db")
    assert not any(f.done() for f in leaving)
    fresh[0].kill()  # entered, never leaves: its node goes with its session
    assert [f.result(20) for f in leaving] == [True, True]
    assert children(fresh[1], path) == []


# ----------------------------------------------------------------------------------------------------------------
# Queue / LockingQueue


def test_queue_across_processes(procs: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = procs
    for w in procs:
        w.new("q", "Queue", path)
    for i in range(20):
        w0.do("q", "put", str(i).encode())
    w0.do("q", "put", b"first", priority=1)
    for w in (w1, w2):  # the puts were applied on w0's peer; the consumers' peers catch up through a sync
        w.peer("sync")
    consumers = [w.start_do("q", "get", block=True, timeout=10) for w in (w1, w2)]
    got = [f.result(15) for f in consumers]
    assert b"first" in got
    w1.peer("sync")
    rest = []
    while (item := (w1 if len(rest) % 2 else w2).do("q", "get", block=True, timeout=1)) is not None:
        rest.append(item)
    items = [g for g in got if g != b"first"] + rest
    assert sorted(items, key=int) == [str(i).encode() for i in range(20)]
    assert w0.call("len", name="q") == 0


def test_queue_entries_outlive_a_killed_producer(fresh: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = fresh
    for w in fresh:
        w.new("q", "Queue", path)
    w0.do("q", "put_all", [str(i).encode() for i in range(10)])
    w0.kill()
    w1.peer("sync")
    got = []
    while (item := w1.do("q", "get")) is not None:
        got.append(item)
    assert got == [str(i).encode() for i in range(10)]
    w2.peer("sync")
    assert w2.call("len", name="q") == 0


def test_locking_queue_across_processes(procs: list[RecipeWorker], path: str) -> None:
    w0, _w1, _w2 = procs
    for w in procs:
        w.new("lq", "LockingQueue", path)
    w0.do("lq", "put_all", [str(i).encode() for i in range(12)])
    for w in procs:
        w.peer("sync")
    got: list[bytes] = []
    idle = 0
    while idle < len(procs):
        idle = 0
        for w in procs:
            item = w.do("lq", "get", 0.5)
            if item is None:
                idle += 1
                continue
            assert w.do("lq", "holds_lock") is True
            got.append(item)
            assert w.do("lq", "consume") is True
    assert sorted(got, key=int) == [str(i).encode() for i in range(12)]
    assert w0.call("len", name="lq") == 0


def test_locking_queue_entry_goes_to_another_consumer_when_its_holder_is_killed(
    fresh: list[RecipeWorker], path: str
) -> None:
    w0, w1, w2 = fresh
    for w in fresh:
        w.new("lq", "LockingQueue", path)
    w0.do("lq", "put", b"job")
    assert w0.do("lq", "get", 5) == b"job"
    w1.peer("sync")
    waiting = w1.start_do("lq", "get", 20)
    settled([w1], "lq")
    assert not waiting.done()  # taken by w0
    w0.kill()
    assert waiting.result(20) == b"job"
    assert w2.do("lq", "get", 0.3) is None  # handed to w1 only
    assert w1.do("lq", "consume") is True
    assert children(w2, path + "/entries") == []


# ----------------------------------------------------------------------------------------------------------------
# Counter


def test_counter_across_processes(procs: list[RecipeWorker], path: str) -> None:
    for w in procs:
        w.new("c", "Counter", path)
    loops = [w.submit("count_loop", name="c", count=30) for w in procs]
    assert [f.result(60) for f in loops] == [30, 30, 30]
    procs[0].peer("sync")
    assert procs[0].do("c", "value") == 90


def test_counter_stays_exact_when_a_counting_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = fresh
    for w in fresh:
        w.new("c", "Counter", path)
    w0.submit("count_loop", name="c", count=100_000)
    for _ in range(20):
        w0.next_event("counted")
    w0.kill()
    done_by_w0 = 20
    while not w0.events.empty():
        if w0.events.get()["tag"] == "counted":
            done_by_w0 += 1
    loops = [w.submit("count_loop", name="c", count=20) for w in (w1, w2)]
    assert [f.result(60) for f in loops] == [20, 20]
    w1.peer("sync")
    value = w1.do("c", "value")
    # every increment w0 reported counts; at most one more was in flight when it died
    assert done_by_w0 + 40 <= value <= done_by_w0 + 41


# ----------------------------------------------------------------------------------------------------------------
# Party / ShallowParty / ServiceRegistry


def test_party_across_processes(procs: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(procs):
        w.new("party", "Party", path + "/deep", f"member-{i}")
        w.new("shallow", "ShallowParty", path + "/shallow", f"member-{i}")
        w.do("party", "join")
        w.do("shallow", "join")
    for w in procs:
        w.peer("sync")
        assert sorted(w.call("iter", name="party")) == ["member-0", "member-1", "member-2"]
        assert sorted(w.call("iter", name="shallow")) == ["member-0", "member-1", "member-2"]
        assert w.call("len", name="party") == 3
    procs[1].do("party", "leave")
    procs[1].do("shallow", "leave")
    procs[0].peer("sync")
    assert sorted(procs[0].call("iter", name="party")) == ["member-0", "member-2"]
    assert sorted(procs[0].call("iter", name="shallow")) == ["member-0", "member-2"]


def test_party_membership_updates_when_a_members_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    for i, w in enumerate(fresh):
        w.new("party", "Party", path + "/deep", f"member-{i}")
        w.new("shallow", "ShallowParty", path + "/shallow", f"member-{i}")
        w.do("party", "join")
        w.do("shallow", "join")
    watcher = fresh[1]
    watcher.peer("sync")
    watcher.call("listen", name="party", method="watch", tag="members")
    assert sorted(watcher.next_event("members")["args"][0]) == ["member-0", "member-1", "member-2"]
    killed_at = fresh[0].kill()
    event = watcher.next_event("members", timeout=20)
    assert sorted(event["args"][0]) == ["member-1", "member-2"]
    assert 0.5 < seconds_since(killed_at, event) < 10
    fresh[2].peer("sync")
    assert sorted(fresh[2].call("iter", name="shallow")) == ["member-1", "member-2"]


def test_service_registry_across_processes(procs: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = procs
    for w in procs:
        w.new("reg", "ServiceRegistry", path)
    w2.call("listen", name="reg", method="watch", tag="api", args=["api"])
    assert w2.next_event("api")["args"] == [{}]
    w0.do("reg", "register", "api", "w0:80", b"zero")
    w1.do("reg", "register", "api", "w1:80", b"one")
    wait_for(lambda: w2.do("reg", "instances", "api") == {"w0:80": b"zero", "w1:80": b"one"})
    seen = w2.next_event("api")["args"][0]
    while seen != {"w0:80": b"zero", "w1:80": b"one"}:
        seen = w2.next_event("api")["args"][0]
    w1.do("reg", "unregister", "api", "w1:80")
    assert w2.next_event("api")["args"] == [{"w0:80": b"zero"}]
    w0.do("reg", "close")
    assert w2.next_event("api")["args"] == [{}]


def test_service_instance_disappears_when_its_process_is_killed(fresh: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = fresh
    for w in fresh:
        w.new("reg", "ServiceRegistry", path)
    w0.do("reg", "register", "db", "w0", b"primary")
    w1.do("reg", "register", "db", "w1", b"replica")
    w2.peer("sync")
    w2.call("listen", name="reg", method="watch", tag="db", args=["db"])
    assert w2.next_event("db")["args"] == [{"w0": b"primary", "w1": b"replica"}]
    killed_at = w0.kill()
    event = w2.next_event("db", timeout=20)
    assert event["args"] == [{"w1": b"replica"}]
    assert 0.5 < seconds_since(killed_at, event) < 10


# ----------------------------------------------------------------------------------------------------------------
# TreeCache


def test_tree_cache_across_processes(procs: list[RecipeWorker], path: str) -> None:
    w0, w1, w2 = procs
    w2.new("cache", "TreeCache", path)
    w2.call("listen", name="cache", method="listen", tag="tree")
    w2.do("cache", "start")
    assert w2.do("cache", "wait_initialized", 5) is True
    w0.peer("create", path + "/a", b"1")
    w1.peer("create", path + "/b", b"2")
    w0.peer("set", path + "/a", b"3")
    w1.peer("delete", path + "/b")
    kinds = []
    while len(kinds) < 6:
        event = w2.next_event("tree")
        kind, data = event["args"][0]
        kinds.append((kind, data[0] if data else None))
    assert kinds == [(0, path), (6, None), (0, path + "/a"), (0, path + "/b"), (1, path + "/a"), (2, path + "/b")]
    assert w2.do("cache", "get_children", path) == ["a"]
    w2.do("cache", "close")


def test_tree_cache_hears_a_killed_processes_ephemeral_node_go(fresh: list[RecipeWorker], path: str) -> None:
    w0, _w1, w2 = fresh
    w0.peer("create", path + "/w0", b"alive", ephemeral=True, makepath=True)
    w2.peer("sync")
    w2.new("cache", "TreeCache", path)
    w2.call("listen", name="cache", method="listen", tag="tree")
    w2.do("cache", "start")
    assert w2.do("cache", "wait_initialized", 5) is True
    assert w2.do("cache", "get_children", path) == ["w0"]
    killed_at = w0.kill()
    while True:
        event = w2.next_event("tree", timeout=20)
        kind, data = event["args"][0]
        if kind == 2:
            break
    assert data[0] == path + "/w0" and 0.5 < seconds_since(killed_at, event) < 10
    assert w2.do("cache", "get_children", path) == []


def test_worker_errors_carry_their_kind(procs: list[RecipeWorker]) -> None:
    with pytest.raises(WorkerError) as err:
        procs[0].peer("get", "/no/such/node")
    assert err.value.kind == "NoNodeError"
