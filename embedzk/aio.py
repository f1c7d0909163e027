"""The asyncio face of a Peer: the same calls as coroutines, never blocking the event loop.

``peer.aio`` (an :class:`AsyncPeer`) offers the Peer's calls as coroutines. Writes, syncs and reads that set a watch
await the peer's futures (``asyncio.wrap_future``), so the event loop runs other tasks meanwhile; plain reads answer
from the local replica at once (microseconds), so they are coroutines only for symmetry. ``start`` and ``stop`` run
in a worker thread. Watch callbacks still run on the peer's dispatch thread, not in the event loop: use
:meth:`AsyncPeer.events` to receive a persistent watch's events in a coroutine instead.

    async with Peer("solo").aio as zk:
        await zk.create("/app/config", b"v1", makepath=True)
        data, stat = await zk.get("/app/config")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from embedzk._futures import chain
from embedzk.model import Stat, WatchedEvent

if TYPE_CHECKING:
    from embedzk.peer import Peer, Transaction

T = TypeVar("T")


async def _await(future: Future[T]) -> T:
    # Completed straight from the peer's future (not through the dispatch thread, where watch callbacks run): the
    # event loop hears of the result as soon as it exists.
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def copy(done: Future[T]) -> None:
        def settle() -> None:
            if waiter.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(done.result())

        loop.call_soon_threadsafe(settle)

    chain(future, copy)
    return await waiter


class AsyncPeer:
    """``peer.aio``: coroutine versions of the Peer's calls (kazoo's names and arguments)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    # life cycle

    async def start(self, timeout: float = 30.0) -> None:
        """Peer.start, in a worker thread."""
        await asyncio.to_thread(self.peer.start, timeout)

    async def stop(self) -> None:
        """Peer.stop, in a worker thread."""
        await asyncio.to_thread(self.peer.stop)

    async def __aenter__(self) -> AsyncPeer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # znodes

    async def create(self, path: str, value: bytes = b"", **kwargs: Any) -> Any:
        """Peer.create, awaited."""
        return await _await(self.peer.create_async(path, value, **kwargs))

    async def get(self, path: str, watch: Callable[[WatchedEvent], Any] | None = None) -> tuple[bytes, Stat]:
        """Peer.get: a local read (awaits the loop only to set a watch)."""
        if watch is None:
            return self.peer.get(path)
        return await _await(self.peer.get_async(path, watch))

    async def exists(self, path: str, watch: Callable[[WatchedEvent], Any] | None = None) -> Stat | None:
        """Peer.exists: a local read (awaits the loop only to set a watch)."""
        if watch is None:
            return self.peer.exists(path)
        return await _await(self.peer.exists_async(path, watch))

    async def get_children(
        self, path: str, watch: Callable[[WatchedEvent], Any] | None = None, include_data: bool = False
    ) -> Any:
        """Peer.get_children: a local read (awaits the loop only to set a watch)."""
        if watch is None:
            return self.peer.get_children(path, include_data=include_data)
        return await _await(self.peer.get_children_async(path, watch, include_data))

    async def set(self, path: str, value: bytes, version: int = -1) -> Stat:
        """Peer.set, awaited."""
        return await _await(self.peer.set_async(path, value, version))

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Peer.delete, awaited (``recursive``: retried, as Peer.delete, if children come and go meanwhile)."""
        if not recursive:
            await _await(self.peer.delete_async(path, version))
            return
        await asyncio.to_thread(self.peer.delete, path, version, True)

    async def ensure_path(self, path: str) -> None:
        """Peer.ensure_path, awaited."""
        await _await(self.peer.ensure_path_async(path))

    async def sync(self, path: str = "/") -> None:
        """Peer.sync, awaited."""
        await _await(self.peer.sync_async(path))

    def transaction(self) -> Transaction:
        """Peer.transaction; commit it with ``await aio.commit(t)``."""
        return self.peer.transaction()

    async def commit(self, transaction: Transaction) -> list[Any]:
        """Commit a Transaction built with ``transaction()``, awaited."""
        return await _await(transaction.commit_async())

    async def stats(self) -> dict[str, Any]:
        """Peer.stats, awaited."""
        return await _await(self.peer.stats_async())

    # watches

    async def events(self, path: str, recursive: bool = False) -> AsyncIterator[WatchedEvent]:
        """Yield the events of a persistent watch on ``path`` (recursive: its subtree) in this event loop.

        The watch starts before the first ``await`` of the iteration returns and ends when the iteration does
        (``break``, or the task is cancelled).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[WatchedEvent] = asyncio.Queue()

        def receiver(sender: Any, event: WatchedEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        signal = await _await(self.peer._watch_async(path, recursive))
        signal.connect(receiver, weak=False)
        try:
            while True:
                yield await queue.get()
        finally:
            signal.disconnect(receiver)

    # cluster state

    @property
    def leader(self) -> str | None:
        """Peer.leader."""
        return self.peer.leader

    @property
    def is_leader(self) -> bool:
        """Peer.is_leader."""
        return self.peer.is_leader

    @property
    def state(self) -> Any:
        """Peer.state."""
        return self.peer.state
