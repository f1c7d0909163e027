"""The replica's parts on their own: the connection state machine and the request table."""

from __future__ import annotations

import itertools

import pytest

from embedzk.errors import ConnectionLossError
from embedzk.model import KeeperState
from embedzk.replica.connection import TRANSITIONS, Connection, Event
from embedzk.replica.requests import Pending, RequestTable, describe
from embedzk.tree.txn import CreateOp

# --- the connection state machine --------------------------------------------------------------------------------


def test_every_state_and_event_pair_has_a_transition() -> None:
    assert set(TRANSITIONS) == set(itertools.product(KeeperState, Event))


@pytest.mark.parametrize("state", list(KeeperState))
def test_removal_and_expiry_always_lose_the_session(state: KeeperState) -> None:
    assert TRANSITIONS[(state, Event.REMOVED)] is KeeperState.LOST
    assert TRANSITIONS[(state, Event.SESSION_EXPIRED)] is KeeperState.LOST


def test_a_connection_is_connected_only_when_caught_up_with_a_session_and_a_leader() -> None:
    facts = dict(removed=False, session_lost=False, in_touch=True, session_open=True, confirmed=True)
    assert Connection.event_for(**facts) is Event.CAUGHT_UP
    for missing in ("in_touch", "session_open", "confirmed"):
        assert Connection.event_for(**{**facts, missing: False}) is Event.OUT_OF_TOUCH, missing
    # The session and the membership come first: a lost session is not merely out of touch.
    assert Connection.event_for(**{**facts, "session_lost": True}) is Event.SESSION_EXPIRED
    assert Connection.event_for(**{**facts, "session_lost": True, "removed": True}) is Event.REMOVED


def test_a_connection_walks_through_its_states_and_reports_only_changes() -> None:
    connection = Connection()
    assert connection.state is KeeperState.SUSPENDED
    assert connection.advance(Event.OUT_OF_TOUCH) is None
    assert connection.advance(Event.CAUGHT_UP) is KeeperState.CONNECTED
    assert connection.advance(Event.CAUGHT_UP) is None
    assert connection.advance(Event.OUT_OF_TOUCH) is KeeperState.SUSPENDED
    assert connection.advance(Event.SESSION_EXPIRED) is KeeperState.LOST
    # A new session: suspended until caught up, then connected again.
    assert connection.advance(Event.OUT_OF_TOUCH) is KeeperState.SUSPENDED
    assert connection.advance(Event.CAUGHT_UP) is KeeperState.CONNECTED
    assert connection.advance(Event.REMOVED) is KeeperState.LOST


def test_losing_contact_means_catching_up_again() -> None:
    connection = Connection()
    connection.confirm_request = -1
    connection.confirm_done(True)
    assert connection.confirmed and connection.confirm_request is None
    connection.contact_lost()
    assert not connection.confirmed


# --- the request table -------------------------------------------------------------------------------------------


def _write(table: RequestTable, request_id: int, sent_term: int | None = None) -> Pending:
    pending = Pending(request_id, CreateOp("/a", b""), 0, deadline=10.0, sent_term=sent_term)
    table.add(pending)
    return pending


def test_request_ids_must_be_positive_and_unused() -> None:
    table = RequestTable()
    _write(table, 1)
    for bad in (0, -3, 1):
        with pytest.raises(ValueError):
            table.check_id(bad)
    table.check_id(2)
    assert table.internal_id() == -1 and table.internal_id() == -2  # the replica's own: never the application's


def test_a_request_completes_once_and_not_after_it_was_given_up() -> None:
    table = RequestTable()
    _write(table, 1, sent_term=1)
    _write(table, 2, sent_term=None)
    table.give_up(lambda p: p.sent_term is not None, lambda p: ConnectionLossError(describe(p.op)))
    assert [p.request_id for p in table] == [2]
    assert table.finish(1, value="/a") is None  # answered after it was given up: nothing more is completed
    assert table.finish(2, value="/a") is not None
    done = table.drain()
    assert [(c.request_id, type(c.error).__name__ if c.error else c.value) for c in done] == [
        (1, "ConnectionLossError"),
        (2, "/a"),
    ]
    assert str(done[0].error) == "create /a"
    assert table.drain() == [] and len(table) == 0


