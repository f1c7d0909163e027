"""Storage held in memory: for the consensus core's tests and for the simulator's disks.

Every write is "synced" the moment its method returns, so a :class:`MemoryStorage` object behaves like a disk
that outlives the process: the simulator keeps it when it crashes a node and restarts the node from it (or from a
:meth:`MemoryStorage.clone` taken earlier, to model a disk frozen at some point). Writes that a real driver has
not issued yet are, by construction, simply absent from it.

The rules for writes (which entries survive an append, a snapshot install, a compaction) are Raft's, and are the
same ones :class:`~embedzk.persist.leveldb.LevelDBStorage` follows; ``tests/test_storage.py`` holds both to them.
"""

from __future__ import annotations

from collections.abc import Sequence

from embedzk.consensus.log import limit_size
from embedzk.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from embedzk.membership.identity import MemberRecord
from embedzk.persist.base import CompactedError, SnapshotPart, UnavailableError

__all__ = ["MemoryStorage", "check_contiguous", "check_member_record"]


def check_contiguous(entries: Sequence[Entry]) -> None:
    """Raise ValueError unless the indexes of ``entries`` follow each other without a gap."""
    for prev, nxt in zip(entries, entries[1:]):
        if nxt.index != prev.index + 1:
            raise ValueError(f"entries are not contiguous: {prev.index} is followed by {nxt.index}")


def check_member_record(old: MemberRecord | None, new: MemberRecord) -> None:
    """Raise ValueError if ``new`` would change the member key ``old`` fixed (a disk is one member for life)."""
    if not isinstance(new, MemberRecord):
        raise ValueError(f"a member record is a MemberRecord, not {type(new).__name__}")
    if old is not None and old.key != new.key:
        raise ValueError(f"the disk belongs to member {old.key}; it cannot become {new.key}")


