"""The driver's interface to Raft: feed it inputs, take a :class:`Ready`, carry it out, ``advance()`` (etcd:
rawnode.go). See the package docstring for the exact order of the driver's duties.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embedzk.consensus.confchange import encode_conf_change
from embedzk.consensus.errors import ReadyProtocolError
from embedzk.consensus.log import entries_size
from embedzk.consensus.messages import Message, MessageType
from embedzk.consensus.progress import ProgressState
from embedzk.consensus.raft import Config, Raft, ReadState, SoftState, StateRole
from embedzk.consensus.types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    SnapshotMeta,
)
from embedzk.consensus.storage import LogStorage

__all__ = ["ProgressStatus", "RawNode", "Ready", "Status"]

# Only a leader sends these, and only for its own term, which it persisted (with its vote for itself) before it
# could lead: what they carry (entries of its log, a commit index a quorum has made durable, a stored snapshot) is
# true whether or not the Ready they come with ever reaches the disk. Answers (APP_RESP, VOTE_RESP ...) promise
# that the Ready is durable and must wait for it.
_EARLY_TYPES = frozenset({MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP})


@dataclass(slots=True)
class Ready:
    """What the driver must do now, in this order (see the package docstring):

    0. ``early_messages``: send them whenever convenient, best before persisting (they depend on nothing here).
    1. ``snapshot``: if set, ``storage.install_snapshot(meta, chunks)`` and restore the state machine from it.
    2. ``entries`` and ``hard_state``: ``storage.append(entries, hard_state)`` (durable, one sync) when either
       is non-empty/set.
    3. ``messages``: send them, only after 1 and 2 are durable.
    4. ``committed_entries``: apply them in order (a CONF_CHANGE entry: decode it and call
       ``RawNode.apply_conf_change``).
    5. ``read_states``: serve each read once the state machine has applied ``index``.
    6. ``RawNode.advance(ready)``.
    """

    #: Leader and role, when they changed since the last Ready.
    soft_state: SoftState | None = None
    #: Term, vote and commit, when they changed: persist with ``entries``.
    hard_state: HardState | None = None
    #: Entries to append to storage before any message is sent (they may overwrite an uncommitted tail:
    #: Storage.append drops held entries from ``entries[0].index`` on).
    entries: list[Entry] = field(default_factory=list)
    #: A complete snapshot received from the leader: (meta, chunks). For a node that joined with an empty
    #: configuration this may be the cluster's bootstrap snapshot (index 0, no chunks): restore the empty state.
    snapshot: tuple[SnapshotMeta, list[bytes]] | None = None
    #: Entries committed and not yet handed out, to apply in order.
    committed_entries: list[Entry] = field(default_factory=list)
    #: Messages to send once entries, hard state and snapshot are durable.
    messages: list[Message] = field(default_factory=list)
    #: Messages that may be sent before (or while) this Ready is persisted: a leader's appends, heartbeats and
    #: snapshot chunks. They carry entries and a commit index the leader already has in memory and promise nothing
    #: about its disk, so the leader's fsync overlaps its followers' (thesis 10.2.1). Its own acknowledgement of
    #: the entries still waits for advance().
    early_messages: list[Message] = field(default_factory=list)
    #: Read-index requests that became safe.
    read_states: list[ReadState] = field(default_factory=list)
    #: Whether the write of ``entries``/``hard_state``/``snapshot`` must be synced (a change of term or vote, or
    #: new entries); a commit-only hard state may be written lazily.
    must_sync: bool = False

    def contains_updates(self) -> bool:
        """Whether this Ready holds anything at all."""
        return bool(
            self.soft_state is not None
            or self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.committed_entries
            or self.messages
            or self.early_messages
            or self.read_states
        )


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """A leader's view of one member."""

    match: int
    next: int
    state: str
    recent_active: bool
    paused: bool
    inflight: int
    is_learner: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of a node's Raft state, for monitoring and tests."""

    id: str
    term: int
    vote: str | None
    commit: int
    applied: int
    lead: str | None
    role: StateRole
    #: The membership as applied (through apply_conf_change, or a snapshot): what goes into snapshots.
    conf_state: ConfState
    #: The membership in force for elections and quorums: the latest in the log, committed or not. It differs
    #: from ``conf_state`` only while a membership change is in flight.
    log_conf_state: ConfState
    first_index: int
    last_index: int
    lead_transferee: str | None = None
    #: On a leader: every member's progress (this node's included); empty otherwise.
    progress: dict[str, ProgressStatus] = field(default_factory=dict)


