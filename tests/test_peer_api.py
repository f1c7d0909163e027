"""Every call of API.md on a solo Peer and on a LocalCluster: results, Stat fields, errors, async twins, life cycle."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from embedzk import (
    BadArgumentsError,
    BadVersionError,
    ConfigurationError,
    EmbedZKError,
    KeeperState,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    Peer,
    PeerStoppedError,
    RolledBackError,
    RuntimeInconsistencyError,
    Stat,
    StorageError,
)
from embedzk.testing.cluster import LocalCluster, wait_until

pytestmark = pytest.mark.timeout(60)

_names = itertools.count()

#: ReplicaConfig.reap_interval: how often the leader looks for containers and TTL nodes to reap.
REAP_INTERVAL = 1.0
#: The peer's tick (Peer's default tick_interval): the granularity of the leader's clock for expiry and reaping.
TICK = 0.02
#: How late a loop or dispatch thread may run on a loaded machine: added to upper bounds of timings, never to
#: lower ones (those are exact).
SLACK = 1.0


def wait_gone(peers: list[Peer], path: str, timeout: float = 30.0) -> dict[str, float]:
    """Poll every peer until ``path`` is gone on each; the wall-clock time each first saw it gone."""
    gone: dict[str, float] = {}

    def all_gone() -> bool:
        for peer in peers:
            if peer.id not in gone and peer.exists(path) is None:
                gone[peer.id] = time.time()
        return len(gone) == len(peers)

    wait_until(all_gone, timeout=timeout, interval=0.005, what=f"{path} is gone on every peer")
    return gone


@pytest.fixture(scope="module")
def solo() -> Iterator[Peer]:
    with Peer("solo") as peer:
        yield peer


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n=3) as c:
        yield c


@pytest.fixture
def root(solo: Peer) -> str:
    """A fresh, existing path per test, so tests sharing the module's peer never meet."""
    path = f"/t{next(_names)}"
    solo.create(path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# create, in every mode


def test_create_returns_the_path_and_get_returns_data_and_a_full_stat(solo: Peer, root: str) -> None:
    before = int(time.time() * 1000)
    assert solo.create(f"{root}/a", b"hello") == f"{root}/a"
    data, stat = solo.get(f"{root}/a")
    after = int(time.time() * 1000)
    assert data == b"hello"
    assert isinstance(stat, Stat)
    assert stat.version == 0 and stat.cversion == 0 and stat.aversion == 0
    assert stat.data_length == 5 and stat.num_children == 0 and stat.ephemeral_owner == 0
    assert stat.czxid == stat.mzxid == stat.pzxid > 0
    assert before - 1000 <= stat.ctime == stat.mtime <= after + 1000  # milliseconds since the epoch
    parent = solo.exists(root)
    assert parent is not None and parent.num_children == 1 and parent.cversion == 1 and parent.pzxid == stat.czxid


def test_create_errors(solo: Peer, root: str) -> None:
    solo.create(f"{root}/a")
    with pytest.raises(NodeExistsError):
        solo.create(f"{root}/a")
    with pytest.raises(NoNodeError):
        solo.create(f"{root}/missing/child")
    assert solo.exists(f"{root}/missing") is None


def test_create_makepath_creates_the_missing_ancestors(solo: Peer, root: str) -> None:
    assert solo.create(f"{root}/x/y/z", b"leaf", makepath=True) == f"{root}/x/y/z"
    assert solo.get(f"{root}/x")[0] == b""
    assert solo.get_children(f"{root}/x/y") == ["z"]
    assert solo.get(f"{root}/x/y/z")[0] == b"leaf"


def test_create_sequence_appends_a_ten_digit_counter(solo: Peer, root: str) -> None:
    first = solo.create(f"{root}/job-", b"", sequence=True)
    second = solo.create(f"{root}/job-", b"", sequence=True)
    other = solo.create(f"{root}/", b"", sequence=True)
    assert first == f"{root}/job-0000000000"
    assert second == f"{root}/job-0000000001"
    assert other == f"{root}/0000000002"  # the counter is the parent's cversion, shared by every prefix
    assert sorted(solo.get_children(root)) == ["0000000002", "job-0000000000", "job-0000000001"]


def test_create_ephemeral_is_owned_by_the_session_and_cannot_have_children(solo: Peer, root: str) -> None:
    path = solo.create(f"{root}/e", b"", ephemeral=True)
    stat = solo.exists(path)
    assert stat is not None and stat.ephemeral_owner == solo.session_id != 0
    with pytest.raises(NoChildrenForEphemeralsError):
        solo.create(f"{path}/child")
    seq = solo.create(f"{root}/es-", b"", ephemeral=True, sequence=True)
    assert seq == f"{root}/es-0000000001"
    assert solo.exists(seq).ephemeral_owner == solo.session_id  # type: ignore[union-attr]


def test_create_include_data_returns_the_path_and_its_stat(solo: Peer, root: str) -> None:
    path, stat = solo.create(f"{root}/d", b"abc", include_data=True)
    assert path == f"{root}/d" and stat == solo.exists(path) and stat.data_length == 3


def test_create_refuses_an_acl_that_is_not_one_and_creates_nothing(solo: Peer, root: str) -> None:
    from embedzk.errors import InvalidACLError
    from embedzk.security import OPEN_ACL_UNSAFE

    with pytest.raises(InvalidACLError, match="entry 0"):
        solo.create(f"{root}/acl", b"", acl=[object()])
    assert solo.exists(f"{root}/acl") is None
    assert solo.create(f"{root}/acl", b"", acl=OPEN_ACL_UNSAFE) == f"{root}/acl"  # kazoo's default, open to all


def test_a_container_goes_once_its_last_child_is_gone(solo: Peer, root: str) -> None:
    container = solo.create(f"{root}/c", b"", container=True)
    empty = solo.create(f"{root}/b-never-had-children", b"", container=True)
    solo.create(f"{container}/child")
    # A container that lost its only child, reaped at the leader's next look: once it is gone, that look (which
    # proposes its reapings in path order, so the container before it first) has passed over the others.
    sentinel = solo.create(f"{root}/d-sentinel", b"", container=True)
    solo.create(f"{sentinel}/child")
    solo.delete(f"{sentinel}/child")
    deleted = time.time()
    gone = wait_gone([solo], sentinel)[solo.id]
    assert gone - deleted <= REAP_INTERVAL + TICK + SLACK
    assert solo.exists(container) is not None  # a container with a child stays
    assert solo.exists(empty) is not None  # ZooKeeper reaps only containers that had children
    solo.delete(f"{container}/child")
    deleted = time.time()
    gone = wait_gone([solo], container)[solo.id]
    assert gone - deleted <= REAP_INTERVAL + TICK + SLACK
    assert solo.exists(empty) is not None


def test_a_ttl_node_goes_once_unmodified_for_its_ttl(solo: Peer, root: str) -> None:
    # Named to sort before the TTL node: the leader proposes one look's reapings in path order, so had it wrongly
    # reaped this one, that would show by the time the other is gone.
    kept = solo.create(f"{root}/kept", b"", ttl=0.5)
    solo.create(f"{kept}/child")  # a TTL node with children stays
    path, stat = solo.create(f"{root}/ttl", b"v", ttl=1.0, include_data=True)
    gone = wait_gone([solo], path)[solo.id]
    # The leader reaps a TTL node once its clock (the wall clock that stamped mtime) says it went unmodified for
    # longer than its TTL, looking every reap interval: never before, at most one look (and a tick) after.
    unmodified = gone - stat.mtime / 1000
    assert 1.0 < unmodified <= 1.0 + REAP_INTERVAL + TICK + SLACK, unmodified
    assert solo.exists(kept) is not None


def test_ttl_and_container_argument_errors(solo: Peer, root: str) -> None:
    for bad in (0, -1, True, "1"):
        with pytest.raises(BadArgumentsError, match="ttl"):
            solo.create(f"{root}/bad", b"", ttl=bad)
    with pytest.raises(BadArgumentsError, match="ttl"):
        solo.create(f"{root}/bad", b"", ttl=1, ephemeral=True)
    with pytest.raises(BadArgumentsError, match="container"):
        solo.create(f"{root}/bad", b"", container=True, ephemeral=True)
    assert solo.exists(f"{root}/bad") is None


# ----------------------------------------------------------------------------------------------------------------
# reads


def test_get_exists_get_children(solo: Peer, root: str) -> None:
    with pytest.raises(NoNodeError):
        solo.get(f"{root}/none")
    assert solo.exists(f"{root}/none") is None
    with pytest.raises(NoNodeError):
        solo.get_children(f"{root}/none")
    for name in ("b", "a", "c"):
        solo.create(f"{root}/{name}", name.encode())
    assert sorted(solo.get_children(root)) == ["a", "b", "c"]
    names, stat = solo.get_children(root, include_data=True)
    assert sorted(names) == ["a", "b", "c"] and stat.num_children == 3 and stat == solo.exists(root)
    assert solo.get_children(f"{root}/a") == []


# ----------------------------------------------------------------------------------------------------------------
# set and delete, with versions


def test_set_with_versions(solo: Peer, root: str) -> None:
    path = solo.create(f"{root}/v", b"0")
    stat = solo.set(path, b"1")
    assert stat.version == 1 and stat.data_length == 1 and stat.mzxid > stat.czxid
    assert solo.set(path, b"22", version=1).version == 2
    with pytest.raises(BadVersionError):
        solo.set(path, b"x", version=1)
    assert solo.get(path) == (b"22", solo.exists(path))
    with pytest.raises(NoNodeError):
        solo.set(f"{root}/none", b"x")


def test_delete_with_versions_and_its_errors(solo: Peer, root: str) -> None:
    path = solo.create(f"{root}/v", b"0")
    solo.set(path, b"1")
    with pytest.raises(BadVersionError):
        solo.delete(path, version=0)
    solo.create(f"{path}/child")
    with pytest.raises(NotEmptyError):
        solo.delete(path)
    solo.delete(f"{path}/child")
    assert solo.delete(path, version=1) is None
    assert solo.exists(path) is None
    with pytest.raises(NoNodeError):
        solo.delete(path)


def test_recursive_delete_removes_a_whole_subtree_at_once(solo: Peer, root: str) -> None:
    for leaf in ("a/b/c", "a/b/d", "a/e", "a/f/g/h"):
        solo.create(f"{root}/{leaf}", b"", makepath=True)
    solo.create(f"{root}/keep")
    solo.delete(f"{root}/a", recursive=True)
    assert solo.exists(f"{root}/a") is None
    assert solo.get_children(root) == ["keep"]
    with pytest.raises(NoNodeError):
        solo.delete(f"{root}/a", recursive=True)
    solo.create(f"{root}/versioned/x", makepath=True)
    with pytest.raises(BadVersionError):
        solo.delete(f"{root}/versioned", version=5, recursive=True)
    assert solo.exists(f"{root}/versioned/x") is not None  # all or nothing


def test_ensure_path(solo: Peer, root: str) -> None:
    assert solo.ensure_path(f"{root}/p/q/r") is None
    assert solo.exists(f"{root}/p/q/r") is not None
    stat = solo.exists(f"{root}/p/q/r")
    solo.ensure_path(f"{root}/p/q/r")  # idempotent
    assert solo.exists(f"{root}/p/q/r") == stat
    solo.ensure_path(root)


# ----------------------------------------------------------------------------------------------------------------
# transactions


def test_transaction_results_have_kazoos_shapes(solo: Peer, root: str) -> None:
    solo.create(f"{root}/old", b"")
    solo.create(f"{root}/data", b"0")
    t = solo.transaction()
    t.create(f"{root}/new", b"n")
    t.create(f"{root}/seq-", b"", sequence=True)
    t.delete(f"{root}/old")
    t.set_data(f"{root}/data", b"1", version=0)
    t.check(f"{root}/data", 1)
    results = t.commit()
    assert results[0] == f"{root}/new"
    assert results[1].startswith(f"{root}/seq-") and len(results[1]) == len(f"{root}/seq-") + 10
    assert results[2] is True
    assert isinstance(results[3], Stat) and results[3].version == 1
    assert results[4] is True
    assert solo.get(f"{root}/data")[0] == b"1" and solo.exists(f"{root}/old") is None


def test_a_failed_transaction_changes_nothing_and_reports_error_instances(solo: Peer, root: str) -> None:
    solo.create(f"{root}/data", b"0")
    before = solo.exists(f"{root}/data")
    t = solo.transaction()
    t.create(f"{root}/new", b"")
    t.set_data(f"{root}/data", b"1")
    t.check(f"{root}/data", 7)  # fails
    t.delete(f"{root}/data")
    results = t.commit()
    assert [type(r) for r in results] == [
        RolledBackError, RolledBackError, BadVersionError, RuntimeInconsistencyError
    ]
    assert all(isinstance(r, EmbedZKError) for r in results)
    assert solo.exists(f"{root}/new") is None
    assert solo.exists(f"{root}/data") == before


def test_transaction_as_a_context_manager_commits_once(solo: Peer, root: str) -> None:
    with solo.transaction() as t:
        t.create(f"{root}/a")
        t.create(f"{root}/a/b")
    assert t.committed and solo.exists(f"{root}/a/b") is not None
    with pytest.raises(ValueError):
        t.commit()


def test_transaction_bad_input_is_refused_at_once(solo: Peer, root: str) -> None:
    t = solo.transaction()
    with pytest.raises(BadArgumentsError):
        t.set_data(f"{root}/x", "text")  # type: ignore[arg-type]
    with pytest.raises(BadArgumentsError):
        t.check(f"{root}/x", -5)
    with pytest.raises(BadArgumentsError):
        t.create(f"{root}/x", None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------
# the *_async twins


def test_every_call_has_an_async_twin_returning_a_future(solo: Peer, root: str) -> None:
    def result(future: Any) -> Any:
        assert isinstance(future, concurrent.futures.Future)
        return future.result(10)

    assert result(solo.create_async(f"{root}/a", b"1")) == f"{root}/a"
    assert result(solo.create_async(f"{root}/b", b"", include_data=True))[0] == f"{root}/b"
    data, stat = result(solo.get_async(f"{root}/a"))
    assert data == b"1" and stat.version == 0
    assert result(solo.exists_async(f"{root}/a")) == stat
    assert result(solo.exists_async(f"{root}/none")) is None
    assert sorted(result(solo.get_children_async(root))) == ["a", "b"]
    assert result(solo.get_children_async(root, include_data=True))[1].num_children == 2
    assert result(solo.set_async(f"{root}/a", b"2", version=0)).version == 1
    assert result(solo.delete_async(f"{root}/b")) is None
    assert result(solo.ensure_path_async(f"{root}/p/q")) is None
    assert result(solo.ensure_path_async(f"{root}/p/q")) is None
    assert result(solo.sync_async()) is None
    t = solo.transaction()
    t.create(f"{root}/t")
    assert result(t.commit_async()) == [f"{root}/t"]
    assert result(solo.stats_async())["znode_count"] >= 5
    solo.create(f"{root}/r/s/t", makepath=True)
    assert result(solo.delete_async(f"{root}/r", recursive=True)) is None
    assert solo.exists(f"{root}/r") is None


def test_async_errors_arrive_in_the_future(solo: Peer, root: str) -> None:
    assert isinstance(solo.create_async(f"{root}/none/x").exception(10), NoNodeError)
    assert isinstance(solo.get_async(f"{root}/none").exception(10), NoNodeError)
    solo.create(f"{root}/a")
    assert isinstance(solo.set_async(f"{root}/a", b"", version=3).exception(10), BadVersionError)
    assert isinstance(solo.create_async(f"{root}/a").exception(10), NodeExistsError)


def test_many_async_writes_from_many_threads(solo: Peer, root: str) -> None:
    def writer(k: int) -> list[Any]:
        return [solo.create_async(f"{root}/w{k}-{i}", b"x") for i in range(100)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [f for batch in pool.map(writer, range(4)) for f in batch]
    assert all(f.result(30).startswith(f"{root}/w") for f in futures)
    assert len(solo.get_children(root)) == 400


# ----------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("path", ["a", "", "/a/", "//", "/a//b", "/a/./b", "/a/../b", "/a\x00b", None, b"/x", 5])
def test_invalid_paths_are_bad_arguments(solo: Peer, path: Any) -> None:
    calls = [
        lambda: solo.create(path),
        lambda: solo.get(path),
        lambda: solo.exists(path),
        lambda: solo.get_children(path),
        lambda: solo.set(path, b""),
        lambda: solo.delete(path),
        lambda: solo.ensure_path(path),
        lambda: solo.get(path, watch=lambda e: None),
    ]
    for call in calls:
        with pytest.raises(BadArgumentsError):
            call()


@pytest.mark.parametrize("value", ["text", None, 5, ["a"]])
def test_values_must_be_bytes(solo: Peer, root: str, value: Any) -> None:
    with pytest.raises(BadArgumentsError, match="bytes"):
        solo.create(f"{root}/v", value)
    solo.create(f"{root}/ok", b"")
    with pytest.raises(BadArgumentsError, match="bytes"):
        solo.set(f"{root}/ok", value)


def test_bytearray_and_memoryview_values_are_accepted(solo: Peer, root: str) -> None:
    solo.create(f"{root}/a", bytearray(b"ab"))
    solo.set(f"{root}/a", memoryview(b"cd"))
    assert solo.get(f"{root}/a")[0] == b"cd"


def test_values_over_one_mebibyte_are_refused(solo: Peer, root: str) -> None:
    limit = 1 << 20
    with pytest.raises(BadArgumentsError, match="exceeds"):
        solo.create(f"{root}/big", b"x" * (limit + 1))
    assert solo.exists(f"{root}/big") is None
    solo.create(f"{root}/big", b"x" * limit)
    with pytest.raises(BadArgumentsError, match="exceeds"):
        solo.set(f"{root}/big", b"y" * (limit + 1))
    assert solo.exists(f"{root}/big").data_length == limit  # type: ignore[union-attr]


@pytest.mark.parametrize("version", [-2, 1.5, "1", True, None])
def test_bad_versions_are_bad_arguments(solo: Peer, root: str, version: Any) -> None:
    solo.create(f"{root}/v")
    with pytest.raises(BadArgumentsError, match="version"):
        solo.set(f"{root}/v", b"", version=version)
    with pytest.raises(BadArgumentsError, match="version"):
        solo.delete(f"{root}/v", version=version)


@pytest.mark.parametrize("watch", ["not callable", 5, object()])
def test_a_watch_must_be_callable(solo: Peer, root: str, watch: Any) -> None:
    for call in (solo.get, solo.exists, solo.get_children):
        with pytest.raises(BadArgumentsError, match="callable"):
            call(root, watch=watch)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"id": "a", "peers": [("b", "tcp://127.0.0.1:7002"), ("b", "tcp://127.0.0.1:7003")], "bind": "tcp://127.0.0.1:7001"}, "duplicate peer id 'b'"),
        ({"id": "a", "peers": {"a": "tcp://127.0.0.1:7002"}, "bind": "tcp://127.0.0.1:7001"}, "own id 'a'"),
        ({"id": "a", "peers": {"b": "tcp://127.0.0.1:7001", "c": "tcp://127.0.0.1:7001"}, "bind": "tcp://127.0.0.1:7003"}, "same address"),
        ({"id": "a", "peers": {"b": "tcp://127.0.0.1:7001"}, "bind": "tcp://127.0.0.1:7001"}, "same address"),
        ({"id": "a", "peers": {"b": "127.0.0.1:7002"}, "bind": "tcp://127.0.0.1:7001"}, "address of peer 'b'"),
        ({"id": "a", "peers": {"b": "http://127.0.0.1:7002"}, "bind": "tcp://127.0.0.1:7001"}, "tcp://, ipc:// or inproc://"),
        ({"id": "a", "peers": {"b": "tcp://127.0.0.1"}, "bind": "tcp://127.0.0.1:7001"}, "HOST:PORT"),
        ({"id": "a", "peers": {"b": "tcp://127.0.0.1:70000"}, "bind": "tcp://127.0.0.1:7001"}, "port"),
        ({"id": "a", "peers": {"b": "tcp://"}, "bind": "tcp://127.0.0.1:7001"}, "names no host"),
        ({"id": "a", "peers": {"b": 7002}, "bind": "tcp://127.0.0.1:7001"}, "address of peer 'b'"),
        ({"id": "a", "bind": "udp://127.0.0.1:7001"}, "bind"),
        ({"id": "a", "peers": {"b": "tcp://127.0.0.1:7002"}}, r"bind=\.\.\."),
        ({"id": "a", "observer": True}, "observer"),
        ({"id": "a", "session_timeout": 0.1}, "session_timeout 0.1s is too small"),
        ({"id": "a", "session_timeout": -1}, "session_timeout must be a positive number"),
        ({"id": "a", "tick_interval": 0}, "tick_interval"),
        ({"id": "a", "election_tick": 1}, "election_tick"),
        ({"id": "", "bind": None}, "peer id"),
        ({"id": 5}, "peer id"),
        ({"id": "a\nb"}, "printable"),
        ({"id": "a", "peers": {"": "tcp://127.0.0.1:7002"}, "bind": "tcp://127.0.0.1:7001"}, "id of a member"),
        ({"id": "a", "peers": "tcp://127.0.0.1:7002", "bind": "tcp://127.0.0.1:7001"}, "map member ids"),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Peer(**kwargs)


def test_a_peer_whose_majority_is_missing_times_out_at_start(tmp_path: Any) -> None:
    peer = Peer("a", bind="inproc://lonely-a", peers={"b": "inproc://lonely-b", "c": "inproc://lonely-c"},
                data_dir=str(tmp_path / "a"))
    began = time.monotonic()
    with pytest.raises(OperationTimeoutError, match="majority"):
        peer.start(timeout=1.0)
    assert 1.0 <= time.monotonic() - began <= 1.0 + SLACK  # its timeout, then a stop
    with pytest.raises(PeerStoppedError):
        peer.get("/")


def test_an_address_in_use_is_a_clear_configuration_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    address = f"tcp://127.0.0.1:{holder.getsockname()[1]}"
    try:
        peer = Peer("a", bind=address, peers={"b": "tcp://127.0.0.1:1"})
        with pytest.raises(ConfigurationError, match=address):
            peer.start(timeout=5)
    finally:
        holder.close()


def test_a_data_directory_in_use_is_a_clear_storage_error(tmp_path: Any) -> None:
    with Peer("a", data_dir=str(tmp_path / "a")) as first:
        first.create("/kept", b"1")
        second = Peer("a", data_dir=str(tmp_path / "a"))
        with pytest.raises(StorageError, match=str(tmp_path / "a").replace("\\", "\\\\")):
            second.start(timeout=5)
    with Peer("a", data_dir=str(tmp_path / "a")) as again:  # the lock was released by stop(), the data kept
        assert again.get("/kept")[0] == b"1"


# ----------------------------------------------------------------------------------------------------------------
# life cycle


def test_context_manager_starts_and_stops() -> None:
    with Peer("cm") as peer:
        assert peer.state is KeeperState.CONNECTED and peer.connected
        assert peer.leader == "cm" and peer.is_leader and peer.session_id
        peer.create("/x")
    assert peer.state is KeeperState.LOST
    assert peer.leader is None and not peer.is_leader and peer.session_id is None
    with pytest.raises(PeerStoppedError):
        peer.get("/x")


def test_a_peer_used_after_stop_raises_peer_stopped(tmp_path: Any) -> None:
    peer = Peer("s", data_dir=str(tmp_path / "s"))
    with pytest.raises(PeerStoppedError, match="start"):
        peer.get("/")  # not started yet
    peer.start()
    peer.create("/x")
    t = peer.transaction()
    t.create("/y")
    peer.stop()
    peer.stop()  # idempotent
    calls = [
        lambda: peer.create("/z"),
        lambda: peer.create_async("/z"),
        lambda: peer.get("/x"),
        lambda: peer.get("/x", watch=lambda e: None),
        lambda: peer.exists("/x"),
        lambda: peer.get_children("/"),
        lambda: peer.set("/x", b""),
        lambda: peer.set_async("/x", b""),
        lambda: peer.delete("/x"),
        lambda: peer.ensure_path("/q"),
        lambda: peer.sync(),
        lambda: peer.stats(),
        lambda: peer.watch("/x"),
        lambda: peer.DataWatch("/x", lambda d, s: None),
        lambda: t.commit(),
        lambda: peer.start(),
    ]
    for call in calls:
        with pytest.raises(PeerStoppedError):
            call()


def test_a_failure_of_the_loop_thread_is_reported_not_hidden(caplog: pytest.LogCaptureFixture) -> None:
    states: list[KeeperState] = []
    peer = Peer("doomed")
    peer.add_listener(states.append)
    peer.start()
    peer.create("/x")
    waiting = peer.sync_async()
    replica = peer._replica
    assert replica is not None

    def broken_tick(*args: Any) -> None:
        raise RuntimeError("injected failure in the loop")

    replica.tick = broken_tick  # type: ignore[method-assign]
    wait_until(lambda: KeeperState.LOST in states, timeout=5, what="listeners hear LOST")
    assert "injected failure in the loop" in caplog.text
    with pytest.raises(PeerStoppedError, match="injected failure"):
        peer.get("/x")
    with pytest.raises(PeerStoppedError):
        peer.create("/y")
    assert waiting.done()
    peer.stop()


def test_stats_reports_what_mntr_reports(solo: Peer, root: str) -> None:
    solo.get(root, watch=lambda e: None)
    for i in range(5):
        solo.create(f"{root}/s{i}")
    stats = solo.stats()
    assert stats["role"] == "leader" and stats["leader"] == "solo" and stats["term"] >= 1
    assert stats["commit_index"] >= stats["applied_index"] > 0
    assert stats["znode_count"] == 1 + len(solo.get_children("/")) + sum(
        _count(solo, f"/{c}") for c in solo.get_children("/")
    )
    assert stats["watch_count"] >= 1
    assert stats["sessions"] == 1 and stats["session_id"] == solo.session_id
    assert stats["outstanding_requests"] == 0
    for key in ("latency_min_ms", "latency_avg_ms", "latency_p50_ms", "latency_p99_ms", "latency_max_ms"):
        assert stats[key] > 0
    assert stats["latency_min_ms"] <= stats["latency_p50_ms"] <= stats["latency_p99_ms"] <= stats["latency_max_ms"]
    assert stats["state"] == "CONNECTED" and stats["voters"] == ["solo"] and stats["observers"] == []


def _count(peer: Peer, path: str) -> int:
    return sum(_count(peer, f"{path}/{c}") for c in peer.get_children(path)) + len(peer.get_children(path))


def test_stats_counts_outstanding_requests() -> None:
    # A peer whose majority is missing: start() waits, and so does every write and sync meanwhile.
    peer = Peer(
        "a", bind="inproc://outstanding-a", peers={"b": "inproc://outstanding-b", "c": "inproc://o-c"},
        no_leader_timeout=30.0,  # they wait (rather than fail for want of a leader) until start() gives up
    )
    starting = threading.Thread(target=_ignore, args=(lambda: peer.start(timeout=1.5),))
    starting.start()
    try:
        wait_until(lambda: _ignore(peer.stats) is not None, timeout=5, what="the peer's loop runs")
        futures = [peer.sync_async(), peer.create_async("/a"), peer.set_async("/b", b"")]
        wait_until(lambda: peer.stats()["outstanding_requests"] == 3, timeout=5)
    finally:
        starting.join()
    for f in futures:  # start() timed out and stopped the peer, which fails what still waits
        assert isinstance(f.exception(5), PeerStoppedError)


def _ignore(fn: Any) -> Any:
    try:
        return fn()
    except EmbedZKError:
        return None


# ----------------------------------------------------------------------------------------------------------------
# in a cluster


def test_a_write_on_any_peer_is_visible_everywhere_after_sync(cluster: LocalCluster) -> None:
    for writer in cluster.peers:
        writer.create(f"/from-{writer.id}", writer.id.encode())
    for reader in cluster.peers:
        reader.sync()
        for writer in cluster.peers:
            assert reader.get(f"/from-{writer.id}")[0] == writer.id.encode()


def test_errors_of_forwarded_writes_reach_the_caller(cluster: LocalCluster) -> None:
    follower = next(p for p in cluster.peers if not p.is_leader)
    follower.create("/fwd", b"0")
    with pytest.raises(NodeExistsError):
        follower.create("/fwd")
    with pytest.raises(BadVersionError):
        follower.set("/fwd", b"1", version=9)
    t = follower.transaction()
    t.set_data("/fwd", b"1")
    t.check("/fwd", 9)
    assert [type(r) for r in t.commit()] == [RolledBackError, BadVersionError]
    assert follower.get("/fwd")[0] == b"0"  # a follower reads its own writes at once, without sync


def test_sequence_numbers_are_unique_across_peers(cluster: LocalCluster) -> None:
    cluster.peers[0].create("/seqs")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda p: [p.create("/seqs/n-", sequence=True) for _ in range(10)], cluster.peers))
    flat = [x for batch in paths for x in batch]
    assert len(set(flat)) == 30
    assert sorted(int(p[-10:]) for p in flat) == list(range(30))


