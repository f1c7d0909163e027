"""What is written says its version: an older snapshot format is read, a newer one refused naming both; the member
record survives in both storages; the transport accepts the range of protocol versions a peer speaks."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from embedzk.codec import encode
from embedzk.consensus.types import ConfState, SnapshotMeta
from embedzk.errors import DecodeError
from embedzk.membership.identity import Ballot, FoundingValue, MemberRecord
from embedzk.persist.memory import MemoryStorage
from embedzk.replica import Replica, ReplicaConfig
from embedzk.replica.messages import SnapshotHeader, SnapshotHeaderV1
from embedzk.transport.zmq import ZmqTransport, frame_header
from embedzk.tree import DataTree


def _storage_with_snapshot(header: object) -> MemoryStorage:
    tree = DataTree()
    chunks = [encode(header), *tree.snapshot_chunks()]
    storage = MemoryStorage(ConfState(voters=("a",)))
    storage.install_snapshot(SnapshotMeta(5, 1, ConfState(voters=("a",))), chunks)
    return storage


def test_a_format_1_snapshot_is_read() -> None:
    storage = _storage_with_snapshot(SnapshotHeaderV1(1, {"a": "inproc://a"}, 1234))
    replica = Replica(ReplicaConfig(id="a"), storage, random.Random(1))
    assert replica.addresses == {"a": "inproc://a"}
    assert replica.applied == 5 and replica.cluster_uuid == ""


def test_a_format_2_snapshot_carries_the_cluster() -> None:
    storage = _storage_with_snapshot(SnapshotHeader(2, {"a": "inproc://a"}, 1234, "c0ffee", 3))
    replica = Replica(ReplicaConfig(id="a"), storage, random.Random(1))
    assert (replica.cluster_uuid, replica.cluster_version) == ("c0ffee", 3)


def test_a_newer_snapshot_format_is_refused_naming_both_versions() -> None:
    storage = _storage_with_snapshot(SnapshotHeader(9, {}, 0))
    with pytest.raises(DecodeError, match="snapshot format 9 is newer than this build reads \\(up to 2\\)"):
        Replica(ReplicaConfig(id="a"), storage, random.Random(1))


def test_a_memory_disk_keeps_its_member_record_and_clones_it() -> None:
    disk = MemoryStorage()
    assert disk.member_record() is None
    record = MemberRecord(
        "a@0123456789ab",
        "c0ffee",
        Ballot(2, "b@1"),
        FoundingValue("c0ffee", (("a@0123456789ab", "inproc://a"),), ("inproc://a",)),
        Ballot(2, "b@1"),
    )
    disk.save_member_record(record)
    assert disk.clone().member_record() == record
    with pytest.raises(ValueError, match="belongs to member a@0123456789ab"):
        disk.save_member_record(MemberRecord("a@ffffffffffff"))


@pytest.fixture
def pair() -> Iterator[tuple[ZmqTransport, ZmqTransport]]:
    a = ZmqTransport("a", "inproc://formats-a", versions=(2, 3))
    b = ZmqTransport("b", "inproc://formats-b", versions=(2, 2))
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _received(t: ZmqTransport) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    for _ in range(50):
        got += t.receive(0.02)
        if got:
            break
    return got


def test_frames_are_written_in_the_version_set_and_read_across_the_range(
    pair: tuple[ZmqTransport, ZmqTransport],
) -> None:
    a, b = pair
    a.set_peers({"b": b.endpoint})
    b.set_peers({"a": a.endpoint})
    assert a.send("b", b"in 2")
    assert _received(b) == [("a", b"in 2")]
    a.version = 3  # the cluster's version rose: b, which speaks only 2, turns these away
    assert a.send("b", b"in 3")
    assert _received(b) == []
    assert b.stats()["rejected_version"] == 1
    assert b.send("a", b"from b")  # a reads version 2 whatever it writes
    assert _received(a) == [("b", b"from b")]


def test_a_frame_to_an_address_is_written_in_the_oldest_version(pair: tuple[ZmqTransport, ZmqTransport]) -> None:
    a, b = pair
    a.version = 3
    # Sent by address (a joiner or seed whose membership is not settled): b, speaking only 2, reads it.
    assert a.send(b.endpoint, b"to an address")
    assert _received(b) == [("a", b"to an address")]


def test_names_sharing_an_endpoint_share_one_socket(pair: tuple[ZmqTransport, ZmqTransport]) -> None:
    a, b = pair
    a.set_peers({"b@1": b.endpoint})
    assert a.send(b.endpoint, b"by address") and a.send("b@1", b"by key")
    assert len(a._dealers) == 1
    assert sorted(frame for _frm, frame in _received(b) + _received(b)) == [b"by address", b"by key"]


def test_a_version_outside_the_range_spoken_is_refused() -> None:
    t = ZmqTransport("a", "inproc://formats-x", versions=(2, 3))
    with pytest.raises(Exception, match="outside the range"):
        t.version = 4
    assert frame_header(b"c", 3)[3] == 3
    t.close()
