"""The leader's record of when it last heard from each session, and which sessions are past their timeout.

Only the leader expires sessions (ZooKeeper's SessionTracker lives on its leader too): it proposes the closing, and
the closing takes effect on every replica when applied. A new leader does not know when its predecessor last heard
from anyone, so it gives every session a fresh timeout when it takes over (DESIGN.md, "Sessions").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class SessionTracker:
    """Last-heard times of the open sessions, on the leader. Times are the driver's monotonic seconds."""

    __slots__ = ("_closing", "_last_heard")

    def __init__(self) -> None:
        self._last_heard: dict[int, float] = {}
        # session -> when its closing was proposed; re-proposed if still open much later (the proposal may be lost)
        self._closing: dict[int, float] = {}

    def reset(self, session_ids: Iterable[int], now: float) -> None:
        """Start over on becoming leader: every open session gets a fresh timeout from ``now``."""
        self._last_heard = dict.fromkeys(session_ids, now)
        self._closing.clear()

    def touch(self, session_id: int, now: float) -> None:
        """The session's owner was heard from at ``now``."""
        if session_id in self._last_heard:
            self._last_heard[session_id] = now

    def opened(self, session_id: int, now: float) -> None:
        """A session was created (applied): its timeout runs from ``now``."""
        self._last_heard[session_id] = now

    def closed(self, session_id: int) -> None:
        """A session was closed (applied)."""
        self._last_heard.pop(session_id, None)
        self._closing.pop(session_id, None)

    def expired(self, timeouts_ms: Mapping[int, int], now: float, retry_after: float) -> list[int]:
        """Sessions past their timeout whose closing should be proposed now (sorted, so proposals are ordered).

        ``timeouts_ms`` maps every open session to its timeout. A closing proposed earlier is proposed again once
        ``retry_after`` seconds have passed without it being applied.
        """
        due = []
        for session_id, timeout_ms in timeouts_ms.items():
            heard = self._last_heard.get(session_id)
            if heard is None:
                # Opened before we learnt of it (e.g. restored from a snapshot after reset): start its clock now.
                self._last_heard[session_id] = now
                continue
            if now - heard <= timeout_ms / 1000.0:
                continue
            proposed = self._closing.get(session_id)
            if proposed is not None and now - proposed < retry_after:
                continue
            self._closing[session_id] = now
            due.append(session_id)
        due.sort()
        return due
