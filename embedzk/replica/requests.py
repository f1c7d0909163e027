"""The replica's request table: every request in flight, from the moment it is asked until its completion leaves.

A request is the application's (a positive id the driver chose) or the replica's own (a negative id: opening its
session, confirming that it caught up). It is an operation to propose or forward, or a read barrier (``op`` None)
resolved through read-index. Requests end in one of four ways, each a :class:`Completion`: answered when their
entry is applied here, failed at once (bad input, no session), given up when their outcome can no longer be
known (the term changed after they were sent, a snapshot replaced the state), or timed out.

The table only keeps the books; when to send, retry or give up is the replica's decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from embedzk.errors import EmbedZKError
from embedzk.tree.txn import Op

__all__ = ["Completion", "Pending", "RequestTable", "describe"]


@dataclass(slots=True)
class Completion:
    """A request's outcome: ``error`` is None on success, ``value`` is what the call returns."""

    request_id: int
    value: Any = None
    error: EmbedZKError | None = None


@dataclass(slots=True)
class Pending:
    """A request in flight."""

    request_id: int
    op: Op | None  # None for a sync
    session_id: int
    deadline: float
    #: The term in which the request was proposed or forwarded; None while it waits to be sent.
    sent_term: int | None = None
    #: For a sync: the read index granted, once known.
    read_index: int | None = None
    #: For a sync: the tick at which read-index was last asked (asked again if no answer comes).
    asked_at: int = -1
    #: For a forwarded write: the leader it went to (sent again to it, in the same term, if no answer comes).
    forwarded_to: str | None = None
    #: When it was asked (the driver's clock).
    started: float = 0.0

    @property
    def is_sync(self) -> bool:
        """Whether this is a read barrier rather than an operation."""
        return self.op is None


class RequestTable:
    """The requests in flight by id, the syncs whose read index is known, and the completions not yet handed out."""

    __slots__ = ("_completed", "_granted", "_internal_ids", "_pending")

    def __init__(self) -> None:
        self._pending: dict[int, Pending] = {}
        # Syncs whose read index is known, waiting for it to be applied here.
        self._granted: dict[int, Pending] = {}
        self._completed: list[Completion] = []
        self._internal_ids = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Pending]:
        """The requests in flight (a copy: the caller may end requests while iterating)."""
        return iter(list(self._pending.values()))

    def get(self, request_id: int) -> Pending | None:
        """The request ``request_id``, if in flight."""
        return self._pending.get(request_id)

    def check_id(self, request_id: int) -> None:
        """Raise ValueError unless ``request_id`` may start a new application request."""
        if request_id <= 0 or request_id in self._pending:
            raise ValueError(f"request id {request_id} must be positive and not in use")

    def internal_id(self) -> int:
        """A new id for one of the replica's own requests (negative: never one of the application's)."""
        self._internal_ids -= 1
        return self._internal_ids

    def add(self, pending: Pending) -> None:
        """Start tracking ``pending``."""
        self._pending[pending.request_id] = pending

    def has_completions(self) -> bool:
        """Whether completions wait to be drained."""
        return bool(self._completed)

    def completed(self, completion: Completion) -> None:
        """A request that ends without having been tracked (refused at once)."""
        self._completed.append(completion)

    def finish(self, request_id: int, value: Any = None, error: EmbedZKError | None = None) -> Pending | None:
        """End request ``request_id`` with this outcome; the request, or None if it was no longer in flight (timed
        out, or given up when the term changed): then nothing is completed."""
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            self._completed.append(Completion(request_id, value, error))
        return pending

    def take(self, request_id: int) -> Pending | None:
        """Stop tracking request ``request_id`` without completing it (the replica's own requests answer
        themselves); the request, or None if it was no longer in flight."""
        return self._pending.pop(request_id, None)

    def give_up(self, should: Callable[[Pending], bool], error: Callable[[Pending], EmbedZKError]) -> None:
        """End every request for which ``should`` holds, with ``error(request)``."""
        for pending in list(self._pending.values()):
            if should(pending):
                self.finish(pending.request_id, error=error(pending))

    # read barriers --------------------------------------------------------------------------------------------

    def grant(self, request_id: int, index: int) -> None:
        """The read index of sync ``request_id`` is ``index`` (ignored unless the sync waits for it)."""
        pending = self._pending.get(request_id)
        if pending is not None and pending.op is None and pending.read_index is None:
            pending.read_index = index
            self._granted[request_id] = pending

    def complete_reads(self, applied: int) -> None:
        """Complete the syncs whose read index is applied here."""
        if not self._granted:
            return
        for request_id, pending in list(self._granted.items()):
            if self._pending.get(request_id) is not pending:
                del self._granted[request_id]  # timed out meanwhile
            elif applied >= (pending.read_index or 0):
                del self._granted[request_id]
                self.finish(request_id)

    def drain(self) -> list[Completion]:
        """Every completion since the last drain, in order."""
        done, self._completed = self._completed, []
        return done


def describe(op: Op | None) -> str:
    """A request in words, for error messages: what it was, and on which path."""
    if op is None:
        return "sync"
    path = getattr(op, "path", None)
    name = _OP_NAMES.get(type(op).__name__, type(op).__name__)
    return f"{name} {path}" if path else name


_OP_NAMES = {
    "CreateOp": "create",
    "SetDataOp": "set",
    "DeleteOp": "delete",
    "CheckOp": "check",
    "MultiOp": "transaction",
    "CreateSessionOp": "opening a session",
    "CloseSessionOp": "closing a session",
    "DeleteContainerOp": "reaping",
}
