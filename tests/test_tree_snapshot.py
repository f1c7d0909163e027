"""Snapshots: bounded chunks, faithful round trips, and restore that refuses bad input with only two errors."""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedzk.codec import decode, encode
from embedzk.errors import DataInconsistencyError, DecodeError
from embedzk.model import Stat
from embedzk.tree import (
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteOp,
    MultiOp,
    SetDataOp,
    Txn,
)
from embedzk.tree import snapshot as snap

CONTAINER = -(1 << 63)


def build_tree(nodes: int = 60, big: int = 0) -> DataTree:
    """A tree with every kind of node, sessions, unicode names, and values of many sizes."""
    tree = DataTree()
    zxid = 0

    def apply(op: Any, session: int = 0, time_ms: int = 1_000) -> None:
        nonlocal zxid
        zxid += 1
        result = tree.apply(Txn(session, time_ms + zxid, op), zxid)
        assert result.error is None, result

    apply(CreateSessionOp(1, 4_000, "peer-a"))
    apply(CreateSessionOp(0xABCDEF, 9_000, "péer-β"))
    apply(CreateOp("/app/config/db", b"host=x", makepath=True))
    apply(CreateOp("/app/locks", container=True))
    apply(CreateOp("/app/locks/lock-", ephemeral=True, sequential=True), session=1)
    apply(CreateOp("/app/jobs", ttl=50_000))
    apply(CreateOp("/app/empty-container", container=True))
    apply(CreateOp("/app/σκύλος", "ünïcode".encode()))
    for i in range(nodes):
        apply(CreateOp("/app/jobs/job-", bytes(range(i % 200)), sequential=True))
    apply(CreateOp("/e", ephemeral=True), session=0xABCDEF)
    apply(SetDataOp("/app/config/db", b"host=y"))
    apply(DeleteOp("/app/jobs/job-0000000000"))
    apply(CreateOp("/", b"seq-under-root", sequential=True))
    if big:
        apply(CreateOp("/big", b"B" * big))
    return tree


def dump(tree: DataTree) -> dict[str, tuple[bytes, Stat]]:
    out = {}
    todo = ["/"]
    while todo:
        path = todo.pop()
        out[path] = tree.get(path)
        todo += [("" if path == "/" else path) + "/" + n for n in tree.get_children(path)]
    return out


def assert_same(a: DataTree, b: DataTree) -> None:
    assert a.digest == b.digest
    assert dump(a) == dump(b)
    assert a.sessions() == b.sessions()
    assert a.last_zxid == b.last_zxid and a.node_count() == b.node_count()
    for sid in a.sessions():
        assert a.ephemerals(sid) == b.ephemerals(sid)
    for now in (0, 10**6, 10**9):
        assert a.reap_candidates(now) == b.reap_candidates(now)


# ---------------------------------------------------------------------------------------------------------------
# round trips and bounds


@pytest.mark.parametrize("max_chunk", [128, 200, 1000, 1 << 20])
def test_round_trip_restores_everything(max_chunk: int) -> None:
    tree = build_tree()
    restored = DataTree.restore(tree.snapshot_chunks(max_chunk))
    assert_same(tree, restored)


def test_a_tree_restored_a_chunk_at_a_time_is_the_tree_restored_at_once() -> None:
    from embedzk.tree.datatree import TreeRestorer

    tree = build_tree(nodes=300)
    chunks = list(tree.snapshot_chunks(200))
    restorer = TreeRestorer(iter(chunks))
    steps = 0
    while not restorer.step(1):
        steps += 1
        assert not restorer.done
    assert steps == len(chunks)  # one chunk per step, then the check that the stream ended
    assert restorer.step(1) and restorer.done  # stepping a whole tree changes nothing
    assert_same(tree, restorer.tree)


def test_a_restorer_refuses_a_corrupt_chunk_when_it_reaches_it_and_only_with_decode_errors() -> None:
    from embedzk.tree.datatree import TreeRestorer

    chunks = list(build_tree(nodes=300).snapshot_chunks(200))
    chunks[5] = chunks[5][:-3]  # truncated
    restorer = TreeRestorer(iter(chunks))
    assert not restorer.step(5)  # the first five chunks are sound
    with pytest.raises(DecodeError):
        restorer.step(1)


def test_restored_tree_behaves_like_the_original() -> None:
    tree = build_tree()
    restored = DataTree.restore(tree.snapshot_chunks(256))
    zxid = tree.last_zxid
    for op, session in [
        (CreateOp("/app/jobs/job-", sequential=True), 0),  # the sequence continues from the restored cversion
        (CreateOp("/app/locks/lock-", ephemeral=True, sequential=True), 1),
        (CloseSessionOp(1), 0),  # the ephemeral index was rebuilt
        (MultiOp((DeleteOp("/e"), SetDataOp("/app", b"x", version=7))), 0),
    ]:
        zxid += 1
        a = tree.apply(Txn(session, 5_000_000, op), zxid)
        b = restored.apply(Txn(session, 5_000_000, op), zxid)
        assert _outcome(a) == _outcome(b)
    assert_same(tree, restored)
    assert restored.ephemerals(1) == []