class RawNode:
    """One Raft node, driven step by step: inputs in (``tick``, ``step``, ``propose`` ...), a :class:`Ready` out,
    ``advance`` back in. Single-threaded: call it from one thread only."""

    def __init__(self, config: Config, storage: LogStorage) -> None:
        """Start (or restart) from what ``storage`` holds: hard state, membership, log."""
        self._raft = Raft(config, storage)
        self._prev_soft = self._raft.soft_state()
        self._prev_hard = self._raft.hard_state()
        self._outstanding: Ready | None = None

    # --- inputs --------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick: elections and heartbeats are counted in ticks."""
        self._raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote if configured), if this node may campaign."""
        self._raft.hup()

    def bootstrap(self, conf_state: ConfState) -> None:
        """Found a cluster: a node that has never held a log or a membership (its storage was created with an empty
        ConfState) takes ``conf_state`` as the membership its log starts from. The next Ready carries it as the
        bootstrap snapshot (index 0, no chunks), which the driver installs like any snapshot. Raises ValueError if
        the node holds a log or a membership already."""
        self._raft.bootstrap(conf_state)

    def propose(self, data: bytes) -> None:
        """Propose a normal entry. On a follower it is forwarded to the leader. Raises ProposalDroppedError when
        it cannot be taken (no leader known, election in progress, transfer in progress, too many uncommitted
        bytes, removed from the cluster)."""
        self._raft.propose_data([data])

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change. On the leader it is refused (ProposalDroppedError) while another change
        (or the leader's first entry of its term) is not applied yet, or when it would change nothing. On a
        follower it is forwarded; a leader that refuses a forwarded change appends a no-op in its place."""
        self._raft.propose([Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=encode_conf_change(cc))])

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed membership change; call it when its entry is applied. Returns the membership now in
        force (keep it: it goes into the next snapshot's meta)."""
        return self._raft.apply_conf_change(cc)

    def step(self, msg: Message) -> None:
        """Hand over a message received from the network. Messages for another node or from this node itself are
        ignored, as are responses from senders this leader does not track."""
        raft = self._raft
        if msg.to != raft.id or msg.frm == raft.id:
            return
        if msg.term < 0 or msg.index < 0 or msg.log_term < 0 or msg.commit < 0:
            return
        raft.step(msg)

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read; a ReadState with ``ctx`` appears in a later Ready once it is safe. On a
        follower the request is forwarded to the leader. ``ctx`` must be unique among pending requests. The
        request is lost if leadership changes first (retry after a timeout). Raises ProposalDroppedError when
        no leader is known."""
        self._raft.read_index(ctx)

    def transfer_leadership(self, to: str) -> None:
        """Ask the leader to hand leadership to ``to`` (thesis 3.10); forwarded when called on a follower.
        Proposals are refused while the transfer runs (at most an election timeout)."""
        self._raft.transfer_leader(to)

    def report_unreachable(self, id: str) -> None:
        """The transport could not reach ``id``: stop streaming to it and probe instead (etcd)."""
        raft = self._raft
        if raft.role != StateRole.LEADER:
            return
        pr = raft.trk.progress.get(id)
        if pr is not None and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, id: str, ok: bool) -> None:
        """The transport reports the fate of a snapshot transfer to ``id``. Chunks are acknowledged by the follower
        itself, so this is needed only to abandon a transfer early (``ok=False``: the next attempt restarts from
        chunk 0)."""
        raft = self._raft
        if raft.role != StateRole.LEADER:
            return
        pr = raft.trk.progress.get(id)
        if pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the next heartbeat response before trying again (etcd).
            pr.msg_app_flow_paused = True

    # --- output --------------------------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether :meth:`ready` would return anything."""
        raft = self._raft
        if raft.msgs or raft.bcast_pending or raft.read_states:
            return True
        prev = self._prev_soft
        if raft.lead != prev.lead or raft.role != prev.role:
            return True
        hs = self._prev_hard
        if raft.term != hs.term or raft.vote != hs.vote or raft.log.committed != hs.commit:
            return True
        log = raft.log
        u = log.unstable
        if u.offset_in_progress < u.offset + len(u.entries):
            return True
        if u.snapshot is not None and not u.snapshot_in_progress:
            return True
        return log.has_next_committed_entries()

    def ready(self) -> Ready:
        """Everything the driver must do now. Call :meth:`advance` with it before the next ready(); inputs
        (step, tick, propose ...) may come in between."""
        if self._outstanding is not None:
            raise ReadyProtocolError("advance() the previous Ready before asking for another")
        raft = self._raft
        raft.flush()
        log = raft.log
        u = log.unstable
        rd = Ready()
        soft = raft.soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hs = raft.hard_state()
        prev_hs = self._prev_hard
        if hs != prev_hs:
            rd.hard_state = hs
            self._prev_hard = hs
            rd.must_sync = hs.term != prev_hs.term or hs.vote != prev_hs.vote
        rd.entries = u.next_entries()
        snap = u.next_snapshot()
        if snap is not None:
            rd.snapshot = (snap, list(u.snapshot_chunks))
        rd.committed_entries = log.next_committed_entries()
        if rd.entries or rd.snapshot is not None:
            rd.must_sync = True
        msgs = raft.msgs
        raft.msgs = []
        if msgs:
            early = _EARLY_TYPES
            rd.early_messages = [m for m in msgs if m.type in early]
            if rd.early_messages:
                msgs = [m for m in msgs if m.type not in early]
        rd.messages = msgs
        rd.read_states = raft.read_states
        raft.read_states = []
        # Mark everything handed out as in progress (etcd: acceptReady).
        u.accept_in_progress()
        if rd.committed_entries:
            log.accept_applying(rd.committed_entries[-1].index)
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver carried out ``rd``: its entries, hard state and snapshot are durable, its committed entries
        applied."""
        if rd is not self._outstanding:
            raise ReadyProtocolError("advance() takes the Ready last returned by ready()")
        self._outstanding = None
        raft = self._raft
        log = raft.log
        if rd.hard_state is not None:
            raft.on_hard_state_persisted(rd.hard_state)
        if rd.snapshot is not None:
            meta = rd.snapshot[0]
            log.unstable.stable_snap_to(meta.index)
            log.applied_to(meta.index)
        if rd.entries:
            last = rd.entries[-1]
            log.unstable.stable_to(last.index, last.term)
            raft.on_persisted()
        if rd.committed_entries:
            raft.on_applied(rd.committed_entries[-1].index, entries_size(rd.committed_entries))

    # --- state ---------------------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """This node's id."""
        return self._raft.id

    @property
    def lead(self) -> str | None:
        """The leader this node knows of in its term, if any."""
        return self._raft.lead

    @property
    def role(self) -> StateRole:
        """This node's role."""
        return self._raft.role

    @property
    def term(self) -> int:
        """This node's current term."""
        return self._raft.term

    @property
    def raft(self) -> Raft:
        """The protocol state itself, for tests and introspection; do not drive it directly."""
        return self._raft

    def status(self) -> Status:
        """The node's state now."""
        raft = self._raft
        progress: dict[str, ProgressStatus] = {}
        if raft.role == StateRole.LEADER:
            for member, pr in raft.trk.progress.items():
                progress[member] = ProgressStatus(
                    match=pr.match,
                    next=pr.next,
                    state=pr.state.value,
                    recent_active=pr.recent_active,
                    paused=pr.is_paused(),
                    inflight=pr.inflights.count(),
                    is_learner=pr.is_learner,
                )
        return Status(
            id=raft.id,
            term=raft.term,
            vote=raft.vote,
            commit=raft.log.committed,
            applied=raft.log.applied,
            lead=raft.lead,
            role=raft.role,
            conf_state=raft.applied_conf,
            log_conf_state=raft.trk.conf_state(),
            first_index=raft.log.first_index(),
            last_index=raft.log.last_index(),
            lead_transferee=raft.lead_transferee,
            progress=progress,
        )
