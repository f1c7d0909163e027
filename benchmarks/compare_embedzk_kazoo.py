"""embedzk through kazoo in compare.py: three embedzk peers serving ZooKeeper's client protocol, driven by kazoo.

The servers are ``embedzk.testing.zkcluster``'s: each peer in a child process of its own (``python -m
embedzk.testing.zkcluster serve``), one ``Peer(id, bind="tcp://127.0.0.1:P", peers={the other two},
data_dir=..., client_address="127.0.0.1:C")`` of a static membership, ports chosen free once and kept across
restarts, LevelDB with sync in a data directory under the run's temporary directory. The peers keep their default
settings; their client settings are ZooKeeper's as compare.py configures its ensemble at tickTime 2000 (so a
kazoo client asking for compare_common.SESSION_TIMEOUT_S, 4 s, is granted 4 s), with no limit on connections and
the same four-letter words, and they log at WARNING, as the JVMs do. A member is its peer's process.

Beside each server runs the same kazoo worker as beside a ZooKeeper server (compare_kazoo.py): the workloads go
through the same client code, so the two systems differ only in the servers.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common
import compare_kazoo

NAME = "embedzk-kazoo"
#: ZooKeeper's client settings of compare.py's ensemble at tickTime 2000, as embedzk's ClientSettings fields.
CLIENT_SETTINGS: dict[str, Any] = {
    "tick_time_ms": 2000,
    "max_client_cnxns": 0,
    "four_letter_words": list(compare_kazoo.FOUR_LETTER_WORDS),
}


class System(compare_kazoo.KazooServers):
    """Three embedzk peers serving ZooKeeper's client protocol, each in its own process, and one kazoo worker
    beside each."""

    name = NAME
    description = (
        "embedzk peers serving ZooKeeper's client protocol: 3 processes (embedzk.testing.zkcluster), static "
        "membership, tcp on loopback, LevelDB with sync, default peer settings, tickTime 2000 for the client "
        f"sessions; kazoo clients in 3 worker processes, session timeout {common.SESSION_TIMEOUT_S:g} s"
    )

    def __init__(self, root: str) -> None:
        sys.path.insert(0, common.REPO)
        from embedzk.testing.zkcluster import EmbedZKCluster

        # The cluster's directory is under the run's temporary one (removed by compare.py at the end); the
        # cluster chooses its ports, once, and keeps them across restarts.
        self.cluster = EmbedZKCluster(
            size=3,
            base_dir=os.path.join(root, NAME),
            client_settings=CLIENT_SETTINGS,
            start_timeout=90.0,
            log_level="WARNING",
        )
        super().__init__([server.client_port for server in self.cluster])

    def check(self) -> None:
        import kazoo  # noqa: F401
        import plyvel  # noqa: F401
        import zmq  # noqa: F401

    def _launch_server(self, i: int) -> None:
        self.launched_at[i] = time.perf_counter()
        self.cluster[i].launch()

    def _server_exited(self, i: int) -> str | None:
        server = self.cluster[i]
        if server.pid is None:
            return "".join(server.get_logs(10))[-600:] or "not running"
        return None

    def member_alive(self, i: int) -> bool:
        return self.cluster[i].pid is not None

    def member_pid(self, i: int) -> int:
        pid = self.cluster[i].pid
        assert pid is not None
        return pid

    def kill_member(self, i: int) -> None:
        self.cluster[i].kill()  # SIGKILL by pid, then reaped; the data stays

    def _stop_servers(self) -> None:
        self.cluster.close()  # SIGKILL of every server by its pid; the directory goes with the run's


if __name__ == "__main__":
    print("part of compare.py: python benchmarks/compare.py --systems embedzk-kazoo", file=sys.stderr)
    sys.exit(2)