def test_snapshots_are_byte_identical_for_the_same_history_and_after_a_restore() -> None:
    # Replicas that applied the same log produce the same bytes, and a restored tree keeps the child order.
    a, b = build_tree(), build_tree()
    first = list(a.snapshot_chunks(512))
    assert first == list(b.snapshot_chunks(512))
    assert list(DataTree.restore(first).snapshot_chunks(512)) == first


def test_a_tree_without_acls_snapshots_to_the_bytes_and_digest_it_had_before_acls() -> None:
    # Peers that predate ACLs read these snapshots and compare digests with newer peers during a rolling upgrade:
    # neither may change for a tree that holds no ACL. The figures were taken from the build before ACLs existed.
    tree = build_tree(nodes=40)
    chunks = list(tree.snapshot_chunks(300))
    framed = b"".join(len(chunk).to_bytes(4, "big") + chunk for chunk in chunks)
    assert len(chunks) == 15
    assert hashlib.sha256(framed).hexdigest() == "5f09999faa8b202e072de3500bc762526aa6ea0c465056413edf949d2cd6f706"
    assert tree.digest == 0x1BB474F144


def _outcome(result: Any) -> tuple[Any, ...]:
    """A result with its errors replaced by their types, which is what replicas must agree on."""
    value = result.value
    if isinstance(value, list):
        value = [type(v) if isinstance(v, Exception) else v for v in value]
    return value, type(result.error), result.events


def test_empty_tree_round_trip() -> None:
    tree = DataTree(max_data_bytes=10)
    chunks = list(tree.snapshot_chunks())
    assert len(chunks) == 3  # header, the root, trailer
    restored = DataTree.restore(chunks, max_data_bytes=10)
    assert_same(tree, restored)


def test_restore_applies_its_own_value_limit_from_then_on() -> None:
    tree = build_tree(nodes=3)
    restored = DataTree.restore(tree.snapshot_chunks(), max_data_bytes=4)
    assert restored.max_data_bytes == 4
    result = restored.apply(Txn(0, 0, CreateOp("/new", b"12345")), restored.last_zxid + 1)
    assert result.error is not None and "exceeds" in str(result.error)


@pytest.mark.parametrize("max_chunk", [128, 300, 2048])
def test_every_chunk_is_bounded_unless_it_holds_one_oversized_node(max_chunk: int) -> None:
    tree = build_tree(nodes=200, big=5_000)
    chunks = list(tree.snapshot_chunks(max_chunk))
    assert len(chunks) > 10
    oversized = 0
    for chunk in chunks:
        if len(chunk) <= max_chunk:
            continue
        message = decode(chunk)
        assert isinstance(message, snap.SnapshotNodes)
        records = cbor2.loads(message.records)
        assert len(records) == 1  # alone in its chunk
        assert len(records[0][1]) > max_chunk - 150
        oversized += 1
    assert oversized >= 1  # the 5000-byte node


def test_chunks_are_reasonably_full() -> None:
    # The size bound is an estimate; it must not waste most of each chunk.
    tree = build_tree(nodes=2_000)
    chunks = list(tree.snapshot_chunks(16_384))
    body = chunks[2:-2]  # full node chunks: skip header, sessions, trailer and the last partial chunk
    assert body and min(len(c) for c in body) > 16_384 * 0.6


def test_snapshot_is_lazy_and_refuses_tiny_chunks() -> None:
    tree = build_tree(nodes=5)
    with pytest.raises(ValueError):
        tree.snapshot_chunks(64)
    stream = tree.snapshot_chunks(128)
    first = next(iter(stream))
    assert isinstance(decode(first), snap.SnapshotHeader)


# ---------------------------------------------------------------------------------------------------------------
# malformed input: DecodeError


def test_every_truncation_is_refused() -> None:
    chunks = list(build_tree(nodes=20).snapshot_chunks(256))
    for n in range(len(chunks)):
        with pytest.raises(DecodeError):
            DataTree.restore(chunks[:n])


def _header(**kw: Any) -> bytes:
    fields = {"format_version": snap.FORMAT_VERSION, "last_zxid": 10, "max_data_bytes": 1 << 20} | kw
    return encode(snap.SnapshotHeader(**fields))


ROOT = ["/", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0]


def _nodes(*records: list[Any]) -> bytes:
    return encode(snap.SnapshotNodes(cbor2.dumps(list(records))))


