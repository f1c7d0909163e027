"""What every test module may rely on: how the test suite finds the library and its own helpers.

``tests`` is a package (``tests/__init__.py``) and this file is its conftest, so before pytest imports this file or
any test module it puts the directory above the package, the repository's root, first on ``sys.path`` (its default
``prepend`` import mode). Hence, with no ``sys.path`` edit anywhere in a test module:

* the library is ``embedzk``: installed with ``pip install -e .``, and in any case taken from this checkout, whose
  root comes first;
* the helpers shared by several test modules are modules of the package ``tests``, imported by their full name:
  ``from tests.raft_harness import Network`` (the Raft harness), ``from tests.peer_process import PeerProcess``
  (a Peer in a child process), and so on. A module named ``test_*.py`` holds tests only; a helper is named
  otherwise.

The scripts that tests start as child processes (``tests/crash_worker.py``, ``tests/peer_process.py``,
``tests/recipe_worker.py``, each run as ``python tests/<script>.py CONFIG_JSON`` by
``tests._worker_protocol.WorkerProcess``) are not imported by pytest: Python puts the script's own directory,
``tests/``, first on ``sys.path``, not the root. Each of them puts the root first itself, in the same few lines
under ``if __name__ == "__main__":``, before it imports ``tests._worker_protocol``: the child then imports
``embedzk`` and the helpers from this checkout, as the tests that started it do.

A test module that wants to run as a program as well is run as a module from the root:
``python -m tests.test_raft_random 0 100``.
"""

from __future__ import annotations

from pathlib import Path

import embedzk

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header() -> list[str]:
    """Name, at the top of the run, the embedzk that the tests import (a stale install shows here)."""
    location = Path(embedzk.__file__).resolve().parent
    where = "this checkout" if location.parent == ROOT else "NOT this checkout"
    return [f"embedzk: {location} ({where})"]
