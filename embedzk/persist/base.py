"""The Storage interface: what the consensus core reads and what the driver writes.

The read side is :class:`embedzk.consensus.storage.LogStorage` (etcd-io/raft's ``Storage``, kept with the core as
etcd keeps it): the consensus core asks it for entries and terms it has handed to the driver earlier. The write
side is the driver's: after :meth:`RawNode.ready` it appends entries and hard state (durably, in one atomic batch:
group commit), installs snapshots received from the leader, stores local snapshots and compacts the log behind
them, and keeps the disk's member record (:mod:`embedzk.membership.identity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from embedzk.consensus.storage import CompactedError, LogStorage, UnavailableError
from embedzk.consensus.types import Entry, HardState, SnapshotMeta
from embedzk.membership.identity import MemberRecord

__all__ = ["CompactedError", "SnapshotPart", "Storage", "UnavailableError"]


@dataclass(frozen=True, slots=True)
class SnapshotPart:
    """A slice of a snapshot that is saved over several calls of :meth:`Storage.save_snapshot`.

    A large snapshot is handed to the storage in parts, a bounded slice per loop iteration, so that neither
    producing nor writing it stalls the loop. The parts of one snapshot share its meta and come in order:
    ``chunks`` are the snapshot's chunks ``first .. first + len(chunks) - 1``; the part with ``last`` set completes
    it. Until then the snapshot is not the storage's: :meth:`Storage.snapshot_meta` and
    :meth:`Storage.snapshot_chunks` still answer the previous one, a crash forgets the parts, and a part with
    ``first == 0``, an installed snapshot or a whole saved one discards the parts saved so far.

    Deliberately not a Sequence: a storage that does not know about parts fails on one instead of storing a slice
    as a whole snapshot.
    """

    first: int
    chunks: tuple[bytes, ...]
    last: bool


@runtime_checkable
class Storage(LogStorage, Protocol):
    """Durable (or, for tests, memory-backed) state of one replica: the read side the consensus core uses
    (:class:`~embedzk.consensus.storage.LogStorage`) and the write side of the driver."""

    # --- write side: the driver ----------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry], hard_state: HardState | None = None, sync: bool = True) -> None:
        """Durably and atomically: drop held entries at and after ``entries[0].index``, append ``entries``, save
        ``hard_state`` (if given). Entries must be contiguous and start at most at ``last_index() + 1``. When this
        returns, all of it survives a crash (one sync for the whole call: group commit). ``sync`` False (only for a
        hard state whose commit index alone changed, ``Ready.must_sync`` False) skips the sync: a commit index is
        learnt again from the leader after a crash."""
        ...

    def install_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes]) -> None:
        """Durably replace the state with a snapshot received from the leader. Entries after ``meta.index`` whose
        term agrees are kept; everything else is dropped."""
        ...

    def save_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes] | SnapshotPart) -> None:
        """Durably store a snapshot of this replica's own applied state (the previous one goes). The log is not
        touched: call :meth:`compact` afterwards.

        ``chunks`` may also be one :class:`SnapshotPart` of a snapshot saved over several calls; the snapshot is
        stored once its last part is. A part that does not continue the parts saved so far (another meta, a gap)
        raises ValueError."""
        ...

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (which must be at most the snapshot's index)."""
        ...

    # --- the member this disk belongs to (see embedzk.membership.identity) -------------------------------------

    def member_record(self) -> MemberRecord | None:
        """What the disk keeps about its member (its key, its cluster, its founding promises); None for a disk
        that was never given one (a new disk, before the peer stamps it, or one bootstrapped by hand)."""
        ...

    def save_member_record(self, record: MemberRecord) -> None:
        """Durably replace the member record. The key never changes once saved: a disk is one member for life."""
        ...

    def close(self) -> None:
        """Release files and locks. Idempotent."""
        ...
