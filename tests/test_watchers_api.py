"""DataWatch and ChildrenWatch: what they accept, and a ChildrenWatch of a node that does not exist yet."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from embedzk import BadArgumentsError, EventType, Peer
from embedzk.testing.cluster import wait_until

pytestmark = pytest.mark.timeout(60)

_names = itertools.count()


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with Peer("watchers-api") as p:
        yield p


@pytest.fixture
def root(peer: Peer) -> str:
    return peer.create(f"/wa{next(_names)}")


def dispatched(peer: Peer) -> None:
    """Return once every callback queued on the dispatch thread so far has run (they run in order)."""
    done = threading.Event()
    peer._dispatcher.submit(done.set)
    assert done.wait(10)


class Calls:
    """What a watch function was called with. Each call reads the current state, so one that follows quickly on
    another may repeat it (a create with makepath is a CREATED and a CHILD for the new parent): repeats are skipped."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.last: Any = object()

    def __call__(self, *args: Any) -> None:
        self.queue.put(args[0] if len(args) == 1 else args)

    def next(self) -> Any:
        while True:
            value = self.queue.get(timeout=5)
            if value != self.last:
                self.last = value
                return value

    def empty(self) -> bool:
        while not self.queue.empty():
            if self.queue.get() != self.last:
                return False
        return True


@pytest.mark.parametrize("func", [42, "name", b"x"])
def test_a_function_that_is_not_callable_is_refused_at_once(peer: Peer, root: str, func: Any) -> None:
    watches = peer.stats()["persistent_watches"]
    with pytest.raises(BadArgumentsError, match="callable"):
        peer.DataWatch(root, func)
    with pytest.raises(BadArgumentsError, match="callable"):
        peer.DataWatch(root)(func)
    with pytest.raises(BadArgumentsError, match="callable"):
        peer.ChildrenWatch(root, func)
    with pytest.raises(BadArgumentsError, match="callable"):
        peer.ChildrenWatch(root)(func)
    assert peer.stats()["persistent_watches"] == watches  # nothing was registered
    assert peer.stats()["callbacks_failed"] == 0


def test_a_children_watch_waits_for_its_node_and_is_called_once_it_is_created(peer: Peer, root: str) -> None:
    calls = Calls()
    path = f"{root}/later"
    watch = peer.ChildrenWatch(path, lambda children: calls(sorted(children)))
    dispatched(peer)  # its first call has run, with the node missing
    assert calls.empty() and not watch.stopped
    peer.create(f"{path}/a", makepath=True)  # the node and a child, in one transaction
    assert calls.next() == ["a"]
    peer.create(f"{path}/b")
    assert calls.next() == ["a", "b"]
    peer.set(path, b"data")  # not a change of the children
    peer.delete(f"{path}/a")
    assert calls.next() == ["b"]
    peer.delete(f"{path}/b")
    assert calls.next() == []
    peer.delete(path)  # then it ends with the node, as kazoo's
    wait_until(lambda: watch.stopped)
    peer.create(path)
    peer.create(f"{path}/c")
    dispatched(peer)
    assert calls.empty()


def test_a_children_watch_of_a_missing_node_with_send_event_first_hears_created(peer: Peer, root: str) -> None:
    calls = Calls()
    path = f"{root}/later"
    peer.ChildrenWatch(path, lambda children, event: calls((children, event.type if event else None)), send_event=True)
    dispatched(peer)
    assert calls.empty()
    peer.create(path)
    assert calls.next() == ([], EventType.CREATED)
    peer.create(f"{path}/x")
    assert calls.next() == (["x"], EventType.CHILD)


def test_a_children_watch_whose_node_goes_before_its_first_call_ends_with_it(peer: Peer, root: str) -> None:
    calls: list[Any] = []
    path = peer.create(f"{root}/brief")
    release = threading.Event()
    peer._dispatcher.submit(release.wait, 10)  # holds the dispatch thread: the first call waits behind it
    watch = peer.ChildrenWatch(path, calls.append)
    peer.delete(path)
    release.set()
    wait_until(lambda: watch.stopped)
    assert calls == []


def test_a_data_watch_of_a_missing_node_is_called_with_none_then_with_the_node(peer: Peer, root: str) -> None:
    calls: queue.Queue[Any] = queue.Queue()
    path = f"{root}/d"
    peer.DataWatch(path, lambda data, stat: calls.put(data))
    assert calls.get(timeout=5) is None
    peer.create(path, b"v")
    assert calls.get(timeout=5) == b"v"
