"""Watches in the simulation, checked against the committed history of changes.

Each running node has a :class:`~embedzk.tree.watches.WatchRegistry`, as a peer does, fed with what its replica
reports applying (``ReplicaOutput.applied``): a persistent recursive watch on ``/`` from the start, and the one-shot
watches the clients set. :class:`WatchBook` keeps the committed history of changes (the events every replica must
produce at each index; a replica that produces others is reported at once) and, at the end, judges every watch:

* a one-shot watch fires at the first change after it was set that matches it, with that change's event; it is
  *lost* if such a change was applied on its node and it did not fire, *wrong* if it fired at another index;
* the recursive watch sees every non-CHILD event of every index its node applied, in order, none missing and none
  extra (none for a change that is not the committed one).

A snapshot from the leader replaces a node's tree at once: watches cannot be told change by change across it (the
peer synthesises what it can), so the histories above are judged up to the first replacement only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from embedzk.model import EventType
from embedzk.tree import TreeEvent
from embedzk.tree.watches import WatchKind, WatchRegistry

__all__ = ["NodeWatches", "WatchBook"]

_Event = tuple[EventType, str]
_ALL = "recursive /"
_MATCHES = {
    WatchKind.DATA: (EventType.CREATED, EventType.CHANGED, EventType.DELETED),
    WatchKind.EXIST: (EventType.CREATED, EventType.CHANGED, EventType.DELETED),
    WatchKind.CHILD: (EventType.CHILD, EventType.DELETED),
}


@dataclass(slots=True)
class _Watch:
    number: int
    kind: WatchKind
    path: str
    set_at: int
    fired: tuple[int, EventType] | None = None


@dataclass(slots=True)
class NodeWatches:
    """The watches of one run of one node's process."""

    name: str
    start: int
    registry: WatchRegistry = field(default_factory=WatchRegistry)
    watches: dict[int, _Watch] = field(default_factory=dict)
    #: What the recursive watch on / received: (zxid, type, path).
    stream: list[tuple[int, EventType, str]] = field(default_factory=list)
    #: The last index applied change by change (not through a snapshot) since ``start``.
    horizon: int = 0
    replaced: bool = False

    def __post_init__(self) -> None:
        self.registry.add(WatchKind.PERSISTENT_RECURSIVE, "/", _ALL)
        self.horizon = self.start

    def add(self, number: int, kind: WatchKind, path: str, applied: int) -> None:
        """A client sets a one-shot watch while the node has applied ``applied``."""
        if self.replaced:
            return  # judged only up to the first snapshot install
        self.watches[number] = _Watch(number, kind, path, applied)
        self.registry.add(kind, path, number)

    def applied(self, zxid: int, events: tuple[TreeEvent, ...]) -> None:
        """The node applied the change at ``zxid`` with ``events`` (in order)."""
        if self.replaced:
            return
        for watcher, event in self.registry.trigger(events, zxid):
            if watcher == _ALL:
                self.stream.append((zxid, event.type, event.path))
            else:
                assert isinstance(watcher, int)
                watch = self.watches[watcher]
                if watch.fired is None:
                    watch.fired = (zxid, event.type)

    def advanced(self, applied: int) -> None:
        """Everything up to ``applied`` was applied change by change."""
        if not self.replaced:
            self.horizon = applied

    def snapshot_installed(self) -> None:
        """The tree was replaced by a snapshot: stop judging this node's watches here."""
        self.replaced = True


class WatchBook:
    """The committed history of changes, and the watches of every node's runs."""

    def __init__(self, fail: Callable[[str], NoReturn]) -> None:
        self._fail = fail
        #: index -> the events applying the committed entry there triggers.
        self.events: dict[int, tuple[_Event, ...]] = {}
        self.runs: list[NodeWatches] = []

    def start(self, name: str, applied: int) -> NodeWatches:
        """A node's process starts with ``applied`` applied."""
        run = NodeWatches(name, applied)
        self.runs.append(run)
        return run

    def record(self, node_id: str, zxid: int, events: tuple[TreeEvent, ...]) -> None:
        """``node_id`` applied the entry at ``zxid`` and it triggered ``events``: the same everywhere."""
        seen = tuple((e.type, e.path) for e in events)
        known = self.events.setdefault(zxid, seen)
        if known != seen:
            self._fail(f"watch events differ: at zxid {zxid} {node_id} triggers {_show(seen)}, others {_show(known)}")

    def judge(self) -> list[str]:
        """Every problem with the watches of every run."""
        problems: list[str] = []
        for run in self.runs:
            problems.extend(self._judge_run(run))
        return problems

    def _judge_run(self, run: NodeWatches) -> list[str]:
        problems = []
        expected: list[tuple[int, EventType, str]] = [
            (z, etype, path)
            for z in range(run.start + 1, run.horizon + 1)
            for etype, path in self.events.get(z, ())
            if etype is not EventType.CHILD
        ]
        got = [item for item in run.stream if item[0] <= run.horizon]
        if got != expected:
            diff = next((n for n, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            problems.append(
                f"recursive watch on {run.name}: event {diff} is {_item(got, diff)}, the committed history gives "
                f"{_item(expected, diff)}"
            )
        for watch in run.watches.values():
            due = self._first_match(watch, run.horizon)
            if due is None:
                if watch.fired is not None and watch.fired[0] <= run.horizon:
                    problems.append(
                        f"watch {watch.kind.value} on {watch.path} at {run.name} (set at {watch.set_at}) fired at "
                        f"zxid {watch.fired[0]}, where the committed history has no matching change"
                    )
            elif watch.fired is None:
                problems.append(
                    f"watch event lost: {watch.kind.value} watch on {watch.path} at {run.name} (set at "
                    f"{watch.set_at}) did not fire for {due[1].name} at zxid {due[0]}"
                )
            elif watch.fired != due:
                problems.append(
                    f"watch {watch.kind.value} on {watch.path} at {run.name} (set at {watch.set_at}) fired "
                    f"{watch.fired[1].name} at zxid {watch.fired[0]}, the committed history gives {due[1].name} "
                    f"at zxid {due[0]}"
                )
        return problems

    def _first_match(self, watch: _Watch, horizon: int) -> tuple[int, EventType] | None:
        types = _MATCHES[watch.kind]
        for z in range(watch.set_at + 1, horizon + 1):
            for etype, path in self.events.get(z, ()):
                if path == watch.path and etype in types:
                    return (z, etype)
        return None


def _show(events: tuple[_Event, ...]) -> str:
    return "[" + ", ".join(f"{t.name} {p}" for t, p in events) + "]"


def _item(items: Sequence[tuple[int, EventType, str]], n: int) -> str:
    if n >= len(items):
        return "nothing"
    z, etype, path = items[n]
    return f"{etype.name} {path} at zxid {z}"
