"""The watch registry: ZooKeeper's trigger rules, one table per rule, and a model check against a brute force."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedzk.model import EventType, KeeperState, WatchedEvent
from embedzk.tree.watches import WatchKind, WatchRegistry

CREATED, DELETED, CHANGED, CHILD = EventType.CREATED, EventType.DELETED, EventType.CHANGED, EventType.CHILD
ONE_SHOT = (WatchKind.DATA, WatchKind.EXIST, WatchKind.CHILD)


@dataclass(frozen=True)
class Ev:
    """A stand-in for the tree's TreeEvent: the registry needs only ``type`` and ``path``."""

    type: EventType
    path: str


def fired(
    registry: WatchRegistry, *events: tuple[EventType, str], zxid: int = 7
) -> list[tuple[Hashable, EventType, str]]:
    """Trigger ``events`` at ``zxid``; return who was told what, after checking the stamp on every event."""
    out = registry.trigger([Ev(t, p) for t, p in events], zxid)
    for _, event in out:
        assert event.zxid == zxid and event.state is KeeperState.CONNECTED
    return [(w, e.type, e.path) for w, e in out]


# -- one-shot watches ---------------------------------------------------------------------------------------------

ONE_SHOT_TABLE = [
    # kind, event type, fires?
    (WatchKind.DATA, CREATED, True),
    (WatchKind.DATA, CHANGED, True),
    (WatchKind.DATA, DELETED, True),
    (WatchKind.DATA, CHILD, False),
    (WatchKind.EXIST, CREATED, True),
    (WatchKind.EXIST, CHANGED, True),
    (WatchKind.EXIST, DELETED, True),
    (WatchKind.EXIST, CHILD, False),
    (WatchKind.CHILD, CREATED, False),
    (WatchKind.CHILD, CHANGED, False),
    (WatchKind.CHILD, DELETED, True),
    (WatchKind.CHILD, CHILD, True),
]


@pytest.mark.parametrize(("kind", "etype", "fires"), ONE_SHOT_TABLE)
def test_one_shot_fires_per_table_and_is_consumed(kind: WatchKind, etype: EventType, fires: bool) -> None:
    reg = WatchRegistry()
    reg.add(kind, "/a", "w")
    if fires:
        assert fired(reg, (etype, "/a")) == [("w", etype, "/a")]
        assert reg.count() == 0 and reg.paths(kind) == frozenset()
        assert fired(reg, (etype, "/a")) == []  # gone: a one-shot watch fires once
    else:
        assert fired(reg, (etype, "/a")) == []
        assert reg.count() == 1  # an event it ignores does not consume it


@pytest.mark.parametrize("kind", ONE_SHOT)
def test_one_shot_ignores_other_paths(kind: WatchKind) -> None:
    reg = WatchRegistry()
    reg.add(kind, "/a", "w")
    for etype in (CREATED, CHANGED, DELETED, CHILD):
        for path in ("/", "/a/b", "/ab", "/b"):
            assert fired(reg, (etype, path)) == []
    assert reg.count() == 1


def test_watcher_in_several_one_shot_kinds_gets_one_event_and_loses_all() -> None:
    reg = WatchRegistry()
    for kind in ONE_SHOT:
        reg.add(kind, "/a", "w")
    assert fired(reg, (DELETED, "/a")) == [("w", DELETED, "/a")]
    assert reg.count() == 0


def test_changed_consumes_data_watch_but_leaves_child_watch() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.DATA, "/a", "w")
    reg.add(WatchKind.CHILD, "/a", "w")
    assert fired(reg, (CHANGED, "/a")) == [("w", CHANGED, "/a")]
    assert reg.watches_of("w") == {(WatchKind.CHILD, "/a")}
    assert fired(reg, (CHILD, "/a")) == [("w", CHILD, "/a")]
    assert reg.count() == 0


def test_adding_the_same_watch_twice_fires_once() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.DATA, "/a", "w")
    reg.add(WatchKind.DATA, "/a", "w")
    assert reg.count() == 1
    assert fired(reg, (CHANGED, "/a")) == [("w", CHANGED, "/a")]
    assert reg.count() == 0


def test_every_watcher_on_the_path_fires_in_registration_order() -> None:
    reg = WatchRegistry()
    for w in ("w1", "w2", "w3"):
        reg.add(WatchKind.DATA, "/a", w)
    assert [w for w, _, _ in fired(reg, (CHANGED, "/a"))] == ["w1", "w2", "w3"]


