"""The watch registry of one peer: who is waiting for which change, and who is told when a change is applied.

Watches are local to a peer, never replicated: each peer registers the watches its own application asked for,
and matches them against the events its own replica of the tree produces while applying entries. Because every
replica applies the same entries in the same order, a watch fires for the same change wherever it was set.

The trigger rules are ZooKeeper's (server ``WatchManager.triggerWatch``, client ``ZKWatchManager.materialize``):

======================  ================================================  ===============================
kind                    fires on                                          after firing
======================  ================================================  ===============================
DATA, EXIST             CREATED, CHANGED, DELETED of its path             removed (one-shot)
CHILD                   CHILD of its path, and DELETED of its path        removed (one-shot)
PERSISTENT              CREATED, CHANGED, DELETED, CHILD of its path      kept
PERSISTENT_RECURSIVE    CREATED, CHANGED, DELETED of its path and of      kept
                        every descendant; never CHILD
======================  ================================================  ===============================

A watcher is told at most once per event, however many of its watches match it: a watcher holding a DATA and a
CHILD watch on a path that is deleted gets one DELETED, and a watcher holding a recursive watch on ``/a`` and a
persistent one on ``/a/b`` gets one event for a change of ``/a/b``. ZooKeeper behaves the same way: it gathers
the matching watchers in a set before it notifies them. Both one-shot watches of that example are consumed all
the same. Adding the same watch (kind, path, watcher) twice is the same as adding it once.

The registry is not thread-safe, and holds no lock of its own on purpose: whoever owns it must serialise every
call, and must register a watch under the same exclusion as the read that goes with it (``get(path, watch=...)``),
so that no change can be applied between the read and the registration and slip past the new watch.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Iterator
from typing import Protocol

from embedzk.model import EventType, KeeperState, WatchedEvent

__all__ = ["DirectWatcher", "TreeEventLike", "WatchKind", "WatchRegistry"]


class WatchKind(enum.Enum):
    """The kinds of watch ZooKeeper knows (``WatcherType`` and ``AddWatchMode``)."""

    #: One-shot, set by ``get(path, watch=...)``: the node's data changes or the node goes.
    DATA = "data"
    #: One-shot, set by ``exists(path, watch=...)``: the node appears, changes or goes.
    EXIST = "exist"
    #: One-shot, set by ``get_children(path, watch=...)``: a child comes or goes, or the node itself goes.
    CHILD = "child"
    #: Kept until removed: every event on exactly this path.
    PERSISTENT = "persistent"
    #: Kept until removed: CREATED, CHANGED and DELETED on this path and everything under it.
    PERSISTENT_RECURSIVE = "persistent_recursive"


class TreeEventLike(Protocol):
    """What :meth:`WatchRegistry.trigger` needs of an event: the tree's ``TreeEvent`` has these two fields."""

    @property
    def type(self) -> EventType:
        """The kind of change."""
        ...

    @property
    def path(self) -> str:
        """The path the change concerns."""
        ...


# The one-shot kinds each event type consumes, per the table in the module docstring. Order matters only for the
# order in which watchers of one event are reported.
_ONE_SHOT_FOR: dict[EventType, tuple[WatchKind, ...]] = {
    EventType.CREATED: (WatchKind.DATA, WatchKind.EXIST),
    EventType.CHANGED: (WatchKind.DATA, WatchKind.EXIST),
    EventType.DELETED: (WatchKind.DATA, WatchKind.EXIST, WatchKind.CHILD),
    EventType.CHILD: (WatchKind.CHILD,),
}

# ZooKeeper's removeWatches(WatcherType.Data) removes data and exist watches alike: which of the two a client got
# depended only on whether the node existed when it asked, which the caller of removeWatches cannot know.
_REMOVED_BY: dict[WatchKind, tuple[WatchKind, ...]] = {
    WatchKind.DATA: (WatchKind.DATA, WatchKind.EXIST),
    WatchKind.EXIST: (WatchKind.EXIST,),
    WatchKind.CHILD: (WatchKind.CHILD,),
    WatchKind.PERSISTENT: (WatchKind.PERSISTENT,),
    WatchKind.PERSISTENT_RECURSIVE: (WatchKind.PERSISTENT_RECURSIVE,),
}


