"""Leader election: kazoo's Election (run a function while leader) and Curator's LeaderLatch.

Both queue contenders as ephemeral sequential nodes, like the lock: the first in line leads, the others each watch
the node just ahead of theirs, and a leader whose process dies is replaced once its session expires.

Leadership is given up as soon as the peer's state leaves CONNECTED: while SUSPENDED the peer cannot tell whether
its session survives, and the rest of the cluster may elect someone else once it expires. ``Election.is_leader``
turns False for the rest of the term (the function passed to ``run`` should check it and return), and a
LeaderLatch tells its listeners it lost leadership; it takes it back once CONNECTED if its node is still first.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from embedzk.errors import EmbedZKError, NoNodeError, PeerStoppedError
from embedzk.model import KeeperState
from embedzk.recipes._common import (
    Deadline,
    best_effort,
    create_owned,
    delete_quietly,
    is_sequential,
    join,
    normalize_path,
    retry,
    sequence_of,
    sync,
)
from embedzk.recipes.lock import Lock

if TYPE_CHECKING:
    from embedzk.peer import Peer

log = logging.getLogger(__name__)


class Election:
    """Run a function while this contender leads (kazoo's Election).

    Usage::

        election = peer.Election("/election/scheduler", identifier="worker-3")

        def lead():
            while election.is_leader:       # False once the peer is no longer CONNECTED
                schedule_some_jobs()

        election.run(lead)                  # blocks until elected, runs lead(), then steps down
        election.contenders()               # identifiers in line, the leader first
        election.cancel()                   # from another thread: a waiting run() raises CancelledError

    The contenders are lock contenders (``<guid>__lock__<seq>`` nodes), so an Election and a Lock on the same
    path exclude each other, as in kazoo.
    """

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        self.peer = peer
        self.path = normalize_path(path)
        self.lock = Lock(peer, self.path, identifier)
        self._running = False
        self._relinquished = False

    @property
    def is_leader(self) -> bool:
        """True while ``run`` is running the function and leadership was not given up (state left CONNECTED,
        or the session was lost)."""
        return self._running and not self._relinquished and self.lock.is_acquired

    def run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Wait to be elected, call ``func(*args, **kwargs)``, then step down; return what ``func`` returned."""
        if not callable(func):
            raise ValueError("func must be callable")
        self.lock.acquire()
        self._relinquished = False

        def on_state(state: KeeperState) -> None:
            if state is not KeeperState.CONNECTED:
                self._relinquished = True

        self.peer.add_listener(on_state)
        try:
            self._running = True
            if self.peer.state is not KeeperState.CONNECTED:
                self._relinquished = True
            return func(*args, **kwargs)
        finally:
            self._running = False
            self.peer.remove_listener(on_state)
            try:
                self.lock.release()
            except PeerStoppedError:
                pass

    def cancel(self) -> None:
        """Make a ``run`` waiting to be elected raise CancelledError."""
        self.lock.cancel()

    def contenders(self) -> list[str]:
        """The identifiers of the contenders, the leader first."""
        return self.lock.contenders()


class LeaderLatch:
    """Leadership as a latch that stays set while this contender leads (Curator's LeaderLatch).

    Usage::

        latch = peer.LeaderLatch("/election/compactor", identifier="worker-3")
        latch.add_listener(lambda leading: print("leading" if leading else "not leading"))
        latch.start()
        if latch.wait(timeout=10):          # True once leading
            ...
        latch.has_leadership                # the current answer, without blocking
        latch.close()                       # leave the election (listeners hear False if it was leading)

    A background thread keeps the latch current: it joins the line, watches the contender just ahead, and
    re-joins with a new node after its session was lost. Leadership is dropped while the peer is not CONNECTED
    and taken back (if still first) once it is; gaining it is always preceded by a ``sync()``. Listeners
    ``fn(is_leader)`` run on that thread. Also usable as a context manager (start on enter, close on exit).
    """

    _NODE_NAME = "__latch__"

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        self.peer = peer
        self.path = normalize_path(path)
        self.data = str(identifier if identifier is not None else "").encode("utf-8")
        self.prefix = uuid.uuid4().hex + self._NODE_NAME
        #: The name of this contender's node, or None.
        self.node: str | None = None
        self._has = False
        self._listeners: list[Callable[[bool], Any]] = []
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------------------------------------
    # the public face

    @property
    def has_leadership(self) -> bool:
        """True while this contender leads."""
        return self._has

    def start(self) -> None:
        """Join the election (returns at once; leadership comes through listeners and :meth:`wait`)."""
        if self._thread is not None:
            raise RuntimeError("a LeaderLatch can be started once")
        retry(self.peer, lambda: self.peer.ensure_path(self.path))
        self.peer.add_listener(self._poke)
        self._thread = threading.Thread(target=self._run, name=f"embedzk-latch-{self.path}", daemon=True)
        self._thread.start()
        self._poke()

    def close(self) -> None:
        """Leave the election: stop the thread, delete this contender's node, drop leadership."""
        if self._closed:
            return
        self._closed = True
        self.peer.remove_listener(self._poke)
        self._poke()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.peer.request_timeout + 5.0)
        best_effort(lambda: self._delete_own(Deadline(5.0)))
        self._set(False)
        with self._cond:
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until this contender leads (True) or ``timeout`` seconds pass or the latch closes (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self._has or self._closed, timeout)
            return self._has

    def add_listener(self, listener: Callable[[bool], Any]) -> Callable[[bool], Any]:
        """Call ``listener(True)`` on gaining and ``listener(False)`` on losing leadership; usable as a
        decorator."""
        self._listeners.append(listener)
        return listener

    def remove_listener(self, listener: Callable[[bool], Any]) -> None:
        """Stop calling ``listener``."""
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    def contenders(self) -> list[str]:
        """The identifiers of the contenders, the leader first."""
        result = []
        for name in self._sorted():
            try:
                result.append(self.peer.get(join(self.path, name))[0].decode("utf-8", "replace"))
            except NoNodeError:
                pass
        return result

    def get_leader(self) -> str | None:
        """The identifier of the leading contender, or None if there is none."""
        contenders = self.contenders()
        return contenders[0] if contenders else None

    def __enter__(self) -> LeaderLatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LeaderLatch {self.path} {'leading' if self._has else 'not leading'}>"

    # --------------------------------------------------------------------------------------------------------
    # the background thread

    def _poke(self, *args: Any) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                self._check()
            except PeerStoppedError:
                self._set(False)
                return
            except EmbedZKError as exc:
                log.info("leader latch %s: %s; trying again", self.path, exc)
                self._wake.wait(0.1)
                self._wake.set()
            except Exception:
                log.exception("leader latch %s: unexpected error; trying again", self.path)
                self._wake.wait(0.5)
                self._wake.set()

    def _check(self) -> None:
        peer = self.peer
        if peer.state is not KeeperState.CONNECTED:
            self._set(False)
            return  # the state listener wakes us when it changes
        node = self._own()
        if node is None:
            created = create_owned(peer, join(self.path, self.prefix), self.data, self._find_own,
                                   Deadline(peer.request_timeout), sequence=True)
            node = created.rsplit("/", 1)[1]
        self.node = node
        names = self._sorted()
        if node not in names:
            self._poke()
            return
        index = names.index(node)
        if index == 0 and not self._has:
            # Gain leadership only on a state at least as new as every committed change.
            sync(peer, Deadline(peer.request_timeout))
            names = self._sorted()
            if names and names[0] == node and peer.state is KeeperState.CONNECTED and not self._closed:
                self._set(True)
        elif index > 0:
            self._set(False)
        # Wake on a change of the node ahead (or of our own node, if we lead).
        watched = names[index - 1] if index > 0 else node
        if peer.exists(join(self.path, watched), watch=self._poke) is None:
            self._poke()

    def _set(self, leading: bool) -> None:
        with self._cond:
            if self._has == leading:
                return
            self._has = leading
            self._cond.notify_all()
        for listener in list(self._listeners):
            try:
                listener(leading)
            except Exception:
                log.exception("a leader latch listener raised")

    def _sorted(self) -> list[str]:
        try:
            children = self.peer.get_children(self.path)
        except NoNodeError:
            return []
        return sorted((c for c in children if self._NODE_NAME in c and is_sequential(c)), key=sequence_of)

    def _own_nodes(self) -> list[str]:
        return [n for n in self._sorted() if n.startswith(self.prefix)]

    def _own(self) -> str | None:
        own = self._own_nodes()
        for extra in own[1:]:
            delete_quietly(self.peer, join(self.path, extra), Deadline(self.peer.request_timeout))
        return own[0] if own else None

    def _find_own(self) -> str | None:
        own = self._own()
        return join(self.path, own) if own else None

    def _delete_own(self, deadline: Deadline) -> None:
        for name in self._own_nodes():
            delete_quietly(self.peer, join(self.path, name), deadline)
        self.node = None
