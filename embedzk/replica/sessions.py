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

    def postpone(self, shift: float, now: float) -> None:
        """The replica was not running for ``shift`` seconds (see Replica.tick): no session was silent then, as far
        as this leader can tell, so every clock moves on by that much (never past ``now``)."""
        for session_id, heard in self._last_heard.items():
            self._last_heard[session_id] = min(heard + shift, now)

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


class OwnSession:
    """A replica's own session (its application's, as a kazoo client's): opened through the log once a leader is
    known, opened again after it expired, kept alive by a ping to the leader every third of its timeout.

    The replica runs the requests; this keeps their books: the session's id, the opening request in flight, whether
    the session was lost (expired, or absent from a snapshot installed) and not yet replaced, when the last ping
    left.
    """

    __slots__ = ("id", "last_ping_tick", "lost", "request")

    def __init__(self) -> None:
        #: The open session's id, or None.
        self.id: int | None = None
        #: The replica's own request id of the opening in flight, or None.
        self.request: int | None = None
        #: The session expired (or vanished) and no new one is open yet.
        self.lost = False
        self.last_ping_tick = 0

    def wants_opening(self) -> bool:
        """Whether a session should be asked for: none open, none being opened."""
        return self.id is None and self.request is None

    def opening(self, request_id: int) -> None:
        """The opening went out as request ``request_id``."""
        self.request = request_id

    def opened(self, session_id: int) -> None:
        """The opening was applied: ``session_id`` is ours."""
        self.request = None
        self.id = session_id
        self.lost = False

    def opening_failed(self) -> None:
        """The opening timed out or was refused: asked again on a later tick."""
        self.request = None

    def expired(self) -> None:
        """The session is gone (closed through the log, or absent from a snapshot installed)."""
        self.id = None
        self.lost = True

    def ping_due(self, ticks: int, interval: int) -> bool:
        """Whether a ping should leave at tick ``ticks`` (one every ``interval`` ticks); noted as sent if so."""
        if ticks - self.last_ping_tick < interval:
            return False
        self.last_ping_tick = ticks
        return True
