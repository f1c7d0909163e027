"""Storage in a LevelDB directory (plyvel): the log, the hard state and the latest snapshot of one replica.

Key layout (every key of one kind shares a prefix, and big-endian numbers sort as integers, so a range of entries
or the chunks of a snapshot are one iterator scan)::

    b"m/identity"                          StoredIdentity: format version, cluster id, peer id
    b"m/member"                            MemberRecord: the disk's member key, cluster, founding promises
    b"m/hardstate"                         HardState
    b"m/snapmeta"                          StoredSnapshot: the latest SnapshotMeta, its chunks' generation and count
    b"m/compact"                           CompactionPoint: index and term of the last entry dropped
    b"e" + index (8 bytes, big-endian)     Entry
    b"s" + generation (8) + chunk (4)      one chunk of a snapshot's data

Every value is sealed with a CRC32 over its key and payload (:mod:`embedzk.persist.records`), checked on every
read, on top of LevelDB's own block checksums (``paranoid_checks``, ``verify_checksums``): a mismatch raises
StorageError naming the key and the directory, never a wrong answer.

Durability and atomicity: every write method is one LevelDB write batch, synced (``sync=True``: one fsync), so a
crash leaves either all of it or none of it. Two things are written outside that batch, and only ever as garbage
that nothing reaches: a big snapshot's chunks (or a snapshot saved in parts, part by part, one loop iteration
after another) are written (synced) under a new generation *before* the batch that switches the snapshot record
over to them, and entries at or below a new compaction point, when there are many, are deleted *after* the batch
that moves the compaction point. Opening the directory sweeps whatever garbage a crash left behind, and a new
snapshot's generation is always above any a leftover chunk carries.

Hot path: the last index, the compaction point, the hard state, the terms of the held log (as runs of equal
terms) and the most recent entries are kept in memory, so ``term()``, ``last_index()`` and the leader's reads of
what it has just appended cost no disk read.
"""

from __future__ import annotations

import bisect
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar, overload

import plyvel

from embedzk.codec import decode, encode
from embedzk.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from embedzk.errors import DecodeError, StorageError
from embedzk.membership.identity import MemberRecord
from embedzk.persist.base import CompactedError, SnapshotPart, UnavailableError
from embedzk.consensus.log import limit_size
from embedzk.persist.memory import check_contiguous, check_member_record
from embedzk.persist.records import (
    FORMAT_VERSION,
    OLDEST_FORMAT_VERSION,
    ChecksumError,
    CompactionPoint,
    StoredIdentity,
    StoredSnapshot,
    pack_entry,
    seal,
    unpack_entry,
    unseal,
)

__all__ = ["LevelDBStorage"]

T = TypeVar("T")

_IDENTITY = b"m/identity"
_MEMBER = b"m/member"
_HARD_STATE = b"m/hardstate"
_SNAPSHOT = b"m/snapmeta"
_COMPACTION = b"m/compact"
_ENTRY = b"e"
_CHUNK = b"s"

#: Entries to delete in one batch when compacting; beyond it, the deletes go in further batches after the
#: compaction point has moved, so one compaction never builds an unbounded batch in memory.
_DELETES_PER_BATCH = 10_000
#: Snapshot chunk bytes to gather in one batch before writing it out.
_CHUNK_BYTES_PER_BATCH = 4 * 1024 * 1024
#: Bounds on the cache of the most recent entries (by count, by data bytes).
_RECENT_ENTRIES = 4096
_RECENT_BYTES = 8 * 1024 * 1024
#: Bound on the runs of equal terms kept in memory; older runs are read from disk when asked for.
_TERM_RUNS = 4096


def _entry_key(index: int) -> bytes:
    return _ENTRY + index.to_bytes(8, "big")


def _chunk_key(generation: int, number: int) -> bytes:
    return _CHUNK + generation.to_bytes(8, "big") + number.to_bytes(4, "big")


def _chunk_prefix(generation: int) -> bytes:
    return _CHUNK + generation.to_bytes(8, "big")