def _check_path(path: str) -> None:
    # The recursive lookup walks ancestors by cutting at "/", so a path must be absolute and without a trailing
    # slash, or a recursive watch would silently never match.
    if not isinstance(path, str) or not path.startswith("/") or (path != "/" and path.endswith("/")):
        raise ValueError(f"invalid watch path {path!r}")


def _self_and_ancestors(path: str) -> Iterator[str]:
    """``/a/b/c``, ``/a/b``, ``/a``, ``/``: the path itself, then each ancestor up to the root."""
    yield path
    while path != "/":
        cut = path.rfind("/")
        path = path[:cut] if cut > 0 else "/"
        yield path


class DirectWatcher:
    """A watcher that takes its events itself, on the thread that matched them (the peer's loop thread), instead
    of through the peer's dispatch thread: a ZooKeeper client's connection, which only queues the event for its
    own thread. :meth:`deliver` must not block. Compared by identity, as any watcher."""

    __slots__ = ()

    def deliver(self, event: WatchedEvent) -> None:
        """Take ``event``; called on the thread that matched it, so it must return at once."""
        raise NotImplementedError


class WatchRegistry:
    """The watches set on one peer, and the matching of applied changes against them.

    Watchers are any hashable values (a callback, a blinker signal, a request id): the registry only stores and
    returns them; delivering the events is the caller's business.
    """

    __slots__ = ("_by_kind", "_by_watcher", "_count")

    def __init__(self) -> None:
        # kind -> path -> watchers, as dicts used as insertion-ordered sets so that reporting order is stable.
        self._by_kind: dict[WatchKind, dict[str, dict[Hashable, None]]] = {kind: {} for kind in WatchKind}
        # watcher -> its (kind, path) registrations, for remove_all without a scan of every path.
        self._by_watcher: dict[Hashable, dict[tuple[WatchKind, str], None]] = {}
        self._count = 0

    # -- registration -------------------------------------------------------------------------------------------

    def add(self, kind: WatchKind, path: str, watcher: Hashable) -> None:
        """Register ``watcher`` for ``kind`` events on ``path``; adding an existing watch changes nothing."""
        _check_path(path)
        watchers = self._by_kind[kind].setdefault(path, {})
        if watcher in watchers:
            return
        watchers[watcher] = None
        self._by_watcher.setdefault(watcher, {})[(kind, path)] = None
        self._count += 1

    def remove(self, kind: WatchKind, path: str, watcher: Hashable) -> bool:
        """Remove ``watcher``'s watch of ``kind`` on ``path``, as ZooKeeper's ``removeWatches``.

        Removing DATA also removes an EXIST watch on the path (ZooKeeper's ``WatcherType.Data`` covers both).
        Returns whether anything was removed; ZooKeeper raises ``NoWatcherException`` where this returns False.
        """
        removed = False
        for each in _REMOVED_BY[kind]:
            removed |= self._discard(each, path, watcher)
        return removed

    def remove_any(self, path: str, watcher: Hashable) -> bool:
        """Remove every watch ``watcher`` has on ``path``, whatever its kind (ZooKeeper's ``WatcherType.Any``)."""
        removed = False
        for kind in WatchKind:
            removed |= self._discard(kind, path, watcher)
        return removed

    def remove_all(self, watcher: Hashable) -> int:
        """Remove every watch of ``watcher`` (its owner went away); returns how many there were."""
        registrations = self._by_watcher.pop(watcher, None)
        if not registrations:
            return 0
        by_kind = self._by_kind
        for kind, path in registrations:
            watchers = by_kind[kind][path]
            del watchers[watcher]
            if not watchers:
                del by_kind[kind][path]
        self._count -= len(registrations)
        return len(registrations)

    def clear(self) -> None:
        """Forget every watch (the session they belonged to is gone)."""
        for paths in self._by_kind.values():
            paths.clear()
        self._by_watcher.clear()
        self._count = 0

    def _discard(self, kind: WatchKind, path: str, watcher: Hashable) -> bool:
        paths = self._by_kind[kind]
        watchers = paths.get(path)
        if watchers is None or watcher not in watchers:
            return False
        del watchers[watcher]
        if not watchers:
            del paths[path]
        self._forget(watcher, kind, path)
        self._count -= 1
        return True

    def _forget(self, watcher: Hashable, kind: WatchKind, path: str) -> None:
        registrations = self._by_watcher[watcher]
        del registrations[(kind, path)]
        if not registrations:
            del self._by_watcher[watcher]

    # -- matching -----------------------------------------------------------------------------------------------

    def trigger(
        self,
        events: Iterable[TreeEventLike],
        zxid: int,
        state: KeeperState = KeeperState.CONNECTED,
    ) -> list[tuple[Hashable, WatchedEvent]]:
        """Match the events of one applied change against the watches; consume the one-shot watches that fire.

        Returns ``(watcher, WatchedEvent)`` pairs in event order, every event stamped with ``zxid`` and ``state``;
        within one event, exact-path watchers come first, then recursive ones from the nearest ancestor up. Each
        watcher appears at most once per event. Events of type NONE (state changes) match no watch.
        """
        fired: list[tuple[Hashable, WatchedEvent]] = []
        by_kind = self._by_kind
        persistent = by_kind[WatchKind.PERSISTENT]
        recursive = by_kind[WatchKind.PERSISTENT_RECURSIVE]
        for event in events:
            etype, path = event.type, event.path
            one_shot = _ONE_SHOT_FOR.get(etype)
            if one_shot is None:
                continue
            matched: dict[Hashable, None] = {}
            for kind in one_shot:
                watchers = by_kind[kind].pop(path, None)
                if watchers:
                    for watcher in watchers:
                        matched[watcher] = None
                        self._forget(watcher, kind, path)
                    self._count -= len(watchers)
            if persistent:
                watchers = persistent.get(path)
                if watchers:
                    matched.update(watchers)
            # Recursive watches never see CHILD: the CREATED/DELETED of the child itself already reaches them.
            if recursive and etype is not EventType.CHILD:
                for prefix in _self_and_ancestors(path):
                    watchers = recursive.get(prefix)
                    if watchers:
                        matched.update(watchers)
            if matched:
                watched = WatchedEvent(type=etype, state=state, path=path, zxid=zxid)
                fired.extend((watcher, watched) for watcher in matched)
        return fired

    # -- statistics ---------------------------------------------------------------------------------------------

    def count(self, kind: WatchKind | None = None) -> int:
        """How many watches are registered (of ``kind``, or of every kind): ZooKeeper's ``zk_watch_count``."""
        if kind is None:
            return self._count
        return sum(len(watchers) for watchers in self._by_kind[kind].values())

    def paths(self, kind: WatchKind) -> frozenset[str]:
        """The paths holding at least one watch of ``kind``."""
        return frozenset(self._by_kind[kind])

    def watchers(self, kind: WatchKind, path: str) -> tuple[Hashable, ...]:
        """The watchers holding a ``kind`` watch on exactly ``path``, in the order they were added."""
        return tuple(self._by_kind[kind].get(path, ()))

    def watches_of(self, watcher: Hashable) -> frozenset[tuple[WatchKind, str]]:
        """Every (kind, path) ``watcher`` is registered for."""
        return frozenset(self._by_watcher.get(watcher, ()))

    def __len__(self) -> int:
        """The number of registered watches, as :meth:`count`."""
        return self._count
