"""The snapshot format of the tree: a stream of bounded CBOR chunks, never one big blob.

A snapshot is a sequence of codec messages (tags 10-13), one per chunk::

    SnapshotHeader                 format version, last_zxid, max_data_bytes
    SnapshotSessions *             open sessions: [session_id, owner, timeout_ms] records
    SnapshotNodes *                every znode in pre-order (a parent before its children):
                                   [path, data, czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion,
                                    ephemeral_owner] records, and for a node with an ACL of its own the same
                                   record with a twelfth field, the ACL: [[perms, scheme, id], ...]
    SnapshotTrailer                node count, session count, digest, last_zxid

The records of a chunk travel as one CBOR array inside a ``bytes`` field, so that encoding and decoding a million
nodes stays in cbor2's C code; each record is encoded once, which also gives its exact size for the bound.
:func:`read_snapshot` checks every record's shape, types and integer ranges before anyone sees it. A chunk is at
most ``max_chunk_bytes`` long, except that a single node whose record is larger gets a chunk of its own. The
trailer lets a reader tell a complete snapshot from a truncated one, and its digest lets the tree check that what
it rebuilt is what was saved.

The ACL field came with ACLs, without a new format version: it is written only for a node whose ACL is not
OPEN_ACL, so the snapshot of a tree without ACLs is byte for byte what it was before, and a reader that predates
ACLs reads it. Such a reader refuses a snapshot with an ACL record (a node record of 12 fields), as it should: it
could not keep what that snapshot holds.

This module knows the format only; :meth:`embedzk.tree.datatree.DataTree.restore` decides whether the records
describe a possible tree. Errors here are :class:`~embedzk.errors.DecodeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from embedzk.codec import decode, encode, message
from embedzk.errors import DecodeError

__all__ = [
    "FORMAT_VERSION",
    "MIN_CHUNK_BYTES",
    "NodeBatch",
    "NodeRecord",
    "SessionBatch",
    "SessionRecord",
    "SnapshotHeader",
    "SnapshotNodes",
    "SnapshotSessions",
    "SnapshotTrailer",
    "read_snapshot",
    "write_snapshot",
]

#: The version of this layout; a reader refuses any other.
FORMAT_VERSION = 1

#: The smallest chunk bound accepted: room for the header, the trailer and a small record.
MIN_CHUNK_BYTES = 128

#: (path, data, czxid, mzxid, pzxid, ctime, mtime, version, cversion, aversion, ephemeral_owner), and, for a node
#: with an ACL of its own, that ACL: a tuple of (perms, scheme, id) tuples. A tuple as written, a list as read back.
NodeRecord = Sequence[Any]
#: (session_id, owner, timeout_ms)
SessionRecord = tuple[int, str, int]

# Bytes a chunk needs around its records: the message array, tag, version, the bytes field's header (5 bytes up
# to 4 GiB) and the records array's header (5 bytes up to 2**32 records), with room to spare.
_ENVELOPE = 32

_INT64 = (-(1 << 63), (1 << 63) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)
# The range of each integer of a node record, in order; they are packed into the stat's struct on restore.
_NODE_INT_RANGES = (_INT64, _INT64, _INT64, _INT64, _INT64, _INT32, _INT32, _INT32, _INT64)
_NODE_FIELDS = 2 + len(_NODE_INT_RANGES)
_NODE_TYPES = (str, bytes) + (int,) * len(_NODE_INT_RANGES)
#: The ACL entry types, checked here; whether the values make an ACL is the tree's to say.
_ACL_ENTRY_TYPES = (int, str, str)
#: The stat of a node record packed as the tree keeps it: its field widths are exactly _NODE_INT_RANGES.
_STAT = struct.Struct("<qqqqqiiiq")


@message(10)
@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """The first chunk: the layout version, the zxid the snapshot reflects, and the tree's value limit."""

    format_version: int
    last_zxid: int
    max_data_bytes: int


@message(11)
@dataclass(frozen=True, slots=True)
class SnapshotSessions:
    """A chunk of open sessions: a CBOR array of [session_id, owner, timeout_ms] records."""

    records: bytes


@message(12)
@dataclass(frozen=True, slots=True)
class SnapshotNodes:
    """A chunk of znodes in pre-order: a CBOR array of node records (see the module docstring)."""

    records: bytes


