"""The futures the ``*_async`` calls return: their done-callbacks never run on the loop thread.

The loop thread completes a request's future the moment the request is answered, so that a caller blocked in
``result()`` wakes at once. A done-callback, though, is application code: were it to run where the future is
completed, a callback that calls a blocking Peer method (fine under kazoo, whose completion thread runs callbacks)
would wait on the very thread that must answer it. So :class:`PeerFuture` hands every callback to the peer's
dispatch thread (kazoo's completion-queue model; the dispatcher's watchdog sets a slow callback aside, as it does
for watches), and the library's own chaining, which only moves a value from one future to another, uses
:func:`chain`, which runs where the future completes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["PeerFuture", "chain"]

T = TypeVar("T")


class PeerFuture(Future[T]):
    """A Future whose done-callbacks run on the peer's dispatch thread (``submit``: how to queue a call there)."""

    def __init__(self, submit: Callable[..., None]) -> None:
        super().__init__()
        self._submit = submit

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call ``fn(self)`` once done, on the dispatch thread (at once, on this thread, if done already)."""
        submit = self._submit
        super().add_done_callback(lambda future: submit(fn, future))


def chain(future: Future[Any], fn: Callable[[Future[Any]], object]) -> None:
    """Call ``fn(future)`` once it is done, wherever it completes: for the library's own short, non-blocking steps
    that move a result from one future to another."""
    Future.add_done_callback(future, fn)
