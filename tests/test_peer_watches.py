"""Watches on a Peer: one-shot, persistent and recursive, DataWatch and ChildrenWatch, order, and slow callbacks."""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import blinker
import pytest

from embedzk import EventType, KeeperState, NoNodeError, Peer, WatchedEvent
from embedzk.testing.cluster import LocalCluster, wait_until

pytestmark = pytest.mark.timeout(60)

_names = itertools.count()


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with Peer("watcher") as p:
        yield p


@pytest.fixture
def root(peer: Peer) -> str:
    path = f"/w{next(_names)}"
    peer.create(path)
    return path


class Recorder:
    """A callback that keeps what it receives, for a test to wait on."""

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()

    def __call__(self, event: WatchedEvent) -> None:
        self.events.put(event)

    def receiver(self, sender: Any, event: WatchedEvent) -> None:
        self.events.put(event)

    def next(self, timeout: float = 10.0) -> Any:
        return self.events.get(timeout=timeout)

    def none_after(self, peer: Peer) -> bool:
        """Whether nothing arrived by the time every change made so far on ``peer`` had its callbacks run."""
        dispatched(peer)
        return self.events.empty()


def dispatched(peer: Peer) -> None:
    """Wait until the watch callbacks of every change made so far on ``peer`` have run: a marker written now fires
    its own watch after them (one dispatch thread, callbacks in zxid order). What did not happen by then, for a
    change made before, will not."""
    fired = threading.Event()
    marker = f"/dispatched-{next(_names)}"
    assert peer.exists(marker, watch=lambda event: fired.set()) is None
    peer.create(marker)
    assert fired.wait(10), "the marker's watch never fired"
    peer.delete(marker)


# ----------------------------------------------------------------------------------------------------------------
# one-shot watches