@message(13)
@dataclass(frozen=True, slots=True)
class SnapshotTrailer:
    """The last chunk: how many nodes and sessions came, the digest of the state they make, and the header's
    last_zxid again (the digest does not cover it, so a damaged header is caught by the two disagreeing; -1 says
    nothing, for snapshots put together by hand)."""

    node_count: int
    session_count: int
    digest: int
    last_zxid: int = -1


@dataclass(slots=True)
class SessionBatch:
    """The checked session records of one chunk, as :func:`read_snapshot` yields them."""

    records: list[SessionRecord]


@dataclass(slots=True)
class NodeBatch:
    """The checked node records of one chunk, as :func:`read_snapshot` yields them.

    ``metas`` holds, for each record, its nine stat fields packed as the tree keeps them
    (:data:`embedzk.tree.datatree.META`): packing is how the ranges are checked, so the work is not done twice.
    A record with an ACL holds it as a tuple of (int, str, str) tuples.
    """

    records: list[NodeRecord]
    metas: list[bytes]


#: What :func:`read_snapshot` yields.
SnapshotItem = SnapshotHeader | SessionBatch | NodeBatch | SnapshotTrailer


def write_snapshot(
    header: SnapshotHeader,
    sessions: Iterable[SessionRecord],
    nodes: Iterable[NodeRecord],
    trailer: SnapshotTrailer,
    max_chunk_bytes: int,
) -> Iterator[bytes]:
    """Encode a snapshot as chunks of at most ``max_chunk_bytes`` (a lone oversized node excepted); lazily."""
    if type(max_chunk_bytes) is not int or max_chunk_bytes < MIN_CHUNK_BYTES:
        raise ValueError(f"max_chunk_bytes must be an int >= {MIN_CHUNK_BYTES}, got {max_chunk_bytes!r}")
    return _write(header, sessions, nodes, trailer, max_chunk_bytes - _ENVELOPE)


def _write(
    header: SnapshotHeader,
    sessions: Iterable[SessionRecord],
    nodes: Iterable[NodeRecord],
    trailer: SnapshotTrailer,
    budget: int,
) -> Iterator[bytes]:
    yield encode(header)
    yield from _batches(SnapshotSessions, sessions, budget)
    yield from _batches(SnapshotNodes, nodes, budget)
    yield encode(trailer)


def _array_header(count: int) -> bytes:
    """The CBOR head of a definite-length array of ``count`` items (RFC 8949, major type 4)."""
    if count < 24:
        return bytes((0x80 | count,))
    if count < 1 << 8:
        return bytes((0x98, count))
    if count < 1 << 16:
        return b"\x99" + count.to_bytes(2, "big")
    return b"\x9a" + count.to_bytes(4, "big")


def _batches(kind: Callable[[bytes], Any], records: Iterable[Any], budget: int) -> Iterator[bytes]:
    # Each record is encoded once, on its own, so its exact size is known; a chunk's records array is then the
    # array head followed by the encoded records, which is exactly what encoding the list would give.
    dumps = cbor2.dumps
    batch: list[bytes] = []
    size = 0
    for record in records:
        encoded = dumps(record)
        if batch and size + len(encoded) > budget:
            yield encode(kind(_array_header(len(batch)) + b"".join(batch)))
            batch = []
            size = 0
        batch.append(encoded)
        size += len(encoded)
    if batch:
        yield encode(kind(_array_header(len(batch)) + b"".join(batch)))


def read_snapshot(chunks: Iterable[bytes]) -> Iterator[SnapshotItem]:
    """Decode chunks into the header, session and node batches, and the trailer, in that order.

    Raises DecodeError (with the reason) for anything that is not a complete snapshot of this format: garbled
    bytes, a record of the wrong shape or type, chunks out of order, a missing trailer, data after it.
    """
    stage = "header"
    for index, chunk in enumerate(chunks):
        item = decode(chunk)
        if stage == "header":
            if not isinstance(item, SnapshotHeader):
                raise DecodeError(f"snapshot chunk 0 is a {type(item).__name__}, expected the header")
            if item.format_version != FORMAT_VERSION:
                raise DecodeError(
                    f"snapshot format {item.format_version} is not supported (this build reads {FORMAT_VERSION})"
                )
            stage = "sessions"
            yield item
        elif stage == "end":
            raise DecodeError(f"snapshot chunk {index} comes after the trailer")
        elif isinstance(item, SnapshotSessions):
            if stage != "sessions":
                raise DecodeError(f"snapshot chunk {index}: sessions after nodes")
            yield SessionBatch([_session(r, index) for r in _records(item.records, index)])
        elif isinstance(item, SnapshotNodes):
            stage = "nodes"
            yield _node_batch(_records(item.records, index), index)
        elif isinstance(item, SnapshotTrailer):
            stage = "end"
            yield item
        else:
            raise DecodeError(f"snapshot chunk {index} is a {type(item).__name__}, not part of a snapshot")
    if stage != "end":
        raise DecodeError("snapshot is truncated: " + ("it is empty" if stage == "header" else "no trailer"))


