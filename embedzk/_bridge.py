"""Between the peer's threads and an asyncio event loop: what the asyncio face (:mod:`embedzk.aio`) is built with.

Three directions, none of which blocks the event loop:

- a peer's future, awaited in the loop (:func:`wait`): completed straight from the thread that completes the
  future, through ``call_soon_threadsafe``;
- a blocking call (a recipe that sleeps on a watch), run on a thread of its own and awaited (:func:`in_thread`).
  Not the loop's default executor: it has a handful of threads, and a few lock waiters occupying them would leave
  none for the release that lets them go;
- a callback from the peer's threads, run in the loop (:class:`InLoop`), one call at a time and in order, a
  coroutine function's calls awaited one after another.

:func:`wait_out` waits for a thread's result whatever cancellations arrive meanwhile: how a cancelled coroutine
learns what its thread took, to give it back, before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from embedzk._futures import chain

log = logging.getLogger(__name__)

T = TypeVar("T")


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> bool:
    """``loop.call_soon_threadsafe(fn, *args)`` from any thread; False (and nothing done) once the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop is closed: nobody is left to hear it
        return False
    return True


def when_done(future: Future[Any]) -> asyncio.Future[None]:
    """An asyncio future of the running loop, done (with None) once ``future`` is done, whichever way it ends.

    Cancelling it cancels only the waiting, never ``future``.
    """
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not waiter.done():
            waiter.set_result(None)

    # Where the future completes (the peer's loop thread, for a request): the event loop hears of it at once, not
    # after the watch callbacks queued on the dispatch thread.
    chain(future, lambda _done: call_soon(loop, settle))
    return waiter


async def wait(future: Future[T]) -> T:
    """Await a concurrent future (a peer's, or :func:`in_thread`'s) in the running loop: its result or its error."""
    await when_done(future)
    return future.result()


async def wait_out(future: Future[Any]) -> None:
    """Wait until ``future`` is done, however often the waiting task is cancelled meanwhile.

    For a task that was cancelled while a thread worked for it: it must know what the thread took before it can
    give it back. The caller re-raises its CancelledError afterwards.
    """
    while not future.done():
        try:
            await when_done(future)
        except asyncio.CancelledError:
            continue


def in_thread(fn: Callable[[], T], name: str) -> Future[T]:
    """Run ``fn()`` on a new daemon thread named ``name``; the future holds its result or its error."""
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()  # nobody cancels it: the thread's answer always arrives

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class InLoop:
    """A callable for the peer's threads that runs ``fn(*args)`` in ``loop`` instead.

    Calls run in the order they were made, one at a time: when ``fn`` is a coroutine function (or returns an
    awaitable), the next call waits until the coroutine has finished. An exception is logged, and the next call
    runs. Calls made once the loop is closed are dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any]) -> None:
        self.loop = loop
        self.fn = fn
        self._tail: asyncio.Task[None] | None = None

    def __call__(self, *args: Any) -> None:
        """Queue ``fn(*args)`` in the loop; any thread may call this."""
        call_soon(self.loop, self._start, args)

    def _start(self, args: tuple[Any, ...]) -> None:
        tail = self._tail
        if tail is not None and not tail.done():
            self._tail = self.loop.create_task(self._after(tail, args))
            return
        self._tail = None
        result = self._invoke(args)
        if result is not None:
            self._tail = self.loop.create_task(self._finish(result))

    async def _after(self, tail: asyncio.Task[None], args: tuple[Any, ...]) -> None:
        await asyncio.wait({tail})
        result = self._invoke(args)
        if result is not None:
            await self._finish(result)

    def _invoke(self, args: tuple[Any, ...]) -> Awaitable[Any] | None:
        try:
            result = self.fn(*args)
        except Exception:
            log.exception("an asyncio listener (%s) raised; carrying on with the next call", _name(self.fn))
            return None
        return result if inspect.isawaitable(result) else None

    async def _finish(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("an asyncio listener (%s) raised; carrying on with the next call", _name(self.fn))


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