def test_a_sync_completes_once_its_read_index_is_applied() -> None:
    table = RequestTable()
    table.add(Pending(5, None, 0, deadline=10.0))
    table.grant(5, 12)
    table.grant(5, 3)  # a later answer to an earlier ask changes nothing
    table.complete_reads(11)
    assert not table.has_completions()
    table.complete_reads(12)
    assert [c.request_id for c in table.drain()] == [5]


def test_a_granted_sync_that_timed_out_is_not_completed_again() -> None:
    table = RequestTable()
    table.add(Pending(5, None, 0, deadline=10.0))
    table.grant(5, 12)
    table.finish(5, error=ConnectionLossError("timed out"))
    table.complete_reads(20)
    assert len(table.drain()) == 1


# --- the replica's own session -----------------------------------------------------------------------------------


def test_an_own_session_is_asked_for_once_at_a_time_and_again_after_it_is_lost() -> None:
    from embedzk.replica.sessions import OwnSession

    session = OwnSession()
    assert session.wants_opening() and not session.lost
    session.opening(-1)
    assert not session.wants_opening()  # one opening in flight at a time
    session.opening_failed()
    assert session.wants_opening() and session.id is None
    session.opening(-2)
    session.opened(77)
    assert (session.id, session.request, session.lost) == (77, None, False) and not session.wants_opening()
    session.expired()
    assert session.id is None and session.lost and session.wants_opening()
    session.opening(-3)
    session.opened(78)
    assert not session.lost  # a new session: no longer lost


def test_an_own_session_pings_once_per_interval() -> None:
    from embedzk.replica.sessions import OwnSession

    session = OwnSession()
    due = [tick for tick in range(1, 31) if session.ping_due(tick, 10)]
    assert due == [10, 20, 30]


def test_a_leader_without_a_clock_reading_starts_every_session_timeout_at_its_first_check() -> None:
    # Churn seed 2469 (replayed in every default run, and failing without the fix): a restarted member elected on a
    # leadership transfer before its first tick reset the session clocks at 0.0, not a reading of its clock, and
    # its first check expired every session. The first tick, as any gap longer than the reach window, counts for no
    # one: the session timeouts start there.
    import random

    from embedzk.consensus.types import ConfState
    from embedzk.persist.memory import MemoryStorage
    from embedzk.replica import Replica, ReplicaConfig

    replica = Replica(ReplicaConfig(id="r0", tick_interval=0.01), MemoryStorage(ConfState(voters=("r0",))),
                      random.Random(1))
    tracker = replica._tracker
    tracker.reset([1, 2], replica.now)  # as a leader elected before its first tick resets them
    tracker.opened(3, replica.now)
    replica.tick(500.0, 0)
    assert tracker.expired({1: 1000, 2: 1000, 3: 1000}, now=500.5, retry_after=1.0) == []  # clocks start here
    tracker.touch(2, 500.8)
    assert tracker.expired({1: 1000, 2: 1000, 3: 1000}, now=501.5, retry_after=1.0) == [1, 3]


def test_a_replica_that_was_not_running_takes_the_gap_for_its_own_silence() -> None:
    # Churn seed 3008: a leader whose clock jumped past member_timeout took everyone for dead. A gap between two
    # ticks longer than the reach window moves the session and membership clocks on by it.
    import random

    from embedzk.consensus.types import ConfState
    from embedzk.persist.memory import MemoryStorage
    from embedzk.replica import Replica, ReplicaConfig

    replica = Replica(ReplicaConfig(id="r0", tick_interval=0.01), MemoryStorage(ConfState(voters=("r0",))),
                      random.Random(1))
    replica.tick(10.0, 0)
    replica._tracker.opened(7, 10.0)
    replica.membership._heard["m"] = 10.0
    replica.tick(10.01, 0)  # an ordinary tick: nothing moves
    assert replica.membership._heard["m"] == 10.0
    replica.tick(40.0, 0)  # thirty seconds without running
    assert replica._tracker.expired({7: 1000}, now=40.5, retry_after=1.0) == []
    assert replica.membership._heard["m"] == pytest.approx(40.0 - 0.01 - 0.01)
