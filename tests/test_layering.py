"""The house's layering: the pure core imports without the runtime, and the core never depends on persistence."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "modules",
    ["embedzk.consensus, embedzk.tree, embedzk.codec", "embedzk.replica, embedzk.membership",
     "embedzk.testing.simulator"],
)
def test_the_pure_parts_import_without_zmq_plyvel_or_the_peer(modules: str) -> None:
    loaded = _loaded_after(f"import {modules}")
    assert not {"zmq", "plyvel", "embedzk.peer", "embedzk._loop"} & loaded


def test_the_consensus_core_does_not_depend_on_persistence() -> None:
    loaded = _loaded_after("import embedzk.consensus")
    assert not {m for m in loaded if m.startswith("embedzk.persist")}


def test_the_public_names_still_load() -> None:
    loaded = _loaded_after("from embedzk import Peer, Lock, KeeperState")
    assert {"embedzk.peer", "embedzk.recipes"} <= loaded
