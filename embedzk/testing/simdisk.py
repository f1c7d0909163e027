"""A simulated disk: a :class:`~embedzk.persist.MemoryStorage` that loses what was not synced when its node crashes.

The model is LevelDB's, which the real peer writes through: every write is one atomic batch; a batch written with
``sync=True`` is durable, with everything written before it, once the call returns; one written with ``sync=False``
(the driver's commit-only hard states, ``Ready.must_sync`` False) sits in the operating system's cache, and a
machine crash keeps only a prefix of those batches (the log is sequential, so a later batch never survives an
earlier one). Within one Ready the driver issues several batches (a snapshot install, then the append): a crash
between them is a torn Ready, which the simulator plays by stopping the driver part-way (see
:meth:`~embedzk.testing.simulator.SimNode.pump`).

Two hooks let the simulator's checks watch the writes: ``on_drop`` hears of every entry an append removes (to catch
a committed entry truncated, at the moment it happens).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from embedzk.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from embedzk.membership.identity import MemberRecord
from embedzk.persist.base import SnapshotPart
from embedzk.persist.memory import MemoryStorage

__all__ = ["SimDisk"]

_Write = Callable[[MemoryStorage], None]


class SimDisk:
    """The :class:`~embedzk.persist.base.Storage` protocol over a :class:`MemoryStorage`, with durability modelled.

    ``live`` is what the running node reads and writes (its view includes the operating system's cache); the
    durable image is ``live`` as of the last synced batch, plus the unsynced batches written since.
    """

    def __init__(self, conf_state: ConfState | None = None, live: MemoryStorage | None = None) -> None:
        self.live = live if live is not None else MemoryStorage(conf_state)
        self._image = self.live.clone()
        self._unsynced: list[_Write] = []
        #: Called with (index, term) of every entry an append removes from the log, before it is removed.
        self.on_drop: Callable[[list[tuple[int, int]]], None] | None = None
        self.synced_writes = 0
        self.unsynced_writes = 0

    # --- the crash -------------------------------------------------------------------------------------------------

    def crash(self, rng: random.Random) -> int:
        """The machine stops: keep the synced state and a random prefix of the unsynced batches since. Returns how
        many unsynced batches were lost."""
        kept = rng.randint(0, len(self._unsynced))
        live = self._image.clone()
        for write in self._unsynced[:kept]:
            write(live)
        lost = len(self._unsynced) - kept
        self.live = live
        self._image = live.clone()
        self._unsynced = []
        return lost

    def _written(self, write: _Write, sync: bool) -> None:
        if sync:
            self.synced_writes += 1
            self._image = self.live.clone()
            self._unsynced = []
        else:
            self.unsynced_writes += 1
            self._unsynced.append(write)

    # --- read side -------------------------------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state last saved, and the membership of the latest snapshot."""
        return self.live.initial_state()

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries ``lo`` up to (not including) ``hi``."""
        return self.live.entries(lo, hi, max_bytes)

    def term(self, index: int) -> int:
        """The term of entry ``index``."""
        return self.live.term(index)

    def first_index(self) -> int:
        """The first index held."""
        return self.live.first_index()

    def last_index(self) -> int:
        """The last index held."""
        return self.live.last_index()

    def snapshot_meta(self) -> SnapshotMeta:
        """What the latest snapshot stands for."""
        return self.live.snapshot_meta()

    def snapshot_chunks(self) -> Sequence[bytes]:
        """The latest snapshot's data."""
        return self.live.snapshot_chunks()

    def member_record(self) -> MemberRecord | None:
        """The disk's member record, if any."""
        return self.live.member_record()

    # --- write side: each call is one batch ------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry], hard_state: HardState | None = None, sync: bool = True) -> None:
        """Append (dropping held entries from ``entries[0].index`` on) and save ``hard_state``; durable if ``sync``."""
        if entries and self.on_drop is not None:
            self._report_drops(entries)
        batch = list(entries)
        self.live.append(batch, hard_state)
        self._written(lambda disk: disk.append(batch, hard_state), sync)

    def _report_drops(self, entries: Sequence[Entry]) -> None:
        live = self.live
        first = max(entries[0].index, live.first_index())
        last = live.last_index()
        if first > last:
            return
        incoming = {e.index: e.term for e in entries}
        dropped = [(i, live.term(i)) for i in range(first, last + 1) if incoming.get(i) != live.term(i)]
        if dropped and self.on_drop is not None:
            self.on_drop(dropped)

    def install_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes]) -> None:
        """Replace the state with a snapshot from the leader (synced)."""
        self.live.install_snapshot(meta, chunks)
        self._written(lambda disk: disk.install_snapshot(meta, chunks), True)

    def save_snapshot(self, meta: SnapshotMeta, chunks: Sequence[bytes] | SnapshotPart) -> None:
        """Store a snapshot of the node's own applied state, or one part of it (synced)."""
        self.live.save_snapshot(meta, chunks)
        self._written(lambda disk: disk.save_snapshot(meta, chunks), True)

    def compact(self, index: int) -> None:
        """Drop entries up to ``index`` (synced)."""
        self.live.compact(index)
        self._written(lambda disk: disk.compact(index), True)

    def save_member_record(self, record: MemberRecord) -> None:
        """Replace the member record (synced)."""
        self.live.save_member_record(record)
        self._written(lambda disk: disk.save_member_record(record), True)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"SimDisk({self.live!r}, {len(self._unsynced)} unsynced batches)"
