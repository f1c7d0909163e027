"""The asyncio face of a Peer: the same calls as coroutines, watches as async iterators, recipes for async code.

``peer.aio`` (an :class:`AsyncPeer`, one per peer) offers the Peer's calls as coroutines. Writes, syncs and reads
that set a watch await the peer's futures, so the event loop runs other tasks meanwhile; plain reads answer from the
local replica at once (microseconds), so they are coroutines only for symmetry. ``start`` and ``stop`` run in a
worker thread. Nothing here blocks the event loop (docs/asyncio.md).

Watches come as async iterators, registered when they are made, before the call returns (so no change asked for
afterwards is missed): :meth:`AsyncPeer.events` (or :meth:`AsyncPeer.watch`, for ``async with``) yields a
persistent watch's events, :meth:`AsyncPeer.DataWatch` and :meth:`AsyncPeer.ChildrenWatch` what kazoo's would pass
to their function. :meth:`AsyncPeer.add_listener` runs a state listener (a function or a coroutine function) in the
event loop. The recipes (``Lock``, ``Election``, ``LeaderLatch``, ``Counter`` ...) are in :mod:`embedzk.recipes.aio`.

    async with Peer("solo").aio as zk:
        await zk.create("/app/config", b"v1", makepath=True)
        data, stat = await zk.get("/app/config")
        async with zk.watch("/app", recursive=True) as events:
            async for event in events:
                ...
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar, overload

from embedzk import watchers
from embedzk._bridge import InLoop, call_soon
from embedzk._bridge import wait as _await
from embedzk.model import KeeperState, Stat, WatchedEvent

if TYPE_CHECKING:
    import blinker

    from embedzk.peer import Peer, Transaction
    from embedzk.recipes.aio import (
        AsyncCounter,
        AsyncElection,
        AsyncLeaderLatch,
        AsyncLock,
        AsyncReadLock,
        AsyncSemaphore,
        AsyncWriteLock,
    )
    from embedzk.recipes.counter import Number

__all__ = ["AsyncChildrenWatch", "AsyncDataWatch", "AsyncPeer", "EventStream"]

Item = TypeVar("Item")

#: What an :class:`AsyncDataWatch` yields: ``(data, stat, event)``, as kazoo's DataWatch passes to its function.
DataWatchItem = tuple["bytes | None", "Stat | None", "WatchedEvent | None"]


class _End:
    """Put in a stream's queue to end the iteration."""


_END = _End()


def _gone(peer: Peer) -> bool:
    """True once ``peer`` is stopped (or failed): it sends no event any more."""
    return peer._stopped or peer._crashed is not None


