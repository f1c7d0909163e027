"""The Raft log as the protocol sees it: what storage holds, plus what is not yet persisted (etcd: log.go,
log_unstable.go).

The log is ``storage`` (durable, written by the driver) followed by :class:`Unstable` (in memory: entries and at
most one snapshot that the driver has not persisted yet). Entries move from unstable to storage when the driver
persists a Ready and calls ``advance()``. Indexes:

    first_index-1 .. applied .. applying .. committed .. last_index
    (compacted)      (state machine)        (safe to apply)   (held)

Invariants: ``applied <= applying <= committed <= last_index`` (a committed entry is never truncated), and entries
are contiguous from ``first_index`` to ``last_index``.
"""

from __future__ import annotations

from collections.abc import Sequence

from embedzk.consensus.types import Entry, SnapshotMeta
from embedzk.consensus.storage import CompactedError, LogStorage, UnavailableError

__all__ = ["RaftLog", "Unstable", "entries_size", "limit_size"]


def entries_size(entries: list[Entry]) -> int:
    """The payload size of ``entries`` (their data only, as the storage contract counts it)."""
    return sum(len(e.data) for e in entries)


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` with at most ``max_bytes`` of data, but never fewer than one entry."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for n, entry in enumerate(entries):
        total += len(entry.data)
        if total > max_bytes and n > 0:
            return entries[:n]
    return entries


class Unstable:
    """Entries and a snapshot not yet persisted: ``entries[k]`` has index ``offset + k``.

    ``offset`` is the first index not known to be durable: everything before it is in storage (or covered by the
    snapshot). ``offset_in_progress`` marks how far the entries were handed out in a Ready: entries from there on
    go into the next Ready (etcd: offsetInProgress), so a step between ``ready()`` and ``advance()`` is safe.
    """

    __slots__ = ("snapshot", "snapshot_chunks", "snapshot_in_progress", "entries", "offset", "offset_in_progress")

    def __init__(self, offset: int) -> None:
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_chunks: list[bytes] = []
        self.snapshot_in_progress = False
        self.entries: list[Entry] = []
        self.offset = offset
        self.offset_in_progress = offset

    def maybe_first_index(self) -> int | None:
        """The first index of the log if an unstable snapshot fixes it."""
        return self.snapshot.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        """The last index of the log if unstable state fixes it."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.index
        return None

    def maybe_term(self, index: int) -> int | None:
        """The term of ``index`` if unstable state knows it."""
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.index == index:
                return self.snapshot.term
            return None
        k = index - self.offset
        if k < len(self.entries):
            return self.entries[k].term
        return None

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed out for persistence."""
        k = self.offset_in_progress - self.offset
        if k >= len(self.entries):
            return []
        return self.entries[k:]

    def next_snapshot(self) -> SnapshotMeta | None:
        """The snapshot, if it was not yet handed out for persistence."""
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        """Everything unstable was handed out in a Ready: mark it in progress."""
        self.offset_in_progress = self.offset + len(self.entries)
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` are durable, if the entry there still has ``term`` (etcd: stableTo).

        A mismatch means the entries were overwritten by a newer leader while being persisted: ignore it; the
        overwriting entries are handed out again in the next Ready.
        """
        if index < self.offset:
            return
        k = index - self.offset
        if k >= len(self.entries) or self.entries[k].term != term:
            return
        del self.entries[: k + 1]
        self.offset = index + 1
        if self.offset_in_progress < self.offset:
            self.offset_in_progress = self.offset

    def stable_snap_to(self, index: int) -> None:
        """The snapshot at ``index`` is durable."""
        if self.snapshot is not None and self.snapshot.index == index:
            self.snapshot = None
            self.snapshot_chunks = []
            self.snapshot_in_progress = False

    def restore(self, meta: SnapshotMeta, chunks: list[bytes]) -> None:
        """Replace everything with a snapshot received from the leader."""
        self.offset = meta.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = meta
        self.snapshot_chunks = chunks
        self.snapshot_in_progress = False

    def truncate_and_append(self, ents: list[Entry]) -> None:
        """Append ``ents``, dropping whatever the log held at and after ``ents[0].index`` (etcd:
        truncateAndAppend)."""
        first = ents[0].index
        end = self.offset + len(self.entries)
        if first == end:
            self.entries.extend(ents)
        elif first <= self.offset:
            # Replaces everything unstable, and the storage entries from ``first`` on: the Ready that carries
            # these entries tells the driver to truncate there (Storage.append drops held entries from
            # entries[0].index on).
            self.entries = list(ents)
            self.offset = first
            self.offset_in_progress = first
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(ents)
            if self.offset_in_progress > first:
                self.offset_in_progress = first

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``lo`` up to (not including) ``hi``; the caller checks the bounds."""
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """Storage plus :class:`Unstable`, with the commit and apply cursors."""

    __slots__ = ("storage", "unstable", "committed", "applying", "applied", "max_applying_bytes")

    def __init__(self, storage: LogStorage, max_applying_bytes: int | None = None) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything the snapshot covers is committed and applied (etcd: newLogWithSize); the snapshot may be
        # ahead of the compaction point (save_snapshot before compact).
        covered = max(first - 1, storage.snapshot_meta().index)
        self.committed = covered
        self.applying = covered
        self.applied = covered
        self.max_applying_bytes = max_applying_bytes

    def __repr__(self) -> str:
        return (
            f"RaftLog(first={self.first_index()}, last={self.last_index()}, committed={self.committed}, "
            f"applying={self.applying}, applied={self.applied}, unstable@{self.unstable.offset}"
            f"+{len(self.unstable.entries)})"
        )

    # --- bounds and terms ------------------------------------------------------------------------------------

    def first_index(self) -> int:
        """The first index held (one past the snapshot)."""
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        """The last index held."""
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def persisted_index(self) -> int:
        """The last index known durable with the term this log has for it (everything before unstable)."""
        return self.unstable.offset - 1

    def term(self, index: int) -> int:
        """The term of entry ``index``; raises CompactedError or UnavailableError outside the held range."""
        t = self.unstable.maybe_term(index)
        if t is not None:
            return t
        # Below the unstable offset, storage answers (including its compaction point); a truncation that
        # started inside storage moved the offset down, so stale storage entries are never consulted.
        if index >= self.unstable.offset:
            raise UnavailableError(f"entry {index} is past the last held, {self.last_index()}")
        if self.unstable.snapshot is not None:
            raise CompactedError(f"entry {index} is below the unstable snapshot at {self.unstable.snapshot.index}")
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        """The term of ``index``, or 0 when it is not held (etcd: zeroTermOnOutOfBounds)."""
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        """The term of the last entry."""
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        """Whether the log holds entry ``index`` with ``term``."""
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as ours (thesis 3.6.1)."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # --- reading entries ---------------------------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``lo`` up to (not including) ``hi``, at most ``max_bytes`` of data but never fewer than one.

        Raises CompactedError if ``lo`` was compacted, UnavailableError if ``hi - 1`` is past the last index.
        """
        if lo < self.first_index():
            raise CompactedError(f"entry {lo} is compacted (first held is {self.first_index()})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries up to {hi - 1} asked for, last held is {self.last_index()}")
        if lo >= hi:
            return []
        offset = self.unstable.offset
        if lo >= offset:
            return limit_size(self.unstable.slice(lo, hi), max_bytes)
        stored = self.storage.entries(lo, min(hi, offset), max_bytes)
        if hi <= offset or len(stored) < min(hi, offset) - lo:
            return stored
        rest = self.unstable.slice(offset, hi)
        if max_bytes is None:
            return stored + rest
        budget = max_bytes - entries_size(stored)
        if budget <= 0:
            return stored
        taken = limit_size(rest, budget)
        if entries_size(taken[:1]) > budget:
            return stored
        return stored + taken

    def entries_from(self, lo: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries from ``lo`` to the end, size-limited (for a MsgApp)."""
        last = self.last_index()
        if lo > last:
            return []
        return self.slice(lo, last + 1, max_bytes)

    # --- writing -----------------------------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> int:
        """Append entries that follow the log (or overwrite an uncommitted tail); returns the last index."""
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise AssertionError(f"append at {entries[0].index} would overwrite committed entry {self.committed}")
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """The index of the first entry of ``entries`` the log does not hold with that term (0 if it holds all).

        New entries past the end cost one comparison; a duplicated MsgApp costs one term look-up per entry.
        """
        last = self.last_index()
        for e in entries:
            if e.index > last or not self.match_term(e.index, e.term):
                return e.index
        return 0

    def maybe_append(
        self, index: int, log_term: int, commit: int, entries: tuple[Entry, ...]
    ) -> tuple[int, list[Entry]] | None:
        """Handle a MsgApp's payload (etcd: maybeAppend). Returns the last index known to match the leader's log
        and the entries actually appended (from the first conflicting or new one), or None if the log does not
        hold (index, log_term)."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        ci = self.find_conflict(entries)
        appended: list[Entry] = []
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"entry {ci} conflicts with committed entry {self.committed}")
            appended = list(entries[ci - index - 1 :])
            self.append(appended)
        self.commit_to(min(commit, last_new))
        return last_new, appended

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, t) with i <= ``index`` and term t <= ``term`` in this log (etcd: findConflictByTerm).

        Where the log cannot tell (compacted or unavailable), answers (i, 0): a possible match.
        """
        while index > 0:
            try:
                ours = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if ours <= term:
                return index, ours
            index -= 1
        return 0, 0

    def commit_to(self, index: int) -> None:
        """Raise the commit index (never lowers it)."""
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} is past the last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if that entry has ``term``: a leader counts replicas only for entries of its own
        term (thesis 3.6.2); older entries commit with them."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def restore(self, meta: SnapshotMeta, chunks: list[bytes]) -> None:
        """Replace the log with a snapshot from the leader: everything up to ``meta.index`` is committed."""
        self.committed = meta.index
        self.unstable.restore(meta, chunks)

    # --- applying ----------------------------------------------------------------------------------------------

    def has_next_or_in_progress_snapshot(self) -> bool:
        """Whether a received snapshot is not yet applied."""
        return self.unstable.snapshot is not None

    def has_next_committed_entries(self) -> bool:
        """Whether committed entries wait to be handed out for application."""
        return self.committed > self.applying and self.unstable.snapshot is None

    def next_committed_entries(self) -> list[Entry]:
        """Committed entries not yet handed out for application, size-limited (etcd: nextCommittedEnts).

        Entries still unstable are included: the driver persists a Ready's entries before it applies its
        committed entries, so by then they are durable.
        """
        if not self.has_next_committed_entries():
            return []
        return self.slice(self.applying + 1, self.committed + 1, self.max_applying_bytes)

    def accept_applying(self, index: int) -> None:
        """Entries up to ``index`` were handed out for application."""
        if index > self.applying:
            self.applying = index

    def applied_to(self, index: int) -> None:
        """Entries up to ``index`` are applied."""
        if index > self.committed:
            raise AssertionError(f"applied {index} is past the commit index {self.committed}")
        if index > self.applied:
            self.applied = index
        if index > self.applying:
            self.applying = index

    def snapshot(self) -> tuple[SnapshotMeta, Sequence[bytes]]:
        """The latest snapshot, to send to a follower that needs entries already compacted away. The chunks are
        the storage's sequence as it gives it: a storage on disk reads each chunk only when it is sent."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot, self.unstable.snapshot_chunks
        return self.storage.snapshot_meta(), self.storage.snapshot_chunks()