def _digest(nodes: list[list[Any]], sessions: list[list[Any]] = ()) -> int:  # type: ignore[assignment]
    total = 0
    for path, data, *fields in nodes:
        total += zlib.crc32(data, zlib.crc32(struct.pack("<qqqqqiiiq", *fields), zlib.crc32(path.encode())))
    for sid, owner, timeout in sessions:
        total += zlib.crc32(owner.encode(), zlib.crc32(b"\x00session\x00" + struct.pack("<qq", sid, timeout)))
    return total


def _trailer(nodes: list[list[Any]], sessions: list[list[Any]] = (), **kw: Any) -> bytes:  # type: ignore[assignment]
    fields = {"node_count": len(nodes), "session_count": len(sessions), "digest": _digest(nodes, sessions)} | kw
    return encode(snap.SnapshotTrailer(**fields))


def test_a_handmade_snapshot_is_accepted() -> None:
    # The helpers below build valid snapshots unless told otherwise; the refusals that follow are meaningful.
    child = ["/a", b"x", 1, 1, 1, 5, 5, 0, 0, 0, 0]
    tree = DataTree.restore([_header(), _nodes(ROOT, child), _trailer([ROOT, child])])
    assert tree.get("/a")[0] == b"x" and tree.last_zxid == 10


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        ([], "empty"),
        ([_header()], "no trailer"),
        ([_nodes(ROOT), _trailer([ROOT])], "expected the header"),
        ([_header(format_version=2), _nodes(ROOT), _trailer([ROOT])], "format 2"),
        ([_header(), _nodes(ROOT), _trailer([ROOT]), _nodes(ROOT)], "after the trailer"),
        (
            [_header(), _nodes(ROOT), encode(snap.SnapshotSessions(cbor2.dumps([[1, "a", 1]]))), _trailer([ROOT])],
            "sessions after nodes",
        ),
        ([_header(), _header(), _trailer([])], "not part of a snapshot"),
        ([_header(), encode(CreateOp("/x")), _trailer([])], "not part of a snapshot"),
        ([_header(), b"\xff\x00garbage", _trailer([])], "CBOR|message"),
        ([_header(), "text, not bytes", _trailer([])], "expected bytes"),
        ([_header(), encode(snap.SnapshotNodes(b"\x9f")), _trailer([])], "not valid CBOR"),
        ([_header(), encode(snap.SnapshotNodes(cbor2.dumps({"a": 1}))), _trailer([])], "non-empty array"),
        ([_header(), encode(snap.SnapshotNodes(cbor2.dumps([]))), _trailer([])], "non-empty array"),
        ([_header(), _nodes(ROOT[:-1]), _trailer([])], "array of 11"),
        ([_header(), _nodes(["/", "text", *ROOT[2:]]), _trailer([])], "byte string"),
        ([_header(), _nodes(["/", b"", 0, 0, 0, 0, 0, 2**31, 0, 0, 0]), _trailer([])], "out of range"),
        ([_header(), _nodes(["/", b"", 0, 0, 0, 0, 0, 0, 0, 0, 2**63]), _trailer([])], "out of range"),
        ([_header(), _nodes(["/", b"", True, 0, 0, 0, 0, 0, 0, 0, 0]), _trailer([])], "out of range"),
        ([_header(), encode(snap.SnapshotSessions(cbor2.dumps([[1, 2, 3]]))), _trailer([])], "session record"),
    ],
)
def test_malformed_snapshots_are_decode_errors(chunks: list[Any], reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        DataTree.restore(chunks)


# ---------------------------------------------------------------------------------------------------------------
# well-formed but impossible: DataInconsistencyError


def _case(
    nodes: list[list[Any]],
    sessions: list[list[Any]] = (),  # type: ignore[assignment]
    header: dict[str, Any] | None = None,
    **trailer: Any,
) -> list[bytes]:
    """A complete, well-formed snapshot of exactly these records (the trailer counts them unless told)."""
    chunks = [_header(**(header or {}))]
    if sessions:
        chunks.append(encode(snap.SnapshotSessions(cbor2.dumps(list(sessions)))))
    if nodes:
        chunks.append(_nodes(*nodes))
    chunks.append(_trailer(nodes, sessions, **trailer))
    return chunks


A = ["/a", b"", 1, 1, 1, 0, 0, 0, 0, 0, 0]
EPHEMERAL = ["/e", b"", 2, 2, 2, 0, 0, 0, 0, 0, 7]


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        (_case([]), "root is missing"),
        (_case([A]), "before the root"),
        (_case([ROOT, ["/a/b", b"", 1, 1, 1, 0, 0, 0, 0, 0, 0], A]), "before its parent"),
        (_case([ROOT, A, A]), "appears twice"),
        (_case([ROOT, ROOT]), "root appears twice"),
        (_case([ROOT, EPHEMERAL]), "not open"),
        (_case([ROOT, EPHEMERAL, ["/e/c", b"", 3, 3, 3, 0, 0, 0, 0, 0, 0]], [[7, "p", 100]]), "child of the ephemeral"),
        (_case([ROOT, ["/a/", b"", 1, 1, 1, 0, 0, 0, 0, 0, 0]]), "invalid path"),
        (_case([ROOT, ["/a", b"", 1, 1, 1, 0, 0, 0, 0, 0, -5]]), "invalid ephemeral owner"),
        (_case([ROOT, ["/a", b"", 1, 1, 1, 0, 0, 0, 0, 0, -(1 << 56)]]), "invalid ephemeral owner"),
        (_case([ROOT, ["/a", b"", 11, 11, 11, 0, 0, 0, 0, 0, 0]]), "beyond last_zxid"),
        (_case([ROOT, ["/a", b"", -1, 1, 1, 0, 0, 0, 0, 0, 0]]), "beyond last_zxid"),
        (_case([["/", b"", 0, 0, 0, 0, 0, 0, 0, 0, 7]], [[7, "p", 100]]), "root must be a persistent"),
        (_case([ROOT], [[7, "p", 100], [7, "p", 100]]), "twice"),
        (_case([ROOT], [[0, "p", 100]]), "out of range"),
        (_case([ROOT], [[7, "p", 0]]), "out of range"),
        (_case([ROOT, A], digest=12345), "digest"),
        (_case([ROOT, A], node_count=3), "nodes read"),
        (_case([ROOT], [[7, "p", 100]], session_count=0), "sessions read"),
        (_case([ROOT], header={"last_zxid": -1}), "negative"),
        (_case([ROOT, ["/a", b"xx", 1, 1, 1, 0, 0, 0, 0, 0, 0]], header={"max_data_bytes": 1}), "more than the limit"),
    ],
)
def test_inconsistent_snapshots_are_data_inconsistency_errors(chunks: list[bytes], reason: str) -> None:
    with pytest.raises(DataInconsistencyError, match=reason):
        DataTree.restore(chunks)