class _Stream(Generic[Item]):
    """What the watch iterators share: a queue in the event loop, fed from the peer's dispatch thread.

    The iteration ends when the stream is closed (:meth:`close`, :meth:`aclose`, leaving ``async with``), when the
    watch ends by itself, or when the peer is stopped. A stream that nobody references any more ends too: a
    ``break`` out of ``async for x in zk.events(...)`` leaves nothing registered behind.
    """

    def __init__(self, peer: Peer) -> None:
        #: The peer whose replica is watched.
        self.peer = peer
        self._loop = asyncio.get_running_loop()  # made in async code: the events go to this loop
        self._queue: asyncio.Queue[Item | _End] = asyncio.Queue()
        self._closed = False
        self._registered: Future[Any] | None = None
        # Weakly connected (a bound method): a stream nobody holds goes, and its receiver with it.
        peer.state_changed.connect(self._on_state)

    # -- the peer's threads ---------------------------------------------------------------------------------------

    def _on_state(self, sender: Any, state: KeeperState | None = None, **_kwargs: Any) -> None:
        if state is KeeperState.LOST and _gone(self.peer):
            call_soon(self._loop, self._queue.put_nowait, _END)

    # -- the event loop ---------------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the iteration has ended or the stream was closed."""
        return self._closed

    async def wait_registered(self) -> None:
        """Return once the watch is registered in the peer's replica: every change applied there from then on is
        seen, whichever peer made it. Raises PeerStoppedError if the peer stopped first."""
        registered = self._registered
        if registered is not None:
            try:
                await _await(registered)
            except Exception:
                self.close()
                raise
            self._registered = None  # known now: later items need not wait a loop turn for it

    def __aiter__(self) -> Self:
        """The stream is its own iterator."""
        return self

    async def __anext__(self) -> Item:
        """The next item, waiting for it; StopAsyncIteration once the stream has ended."""
        if self._closed:
            raise StopAsyncIteration
        await self.wait_registered()
        item = await self._queue.get()
        if isinstance(item, _End) or self._closed:
            self.close()
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """End the watch and the iteration (an ``async for`` waiting on it ends at once); idempotent."""
        if self._closed:
            return
        self._closed = True
        self.peer.state_changed.disconnect(self._on_state)
        self._disconnect()
        self._queue.put_nowait(_END)  # wakes an iteration waiting for the next item

    async def aclose(self) -> None:
        """:meth:`close`, as a coroutine (the name async generators use)."""
        self.close()

    async def __aenter__(self) -> Self:
        """Wait until the watch is registered (:meth:`wait_registered`); the stream is the ``as`` target."""
        await self.wait_registered()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the stream."""
        self.close()

    def _disconnect(self) -> None:
        raise NotImplementedError


class EventStream(_Stream[WatchedEvent]):
    """The events of a persistent watch on ``path`` (``recursive``: on its whole subtree), as an async iterator.

    Made by :meth:`AsyncPeer.events` or :meth:`AsyncPeer.watch`; the watch is connected before that call returns,
    so the events of every change asked for afterwards arrive, in zxid order::

        async for event in zk.events("/jobs", recursive=True):
            print(event.type, event.path)

        async with zk.watch("/jobs") as events:     # registered on entering, closed on leaving
            await other_peer.aio.create("/jobs/1")  # seen, even though another peer made it
            event = await anext(events)
    """

    def __init__(self, peer: Peer, path: str, recursive: bool = False) -> None:
        super().__init__(peer)
        #: The watched path.
        self.path = path
        #: True if the whole subtree is watched.
        self.recursive = recursive
        self._signal: blinker.Signal | None = None

        def connect(signal: blinker.Signal) -> None:
            self._signal = signal
            signal.connect(self._receive)  # weakly: see _Stream

        try:
            self._registered = peer._watch_async(path, recursive, connect)
        except BaseException:
            peer.state_changed.disconnect(self._on_state)
            raise

    def _receive(self, sender: Any, event: WatchedEvent | None = None, **_kwargs: Any) -> None:
        # On the dispatch thread, in zxid order.
        if event is not None:
            call_soon(self._loop, self._queue.put_nowait, event)

    def _disconnect(self) -> None:
        if self._signal is not None:
            self._signal.disconnect(self._receive)

    def __repr__(self) -> str:
        return f"<EventStream {self.path}{' recursive' if self.recursive else ''}{' closed' if self._closed else ''}>"


class _WatcherStream(_Stream[Item]):
    """An async iterator over the calls a :mod:`embedzk.watchers` watch would make to its function."""

    def __init__(self, peer: Peer, watch: watchers._PersistentCallback) -> None:
        super().__init__(peer)
        self._watch = watch
        #: The watched path.
        self.path = watch.path
        loop, queue = self._loop, self._queue

        # None of these closures holds the stream (the peer's registry holds the watch, the watch holds them), so
        # a stream nobody references is collected, and its finalizer ends the watch.
        def put(item: Any) -> bool:
            return call_soon(loop, queue.put_nowait, item)

        def on_stop() -> None:
            put(_END)

        watch._on_stop = on_stop
        watch._set_func(self._deliverer(put))
        try:
            self._registered = watch._register_async()
        except BaseException:
            peer.state_changed.disconnect(self._on_state)
            raise
        self._finalizer = weakref.finalize(self, watch.stop)

    def _deliverer(self, put: Callable[[Any], bool]) -> Callable[..., bool | None]:
        """The watch's function (run on the dispatch thread): hands each call's arguments to ``put``; returns
        False, which ends the watch, once the event loop is closed. It must not refer to the stream."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        self._finalizer()


class AsyncDataWatch(_WatcherStream[DataWatchItem]):
    """kazoo's DataWatch as an async iterator of ``(data, stat, event)``: now, and after every change of ``path``.

    ``data`` and ``stat`` are None while the node does not exist; ``event`` is None for the first item. Made by
    :meth:`AsyncPeer.DataWatch`, registered before that call returns; it outlives the node (a new node of the
    same path is seen too) until closed::

        async with zk.DataWatch("/app/config") as config:
            async for data, stat, event in config:
                apply(data)

    As the threaded DataWatch, each item is read when the change is dispatched: no change is missed, and
    several quick ones may show the same, latest, data more than once.
    """

    def __init__(self, peer: Peer, path: str) -> None:
        super().__init__(peer, watchers.DataWatch(peer, path))

    def _deliverer(self, put: Callable[[Any], bool]) -> Callable[..., bool | None]:
        def deliver(data: bytes | None, stat: Stat | None, event: WatchedEvent | None) -> bool | None:
            return None if put((data, stat, event)) else False

        return deliver

    def __repr__(self) -> str:
        return f"<AsyncDataWatch {self.path}{' closed' if self._closed else ''}>"


