"""The watch dispatch thread: runs application callbacks in order, away from the loop thread.

Callbacks run one at a time, in the order they were queued, which is zxid order because the loop thread queues
them as it applies entries. A callback that raises is logged and the next one runs.

A slow callback must stall neither consensus (it never runs on the loop thread) nor the other watches. So a
watchdog looks at the callback running on the dispatch thread: once it has run for longer than ``slow_after``
seconds, it is set aside. Its thread finishes it on its own while a fresh dispatch thread carries on with the
queue; events queued meanwhile for the same callback wait in a backlog and run, in order, on the set-aside thread
once the slow call returns. Every callback thus still sees its own events one at a time and in zxid order, and
callbacks never run concurrently with each other unless one of them was slow.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()
#: How long a callback may run before the others go on without it, in seconds.
SLOW_CALLBACK_S = 0.25

_Item = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _Runner:
    """One dispatch thread, and what it is running now."""

    __slots__ = ("current", "set_aside", "started", "thread")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.current: Hashable | None = None
        self.started = 0.0
        self.set_aside = False


class Dispatcher:
    """Threads that call queued callbacks one after another (see the module docstring)."""

    def __init__(self, name: str, slow_after: float = SLOW_CALLBACK_S) -> None:
        self._name = name
        self._slow_after = slow_after
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # The callbacks that were set aside while running, each with the items that queued up for it meanwhile.
        self._backlogs: dict[Hashable, collections.deque[_Item]] = {}
        self._runners: list[_Runner] = []
        self._main: _Runner | None = None
        self._started = False
        self._stopping = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name=f"{name}-watchdog", daemon=True)
        self._generation = 0
        #: How many callbacks raised, and how many ran too long and were set aside (for stats()).
        self.failed = 0
        self.slow = 0

    # -- any thread ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads (once)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._main = self._new_runner()
        self._watchdog.start()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``; any thread may call this."""
        self._queue.put((fn, args, kwargs))

    def submit_signal(self, signal: Any, sender: Any, **kwargs: Any) -> None:
        """Queue one call per receiver that ``signal`` (a blinker Signal) has now, as ``signal.send`` would make.

        Each receiver is a callback of its own here, so a slow receiver holds up neither the others of the same
        signal nor anything behind them.
        """
        if getattr(signal, "is_muted", False):
            return
        put = self._queue.put
        args = (sender,)
        for receiver in signal.receivers_for(sender):
            put((receiver, args, kwargs))

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the threads (waiting at most ``timeout``; never from one of them)."""
        if not self._started:
            return
        self._queue.put(_STOP)
        self._stopping.set()
        deadline = time.monotonic() + timeout
        while True:
            main = self._main
            thread = main.thread if main is not None else None
            if thread is None or thread is threading.current_thread():
                return
            thread.join(max(0.0, deadline - time.monotonic()))
            if self._main is main or time.monotonic() >= deadline:
                return

    @property
    def thread(self) -> threading.Thread:
        """The dispatch thread that runs callbacks now."""
        main = self._main
        if main is None or main.thread is None:
            raise RuntimeError("the dispatcher is not started")
        return main.thread

    def pending(self) -> int:
        """About how many callbacks wait (for stats())."""
        with self._lock:
            backlog = sum(len(b) for b in self._backlogs.values())
        return self._queue.qsize() + backlog

    # -- the dispatch threads -----------------------------------------------------------------------------------

    def _new_runner(self) -> _Runner:
        # Called with the lock held.
        self._generation += 1
        runner = _Runner()
        runner.thread = threading.Thread(
            target=self._run, args=(runner,), name=f"{self._name}-{self._generation}", daemon=True
        )
        self._runners.append(runner)
        runner.thread.start()
        return runner

    def _run(self, me: _Runner) -> None:
        get = self._queue.get
        lock = self._lock
        backlogs = self._backlogs
        try:
            while True:
                item = get()
                if item is _STOP:
                    return
                key = _key(item[0])
                with lock:
                    backlog = backlogs.get(key)
                    if backlog is not None:  # that callback is still busy on a set-aside thread: wait for it
                        backlog.append(item)
                        continue
                    me.current = key
                    me.started = time.monotonic()
                self._call(item)
                with lock:
                    me.current = None
                    if not me.set_aside:
                        continue
                self._drain(key)
                return
        finally:
            with lock:
                self._runners.remove(me)

    def _drain(self, key: Hashable) -> None:
        # On a set-aside thread, once its slow call returned: the calls that queued up for the same callback.
        while True:
            with self._lock:
                backlog = self._backlogs[key]
                if not backlog:
                    del self._backlogs[key]
                    return
                item = backlog.popleft()
            self._call(item)

    def _call(self, item: _Item) -> None:
        fn, args, kwargs = item
        try:
            fn(*args, **kwargs)
        except Exception:
            self.failed += 1
            log.exception("a watch or listener callback (%s) raised; carrying on with the next one", _name(fn))

    def _watch(self) -> None:
        period = max(0.01, self._slow_after / 2)
        while not self._stopping.wait(period):
            with self._lock:
                main = self._main
                if main is None or main.current is None or main.set_aside:
                    continue
                running_for = time.monotonic() - main.started
                if running_for < self._slow_after:
                    continue
                main.set_aside = True
                self._backlogs[main.current] = collections.deque()
                self._main = self._new_runner()
                self.slow += 1
                name = _name(main.current)
            log.warning(
                "a watch or listener callback (%s) has run for %.2fs; the other callbacks go on without it "
                "(its own later events wait for it)",
                name,
                running_for,
            )


def _key(fn: Callable[..., Any]) -> Hashable:
    try:
        hash(fn)
    except TypeError:
        return id(fn)
    return fn


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