def test_one_shot_fires_on_first_matching_event_of_a_batch_only() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.DATA, "/a", "w")
    reg.add(WatchKind.PERSISTENT, "/a", "p")
    # A multi that sets /a then deletes it: the one-shot watch sees the first, the persistent one both.
    assert fired(reg, (CHANGED, "/a"), (DELETED, "/a")) == [
        ("w", CHANGED, "/a"),
        ("p", CHANGED, "/a"),
        ("p", DELETED, "/a"),
    ]


# -- persistent watches -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("etype", [CREATED, CHANGED, DELETED, CHILD])
def test_persistent_sees_every_event_type_on_its_path_and_stays(etype: EventType) -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.PERSISTENT, "/a", "p")
    for _ in range(3):
        assert fired(reg, (etype, "/a")) == [("p", etype, "/a")]
    assert reg.count() == 1


def test_persistent_ignores_descendants_and_ancestors() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.PERSISTENT, "/a", "p")
    for etype in (CREATED, CHANGED, DELETED, CHILD):
        assert fired(reg, (etype, "/a/b"), (etype, "/"), (etype, "/ab")) == []


RECURSIVE_TABLE = [
    # watch path, event type, event path, fires?
    ("/a", CREATED, "/a", True),
    ("/a", CHANGED, "/a", True),
    ("/a", DELETED, "/a", True),
    ("/a", CHILD, "/a", False),
    ("/a", CREATED, "/a/b", True),
    ("/a", CHANGED, "/a/b/c/d", True),
    ("/a", DELETED, "/a/b/c", True),
    ("/a", CHILD, "/a/b", False),
    ("/a", CHANGED, "/ab", False),  # a sibling sharing a name prefix is not a descendant
    ("/a", CHANGED, "/ab/c", False),
    ("/a", CHANGED, "/", False),
    ("/a/b", CHANGED, "/a", False),
    ("/", CREATED, "/x", True),
    ("/", CHANGED, "/", True),
    ("/", DELETED, "/x/y/z", True),
    ("/", CHILD, "/", False),
    ("/", CHILD, "/x", False),
]


@pytest.mark.parametrize(("watch_path", "etype", "event_path", "fires"), RECURSIVE_TABLE)
def test_recursive_per_table_and_stays(watch_path: str, etype: EventType, event_path: str, fires: bool) -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.PERSISTENT_RECURSIVE, watch_path, "r")
    expected = [("r", etype, event_path)] if fires else []
    assert fired(reg, (etype, event_path)) == expected
    assert fired(reg, (etype, event_path)) == expected
    assert reg.count() == 1


def test_one_watcher_on_several_matching_watches_gets_each_event_once() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/", "w")
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/a", "w")
    reg.add(WatchKind.PERSISTENT, "/a/b", "w")
    reg.add(WatchKind.DATA, "/a/b", "w")
    assert fired(reg, (CHANGED, "/a/b"), (CHANGED, "/a/b")) == [("w", CHANGED, "/a/b"), ("w", CHANGED, "/a/b")]
    assert reg.watches_of("w") == {
        (WatchKind.PERSISTENT_RECURSIVE, "/"),
        (WatchKind.PERSISTENT_RECURSIVE, "/a"),
        (WatchKind.PERSISTENT, "/a/b"),
    }


def test_order_within_an_event_is_exact_path_then_nearest_ancestor_first() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/", "root")
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/a", "a")
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/a/b", "ab")
    reg.add(WatchKind.PERSISTENT, "/a/b", "p")
    reg.add(WatchKind.EXIST, "/a/b", "e")
    assert [w for w, _, _ in fired(reg, (CREATED, "/a/b"))] == ["e", "p", "ab", "a", "root"]


def test_create_and_delete_reach_the_watches_zookeeper_would_fire() -> None:
    # What the tree reports for create /a/b and then delete /a/b, against a mix of watches.
    reg = WatchRegistry()
    reg.add(WatchKind.EXIST, "/a/b", "exist")
    reg.add(WatchKind.CHILD, "/a", "children")
    reg.add(WatchKind.PERSISTENT, "/a", "persistent")
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/a", "recursive")
    create = fired(reg, (CREATED, "/a/b"), (CHILD, "/a"), zxid=10)
    assert create == [
        ("exist", CREATED, "/a/b"),
        ("recursive", CREATED, "/a/b"),
        ("children", CHILD, "/a"),
        ("persistent", CHILD, "/a"),
    ]
    delete = fired(reg, (DELETED, "/a/b"), (CHILD, "/a"), zxid=11)
    assert delete == [("recursive", DELETED, "/a/b"), ("persistent", CHILD, "/a")]


