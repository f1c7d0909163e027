"""The simulator's parts on their own: the disk's durability model, the network's corruption, the tree model against
the real tree, the checks against the committed log, and the watch book."""

from __future__ import annotations

import random
from typing import Any

import pytest

from embedzk.codec import decode, encode
from embedzk.consensus.types import ConfState, Entry, HardState
from embedzk.errors import DecodeError
from embedzk.model import EventType
from embedzk.replica.messages import Command
from embedzk.testing.logcheck import check_history
from embedzk.testing.network import NetworkProfile, SimNetwork
from embedzk.testing.simdisk import SimDisk
from embedzk.testing.simulator import Call
from embedzk.testing.treemodel import TreeModel
from embedzk.testing.watchcheck import WatchBook
from embedzk.testing.workload import TREE_PATHS, error_name, result_of, to_op
from embedzk.tree import DataTree, TreeEvent
from embedzk.tree.txn import CloseSessionOp, CreateOp, CreateSessionOp, DeleteOp, MultiOp, SetDataOp, Txn
from embedzk.tree.watches import WatchKind

# --- the disk ----------------------------------------------------------------------------------------------------


def _entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"x") for i in range(first, last + 1)]


def test_a_crash_keeps_synced_writes_and_a_prefix_of_the_unsynced_ones() -> None:
    kept = set()
    for seed in range(40):
        disk = SimDisk(ConfState(voters=("a",)))
        disk.append(_entries(1, 3), HardState(term=1, vote="a"))
        disk.append([], HardState(term=1, vote="a", commit=2), sync=False)
        disk.append([], HardState(term=1, vote="a", commit=3), sync=False)
        lost = disk.crash(random.Random(seed))
        hard_state, _ = disk.initial_state()
        assert disk.last_index() == 3 and hard_state.vote == "a"  # synced: never lost
        assert hard_state.commit == {2: 0, 1: 2, 0: 3}[lost]  # a prefix of the unsynced batches survives
        kept.add(hard_state.commit)
    assert kept == {0, 2, 3}


def test_a_synced_write_makes_the_unsynced_ones_before_it_durable() -> None:
    disk = SimDisk(ConfState(voters=("a",)))
    disk.append(_entries(1, 2), HardState(term=1), sync=False)
    disk.append(_entries(3, 3), HardState(term=1, commit=1))
    assert disk.crash(random.Random(0)) == 0
    assert disk.last_index() == 3


def test_the_disk_reports_the_entries_an_append_drops() -> None:
    disk = SimDisk(ConfState(voters=("a",)))
    disk.append(_entries(1, 5))
    dropped: list[list[tuple[int, int]]] = []
    disk.on_drop = dropped.append
    disk.append(_entries(3, 3, term=1))  # the same entry again: nothing dropped but what follows it
    disk.append(_entries(2, 2, term=2))
    assert dropped == [[(4, 1), (5, 1)], [(2, 1), (3, 1)]]


# --- the network -------------------------------------------------------------------------------------------------


def test_corrupted_frames_never_decode_as_a_message() -> None:
    frame = encode(Command("n1", 7, 3, Txn(0, 1, SetDataOp("/k", b"v" * 40))))
    network = SimNetwork(random.Random(1), NetworkProfile(corrupt_rate=1.0))
    for _ in range(300):
        network.send(0.0, "a", "b", frame)
    arrived = 0
    while network.next_delivery() is not None:
        delivery = network.pop()
        assert delivery.corrupt
        arrived += 1
        try:
            value = decode(delivery.data)
        except DecodeError:
            continue
        assert not isinstance(value, Command)  # only the foreign frame decodes, to a type nobody sends
    assert arrived > 200


def test_a_cut_link_that_holds_delivers_its_backlog_in_order_when_healed() -> None:
    network = SimNetwork(random.Random(2), NetworkProfile(hold_when_cut=True))
    network.cut("a", "b")
    for n in range(5):
        network.send(0.0, "a", "b", bytes([n]))
    assert network.next_delivery() is None
    network.heal(1.0)
    got = []
    while network.next_delivery() is not None:
        got.append(network.pop().data)
    assert sorted(got) == [bytes([n]) for n in range(5)]


def test_replays_bring_back_every_kind_of_message() -> None:
    network = SimNetwork(random.Random(3))
    network.remember("SNAP", "a", "b", b"s0")
    network.remember("SNAP", "a", "b", b"s1")
    network.remember("HEARTBEAT", "a", "c", b"h")
    assert network.replay_old(5.0) == 3
    got = []
    while network.next_delivery() is not None:
        got.append(network.pop().data)
    assert got.index(b"s0") < got.index(b"s1") and b"h" in got


# --- the tree model against the real tree ---------------------------------------------------------------------


def _random_op(rng: random.Random, sessions: list[int]) -> tuple[Any, int]:
    path = rng.choice(TREE_PATHS)
    roll = rng.random()
    session = rng.choice(sessions) if sessions and rng.random() < 0.8 else rng.randrange(1, 1000)
    if roll < 0.35:
        return CreateOp(path, b"d", ephemeral=rng.random() < 0.3, sequential=rng.random() < 0.2,
                        makepath=rng.random() < 0.3), session
    if roll < 0.5:
        return SetDataOp(path, b"e", rng.choice((-1, 0, 1))), session
    if roll < 0.65:
        return DeleteOp(path, rng.choice((-1, 0))), session
    if roll < 0.8:
        return MultiOp((CreateOp(path, b"m"), DeleteOp(rng.choice(TREE_PATHS)))), session
    if roll < 0.9:
        new = rng.randrange(1, 1000)
        sessions.append(new)
        return CreateSessionOp(new, 1000, "n1"), 0
    return CloseSessionOp(rng.choice(sessions) if sessions else 5), 0


