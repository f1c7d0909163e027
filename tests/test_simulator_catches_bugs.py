"""The simulator's checks must catch real bugs: inject some and watch them fail.

A simulator whose checks never fail proves nothing; these tests break the system on purpose, in ways that a
careless implementation could, and require that some seed among the first few dozen reports it.
"""

from __future__ import annotations

from typing import Any

import pytest

from embedzk.replica.replica import Replica, _read_ctx
from embedzk.testing.simulate import run_seed
from embedzk.testing.simulator import SimNode

pytestmark = pytest.mark.timeout(300)


def _first_failure(seeds: range, profile: str = "") -> str | None:
    for seed in seeds:
        problem = run_seed(seed, profile=profile)
        if problem:
            return problem
    return None


def test_sync_that_does_not_wait_for_the_read_index_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bug: sync() answers at once, as if the local replica were always up to date.
    def ask_nobody(self: Replica, pending: Any) -> None:
        self._on_read_state(0, _read_ctx(self.id, pending.request_id))

    monkeypatch.setattr(Replica, "_ask_read_index", ask_nobody)
    problem = _first_failure(range(60))
    assert problem is not None, "a sync that reads stale data went unnoticed in 60 seeds"
    assert "linearizable" in problem or "sequentially consistent" in problem
    assert "replay: python -m embedzk.testing.simulate --seed" in problem


def test_a_disk_that_loses_acknowledged_entries_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bug: a write is acknowledged before it is synced, so a crash loses the last append (no fsync).
    original_start = SimNode.start
    original_crash = SimNode.crash

    def start(self: SimNode) -> None:
        disk = self.disk
        original_append = disk.append

        def append(entries: Any, hard_state: Any = None) -> None:
            self.unsynced_image = disk.clone()  # type: ignore[attr-defined]
            original_append(entries, hard_state)

        disk.append = append  # type: ignore[method-assign]
        original_start(self)

    def crash(self: SimNode) -> None:
        image = getattr(self, "unsynced_image", None)
        if image is not None:
            self.disk = image
            self.unsynced_image = None  # type: ignore[attr-defined]
        original_crash(self)

    monkeypatch.setattr(SimNode, "start", start)
    monkeypatch.setattr(SimNode, "crash", crash)
    # A bug of crashes, hunted on crash-heavy runs (crashes only, almost three times as often): under the seeds'
    # own profiles it takes about 40 seeds and 2 minutes.
    problem = _first_failure(range(40), profile="crash-heavy")
    assert problem is not None, "writes lost in crashes went unnoticed in 40 crash-heavy seeds"
    assert "--profile crash-heavy" in problem  # the replay command names the profile
