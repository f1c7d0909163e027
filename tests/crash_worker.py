"""A Peer in a process of its own, for the crash tests: killed with SIGKILL, restarted on its data_dir.

``python tests/crash_worker.py CONFIG_JSON`` starts a Peer and speaks the protocol of :mod:`tests._worker_protocol`:
a Peer that refuses to start (a locked, corrupt or foreign data_dir) is reported as ``start_error`` and the child
exits with status :data:`START_FAILED`: a refusal to start is an answer, not a crash. Its commands (``create``,
``set``, ``get``, ``values``, ``check``, ``sync``, ``stats``, ``leader``: positional ``args``) run concurrently on a
pool of threads (a write waiting for a new leader does not hold up a ``stats``), so answers may come out of order;
:class:`CrashPeer` matches them to their calls by id. At the end of its stdin the child stops without closing its
session, as a crash would.

The test side, :class:`CrashPeer`, kills only the process it started, by pid.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

if __name__ == "__main__":
    # Started as ``python tests/<script>.py`` (tests._worker_protocol.WorkerProcess): Python put tests/ first on
    # sys.path, not the repository's root. Put the root first, as pytest does for the test modules (see
    # tests/conftest.py), so that the helpers (tests._worker_protocol) and embedzk come from this checkout.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests._worker_protocol import (  # some re-exported, for the tests
    START_FAILED,
    PeerGone,
    StartFailed,
    WorkerProcess,
    serve,
    start_peer,
)

__all__ = ["START_FAILED", "CrashPeer", "PeerGone", "StartFailed"]

# ----------------------------------------------------------------------------------------------------------------
# the child


def _child(config: dict[str, Any]) -> None:
    from embedzk.errors import NoNodeError

    if "snapshot_step_bytes" in config:
        # Make snapshots of these small trees go out in many parts, as a big tree's do.
        from embedzk.replica import snapshots

        snapshots.STEP_BYTES = config["snapshot_step_bytes"]
        snapshots.CHUNK_BYTES = max(128, config["snapshot_step_bytes"] // 2)

    peer = start_peer(config, 30.0, cluster="embedzk", session_timeout=10.0, snapshot_entries=10_000,
                      request_timeout=10.0)

    def stats() -> dict[str, Any]:
        s = peer.stats()
        keys = ("role", "term", "leader", "commit_index", "applied_index", "snapshot_index", "znode_count", "digest")
        return {k: s.get(k) for k in keys}

    def read(path: str) -> str | None:
        try:
            return peer.get(path)[0].decode()
        except NoNodeError:
            return None

    def check(expected: list[list[str]]) -> list[list[Any]]:
        """The (path, expected, found) of every expected value this peer does not hold."""
        wrong = []
        for path, value in expected:
            found = read(path)
            if found != value:
                wrong.append([path, value, found])
        return wrong

    ops: dict[str, Callable[..., Any]] = {
        "create": lambda path, value: peer.create(path, value.encode()),
        "set": lambda path, value: peer.set(path, value.encode()).version,
        "get": read,
        "values": lambda paths: {p: read(p) for p in paths},
        "check": check,
        "sync": lambda: peer.sync(),
        "stats": stats,
        "leader": lambda: peer.leader,
    }

    serve(peer, lambda cmd: ops[cmd["op"]](*cmd.get("args", [])), threads=8,
          at_end=lambda: peer.stop(close_session=False))


# ----------------------------------------------------------------------------------------------------------------
# the test side


class CrashPeer(WorkerProcess):
    """One child process running a Peer; :meth:`call` is safe from several threads at once."""

    script = os.path.abspath(__file__)

    def call(self, op: str, *args: Any, timeout: float = 15.0) -> Any:
        """Run ``op`` in the child; RuntimeError("Name: message") for the child's errors, PeerGone if it died."""
        return self.request(op, timeout, args=list(args))


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