class _TermRuns:
    """The terms of the held log as runs of equal terms: one (first index, term) pair per run.

    Raft logs hold few distinct terms (one per leader that wrote entries still held), so this is small and exact.
    It is bounded all the same: past :data:`_TERM_RUNS` runs the oldest are forgotten, and :meth:`term` answers
    None for them (the caller reads the disk).
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._terms: list[int] = []

    def term(self, index: int) -> int | None:
        """The term of entry ``index`` (which the caller knows is held), or None if not remembered."""
        if not self._starts or index < self._starts[0]:
            return None
        return self._terms[bisect.bisect_right(self._starts, index) - 1]

    def truncate(self, index: int) -> None:
        """Forget entries at and after ``index``."""
        k = bisect.bisect_left(self._starts, index)
        del self._starts[k:], self._terms[k:]

    def extend(self, entries: Iterable[Entry]) -> None:
        """Remember ``entries``, which follow the last one remembered (or start afresh after truncate)."""
        for entry in entries:
            if not self._terms or self._terms[-1] != entry.term:
                self._starts.append(entry.index)
                self._terms.append(entry.term)
        if len(self._starts) > _TERM_RUNS:
            del self._starts[: len(self._starts) - _TERM_RUNS], self._terms[: len(self._terms) - _TERM_RUNS]

    def compact(self, index: int) -> None:
        """Forget entries up to and including ``index``."""
        k = bisect.bisect_right(self._starts, index) - 1
        if k < 0:
            return
        del self._starts[:k], self._terms[:k]
        self._starts[0] = index + 1

    def clear(self) -> None:
        """Forget everything."""
        self._starts.clear()
        self._terms.clear()


class _RecentEntries:
    """The newest entries of the log, contiguous and ending at the last index, bounded by count and bytes.

    The leader reads what it has just appended to send it to followers; this answers those reads from memory.
    """

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._bytes = 0

    def first_index(self) -> int | None:
        """The index of the oldest entry held here, or None if empty."""
        return self.entries[0].index if self.entries else None

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``lo .. hi - 1``, which the caller has checked are held here."""
        first = self.entries[0].index
        return self.entries[lo - first : hi - first]

    def append(self, entries: list[Entry]) -> None:
        """Drop held entries at and after ``entries[0].index``, then add ``entries`` (and trim to the bounds)."""
        if not entries:
            return
        first = self.first_index()
        if first is not None:
            cut = max(entries[0].index - first, 0)
            if cut < len(self.entries):
                self._bytes -= sum(len(e.data) for e in self.entries[cut:])
                del self.entries[cut:]
            if self.entries and self.entries[-1].index + 1 != entries[0].index:
                self.clear()  # not contiguous with what we hold (cannot happen through append): start afresh
        self.entries.extend(entries)
        self._bytes += sum(len(e.data) for e in entries)
        self._trim()

    def compact(self, index: int) -> None:
        """Forget entries up to and including ``index``."""
        first = self.first_index()
        if first is None or index < first:
            return
        drop = index - first + 1
        self._bytes -= sum(len(e.data) for e in self.entries[:drop])
        del self.entries[:drop]

    def clear(self) -> None:
        """Forget everything."""
        self.entries.clear()
        self._bytes = 0

    def _trim(self) -> None:
        drop = max(len(self.entries) - _RECENT_ENTRIES, 0)
        freed = sum(len(e.data) for e in self.entries[:drop])
        while drop < len(self.entries) - 1 and self._bytes - freed > _RECENT_BYTES:
            freed += len(self.entries[drop].data)
            drop += 1
        if drop:
            del self.entries[:drop]
            self._bytes -= freed


class _Staging:
    """A snapshot being saved in parts: its meta, the generation its chunks go under, how many are written."""

    __slots__ = ("count", "generation", "meta")

    def __init__(self, meta: SnapshotMeta, generation: int) -> None:
        self.meta = meta
        self.generation = generation
        self.count = 0


class _StoredChunks(Sequence[bytes]):
    """A stored snapshot's chunks, read one at a time from a LevelDB snapshot (a point-in-time view)."""

    __slots__ = ("_count", "_generation", "_storage", "_view")

    def __init__(self, storage: LevelDBStorage, view: Any, generation: int, count: int) -> None:
        self._storage = storage
        self._view = view
        self._generation = generation
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[bytes]:
        for number in range(self._count):
            yield self._storage._stored_chunk(self._view, self._generation, number)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"chunk {index} of a snapshot of {self._count}")
        return self._storage._stored_chunk(self._view, self._generation, index)


