"""Seeded simulations of whole clusters under faults, each ending with the safety and linearizability checks.

The default run executes 200 seeds; ``EMBEDZK_SIM_SEEDS=N`` runs N (and ``EMBEDZK_SIM_START=S`` starts at S).
A failing seed prints the one command that replays it.
"""

from __future__ import annotations

import os

import pytest

from embedzk.testing.simulate import run_seed

SEEDS = int(os.environ.get("EMBEDZK_SIM_SEEDS", "200"))
START = int(os.environ.get("EMBEDZK_SIM_START", "0"))
BATCH = 20


@pytest.mark.parametrize("first", range(START, START + SEEDS, BATCH))
def test_seeded_runs(first: int) -> None:
    failures = []
    for seed in range(first, min(first + BATCH, START + SEEDS)):
        problem = run_seed(seed)
        if problem:
            failures.append(problem)
    assert not failures, "\n\n".join(failures)
