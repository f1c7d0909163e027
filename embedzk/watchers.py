"""kazoo's DataWatch and ChildrenWatch, built on persistent watches so that no change is ever missed.

kazoo re-registers a one-shot watch after every event, which can skip intermediate changes; here the watch stays
registered, and each call reads the node's current state, so the function always sees the latest data (several
quick changes may thus show the same, latest, data more than once). Calls run on the peer's dispatch thread, one
at a time, the first one (with ``event`` None) before any event.

Since the watch is persistent, it is there before the node is: a DataWatch is called with None while the node is
missing and again once it is created; a ChildrenWatch of a node that does not exist yet waits for it and is first
called when it is created (kazoo's ends at once instead). Arguments are checked when the watch is made: a
function that is not callable is refused with BadArgumentsError, as a ``watch=`` argument is.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from embedzk.errors import BadArgumentsError, NoNodeError, PeerStoppedError
from embedzk.model import EventType, WatchedEvent
from embedzk.tree import validate_path
from embedzk.tree.watches import WatchKind

if TYPE_CHECKING:
    from embedzk.peer import Peer

log = logging.getLogger(__name__)


class _PersistentCallback:
    """Registers ``_on_event`` as a persistent watch on the peer's loop, and removes it when stopped."""

    def __init__(self, peer: Peer, path: str) -> None:
        validate_path(path)
        self._peer = peer
        self._path = path
        self._stopped = False
        self._registered = False
        self._lock = threading.Lock()
        self._func: Callable[..., Any] | None = None
        # Called once when the watch ends, whatever ends it (the asyncio face ends its consumer task with it).
        self._on_stop: Callable[[], Any] | None = None

    @property
    def path(self) -> str:
        """The watched path."""
        return self._path

    @property
    def stopped(self) -> bool:
        """True once the watch ended (the function returned False, the node went for a ChildrenWatch, or
        :meth:`stop` was called)."""
        return self._stopped

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Use as a decorator: the function is watched and returned unchanged."""
        self._set_func(func)
        self._peer._wait(self._register_async())
        return func

    def _set_func(self, func: Callable[..., Any]) -> None:
        _check_func(func, type(self).__name__)
        with self._lock:
            if self._registered:
                raise RuntimeError(f"this watch of {self._path} already has a function")
            self._registered = True
        self._func = func

    def _register_async(self) -> Future[Any]:
        """Register on the peer's loop; the future is done once the watch is live. Nothing here blocks."""
        peer = self._peer

        def on_loop() -> None:
            peer._registry.add(WatchKind.PERSISTENT, self._path, self._on_event)
            # Queued on the dispatch thread before any event of this watch can be: the first call comes first.
            peer._dispatcher.submit(self._on_event, None)

        return peer._on_loop(on_loop)

    def stop(self) -> None:
        """End the watch: the function is not called again."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        peer = self._peer
        try:
            peer._on_loop(lambda: peer._registry.remove(WatchKind.PERSISTENT, self._path, self._on_event))
        except Exception:  # the peer is stopping: its registry goes with it
            pass
        if self._on_stop is not None:
            self._on_stop()

    _stop = stop

    def _on_event(self, event: WatchedEvent | None) -> None:
        raise NotImplementedError


def _check_func(func: Any, kind: str) -> None:
    """Refuse at once what could only fail later, on the dispatch thread."""
    if not callable(func):
        raise BadArgumentsError(f"{kind} needs a callable function, got {type(func).__name__}")


def _takes_event(func: Callable[..., Any], positional: int) -> bool:
    """True if ``func`` accepts more than ``positional`` positional arguments (kazoo passes the event then)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    count = 0
    for param in params:
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count > positional


class DataWatch(_PersistentCallback):
    """kazoo's DataWatch: calls ``func(data, stat)`` (or ``func(data, stat, event)`` if it takes three arguments)
    now and after every change of ``path``.

    ``data`` and ``stat`` are None while the node does not exist; ``event`` is None on the first call. The watch
    outlives the node: it fires again if the node is created anew. Returning False ends it.
    """

    def __init__(self, peer: Peer, path: str, func: Callable[..., Any] | None = None) -> None:
        super().__init__(peer, path)
        self._with_event = True
        if func is not None:
            self(func)

    def _set_func(self, func: Callable[..., Any]) -> None:
        super()._set_func(func)
        self._with_event = _takes_event(func, 2)

    def _on_event(self, event: WatchedEvent | None) -> None:
        if self._stopped or self._func is None:
            return
        if event is not None and event.type is EventType.CHILD:
            return
        try:
            data, stat = self._peer.get(self._path)
        except NoNodeError:
            data, stat = None, None
        except PeerStoppedError:
            return
        result = self._func(data, stat, event) if self._with_event else self._func(data, stat)
        if result is False:
            self.stop()


class ChildrenWatch(_PersistentCallback):
    """kazoo's ChildrenWatch: calls ``func(children)`` (or ``func(children, event)`` with ``send_event``) now and
    whenever the children of ``path`` change.

    If the node does not exist yet, the watch waits for it: the first call comes when it is created (with the
    CREATED event, for ``send_event``). Ends when the node is deleted, or when the function returns False, as
    kazoo's.
    """

    def __init__(
        self, peer: Peer, path: str, func: Callable[..., Any] | None = None, send_event: bool = False
    ) -> None:
        super().__init__(peer, path)
        self._send_event = send_event
        if func is not None:
            self(func)

    def _on_event(self, event: WatchedEvent | None) -> None:
        if self._stopped or self._func is None:
            return
        if event is not None and event.type is EventType.DELETED:
            self.stop()
            return
        if event is not None and event.type is EventType.CHANGED:
            return  # the node's own data
        try:
            children = self._peer.get_children(self._path)
        except NoNodeError:
            # Not there yet (the first call), or gone again since this event (its DELETED comes next and ends the
            # watch): either way the persistent watch tells us what comes next.
            return
        except PeerStoppedError:
            return
        result = self._func(children, event) if self._send_event else self._func(children)
        if result is False:
            self.stop()
