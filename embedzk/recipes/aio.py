"""The recipes for asyncio code: Lock, ReadLock, WriteLock, Semaphore, Election, LeaderLatch and Counter.

Reached as ``peer.aio.Lock(path)`` and so on (see :class:`embedzk.aio.AsyncPeer`); each wraps the threaded recipe
of the same name, so they interoperate with it: an async Lock and a threaded Lock on the same path exclude each
other. None blocks the event loop:

- a lock's waiting (which sleeps on a watch) runs on a thread of its own, one per waiting call, and is awaited;
- a Counter's changes await the peer's futures directly;
- a LeaderLatch keeps its own background thread and tells the event loop of every change.

Cancellation gives back what was taken: a cancelled ``acquire()`` (or ``async with lock``, or an Election's
``run()`` waiting to lead) stops waiting, deletes its contender node, and if it had got the lock meanwhile releases
it, all before the CancelledError goes on; a cancelled ``run()`` that leads steps down. The wait for that clean-up
is bounded by the peer's request timeout.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from embedzk._bridge import InLoop, call_soon, in_thread, wait, wait_out
from embedzk.errors import BadVersionError, ConnectionLossError, NodeExistsError, NoNodeError, PeerStoppedError
from embedzk.model import KeeperState
from embedzk.recipes._common import (
    RETRYABLE,
    UNKNOWN_OUTCOME,
    Deadline,
    LockTimeout,
    normalize_path,
)
from embedzk.recipes.counter import Counter, Number
from embedzk.recipes.election import LeaderLatch
from embedzk.recipes.lock import Lock, ReadLock, Semaphore, WriteLock, _Contender

if TYPE_CHECKING:
    from concurrent.futures import Future

    from embedzk.peer import Peer

__all__ = [
    "AsyncCounter",
    "AsyncElection",
    "AsyncLeaderLatch",
    "AsyncLock",
    "AsyncReadLock",
    "AsyncSemaphore",
    "AsyncWriteLock",
]

C = TypeVar("C", bound=_Contender)
T = TypeVar("T")

_POLL = 0.01


# ------------------------------------------------------------------------------------------------------------------
# what the async recipes share


async def _wait_connected(peer: Peer) -> None:
    """Wait in the loop until the peer is CONNECTED with an open session; PeerStoppedError once it is stopped."""
    while not (peer.state is KeeperState.CONNECTED and peer.session_id is not None):
        peer.exists("/")  # a local read: raises PeerStoppedError once the peer is stopped
        await asyncio.sleep(_POLL)


async def _retry(peer: Peer, call: Callable[[], Future[T]]) -> T:
    """Await ``call()`` (a ``*_async`` call, safe to repeat) until it fails with no retryable error."""
    while True:
        try:
            return await wait(call())
        except RETRYABLE:
            await _wait_connected(peer)


async def _sync(peer: Peer) -> None:
    """``peer.sync()``, awaited, retried until it succeeds (or the peer is stopped)."""
    await _retry(peer, peer.sync_async)


async def _in_thread(fn: Callable[[], T], name: str) -> T:
    """Run the blocking ``fn`` on a thread of its own and await it; if cancelled, let it finish before the
    cancellation goes on (its effects are then the caller's to undo)."""
    future = in_thread(fn, name)
    try:
        return await wait(future)
    except asyncio.CancelledError:
        await wait_out(future)
        raise


# ------------------------------------------------------------------------------------------------------------------
# locks


class _AsyncContender(Generic[C]):
    """The asyncio face of a lock, read/write lock or semaphore (the threaded recipe is ``wrapped``).

    Tasks sharing one instance take turns, as with an ``asyncio.Lock``: a second task's ``acquire`` waits until
    the first one releases. For the task that holds it, ``acquire`` is re-entrant (True at once), as kazoo's lock
    is for its thread.
    """

    def __init__(self, peer: Peer, wrapped: C) -> None:
        #: The peer the lock is taken through.
        self.peer = peer
        #: The threaded recipe this wraps (:mod:`embedzk.recipes.lock`).
        self.wrapped = wrapped
        self._turn = asyncio.Lock()  # which task of this instance may contend (bound to a loop on first use)
        self._holder: asyncio.Task[Any] | None = None

    @property
    def path(self) -> str:
        """The lock's path."""
        return self.wrapped.path

    @property
    def node(self) -> str | None:
        """The name of this contender's node while it contends or holds, else None."""
        return self.wrapped.node

    @property
    def is_acquired(self) -> bool:
        """True while held (a local read; see the threaded recipe's ``is_acquired``)."""
        return self.wrapped.is_acquired

    @property
    def fencing_token(self) -> int | None:
        """While held, the zxid that created this contender's node, larger than every earlier holder's."""
        return self.wrapped.fencing_token

    def contenders(self) -> list[str]:
        """The identifiers of the current contenders, holder(s) first (a local read)."""
        return self.wrapped.contenders()

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire; return True once held.

        ``blocking`` False: return False at once unless it can be had now. ``timeout``: raise LockTimeout after
        that many seconds. If the awaiting task is cancelled, the contender's node is deleted (and the lock
        released, if it was acquired meanwhile) before the CancelledError propagates: nothing is left queued.
        :meth:`cancel` makes a waiting call raise :class:`embedzk.recipes.CancelledError` instead.
        """
        task = asyncio.current_task()
        if self._holder is not None and self._holder is task:
            if self.wrapped.is_acquired:
                return True
            # This task held it and lost it with its session: queue again, keeping this instance's turn.
            try:
                got = await self._contend(blocking, timeout)
            except BaseException:
                self._give_turn()
                raise
            if not got:
                self._give_turn()
            return got
        deadline = Deadline(timeout if blocking else None)
        if not blocking:
            if self._turn.locked():
                return False
            await self._turn.acquire()  # free: returns without waiting
        else:
            try:
                async with asyncio.timeout(deadline.remaining()):
                    await self._turn.acquire()
            except TimeoutError:
                raise LockTimeout(f"could not acquire {self.path} within {timeout}s: another task of this "
                                  f"instance holds it") from None
        try:
            got = await self._contend(blocking, None if timeout is None else deadline.remaining())
        except BaseException:
            self._turn.release()
            raise
        if got:
            self._holder = task
        else:
            self._turn.release()
        return got

    async def _contend(self, blocking: bool, timeout: float | None) -> bool:
        wrapped = self.wrapped
        future = in_thread(lambda: wrapped.acquire(blocking, timeout), f"embedzk-aio-acquire-{self.path}")
        try:
            return await wait(future)
        except asyncio.CancelledError:
            wrapped.cancel()  # wakes the thread: it deletes its node and raises
            await wait_out(future)
            try:
                if future.exception() is None and future.result():  # got it before the cancel arrived
                    await wait_out(in_thread(wrapped.release, f"embedzk-aio-release-{self.path}"))
            finally:
                # A cancel that arrived after the thread's acquire had returned must not cancel the next one.
                wrapped._cancelled = False
            raise

    async def release(self) -> bool:
        """Release; True if it was held. Deletes this contender's node; runs to its end even if the awaiting task
        is cancelled meanwhile (the cancellation then propagates)."""
        try:
            return await _in_thread(self.wrapped.release, f"embedzk-aio-release-{self.path}")
        finally:
            self._give_turn()

    def _give_turn(self) -> None:
        if self._holder is not None:
            self._holder = None
            self._turn.release()

    def cancel(self) -> None:
        """Make a waiting :meth:`acquire` raise :class:`embedzk.recipes.CancelledError` (kazoo's cancel)."""
        self.wrapped.cancel()

    async def __aenter__(self) -> Self:
        """Acquire (waiting as long as it takes)."""
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Release."""
        await self.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {'held' if self.wrapped._acquired else 'not held'}>"


class AsyncLock(_AsyncContender[Lock]):
    """A distributed mutual-exclusion lock for async code (kazoo's Lock; ``peer.aio.Lock(path)``).

    Usage::

        lock = zk.Lock("/locks/report", identifier="worker-3")
        async with lock:                        # waits without blocking the event loop
            await make_the_report()
        if await lock.acquire(timeout=5):       # LockTimeout after 5 s
            try: ...
            finally: await lock.release()

    Cancelling a task that waits for the lock leaves nothing behind (see :meth:`acquire`).
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        super().__init__(peer, Lock(peer, path, identifier))


class AsyncReadLock(_AsyncContender[ReadLock]):
    """The shared side of a read/write lock for async code (kazoo's ReadLock; ``peer.aio.ReadLock(path)``).

    Usage::

        async with zk.ReadLock("/locks/table"):
            await read_the_table()
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        super().__init__(peer, ReadLock(peer, path, identifier))


class AsyncWriteLock(_AsyncContender[WriteLock]):
    """The exclusive side of a read/write lock for async code (kazoo's WriteLock; ``peer.aio.WriteLock(path)``).

    Usage::

        async with zk.WriteLock("/locks/table"):
            await rewrite_the_table()
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        super().__init__(peer, WriteLock(peer, path, identifier))


class AsyncSemaphore(_AsyncContender[Semaphore]):
    """A counting semaphore for async code: at most ``max_leases`` holders (``peer.aio.Semaphore(path, ...)``).

    Usage::

        async with zk.Semaphore("/limits/downloads", identifier="worker-3", max_leases=4):
            await download()
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None, max_leases: int = 1) -> None:
        super().__init__(peer, Semaphore(peer, path, identifier, max_leases))

    @property
    def max_leases(self) -> int:
        """How many may hold a lease at once."""
        return self.wrapped.max_leases

    def lease_holders(self) -> list[str]:
        """The identifiers of the contenders that hold a lease now (a local read)."""
        return self.wrapped.lease_holders()


# ------------------------------------------------------------------------------------------------------------------
# elections


class AsyncElection:
    """Run a coroutine function (or a function) while this contender leads (kazoo's Election;
    ``peer.aio.Election(path)``).

    Usage::

        election = zk.Election("/election/scheduler", identifier="worker-3")

        async def lead():
            while election.is_leader:           # False once the peer is no longer CONNECTED
                await schedule_some_jobs()

        await election.run(lead)                # waits to be elected, awaits lead(), then steps down
        election.contenders()                   # identifiers in line, the leader first

    Cancelling the task that awaits ``run`` takes it out of the line (while waiting) or steps down (while
    leading). The contenders are lock contenders, so this interoperates with the threaded Election and Lock.
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        #: The peer the election is run through.
        self.peer = peer
        #: The election's path.
        self.path = normalize_path(path)
        #: The lock whose holder leads (kazoo's Election has one too).
        self.lock = AsyncLock(peer, self.path, identifier)
        self._running = False
        self._relinquished = False

    @property
    def is_leader(self) -> bool:
        """True while ``run`` is running the function and leadership was not given up (the peer's state left
        CONNECTED, or the session was lost)."""
        return self._running and not self._relinquished and self.lock.is_acquired

    async def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Wait to be elected, call ``func(*args, **kwargs)`` (awaiting it if it returns an awaitable), then step
        down; return what it returned. A plain function runs in the event loop: it must not block."""
        if not callable(func):
            raise ValueError("func must be callable")
        await self.lock.acquire()
        self._relinquished = False

        def on_state(state: KeeperState) -> None:  # on the peer's dispatch thread
            if state is not KeeperState.CONNECTED:
                self._relinquished = True

        self.peer.add_listener(on_state)
        try:
            self._running = True
            if self.peer.state is not KeeperState.CONNECTED:
                self._relinquished = True
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            self._running = False
            self.peer.remove_listener(on_state)
            try:
                await self.lock.release()
            except PeerStoppedError:
                pass

    def cancel(self) -> None:
        """Make a ``run`` waiting to be elected raise :class:`embedzk.recipes.CancelledError` (kazoo's cancel)."""
        self.lock.cancel()

    def contenders(self) -> list[str]:
        """The identifiers of the contenders, the leader first (a local read)."""
        return self.lock.contenders()

    def __repr__(self) -> str:
        return f"<AsyncElection {self.path} {'leading' if self.is_leader else 'not leading'}>"


class AsyncLeaderLatch:
    """Leadership as a latch for async code (Curator's LeaderLatch; ``peer.aio.LeaderLatch(path)``).

    Usage::

        latch = zk.LeaderLatch("/election/compactor", identifier="worker-3")
        latch.add_listener(on_leadership)       # on_leadership(True/False), in the event loop (may be async)
        async with latch:                       # start() on entering, close() on leaving
            if await latch.wait(timeout=10):    # True once leading
                ...
            latch.has_leadership                # the current answer, at once

    The threaded LeaderLatch (``wrapped``) keeps running on its own thread; ``start`` and ``close``, which wait
    for the peer, run on a thread too. A cancelled ``start`` closes the latch again.
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        #: The peer the latch contends through.
        self.peer = peer
        #: The threaded recipe this wraps.
        self.wrapped = LeaderLatch(peer, path, identifier)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()  # set on every change of leadership (bound to a loop on first use)
        self._closed = False
        self._listeners: dict[Callable[[bool], Any], InLoop] = {}
        self.wrapped.add_listener(self._on_change)

    def _on_change(self, leading: bool) -> None:  # on the latch's thread
        loop = self._loop
        if loop is not None:
            call_soon(loop, self._changed.set)

    @property
    def path(self) -> str:
        """The election's path."""
        return self.wrapped.path

    @property
    def has_leadership(self) -> bool:
        """True while this contender leads."""
        return self.wrapped.has_leadership

    async def start(self) -> None:
        """Join the election (returns once this contender has a place in line; leadership comes through
        listeners and :meth:`wait`)."""
        self._loop = asyncio.get_running_loop()
        future = in_thread(self.wrapped.start, f"embedzk-aio-latch-{self.path}")
        try:
            await wait(future)
        except asyncio.CancelledError:
            await wait_out(future)
            if future.exception() is None:
                await self._close()
            raise

    async def close(self) -> None:
        """Leave the election: delete this contender's node and drop leadership (listeners hear False if it was
        leading). Runs to its end even if the awaiting task is cancelled meanwhile."""
        await self._close()

    async def _close(self) -> None:
        self._closed = True
        try:
            await _in_thread(self.wrapped.close, f"embedzk-aio-latch-close-{self.path}")
        finally:
            self._changed.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until this contender leads (True), ``timeout`` seconds pass or the latch is closed (False)."""
        try:
            async with asyncio.timeout(timeout):
                while not (self.wrapped.has_leadership or self._closed):
                    self._changed.clear()
                    if self.wrapped.has_leadership or self._closed:
                        break
                    await self._changed.wait()
        except TimeoutError:
            pass
        return self.wrapped.has_leadership

    def add_listener(self, listener: Callable[[bool], Any]) -> Callable[[bool], Any]:
        """Call ``listener(True)`` on gaining and ``listener(False)`` on losing leadership, in this event loop
        (a coroutine function is awaited, one call at a time); usable as a decorator."""
        if listener not in self._listeners:
            bridge = InLoop(asyncio.get_running_loop(), listener)
            self._listeners[listener] = bridge
            self.wrapped.add_listener(bridge)
        return listener

    def remove_listener(self, listener: Callable[[bool], Any]) -> None:
        """Stop calling ``listener``."""
        bridge = self._listeners.pop(listener, None)
        if bridge is not None:
            self.wrapped.remove_listener(bridge)

    def contenders(self) -> list[str]:
        """The identifiers of the contenders, the leader first (a local read)."""
        return self.wrapped.contenders()

    def get_leader(self) -> str | None:
        """The identifier of the leading contender, or None (a local read)."""
        return self.wrapped.get_leader()

    async def __aenter__(self) -> Self:
        """Start."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close."""
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncLeaderLatch {self.path} {'leading' if self.has_leadership else 'not leading'}>"


# ------------------------------------------------------------------------------------------------------------------
# counter


class AsyncCounter:
    """A shared int or float counter whose changes are atomic, for async code (kazoo's Counter;
    ``peer.aio.Counter(path)``).

    Usage::

        counter = zk.Counter("/stats/jobs-done")
        await counter.add(1)                    # atomic: read, then set with the version read, retried on conflict
        await counter.sub(2)                    # both return the value after the change
        counter.value                           # from the local replica (await zk.sync() first for the latest)
        counter.pre_value, counter.post_value   # before and after this instance's last change

    Same format and rules as the threaded Counter (``wrapped``): ``repr(value)`` in ASCII, or a big-endian int32
    with ``support_curator``; a change whose outcome is unknown is checked after a sync and made again only when
    it surely was not applied. The changes of one instance are made one at a time, in the order asked. Cancelling
    a change while its write is in flight stops the waiting, not the write: it may be applied.
    """

    def __init__(self, peer: Peer, path: str, default: Number = 0, support_curator: bool = False) -> None:
        #: The peer the counter is changed through.
        self.peer = peer
        #: The threaded recipe whose format and checks this uses.
        self.wrapped = Counter(peer, path, default, support_curator)
        #: The counter's path.
        self.path = self.wrapped.path
        #: The value of a counter whose node is empty or missing.
        self.default = default
        #: The value before this instance's last change (None before any).
        self.pre_value: Number | None = None
        #: The value after this instance's last change (None before any).
        self.post_value: Number | None = None
        self._ensured = False
        self._changing = asyncio.Lock()

    @property
    def value(self) -> Number:
        """The counter's value in the local replica (the default while the node does not exist)."""
        try:
            data, _stat = self.peer.get(self.path)
        except NoNodeError:
            return self.default
        return self.wrapped._decode(data)

    async def add(self, delta: Number) -> Number:
        """Add ``delta`` atomically; return the value after the change."""
        self._check(delta)
        async with self._changing:
            return await self._change(delta)

    async def sub(self, delta: Number) -> Number:
        """Subtract ``delta`` atomically; return the value after the change."""
        self._check(delta)
        async with self._changing:
            return await self._change(-delta)

    def _check(self, delta: Number) -> None:
        if isinstance(delta, bool) or not isinstance(delta, self.wrapped.default_type):
            raise TypeError("invalid type for value change")

    async def _ensure_node(self) -> None:
        if self._ensured:
            return
        peer = self.peer
        try:
            await _retry(peer, lambda: peer.create_async(self.path, b"", makepath=True))
        except NodeExistsError:
            pass
        self._ensured = True

    async def _change(self, delta: Number) -> Number:
        peer, path = self.peer, self.path
        while True:
            await self._ensure_node()
            try:
                data, stat = peer.get(path)
            except NoNodeError:
                self._ensured = False
                continue
            pre, version = self.wrapped._decode(data), stat.version
            post = pre + delta
            encoded = self.wrapped._encode(post)
            try:
                await wait(peer.set_async(path, encoded, version))
            except BadVersionError:
                await _sync(peer)  # our replica trailed, or another client changed it: read the latest, try again
                continue
            except NoNodeError:
                self._ensured = False
                continue
            except UNKNOWN_OUTCOME as exc:
                await _sync(peer)
                current, now = peer.get(path)
                if now.version == version:
                    continue  # not applied
                if now.version == version + 1 and current != encoded:
                    continue  # another client's change won the version: ours was not applied
                raise ConnectionLossError(f"{path}: the change's outcome is unknown") from exc
            self.pre_value, self.post_value = pre, post
            return post

    def __repr__(self) -> str:
        return f"<AsyncCounter {self.path}>"