# ---------------------------------------------------------------------------------------------------------------
# garbage of every kind: only the two errors


_ORIGINAL = build_tree(nodes=25)
_CHUNKS = list(_ORIGINAL.snapshot_chunks(200))


@st.composite
def garbled(draw: st.DrawFn) -> list[Any]:
    chunks: list[Any] = list(_CHUNKS)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(chunks) - 1)) if chunks else 0
        kind = draw(st.sampled_from(["flip", "truncate", "drop", "duplicate", "swap", "insert", "replace"]))
        if not chunks:
            kind = "insert"
        if kind in ("flip", "truncate") and not (isinstance(chunks[i], bytes) and chunks[i]):
            kind = "drop"
        if kind == "flip":
            chunk = bytearray(chunks[i])
            pos = draw(st.integers(0, len(chunk) - 1))
            chunk[pos] ^= draw(st.integers(1, 255))
            chunks[i] = bytes(chunk)
        elif kind == "truncate":
            chunks[i] = chunks[i][: draw(st.integers(0, max(0, len(chunks[i]) - 1)))]
        elif kind == "drop":
            del chunks[i]
        elif kind == "duplicate":
            chunks.insert(i, chunks[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(chunks) - 1))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif kind == "insert":
            chunks.insert(i, draw(st.binary(max_size=40)))
        else:
            chunks[i] = draw(st.one_of(st.binary(max_size=40), st.none(), st.integers(), st.text(max_size=5)))
    return chunks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbled())
def test_garbled_snapshots_raise_only_decode_or_inconsistency_errors(chunks: list[Any]) -> None:
    try:
        restored = DataTree.restore(chunks)
    except (DecodeError, DataInconsistencyError):
        return
    # A change that still restores must have been harmless (say, swapping a chunk with itself).
    assert_same(_ORIGINAL, restored)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_random_bytes_raise_only_decode_or_inconsistency_errors(chunks: list[bytes]) -> None:
    with pytest.raises((DecodeError, DataInconsistencyError)):
        DataTree.restore(chunks)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.text(max_size=4), st.binary(max_size=4), st.integers(-(2**64), 2**64), st.booleans(), st.none()
            ),
            min_size=0,
            max_size=12,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_records_of_any_shape_raise_only_decode_or_inconsistency_errors(records: list[list[Any]]) -> None:
    chunks = [_header(), _nodes(ROOT, *records), _trailer([ROOT])]
    with pytest.raises((DecodeError, DataInconsistencyError)):
        DataTree.restore(chunks)
