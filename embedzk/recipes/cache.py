"""TreeCache (kazoo's and Curator's name): a local mirror of a subtree, kept current by one recursive watch.

Reads of a Peer are already local, so the cache is mostly a convenience: a consistent dict-like view of a subtree
and a stream of NODE_ADDED / NODE_UPDATED / NODE_REMOVED events. It stays small: every watch event for a path is
handled by comparing that path (and, for creations and deletions, its subtree) with the local replica, which makes
the handling idempotent and the cache converge to the replica whatever the order of its own reads and the events.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from embedzk.errors import EmbedZKError, NoNodeError
from embedzk.model import EventType, KeeperState, Stat
from embedzk.recipes._common import join, normalize_path, retry

if TYPE_CHECKING:
    from embedzk.peer import Peer

log = logging.getLogger(__name__)


class NodeData(NamedTuple):
    """A cached node: its path, data and Stat (kazoo's NodeData).

    Usage::

        node = cache.get_data("/config/db")
        if node is not None:
            print(node.path, node.data, node.stat.version)
    """

    path: str
    data: bytes
    stat: Stat


class TreeEvent(tuple):  # noqa: SLOT001 - kazoo's shape: an immutable pair
    """What a TreeCache listener receives: ``event_type`` (one of the constants below) and ``event_data`` (the
    NodeData concerned, None for the connection events and INITIALIZED). kazoo's TreeEvent: a
    ``(event_type, event_data)`` tuple.

    Usage::

        @cache.listen
        def on_event(event):
            if event.event_type == TreeEvent.NODE_REMOVED:
                print(event.event_data.path, "is gone")
    """

    def __new__(cls, event_type: int, event_data: NodeData | None = None) -> TreeEvent:
        return super().__new__(cls, (event_type, event_data))

    @classmethod
    def make(cls, event_type: int, event_data: NodeData | None = None) -> TreeEvent:
        """kazoo's constructor."""
        return cls(event_type, event_data)

    @property
    def event_type(self) -> int:
        """One of NODE_ADDED ... INITIALIZED."""
        return int(self[0])

    @property
    def event_data(self) -> NodeData | None:
        """The NodeData concerned, or None."""
        return self[1]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"TreeEvent({_EVENT_NAMES.get(self[0], self[0])}, {self[1]!r})"

    NODE_ADDED = 0
    NODE_UPDATED = 1
    NODE_REMOVED = 2
    CONNECTION_SUSPENDED = 3
    CONNECTION_RECONNECTED = 4
    CONNECTION_LOST = 5
    INITIALIZED = 6


_EVENT_NAMES = {
    value: name for name, value in vars(TreeEvent).items() if name.isupper() and isinstance(value, int)
}
_STOP = object()


class TreeCache:
    """A local mirror of the subtree at ``path``, with listener events.

    Usage::

        cache = peer.TreeCache("/config")

        @cache.listen
        def on_event(event):
            if event.event_type == TreeEvent.NODE_UPDATED:
                print(event.event_data.path, "is now", event.event_data.data)

        cache.start()                       # NODE_ADDED for each node there, then INITIALIZED
        cache.get_data("/config/db")        # NodeData(path, data, stat), or None
        cache.get_children("/config")       # frozenset of names, or None
        cache.close()

    The root is created if missing (as kazoo does). Listeners run on the cache's own thread, one event at a time
    in the order the changes were applied; a slow listener delays the cache, never the peer.
    """

    def __init__(self, peer: Peer, path: str) -> None:
        self.peer = peer
        self.path = normalize_path(path)
        self._nodes: dict[str, NodeData] = {}
        self._children: dict[str, set[str]] = {}
        self._listeners: list[Callable[[TreeEvent], Any]] = []
        self._error_listeners: list[Callable[[Exception], Any]] = []
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._signal: Any = None
        self._lock = threading.RLock()
        self._state = "latent"
        self._initialized = threading.Event()

    # --------------------------------------------------------------------------------------------------------
    # life cycle

    def start(self) -> None:
        """Load the subtree and follow it. Returns at once; INITIALIZED comes when the first load is done
        (:meth:`wait_initialized` waits for it)."""
        if self._state != "latent":
            raise RuntimeError(f"a TreeCache can be started once (it is {self._state})")
        self._state = "started"
        retry(self.peer, lambda: self.peer.ensure_path(self.path))
        # Watch first, then load: a change made in between is in the load or in an event (or both; handling is
        # idempotent), never in neither.
        self._signal = self.peer.watch(self.path, recursive=True)
        self._signal.connect(self._on_watch, weak=False)
        self.peer.add_listener(self._on_state)
        self._tasks.put((self._load, None))
        self._thread = threading.Thread(target=self._run, name=f"embedzk-treecache-{self.path}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following the subtree and empty the cache."""
        if self._state != "started":
            self._state = "closed"
            return
        self._state = "closed"
        self.peer.remove_listener(self._on_state)
        if self._signal is not None:
            self._signal.disconnect(self._on_watch)
            if not self._signal.receivers:
                try:
                    self.peer.unwatch(self.path)
                except EmbedZKError:
                    pass
        self._tasks.put(_STOP)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            self._nodes.clear()
            self._children.clear()

    def __enter__(self) -> TreeCache:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_initialized(self, timeout: float | None = None) -> bool:
        """Block until the first load is done; False after ``timeout`` seconds."""
        return self._initialized.wait(timeout)

    # --------------------------------------------------------------------------------------------------------
    # reading

    def listen(self, listener: Callable[[TreeEvent], Any]) -> Callable[[TreeEvent], Any]:
        """Call ``listener(event)`` for every TreeEvent; usable as a decorator."""
        self._listeners.append(listener)
        return listener

    def listen_fault(self, listener: Callable[[Exception], Any]) -> Callable[[Exception], Any]:
        """Call ``listener(exception)`` when handling an event fails; usable as a decorator."""
        self._error_listeners.append(listener)
        return listener

    def _check_inside(self, path: str) -> str:
        path = normalize_path(path)
        if path != self.path and not path.startswith(self.path.rstrip("/") + "/"):
            raise ValueError(f"{path} is outside of the tree at {self.path}")
        return path

    def get_data(self, path: str, default: NodeData | None = None) -> NodeData | None:
        """The cached NodeData of ``path`` (inside the tree), or ``default``."""
        path = self._check_inside(path)
        with self._lock:
            return self._nodes.get(path, default)

    def get_children(self, path: str, default: frozenset[str] | None = None) -> frozenset[str] | None:
        """The cached names of ``path``'s children (inside the tree), or ``default`` if it is not cached."""
        path = self._check_inside(path)
        with self._lock:
            children = self._children.get(path)
            return default if children is None else frozenset(children)

    def __len__(self) -> int:
        """The number of cached nodes (the root included)."""
        with self._lock:
            return len(self._nodes)

    # --------------------------------------------------------------------------------------------------------
    # keeping current (all of it on the cache's thread)

    def _on_watch(self, sender: Any, event: Any = None) -> None:
        if event is not None:
            self._tasks.put((self._on_event, event))

    def _on_state(self, state: KeeperState) -> None:
        if state is KeeperState.SUSPENDED:
            self._tasks.put((self._publish, TreeEvent(TreeEvent.CONNECTION_SUSPENDED, None)))
        elif state is KeeperState.LOST:
            self._tasks.put((self._publish, TreeEvent(TreeEvent.CONNECTION_LOST, None)))
        elif state is KeeperState.CONNECTED:
            # Compare everything again (the peer may have installed a snapshot while away), then tell.
            self._tasks.put((self._reconcile, self.path))
            self._tasks.put((self._publish, TreeEvent(TreeEvent.CONNECTION_RECONNECTED, None)))

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is _STOP:
                return
            fn, arg = task
            try:
                fn(arg)
            except Exception as exc:  # a listener or a read failed: report and carry on
                if not self._error_listeners:
                    log.exception("tree cache %s: handling an event failed", self.path)
                for listener in list(self._error_listeners):
                    try:
                        listener(exc)
                    except Exception:
                        log.exception("a tree cache fault listener raised")

    def _load(self, _arg: Any) -> None:
        self._reconcile(self.path)
        self._initialized.set()
        self._publish(TreeEvent(TreeEvent.INITIALIZED, None))

    def _on_event(self, event: Any) -> None:
        path = event.path
        if event.type is EventType.CHANGED and path != self.path:
            self._refresh_data(path)
        else:
            # Creations, deletions, and a change of the root (also what the peer sends after installing a
            # snapshot): compare the subtree below the path.
            self._reconcile(path)

    def _read(self, path: str) -> tuple[bytes, Stat, list[str]] | None:
        try:
            data, stat = self.peer.get(path)
            children = self.peer.get_children(path) if stat.num_children else []
        except NoNodeError:
            return None
        return data, stat, children

    def _refresh_data(self, path: str) -> None:
        try:
            data, stat = self.peer.get(path)
        except NoNodeError:
            self._remove(path)
            return
        with self._lock:
            old = self._nodes.get(path)
            if old is not None:
                if old.stat.mzxid == stat.mzxid and old.data == data:
                    return
                node = self._nodes[path] = NodeData(path, data, stat)
        if old is None:
            self._reconcile(path)  # not cached yet: it comes with its parent
        else:
            self._publish(TreeEvent(TreeEvent.NODE_UPDATED, node))

    def _reconcile(self, path: str) -> None:
        """Make the cache below ``path`` (inclusive) equal to the local replica, publishing the differences."""
        if self._state != "started":
            return
        current = self._read(path)
        if current is None:
            self._remove(path)
            return
        parent = path.rsplit("/", 1)[0] or "/"
        if path != self.path:
            with self._lock:
                known_parent = parent in self._nodes
            if not known_parent:
                self._reconcile(parent)  # the parent came first; it brings us along
                return
        data, stat, children = current
        with self._lock:
            old = self._nodes.get(path)
            node = NodeData(path, data, stat)
            self._nodes[path] = node
            self._children.setdefault(path, set())
            if path != self.path:
                self._children.setdefault(parent, set()).add(path.rsplit("/", 1)[1])
            gone = self._children[path] - set(children)
        if old is None:
            self._publish(TreeEvent(TreeEvent.NODE_ADDED, node))
        elif old.stat.mzxid != stat.mzxid or old.data != data:
            self._publish(TreeEvent(TreeEvent.NODE_UPDATED, node))
        for name in sorted(gone):
            self._remove(join(path, name))
        for name in sorted(children):
            self._reconcile(join(path, name))

    def _remove(self, path: str) -> None:
        with self._lock:
            node = self._nodes.get(path)
            if node is None:
                return
            children = sorted(self._children.get(path, ()))
        for name in children:
            self._remove(join(path, name))
        with self._lock:
            self._nodes.pop(path, None)
            self._children.pop(path, None)
            parent = path.rsplit("/", 1)[0] or "/"
            siblings = self._children.get(parent)
            if siblings is not None and path != self.path:
                siblings.discard(path.rsplit("/", 1)[1])
        self._publish(TreeEvent(TreeEvent.NODE_REMOVED, node))

    def _publish(self, event: TreeEvent) -> None:
        if self._state != "started":
            return
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a tree cache listener raised")