def test_ephemerals_go_when_their_peer_dies_or_stops() -> None:
    with LocalCluster(n=3, session_timeout=1.0) as c:
        leader = c.leader()
        a, b = [p for p in c.peers if p is not leader]
        a.create("/a", b"", ephemeral=True)
        # The leader heard from b's session when it proposed this create (at the tick its mtime was stamped by):
        # the session expires no earlier than its timeout after that.
        _path, stat = b.create("/b", b"", ephemeral=True, include_data=True)
        c.stop_member(b.id, close_session=False)  # as if its process died: the session expires
        stopped = time.time()  # nothing from b reaches the leader after this
        gone = wait_gone([leader], "/b")[leader.id]
        # The leader closes a session once its monotonic clock says the session was silent for longer than its
        # timeout (checked every tick); the close is applied on the leader a commit later. (Less a tick below: the
        # leader reads its wall clock, which stamps mtime, just after its monotonic one, and may be preempted
        # in between.)
        assert gone - stat.mtime / 1000 > 1.0 - TICK
        assert gone - stopped <= 1.0 + TICK + SLACK
        assert leader.exists("/a") is not None
        c.stop_member(a.id)  # a clean stop closes the session at once (while the quorum is still there)
        # a applied the close before it stopped; the leader, now without a quorum (so no sync), applies it too,
        # possibly a moment later: it learnt of the commit first, then told a.
        wait_until(lambda: leader.exists("/a") is None, timeout=2, what="the leader applies the closed session")


