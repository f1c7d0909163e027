"""ZooKeeper's own command line, zkCli.sh, against a peer: where it is installed (Debian's package `zookeeper`, which
benchmarks/setup_compare.sh installs); skipped elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from embedzk import Peer

ZKCLI = shutil.which("zkCli.sh") or next(
    (p for p in ("/usr/share/zookeeper/bin/zkCli.sh", "/usr/bin/zkCli.sh") if os.path.exists(p)), None
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(ZKCLI is None, reason="zkCli.sh is not installed (Debian package zookeeper)"),
]

_NOISE = ("Connecting", "WATCHER", "WatchedEvent", "log4j", "SLF4J")


def _cli(address: str, *command: str) -> list[str]:
    assert ZKCLI is not None
    done = subprocess.run(
        [ZKCLI, "-server", address, *command], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if line.strip() and not line.startswith(_NOISE)]


def test_zkcli_creates_reads_lists_and_deletes() -> None:
    with Peer("zkcli", client_address="127.0.0.1:0") as peer:
        address = peer.client_address
        assert address is not None
        _cli(address, "create", "/app", "v1")
        _cli(address, "create", "/app/child", "c")
        assert _cli(address, "get", "/app")[-1] == "v1"
        assert _cli(address, "ls", "/")[-1] == "[app, zookeeper]"
        _cli(address, "set", "/app", "v2")
        assert peer.get("/app")[0] == b"v2"
        stat = _cli(address, "stat", "/app")
        assert "dataVersion = 1" in stat and "numChildren = 1" in stat
        assert _cli(address, "getAllChildrenNumber", "/app")[-1] == "1"
        _cli(address, "deleteall", "/app")
        assert peer.exists("/app") is None
        assert "ip: 127.0.0.1" in _cli(address, "whoami")
