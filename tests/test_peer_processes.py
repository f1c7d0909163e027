"""Three peers in three processes over tcp on loopback: writes, sync, watches, ephemerals, leader failover."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from embedzk.testing import free_ports
from tests.peer_process import PeerProcess

pytestmark = pytest.mark.timeout(120)

SESSION_TIMEOUT = 2.0
#: The peers' tick (Peer's default tick_interval): the granularity of the leader's clock for session expiry.
TICK = 0.02
#: How late a process, loop or dispatch thread may run on a loaded machine: added to upper bounds of timings,
#: never to lower ones.
SLACK = 1.0


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[dict[str, PeerProcess]]:
    ids = ["a", "b", "c"]
    addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(ids, free_ports(3))}
    procs: dict[str, PeerProcess] = {}
    try:
        for pid in ids:
            config = {
                "id": pid,
                "bind": addresses[pid],
                "peers": {o: a for o, a in addresses.items() if o != pid},
                "data_dir": str(tmp_path / pid),
                "session_timeout": SESSION_TIMEOUT,
            }
            procs[pid] = PeerProcess(config)
        for proc in procs.values():
            proc.wait_started(60)
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()


def _wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_a_write_on_any_peer_is_visible_on_all_after_sync(cluster: dict[str, PeerProcess]) -> None:
    for writer in cluster.values():
        path = f"/from-{writer.id}"
        assert writer.call("create", path, b"hello " + writer.id.encode()) == path
    for reader in cluster.values():
        reader.call("sync")
        for writer in cluster.values():
            data, stat = reader.call("get", f"/from-{writer.id}")
            assert data == b"hello " + writer.id.encode()
            assert stat["version"] == 0


def test_a_watch_fires_in_another_process(cluster: dict[str, PeerProcess]) -> None:
    a, b = cluster["a"], cluster["b"]
    b.call("watch", "/config")
    a.call("create", "/config", b"v1")
    event = b.events.get(timeout=10)
    assert event["type"] == "CREATED" and event["path"] == "/config"
    a.call("set", "/config", b"v2")
    event = b.events.get(timeout=10)
    assert event["type"] == "CHANGED"
    assert b.call("get", "/config")[0] == b"v2"  # the callback ran after the change was visible


def test_ephemerals_of_a_killed_process_go(cluster: dict[str, PeerProcess]) -> None:
    victim = next(p for p in cluster.values() if not p.call("is_leader"))
    survivor = next(p for p in cluster.values() if p is not victim)
    victim.call("create", "/workers", b"")
    # The leader heard from the victim's session when it proposed this create, at the tick whose wall clock
    # stamped its mtime: the session cannot expire earlier than its timeout after that.
    _path, stat = victim.call("create", "/workers/victim", b"", ephemeral=True, include_data=True)
    # Caught up first, so that the watch sees the deletion and not the creation (applied here after the watch was
    # set, it would fire CREATED first).
    survivor.call("sync")
    survivor.call("watch", "/workers/victim")
    assert survivor.call("get_children", "/workers") == ["victim"]
    victim.kill()
    killed = time.time()  # nothing from the victim reaches the leader after this
    event = survivor.events.get(timeout=30)
    assert (event["type"], event["path"]) == ("DELETED", "/workers/victim")
    assert survivor.call("get_children", "/workers") == []
    # The leader (not the victim) closes the session once its monotonic clock says it was silent for longer than
    # the timeout, looking every tick; the survivor applies the close and runs its watch a commit later. (A tick
    # below: the leader reads its wall clock just after its monotonic one, and may be preempted in between.)
    assert event["t"] - stat["mtime"] / 1000 > SESSION_TIMEOUT - TICK
    assert event["t"] - killed <= SESSION_TIMEOUT + TICK + SLACK


def test_stop_removes_ephemerals_at_once(cluster: dict[str, PeerProcess]) -> None:
    a, b = cluster["a"], cluster["b"]
    a.call("create", "/e", b"", ephemeral=True)
    b.call("sync")
    assert b.call("exists", "/e") is not None
    a.call("stop")
    b.call("sync")
    assert b.call("exists", "/e") is None


def test_after_the_leaders_sigkill_a_new_leader_is_elected_and_writes_resume(cluster: dict[str, PeerProcess]) -> None:
    leader_id = cluster["a"].call("leader")
    assert leader_id in cluster
    cluster[leader_id].call("create", "/before", b"1")
    cluster[leader_id].kill()
    rest = [p for pid, p in cluster.items() if pid != leader_id]
    new_leader = _wait_for(lambda: rest[0].call("leader") not in (None, leader_id) and rest[0].call("leader"))
    assert new_leader != leader_id
    rest[0].call("create", "/after", b"2")
    rest[1].call("sync")
    assert rest[1].call("get", "/before")[0] == b"1"
    assert rest[1].call("get", "/after")[0] == b"2"


def test_every_kind_of_call_across_processes(cluster: dict[str, PeerProcess]) -> None:
    follower = next(p for p in cluster.values() if not p.call("is_leader"))
    other = next(p for p in cluster.values() if p is not follower)
    assert follower.call("ensure_path", "/app/jobs") is None
    first = follower.call("create", "/app/jobs/job-", b"1", sequence=True)
    assert first == "/app/jobs/job-0000000000"
    results = follower.call("transaction", [
        ["create", "/app/jobs/job-", b"2", None, False, True],
        ["set_data", "/app/jobs/job-0000000000", b"1b", 0],
        ["check", "/app/jobs/job-0000000000", 1],
    ])
    assert results[0] == "/app/jobs/job-0000000001" and results[1]["version"] == 1 and results[2] is True
    failed = follower.call("transaction", [["create", "/app/x"], ["check", "/app", 42]])
    assert failed == [{"error": "RolledBackError"}, {"error": "BadVersionError"}]
    with pytest.raises(RuntimeError, match="BadVersionError"):
        follower.call("set", "/app/jobs/job-0000000000", b"", 0)
    with pytest.raises(RuntimeError, match="NodeExistsError"):
        follower.call("create", "/app")
    other.call("sync")
    names, stat = other.call("get_children", "/app/jobs", include_data=True)
    assert sorted(names) == ["job-0000000000", "job-0000000001"] and stat["num_children"] == 2
    assert other.call("get", "/app/jobs/job-0000000000")[0] == b"1b"
    other.call("delete", "/app", recursive=True)
    follower.call("sync")
    assert follower.call("exists", "/app") is None
    stats = follower.call("stats")
    assert stats["role"] == "follower" and stats["znode_count"] >= 1 and stats["state"] == "CONNECTED"


def test_an_observer_process_joins_replicates_and_forwards(cluster: dict[str, PeerProcess], tmp_path: Any) -> None:
    voters = {p.id: p.config["bind"] for p in cluster.values()}
    (port,) = free_ports(1)
    observer = PeerProcess({
        "id": "obs",
        "bind": f"tcp://127.0.0.1:{port}",
        "peers": voters,
        "data_dir": str(tmp_path / "obs"),
        "observer": True,
        "session_timeout": 2.0,
    })
    try:
        observer.wait_started(60)
        assert observer.call("observer") is True
        cluster["a"].call("create", "/seen-by-observer", b"v0")
        observer.call("sync")
        observer.call("data_watch", "/seen-by-observer")
        first = observer.events.get(timeout=10)
        assert first["data"] == {"b64": "djA="}  # b"v0": the DataWatch's first call, with the current data
        cluster["b"].call("set", "/seen-by-observer", b"v1")
        event = observer.events.get(timeout=10)
        assert event["type"] == "CHANGED"
        assert observer.call("create", "/from-observer", b"o") == "/from-observer"
        cluster["c"].call("sync")
        assert cluster["c"].call("get", "/from-observer")[0] == b"o"
        leader = cluster["a"].call("leader")
        assert leader in voters
        stats = cluster[leader].call("stats")
        assert stats["observers"] == ["obs"] and sorted(stats["voters"]) == sorted(voters)
    finally:
        observer.kill()
    cluster["a"].call("create", "/after-observer-died")  # the observer never counted toward the quorum
