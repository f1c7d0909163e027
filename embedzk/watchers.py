"""kazoo's DataWatch and ChildrenWatch, built on persistent watches so that no change is ever missed.

kazoo re-registers a one-shot watch after every event, which can skip intermediate changes; here the watch stays
registered, and each call reads the node's current state, so the function always sees the latest data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from embedzk.errors import NoNodeError
from embedzk.model import EventType, WatchedEvent
from embedzk.tree import validate_path
from embedzk.tree.watches import WatchKind

if TYPE_CHECKING:
    from embedzk.peer import Peer


class _PersistentCallback:
    """Registers ``on_event`` as a persistent watch on the peer's loop, and removes it when stopped."""

    def __init__(self, peer: Peer, path: str) -> None:
        validate_path(path)
        self._peer = peer
        self._path = path
        self._stopped = False
        self._lock = threading.Lock()

    def _register(self, initial: Callable[[], Any]) -> None:
        peer = self._peer

        def on_loop() -> None:
            peer._registry.add(WatchKind.PERSISTENT, self._path, self._on_event)
            # Queued behind the registration on the dispatch thread, so the first call precedes every event.
            peer._dispatcher.submit(initial)

        peer._wait(peer._on_loop(on_loop))

    def _stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        peer = self._peer
        try:
            peer._on_loop(lambda: peer._registry.remove(WatchKind.PERSISTENT, self._path, self._on_event))
        except Exception:  # the peer is stopping: its registry goes with it
            pass

    def _on_event(self, event: WatchedEvent) -> None:
        raise NotImplementedError


class DataWatch(_PersistentCallback):
    """Calls ``func(data, stat, event)`` now and after every change of ``path`` (data and stat None while the
    node does not exist; event None on the first call). Returning False ends the watch."""

    def __init__(self, peer: Peer, path: str, func: Callable[..., Any] | None = None) -> None:
        super().__init__(peer, path)
        self._func: Callable[..., Any] | None = None
        if func is not None:
            self(func)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Use as a decorator: the function is watched and returned unchanged."""
        self._func = func
        self._register(lambda: self._call(None))
        return func

    def _on_event(self, event: WatchedEvent) -> None:
        if event.type is not EventType.CHILD:
            self._call(event)

    def _call(self, event: WatchedEvent | None) -> None:
        if self._stopped or self._func is None:
            return
        try:
            data, stat = self._peer.get(self._path)
        except NoNodeError:
            data, stat = None, None
        if self._func(data, stat, event) is False:
            self._stop()


class ChildrenWatch(_PersistentCallback):
    """Calls ``func(children)`` (or ``func(children, event)`` with ``send_event``) now and whenever the children
    of ``path`` change. Ends when the node is deleted or the function returns False (kazoo's behaviour)."""

    def __init__(
        self, peer: Peer, path: str, func: Callable[..., Any] | None = None, send_event: bool = False
    ) -> None:
        super().__init__(peer, path)
        self._func: Callable[..., Any] | None = None
        self._send_event = send_event
        if func is not None:
            self(func)

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Use as a decorator: the function is watched and returned unchanged."""
        self._func = func
        self._register(lambda: self._call(None))
        return func

    def _on_event(self, event: WatchedEvent) -> None:
        if event.type is EventType.DELETED:
            self._stop()
        elif event.type is EventType.CHILD:
            self._call(event)

    def _call(self, event: WatchedEvent | None) -> None:
        if self._stopped or self._func is None:
            return
        try:
            children = self._peer.get_children(self._path)
        except NoNodeError:
            self._stop()
            return
        result = self._func(children, event) if self._send_event else self._func(children)
        if result is False:
            self._stop()
