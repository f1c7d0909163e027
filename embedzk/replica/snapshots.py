"""Snapshots of a replica's own state, taken without stalling the loop.

A snapshot of a million znodes is a hundred megabytes that take seconds to encode: done at once, in the loop
thread, it would stop heartbeats, elections and every request for that long. So a snapshot is a job spread over
many calls of :meth:`Replica.advance`:

1. When enough entries were applied since the last snapshot (``snapshot_entries`` of them, or ``snapshot_bytes``
   of them, or as many bytes as the last snapshot had: the one taken here, restored at start or installed from
   the leader), the replica opens a stream over its tree
   (:meth:`DataTree.snapshot_chunks`). The stream is the tree as it is at that index, read lazily, while the
   loop goes on applying entries: the tree copies a children dict before changing it while a stream may still
   walk it (copy-on-write), and nodes are never changed in place.
2. Each :meth:`Replica.advance` then encodes about :data:`STEP_BYTES` of chunks and hands them to the driver
   as a :class:`~embedzk.persist.base.SnapshotPart` in ``out.snapshot``; the driver saves it with
   ``storage.save_snapshot`` as usual (its ``storage.compact(out.compact_to)`` is a no-op until the last part).
3. The last part completes the snapshot: the storage switches to it atomically, and ``out.compact_to`` says how
   far to compact the log.

A snapshot small enough for one step goes out whole, as a plain list of chunks, in the call that started it (the
simulator's trees always do). A snapshot from the leader that replaces the tree meanwhile ends the job: the
stream is closed and the storage drops the parts it had.

The budget is in bytes, not in time, so that a seeded simulation makes the same parts every run. A job moves on
only when the replica is advanced (every heartbeat in a cluster, every write on a lone peer); until it is done
the previous snapshot stands and the log is not compacted, so a slow job costs disk, never safety.

What copy-on-write costs: the first change under a directory after a snapshot began copies that directory's
children dict (and its ancestors'), once per snapshot: microseconds for a thousand children, some 60 ms for a
million in one directory. The longest pause is bounded by the largest directory, not by the tree.
"""

from __future__ import annotations

from collections.abc import Iterator

from embedzk.consensus.types import SnapshotMeta
from embedzk.persist.base import SnapshotPart
from embedzk.tree import DataTree

__all__ = ["CHUNK_BYTES", "STEP_BYTES", "SnapshotJob"]

#: The bound on one chunk of a replica's snapshot (one chunk is also one SNAP message to a follower).
CHUNK_BYTES = 128 * 1024
#: Chunk bytes a snapshot in progress encodes per :meth:`Replica.advance`: encoding them and one synced write,
#: a step of 7 ms (median) where a million znodes at once stop the loop for 4 s (benchmarks/persist_bench.py
#: pause).
STEP_BYTES = 256 * 1024


class SnapshotJob:
    """One snapshot being produced: its meta, the tree it reads, and what remains of its stream."""

    __slots__ = ("_next", "_sent", "_stream", "compact_to", "meta", "size", "tree")

    def __init__(
        self, meta: SnapshotMeta, tree: DataTree, header: bytes, stream: Iterator[bytes], compact_to: int
    ) -> None:
        self.meta = meta
        #: The tree the stream reads: if the replica's tree is another one now, the job is moot.
        self.tree = tree
        #: Where to compact the log once the snapshot is stored.
        self.compact_to = compact_to
        self._stream = stream
        # The next chunk to hand out (read ahead, so that a last part is never empty), or None at the end.
        self._next: bytes | None = header
        self._sent = 0
        #: Bytes handed out so far: the snapshot's size once the last step is done.
        self.size = 0

    def step(self, budget: int | None = None) -> tuple[list[bytes] | SnapshotPart, bool]:
        """The next chunks, about ``budget`` bytes of them (:data:`STEP_BYTES` by default), and whether they
        complete the snapshot.

        If the first step completes it, the chunks come as a plain list (a whole snapshot); otherwise each step
        is a :class:`SnapshotPart`.
        """
        if budget is None:
            budget = STEP_BYTES
        out: list[bytes] = []
        size = 0
        chunk = self._next
        while chunk is not None and (size < budget or not out):
            out.append(chunk)
            size += len(chunk)
            chunk = next(self._stream, None)
        self._next = chunk
        self.size += size
        done = chunk is None
        if done and self._sent == 0:
            self._sent = len(out)
            return out, True
        part = SnapshotPart(self._sent, tuple(out), done)
        self._sent += len(out)
        return part, done

    def cancel(self) -> None:
        """Stop: the tree stops copying for this snapshot."""
        self._next = None
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
