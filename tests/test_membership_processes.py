"""A member is its id and its disk, tried with real processes over tcp and LevelDB, as a new user would.

* voters a, b, c; c stops; a write W commits on a and b; a and b stop; b's data directory is deleted (a container
  restarted on a fresh disk); b and c start: b is a new member and must not vote in b's place, so no leader forms
  without a, and W survives once a is back;
* a developer's solo data directory reused by a member of a three-voter cluster is refused, naming both;
* a second live process claiming a member's id with another disk is refused, naming the id.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedzk.testing import free_ports
from tests._worker_protocol import StartFailed
from tests.peer_process import PeerProcess

pytestmark = pytest.mark.timeout(180)


class _Cluster:
    """Static members a, b, c over tcp on loopback, each with a data directory under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids = ["a", "b", "c"]
        self.addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(self.ids, free_ports(3))}
        self.procs: dict[str, PeerProcess] = {}
        self.spawned: list[PeerProcess] = []

    def config(self, pid: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": pid,
            "bind": self.addresses[pid],
            "peers": {o: a for o, a in self.addresses.items() if o != pid},
            "data_dir": str(self.root / pid),
            "session_timeout": 2.0,
            **extra,
        }

    def start(self, pid: str, **extra: Any) -> PeerProcess:
        proc = PeerProcess(self.config(pid, **extra))
        self.procs[pid] = proc
        self.spawned.append(proc)
        return proc

    def stop(self, pid: str) -> None:
        self.procs.pop(pid).close()

    def kill_all(self) -> None:
        for proc in self.spawned:
            proc.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[_Cluster]:
    c = _Cluster(tmp_path)
    try:
        yield c
    finally:
        c.kill_all()


def test_a_voter_back_on_a_wiped_disk_never_votes_a_committed_write_away(cluster: _Cluster) -> None:
    for pid in cluster.ids:
        cluster.start(pid)
    for proc in cluster.procs.values():
        proc.wait_started(60)
    old_b = cluster.procs["b"].call("stats")["member_key"]
    cluster.stop("c")
    a, b = cluster.procs["a"], cluster.procs["b"]
    a.call("create", "/w", b"committed on a and b")
    b.call("sync")
    assert b.call("get", "/w")[0] == b"committed on a and b"
    cluster.stop("a")
    cluster.stop("b")
    shutil.rmtree(cluster.root / "b")

    # b comes back on a fresh disk, c with its own (which lacks W): b is a new member and cannot vote as b, so
    # the two of them must not elect anyone.
    b = cluster.start("b", start_timeout=120)
    c = cluster.start("c", start_timeout=120)
    for proc in (b, c):
        with pytest.raises(TimeoutError):
            proc.wait_started(4)
    # a comes back: a and c form the majority of a, old b, c; a's log holds W, so W stays; b joins as new.
    a = cluster.start("a")
    for proc in (a, b, c):
        proc.wait_started(60)
    for proc in (a, b, c):
        proc.call("sync")
        assert proc.call("get", "/w")[0] == b"committed on a and b"
    members = a.call("members")
    assert sorted(members) == ["a", "b", "c"] and all(m["voter"] for m in members.values())
    assert members["b"]["key"] != old_b and members["b"]["key"].startswith("b@")
    digests = {proc.call("stats")["digest"] for proc in (a, b, c)}
    assert len(digests) == 1
    a.call("create", "/after", b"x")  # and the cluster goes on
    c.call("sync")
    assert c.call("get", "/after")[0] == b"x"


def test_a_solo_data_directory_reused_in_a_cluster_is_refused(cluster: _Cluster, tmp_path: Path) -> None:
    solo = PeerProcess({"id": "a", "bind": cluster.addresses["a"], "peers": {}, "data_dir": str(cluster.root / "a")})
    cluster.spawned.append(solo)
    solo.wait_started(30)
    solo.call("create", "/mine", b"a developer's data")
    solo.close()

    for pid in ("b", "c"):
        cluster.start(pid)
    a = cluster.start("a")
    with pytest.raises(StartFailed) as refused:
        a.wait_started(30)
    assert refused.value.name == "ConfigurationError"
    assert "['a']" in refused.value.message and "['a', 'b', 'c']" in refused.value.message
    # b and c are a majority of the three configured voters: they run the cluster, without a's solo data.
    for pid in ("b", "c"):
        cluster.procs[pid].wait_started(60)
    b = cluster.procs["b"]
    assert b.call("exists", "/mine") is None
    assert sorted(b.call("members")) == ["b", "c"]


def test_a_second_live_process_claiming_an_id_with_another_disk_is_refused(cluster: _Cluster) -> None:
    for pid in cluster.ids:
        cluster.start(pid)
    for proc in cluster.procs.values():
        proc.wait_started(60)
    [other_port] = free_ports(1)
    impostor = PeerProcess(
        {
            "id": "b",
            "bind": f"tcp://127.0.0.1:{other_port}",
            "peers": {"a": cluster.addresses["a"], "c": cluster.addresses["c"]},
            "data_dir": str(cluster.root / "b-elsewhere"),
            "start_timeout": 30,
        }
    )
    cluster.spawned.append(impostor)
    with pytest.raises(StartFailed) as refused:
        impostor.wait_started(40)
    assert refused.value.name == "ConfigurationError"
    assert "'b'" in refused.value.message and "in use by a live member" in refused.value.message
    # The real b was never disturbed.
    b = cluster.procs["b"]
    assert b.call("state") == "CONNECTED"
    b.call("create", "/still-b", b"")
