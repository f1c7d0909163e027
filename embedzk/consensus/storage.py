"""What the consensus core reads from storage (etcd keeps storage.go in its raft package for the same reason).

The core reads entries and terms it handed to the driver earlier, and the membership and snapshot it starts from;
it never writes. :class:`LogStorage` is that read side; the full storage a driver writes through
(:class:`embedzk.persist.base.Storage`) extends it.

The storage error rule (part of the driver contract, see the package docstring): the core expects
:class:`CompactedError` and :class:`UnavailableError` as answers and handles them (a follower that needs a
snapshot, an index past the end). Any other exception a read raises (a :class:`~embedzk.errors.StorageError`: a
corrupt or unreadable disk) is not the core's to handle: it propagates out of the input method or ``ready()`` that
made the read, the node's state is then unspecified, and the driver must stop it and restart it from storage, as
after a failed write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from embedzk.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from embedzk.errors import EmbedZKError

__all__ = ["CompactedError", "LogStorage", "UnavailableError"]


class CompactedError(EmbedZKError):
    """The entry asked for was compacted away: the asker needs a snapshot instead."""


class UnavailableError(EmbedZKError):
    """The entry asked for is beyond the last one held."""


@runtime_checkable
class LogStorage(Protocol):
    """The read side of a replica's storage: what the consensus core asks of it (etcd's ``Storage``).

    Layout of the log: entries ``first_index() .. last_index()`` are held. Everything up to ``first_index() - 1``
    (the compaction point) is covered by the snapshot; ``term(first_index() - 1)`` is still answered. A fresh
    storage holds a snapshot at index 0 whose ConfState is the initial membership (empty for a node that founds or
    joins a cluster).
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state last saved, and the membership of the latest snapshot."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``lo`` up to (not including) ``hi``; at most ``max_bytes`` of data, but never fewer than one.

        Raises CompactedError if ``lo < first_index()``, UnavailableError if ``hi > last_index() + 1``.
        """
        ...

    def term(self, index: int) -> int:
        """The term of entry ``index``; ``first_index() - 1`` is answered from the compaction point.

        Raises CompactedError below that, UnavailableError above ``last_index()``.
        """
        ...

    def first_index(self) -> int:
        """The index of the first entry held (one past the compaction point)."""
        ...

    def last_index(self) -> int:
        """The index of the last entry held (the compaction point if none is held)."""
        ...

    def snapshot_meta(self) -> SnapshotMeta:
        """What the latest snapshot stands for (index 0 and the initial membership if none was taken)."""
        ...

    def snapshot_chunks(self) -> Sequence[bytes]:
        """The latest snapshot's data, in the chunks it was stored in (empty for the bootstrap snapshot)."""
        ...
