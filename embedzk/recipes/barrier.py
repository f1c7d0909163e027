"""Barriers (kazoo's Barrier and DoubleBarrier; ZooKeeper's recipes page).

A Barrier holds processes back while its node exists. A DoubleBarrier makes ``num_clients`` processes start a
computation together (``enter``) and finish it together (``leave``); each participant is an ephemeral node, so one
that dies stops counting once its session expires.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

from embedzk.errors import NodeExistsError, NoNodeError
from embedzk.model import EventType
from embedzk.recipes._common import (
    UNKNOWN_OUTCOME,
    Deadline,
    Waker,
    best_effort,
    create_owned,
    delete_quietly,
    join,
    normalize_path,
    retry,
    sync,
)

if TYPE_CHECKING:
    from embedzk.peer import Peer

_READY = "ready"


class Barrier:
    """Hold processes back until the barrier is removed (kazoo's Barrier): in place while its node exists.

    Usage::

        barrier = peer.Barrier("/barriers/deploy")
        barrier.create()                    # raise it (idempotent)
        barrier.wait(timeout=30)            # elsewhere: True once removed, False on timeout
        barrier.remove()                    # lower it: every waiter goes on

    The node is persistent: the barrier outlives the process that raised it.
    """

    def __init__(self, peer: Peer, path: str) -> None:
        self.peer = peer
        self.path = normalize_path(path)

    def create(self) -> None:
        """Raise the barrier if it is not up already."""
        retry(self.peer, lambda: self.peer.ensure_path(self.path))

    def remove(self) -> bool:
        """Lower the barrier; True if this call removed it, False if it was not up."""
        return delete_quietly(self.peer, self.path)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the barrier is removed: True, or False after ``timeout`` seconds."""
        deadline = Deadline(timeout)
        waker = Waker(self.peer)
        while True:
            waker.clear()
            # Watch re-armed on every wake: a change of the node's data does not lower the barrier.
            if self.peer.exists(self.path, watch=waker) is None:
                return True
            if not waker.wait(deadline) and deadline.expired():
                return False


class DoubleBarrier:
    """Start and finish a computation together (kazoo's DoubleBarrier, ZooKeeper's double barrier recipe).

    Usage::

        barrier = peer.DoubleBarrier("/barriers/step-7", num_clients=3)
        barrier.enter()                     # blocks until 3 participants have entered
        compute()
        barrier.leave()                     # blocks until every participant has left

    Each participant is an ephemeral node named by a GUID, holding ``identifier`` (host and pid by default); the
    participant that completes the count creates ``<path>/ready``, which lets everyone in. Leaving follows the
    recipe's protocol (the lowest node waits for the highest, the others leave and wait for the lowest), so no
    participant watches more than one node. One round at a time per path: ``ready`` is removed by the last
    participant to leave. ``enter``/``leave`` take an optional timeout and return False when it passes (a timed-
    out ``enter`` withdraws this participant).
    """

    def __init__(self, peer: Peer, path: str, num_clients: int, identifier: Any = None) -> None:
        if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
            raise ValueError(f"num_clients must be a positive int, got {num_clients!r}")
        self.peer = peer
        self.path = normalize_path(path)
        self.num_clients = num_clients
        self.identifier = str(identifier) if identifier is not None else f"{socket.getfqdn()}-{os.getpid()}"
        self.node_name = uuid.uuid4().hex
        self.create_path = join(self.path, self.node_name)
        self._ready_path = join(self.path, _READY)
        #: True between a successful enter() and leave().
        self.participating = False

    def _members(self, watch: Any = None) -> list[str]:
        try:
            children = self.peer.get_children(self.path, watch=watch)
        except NoNodeError:
            return []
        return sorted(c for c in children if c != _READY)

    def _join(self, deadline: Deadline) -> None:
        def find() -> str | None:
            return self.create_path if self.peer.exists(self.create_path) is not None else None

        try:
            create_owned(self.peer, self.create_path, self.identifier.encode("utf-8"), find, deadline)
        except NodeExistsError:
            pass

    def enter(self, timeout: float | None = None) -> bool:
        """Enter; block until ``num_clients`` participants have entered. True, or False on timeout."""
        deadline = Deadline(timeout)
        retry(self.peer, lambda: self.peer.ensure_path(self.path))
        try:
            with Waker(self.peer) as waker:
                while True:
                    waker.clear()
                    # Watch ``ready`` before counting (the recipe's order), so its creation cannot be missed.
                    if self.peer.exists(self._ready_path, watch=waker) is not None:
                        if self.peer.exists(self.create_path) is None:
                            self._join(deadline)
                        self.participating = True
                        return True
                    if self.peer.exists(self.create_path) is None:
                        self._join(deadline)
                        continue
                    # Also watch the participants: if the one completing the count dies before creating
                    # ``ready``, whoever notices the count complete creates it.
                    if len(self._members(watch=waker)) >= self.num_clients:
                        try:
                            retry(self.peer, lambda: self.peer.create(self._ready_path), deadline)
                        except NodeExistsError:
                            pass
                        continue
                    if not waker.wait(deadline) and deadline.expired():
                        best_effort(lambda: delete_quietly(self.peer, self.create_path, Deadline(5.0)))
                        return False
        except BaseException:
            best_effort(lambda: delete_quietly(self.peer, self.create_path, Deadline(5.0)))
            raise

    def _leave_last(self, deadline: Deadline) -> None:
        """The last participant deletes its node and ``ready`` in one transaction: the others return from leave()
        as soon as its node goes, and may stop at once, so nothing may be left to write after that."""
        peer = self.peer
        while peer.exists(self.create_path) is not None:
            txn = peer.transaction()
            if peer.exists(self._ready_path) is not None:
                txn.delete(self._ready_path)
            txn.delete(self.create_path)
            try:
                results = txn.commit()
            except UNKNOWN_OUTCOME:
                sync(peer, deadline)
                continue
            if not any(isinstance(r, Exception) for r in results):
                return
            sync(peer, deadline)  # ``ready`` or our node went meanwhile: look again

    def leave(self, timeout: float | None = None) -> bool:
        """Leave; block until every participant has left. True, or False on timeout."""
        deadline = Deadline(timeout)
        peer = self.peer

        def on_deleted(waker: Waker) -> Any:
            def watch(event: Any) -> None:
                if event.type is EventType.DELETED:
                    waker()

            return watch

        with Waker(peer) as waker:
            watch = on_deleted(waker)
            while True:
                waker.clear()
                members = self._members()
                if not members:
                    # The last one took ``ready`` with it, unless it died before leaving.
                    if peer.exists(self._ready_path) is not None:
                        delete_quietly(peer, self._ready_path, deadline)
                    break
                if members == [self.node_name]:
                    self._leave_last(deadline)
                    break
                if members[0] == self.node_name:
                    target = members[-1]  # the lowest leaves last: wait for the highest
                else:
                    if self.node_name in members:
                        delete_quietly(peer, self.create_path, deadline)
                    target = members[0]  # then wait for the lowest
                if peer.exists(join(self.path, target), watch=watch) is None:
                    continue
                if not waker.wait(deadline) and deadline.expired():
                    return False
        self.participating = False
        return True