def test_events_carry_zxid_and_state() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.PERSISTENT, "/a", "p")
    out = reg.trigger([Ev(CHANGED, "/a")], 42, KeeperState.SUSPENDED)
    assert out == [("p", WatchedEvent(CHANGED, KeeperState.SUSPENDED, "/a", 42))]


def test_none_events_match_nothing() -> None:
    reg = WatchRegistry()
    for kind in WatchKind:
        reg.add(kind, "/", "w")
    assert fired(reg, (EventType.NONE, "/")) == []
    assert reg.count() == len(WatchKind)


def test_recursive_lookup_visits_only_the_ancestors() -> None:
    # O(depth) per event: many recursive watches elsewhere must not be scanned.
    class CountingDict(dict):  # type: ignore[type-arg]
        lookups = 0

        def get(self, key, default=None):  # type: ignore[no-untyped-def]
            CountingDict.lookups += 1
            return super().get(key, default)

        def __iter__(self):  # type: ignore[no-untyped-def]
            raise AssertionError("trigger must not iterate over every recursive watch")

    reg = WatchRegistry()
    for i in range(1000):
        reg.add(WatchKind.PERSISTENT_RECURSIVE, f"/other/{i}", "w")
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/a/b", "r")
    counting = CountingDict(reg._by_kind[WatchKind.PERSISTENT_RECURSIVE])
    reg._by_kind[WatchKind.PERSISTENT_RECURSIVE] = counting
    assert fired(reg, (CHANGED, "/a/b/c/d")) == [("r", CHANGED, "/a/b/c/d")]
    assert CountingDict.lookups == 5  # /a/b/c/d, /a/b/c, /a/b, /a, /


# -- removal ------------------------------------------------------------------------------------------------------


def test_remove_takes_exactly_one_watch() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.CHILD, "/a", "w")
    reg.add(WatchKind.PERSISTENT, "/a", "w")
    reg.add(WatchKind.CHILD, "/a", "other")
    assert reg.remove(WatchKind.CHILD, "/a", "w") is True
    assert reg.remove(WatchKind.CHILD, "/a", "w") is False
    assert reg.remove(WatchKind.CHILD, "/b", "other") is False
    assert reg.count() == 2
    assert fired(reg, (CHILD, "/a")) == [("other", CHILD, "/a"), ("w", CHILD, "/a")]


def test_remove_data_also_removes_exist_but_not_the_reverse() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.EXIST, "/a", "w")
    assert reg.remove(WatchKind.DATA, "/a", "w") is True
    assert reg.count() == 0
    reg.add(WatchKind.DATA, "/a", "w")
    assert reg.remove(WatchKind.EXIST, "/a", "w") is False
    assert reg.count() == 1


def test_remove_persistent_stops_it() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.PERSISTENT_RECURSIVE, "/", "r")
    assert reg.remove(WatchKind.PERSISTENT, "/", "r") is False
    assert reg.remove(WatchKind.PERSISTENT_RECURSIVE, "/", "r") is True
    assert fired(reg, (CREATED, "/x")) == []
    assert reg.count() == 0 and reg.watches_of("r") == frozenset()


def test_remove_any_and_remove_all() -> None:
    reg = WatchRegistry()
    for kind in WatchKind:
        reg.add(kind, "/a", "w")
        reg.add(kind, "/b", "w")
        reg.add(kind, "/a", "keep")
    assert reg.remove_any("/a", "w") is True
    assert reg.remove_any("/a", "w") is False
    assert reg.count() == 2 * len(WatchKind)
    assert reg.remove_all("w") == len(WatchKind)
    assert reg.remove_all("w") == 0
    assert reg.count() == len(WatchKind)
    assert {w for w, _, _ in fired(reg, (DELETED, "/a"), (DELETED, "/b"))} == {"keep"}


def test_stats() -> None:
    reg = WatchRegistry()
    reg.add(WatchKind.DATA, "/a", 1)
    reg.add(WatchKind.DATA, "/b", 1)
    reg.add(WatchKind.DATA, "/b", 2)
    reg.add(WatchKind.PERSISTENT, "/", 2)
    assert reg.count() == len(reg) == 4
    assert reg.count(WatchKind.DATA) == 3 and reg.count(WatchKind.CHILD) == 0
    assert reg.paths(WatchKind.DATA) == {"/a", "/b"}
    assert reg.watchers(WatchKind.DATA, "/b") == (1, 2)
    reg.clear()
    assert reg.count() == 0 and reg.paths(WatchKind.DATA) == frozenset() and reg.watches_of(1) == frozenset()


