"""Read-index requests waiting for a leader to confirm it is still the leader (thesis 6.4; etcd: read_only.go,
ReadOnlySafe).

A request records the commit index at the time it arrived and is released once a majority of voters answered a
heartbeat that carried its context (or the context of a later request: heartbeats are answered in order, so an
ack for a later request proves the earlier ones too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReadIndexStatus", "ReadOnly"]


@dataclass(slots=True)
class ReadIndexStatus:
    """One pending read: its context, the commit index it may read at, who asked (None: this node), and which
    voters confirmed the leader since."""

    ctx: bytes
    index: int
    requester: str | None
    acks: set[str] = field(default_factory=set)


class ReadOnly:
    """The queue of pending reads, oldest first, indexed by context (contexts must be unique per request)."""

    __slots__ = ("_pending", "_queue")

    def __init__(self) -> None:
        self._pending: dict[bytes, ReadIndexStatus] = {}
        self._queue: list[bytes] = []

    def add_request(self, index: int, ctx: bytes, requester: str | None) -> bool:
        """Queue a read at ``index``; False if a request with that context is pending already (a duplicate)."""
        if ctx in self._pending:
            return False
        self._pending[ctx] = ReadIndexStatus(ctx, index, requester)
        self._queue.append(ctx)
        return True

    def recv_ack(self, voter: str, ctx: bytes) -> set[str] | None:
        """``voter`` confirmed the heartbeat for ``ctx``; returns who confirmed it so far (None if unknown)."""
        status = self._pending.get(ctx)
        if status is None:
            return None
        status.acks.add(voter)
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Release the request for ``ctx`` and every request queued before it."""
        if ctx not in self._pending:
            return []
        k = self._queue.index(ctx)
        released = [self._pending.pop(c) for c in self._queue[: k + 1]]
        del self._queue[: k + 1]
        return released

    def last_pending_ctx(self) -> bytes | None:
        """The context of the newest pending request (a heartbeat carrying it confirms them all)."""
        return self._queue[-1] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)
