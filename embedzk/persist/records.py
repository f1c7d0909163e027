"""The records LevelDBStorage keeps, and the checksummed envelope every stored value travels in.

Codec tags 128-159 are persisted records. A tag, once written to a user's disk, never changes meaning; a record
whose layout must change gets a new codec version and a migration, announced by :data:`FORMAT_VERSION`.

Log entries, the one record written and read in bulk, skip the codec for a fixed binary layout
(:func:`pack_entry`): encoding an Entry through the codec costs several times more than the fsync that follows
it in a batch of a thousand, and opening a directory reads every entry held.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from embedzk.codec import message
from embedzk.consensus.types import Entry, EntryType, SnapshotMeta

__all__ = [
    "FORMAT_VERSION",
    "OLDEST_FORMAT_VERSION",
    "CompactionPoint",
    "StoredIdentity",
    "StoredSnapshot",
    "ChecksumError",
    "pack_entry",
    "unpack_entry",
    "seal",
    "unseal",
]

#: The on-disk format this build writes and the newest it reads. Bump it (and teach open() to migrate) whenever
#: the key layout or a record's layout changes. Version 2 added the member record (``m/member``: the disk's member
#: key and cluster); a version-1 directory is migrated when opened, its member keeping the bare peer id as its key.
FORMAT_VERSION = 2
#: The oldest on-disk format this build reads (and migrates).
OLDEST_FORMAT_VERSION = 1

_CRC = struct.Struct(">I")
# term, index, type; the data follows.
_ENTRY_HEAD = struct.Struct(">QQB")


@message(128)
@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """Whose data a directory holds, and in which format.

    Its layout must never change (newer builds read it to decide whether they can read the rest), so new facts
    about a directory go into new records, not new fields here.
    """

    format_version: int
    cluster_id: str
    peer_id: str


@message(129)
@dataclass(frozen=True, slots=True)
class CompactionPoint:
    """The last index dropped from the log, and its term: what ``term(first_index() - 1)`` answers."""

    index: int
    term: int


@message(130)
@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """The latest snapshot: its meta, and where its chunks are.

    Chunks of generation ``generation`` are stored under keys numbered ``0 .. chunk_count - 1``. A new snapshot
    gets the next generation, so its chunks can be written before this record is switched over to them, and the
    old generation's chunks never mix with the new one's.
    """

    meta: SnapshotMeta
    generation: int
    chunk_count: int


class ChecksumError(ValueError):
    """A stored value's checksum does not match its key and payload."""


def seal(key: bytes, payload: bytes) -> bytes:
    """The stored value for ``payload`` under ``key``: a CRC32 of both, then the payload.

    The key is part of the checksum so that a value moved under another key (a misdirected write, a buggy
    compaction) is caught as surely as a flipped bit.
    """
    return _CRC.pack(zlib.crc32(payload, zlib.crc32(key))) + payload


def unseal(key: bytes, value: bytes) -> bytes:
    """The payload of a value made by :func:`seal`; raises ChecksumError if it does not check out."""
    if len(value) < _CRC.size:
        raise ChecksumError(f"value of {len(value)} bytes is too short to hold a checksum")
    (expected,) = _CRC.unpack_from(value)
    payload = value[_CRC.size :]
    if zlib.crc32(payload, zlib.crc32(key)) != expected:
        raise ChecksumError("checksum mismatch")
    return payload


def pack_entry(entry: Entry) -> bytes:
    """An entry as stored: term and index (8 bytes each, big-endian), type (1 byte), then the data."""
    return _ENTRY_HEAD.pack(entry.term, entry.index, entry.type) + entry.data


def unpack_entry(payload: bytes) -> Entry:
    """The entry :func:`pack_entry` made; raises ValueError for bytes it cannot have made."""
    if len(payload) < _ENTRY_HEAD.size:
        raise ValueError(f"entry record of {len(payload)} bytes is shorter than its header")
    term, index, kind = _ENTRY_HEAD.unpack_from(payload)
    return Entry(term, index, EntryType(kind), payload[_ENTRY_HEAD.size :])