def test_a_get_watch_fires_once_on_change(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.create(f"{root}/a", b"0")
    assert peer.get(f"{root}/a", watch=rec)[0] == b"0"
    stat = peer.set(f"{root}/a", b"1")
    event = rec.next()
    assert event == WatchedEvent(EventType.CHANGED, KeeperState.CONNECTED, f"{root}/a", stat.mzxid)
    peer.set(f"{root}/a", b"2")
    assert rec.none_after(peer)  # one-shot: consumed by the first change


def test_a_get_watch_fires_deleted_when_the_node_goes(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.create(f"{root}/a")
    peer.get(f"{root}/a", watch=rec)
    peer.delete(f"{root}/a")
    assert rec.next().type is EventType.DELETED


def test_an_exists_watch_on_a_missing_node_fires_created(peer: Peer, root: str) -> None:
    rec = Recorder()
    assert peer.exists(f"{root}/later", watch=rec) is None
    peer.create(f"{root}/later")
    event = rec.next()
    assert event.type is EventType.CREATED and event.path == f"{root}/later"
    peer.set(f"{root}/later", b"x")
    assert rec.none_after(peer)


def test_an_exists_watch_on_an_existing_node_fires_changed_then_is_gone(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.create(f"{root}/a")
    assert peer.exists(f"{root}/a", watch=rec) is not None
    peer.set(f"{root}/a", b"x")
    assert rec.next().type is EventType.CHANGED
    peer.delete(f"{root}/a")
    assert rec.none_after(peer)


def test_a_children_watch_fires_child_once(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.create(f"{root}/kid")
    assert peer.get_children(root, watch=rec) == ["kid"]
    peer.set(f"{root}/kid", b"data")  # a child's data is not a change of the children
    peer.set(root, b"data")  # nor the node's own data
    peer.create(f"{root}/kid2")
    event = rec.next()
    assert event.type is EventType.CHILD and event.path == root
    peer.delete(f"{root}/kid2")
    assert rec.none_after(peer)


def test_a_children_watch_fires_deleted_when_the_node_goes(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.create(f"{root}/p")
    peer.get_children(f"{root}/p", watch=rec)
    peer.delete(f"{root}/p")
    assert rec.next().type is EventType.DELETED


def test_a_failed_read_leaves_no_watch_behind(peer: Peer, root: str) -> None:
    rec = Recorder()
    before = peer.stats()["watch_count"]
    with pytest.raises(NoNodeError):
        peer.get(f"{root}/missing", watch=rec)
    with pytest.raises(NoNodeError):
        peer.get_children(f"{root}/missing", watch=rec)
    assert peer.stats()["watch_count"] == before
    peer.create(f"{root}/missing")
    assert rec.none_after(peer)


def test_one_shot_watches_async_twins(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.create(f"{root}/a")
    peer.get_async(f"{root}/a", rec).result(5)
    peer.exists_async(f"{root}/b", rec).result(5)
    peer.get_children_async(root, rec).result(5)
    peer.set(f"{root}/a", b"1")
    peer.create(f"{root}/b")
    types = sorted(rec.next().type.value for _ in range(3))
    assert types == ["CHANGED", "CHILD", "CREATED"]


# ----------------------------------------------------------------------------------------------------------------
# persistent and recursive watches


def test_a_persistent_watch_is_a_blinker_signal_that_keeps_firing(peer: Peer, root: str) -> None:
    rec = Recorder()
    signal = peer.watch(f"{root}/p")
    assert isinstance(signal, blinker.Signal) and peer.watch(f"{root}/p") is signal
    signal.connect(rec.receiver, weak=False)
    peer.create(f"{root}/p")
    peer.set(f"{root}/p", b"1")
    peer.create(f"{root}/p/child")
    peer.create(f"{root}/p/child/grandchild")  # not a child of the watched path: no event
    peer.delete(f"{root}/p/child/grandchild")
    peer.delete(f"{root}/p/child")
    peer.delete(f"{root}/p")
    got = [rec.next() for _ in range(5)]
    assert [e.type for e in got] == [
        EventType.CREATED, EventType.CHANGED, EventType.CHILD, EventType.CHILD, EventType.DELETED
    ]
    assert all(e.path == f"{root}/p" for e in got)
    assert rec.none_after(peer)
    peer.create(f"{root}/p")  # still registered after the node went
    assert rec.next().type is EventType.CREATED
    peer.unwatch(f"{root}/p")


def test_a_recursive_watch_sees_the_whole_subtree_but_never_child(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.watch(f"{root}/tree", recursive=True).connect(rec.receiver, weak=False)
    peer.create(f"{root}/tree")
    peer.create(f"{root}/tree/a")
    peer.create(f"{root}/tree/a/b")
    peer.set(f"{root}/tree/a/b", b"x")
    peer.create(f"{root}/tree-sibling")  # not under the watched path
    peer.delete(f"{root}/tree/a/b")
    got = [rec.next() for _ in range(5)]
    assert [(e.type, e.path[len(root):]) for e in got] == [
        (EventType.CREATED, "/tree"),
        (EventType.CREATED, "/tree/a"),
        (EventType.CREATED, "/tree/a/b"),
        (EventType.CHANGED, "/tree/a/b"),
        (EventType.DELETED, "/tree/a/b"),
    ]
    assert rec.none_after(peer)
    peer.unwatch(f"{root}/tree")


def test_unwatch_ends_persistent_watches(peer: Peer, root: str) -> None:
    rec = Recorder()
    peer.watch(f"{root}/u").connect(rec.receiver, weak=False)
    peer.watch(f"{root}/u", recursive=True).connect(rec.receiver, weak=False)
    peer.create(f"{root}/u")
    assert [rec.next().type, rec.next().type] == [EventType.CREATED, EventType.CREATED]  # one per signal
    peer.unwatch(f"{root}/u")
    peer.set(f"{root}/u", b"1")
    assert rec.none_after(peer)
    assert peer.watch(f"{root}/u") is not None  # a new watch may start again


def test_a_signal_delivers_to_each_of_its_receivers(peer: Peer, root: str) -> None:
    first, second = Recorder(), Recorder()
    signal = peer.watch(f"{root}/m")
    signal.connect(first.receiver, weak=False)
    signal.connect(second.receiver, weak=False)
    senders: list[Any] = []
    signal.connect(lambda sender, event: senders.append(sender), weak=False)
    peer.create(f"{root}/m")
    assert first.next().type is EventType.CREATED and second.next().type is EventType.CREATED
    wait_until(lambda: senders == [peer])
    peer.unwatch(f"{root}/m")


def test_receivers_connected_weakly_need_a_reference(peer: Peer, root: str) -> None:
    kept = Recorder()
    signal = peer.watch(f"{root}/weak")
    signal.connect(kept.receiver)  # blinker's default: a weak reference; `kept` keeps it alive
    signal.connect(lambda sender, event: None)  # gone at once: nothing holds the lambda
    gc.collect()
    peer.create(f"{root}/weak")
    assert kept.next().type is EventType.CREATED
    peer.unwatch(f"{root}/weak")


# ----------------------------------------------------------------------------------------------------------------
# DataWatch and ChildrenWatch


def test_data_watch_calls_now_and_on_every_change(peer: Peer, root: str) -> None:
    calls: queue.Queue[tuple[Any, ...]] = queue.Queue()
    path = f"{root}/config"

    @peer.DataWatch(path)
    def on_change(data: Any, stat: Any, event: Any) -> None:
        calls.put((data, stat.version if stat else None, event.type if event else None))

    assert calls.get(timeout=5) == (None, None, None)  # called at once; the node does not exist yet
    peer.create(path, b"v0")
    assert calls.get(timeout=5) == (b"v0", 0, EventType.CREATED)
    peer.set(path, b"v1")
    assert calls.get(timeout=5) == (b"v1", 1, EventType.CHANGED)
    peer.create(f"{path}/child")  # children are not DataWatch's business
    peer.delete(f"{path}/child")
    peer.delete(path)
    assert calls.get(timeout=5) == (None, None, EventType.DELETED)
    peer.create(path, b"again")  # it outlives the node
    assert calls.get(timeout=5) == (b"again", 0, EventType.CREATED)


def test_data_watch_with_a_two_argument_function_and_returning_false(peer: Peer, root: str) -> None:
    calls: queue.Queue[Any] = queue.Queue()
    path = peer.create(f"{root}/d", b"0")

    def on_change(data: Any, stat: Any) -> Any:
        calls.put(data)
        return data != b"stop"

    watch = peer.DataWatch(path, on_change)
    assert calls.get(timeout=5) == b"0"
    peer.set(path, b"stop")
    assert calls.get(timeout=5) == b"stop"
    wait_until(lambda: watch.stopped)
    peer.set(path, b"after")
    dispatched(peer)
    assert calls.empty()


def test_children_watch_calls_now_and_when_children_change(peer: Peer, root: str) -> None:
    calls: queue.Queue[Any] = queue.Queue()
    path = peer.create(f"{root}/members")
    peer.create(f"{path}/a")

    @peer.ChildrenWatch(path)
    def on_members(children: list[str]) -> None:
        calls.put(sorted(children))

    assert calls.get(timeout=5) == ["a"]
    peer.create(f"{path}/b")
    assert calls.get(timeout=5) == ["a", "b"]
    peer.set(f"{path}/b", b"data")  # not a membership change
    peer.set(path, b"data")
    peer.delete(f"{path}/a")
    assert calls.get(timeout=5) == ["b"]
    peer.delete(f"{path}/b")
    assert calls.get(timeout=5) == []
    peer.delete(path)  # the watch ends with the node, as kazoo's
    peer.create(path)
    peer.create(f"{path}/c")
    dispatched(peer)
    assert calls.empty()


def test_children_watch_send_event_and_returning_false(peer: Peer, root: str) -> None:
    calls: queue.Queue[Any] = queue.Queue()
    path = peer.create(f"{root}/q")

    def on_children(children: list[str], event: Any) -> bool:
        calls.put((sorted(children), event.type if event else None))
        return len(children) < 2

    watch = peer.ChildrenWatch(path, on_children, send_event=True)
    assert calls.get(timeout=5) == ([], None)
    peer.create(f"{path}/1")
    assert calls.get(timeout=5) == (["1"], EventType.CHILD)
    peer.create(f"{path}/2")
    assert calls.get(timeout=5) == (["1", "2"], EventType.CHILD)
    wait_until(lambda: watch.stopped)
    peer.create(f"{path}/3")
    dispatched(peer)
    assert calls.empty()


# ----------------------------------------------------------------------------------------------------------------
# order, visibility, threads


def test_events_arrive_in_zxid_order_and_after_the_change_is_visible(peer: Peer, root: str) -> None:
    seen: list[tuple[int, str, bool]] = []
    done = threading.Event()
    total = 1 + 3 + 3 * 99

    def receiver(sender: Any, event: WatchedEvent) -> None:
        _data, stat = peer.get(event.path)
        seen.append((event.zxid, event.path, stat.mzxid >= event.zxid))
        if len(seen) == total:
            done.set()

    peer.watch(f"{root}/o", recursive=True).connect(receiver, weak=False)
    peer.create(f"{root}/o")
    paths = [peer.create(f"{root}/o/n{i}") for i in range(3)]

    def writer(path: str) -> None:
        for i in range(99):
            peer.set_async(path, str(i).encode())

    threads = [threading.Thread(target=writer, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done.wait(20)
    zxids = [z for z, _p, _v in seen]
    assert zxids == sorted(zxids) and len(set(zxids)) == total
    assert all(visible for _z, _p, visible in seen)
    peer.unwatch(f"{root}/o")


def test_callbacks_run_on_the_dispatch_thread_never_the_loop_thread(peer: Peer, root: str) -> None:
    threads: queue.Queue[threading.Thread] = queue.Queue()
    peer.exists(f"{root}/t", watch=lambda e: threads.put(threading.current_thread()))
    peer.create(f"{root}/t")
    thread = threads.get(timeout=5)
    assert thread is not threading.current_thread()
    assert thread is not peer._loop.thread  # type: ignore[union-attr]
    assert thread.name.startswith("embedzk-watcher-watches")


def test_a_slow_callback_stalls_neither_writes_nor_other_watches(peer: Peer, root: str) -> None:
    release = threading.Event()
    slow_calls: list[str] = []
    fast = Recorder()

    def slow(sender: Any, event: WatchedEvent) -> None:
        slow_calls.append(event.path)
        release.wait(10)

    peer.watch(f"{root}/slow", recursive=True).connect(slow, weak=False)
    peer.watch(f"{root}/fast", recursive=True).connect(fast.receiver, weak=False)
    peer.create(f"{root}/slow")  # the slow receiver now blocks until released
    wait_until(lambda: slow_calls == [f"{root}/slow"])
    began = time.monotonic()
    written = 0
    while time.monotonic() - began < 1.0:  # writes go on while the callback sleeps
        peer.create(f"{root}/fast/n{written}" if written else f"{root}/fast")
        written += 1
    assert written > 20
    for _ in range(written):  # and so do the other watches
        fast.next(timeout=5)
    for i in range(3):
        peer.create(f"{root}/slow/after{i}")
    assert slow_calls == [f"{root}/slow"]  # its own later events wait for it ...
    assert not release.is_set()
    release.set()
    wait_until(lambda: len(slow_calls) == 4)
    assert slow_calls[1:] == [f"{root}/slow/after{i}" for i in range(3)]  # ... and come in order
    assert peer.stats()["callbacks_slow"] >= 1
    peer.unwatch(f"{root}/slow")
    peer.unwatch(f"{root}/fast")


def test_a_raising_callback_is_logged_and_the_others_go_on(
    peer: Peer, root: str, caplog: pytest.LogCaptureFixture
) -> None:
    after = Recorder()

    def broken(event: WatchedEvent) -> None:
        raise RuntimeError("boom in a watch callback")

    failed = peer.stats()["callbacks_failed"]
    with caplog.at_level(logging.ERROR, logger="embedzk"):
        peer.exists(f"{root}/r", watch=broken)
        peer.exists(f"{root}/r", watch=after)
        peer.create(f"{root}/r")
        assert after.next().type is EventType.CREATED
        peer.set(f"{root}/r", b"still writing")
        wait_until(lambda: "boom in a watch callback" in caplog.text)
    assert peer.stats()["callbacks_failed"] == failed + 1
    assert any("broken" in r.getMessage() for r in caplog.records)


def test_state_listeners_that_raise_do_not_stop_the_others() -> None:
    states: list[KeeperState] = []
    peer = Peer("listeners")

    def bad(state: KeeperState) -> None:
        raise ValueError("listener failure")

    peer.add_listener(bad)
    peer.add_listener(states.append)
    peer.start()
    wait_until(lambda: KeeperState.CONNECTED in states)
    peer.remove_listener(bad)
    peer.stop()
    assert states[-1] is KeeperState.LOST


# ----------------------------------------------------------------------------------------------------------------
# across peers


def test_watches_fire_for_writes_made_on_other_peers() -> None:
    with LocalCluster(n=3) as cluster:
        a, b, c = cluster.peers
        rec, data_calls = Recorder(), queue.Queue()  # type: ignore[var-annotated]
        b.watch("/shared", recursive=True).connect(rec.receiver, weak=False)
        c.DataWatch("/shared", lambda data, stat: data_calls.put(data))
        assert data_calls.get(timeout=5) is None
        a.create("/shared", b"1")
        a.create("/shared/x", b"")
        a.set("/shared", b"2")
        got = [rec.next() for _ in range(3)]
        assert [(e.type, e.path) for e in got] == [
            (EventType.CREATED, "/shared"), (EventType.CREATED, "/shared/x"), (EventType.CHANGED, "/shared")
        ]
        assert b.get("/shared")[0] == b"2"  # the callback ran after the change was visible here
        wait_until(lambda: data_calls.qsize() >= 2 and list(data_calls.queue)[-1] == b"2")