def test_the_leader_reaps_containers_and_ttl_nodes_for_everyone(cluster: LocalCluster) -> None:
    follower = next(p for p in cluster.peers if not p.is_leader)
    follower.create("/box", b"", container=True)
    follower.create("/box/item")
    _path, stat = follower.create("/short", b"", ttl=0.3, include_data=True)
    follower.delete("/box/item")
    emptied = time.time()
    gone = wait_gone(cluster.peers, "/short")
    for peer_id, when in gone.items():
        assert 0.3 < when - stat.mtime / 1000 <= 0.3 + REAP_INTERVAL + TICK + SLACK, (peer_id, when - stat.mtime / 1000)
    for peer_id, when in wait_gone(cluster.peers, "/box").items():
        assert when - emptied <= REAP_INTERVAL + TICK + SLACK, (peer_id, when - emptied)


def test_a_solo_peer_with_a_data_dir_keeps_its_data_across_restarts(tmp_path: Any) -> None:
    with Peer("solo", data_dir=str(tmp_path)) as peer:
        peer.create("/persisted", b"yes")
        peer.create("/gone", b"", ephemeral=True)
        for i in range(50):
            peer.create(f"/n{i}", os.urandom(10))
    with Peer("solo", data_dir=str(tmp_path)) as peer:
        assert peer.get("/persisted")[0] == b"yes"
        assert peer.exists("/gone") is None
        assert len(peer.get_children("/")) == 51