@pytest.mark.parametrize("path", ["", "a", "a/b", "/a/", "//"])
def test_invalid_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        WatchRegistry().add(WatchKind.DATA, path, "w")


# -- model check --------------------------------------------------------------------------------------------------


class Reference:
    """A brute force: a flat set of watches, scanned in full for every event."""

    def __init__(self) -> None:
        self.watches: set[tuple[WatchKind, str, Hashable]] = set()

    @staticmethod
    def matches(kind: WatchKind, watch_path: str, etype: EventType, path: str) -> bool:
        if kind in (WatchKind.DATA, WatchKind.EXIST):
            return watch_path == path and etype in (CREATED, CHANGED, DELETED)
        if kind is WatchKind.CHILD:
            return watch_path == path and etype in (CHILD, DELETED)
        if kind is WatchKind.PERSISTENT:
            return watch_path == path and etype in (CREATED, CHANGED, DELETED, CHILD)
        under = watch_path == "/" or path == watch_path or path.startswith(watch_path + "/")
        return under and etype in (CREATED, CHANGED, DELETED)

    def trigger(self, events: list[Ev]) -> list[set[Hashable]]:
        per_event = []
        for ev in events:
            hits = {w for w in self.watches if self.matches(w[0], w[1], ev.type, ev.path)}
            self.watches -= {w for w in hits if w[0] in ONE_SHOT}
            per_event.append({w[2] for w in hits})
        return per_event

    def remove(self, kind: WatchKind, path: str, watcher: Hashable) -> bool:
        kinds = {kind, WatchKind.EXIST} if kind is WatchKind.DATA else {kind}
        gone = {w for w in self.watches if w[0] in kinds and w[1] == path and w[2] == watcher}
        self.watches -= gone
        return bool(gone)

    def remove_all(self, watcher: Hashable) -> int:
        gone = {w for w in self.watches if w[2] == watcher}
        self.watches -= gone
        return len(gone)


# "/ab" and "/a/bc" sit next to "/a" and "/a/b" to catch prefix matching done on characters instead of segments.
PATHS = st.sampled_from(["/", "/a", "/b", "/ab", "/a/b", "/a/bc", "/a/b/c", "/b/a"])
KINDS = st.sampled_from(list(WatchKind))
WATCHERS = st.sampled_from(["w0", "w1", "w2"])
EVENTS = st.builds(Ev, st.sampled_from([CREATED, CHANGED, DELETED, CHILD]), PATHS)
OPS = st.one_of(
    st.tuples(st.just("add"), KINDS, PATHS, WATCHERS),
    st.tuples(st.just("remove"), KINDS, PATHS, WATCHERS),
    st.tuples(st.just("remove_all"), WATCHERS),
    st.tuples(st.just("trigger"), st.lists(EVENTS, max_size=5)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_matches_brute_force_reference(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    reg, ref = WatchRegistry(), Reference()
    for zxid, op in enumerate(ops, start=1):
        if op[0] == "add":
            reg.add(op[1], op[2], op[3])
            ref.watches.add((op[1], op[2], op[3]))
        elif op[0] == "remove":
            assert reg.remove(op[1], op[2], op[3]) == ref.remove(op[1], op[2], op[3])
        elif op[0] == "remove_all":
            assert reg.remove_all(op[1]) == ref.remove_all(op[1])
        else:
            events = op[1]
            out = reg.trigger(events, zxid)
            expected = ref.trigger(events)
            # The output is grouped by event, in event order; within a group the order is the registry's own.
            assert len(out) == sum(len(group) for group in expected)
            at = 0
            for ev, group in zip(events, expected):
                chunk = out[at : at + len(group)]
                at += len(group)
                assert {w for w, _ in chunk} == group
                assert all(e == WatchedEvent(ev.type, KeeperState.CONNECTED, ev.path, zxid) for _, e in chunk)
        assert reg.count() == len(ref.watches)
        for kind in WatchKind:
            assert reg.paths(kind) == {w[1] for w in ref.watches if w[0] is kind}


def test_takes_the_trees_own_events() -> None:
    from embedzk.tree.datatree import TreeEvent

    reg = WatchRegistry()
    reg.add(WatchKind.CHILD, "/", "w")
    out = reg.trigger([TreeEvent(CREATED, "/a"), TreeEvent(CHILD, "/")], 3)
    assert out == [("w", WatchedEvent(CHILD, KeeperState.CONNECTED, "/", 3))]