class LevelDBStorage:
    """The :class:`~embedzk.persist.base.Storage` protocol over a LevelDB directory owned by one replica.

    Open it with :meth:`open`. It is not thread-safe: the peer's loop thread owns it. Every method raises
    StorageError when the directory turns out corrupt, and after a failed write every method raises StorageError
    (a failed sync leaves the disk's state unknown, so nothing more is trusted; reopen the directory to go on).
    Misuse that only a bug in the caller can cause raises ValueError, as with MemoryStorage.
    """

    def __init__(self, db: Any, path: Path) -> None:
        """Not for direct use: call :meth:`open`."""
        self._db: Any = db
        self._path = path
        self._failed: str | None = None
        self._hard_state = HardState()
        self._snapshot = StoredSnapshot(SnapshotMeta(), generation=0, chunk_count=0)
        self._compact_index = 0
        self._compact_term = 0
        self._last_index = 0
        self._terms = _TermRuns()
        self._recent = _RecentEntries()
        # The highest snapshot generation that may have chunks on disk: a new snapshot's chunks go under a higher
        # one, so they never mix with leftovers of an unfinished one (even leftovers a power cut brought back).
        self._max_generation = 0
        # The snapshot being saved in parts (see SnapshotPart), or None.
        self._staging: _Staging | None = None
        self._member: MemberRecord | None = None

    # --- opening and closing ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        cluster_id: str,
        peer_id: str,
        conf_state: ConfState | None = None,
        create: bool = True,
    ) -> LevelDBStorage:
        """Open the data directory at ``path`` as the storage of peer ``peer_id`` of cluster ``cluster_id``.

        A directory that does not exist yet (or is empty) is created when ``create`` is true and bootstrapped with
        the identity and a snapshot at index 0 holding ``conf_state`` (empty if None: a peer that founds or joins a
        cluster learns its membership). A directory in an older format is migrated. Raises StorageError, with a
        message saying what to do, when the directory is locked by another process, is corrupt, belongs to
        another cluster or peer, was written by a newer format, or holds files that are not an embedzk database
        (a fresh start over unknown data is never silent).
        """
        path = Path(path).absolute()
        fresh = _is_fresh(path)
        if fresh:
            if not create:
                raise StorageError(f"data_dir {path} holds no embedzk database (and create=False)")
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create data_dir {path}: {exc}") from exc
        db = _open_db(path, create=fresh)
        storage = cls(db, path)
        try:
            storage._load(cluster_id, peer_id, conf_state)
        except BaseException:
            storage.close()
            raise
        return storage

    @property
    def path(self) -> Path:
        """The data directory."""
        return self._path

    def close(self) -> None:
        """Close the database and release its lock. Idempotent."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> LevelDBStorage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else f"first={self.first_index()}, last={self._last_index}"
        return f"LevelDBStorage({str(self._path)!r}, {state})"

    # --- read side ---------------------------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state last saved, and the membership of the latest snapshot."""
        self._check_usable()
        return self._hard_state, self._snapshot.meta.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``lo`` up to (not including) ``hi``, at most ``max_bytes`` of data but never fewer than one."""
        self._check_usable()
        if lo > hi:
            raise ValueError(f"entries({lo}, {hi}): lo is past hi")
        if lo <= self._compact_index:
            raise CompactedError(f"entry {lo} is compacted (first held is {self._compact_index + 1})")
        if hi > self._last_index + 1:
            raise UnavailableError(f"entries up to {hi - 1} asked for, last held is {self._last_index}")
        if lo == hi:
            return []
        recent_first = self._recent.first_index()
        if recent_first is not None and lo >= recent_first:
            return limit_size(self._recent.slice(lo, hi), max_bytes)
        return self._read_entries(lo, hi, max_bytes)

    def term(self, index: int) -> int:
        """The term of entry ``index``; ``first_index() - 1`` is answered from the compaction point."""
        self._check_usable()
        if index < self._compact_index:
            raise CompactedError(f"entry {index} is compacted (compaction point is {self._compact_index})")
        if index == self._compact_index:
            return self._compact_term
        if index > self._last_index:
            raise UnavailableError(f"entry {index} is past the last held, {self._last_index}")
        term = self._terms.term(index)
        if term is None:
            term = self._read_entries(index, index + 1, None)[0].term
        return term

    def first_index(self) -> int:
        """The index of the first entry held (one past the compaction point)."""
        self._check_usable()
        return self._compact_index + 1

    def last_index(self) -> int:
        """The index of the last entry held (the compaction point if none is held)."""
        self._check_usable()
        return self._last_index

    def snapshot_meta(self) -> SnapshotMeta:
        """What the latest snapshot stands for."""
        self._check_usable()
        return self._snapshot.meta

    def snapshot_chunks(self) -> Sequence[bytes]:
        """The latest snapshot's data, in its chunks, each read from disk when asked for (a snapshot may be far
        larger than what should be held in memory at once, or read in one go on the loop thread).

        The sequence reads from a LevelDB snapshot taken now, so it goes on giving this snapshot's chunks after a
        newer snapshot replaced it (a leader's transfer to a follower outlives the snapshots it takes meanwhile).
        A chunk that is missing or corrupt raises StorageError when it is read."""
        self._check_usable()
        snap = self._snapshot
        try:
            view = self._db.snapshot()
        except (plyvel.Error, OSError) as exc:
            raise _read_failure(self._path, exc) from exc
        return _StoredChunks(self, view, snap.generation, snap.chunk_count)

    # --- write side --------------------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry], hard_state: HardState | None = None, sync: bool = True) -> None:
        """Atomically and durably (one synced batch): replace held entries from ``entries[0].index`` on with
        ``entries``, and save ``hard_state``."""
        self._check_usable()
        new = list(entries)
        check_contiguous(new)
        # Entries the compaction point covers are in the snapshot already (etcd's MemoryStorage skips them too).
        if new and new[0].index <= self._compact_index:
            new = new[self._compact_index + 1 - new[0].index :]
        if not new and hard_state is None:
            return
        puts: list[tuple[bytes, bytes]] = []
        deletes: Iterable[bytes] = ()
        if new:
            first, last = new[0].index, new[-1].index
            if first > self._last_index + 1:
                raise ValueError(f"append at {first} leaves a gap after the last entry, {self._last_index}")
            if first <= self._snapshot.meta.index:
                raise ValueError(
                    f"append at {first} would drop entries covered by the snapshot at {self._snapshot.meta.index}"
                )
            puts = [(key, seal(key, pack_entry(e))) for e in new for key in (_entry_key(e.index),)]
            # Entries first..last are overwritten by the puts; any held beyond last is the rest of the conflict.
            deletes = [_entry_key(i) for i in range(last + 1, self._last_index + 1)]
        if hard_state is not None:
            puts.append((_HARD_STATE, seal(_HARD_STATE, encode(hard_state))))
        self._write(puts, deletes, sync=sync)
        if new:
            self._last_index = new[-1].index
            self._terms.truncate(new[0].index)
            self._terms.extend(new)
            self._recent.append(new)
        if hard_state is not None:
            self._hard_state = hard_state

    def install_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes]) -> None:
        """Durably replace the state with a snapshot from the leader; entries after it whose term agrees stay."""
        self._check_usable()
        if meta.index < self._snapshot.meta.index:
            raise ValueError(f"snapshot at {meta.index} is older than the one held, at {self._snapshot.meta.index}")
        # Raft's rule (thesis 5.3, InstallSnapshot step 6): a log holding meta.index with meta.term is the
        # leader's up to there, and what follows stays; otherwise the whole log goes.
        keep = self._compact_index <= meta.index <= self._last_index and self.term(meta.index) == meta.term
        self._discard_staging()
        puts, record = self._stage_snapshot(meta, chunks)
        puts.append((_COMPACTION, seal(_COMPACTION, encode(CompactionPoint(meta.index, meta.term)))))
        # Entries past the snapshot that disagree must go in the same batch: they would be reachable otherwise.
        deletes = [] if keep else [_entry_key(i) for i in range(meta.index + 1, self._last_index + 1)]
        covered = range(self._compact_index + 1, min(meta.index, self._last_index) + 1)
        deletes += self._old_chunk_keys()
        self._switch(puts, deletes, covered)
        self._snapshot = record
        self._compact_index, self._compact_term = meta.index, meta.term
        if keep:
            self._terms.compact(meta.index)
            self._recent.compact(meta.index)
        else:
            self._last_index = meta.index
            self._terms.clear()
            self._recent.clear()

    def save_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes] | SnapshotPart) -> None:
        """Durably store a snapshot of this replica's own applied state, replacing the previous one; the log
        stays (call :meth:`compact` afterwards).

        ``chunks`` may be one :class:`~embedzk.persist.base.SnapshotPart`: each part's chunks are written (synced)
        under the new snapshot's generation as it comes, unreachable until the last part's batch switches the
        snapshot record over to them."""
        self._check_usable()
        if isinstance(chunks, SnapshotPart):
            self._save_part(meta, chunks)
            return
        self._discard_staging()
        self._check_own_snapshot(meta)
        puts, record = self._stage_snapshot(meta, chunks)
        self._switch(puts, self._old_chunk_keys(), range(0))
        self._snapshot = record

    def _save_part(self, meta: SnapshotMeta, part: SnapshotPart) -> None:
        if part.first == 0:
            self._discard_staging()
            self._check_own_snapshot(meta)
            self._staging = _Staging(meta, self._new_generation())
        staging = self._staging
        if staging is None or staging.meta != meta or staging.count != part.first:
            have = "nothing" if staging is None else f"{staging.count} chunks of the snapshot at {staging.meta.index}"
            raise ValueError(f"a part from chunk {part.first} of the snapshot at {meta.index} follows {have}")
        puts = []
        for number, chunk in enumerate(part.chunks, start=part.first):
            key = _chunk_key(staging.generation, number)
            puts.append((key, seal(key, bytes(chunk))))
        if not part.last:
            # Synced, like every batch that a later synced batch depends on (see _stage_snapshot).
            self._write(puts, (), sync=True)
            staging.count += len(part.chunks)
            return
        self._check_own_snapshot(meta)
        self._staging = None
        record = StoredSnapshot(meta, generation=staging.generation, chunk_count=staging.count + len(part.chunks))
        puts.append((_SNAPSHOT, seal(_SNAPSHOT, encode(record))))
        self._switch(puts, self._old_chunk_keys(), range(0))
        self._snapshot = record

    def _check_own_snapshot(self, meta: SnapshotMeta) -> None:
        if meta.index < self._snapshot.meta.index:
            raise ValueError(f"snapshot at {meta.index} is older than the one held, at {self._snapshot.meta.index}")
        if meta.index > self._last_index:
            raise ValueError(f"snapshot at {meta.index} is past the last entry, {self._last_index}")
        if self.term(meta.index) != meta.term:
            raise ValueError(f"snapshot at {meta.index} has term {meta.term}, the log has {self.term(meta.index)}")

    def _discard_staging(self) -> None:
        """Forget a snapshot being saved in parts; its chunks go (a crash before that leaves them to open())."""
        staging, self._staging = self._staging, None
        if staging is not None and staging.count:
            self._write([], [_chunk_key(staging.generation, n) for n in range(staging.count)], sync=False)

    def _new_generation(self) -> int:
        self._max_generation += 1
        return self._max_generation

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (at most the snapshot's index); a no-op if already done."""
        self._check_usable()
        if index > self._snapshot.meta.index:
            raise ValueError(
                f"cannot compact to {index}: the snapshot only covers up to {self._snapshot.meta.index}"
            )
        if index <= self._compact_index:
            return
        term = self.term(index)
        point = [(_COMPACTION, seal(_COMPACTION, encode(CompactionPoint(index, term))))]
        self._switch(point, [], range(self._compact_index + 1, index + 1))
        self._compact_index, self._compact_term = index, term
        self._terms.compact(index)
        self._recent.compact(index)

    def member_record(self) -> MemberRecord | None:
        """The disk's member record, or None if it has none yet."""
        self._check_usable()
        return self._member

    def save_member_record(self, record: MemberRecord) -> None:
        """Durably (one synced batch) replace the member record; its key must not change."""
        self._check_usable()
        check_member_record(self._member, record)
        self._write([(_MEMBER, seal(_MEMBER, encode(record)))], (), sync=True)
        self._member = record

    # --- internals: writing ------------------------------------------------------------------------------------

    def _stage_snapshot(
        self, meta: SnapshotMeta, chunks: Sequence[bytes]
    ) -> tuple[list[tuple[bytes, bytes]], StoredSnapshot]:
        """Write a new snapshot's chunks under the next generation, except the last few, which are returned (with
        the snapshot record) to go into the switching batch. What is written here is unreachable until then."""
        record = StoredSnapshot(meta, generation=self._new_generation(), chunk_count=len(chunks))
        pending: list[tuple[bytes, bytes]] = []
        size = 0
        for number, chunk in enumerate(chunks):
            if size + len(chunk) > _CHUNK_BYTES_PER_BATCH and pending:
                self._write(pending, (), sync=True)
                pending, size = [], 0
            key = _chunk_key(record.generation, number)
            pending.append((key, seal(key, bytes(chunk))))
            size += len(chunk)
        pending.append((_SNAPSHOT, seal(_SNAPSHOT, encode(record))))
        return pending, record

    def _old_chunk_keys(self) -> list[bytes]:
        return [_chunk_key(self._snapshot.generation, n) for n in range(self._snapshot.chunk_count)]

    def _switch(self, puts: list[tuple[bytes, bytes]], deletes: list[bytes], covered: range) -> None:
        """One synced batch with ``puts`` and ``deletes``, plus deletes of the entries in ``covered`` (which the
        batch makes unreachable by moving the compaction point): inline if few, otherwise in batches after it."""
        if len(covered) <= _DELETES_PER_BATCH:
            self._write(puts, deletes + [_entry_key(i) for i in covered], sync=True)
            return
        self._write(puts, deletes, sync=True)
        # Garbage now: a crash part-way leaves some behind, which the next open() sweeps. No sync needed.
        for start in range(covered.start, covered.stop, _DELETES_PER_BATCH):
            stop = min(start + _DELETES_PER_BATCH, covered.stop)
            self._write([], [_entry_key(i) for i in range(start, stop)], sync=False)

    def _write(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes], *, sync: bool) -> None:
        """One atomic LevelDB batch. A failure marks the storage failed: what reached the disk is unknown."""
        try:
            # transaction=True: if building the batch raises, nothing is written (plyvel writes it otherwise).
            with self._db.write_batch(transaction=True, sync=sync) as batch:
                for key in deletes:
                    batch.delete(key)
                for key, value in puts:
                    batch.put(key, value)
        except (plyvel.Error, OSError) as exc:
            self._failed = f"a write failed: {_message(exc)}"
            raise StorageError(f"data_dir {self._path}: {self._failed}") from exc

    # --- internals: reading ------------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._db is None:
            raise StorageError(f"storage of {self._path} is closed")
        if self._failed is not None:
            raise StorageError(f"storage of {self._path} is unusable: {self._failed}; reopen it")

    def _corrupt(self, key: bytes, reason: str) -> NoReturn:
        raise StorageError(f"corrupt record {key!r} in {self._path}: {reason}")

    def _unseal(self, key: bytes, value: bytes) -> bytes:
        try:
            return unseal(key, value)
        except ChecksumError as exc:
            raise StorageError(f"corrupt record {key!r} in {self._path}: {exc}") from None

    def _decode(self, key: bytes, value: bytes, expect: type[T]) -> T:
        try:
            decoded: T = decode(self._unseal(key, value), expect=expect)
        except DecodeError as exc:
            raise StorageError(f"corrupt record {key!r} in {self._path}: {exc}") from None
        return decoded

    def _entry(self, key: bytes, value: bytes) -> Entry:
        try:
            return unpack_entry(self._unseal(key, value))
        except ValueError as exc:  # ChecksumError is one too, but _unseal has turned it into a StorageError
            raise StorageError(f"corrupt record {key!r} in {self._path}: {exc}") from None

    def _get(self, key: bytes, expect: type[T]) -> T | None:
        value = self._raw(key)
        return None if value is None else self._decode(key, value, expect)

    def _require(self, key: bytes, expect: type[T]) -> T:
        value = self._get(key, expect)
        if value is None:
            self._corrupt(key, "record missing")
        return value

    def _scan(self, start: bytes, stop: bytes, *, values: bool = True) -> Iterable[Any]:
        """Keys (and values) in ``[start, stop)``, with LevelDB's block checksums checked; errors as StorageError."""
        try:
            with self._db.iterator(start=start, stop=stop, include_value=values, verify_checksums=True) as it:
                yield from it
        except (plyvel.Error, OSError) as exc:
            raise _read_failure(self._path, exc) from exc

    def _read_entries(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        out: list[Entry] = []
        size = 0
        for key, value in self._scan(_entry_key(lo), _entry_key(hi)):
            entry = self._entry(key, value)
            expected = lo + len(out)
            if entry.index != expected or key != _entry_key(expected):
                self._corrupt(_entry_key(expected), f"entry {expected} missing (found {key!r})")
            size += len(entry.data)
            if max_bytes is not None and size > max_bytes and out:
                break
            out.append(entry)
        if len(out) < hi - lo and (max_bytes is None or size <= max_bytes):
            self._corrupt(_entry_key(lo + len(out)), f"entry {lo + len(out)} missing")
        return out

    # --- internals: opening ------------------------------------------------------------------------------------

    def _load(self, cluster_id: str, peer_id: str, conf_state: ConfState | None) -> None:
        identity_value = self._raw(_IDENTITY)
        if identity_value is None:
            self._bootstrap(cluster_id, peer_id, conf_state)
            return
        identity = self._check_identity(identity_value, cluster_id, peer_id)
        self._hard_state = self._require(_HARD_STATE, HardState)
        self._snapshot = self._require(_SNAPSHOT, StoredSnapshot)
        point = self._require(_COMPACTION, CompactionPoint)
        self._compact_index, self._compact_term = point.index, point.term
        garbage = self._load_log()
        garbage += self._check_chunks()
        if not self._compact_index <= self._snapshot.meta.index <= self._last_index:
            raise StorageError(
                f"corrupt data_dir {self._path}: snapshot at {self._snapshot.meta.index} is outside the log "
                f"({self._compact_index}..{self._last_index})"
            )
        # What a crash left behind between a switching batch and its follow-up deletes: unreachable, so harmless,
        # but swept so it cannot pile up.
        for start in range(0, len(garbage), _DELETES_PER_BATCH):
            self._write([], garbage[start : start + _DELETES_PER_BATCH], sync=False)
        self._member = self._get(_MEMBER, MemberRecord)
        if identity.format_version < FORMAT_VERSION:
            self._migrate(identity)

    def _migrate(self, identity: StoredIdentity) -> None:
        """Bring a directory of an older format up to this one, in one synced batch."""
        puts = [(_IDENTITY, seal(_IDENTITY, encode(StoredIdentity(FORMAT_VERSION, identity.cluster_id,
                                                                  identity.peer_id))))]
        if identity.format_version < 2 and self._member is None:
            # Version 1 knew no disk tags: the member that wrote this log keeps the bare peer id as its key, which
            # no fresh disk ever takes (see embedzk.membership.identity), so it stays bound to this disk.
            self._member = MemberRecord(key=identity.peer_id)
            puts.append((_MEMBER, seal(_MEMBER, encode(self._member))))
        self._write(puts, (), sync=True)

    def _raw(self, key: bytes, view: Any = None) -> bytes | None:
        """The value stored at ``key`` (in ``view``, a LevelDB snapshot, if given), or None."""
        try:
            value: bytes | None = (self._db if view is None else view).get(key, verify_checksums=True)
        except (plyvel.Error, OSError, RuntimeError) as exc:  # RuntimeError: plyvel's "closed database"
            raise _read_failure(self._path, exc) from exc
        return value

    def _stored_chunk(self, view: Any, generation: int, number: int) -> bytes:
        key = _chunk_key(generation, number)
        value = self._raw(key, view)
        if value is None:
            self._corrupt(key, "snapshot chunk missing")
        return self._unseal(key, value)

    def _bootstrap(self, cluster_id: str, peer_id: str, conf_state: ConfState | None) -> None:
        if self._holds_any_key():
            raise StorageError(
                f"data_dir {self._path} holds a LevelDB database with no embedzk identity: refusing to use data "
                f"of unknown origin (point data_dir elsewhere, or remove it)"
            )
        if conf_state is None:
            conf_state = ConfState()
        identity = StoredIdentity(FORMAT_VERSION, cluster_id, peer_id)
        snapshot = StoredSnapshot(SnapshotMeta(0, 0, conf_state), generation=0, chunk_count=0)
        records: list[tuple[bytes, object]] = [
            (_IDENTITY, identity),
            (_HARD_STATE, HardState()),
            (_SNAPSHOT, snapshot),
            (_COMPACTION, CompactionPoint(0, 0)),
        ]
        self._write([(key, seal(key, encode(value))) for key, value in records], (), sync=True)
        self._snapshot = snapshot

    def _holds_any_key(self) -> bool:
        try:
            with self._db.iterator(include_value=False, verify_checksums=True) as it:
                return next(it, None) is not None
        except (plyvel.Error, OSError) as exc:
            raise _read_failure(self._path, exc) from exc

    def _check_identity(self, value: bytes, cluster_id: str, peer_id: str) -> StoredIdentity:
        payload = self._unseal(_IDENTITY, value)
        try:
            identity = decode(payload, expect=StoredIdentity)
        except DecodeError as exc:
            raise StorageError(
                f"data_dir {self._path} has an identity record this build cannot read ({exc}): it is corrupt or "
                f"was written by a newer embedzk"
            ) from None
        if identity.format_version > FORMAT_VERSION:
            raise StorageError(
                f"data_dir {self._path} is in format version {identity.format_version}, newer than this build "
                f"reads (up to {FORMAT_VERSION}): upgrade embedzk"
            )
        if identity.format_version < OLDEST_FORMAT_VERSION:
            raise StorageError(f"data_dir {self._path} has an unknown format version {identity.format_version}")
        if (identity.cluster_id, identity.peer_id) != (cluster_id, peer_id):
            raise StorageError(
                f"data_dir {self._path} belongs to cluster {identity.cluster_id} peer {identity.peer_id}, "
                f"not cluster {cluster_id} peer {peer_id}"
            )
        return identity

    def _load_log(self) -> list[bytes]:
        """Read the whole held log once: checks every record, fills the caches; returns garbage keys found."""
        garbage: list[bytes] = []
        tail: deque[Entry] = deque(maxlen=_RECENT_ENTRIES)
        expected = self._compact_index + 1
        for key, value in self._scan(_ENTRY, _ENTRY + b"\xff" * 9):
            if len(key) != 9:
                self._corrupt(key, "not an entry key")
            index = int.from_bytes(key[1:], "big")
            if index <= self._compact_index:
                garbage.append(key)
                continue
            entry = self._entry(key, value)
            if index != expected:
                self._corrupt(_entry_key(expected), f"entry {expected} missing (next held is {index})")
            if entry.index != index:
                self._corrupt(key, f"holds entry {entry.index}")
            self._terms.extend((entry,))
            tail.append(entry)
            expected += 1
        self._last_index = expected - 1
        self._recent.append(list(tail))
        return garbage

    def _check_chunks(self) -> list[bytes]:
        """Check that the snapshot's chunks are all there; returns the keys of other generations' chunks."""
        garbage: list[bytes] = []
        current = _chunk_prefix(self._snapshot.generation)
        count = 0
        self._max_generation = self._snapshot.generation
        for key in self._scan(_CHUNK, _CHUNK + b"\xff" * 13, values=False):
            if key.startswith(current) and len(key) == 13:
                if key != _chunk_key(self._snapshot.generation, count):
                    break
                count += 1
            else:
                garbage.append(key)
                if len(key) >= 9:
                    self._max_generation = max(self._max_generation, int.from_bytes(key[1:9], "big"))
        if count != self._snapshot.chunk_count:
            self._corrupt(_chunk_key(self._snapshot.generation, count), "snapshot chunk missing")
        return garbage


def _message(exc: BaseException) -> str:
    """plyvel puts LevelDB's status in bytes; make it readable."""
    parts = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    return "; ".join(parts) or type(exc).__name__


def _read_failure(path: Path, exc: BaseException) -> StorageError:
    """The StorageError for a failed LevelDB read: corruption found under a block checksum, or an I/O error."""
    if isinstance(exc, plyvel.CorruptionError):
        return StorageError(
            f"data_dir {path} is corrupt ({_message(exc)}): restore it from a backup, or remove it so that this "
            f"peer catches up from the cluster"
        )
    return StorageError(f"cannot read data_dir {path} (damaged or unreadable?): {_message(exc)}")


def _is_fresh(path: Path) -> bool:
    """Whether ``path`` is a new data directory (missing or empty); raises StorageError for unknown contents."""
    try:
        if not path.exists():
            return True
        if not path.is_dir():
            raise StorageError(f"data_dir {path} is not a directory")
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise StorageError(f"cannot read data_dir {path}: {exc}") from exc
    if "CURRENT" not in names and all(_is_bookkeeping(name) for name in names):
        # Empty, or what LevelDB writes before CURRENT when creating a database (a creation cut short): no data.
        return True
    if "CURRENT" not in names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise StorageError(
            f"data_dir {path} holds files but no embedzk database ({shown}): refusing to start afresh over unknown "
            f"data (point data_dir elsewhere, or empty it)"
        )
    return False


def _is_bookkeeping(name: str) -> bool:
    return name in ("LOCK", "LOG", "LOG.old") or name.startswith("MANIFEST-")


def _open_db(path: Path, *, create: bool) -> Any:
    try:
        return plyvel.DB(str(path), create_if_missing=create, paranoid_checks=True)
    except plyvel.CorruptionError as exc:
        raise _read_failure(path, exc) from exc
    except plyvel.IOError as exc:
        text = _message(exc)
        if "lock" in text.lower():
            raise StorageError(
                f"data_dir {path} is locked: another process (or another open storage in this one) is using it "
                f"({text})"
            ) from exc
        raise StorageError(f"cannot open data_dir {path}: {text}") from exc
    except (plyvel.Error, OSError) as exc:
        raise StorageError(f"cannot open data_dir {path}: {_message(exc)}") from exc
