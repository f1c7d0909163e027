"""Testing tools: the deterministic simulator, the linearizability checker, and LocalCluster for users' tests.

``from embedzk.testing import LocalCluster`` runs a whole cluster inside one process (see
:mod:`embedzk.testing.cluster`); ``free_ports(n)`` gives loopback ports for peers in several processes; ``wait_until(predicate)`` waits for a
replicated change to show;
:mod:`embedzk.testing.simulator` and :mod:`embedzk.testing.linearizability` are
what the project's own seeded simulations use. :mod:`embedzk.testing.zkcluster` runs peers in child processes
serving ZooKeeper's client protocol, with the surface of kazoo's test cluster, and
:mod:`embedzk.testing.kazoo_plugin` runs kazoo's own tests (or a user's, on kazoo's harness) against it.
"""

from __future__ import annotations

from typing import Any

from embedzk.testing.ports import free_ports

__all__ = ["LocalCluster", "free_ports", "wait_until"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the simulator does not need the Peer, ZeroMQ or LevelDB.
    if name == "LocalCluster":
        from embedzk.testing.cluster import LocalCluster

        return LocalCluster
    if name == "wait_until":
        from embedzk.testing.cluster import wait_until

        return wait_until
    raise AttributeError(f"module 'embedzk.testing' has no attribute {name!r}")
