"""The Raft scenarios of ``tests/testdata/raft``: each file's trace must come out as written (see
:mod:`tests.raft_scenarios` for the format, and for how to add a scenario or rewrite the traces with
``EMBEDZK_REWRITE=1``); and the runner itself reports a changed trace as a readable diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.raft_scenarios import REWRITE_ENV, ScenarioError, run_file, run_text

SCENARIOS = sorted((Path(__file__).parent / "testdata" / "raft").glob("*.txt"))


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 5


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    mismatches = run_file(path, rewrite=os.environ.get(REWRITE_ENV) == "1")
    if mismatches:
        diffs = "\n\n".join(m.diff(path.name) for m in mismatches)
        pytest.fail(
            f"{len(mismatches)} trace(s) of {path.name} changed (once the new trace is checked against the rule "
            f"the scenario tests, take it with {REWRITE_ENV}=1):\n\n{diffs}",
            pytrace=False,
        )


SMALL = """\
# one node
add-nodes a
----
a: follower Term:0 Lead:- Vote:- Commit:0 Applied:0 LastIndex:0

campaign a
----
{campaign}
"""


def test_a_changed_trace_fails_with_a_diff_naming_the_command(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text(SMALL.format(campaign="a became follower at term 7"))
    (mismatch,) = run_file(path)
    diff = mismatch.diff("small.txt")
    assert diff.splitlines()[0] == "small.txt:6: campaign a"
    assert "-a became follower at term 7" in diff
    assert "+a became candidate at term 1" in diff


def test_rewrite_takes_the_trace_and_keeps_the_comments(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_text(SMALL.format(campaign="stale"))
    assert run_file(path, rewrite=True) == []
    assert path.read_text() == SMALL.format(campaign="a became candidate at term 1")
    assert run_file(path) == []


@pytest.mark.parametrize(
    "text, error",
    [
        ("campaign a\n----\nok\n", "add-nodes first"),
        ("add-nodes a\n----\nok\n\nfly a\n----\nok\n", "unknown command 'fly'"),
        ("add-nodes a colour=red\n----\nok\n", "unknown option(s): colour"),
        ("add-nodes a\nok\n", "not followed by a line '----'"),
    ],
)
def test_a_bad_scenario_is_refused_with_its_line(text: str, error: str) -> None:
    with pytest.raises(ScenarioError, match=error.replace("(", r"\(").replace(")", r"\)")):
        run_text(text, "bad.txt")