class MemoryStorage:
    """The :class:`~embedzk.persist.base.Storage` protocol, in memory.

    ``conf_state`` is the initial membership: a fresh storage holds the bootstrap snapshot at index 0 (term 0)
    with it, an empty log and an empty hard state. A storage for a peer that founds or joins a cluster starts with
    an empty one (the default). ``member`` is the disk's member record, if it has one already.

    Misuse that only a bug in the caller can cause (a gap in appended entries, a stale snapshot, compacting past
    the snapshot) raises ValueError rather than corrupting the log.
    """

    def __init__(self, conf_state: ConfState | None = None, member: MemberRecord | None = None) -> None:
        if conf_state is None:
            conf_state = ConfState()
        self._member = member
        self._hard_state = HardState()
        self._snap_meta = SnapshotMeta(index=0, term=0, conf_state=conf_state)
        self._snap_chunks: tuple[bytes, ...] = ()
        # The compaction point: the last index dropped from the log, and its term. Kept apart from the snapshot
        # because save_snapshot() moves the snapshot ahead of it until compact() catches up.
        self._compact_index = 0
        self._compact_term = 0
        # _entries[k] holds index _compact_index + 1 + k.
        self._entries: list[Entry] = []
        # The parts of a snapshot being saved (its meta, its chunks so far), or None.
        self._staged: tuple[SnapshotMeta, list[bytes]] | None = None

    # --- read side ---------------------------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state last saved, and the membership of the latest snapshot."""
        return self._hard_state, self._snap_meta.conf_state

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``lo`` up to (not including) ``hi``, at most ``max_bytes`` of data but never fewer than one."""
        if lo > hi:
            raise ValueError(f"entries({lo}, {hi}): lo is past hi")
        if lo <= self._compact_index:
            raise CompactedError(f"entry {lo} is compacted (first held is {self._compact_index + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries up to {hi - 1} asked for, last held is {self.last_index()}")
        start = lo - self._compact_index - 1
        return limit_size(self._entries[start : start + hi - lo], max_bytes)

    def term(self, index: int) -> int:
        """The term of entry ``index``; ``first_index() - 1`` is answered from the compaction point."""
        if index < self._compact_index:
            raise CompactedError(f"entry {index} is compacted (compaction point is {self._compact_index})")
        if index == self._compact_index:
            return self._compact_term
        if index > self.last_index():
            raise UnavailableError(f"entry {index} is past the last held, {self.last_index()}")
        return self._entries[index - self._compact_index - 1].term

    def first_index(self) -> int:
        """The index of the first entry held (one past the compaction point)."""
        return self._compact_index + 1

    def last_index(self) -> int:
        """The index of the last entry held (the compaction point if none is held)."""
        return self._compact_index + len(self._entries)

    def snapshot_meta(self) -> SnapshotMeta:
        """What the latest snapshot stands for."""
        return self._snap_meta

    def snapshot_chunks(self) -> Sequence[bytes]:
        """The latest snapshot's data, in its chunks (empty for the bootstrap snapshot)."""
        return self._snap_chunks

    # --- write side --------------------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry], hard_state: HardState | None = None, sync: bool = True) -> None:
        """Drop held entries at and after ``entries[0].index``, append ``entries``, save ``hard_state``."""
        new = list(entries)
        check_contiguous(new)
        # Entries at or below the compaction point are covered by the snapshot already: skip them, as etcd's
        # MemoryStorage does, instead of failing a driver that re-appends what a snapshot overtook.
        if new and new[0].index <= self._compact_index:
            new = new[self._compact_index + 1 - new[0].index :]
        if new:
            first = new[0].index
            if first > self.last_index() + 1:
                raise ValueError(f"append at {first} leaves a gap after the last entry, {self.last_index()}")
            if first <= self._snap_meta.index:
                # Entries the snapshot covers are applied, so committed: truncating them means a broken caller.
                raise ValueError(
                    f"append at {first} would drop entries covered by the snapshot at {self._snap_meta.index}"
                )
            del self._entries[first - self._compact_index - 1 :]
            self._entries.extend(new)
        if hard_state is not None:
            self._hard_state = hard_state

    def install_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes]) -> None:
        """Replace the state with a snapshot from the leader; entries after it whose term agrees are kept."""
        if meta.index < self._snap_meta.index:
            raise ValueError(f"snapshot at {meta.index} is older than the one held, at {self._snap_meta.index}")
        # Raft's rule (thesis 5.3, InstallSnapshot step 6): if the entry at meta.index is held with meta.term, the
        # log after it is the leader's too and stays; otherwise the whole log goes.
        if self._holds(meta.index, meta.term):
            del self._entries[: meta.index - self._compact_index]
        else:
            self._entries = []
        self._compact_index, self._compact_term = meta.index, meta.term
        self._snap_meta = meta
        self._snap_chunks = tuple(chunks)
        self._staged = None

    def save_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes] | SnapshotPart) -> None:
        """Store a snapshot of this replica's own applied state, replacing the previous one; the log stays.

        ``chunks`` may be one :class:`~embedzk.persist.base.SnapshotPart`: the parts are gathered aside, and the
        snapshot replaces the previous one when the last part comes."""
        if isinstance(chunks, SnapshotPart):
            self._save_part(meta, chunks)
            return
        self._staged = None
        self._check_own_snapshot(meta)
        self._snap_meta = meta
        self._snap_chunks = tuple(chunks)

    def _save_part(self, meta: SnapshotMeta, part: SnapshotPart) -> None:
        if part.first == 0:
            self._staged = None
            self._check_own_snapshot(meta)
            self._staged = (meta, [])
        staged = self._staged
        if staged is None or staged[0] != meta or len(staged[1]) != part.first:
            have = "nothing" if staged is None else f"{len(staged[1])} chunks of the snapshot at {staged[0].index}"
            raise ValueError(f"a part from chunk {part.first} of the snapshot at {meta.index} follows {have}")
        staged[1].extend(part.chunks)
        if part.last:
            self._check_own_snapshot(meta)
            self._staged = None
            self._snap_meta = meta
            self._snap_chunks = tuple(staged[1])

    def _check_own_snapshot(self, meta: SnapshotMeta) -> None:
        if meta.index < self._snap_meta.index:
            raise ValueError(f"snapshot at {meta.index} is older than the one held, at {self._snap_meta.index}")
        if meta.index > self.last_index():
            raise ValueError(f"snapshot at {meta.index} is past the last entry, {self.last_index()}")
        if self.term(meta.index) != meta.term:
            raise ValueError(f"snapshot at {meta.index} has term {meta.term}, the log has {self.term(meta.index)}")

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (at most the snapshot's index); a no-op if already done."""
        if index > self._snap_meta.index:
            raise ValueError(f"cannot compact to {index}: the snapshot only covers up to {self._snap_meta.index}")
        if index <= self._compact_index:
            return
        term = self.term(index)
        del self._entries[: index - self._compact_index]
        self._compact_index, self._compact_term = index, term

    def member_record(self) -> MemberRecord | None:
        """The disk's member record, or None if it has none yet."""
        return self._member

    def save_member_record(self, record: MemberRecord) -> None:
        """Replace the member record (its key must not change)."""
        check_member_record(self._member, record)
        self._member = record

    def close(self) -> None:
        """Nothing to release: the object stays readable, like a disk that outlives the process using it."""

    # --- for the simulator ---------------------------------------------------------------------------------------

    def clone(self) -> MemoryStorage:
        """An independent copy of everything stored: a disk image that later writes to this one do not touch.

        Entries, metas and chunks are immutable, so copying the containers is deep enough.
        """
        copy = MemoryStorage.__new__(MemoryStorage)
        copy._member = self._member
        copy._hard_state = self._hard_state
        copy._snap_meta = self._snap_meta
        copy._snap_chunks = self._snap_chunks
        copy._compact_index = self._compact_index
        copy._compact_term = self._compact_term
        copy._entries = list(self._entries)
        copy._staged = None  # parts of an unfinished snapshot are not on the disk image
        return copy

    def _holds(self, index: int, term: int) -> bool:
        """Whether entry ``index`` (or the compaction point) is held with ``term``."""
        if index < self._compact_index or index > self.last_index():
            return False
        return self.term(index) == term

    def __repr__(self) -> str:
        return (
            f"MemoryStorage(first={self.first_index()}, last={self.last_index()}, "
            f"snapshot={self._snap_meta.index}, hard_state={self._hard_state})"
        )
