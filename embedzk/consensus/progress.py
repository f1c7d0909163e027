"""What a leader knows of each follower's log, and the flow control of appends to it (etcd: tracker/progress.go,
tracker/inflights.go).

A follower's :class:`Progress` is in one of three states:

* ``PROBE``: the leader does not know where the follower's log ends. It sends one MsgApp at a time and waits for
  the answer (or the next heartbeat response) before sending another; a rejection moves ``next`` back.
* ``REPLICATE``: the follower's log is known to match up to ``match``. The leader streams appends optimistically
  (``next`` moves as soon as a MsgApp is sent), up to ``max_inflight_msgs`` unacknowledged ones: pipelining.
* ``SNAPSHOT``: the entries the follower needs were compacted away; the leader is sending it a snapshot, chunk by
  chunk, and sends no appends until the follower reports the snapshot restored.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from embedzk.consensus.types import SnapshotMeta

__all__ = ["Inflights", "Progress", "ProgressState", "SnapshotTransfer"]


class ProgressState(enum.Enum):
    """How the leader replicates to one follower."""

    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The MsgApps sent to a follower in REPLICATE and not yet acknowledged: (last index, bytes) of each, oldest
    first. Full when ``capacity`` messages or ``max_bytes`` bytes are in flight (etcd: inflights.go)."""

    __slots__ = ("capacity", "max_bytes", "_queue", "bytes")

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def add(self, index: int, size: int) -> None:
        """A MsgApp whose last entry is ``index`` was sent."""
        self._queue.append((index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        """The follower acknowledged everything up to ``index``."""
        q = self._queue
        while q and q[0][0] <= index:
            self.bytes -= q.popleft()[1]

    def full(self) -> bool:
        """Whether no further MsgApp may be sent."""
        if len(self._queue) >= self.capacity:
            return True
        return self.max_bytes is not None and self.bytes >= self.max_bytes

    def count(self) -> int:
        """How many MsgApps are in flight."""
        return len(self._queue)

    def reset(self) -> None:
        """Forget everything in flight."""
        self._queue.clear()
        self.bytes = 0


@dataclass(slots=True)
class SnapshotTransfer:
    """A snapshot being sent to one follower, one chunk at a time.

    The chunk sequence is held for the whole transfer, so a snapshot the leader's storage takes meanwhile never
    mixes chunks of two snapshots (a storage on disk hands out a point-in-time view, read a chunk at a time). ``next_chunk`` is the chunk sent and not yet acknowledged; ``idle_beats`` counts
    heartbeat rounds without an acknowledgement, to resend a chunk the network lost.
    """

    meta: SnapshotMeta
    chunks: Sequence[bytes]
    next_chunk: int = 0
    idle_beats: int = 0

    @property
    def chunk_count(self) -> int:
        """The number of chunks sent; an empty snapshot still travels as one empty chunk."""
        return max(1, len(self.chunks))

    def chunk(self, k: int) -> bytes:
        """Chunk ``k``."""
        return self.chunks[k] if self.chunks else b""


@dataclass(slots=True)
class Progress:
    """A leader's view of one member's log. ``match < next`` always holds."""

    match: int
    next: int
    inflights: Inflights
    is_learner: bool = False
    state: ProgressState = ProgressState.PROBE
    #: In PROBE: a probe is out, wait. In REPLICATE: the inflights are full.
    msg_app_flow_paused: bool = False
    #: In SNAPSHOT: the index of the snapshot being sent.
    pending_snapshot: int = 0
    #: Heard from within the current election timeout (check-quorum; the leader itself always is).
    recent_active: bool = False
    snapshot: SnapshotTransfer | None = field(default=None)
    #: The highest commit index sent to this follower (in an append or heartbeat).
    sent_commit: int = 0

    def reset_state(self, state: ProgressState) -> None:
        """Enter ``state`` with clean flow control."""
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.snapshot = None
        self.inflights.reset()

    def become_probe(self) -> None:
        """Probe from ``match + 1`` (or past a snapshot just sent)."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Stream appends from ``match + 1``."""
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, transfer: SnapshotTransfer) -> None:
        """Send a snapshot; no appends until it is restored."""
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = transfer.meta.index
        self.snapshot = transfer

    def maybe_update(self, n: int) -> bool:
        """The follower's log matches up to ``n``; False if that is old news (a duplicated or late ack)."""
        if n <= self.match:
            return False
        self.match = n
        if self.next < n + 1:
            self.next = n + 1
        self.msg_app_flow_paused = False
        return True

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected a MsgApp at ``rejected``; move ``next`` back. False if the rejection is stale
        (etcd: MaybeDecrTo)."""
        if self.state == ProgressState.REPLICATE:
            # A rejection at or below match is stale: the follower already acknowledged more.
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            self.sent_commit = min(self.sent_commit, self.next - 1)
            return True
        # In PROBE only one MsgApp is out, at next - 1: any other rejection is a late or duplicated one.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.sent_commit = min(self.sent_commit, self.next - 1)
        self.msg_app_flow_paused = False
        return True

    def sent_entries(self, count: int, size: int) -> None:
        """A MsgApp with ``count`` entries (``size`` bytes) went out (etcd: SentEntries)."""
        if self.state == ProgressState.REPLICATE:
            if count:
                self.next += count
                self.inflights.add(self.next - 1, size)
            self.msg_app_flow_paused = self.inflights.full()
        elif self.state == ProgressState.PROBE:
            # One probe at a time; a heartbeat response or the answer lifts the pause.
            self.msg_app_flow_paused = True

    def can_bump_commit(self, index: int) -> bool:
        """Whether sending commit ``index`` would tell this follower something new that it can use: it has not
        been sent yet, and the follower holds entries it does not know are committed (etcd: CanBumpCommit)."""
        return index > self.sent_commit and self.sent_commit < self.next - 1

    def is_paused(self) -> bool:
        """Whether appends to this follower must wait."""
        if self.state == ProgressState.SNAPSHOT:
            return True
        return self.msg_app_flow_paused

    def __repr__(self) -> str:
        extra = ""
        if self.state == ProgressState.SNAPSHOT:
            extra = f" snap={self.pending_snapshot}"
        if self.inflights.count():
            extra += f" inflight={self.inflights.count()}"
        learner = " learner" if self.is_learner else ""
        return f"<Progress {self.state.value} match={self.match} next={self.next}{extra}{learner}>"
