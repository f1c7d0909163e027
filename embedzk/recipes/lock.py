"""Locks and semaphores: ZooKeeper's recipe of ephemeral sequential contenders, with kazoo's names.

Every contender creates one ephemeral sequential node under the lock's path, named ``<guid><marker><sequence>``.
The sequence orders the contenders; the GUID lets a contender whose create had an unknown outcome find its node
(ZooKeeper's recipes page). A contender holds the lock when no node that excludes it comes before its own, and
otherwise watches only the nearest such node, so a release wakes one waiter, not all of them (no herd effect).
The ephemeral node goes with the session, so the lock of a process that dies passes on once its session expires.

Whether a contender may go ahead is decided from the local replica. That view holds the contender's own node and
every deletion it was woken by, so it is never too old to grant the lock, with one exception: a replica that was
cut off may not yet have applied the expiry of its own session. So when the peer's state changed while the
contender waited (the only way to be cut off that long), it calls ``sync()`` and decides on a state at least as
new as everything committed before, rather than hand out a lock the cluster already gave away.

Session loss: a holder whose session expires has lost the lock (``is_acquired`` turns False). Applications that
must not act without the lock should add a state listener (``peer.add_listener``) and stop on SUSPENDED or LOST,
as kazoo advises.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any

from embedzk.errors import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
)
from embedzk.model import KeeperState
from embedzk.recipes._common import (
    CancelledError,
    Deadline,
    LockTimeout,
    Waker,
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

if TYPE_CHECKING:
    from embedzk.peer import Peer

#: How long a failed acquire keeps trying to delete its node before leaving it to the session's end.
_CLEANUP_SECONDS = 5.0


class _Contender:
    """The machinery of Lock, ReadLock, WriteLock and Semaphore: one ephemeral sequential node per contender."""

    #: The marker in this contender's node name.
    _NODE_NAME = "__lock__"
    #: The kinds of earlier contenders that keep this one waiting.
    _EXCLUDE_NAMES: tuple[str, ...] = ("__lock__",)
    #: The kinds of node that count as contenders under the path.
    _KINDS: tuple[str, ...] = ("__lock__", "__rlock__")

    def __init__(self, peer: Peer, path: str, identifier: Any = None) -> None:
        self.peer = peer
        self.path = normalize_path(path)
        #: What :meth:`contenders` shows for this contender.
        self.data = str(identifier if identifier is not None else "").encode("utf-8")
        self.prefix = uuid.uuid4().hex + self._NODE_NAME
        self.create_path = join(self.path, self.prefix)
        #: The name of this contender's node while it contends or holds, else None.
        self.node: str | None = None
        self._acquired = False
        self._cancelled = False
        self._waker = Waker(peer)
        self._mutex = threading.Lock()  # one acquire at a time per instance

    # --------------------------------------------------------------------------------------------------------
    # the public face

    @property
    def is_acquired(self) -> bool:
        """True while held: acquired, not released, and the contender node still exists (its session is alive).

        A local read: call ``peer.sync()`` first for an answer that reflects the whole cluster.
        """
        node = self.node
        return self._acquired and node is not None and self.peer.exists(join(self.path, node)) is not None

    @property
    def fencing_token(self) -> int | None:
        """While held, the zxid that created this contender's node (its czxid); None otherwise.

        Every acquisition creates a new node, and a lock goes to its contenders in the order their nodes were
        created, so each holder of a Lock gets a larger token than every holder before it. Send the token with
        every write to the resource the lock guards, and let the resource refuse a token smaller than the largest
        it has seen: a holder that was paused past its session (and so lost the lock without running any code)
        is then turned away instead of overwriting its successor's work. For a ReadLock or a Semaphore several
        holders hold tokens at once; each is still larger than those of every earlier holder.
        """
        node = self.node
        if not self._acquired or node is None:
            return None
        stat = self.peer.exists(join(self.path, node))
        return None if stat is None else stat.czxid

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire; return True once held. Re-entrant: True at once if this instance already holds it.

        ``blocking`` False: return False at once unless it can be had now. ``timeout``: raise LockTimeout after
        that many seconds. ``cancel()`` from another thread makes a blocked call raise CancelledError.
        """
        deadline = Deadline(timeout if blocking else None)
        if blocking:
            got = self._mutex.acquire(True, -1 if timeout is None else (deadline.remaining() or 0.0))
        else:
            got = self._mutex.acquire(False)
        if not got:
            if blocking:
                raise LockTimeout(f"{self.path}: another thread of this instance is acquiring")
            return False
        try:
            if self.is_acquired:
                return True
            self._acquired = False
            return self._acquire(blocking, deadline, timeout)
        finally:
            self._cancelled = False
            self._mutex.release()

    def release(self) -> bool:
        """Release; True if it was held. Deletes every node of this contender (found by its GUID).

        Retries while the outcome is unknown, for at most the peer's request timeout.
        """
        was = self.is_acquired
        self._acquired = False
        self._delete_own_nodes(Deadline(self.peer.request_timeout))
        return was

    def cancel(self) -> None:
        """Make a blocked :meth:`acquire` in another thread raise CancelledError."""
        self._cancelled = True
        self._waker()

    def contenders(self) -> list[str]:
        """The identifiers of the current contenders, holder(s) first (empty strings for those without one)."""
        result = []
        for name in self._sorted_contenders():
            try:
                result.append(self.peer.get(join(self.path, name))[0].decode("utf-8", "replace"))
            except NoNodeError:
                pass
        return result

    def __enter__(self) -> Any:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} {'held' if self._acquired else 'not held'}>"

    # --------------------------------------------------------------------------------------------------------
    # the recipe

    def _ensure_path(self) -> None:
        retry(self.peer, lambda: self.peer.ensure_path(self.path))

    def _acquire(self, blocking: bool, deadline: Deadline, timeout: float | None) -> bool:
        try:
            self._ensure_path()
            with self._waker as waker:
                waker.state_changed = False
                node = self._create(deadline)
                while True:
                    waker.clear()
                    if self._cancelled:
                        raise CancelledError(f"acquiring {self.path} was cancelled")
                    names = self._sorted_contenders()
                    if node not in names:
                        # Our node is gone: the session expired while we waited. Join the queue again.
                        waker.state_changed = False
                        node = self._create(deadline)
                        continue
                    index = names.index(node)
                    blockers = self._blockers(names[:index])
                    if not blockers:
                        if waker.state_changed or self.peer.state is not KeeperState.CONNECTED:
                            # The local replica may trail a cluster that expired our session meanwhile: decide
                            # on a state at least as new as everything committed before now.
                            waker.state_changed = False
                            sync(self.peer, deadline)
                            continue
                        self._acquired = True
                        return True
                    if not blocking:
                        self._delete_own_nodes(Deadline(self.peer.request_timeout))
                        return False
                    if any(self.peer.exists(join(self.path, b), watch=waker) is None for b in blockers):
                        continue  # one left in the meantime: look again
                    if not waker.wait(deadline) and deadline.expired():
                        raise LockTimeout(f"could not acquire {self.path} within {timeout}s")
        except OperationTimeoutError as exc:
            self._acquired = False
            best_effort(lambda: self._delete_own_nodes(Deadline(_CLEANUP_SECONDS)))
            if deadline.expired():
                raise LockTimeout(f"could not acquire {self.path} within {timeout}s") from exc
            raise
        except BaseException:
            self._acquired = False
            best_effort(lambda: self._delete_own_nodes(Deadline(_CLEANUP_SECONDS)))
            raise

    def _create(self, deadline: Deadline) -> str:
        self.node = None
        try:
            created = create_owned(
                self.peer, self.create_path, self.data, self._find_own, deadline,
                sequence=True, cancelled=lambda: self._cancelled,
            )
        except NoNodeError:  # the lock's parent was deleted under us: make it again
            self._ensure_path()
            created = create_owned(
                self.peer, self.create_path, self.data, self._find_own, deadline,
                sequence=True, cancelled=lambda: self._cancelled,
            )
        self.node = created.rsplit("/", 1)[1]
        return self.node

    def _own_nodes(self) -> list[str]:
        try:
            children = self.peer.get_children(self.path)
        except NoNodeError:
            return []
        return sorted((c for c in children if c.startswith(self.prefix)), key=sequence_of)

    def _find_own(self) -> str | None:
        """After an unknown outcome: our node if a create landed (the lowest; any extra ones are deleted)."""
        own = self._own_nodes()
        for extra in own[1:]:
            delete_quietly(self.peer, join(self.path, extra))
        return join(self.path, own[0]) if own else None

    def _delete_own_nodes(self, deadline: Deadline) -> None:
        for name in self._own_nodes():
            delete_quietly(self.peer, join(self.path, name), deadline)
        self.node = None

    def _kind(self, name: str) -> str | None:
        for kind in self._KINDS:
            if kind in name:
                return kind
        return None

    def _sorted_contenders(self) -> list[str]:
        try:
            children = self.peer.get_children(self.path)
        except NoNodeError:
            return []
        return sorted((c for c in children if is_sequential(c) and self._kind(c)), key=sequence_of)

    def _blockers(self, earlier: list[str]) -> list[str]:
        """The nodes to wait for, given the contenders ahead of ours (empty: ours may go ahead)."""
        for name in reversed(earlier):
            if self._kind(name) in self._EXCLUDE_NAMES:
                return [name]
        return []


