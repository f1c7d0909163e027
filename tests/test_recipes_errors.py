"""Recipes refuse bad input as the Peer does, and say where the trouble is."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

from embedzk import BadArgumentsError, Peer

pytestmark = pytest.mark.timeout(60)

_names = itertools.count()


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with Peer("recipe-errors") as p:
        yield p


@pytest.fixture
def root(peer: Peer) -> str:
    return peer.create(f"/r{next(_names)}")


@pytest.mark.parametrize("value", ["text", 3, None, ["list"]])
def test_a_queue_refuses_a_value_that_is_not_bytes_as_create_does(peer: Peer, root: str, value: Any) -> None:
    with pytest.raises(BadArgumentsError):
        peer.create(f"{root}/direct", value)
    for queue in (peer.Queue(f"{root}/q"), peer.LockingQueue(f"{root}/lq")):
        with pytest.raises(BadArgumentsError, match="bytes") as caught:
            queue.put(value)
        assert isinstance(caught.value, TypeError)  # what kazoo's Queue raises, for code written against it
        with pytest.raises(BadArgumentsError, match="bytes"):
            queue.put_all([b"fine", value])
        assert len(queue) == 0  # nothing was queued, not even the good one


@pytest.mark.parametrize("priority", [-1, 1000, "1", 1.5, True])
def test_a_queue_refuses_a_bad_priority(peer: Peer, root: str, priority: Any) -> None:
    with pytest.raises(BadArgumentsError, match="priority") as caught:
        peer.Queue(f"{root}/q").put(b"x", priority=priority)
    assert isinstance(caught.value, TypeError if isinstance(priority, (str, float, bool)) else ValueError)


def test_a_queue_takes_what_create_takes(peer: Peer, root: str) -> None:
    queue = peer.Queue(f"{root}/q")
    queue.put(bytearray(b"ba"))
    queue.put_all([memoryview(b"mv"), b"b"])
    assert [queue.get(), queue.get(), queue.get(), queue.get()] == [b"ba", b"mv", b"b", None]
    with pytest.raises(BadArgumentsError, match="list"):
        queue.put_all(b"not a list")


@pytest.mark.parametrize(
    ("data", "kwargs"),
    [(b"twelve", {}), (b"1.5", {}), (b"\xff\xfe", {}), (b"abc", {"default": 0.0}), (b"12345", {"support_curator": True})],
)
def test_a_counter_on_data_that_is_no_counter_names_the_path_and_the_data(
    peer: Peer, root: str, data: bytes, kwargs: dict[str, Any]
) -> None:
    path = peer.create(f"{root}/counter", data)
    counter = peer.Counter(path, **kwargs)
    with pytest.raises(ValueError, match=re.escape(f"counter {path} holds {data!r}")) as caught:
        counter.value  # noqa: B018 - the read is what raises
    assert "expected" in str(caught.value)
    with pytest.raises(ValueError, match=path):
        counter += type(counter.default)(1)
    assert peer.get(path)[0] == data  # left as it was
