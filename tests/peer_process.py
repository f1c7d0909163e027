"""A Peer in a process of its own, driven by tests over its standard input and output.

``python tests/peer_process.py CONFIG_JSON`` starts a Peer and then answers one command per line, one at a time and
in order, over the protocol of :mod:`tests._worker_protocol`. A command is a call of the Peer's API: ``op`` names
the method (or one of the attributes ``leader``, ``is_leader``, ``session_id``, ``state``, ``observer``), ``args``
and ``kwargs`` its arguments; besides, ``watch`` (path, recursive) and ``data_watch`` (path) report watch events
as ``{"event": {...}}`` lines, and ``transaction`` (a list of ``[method, *args]``) commits a transaction. The test
side is :class:`PeerProcess`, which always kills what it started (by pid) when it is done.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

if __name__ == "__main__":
    # Started as ``python tests/<script>.py`` (tests._worker_protocol.WorkerProcess): Python put tests/ first on
    # sys.path, not the repository's root. Put the root first, as pytest does for the test modules (see
    # tests/conftest.py), so that the helpers (tests._worker_protocol) and embedzk come from this checkout.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests._worker_protocol import WorkerProcess, emit, encode, serve, start_peer

ATTRIBUTES = ("leader", "is_leader", "session_id", "state", "observer")

# ----------------------------------------------------------------------------------------------------------------
# the child


def _child(config: dict[str, Any]) -> None:
    peer = start_peer(config, 30.0, observer=False, session_timeout=10.0)
    receivers = []

    def handle(cmd: dict[str, Any]) -> Any:
        op, args, kwargs = cmd["op"], cmd.get("args", []), cmd.get("kwargs", {})
        if op == "watch":
            path = args[0]

            def receiver(sender: Any, event: Any, path: str = path) -> None:
                emit({"event": {"watch": path, "type": event.type.value, "path": event.path, "zxid": event.zxid,
                                "t": time.time()}})

            receivers.append(receiver)
            peer.watch(path, recursive=kwargs.get("recursive", False)).connect(receiver, weak=False)
            return None
        if op == "transaction":
            t = peer.transaction()
            for name, *op_args in args[0]:
                getattr(t, name)(*op_args)
            return t.commit()
        if op == "data_watch":
            path = args[0]

            def on_data(data: Any, stat: Any, event: Any, path: str = path) -> None:
                emit({"event": {"watch": path, "type": event.type.value if event else None, "path": path,
                                "data": encode(data), "t": time.time()}})

            peer.DataWatch(path, on_data)
            return None
        if op in ATTRIBUTES:
            return getattr(peer, op)
        return getattr(peer, op)(*args, **kwargs)

    serve(peer, handle)


# ----------------------------------------------------------------------------------------------------------------
# the test side


class PeerProcess(WorkerProcess):
    """A child process running one Peer; call its methods with :meth:`call`."""

    script = os.path.abspath(__file__)

    def call(self, op: str, *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Run ``peer.op(*args, **kwargs)`` in the child; raise RuntimeError naming the child's error."""
        return self.request(op, timeout, args=list(args), kwargs=kwargs)


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