class Lock(_Contender):
    """A distributed mutual-exclusion lock (kazoo's Lock).

    Usage::

        lock = peer.Lock("/locks/report", identifier="worker-3")
        with lock:                      # blocks until held
            make_the_report()
        if lock.acquire(timeout=5):     # LockTimeout after 5 s
            try: ...
            finally: lock.release()

    One instance per thread of control: an instance acquired once is re-entrant (kazoo's rule), so threads that
    must exclude each other each use their own instance. ``contenders()`` lists the identifiers in line.
    """


class WriteLock(_Contender):
    """The exclusive side of a read/write lock (kazoo's WriteLock): waits for every reader and writer before it.

    Usage::

        with peer.WriteLock("/locks/table"):
            rewrite_the_table()
    """

    _NODE_NAME = "__lock__"
    _EXCLUDE_NAMES = ("__lock__", "__rlock__")


class ReadLock(_Contender):
    """The shared side of a read/write lock (kazoo's ReadLock): readers share it, waiting only for the writers
    that queued before them.

    Usage::

        with peer.ReadLock("/locks/table"):
            read_the_table()
    """

    _NODE_NAME = "__rlock__"
    _EXCLUDE_NAMES = ("__lock__",)


class Semaphore(_Contender):
    """A counting semaphore: at most ``max_leases`` holders at a time, served in arrival order (kazoo's name).

    Usage::

        sem = peer.Semaphore("/limits/downloads", identifier="worker-3", max_leases=4)
        with sem:
            download()
        sem.lease_holders()             # identifiers of the current holders

    Contenders queue as ephemeral sequential nodes; the first ``max_leases`` hold a lease. A waiter watches only
    the ``max_leases`` contenders just ahead of it: it can move up only when one of them leaves, so a release
    wakes at most ``max_leases`` waiters. ``max_leases`` is stored in the semaphore node's data the first time;
    an instance with a different number raises ValueError, as kazoo's does.
    """

    _NODE_NAME = "__lease__"
    _KINDS = ("__lease__",)

    def __init__(self, peer: Peer, path: str, identifier: Any = None, max_leases: int = 1) -> None:
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive int, got {max_leases!r}")
        super().__init__(peer, path, identifier)
        self.max_leases = max_leases

    def _ensure_path(self) -> None:
        peer = self.peer
        wanted = str(self.max_leases).encode("ascii")
        while True:
            try:
                retry(peer, lambda: peer.create(self.path, wanted, makepath=True))
                return
            except NodeExistsError:
                pass
            try:
                data, stat = peer.get(self.path)
            except NoNodeError:
                continue
            if not data:
                version = stat.version
                try:
                    retry(peer, lambda: peer.set(self.path, wanted, version=version))  # noqa: B023 - called now
                    return
                except BadVersionError:
                    continue
            try:
                leases = int(data.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                return  # the node's data is used for something else: nothing to check
            if leases != self.max_leases:
                raise ValueError(f"{self.path}: inconsistent max leases {self.max_leases}, the semaphore has {leases}")
            return

    def _blockers(self, earlier: list[str]) -> list[str]:
        return earlier[-self.max_leases:] if len(earlier) >= self.max_leases else []

    def lease_holders(self) -> list[str]:
        """The identifiers of the contenders that hold a lease now."""
        return self.contenders()[: self.max_leases]

    def __repr__(self) -> str:
        return f"<Semaphore {self.path} max_leases={self.max_leases} {'held' if self._acquired else 'not held'}>"


__all__ = ["CancelledError", "Lock", "LockTimeout", "ReadLock", "Semaphore", "WriteLock"]
