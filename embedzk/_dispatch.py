"""The watch dispatch thread: runs application callbacks in order, away from the loop thread.

Callbacks run one at a time in the order they were queued, which is zxid order because the loop thread queues them
as it applies entries. A callback that raises is logged and the next one runs; a slow callback delays only the
callbacks behind it, never consensus (DESIGN.md, "Reads, writes, watches").
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()


class Dispatcher:
    """A thread that calls queued callbacks one after another."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        """Start the thread (once)."""
        if not self._started:
            self._started = True
            self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``; any thread may call this."""
        self._queue.put((fn, args, kwargs))

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the thread (waiting at most ``timeout``; never from the thread itself)."""
        if not self._started:
            return
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread:
        """The dispatch thread (callbacks can check they run on it)."""
        return self._thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            fn, args, kwargs = item
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("a watch or listener callback raised; carrying on with the next one")