def _records(payload: bytes, index: int) -> list[Any]:
    try:
        records = cbor2.loads(payload)
    except RecursionError:
        raise DecodeError(f"snapshot chunk {index}: records nested too deeply") from None
    except MemoryError:
        raise DecodeError(f"snapshot chunk {index}: records ask for too much memory") from None
    except Exception as exc:  # noqa: BLE001 - cbor2 raises many types on garbage; all mean the same here
        raise DecodeError(f"snapshot chunk {index}: records are not valid CBOR: {type(exc).__name__}") from None
    if type(records) is not list or not records:
        raise DecodeError(f"snapshot chunk {index}: records must be a non-empty array")
    return records


def _int_in(value: Any, bounds: tuple[int, int]) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


def _node_batch(records: list[Any], index: int) -> NodeBatch:
    # The fast path checks a whole record's types at once (exact types: a bool is not an int here) and its ranges
    # by packing; any record it refuses goes through _node, which says what is wrong with it, or, being a record
    # with an ACL (rare), is converted there.
    pack = _STAT.pack
    metas: list[bytes] = []
    append = metas.append
    try:
        for position, raw in enumerate(records):
            if type(raw) is not list or tuple(map(type, raw)) != _NODE_TYPES:
                record = _node(raw, index)
                records[position] = record
                append(pack(*record[2:_NODE_FIELDS]))
                continue
            append(pack(*raw[2:]))
    except struct.error:
        for raw in records:
            _node(raw, index)
        raise AssertionError("a node record was refused without a reason") from None  # pragma: no cover
    return NodeBatch(records, metas)


def _node(raw: Any, index: int) -> NodeRecord:
    """A node record checked field by field: DecodeError saying what is wrong, or the record (its ACL, if any, as
    a tuple of tuples)."""
    if type(raw) is not list or len(raw) not in (_NODE_FIELDS, _NODE_FIELDS + 1):
        raise DecodeError(
            f"snapshot chunk {index}: a node record must be an array of {_NODE_FIELDS} ({_NODE_FIELDS + 1} with an ACL)"
        )
    path, data = raw[0], raw[1]
    if type(path) is not str or type(data) is not bytes:
        raise DecodeError(f"snapshot chunk {index}: a node record starts with a text path and a byte string")
    for value, bounds in zip(raw[2:_NODE_FIELDS], _NODE_INT_RANGES):
        if not _int_in(value, bounds):
            raise DecodeError(f"snapshot chunk {index}: node {path!r} has a stat field {value!r} out of range")
    if len(raw) == _NODE_FIELDS:
        return tuple(raw)
    return (*raw[:_NODE_FIELDS], _acl(raw[_NODE_FIELDS], path, index))


def _acl(raw: Any, path: str, index: int) -> tuple[tuple[int, str, str], ...]:
    """The ACL field of ``path``'s record as tuples, once it is an array of [int, text, text] arrays."""
    if type(raw) is not list or not all(
        type(entry) is list and tuple(map(type, entry)) == _ACL_ENTRY_TYPES for entry in raw
    ):
        raise DecodeError(f"snapshot chunk {index}: the ACL of node {path!r} is not an array of [perms, scheme, id]")
    return tuple((entry[0], entry[1], entry[2]) for entry in raw)


def _session(raw: Any, index: int) -> SessionRecord:
    if (
        type(raw) is not list
        or len(raw) != 3
        or not _int_in(raw[0], _INT64)
        or type(raw[1]) is not str
        or not _int_in(raw[2], _INT64)
    ):
        raise DecodeError(f"snapshot chunk {index}: a session record is [int64 id, text owner, int64 timeout]")
    return (raw[0], raw[1], raw[2])