class AsyncChildrenWatch(_WatcherStream[Item]):
    """kazoo's ChildrenWatch as an async iterator: the children of ``path`` now, and whenever they change.

    Items are lists of names, or ``(children, event)`` with ``send_event=True`` (``event`` None for the first).
    If the node does not exist yet, the first item comes when it is created; the iteration ends when the node is
    deleted, as kazoo's watch ends. Made by :meth:`AsyncPeer.ChildrenWatch`, registered before that call returns::

        async for children in zk.ChildrenWatch("/workers"):
            rebalance(children)
    """

    def __init__(self, peer: Peer, path: str, send_event: bool = False) -> None:
        #: True if items are ``(children, event)`` pairs.
        self.send_event = send_event
        super().__init__(peer, watchers.ChildrenWatch(peer, path, send_event=send_event))

    def _deliverer(self, put: Callable[[Any], bool]) -> Callable[..., bool | None]:
        send_event = self.send_event

        def deliver(children: list[str], event: WatchedEvent | None = None) -> bool | None:
            return None if put((children, event) if send_event else children) else False

        return deliver

    def __repr__(self) -> str:
        return f"<AsyncChildrenWatch {self.path}{' closed' if self._closed else ''}>"


class AsyncPeer:
    """``peer.aio``: the Peer's calls as coroutines (kazoo's names and arguments), watches as async iterators,
    state listeners run in the event loop, and the recipes for asyncio code.

    Usage::

        async with Peer("solo").aio as zk:                 # start() and stop() in a worker thread
            await zk.create("/jobs/job-", b"", sequence=True, makepath=True)
            async with zk.Lock("/locks/report"):
                ...

    Cancelling a coroutine that awaits a write stops the waiting, not the write: it may still be applied, as
    after a timeout. The recipes give back what they took when cancelled (see :mod:`embedzk.recipes.aio`).
    """

    def __init__(self, peer: Peer) -> None:
        #: The Peer whose calls these are.
        self.peer = peer
        self._listeners: dict[Callable[[KeeperState], Any], InLoop] = {}

    # life cycle

    async def start(self, timeout: float = 30.0) -> None:
        """Peer.start, in a worker thread."""
        await asyncio.to_thread(self.peer.start, timeout)

    async def stop(self) -> None:
        """Peer.stop, in a worker thread."""
        await asyncio.to_thread(self.peer.stop)

    async def __aenter__(self) -> AsyncPeer:
        """Start the peer; ``async with Peer(...).aio as zk:``."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the peer."""
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

    async def get_acls(self, path: str) -> tuple[list[Any], Stat]:
        """Peer.get_acls, awaited."""
        return await _await(self.peer.get_acls_async(path))

    async def set_acls(self, path: str, acls: Any, version: int = -1) -> Stat:
        """Peer.set_acls, awaited."""
        return await _await(self.peer.set_acls_async(path, acls, version))

    def add_auth(self, scheme: str, credential: str) -> None:
        """Peer.add_auth (it only records the identity: nothing to wait for)."""
        self.peer.add_auth(scheme, credential)

    # watches

    def events(self, path: str, recursive: bool = False) -> EventStream:
        """The events of a persistent watch on ``path`` (``recursive``: its subtree), as an async iterator.

        The watch is connected before this returns: a change asked for afterwards (from this task or any other,
        through this peer) is never missed, even if the iteration has not started yet. ``async with`` on the
        stream also waits until the watch is registered in the replica, for changes made through other peers.
        Call it in the event loop that iterates (it delivers there). See :class:`EventStream`.
        """
        return EventStream(self.peer, path, recursive)

    def watch(self, path: str, recursive: bool = False) -> EventStream:
        """:meth:`events`, named for ``async with zk.watch(path) as events:`` (registered on entering)."""
        return EventStream(self.peer, path, recursive)

    def DataWatch(self, path: str) -> AsyncDataWatch:  # noqa: N802 - kazoo's name
        """kazoo's DataWatch as an async iterator of ``(data, stat, event)``, registered before this returns
        (:class:`AsyncDataWatch`)."""
        return AsyncDataWatch(self.peer, path)

    @overload
    def ChildrenWatch(  # noqa: N802 - kazoo's name
        self, path: str, send_event: Literal[False] = False
    ) -> AsyncChildrenWatch[list[str]]: ...

    @overload
    def ChildrenWatch(  # noqa: N802
        self, path: str, send_event: Literal[True]
    ) -> AsyncChildrenWatch[tuple[list[str], WatchedEvent | None]]: ...

    def ChildrenWatch(self, path: str, send_event: bool = False) -> AsyncChildrenWatch[Any]:  # noqa: N802
        """kazoo's ChildrenWatch as an async iterator of the children (``(children, event)`` with
        ``send_event``), registered before this returns (:class:`AsyncChildrenWatch`)."""
        return AsyncChildrenWatch(self.peer, path, send_event)

    # cluster state

    def add_listener(self, listener: Callable[[KeeperState], Any]) -> None:
        """Call ``listener(state)`` in this event loop on every state change (kazoo's add_listener).

        ``listener`` may be a function or a coroutine function; calls run one at a time, in order (a coroutine is
        awaited before the next call starts). Call this from the event loop that should run them.
        """
        loop = asyncio.get_running_loop()
        if not callable(listener):
            from embedzk.errors import BadArgumentsError

            raise BadArgumentsError(f"a listener must be callable, got {type(listener).__name__}")
        if listener in self._listeners:
            return
        bridge = InLoop(loop, listener)
        self._listeners[listener] = bridge
        self.peer.add_listener(bridge)

    def remove_listener(self, listener: Callable[[KeeperState], Any]) -> None:
        """Stop calling ``listener`` (calls already queued in the event loop still run)."""
        bridge = self._listeners.pop(listener, None)
        if bridge is not None:
            self.peer.remove_listener(bridge)

    @property
    def leader(self) -> str | None:
        """Peer.leader."""
        return self.peer.leader

    @property
    def is_leader(self) -> bool:
        """Peer.is_leader."""
        return self.peer.is_leader

    @property
    def state(self) -> KeeperState:
        """Peer.state."""
        return self.peer.state

    @property
    def connected(self) -> bool:
        """Peer.connected: True while the state is CONNECTED."""
        return self.peer.connected

    # recipes (embedzk.recipes.aio)

    def Lock(self, path: str, identifier: Any = None) -> AsyncLock:  # noqa: N802 - kazoo's names
        """A mutual-exclusion lock for async code: ``async with zk.Lock("/locks/x"): ...``."""
        from embedzk.recipes.aio import AsyncLock

        return AsyncLock(self.peer, path, identifier)

    def ReadLock(self, path: str, identifier: Any = None) -> AsyncReadLock:  # noqa: N802
        """The shared side of a read/write lock: ``async with zk.ReadLock("/locks/t"): ...``."""
        from embedzk.recipes.aio import AsyncReadLock

        return AsyncReadLock(self.peer, path, identifier)

    def WriteLock(self, path: str, identifier: Any = None) -> AsyncWriteLock:  # noqa: N802
        """The exclusive side of a read/write lock: ``async with zk.WriteLock("/locks/t"): ...``."""
        from embedzk.recipes.aio import AsyncWriteLock

        return AsyncWriteLock(self.peer, path, identifier)

    def Semaphore(self, path: str, identifier: Any = None, max_leases: int = 1) -> AsyncSemaphore:  # noqa: N802
        """A counting semaphore: ``async with zk.Semaphore("/limits/x", max_leases=4): ...``."""
        from embedzk.recipes.aio import AsyncSemaphore

        return AsyncSemaphore(self.peer, path, identifier, max_leases)

    def Election(self, path: str, identifier: Any = None) -> AsyncElection:  # noqa: N802
        """Leader election: ``await zk.Election("/election/x").run(lead)`` runs ``lead`` (a coroutine function or
        a function) while leader."""
        from embedzk.recipes.aio import AsyncElection

        return AsyncElection(self.peer, path, identifier)

    def LeaderLatch(self, path: str, identifier: Any = None) -> AsyncLeaderLatch:  # noqa: N802
        """Leadership as a latch: ``async with zk.LeaderLatch("/election/x") as latch: await latch.wait()``."""
        from embedzk.recipes.aio import AsyncLeaderLatch

        return AsyncLeaderLatch(self.peer, path, identifier)

    def Counter(self, path: str, default: Number = 0, support_curator: bool = False) -> AsyncCounter:  # noqa: N802
        """A shared counter: ``await zk.Counter("/stats/done").add(1)`` is atomic."""
        from embedzk.recipes.aio import AsyncCounter

        return AsyncCounter(self.peer, path, default, support_curator)

    def __repr__(self) -> str:
        return f"<AsyncPeer of {self.peer!r}>"
