"""The replica's connection state as the application sees it: CONNECTED, SUSPENDED or LOST (kazoo's states).

An explicit state machine in h11's manner: what the replica knows is reduced to one :class:`Event` at a time, and a
table says where each (state, event) pair goes. Every pair is in the table, so a transition nobody thought of cannot
happen silently.

- **CONNECTED**: a leader is known and heard from, this peer has an open session, and it caught up with everything
  committed since it last had a leader (a read-index round): what it reads is current up to a bounded lag.
- **SUSPENDED**: not sure of that (no leader, a silent one, no session yet, or not caught up since contact came
  back); the session may still be alive, and what this peer holds may be stale.
- **LOST**: the session expired (its ephemerals are gone), or this peer was removed from the cluster. A new session
  leaves LOST; a removal never does.
"""

from __future__ import annotations

import enum

from embedzk.model import KeeperState

__all__ = ["Connection", "Event"]


class Event(enum.Enum):
    """What the replica's knowledge amounts to, at one moment."""

    #: This member was removed from the cluster (for good: a rejoin is a new replica).
    REMOVED = "removed"
    #: Its session expired and no new one is open yet.
    SESSION_EXPIRED = "session expired"
    #: A leader is heard from, a session is open, and the replica caught up since contact came back.
    CAUGHT_UP = "caught up"
    #: Any of those missing: no leader, a silent one, no session yet, or not caught up.
    OUT_OF_TOUCH = "out of touch"


_CONNECTED, _SUSPENDED, _LOST = KeeperState.CONNECTED, KeeperState.SUSPENDED, KeeperState.LOST

#: (state, event) -> next state, for every pair.
TRANSITIONS: dict[tuple[KeeperState, Event], KeeperState] = {
    (_CONNECTED, Event.CAUGHT_UP): _CONNECTED,
    (_CONNECTED, Event.OUT_OF_TOUCH): _SUSPENDED,
    (_CONNECTED, Event.SESSION_EXPIRED): _LOST,
    (_CONNECTED, Event.REMOVED): _LOST,
    (_SUSPENDED, Event.CAUGHT_UP): _CONNECTED,
    (_SUSPENDED, Event.OUT_OF_TOUCH): _SUSPENDED,
    (_SUSPENDED, Event.SESSION_EXPIRED): _LOST,
    (_SUSPENDED, Event.REMOVED): _LOST,
    # A new session, once caught up, connects again; while not caught up yet, it is merely suspended.
    (_LOST, Event.CAUGHT_UP): _CONNECTED,
    (_LOST, Event.OUT_OF_TOUCH): _SUSPENDED,
    (_LOST, Event.SESSION_EXPIRED): _LOST,
    (_LOST, Event.REMOVED): _LOST,
}


class Connection:
    """The connection state, and whether the replica caught up since it last lost its leader.

    The replica tells it what it knows (:meth:`event_for`) and moves it (:meth:`advance`); catching up is a
    read-index round the replica runs, whose request this object remembers (:attr:`confirm_request`).
    """

    __slots__ = ("confirm_request", "confirmed", "state")

    def __init__(self) -> None:
        self.state = KeeperState.SUSPENDED
        #: Whether the replica caught up with everything committed when contact with a leader came back.
        self.confirmed = False
        #: The replica's own request id of the read-index round that confirms it, while one is in flight.
        self.confirm_request: int | None = None

    @staticmethod
    def event_for(*, removed: bool, session_lost: bool, in_touch: bool, session_open: bool, confirmed: bool) -> Event:
        """The event that what the replica knows amounts to (removal first, then the session, then contact)."""
        if removed:
            return Event.REMOVED
        if session_lost:
            return Event.SESSION_EXPIRED
        if in_touch and session_open and confirmed:
            return Event.CAUGHT_UP
        return Event.OUT_OF_TOUCH

    def next_state(self, event: Event) -> KeeperState:
        """Where ``event`` takes the current state (the state is not changed)."""
        return TRANSITIONS[(self.state, event)]

    def advance(self, event: Event) -> KeeperState | None:
        """Take the transition for ``event``; the new state if it changed, else None."""
        state = TRANSITIONS[(self.state, event)]
        if state is self.state:
            return None
        self.state = state
        return state

    def contact_lost(self) -> None:
        """No leader, or a silent one: what the replica holds may be stale until it catches up again."""
        self.confirmed = False

    def confirm_done(self, ok: bool) -> None:
        """The read-index round that confirms the replica caught up ended (``ok``: it passed)."""
        self.confirm_request = None
        self.confirmed = ok
