"""The examples the README points to run to completion and succeed (each checks itself: exit status 0)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ["shared_config.py", "leader_election.py", "group_membership.py", "distributed_lock.py", "rolling_fleet.py"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs(example: str) -> None:
    path = os.path.join(ROOT, "examples", example)
    proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()  # the example kills its own workers by pid when it ends; this is the last resort
            proc.wait()
    assert proc.returncode == 0, out
