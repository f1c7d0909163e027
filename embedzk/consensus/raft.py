"""The Raft protocol itself: roles, elections, replication, commit, read-index, transfer, membership (etcd: raft.go).

:class:`Raft` is driven by :class:`~embedzk.consensus.rawnode.RawNode`; it never performs I/O. Every outgoing
message is queued in ``msgs`` and every piece of state to persist is read off it by ``RawNode.ready()``. The
driver persists a Ready's entries and hard state before it sends the Ready's messages, which is what makes every
vote and every append acknowledgement durable before it leaves the node (thesis 3.8).

Rules and where they come from are noted where they are applied ("thesis" is Ongaro's dissertation, "etcd" is
etcd-io/raft).
"""

from __future__ import annotations

import enum
import random
import zlib
from dataclasses import dataclass, field

from embedzk.consensus.confchange import (
    apply_change,
    decode_conf_change,
    validate_change,
)
from embedzk.consensus.errors import ProposalDroppedError
from embedzk.consensus.log import RaftLog, entries_size
from embedzk.consensus.messages import Message, MessageType
from embedzk.consensus.progress import Progress, ProgressState, SnapshotTransfer
from embedzk.consensus.quorum import VoteResult, vote_result
from embedzk.consensus.read_only import ReadOnly
from embedzk.consensus.tracker import ProgressTracker
from embedzk.consensus.types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    SnapshotMeta,
)
from embedzk.consensus.storage import CompactedError, LogStorage, UnavailableError

__all__ = ["Config", "Raft", "ReadState", "SoftState", "StateRole", "CAMPAIGN_TRANSFER"]

#: The context of a vote request forced by a leadership transfer: it overrides the leader lease (etcd).
CAMPAIGN_TRANSFER = b"transfer"

_APP = MessageType.APP
_APP_RESP = MessageType.APP_RESP
_VOTE = MessageType.VOTE
_VOTE_RESP = MessageType.VOTE_RESP
_PRE_VOTE = MessageType.PRE_VOTE
_PRE_VOTE_RESP = MessageType.PRE_VOTE_RESP
_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
_SNAP = MessageType.SNAP
_SNAP_RESP = MessageType.SNAP_RESP
_PROP = MessageType.PROP
_READ_INDEX = MessageType.READ_INDEX
_READ_INDEX_RESP = MessageType.READ_INDEX_RESP
_TRANSFER_LEADER = MessageType.TRANSFER_LEADER
_TIMEOUT_NOW = MessageType.TIMEOUT_NOW
_NORMAL = EntryType.NORMAL
_CONF_CHANGE = EntryType.CONF_CHANGE


class StateRole(enum.Enum):
    """The role a node plays in its current term."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class _Campaign(enum.Enum):
    PRE_ELECTION = "pre-election"
    ELECTION = "election"
    TRANSFER = "transfer"


@dataclass(frozen=True, slots=True)
class SoftState:
    """What a node believes now and need not persist: who leads, and its own role."""

    lead: str | None
    role: StateRole


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read-index request became safe: once the state machine has applied ``index``, a local read answered for
    ``request_ctx`` is linearizable (thesis 6.4)."""

    index: int
    request_ctx: bytes


@dataclass
class Config:
    """How one Raft node behaves. Times are in ticks: the driver decides how long a tick is.

    ``rng`` drives the randomized election timeouts; when None, a generator seeded from ``id`` is used, so two
    nodes never share a sequence and every run is reproducible. A runtime that wants different timings on every
    start passes ``random.Random()``.
    """

    id: str
    #: Ticks without hearing from a leader before a follower campaigns; randomized in [election_tick,
    #: 2 * election_tick) (thesis 3.4). Also the leader's check-quorum period and lease.
    election_tick: int = 10
    #: Ticks between a leader's heartbeats.
    heartbeat_tick: int = 1
    #: Bytes of entry data in one MsgApp (batching); one entry is always sent even if larger.
    max_size_per_msg: int = 1 << 20
    #: Unacknowledged MsgApps to one follower in REPLICATE (pipelining).
    max_inflight_msgs: int = 256
    #: Bytes of uncommitted entry data the leader accepts before it drops proposals (0: no limit).
    max_uncommitted_bytes: int = 64 << 20
    #: Pre-vote (thesis 9.6): a node campaigns only if a majority would vote for it, so a partitioned node that
    #: rejoins does not depose a healthy leader.
    pre_vote: bool = True
    #: Check-quorum (thesis 6.2): a leader that has not heard from a majority within an election timeout steps
    #: down, and a follower that heard from its leader within the election timeout ignores (pre-)votes.
    check_quorum: bool = True
    #: The index the driver's state machine already reflects (on restart): entries up to it are not handed out
    #: again.
    applied: int = 0
    rng: random.Random | None = None
    #: Bytes in flight to one follower (None: only max_inflight_msgs bounds it).
    max_inflight_bytes: int | None = None
    #: Bytes of committed entries handed out in one Ready (None: no limit; one entry always goes).
    max_committed_bytes_per_ready: int | None = 64 << 20

    def __post_init__(self) -> None:
        if self.rng is None:
            self.rng = random.Random(zlib.crc32(self.id.encode()))

    def validate(self) -> None:
        """Raise ValueError if the settings cannot work."""
        if not self.id:
            raise ValueError("a node id cannot be empty")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be at least 1")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be at least 1")
        if self.max_size_per_msg < 0 or self.max_uncommitted_bytes < 0:
            raise ValueError("sizes cannot be negative")
        if self.applied < 0:
            raise ValueError("applied cannot be negative")


@dataclass(slots=True)
class _SnapshotAssembly:
    """A follower's chunks of a snapshot in transfer, from one leader in one term."""

    key: tuple[str, int, int, int, int]  # leader, term, snapshot index, snapshot term, chunk count
    chunks: list[bytes] = field(default_factory=list)