@pytest.mark.parametrize("seed", range(8))
def test_the_tree_model_answers_as_the_real_tree(seed: int) -> None:
    rng = random.Random(seed)
    tree, model = DataTree(), TreeModel()
    sessions: list[int] = []
    for zxid in range(1, 400):
        op, session = _random_op(rng, sessions)
        result = tree.apply(Txn(session, zxid, op), zxid)
        value = result.value
        if isinstance(op, SetDataOp) and result.error is None:
            value = value.version
        if isinstance(op, (MultiOp, CreateSessionOp, CloseSessionOp, DeleteOp)) and result.error is None:
            value = None
        real = ("err", error_name(result.error)) if result.error is not None else ("ok", value)
        assert model.apply(op, session) == real, (zxid, op)
    for path, node in model.nodes.items():
        data, stat = tree.get(path)
        assert (data, stat.version) == (node.data, node.version)
        assert sorted(tree.get_children(path)) == sorted(node.children)
    assert tree.node_count() == len(model.nodes)
    assert set(tree.sessions()) == set(model.sessions)


# --- the checks against the committed log ------------------------------------------------------------------------


def _log(*ops: tuple[int, Any]) -> dict[int, tuple[int, bytes]]:
    return {
        i + 1: (1, encode(Command("n1", 1, request, Txn(0, 1000 + i, op)))) for i, (request, op) in enumerate(ops)
    }


def test_the_log_check_passes_a_history_the_log_explains() -> None:
    log = _log((1, to_op("create", ("/k", b"a"))), (2, to_op("set", ("/k", b"b", -1))))
    calls = [
        Call(0, "create", ("/k", b"a"), 0.0, "n1#1", ("ok", "/k"), 0.1, request=("n1", 1)),
        Call(0, "set", ("/k", b"b", -1), 0.2, "n1#1", ("ok", 1), 0.3, request=("n1", 2)),
        Call(1, "sync_get", ("/k",), 0.4, "n2#1", ("ok", (b"b", 1)), 0.5, zxid=2),
    ]
    _, problems = check_history(log, calls, 2)
    assert problems == []


def test_the_log_check_reports_a_stale_synced_read() -> None:
    log = _log((1, to_op("create", ("/k", b"a"))), (2, to_op("set", ("/k", b"b", -1))))
    calls = [
        Call(0, "set", ("/k", b"b", -1), 0.2, "n1#1", ("ok", 1), 0.3, request=("n1", 2)),
        Call(1, "sync_get", ("/k",), 0.4, "n2#1", ("ok", (b"a", 0)), 0.5, zxid=1),
    ]
    _, problems = check_history(log, calls, 2)
    assert len(problems) == 1 and problems[0].startswith("stale read")


def test_the_log_check_reports_a_lost_write_and_a_wrong_answer() -> None:
    log = _log((1, to_op("create", ("/k", b"a"))))
    calls = [
        Call(0, "create", ("/k", b"a"), 0.0, "n1#1", ("err", "NodeExists"), 0.1, request=("n1", 1)),
        Call(0, "set", ("/k", b"b", -1), 0.2, "n1#1", ("ok", 1), 0.3, request=("n1", 9)),
    ]
    _, problems = check_history(log, calls, 1)
    assert any("lost write" in p for p in problems)
    assert any("gives ok '/k'" in p for p in problems)


def test_the_log_check_reports_time_going_back_in_the_log() -> None:
    log = {
        1: (1, encode(Command("n1", 1, 0, Txn(0, 2000, CreateOp("/a"))))),
        2: (2, encode(Command("n2", 1, 0, Txn(0, 1500, CreateOp("/b"))))),
    }
    _, problems = check_history(log, [], 2)
    assert problems and "time goes back" in problems[0]


# --- watches -----------------------------------------------------------------------------------------------------


def _events(*pairs: tuple[EventType, str]) -> tuple[TreeEvent, ...]:
    return tuple(TreeEvent(t, p) for t, p in pairs)


def _never(text: str) -> Any:
    raise AssertionError(text)


def test_a_watch_that_fires_at_the_first_matching_change_passes() -> None:
    book = WatchBook(_never)
    run = book.start("n1#1", 0)
    run.add(1, WatchKind.DATA, "/a", 0)
    changes = {1: _events((EventType.CREATED, "/b"), (EventType.CHILD, "/")), 2: _events((EventType.CHANGED, "/a"))}
    for zxid, events in changes.items():
        book.record("n1", zxid, events)
        run.applied(zxid, events)
    run.advanced(2)
    assert book.judge() == []


def test_a_lost_watch_event_is_reported() -> None:
    book = WatchBook(_never)
    run = book.start("n1#1", 0)
    run.add(1, WatchKind.DATA, "/a", 0)
    book.record("n1", 1, _events((EventType.CHANGED, "/a")))
    book.record("n2", 1, _events((EventType.CHANGED, "/a")))
    run.advanced(1)  # applied, but the change never reached the registry
    problems = book.judge()
    assert any("watch event lost" in p for p in problems)


def test_replicas_that_trigger_different_events_at_one_index_are_reported() -> None:
    reported: list[str] = []

    def fail(text: str) -> Any:
        reported.append(text)
        raise AssertionError(text)

    book = WatchBook(fail)
    book.record("n1", 1, _events((EventType.CHANGED, "/a")))
    with pytest.raises(AssertionError):
        book.record("n2", 1, _events((EventType.DELETED, "/a")))
    assert reported and "watch events differ" in reported[0]


def test_results_are_recorded_in_the_history_shapes() -> None:
    assert result_of("tcreate", "/t/a/s-0000000001", None) == ("ok", "/t/a/s-0000000001")
    assert result_of("tsync_get", None, None) == ("ok", None)
