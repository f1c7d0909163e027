"""The peer's loop keeps looking at the network and the clock while it works off a large backlog."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from embedzk._loop import Loop

pytestmark = pytest.mark.timeout(30)

APPLY_S = 0.015  # what one ready costs to apply, in the fake below


class _Transport:
    """No network: receive() waits for wake() or its timeout."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def receive(self, timeout: float) -> list[tuple[str, bytes]]:
        self._event.wait(timeout)
        self._event.clear()
        return []

    def send(self, to: str, frame: bytes) -> bool:
        return True

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        pass


class _Replica:
    """A replica with ``backlog`` readies to work off, each taking APPLY_S to apply; it notes, in order, each ready
    it applied ("r") and each tick ("t")."""

    busy = False

    def __init__(self) -> None:
        self.backlog = 0
        self.events: list[str] = []
        self.drained = threading.Event()

    def has_ready(self) -> bool:
        return self.backlog > 0

    def ready(self) -> Any:
        return SimpleNamespace(record=None, raft=None)

    def advance(self, _rd: Any) -> Any:
        time.sleep(APPLY_S)
        self.events.append("r")
        self.backlog -= 1
        if self.backlog == 0:
            self.drained.set()
        return SimpleNamespace(messages=[], snapshot=None, completions=[])

    def tick(self, _now: float, _wall_ms: int) -> None:
        self.events.append("t")


def test_a_backlog_is_worked_off_between_ticks_not_in_one_go() -> None:
    # A bulk load of a million znodes: the leader applied its backlog in one go, longer than the election timeout,
    # and its followers elected another leader meanwhile. The loop drains for at most one tick interval at a time.
    replica = _Replica()
    loop = Loop(replica, SimpleNamespace(), _Transport(), tick_interval=0.02, on_output=lambda _out: None,  # type: ignore[arg-type]
                name="budget-test")
    loop.start()
    try:
        loop.call(lambda: setattr(replica, "backlog", 40)).result(5)  # 0.6 s of applying, queued at once
        assert replica.drained.wait(20)
        applied = "".join(replica.events)
        applied = applied[applied.index("r"):]
        # However slow the machine, one tick interval holds only a few readies of 15 ms each (without the budget,
        # all 40 went in one go): the counts between ticks are what matters, not the times.
        runs = [len(run) for run in applied.split("t") if run]
        assert max(runs) <= 5, f"readies applied between two ticks: {runs}"
    finally:
        loop.stop()