class Raft:
    """One node's Raft state. Driven through :class:`~embedzk.consensus.rawnode.RawNode`."""

    def __init__(self, config: Config, storage: LogStorage) -> None:
        config.validate()
        self.id = config.id
        self.election_timeout = config.election_tick
        self.heartbeat_timeout = config.heartbeat_tick
        self.max_msg_size = config.max_size_per_msg
        self.max_uncommitted_size = config.max_uncommitted_bytes or (1 << 62)
        self.pre_vote = config.pre_vote
        self.check_quorum = config.check_quorum
        assert config.rng is not None
        self.rng: random.Random = config.rng

        self.log = RaftLog(storage, config.max_committed_bytes_per_ready)
        self.trk = ProgressTracker(config.max_inflight_msgs, config.max_inflight_bytes)
        self.term = 0
        self.vote: str | None = None
        self.role = StateRole.FOLLOWER
        self.lead: str | None = None
        self.is_learner = False
        self.lead_transferee: str | None = None
        # Only one membership change may be in the log unapplied (thesis 4.1): proposals of another are refused
        # until ``applied >= pending_conf_index`` (etcd: pendingConfIndex).
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        # Read requests that arrived before this leader committed an entry of its term (thesis 6.4 step 1).
        self.pending_reads: list[tuple[bytes, str | None]] = []
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout
        # Appends wait for the next ready() so that every proposal made meanwhile goes out in one MsgApp.
        self.bcast_pending = False
        self.snap_assembly: _SnapshotAssembly | None = None
        # Membership. Elections and quorums use the latest configuration in the log, committed or not (thesis
        # 4.1): ``base_conf`` (the configuration at or below the applied index) plus every change in
        # ``conf_entries`` (index, change), the membership entries after it. ``applied_conf`` is what the
        # driver applied (etcd's apply-time view), which goes into snapshots and is returned by
        # apply_conf_change.
        self.base_conf = ConfState()
        self.conf_entries: list[tuple[int, ConfChange]] = []
        self.applied_conf = ConfState()

        hs, cs = storage.initial_state()
        if hs.term or hs.vote is not None or hs.commit:
            if hs.commit > self.log.last_index():
                raise ValueError(f"hard state commit {hs.commit} is past the last index {self.log.last_index()}")
            # A commit below the snapshot is a hard state saved before the snapshot was installed.
            self.log.committed = max(self.log.committed, hs.commit)
            self.term = hs.term
            self.vote = hs.vote
        applied = max(config.applied, self.log.applied)
        if applied > self.log.committed:
            # The state machine reflects entries, so they were committed; the commit index on disk lags.
            if applied > self.log.last_index():
                raise ValueError(f"applied {applied} is past the last index {self.log.last_index()}")
            self.log.committed = applied
        # The configuration in force: the snapshot's, plus every membership entry in the log after it.
        self.base_conf = cs
        snap_index = storage.snapshot_meta().index
        self._track_conf_entries(self._scan_conf_entries(snap_index + 1, self.log.last_index() + 1))
        # Changes up to ``applied`` are not handed out again: the applied view includes them already.
        self.log.applied_to(applied)
        self._fold_applied_conf_entries()
        self.applied_conf = self.base_conf
        self._refresh_conf()
        self.become_follower(self.term, None)

    def _scan_conf_entries(self, lo: int, hi: int) -> list[Entry]:
        found: list[Entry] = []
        while lo < hi:
            batch = self.log.slice(lo, hi, self.log.max_applying_bytes)
            found.extend(e for e in batch if e.type == EntryType.CONF_CHANGE)
            lo = batch[-1].index + 1
        return found

    # --- membership in force ---------------------------------------------------------------------------------------

    def _track_conf_entries(self, appended: list[Entry] | tuple[Entry, ...]) -> None:
        """``appended`` entered the log at ``appended[0].index`` (dropping whatever the log held from there):
        update the list of membership entries. Returns quietly for a run without any."""
        if not appended:
            return
        first = appended[0].index
        entries = self.conf_entries
        changed = False
        while entries and entries[-1][0] >= first:
            entries.pop()  # truncated: the configuration reverts (thesis 4.1)
            changed = True
        for e in appended:
            if e.type == _CONF_CHANGE:
                cc = decode_conf_change(e)
                if cc is not None:
                    entries.append((e.index, cc))
                    changed = True
        if changed:
            self._refresh_conf()

    def _fold_applied_conf_entries(self) -> None:
        """Membership entries at or below the applied index are committed for good: fold them into the base."""
        applied = self.log.applied
        entries = self.conf_entries
        k = 0
        base = self.base_conf
        while k < len(entries) and entries[k][0] <= applied:
            base = apply_change(base, entries[k][1])
            k += 1
        if k:
            del entries[:k]
            self.base_conf = base

    def latest_conf_index(self) -> int:
        """The index of the latest membership entry in the log (0 if all were folded into the base)."""
        return self.conf_entries[-1][0] if self.conf_entries else 0

    def _previous_conf(self) -> ConfState:
        """The configuration before the latest membership entry (the base one if there is none)."""
        cs = self.base_conf
        for _, cc in self.conf_entries[:-1]:
            cs = apply_change(cs, cc)
        return cs

    def _refresh_conf(self) -> None:
        previous = self._previous_conf()
        cs = apply_change(previous, self.conf_entries[-1][1]) if self.conf_entries else previous
        outgoing: tuple[str, ...] = ()
        if self.conf_entries:
            # Until the change is applied here, keep replicating to the member it removes, so that it hears that
            # the change committed (etcd replicates to it until the leader applies the change, too).
            now = set(cs.members())
            outgoing = tuple(m for m in previous.members() if m not in now)
        if cs != self.trk.conf_state() or outgoing != self.trk.outgoing:
            self._switch_to_config(cs, outgoing)

    # --- state ----------------------------------------------------------------------------------------------------

    def hard_state(self) -> HardState:
        """What must be on disk before messages that depend on it are sent."""
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def soft_state(self) -> SoftState:
        """Leader and role."""
        return SoftState(lead=self.lead, role=self.role)

    def promotable(self) -> bool:
        """Whether this node may campaign: a voter, with no received snapshot waiting to be applied.

        A node that the latest membership entry removed (or demoted) may campaign too while that entry is not
        known to be committed: it may be the only one that can get it committed. Thesis 4.2.2: a leader manages a
        configuration that excludes it until the change commits; if it lost leadership before that (check-quorum),
        the voters without the entry would otherwise wait for its vote forever while it refuses theirs (its log is
        longer). Its own vote does not count: it needs a majority of the new configuration.
        """
        if self.log.has_next_or_in_progress_snapshot():
            return False
        if self.id in self.trk.voters:
            return True
        if self.conf_entries and self.conf_entries[-1][0] > self.log.committed:
            return self.id in self._previous_conf().voters
        return False

    def _update_is_learner(self) -> None:
        self.is_learner = self.id in self.trk.learners

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    # --- role changes --------------------------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = None
        self.lead = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(self.election_timeout)
        self.lead_transferee = None
        self.trk.reset_votes()
        last = self.log.last_index()
        for member, pr in self.trk.progress.items():
            pr.reset_state(ProgressState.PROBE)
            pr.match = 0
            pr.next = last + 1
            pr.recent_active = False
            pr.sent_commit = 0
            if member == self.id:
                # Only what is durable counts toward a commit (thesis 3.8; the leader acknowledges its own
                # entries once the driver persisted them, in advance()).
                pr.match = self.log.persisted_index()
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly()
        self.pending_reads = []
        self.bcast_pending = False

    def become_follower(self, term: int, lead: str | None) -> None:
        """Follow ``lead`` (or nobody yet) in ``term``."""
        self._reset(term)
        self.lead = lead
        self.role = StateRole.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # Pre-vote changes neither the term nor the vote (thesis 9.6).
        self.trk.reset_votes()
        self.lead = None
        self.role = StateRole.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = StateRole.CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.lead = self.id
        self.role = StateRole.LEADER
        me = self.trk.progress.get(self.id)
        if me is not None:  # None: leading to commit its own removal (see promotable)
            me.become_replicate()
            me.match = self.log.persisted_index()
            me.next = self.log.last_index() + 1
            me.recent_active = True
        # A new leader appends an empty entry of its term at once: committing it commits every earlier entry
        # (thesis 3.6.2) and tells the leader which entries are committed (thesis 6.4).
        self._append_entries([Entry(term=self.term, index=0)])
        # No membership change until that entry is applied: the single-server change safety fix (thesis 4.1,
        # the bug found after publication) requires an entry of the leader's term committed first.
        self.pending_conf_index = self.log.last_index()
        self.bcast_pending = True

    # --- ticks ---------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time."""
        if self.role == StateRole.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
            self.election_elapsed = 0
            self.hup()

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                if not self.trk.quorum_active(self.id):
                    # Check-quorum (thesis 6.2): a leader cut off from a majority steps down, so clients stop
                    # waiting on it and its lease ends.
                    self.become_follower(self.term, None)
                    return
                for member, pr in self.trk.progress.items():
                    if member != self.id:
                        pr.recent_active = False
            # A transfer that did not finish within an election timeout is abandoned (thesis 3.10).
            if self.lead_transferee is not None:
                self.lead_transferee = None
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            for _, pr in self.trk.followers(self.id):
                if pr.snapshot is not None:
                    pr.snapshot.idle_beats += 1
            self._bcast_heartbeat()

    # --- elections -----------------------------------------------------------------------------------------------

    def hup(self, transfer: bool = False) -> None:
        """Start an election (after a pre-vote round if enabled; never for a transfer: etcd)."""
        if self.role == StateRole.LEADER:
            return
        if not self.promotable():
            return
        # No need to wait for unapplied membership changes (etcd does): the configuration in force already
        # includes every change in the log.
        if transfer:
            self._campaign(_Campaign.TRANSFER)
        elif self.pre_vote:
            self._campaign(_Campaign.PRE_ELECTION)
        else:
            self._campaign(_Campaign.ELECTION)

    def _campaign(self, kind: _Campaign) -> None:
        if kind == _Campaign.PRE_ELECTION:
            self._become_pre_candidate()
            vote_type = _PRE_VOTE
            # Pre-votes ask about the term this node would campaign in, without moving to it.
            term = self.term + 1
        else:
            self._become_candidate()
            vote_type = _VOTE
            term = self.term
        if kind == _Campaign.PRE_ELECTION:
            # A pre-vote changes no state, so this node's own pre-vote counts at once (a single voter wins it).
            self.trk.record_vote(self.id, True)
            if self.trk.tally_votes()[2] == VoteResult.WON:
                self._campaign(_Campaign.ELECTION)
                return
        # A real vote for itself counts only once the hard state recording it is durable (on_hard_state_persisted;
        # etcd delivers the self-vote after the append for the same reason): a single voter that "won" with a
        # vote it then lost in a crash could vote for another candidate in the same term.
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        ctx = CAMPAIGN_TRANSFER if kind == _Campaign.TRANSFER else b""
        for voter in self.trk.voters:
            if voter != self.id:
                self._send(
                    Message(
                        type=vote_type,
                        to=voter,
                        frm=self.id,
                        term=term,
                        index=last_index,
                        log_term=last_term,
                        context=ctx,
                    )
                )

    def _poll(self, member: str, granted: bool) -> VoteResult:
        self.trk.record_vote(member, granted)
        return self.trk.tally_votes()[2]

    # --- the entry point for messages ----------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Handle a message from another node (etcd: Step). Raises nothing of its own for what the network can do to
        messages: stale, duplicated, reordered or unknown senders are ignored or answered as etcd does."""
        if m.term > self.term:
            if m.type == _VOTE or m.type == _PRE_VOTE:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = self.check_quorum and self.lead is not None and self.election_elapsed < self.election_timeout
                if in_lease and not force:
                    # Leader lease (thesis 4.2.3, 6.2): a node that heard from a leader within the minimum election
                    # timeout neither raises its term nor votes, so a partitioned or removed node cannot depose it.
                    return
            if m.type == _PRE_VOTE:
                pass  # never change term for a pre-vote (thesis 9.6)
            elif m.type == _PRE_VOTE_RESP and not m.reject:
                pass  # a granted pre-vote carries the term we would campaign in; we move there only on winning
            elif m.type == _APP or m.type == _HEARTBEAT or m.type == _SNAP:
                self.become_follower(m.term, m.frm)
            elif m.type == _VOTE and not self.log.is_up_to_date(m.index, m.log_term):
                # A candidate we will refuse (its log is behind ours) moves our term on but not our election timer:
                # a follower times out without hearing from a leader *or granting a vote* (thesis figure 3.1).
                # Were the timer reset, a candidate with a shorter log whose requests reach us late could keep
                # resetting the one node that can win, election after election.
                elapsed, timeout = self.election_elapsed, self.randomized_election_timeout
                self.become_follower(m.term, None)
                self.election_elapsed, self.randomized_election_timeout = elapsed, timeout
            else:
                self.become_follower(m.term, None)
        elif m.term < self.term:
            if m.type == _HEARTBEAT or m.type == _APP or m.type == _SNAP:
                # A leader of an older term still talks to us: tell it our term so it steps down (thesis 3.4: a
                # reply carries the current term). etcd answers only with check-quorum or pre-vote, relying on
                # vote requests otherwise; a learner sends none, and would be cut off for good.
                self._send(Message(type=_APP_RESP, to=m.frm, frm=self.id, term=self.term))
            elif m.type == _PRE_VOTE or m.type == _VOTE:
                # Answer with our term, or a candidate with a stale term but a good log could wait forever
                # (etcd for pre-votes; thesis 3.4 for votes: a reply carries the current term). A candidate that
                # only ever asks a node whose term keeps racing ahead would otherwise never catch up.
                resp = _PRE_VOTE_RESP if m.type == _PRE_VOTE else _VOTE_RESP
                self._send(Message(type=resp, to=m.frm, frm=self.id, term=self.term, reject=True))
            return

        if m.type == _VOTE or m.type == _PRE_VOTE:
            self._handle_vote(m)
        elif self.role == StateRole.LEADER:
            self._step_leader(m)
        elif self.role == StateRole.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote(self, m: Message) -> None:
        # We can vote if this repeats a vote we cast, if we have not voted and know no leader in this term, or
        # if this is a pre-vote for a future term (etcd).
        can_vote = (
            self.vote == m.frm
            or (self.vote is None and self.lead is None)
            or (m.type == _PRE_VOTE and m.term > self.term)
        )
        resp_type = _VOTE_RESP if m.type == _VOTE else _PRE_VOTE_RESP
        # ... and only for a candidate whose log is at least as up to date as ours (election restriction,
        # thesis 3.6.1). A learner answers too: it may have been promoted without knowing yet, and the
        # candidate counts the answer only if its configuration lists this node as a voter (etcd).
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # The response carries the request's term: for a pre-vote ours may be lower, and the pre-candidate
            # would ignore an answer from its past (etcd).
            self._send(Message(type=resp_type, to=m.frm, frm=self.id, term=m.term))
            if m.type == _VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(type=resp_type, to=m.frm, frm=self.id, term=self.term, reject=True))

    # --- leader ----------------------------------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == _PROP:
            self.propose(list(m.entries), local=False)
            return
        if t == _READ_INDEX:
            self.read_index(m.context, requester=m.frm)
            return
        if t == _TRANSFER_LEADER:
            try:
                transferee = m.context.decode()
            except UnicodeDecodeError:
                return
            self.transfer_leader(transferee)
            return
        pr = self.trk.progress.get(m.frm)
        if pr is None:
            return
        if t == _APP_RESP:
            self._handle_append_response(m, pr)
        elif t == _HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif t == _SNAP_RESP:
            self._handle_snapshot_response(m, pr)
        # Anything else at our own term (an APP from a second leader cannot exist: election safety) is ignored.

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            # Fast backtracking (etcd): the follower's hint is the last index where its log may match ours, with
            # its term there; skip every index where our term is higher than that, since the follower's terms
            # only grow along its log, none of them can match.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(m.frm, pr, True)
            return
        if pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE):
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT:
                if pr.match >= pr.pending_snapshot or pr.match + 1 >= self.log.first_index():
                    # The follower restored the snapshot (or caught up otherwise): probe from its log's end, and
                    # stream if our log still holds what it needs next (else the probe sends a newer snapshot).
                    pr.become_probe()
                    if pr.match + 1 >= self.log.first_index():
                        pr.become_replicate()
            else:
                pr.inflights.free_le(m.index)
            if self._leader_maybe_commit():
                if self.role != StateRole.LEADER:
                    return  # stepped down: its removal is committed
            elif pr.can_bump_commit(self.log.committed):
                self._maybe_send_append(m.frm, pr, True)
            # Acks free inflight slots: keep the pipeline full (without empty appends).
            while self._maybe_send_append(m.frm, pr, False):
                pass
            if m.frm == self.lead_transferee and pr.match == self.log.last_index():
                self._send_timeout_now(m.frm)

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.msg_app_flow_paused = False
        transfer = pr.snapshot
        if transfer is not None:
            if transfer.idle_beats >= 2:
                # No acknowledgement for two heartbeat rounds: the chunk (or its ack) was lost; send it again.
                transfer.idle_beats = 0
                self._send_snapshot_chunk(m.frm, transfer)
        elif pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
            # Also recovers a follower whose inflights filled with appends the network dropped (etcd).
            self._maybe_send_append(m.frm, pr, True)
        if not m.context:
            return
        acks = self.read_only.recv_ack(m.frm, m.context)
        if acks is None:
            return
        if vote_result(self.trk.voters, dict.fromkeys(acks, True)) != VoteResult.WON:
            return
        for status in self.read_only.advance(m.context):
            self._respond_read(status.index, status.ctx, status.requester)

    def _handle_snapshot_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        transfer = pr.snapshot
        if (
            transfer is None
            or pr.state != ProgressState.SNAPSHOT
            or m.index != transfer.meta.index
            or m.log_term != transfer.meta.term
            or m.chunk_index != transfer.next_chunk
        ):
            return  # an answer about another transfer, or a duplicate
        transfer.idle_beats = 0
        if m.reject:
            # The follower lost the chunks before this one (it restarted, or took another transfer): from 0.
            transfer.next_chunk = 0
        elif transfer.next_chunk + 1 < transfer.chunk_count:
            transfer.next_chunk += 1
        else:
            return  # the last chunk is answered with APP_RESP once restored
        self._send_snapshot_chunk(m.frm, transfer)

    def _maybe_send_append(self, to: str, pr: Progress, send_if_empty: bool) -> bool:
        """Send ``to`` the entries from its ``next`` on (etcd: maybeSendAppend); True if a message went out."""
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.log.term(prev_index)
        except CompactedError:
            # What the follower needs next was compacted away: it needs a snapshot.
            return self._maybe_send_snapshot(to, pr)
        except UnavailableError:
            # Cannot happen while next <= last_index + 1; probe from our end rather than fail.
            pr.next = max(pr.match + 1, self.log.last_index() + 1)
            prev_index = pr.next - 1
            prev_term = self.log.term_or_zero(prev_index)
        initial: SnapshotMeta | None = None
        if prev_index == 0:
            # The follower's log is empty. The membership the log starts from is not in the log but in the
            # bootstrap snapshot at index 0: send it along, so that a node that joined with an empty
            # configuration applies the log from the right one. Once a later snapshot replaced the bootstrap
            # one, that membership is gone: send the snapshot instead.
            initial = self.log.storage.snapshot_meta()
            if initial.index != 0:
                return self._maybe_send_snapshot(to, pr)
        ents: list[Entry] = []
        if pr.state != ProgressState.REPLICATE or not pr.inflights.full():
            try:
                ents = self.log.entries_from(pr.next, self.max_msg_size)
            except CompactedError:
                return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        commit = self.log.committed
        self._send(
            Message(
                type=_APP,
                to=to,
                frm=self.id,
                term=self.term,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(ents),
                commit=commit,
                snapshot=initial,
            )
        )
        pr.sent_entries(len(ents), entries_size(ents) if pr.inflights.max_bytes is not None else 0)
        pr.sent_commit = max(pr.sent_commit, commit)
        return True

    def _maybe_send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            # Do not start a large transfer to a node we have not heard from lately (etcd).
            return False
        meta, chunks = self.log.snapshot()
        transfer = SnapshotTransfer(meta=meta, chunks=chunks)
        pr.become_snapshot(transfer)
        self._send_snapshot_chunk(to, transfer)
        return True

    def _send_snapshot_chunk(self, to: str, transfer: SnapshotTransfer) -> None:
        k = transfer.next_chunk
        self._send(
            Message(
                type=_SNAP,
                to=to,
                frm=self.id,
                term=self.term,
                snapshot=transfer.meta,
                chunk_index=k,
                chunk_count=transfer.chunk_count,
                chunk=transfer.chunk(k),
            )
        )

    def _bcast_heartbeat(self) -> None:
        ctx = self.read_only.last_pending_ctx() or b""
        self._bcast_heartbeat_with_ctx(ctx)

    def _bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        committed = self.log.committed
        for member, pr in self.trk.followers(self.id):
            # Never tell a follower a commit index beyond what it is known to hold (etcd): its log past
            # ``match`` may still differ from ours.
            commit = min(pr.match, committed)
            self._send(Message(type=_HEARTBEAT, to=member, frm=self.id, term=self.term, commit=commit, context=ctx))
            if commit > pr.sent_commit:
                pr.sent_commit = commit

    def flush(self) -> None:
        """Send the appends deferred since the last ready(): many proposals, one MsgApp per follower."""
        if not self.bcast_pending:
            return
        self.bcast_pending = False
        if self.role != StateRole.LEADER:
            return
        for member, pr in self.trk.followers(self.id):
            self._maybe_send_append(member, pr, True)
            while self._maybe_send_append(member, pr, False):
                pass

    def _send_timeout_now(self, to: str) -> None:
        self._send(Message(type=_TIMEOUT_NOW, to=to, frm=self.id, term=self.term))

    # --- proposals -------------------------------------------------------------------------------------------

    def _take_uncommitted(self, size: int) -> bool:
        """Count ``size`` more bytes of uncommitted entry data; False (nothing counted) if over the budget. One
        entry always goes, however large, when nothing is uncommitted (etcd: increaseUncommittedSize)."""
        if self.uncommitted_size > 0 and size > 0 and self.uncommitted_size + size > self.max_uncommitted_size:
            return False
        self.uncommitted_size += size
        return True

    def _append_entries(self, entries: list[Entry]) -> bool:
        """Append proposed entries in this term; False if over the uncommitted budget (etcd: appendEntry)."""
        if not self._take_uncommitted(entries_size(entries)):
            return False
        li = self.log.last_index()
        term = self.term
        appended = [Entry(term, li + 1 + i, e.type, e.data) for i, e in enumerate(entries)]
        self.log.append(appended)
        self._track_conf_entries(appended)
        return True

    def propose_data(self, datas: list[bytes]) -> None:
        """Propose normal entries made of ``datas`` (the driver's path: one Entry object per proposal)."""
        if self.role == StateRole.LEADER and self.lead_transferee is None and self.id in self.trk.progress:
            size = 0
            for d in datas:
                size += len(d)
            if not self._take_uncommitted(size):
                raise ProposalDroppedError("too many uncommitted bytes")
            first = self.log.last_index() + 1
            term = self.term
            self.log.append([Entry(term, first + i, _NORMAL, d) for i, d in enumerate(datas)])
            self.bcast_pending = True
            return
        self.propose([Entry(0, 0, _NORMAL, d) for d in datas], local=True)

    def propose(self, entries: list[Entry], local: bool = True) -> None:
        """Propose entries (their term and index are assigned here). Raises ProposalDroppedError when ``local``;
        a forwarded proposal that cannot be taken is dropped silently (etcd)."""
        if self.role == StateRole.LEADER:
            if self.id not in self.trk.progress:
                return self._drop(local, "this node was removed from the cluster")
            if self.lead_transferee is not None:
                return self._drop(local, f"leadership transfer to {self.lead_transferee!r} in progress")
            for i, e in enumerate(entries):
                if e.type != EntryType.CONF_CHANGE:
                    continue
                reason = self._conf_change_refusal(e)
                if reason is not None:
                    if local:
                        raise ProposalDroppedError(reason)
                    # A forwarded change the leader refuses becomes a no-op, keeping the rest of the batch (etcd).
                    entries[i] = Entry(term=0, index=0)
                else:
                    self.pending_conf_index = self.log.last_index() + i + 1
            if not self._append_entries(entries):
                return self._drop(local, "too many uncommitted bytes")
            self.bcast_pending = True
        elif self.role == StateRole.FOLLOWER:
            if self.lead is None:
                return self._drop(local, "no leader is known")
            if local:
                # Forwarded with our term: the leader of another term drops it. The network may still duplicate
                # or lose it: the layer above identifies its requests when they are applied.
                self._send(Message(type=_PROP, to=self.lead, frm=self.id, term=self.term, entries=tuple(entries)))
        else:
            return self._drop(local, "an election is in progress")

    def _conf_change_refusal(self, e: Entry) -> str | None:
        if self.pending_conf_index > self.log.applied:
            return (
                f"a membership change (or this leader's first entry) at {self.pending_conf_index} is not applied "
                f"yet (applied {self.log.applied})"
            )
        cc = decode_conf_change(e)
        if cc is None:
            return "not a valid ConfChange"
        return validate_change(self.trk.conf_state(), cc)

    @staticmethod
    def _drop(local: bool, reason: str) -> None:
        if local:
            raise ProposalDroppedError(reason)

    # --- read index ------------------------------------------------------------------------------------------

    def read_index(self, ctx: bytes, requester: str | None = None) -> None:
        """A linearizable read request (thesis 6.4, ReadOnlySafe); ``requester`` None: this node's own."""
        local = requester is None or requester == self.id
        if self.role == StateRole.LEADER:
            if self.log.term_or_zero(self.log.committed) != self.term:
                # Step 1: until an entry of its term is committed, a new leader does not know the commit index.
                self.pending_reads.append((ctx, requester))
                return
            self._read_on_leader(ctx, requester)
        elif self.role == StateRole.FOLLOWER:
            if self.lead is None:
                return self._drop(local, "no leader is known")
            if local:
                self._send(Message(type=_READ_INDEX, to=self.lead, frm=self.id, term=self.term, context=ctx))
        else:
            return self._drop(local, "an election is in progress")

    def _read_on_leader(self, ctx: bytes, requester: str | None) -> None:
        if self.trk.voters == (self.id,):
            # The only voter: nobody else can lead this term.
            self._respond_read(self.log.committed, ctx, requester)
            return
        # Steps 2-3: record the commit index, then confirm leadership with a heartbeat round.
        if self.read_only.add_request(self.log.committed, ctx, requester):
            if self.id in self.trk.voters:
                self.read_only.recv_ack(self.id, ctx)
            self._bcast_heartbeat_with_ctx(ctx)

    def _respond_read(self, index: int, ctx: bytes, requester: str | None) -> None:
        if requester is None or requester == self.id:
            self.read_states.append(ReadState(index=index, request_ctx=ctx))
        else:
            self._send(
                Message(type=_READ_INDEX_RESP, to=requester, frm=self.id, term=self.term, index=index, context=ctx)
            )

    def _release_pending_reads(self) -> None:
        if not self.pending_reads or self.log.term_or_zero(self.log.committed) != self.term:
            return
        pending, self.pending_reads = self.pending_reads, []
        for ctx, requester in pending:
            self._read_on_leader(ctx, requester)

    # --- leadership transfer ---------------------------------------------------------------------------------

    def transfer_leader(self, transferee: str) -> None:
        """Hand leadership to ``transferee`` (thesis 3.10): bring its log up to date, then tell it to campaign."""
        if self.role == StateRole.FOLLOWER:
            if self.lead is not None:
                self._send(
                    Message(
                        type=_TRANSFER_LEADER,
                        to=self.lead,
                        frm=self.id,
                        term=self.term,
                        context=transferee.encode(),
                    )
                )
            return
        if self.role != StateRole.LEADER:
            return
        pr = self.trk.progress.get(transferee)
        if pr is None or pr.is_learner or transferee == self.id:
            return
        if self.lead_transferee is not None:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = None
        # The transfer must finish within an election timeout, or it is abandoned.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._maybe_send_append(transferee, pr, True)

    # --- followers and candidates ----------------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == _APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t == _HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif t == _SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot_chunk(m)
        elif t == _TIMEOUT_NOW:
            # Campaign at once, without pre-vote: the leader asked, so there is no partition to guard against.
            self.hup(transfer=True)
        elif t == _READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, request_ctx=m.context))
        elif t == _PROP:
            # A proposal forwarded to a node that is no longer leader: dropped (the proposer finds out by
            # timeout). Forwarding it again could duplicate it.
            pass
        # TRANSFER_LEADER and READ_INDEX sent to a follower are dropped for the same reason.

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t == _APP:
            # A leader of our term exists: follow it (thesis 3.4).
            self.become_follower(m.term, m.frm)
            self._handle_append(m)
        elif t == _HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t == _SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot_chunk(m)
        elif (t == _PRE_VOTE_RESP and self.role == StateRole.PRE_CANDIDATE) or (
            t == _VOTE_RESP and self.role == StateRole.CANDIDATE
        ):
            result = self._poll(m.frm, not m.reject)
            if result == VoteResult.WON:
                self._win()
            elif result == VoteResult.LOST:
                # A pre-vote response carries a future term; stay in ours.
                self.become_follower(self.term, None)

    def _win(self) -> None:
        """The (pre-)vote is won: campaign for real, or lead."""
        if not self.promotable():
            self.become_follower(self.term, None)
        elif self.role == StateRole.PRE_CANDIDATE:
            self._campaign(_Campaign.ELECTION)
        else:
            self._become_leader()

    def _handle_append(self, m: Message) -> None:
        ents = m.entries
        if ents and (ents[0].index != m.index + 1 or ents[-1].index != m.index + len(ents)):
            return  # malformed: not a contiguous run after (index, log_term)
        if m.index == 0 and m.snapshot is not None and m.snapshot.index == 0:
            self._maybe_adopt_initial_conf(m.snapshot)
        if m.index < self.log.committed:
            # Everything up to our commit index matches the leader's log (leader completeness): say so, and let
            # the leader continue from there.
            self._send(Message(type=_APP_RESP, to=m.frm, frm=self.id, term=self.term, index=self.log.committed))
            return
        result = self.log.maybe_append(m.index, m.log_term, m.commit, ents)
        if result is not None:
            last, appended = result
            if appended:
                self._track_conf_entries(appended)
            self._send(Message(type=_APP_RESP, to=m.frm, frm=self.id, term=self.term, index=last))
            return
        # Our log does not hold (index, log_term). Hint the largest (index, term) that may match: the last entry
        # at or below m.index whose term is at most m.log_term (etcd: findConflictByTerm), so the leader skips a
        # divergent tail in one round trip instead of one per entry.
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            Message(
                type=_APP_RESP,
                to=m.frm,
                frm=self.id,
                term=self.term,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def bootstrap(self, cs: ConfState) -> None:
        """A node that has never held a log or a membership takes ``cs`` as the membership its log starts from
        (a cluster being founded). It goes out in Ready.snapshot as the bootstrap snapshot at index 0, so it is
        persisted before anything that depends on it. Raises ValueError if the node holds any log, membership or
        snapshot already: a membership is founded once, and every later change goes through the log."""
        log = self.log
        if log.last_index() != 0 or log.applied != 0 or log.has_next_or_in_progress_snapshot():
            raise ValueError(f"{self.id} holds a log already: it cannot be bootstrapped")
        if self.trk.conf_state() != ConfState() or self.conf_entries:
            raise ValueError(f"{self.id} has a membership already ({self.trk.conf_state()}): it cannot be bootstrapped")
        if not cs.voters:
            raise ValueError("a cluster is founded with at least one voter")
        log.restore(SnapshotMeta(0, 0, cs), [])
        self._reset_conf(cs)

    def _maybe_adopt_initial_conf(self, meta: SnapshotMeta) -> None:
        """A node with an empty log whose bootstrap membership differs from the cluster's (a node that joined with
        an empty configuration) takes the leader's bootstrap snapshot, so that it applies the log from index 1
        against the membership the log starts from. It goes out in Ready.snapshot, so it is persisted too."""
        log = self.log
        if log.last_index() != 0 or log.applied != 0 or log.has_next_or_in_progress_snapshot():
            return
        if self.trk.conf_state() == meta.conf_state:
            return
        log.restore(meta, [])
        self._reset_conf(meta.conf_state)

    def _handle_heartbeat(self, m: Message) -> None:
        # m.commit <= what the leader knows we hold; min() only guards against a disk that lost synced data.
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(Message(type=_HEARTBEAT_RESP, to=m.frm, frm=self.id, term=self.term, context=m.context))

    def _handle_snapshot_chunk(self, m: Message) -> None:
        meta = m.snapshot
        if meta is None or m.chunk_count < 1 or not 0 <= m.chunk_index < m.chunk_count:
            return  # malformed
        if meta.index <= self.log.committed:
            # We hold all of it already (a duplicate, or the last chunk of a transfer we finished): answer as
            # etcd answers an obsolete snapshot, so the leader moves on.
            self.snap_assembly = None
            self._send(Message(type=_APP_RESP, to=m.frm, frm=self.id, term=self.term, index=self.log.committed))
            return
        key = (m.frm, m.term, meta.index, meta.term, m.chunk_count)
        asm = self.snap_assembly
        k = m.chunk_index
        if asm is None or asm.key != key:
            if k != 0:
                self._ack_chunk(m, meta, reject=True)
                return
            asm = self.snap_assembly = _SnapshotAssembly(key=key)
        if k < len(asm.chunks):
            if k == 0 and asm.chunks[0] != m.chunk:
                # The leader restarted the transfer with different data under the same name: start over.
                asm.chunks = []
            else:
                self._ack_chunk(m, meta)  # a duplicate: acknowledge again, the first ack may have been lost
                return
        if k != len(asm.chunks):
            self._ack_chunk(m, meta, reject=True)
            return
        asm.chunks.append(m.chunk)
        if len(asm.chunks) < m.chunk_count:
            self._ack_chunk(m, meta)
            return
        self.snap_assembly = None
        chunks = asm.chunks
        if self._restore(meta, chunks):
            self._send(Message(type=_APP_RESP, to=m.frm, frm=self.id, term=self.term, index=self.log.last_index()))
        else:
            self._send(Message(type=_APP_RESP, to=m.frm, frm=self.id, term=self.term, index=self.log.committed))

    def _ack_chunk(self, m: Message, meta: SnapshotMeta, reject: bool = False) -> None:
        """Answer a snapshot chunk: acknowledge it, or reject it (the leader then starts again from chunk 0)."""
        self._send(
            Message(
                type=_SNAP_RESP,
                to=m.frm,
                frm=self.id,
                term=self.term,
                index=meta.index,
                log_term=meta.term,
                chunk_index=m.chunk_index,
                reject=reject,
            )
        )

    def _restore(self, meta: SnapshotMeta, chunks: list[bytes]) -> bool:
        """Take a complete snapshot from the leader (etcd: restore); False if it brings nothing new."""
        if meta.index <= self.log.committed:
            return False
        if self.role != StateRole.FOLLOWER:
            return False  # defence in depth: only a follower restores
        if self.log.match_term(meta.index, meta.term):
            # Our log already holds the snapshot's last entry, so everything up to it matches the leader's and is
            # committed: just move the commit index (thesis 5.3 step 6, etcd fast-forward).
            self.log.commit_to(meta.index)
            return False
        self.log.restore(meta, chunks)
        # The configuration in force is the snapshot's. A node that is not in it (a new member added after the
        # snapshot was taken) still takes it: the change that adds it follows in the log.
        self._reset_conf(meta.conf_state)
        return True

    def _reset_conf(self, cs: ConfState) -> None:
        """The log was replaced by a snapshot whose membership is ``cs``."""
        self.base_conf = cs
        self.applied_conf = cs
        self.conf_entries = []
        self.trk = ProgressTracker(self.trk.max_inflight, self.trk.max_inflight_bytes)
        self.trk.set_conf(cs, self.log.last_index())
        self._update_is_learner()

    # --- membership --------------------------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """The driver applied a committed membership change: returns the membership as applied.

        Elections and quorums already use it since the entry entered the log (thesis 4.1); applying it only
        moves the applied view, which the driver puts into its snapshots.
        """
        self.applied_conf = apply_change(self.applied_conf, cc)
        return self.applied_conf

    def _switch_to_config(self, cs: ConfState, outgoing: tuple[str, ...] = ()) -> None:
        voters_changed = cs.voters != self.trk.voters
        self.trk.set_conf(cs, self.log.last_index(), outgoing)
        self._update_is_learner()
        if voters_changed and (self.role == StateRole.PRE_CANDIDATE or self.role == StateRole.CANDIDATE):
            # The votes were asked for in another configuration: abandon the campaign (a later timeout starts
            # one in the new configuration, if this node still votes in it).
            self.become_follower(self.term, None)
            return
        if self.role != StateRole.LEADER:
            return
        if self.lead_transferee is not None and self.lead_transferee not in self.trk.voters:
            self.lead_transferee = None
        # A smaller majority may commit more at once.
        self._leader_maybe_commit()
        # Probe new members now rather than at the next heartbeat.
        self.bcast_pending = True

    def _leader_maybe_commit(self) -> bool:
        """Advance the leader's commit index from its followers' progress; True if it moved."""
        if not self.log.maybe_commit(self.trk.committed(), self.term):
            return False
        self._release_pending_reads()
        self.bcast_pending = True
        if self.id not in self.trk.voters and self.log.committed >= self.latest_conf_index():
            self._step_down_removed()
        return True

    def _step_down_removed(self) -> None:
        """This leader's removal (or demotion) is committed: it steps down (thesis 4.2.2; etcd
        StepDownOnRemoval). It managed the cluster until then without counting itself. First it asks the most
        up-to-date voter to campaign at once, rather than have the cluster wait out an election timeout (best
        effort: the message may be lost), and makes sure everyone hears the commit index."""
        self.flush()
        last = self.log.last_index()
        for member in self.trk.voters:
            if self.trk.progress[member].match == last:
                self._send_timeout_now(member)
                break
        self.become_follower(self.term, None)

    # --- persisted / applied notifications from the driver (RawNode.advance) -------------------------------------

    def on_hard_state_persisted(self, hs: HardState) -> None:
        """A hard state is durable: a candidate's vote for itself now counts."""
        if self.role == StateRole.CANDIDATE and hs.term == self.term and hs.vote == self.id:
            if self._poll(self.id, True) == VoteResult.WON:
                self._win()

    def on_persisted(self) -> None:
        """Entries were persisted: a leader acknowledges its own entries now (thesis 3.8, 10.2.1)."""
        if self.role != StateRole.LEADER:
            return
        me = self.trk.progress.get(self.id)
        if me is not None and me.maybe_update(self.log.persisted_index()):
            self._leader_maybe_commit()

    def on_applied(self, index: int, size: int) -> None:
        """Entries up to ``index`` (``size`` bytes of data) were applied."""
        self.log.applied_to(index)
        self.uncommitted_size = max(0, self.uncommitted_size - size)
        if self.conf_entries and self.conf_entries[0][0] <= index:
            self._fold_applied_conf_entries()
            self._refresh_conf()
