"""Queues (kazoo's Queue and LockingQueue): FIFO within a priority, lower priority numbers first.

Entries are persistent sequential nodes named ``entry-<priority:03d>-<sequence>``, so sorting the names orders the
queue by priority, then by arrival.

Queue hands out an entry by deleting it: simple, and an entry is lost if its consumer dies before processing it.
LockingQueue hands out an entry by taking an ephemeral lock on it (``taken/<entry>``); the entry stays queued
until ``consume()``, and goes back to the others if its consumer's session dies first. Each entry is handed to
exactly one consumer at a time, but may be handed out again: processing is at-least-once (see LockingQueue).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from embedzk.errors import NodeExistsError, NoNodeError, SessionExpiredError
from embedzk.recipes._common import (
    UNKNOWN_OUTCOME,
    ArgumentTypeError,
    ArgumentValueError,
    Deadline,
    Waker,
    best_effort,
    delete_quietly,
    join,
    normalize_path,
    retry,
    sync,
    wait_connected,
)

if TYPE_CHECKING:
    from embedzk.peer import Peer


def _checked_put(value: object, priority: object) -> bytes:
    """``value`` as bytes, if it and ``priority`` can be queued; BadArgumentsError at once otherwise, as create's
    (also a TypeError or ValueError, as kazoo's Queue raises)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(f"a queue entry must be bytes, got {type(value).__name__}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ArgumentTypeError(f"priority must be an int, got {type(priority).__name__}")
    if not 0 <= priority <= 999:
        raise ArgumentValueError(f"priority must be between 0 and 999, got {priority}")
    return bytes(value)


class _BaseQueue:
    _ENTRY = "entry-"

    def __init__(self, peer: Peer, path: str) -> None:
        self.peer = peer
        self.path = normalize_path(path)
        self._entries_path = self.path
        self._structure: tuple[str, ...] = (self.path,)
        self._ensured = False

    def _ensure_paths(self) -> None:
        if not self._ensured:
            for path in self._structure:
                retry(self.peer, lambda p=path: self.peer.ensure_path(p))  # type: ignore[misc]
            self._ensured = True

    def _entry_path(self, priority: int) -> str:
        return join(self._entries_path, f"{self._ENTRY}{priority:03d}-")

    def put(self, value: bytes, priority: int = 100) -> None:
        """Queue ``value`` (bytes). Lower ``priority`` numbers (0-999) come out first; FIFO within one.

        A value that is not bytes, or a bad priority, is refused with BadArgumentsError, as ``create`` refuses it.
        """
        value = _checked_put(value, priority)
        self._ensure_paths()
        self.peer.create(self._entry_path(priority), value, sequence=True)

    def put_all(self, values: Sequence[bytes], priority: int = 100) -> None:
        """Queue several values at once, all or none (one transaction), in their order."""
        if not isinstance(values, (list, tuple)):
            raise ArgumentTypeError(f"values must be a list of byte strings, got {type(values).__name__}")
        values = [_checked_put(value, priority) for value in values]
        self._ensure_paths()
        txn = self.peer.transaction()
        for value in values:
            txn.create(self._entry_path(priority), value, sequence=True)
        results = txn.commit()
        for result in results:
            if isinstance(result, Exception):
                raise result

    def _entries(self, watch: object = None) -> list[str]:
        try:
            names = self.peer.get_children(self._entries_path, watch=watch)  # type: ignore[arg-type]
        except NoNodeError:
            return []
        return sorted(n for n in names if n.startswith(self._ENTRY))

    def __len__(self) -> int:
        """The number of entries queued (for a LockingQueue, taken but unconsumed ones included)."""
        self._ensure_paths()
        return len(self._entries())


class Queue(_BaseQueue):
    """A distributed FIFO queue with priorities (kazoo's Queue).

    Usage::

        queue = peer.Queue("/queues/jobs")
        queue.put(b"job-1")
        queue.put(b"urgent", priority=1)    # lower numbers first
        queue.get()                         # b"urgent"; None when empty (kazoo's behaviour)
        queue.get(block=True, timeout=5)    # waits for an entry
        len(queue)

    An entry is removed when handed out, so it is lost if its consumer dies before processing it; use
    LockingQueue when that matters. If the deleting write's outcome is unknown (ConnectionLossError) and the entry
    is gone afterwards, that error is raised: the entry may have been handed to this call, or to another.
    """

    def get(self, block: bool = False, timeout: float | None = None) -> bytes | None:
        """Remove and return the first entry's value; None if the queue is empty (after ``timeout`` seconds
        with ``block``)."""
        self._ensure_paths()
        deadline = Deadline(timeout if block else 0.0)
        with Waker(self.peer) as waker:
            while True:
                waker.clear()
                for name in self._entries(watch=waker if block else None):
                    path = join(self.path, name)
                    try:
                        data, _stat = self.peer.get(path)
                        self.peer.delete(path)
                        return data
                    except NoNodeError:
                        continue  # another consumer had it first
                    except UNKNOWN_OUTCOME:
                        sync(self.peer)
                        if self.peer.exists(path) is None:
                            raise
                        continue
                if not block or (not waker.wait(deadline) and deadline.expired()):
                    return None


class LockingQueue(_BaseQueue):
    """A distributed queue whose entries are handed to exactly one consumer each (kazoo's LockingQueue).

    Usage::

        queue = peer.LockingQueue("/queues/jobs")
        queue.put(b"job-1", priority=50)
        job = queue.get(timeout=10)         # takes a lock on the first free entry; None on timeout
        process(job)
        queue.consume()                     # remove it for good (or queue.release() to give it back)

    The lock (``<path>/taken/<entry>``) is ephemeral: if the consumer dies before ``consume()``, the entry goes to
    another consumer once its session expires. ``consume()`` and ``release()`` are fenced by the session: if it
    expired meanwhile, they change nothing and return False (another consumer may already own the entry).

    Processing is therefore at-least-once, never exactly-once: a consumer that did the work and then died, was cut
    off past its session, or saw ``consume()`` return False (or raise ConnectionLossError and find the entry still
    queued) leaves the entry to another consumer, which does the work again. Make the effects idempotent: key
    them by the entry's name (``processing_element[0]``, unique in the queue and the same for every consumer that
    gets the entry) or by an id put in the value, and skip or overwrite what was done under that key already;
    where the effect goes to a store that can compare, check a fencing token such as the lock node's czxid
    (``peer.exists(f"{path}/taken/{name}").czxid`` while held), which grows with every hand-out.
    """

    _ENTRY = "entry-"

    def __init__(self, peer: Peer, path: str) -> None:
        super().__init__(peer, path)
        #: This consumer's id, stored in the lock nodes it creates.
        self.id = uuid.uuid4().hex.encode()
        self._lock_path = join(self.path, "taken")
        self._entries_path = join(self.path, "entries")
        self._structure = (self._lock_path, self._entries_path)
        #: ``(entry name, value)`` of the entry taken by get() and not yet consumed or released.
        self.processing_element: tuple[str, bytes] | None = None
        self._session: int | None = None

    def get(self, timeout: float | None = None) -> bytes | None:
        """Take the first free entry and return its value; None if none came within ``timeout`` seconds.

        While an entry is held (not consumed nor released) returns that entry again, as kazoo does.
        """
        self._ensure_paths()
        if self.processing_element is not None and self.holds_lock(sync_first=False):
            return self.processing_element[1]
        self.processing_element = None
        deadline = Deadline(timeout)
        with Waker(self.peer) as waker:
            while True:
                waker.clear()
                entries = self._entries(watch=waker)
                try:
                    taken = set(self.peer.get_children(self._lock_path, watch=waker))
                except NoNodeError:
                    self._ensured = False
                    self._ensure_paths()
                    continue
                for name in entries:
                    if name in taken:
                        continue
                    value = self._take(name, deadline)
                    if value is not None:
                        self.processing_element = (name, value)
                        return value
                if not waker.wait(deadline) and deadline.expired():
                    return None

    def _take(self, name: str, deadline: Deadline) -> bytes | None:
        peer = self.peer
        lock = join(self._lock_path, name)
        while True:
            try:
                peer.create(lock, self.id, ephemeral=True)
                break
            except NodeExistsError:
                return None
            except UNKNOWN_OUTCOME:
                sync(peer, deadline)
                try:
                    data, stat = peer.get(lock)
                except NoNodeError:
                    continue
                if data == self.id and stat.ephemeral_owner == peer.session_id:
                    break
                return None
            except SessionExpiredError:
                if not wait_connected(peer, deadline):
                    return None
        self._session = peer.session_id
        try:
            value, _stat = peer.get(join(self._entries_path, name))
        except NoNodeError:  # consumed in the meantime
            best_effort(lambda: delete_quietly(peer, lock))
            return None
        return value

    def holds_lock(self, sync_first: bool = True) -> bool:
        """True if the entry taken by get() is still locked by this consumer (syncs first, as kazoo does)."""
        if self.processing_element is None:
            return False
        if sync_first:
            sync(self.peer)
        try:
            data, stat = self.peer.get(join(self._lock_path, self.processing_element[0]))
        except NoNodeError:
            return False
        return data == self.id and stat.ephemeral_owner == self.peer.session_id == self._session

    def consume(self) -> bool:
        """Remove the held entry from the queue for good; False if it is no longer held by this consumer."""
        return self._finish(consume=True)

    def release(self) -> bool:
        """Give the held entry back to the queue unprocessed; False if it is no longer held by this consumer."""
        return self._finish(consume=False)

    def _finish(self, consume: bool) -> bool:
        if self.processing_element is None:
            return False
        if not self.holds_lock(sync_first=False):
            self.processing_element = None
            return False
        name = self.processing_element[0]
        lock, entry = join(self._lock_path, name), join(self._entries_path, name)
        while True:
            fence = join(self._lock_path, f"fence-{uuid.uuid4().hex}")
            txn = self.peer.transaction()
            # The session fence: an ephemeral create fails if this consumer's session has expired, which undoes
            # the whole transaction, so a consumer that lost its lock never deletes the lock of the next one.
            txn.create(fence, b"", ephemeral=True)
            txn.delete(fence)
            txn.delete(lock)
            if consume:
                txn.delete(entry)
            try:
                results = txn.commit()
                ok = not any(isinstance(r, Exception) for r in results)
                break
            except SessionExpiredError:
                ok = False
                break
            except UNKNOWN_OUTCOME:
                sync(self.peer)
                if self.holds_lock(sync_first=False):
                    continue  # not applied: still ours, try again
                # Applied, or the session ended meanwhile (then the entry is still queued).
                ok = self.peer.exists(lock) is None and (not consume or self.peer.exists(entry) is None)
                break
        self.processing_element = None
        return ok
