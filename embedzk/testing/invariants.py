"""The simulator's running checks: what must hold after every step of every node, and across its crashes.

Each check watches what a node *does* (the messages it sends, the writes it makes, the entries it applies) and
holds it to Raft's and ZooKeeper's rules, so a broken rule is reported at the step that breaks it, not as a
symptom seconds later:

* **election safety**: at most one leader per term;
* **one vote per term**: a node never grants its vote to two candidates in one term;
* **no append from a stale term**: a node acknowledges entries only to the leader of its own term;
* **durable promises**: a vote, a candidacy or an acknowledgment of entries promises the disk holds them; when
  a node restarts after a crash, its disk still holds every promise of its latest term (a vote dropped from the
  hard state, or entries acknowledged before they were synced, show here);
* **no acknowledged entry dropped**: within one term a node never removes an entry it acknowledged, and never one
  the leader of its term has committed;
* **state machine safety**: every node applies the same entry at an index, and its tree then has the same digest;
  a node's applied and commit indexes never go back within a run of its process, and a snapshot it installs is
  newer than what it applied;
* **the commit rule**: a leader advances its commit index by counting replicas only to an entry of its own term
  (thesis 3.6.2; Raft's Figure 8 shows what breaking it costs);
* **one membership change at a time**: a leader's log never holds two uncommitted membership changes (thesis 4.1);
* **session expiry**: a leader proposes closing a session only after its own clock says the session was silent
  for its whole timeout (since the leader last heard a ping from it, or took over).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from embedzk.codec import decode
from embedzk.consensus.messages import Message, MessageType
from embedzk.consensus.types import Entry, EntryType, SnapshotMeta
from embedzk.errors import DecodeError
from embedzk.replica import Replica
from embedzk.membership.identity import user_id
from embedzk.replica.messages import Bundle, Command, SessionPing
from embedzk.tree.txn import CloseSessionOp

__all__ = ["Invariants"]


@dataclass(slots=True)
class _Promises:
    """What one node's messages promised its disk holds."""

    #: term -> the candidate it voted for (itself, for a candidacy).
    votes: dict[int, str] = field(default_factory=dict)
    #: term -> the last index it acknowledged to that term's leader.
    acks: dict[int, int] = field(default_factory=dict)


class Invariants:
    """The running checks of one simulation; ``fail`` raises the simulation's failure with a description."""

    def __init__(self, fail: Callable[[str], NoReturn]) -> None:
        self._fail = fail
        self.leaders: dict[int, str] = {}
        #: index -> (term, data) of every entry applied anywhere (so committed).
        self.committed: dict[int, tuple[int, bytes]] = {}
        #: index -> the tree digest after applying it.
        self.digests: dict[int, int] = {}
        self._promises: dict[str, _Promises] = {}
        #: node -> (applied index, commit index) when last seen, within the run of its process.
        self._applied: dict[str, tuple[int, int]] = {}
        # Session expiry: node -> its clock when it took over; (node, session) -> its clock when it last heard.
        self._leading_since: dict[str, tuple[int, float]] = {}
        self._heard: dict[tuple[str, int], float] = {}
        #: node -> (term, commit index) when last seen leading.
        self._leader_commit: dict[str, tuple[int, int]] = {}

    # --- messages ------------------------------------------------------------------------------------------------

    def sent(self, node_id: str, messages: list[tuple[str, Any]]) -> None:
        """``node_id`` sends ``messages`` (after persisting what they depend on)."""
        promises = self._promises.get(node_id)
        if promises is None:
            promises = self._promises[node_id] = _Promises()
        for _to, msg in messages:
            if not isinstance(msg, Message):
                continue
            kind = msg.type
            if kind is MessageType.VOTE_RESP and not msg.reject:
                self._voted(node_id, promises, msg.term, msg.to)
            elif kind is MessageType.VOTE:
                self._voted(node_id, promises, msg.term, node_id)
            elif kind is MessageType.APP_RESP and not msg.reject and msg.index > 0:
                # Index 0 answers a leader of an older term, to tell it ours: it promises nothing.
                leader = self.leaders.get(msg.term)
                if leader is not None and leader != msg.to:
                    self._fail(
                        f"append from a stale term accepted: {node_id} acknowledges entries up to {msg.index} in "
                        f"term {msg.term} to {msg.to}, which does not lead term {msg.term} ({leader} does)"
                    )
                if msg.index > promises.acks.get(msg.term, 0):
                    promises.acks[msg.term] = msg.index

    def _voted(self, node_id: str, promises: _Promises, term: int, candidate: str) -> None:
        earlier = promises.votes.setdefault(term, candidate)
        if earlier != candidate:
            self._fail(f"two votes in one term: {node_id} voted for {earlier} and for {candidate} in term {term}")

    def delivered(self, node_id: str, replica: Replica, msg: Any, frm: str = "") -> None:
        """``msg`` reached ``node_id`` from ``frm``: note when a leader heard from which sessions.

        Only pings count: a leader takes every ping as a sign of life, but a forwarded request only when it
        proposes it (not a copy, not one from another term), so counting forwards could credit a silence the
        leader rightly saw; and only pings from a member: a member removed from the cluster keeps no session
        alive. Missing a sign of life only makes the check weaker, never wrong."""
        if isinstance(msg, Bundle):
            for inner in msg.messages:
                self.delivered(node_id, replica, inner, frm)
        elif (
            isinstance(msg, SessionPing)
            and replica.is_leader
            and replica.is_member(frm)
        ):
            for session_id in msg.session_ids:
                self._heard[(node_id, session_id)] = replica.now

    # --- the disk ------------------------------------------------------------------------------------------------

    def restarting(self, node_id: str, disk: Any) -> None:
        """``node_id`` restarts from ``disk`` after a crash: it must still hold what it promised."""
        promises = self._promises.get(node_id)
        self._applied.pop(node_id, None)
        if promises is None:
            return
        hard_state, _ = disk.initial_state()
        if promises.votes:
            term = max(promises.votes)
            candidate = promises.votes[term]
            if hard_state.term < term or (hard_state.term == term and hard_state.vote != candidate):
                self._fail(
                    f"vote not durable: {node_id} voted for {candidate} in term {term}, but restarts with term "
                    f"{hard_state.term} and vote {hard_state.vote}"
                )
        if promises.acks:
            term = max(promises.acks)
            index = promises.acks[term]
            if hard_state.term < term:
                self._fail(
                    f"term not durable: {node_id} acknowledged entries in term {term}, but restarts in term "
                    f"{hard_state.term}"
                )
            if hard_state.term == term and disk.last_index() < index:
                self._fail(
                    f"acknowledged entries lost: {node_id} acknowledged entries up to {index} in term {term}, "
                    f"but restarts holding entries up to {disk.last_index()}"
                )

    def dropping(self, node_id: str, replica: Replica | None, dropped: list[tuple[int, int]], leader: Any) -> None:
        """``node_id``'s disk is about to drop ``dropped`` ((index, term) pairs) for an append in its current term;
        ``leader`` is the replica leading that term, if it runs."""
        if replica is None:
            return
        term = replica.term
        promises = self._promises.get(node_id)
        acked = promises.acks.get(term, 0) if promises is not None else 0
        for index, entry_term in dropped:
            if index <= acked:
                self._fail(
                    f"acknowledged entry dropped: {node_id} drops entry {index} (term {entry_term}), which it "
                    f"acknowledged in term {term} (up to {acked})"
                )
            if leader is not None and leader is not replica:
                log = leader.node.raft.log
                if index <= log.committed and log.term_or_zero(index) == entry_term:
                    self._fail(
                        f"committed entry truncated: {node_id} drops entry {index} (term {entry_term}), which "
                        f"{leader.id}, the leader of term {term}, has committed"
                    )

    # --- applying ------------------------------------------------------------------------------------------------

    def applying(self, node_id: str, entries: list[Entry]) -> None:
        """``node_id`` is handed ``entries`` to apply: they must be the entries applied there everywhere else."""
        committed = self.committed
        for entry in entries:
            known = committed.setdefault(entry.index, (entry.term, entry.data))
            if known != (entry.term, entry.data):
                self._fail(
                    f"{node_id} applies entry {entry.index} of term {entry.term}, "
                    f"but term {known[0]} was applied there elsewhere"
                )

    def installing(self, node_id: str, replica: Replica, meta: SnapshotMeta) -> None:
        """``node_id`` is handed a snapshot from its leader to install: it must be newer than what it had
        committed (Raft restores only a snapshot past its commit index)."""
        held = max(replica.applied, self._applied.get(node_id, (0, 0))[1])
        if 0 < meta.index <= held:
            self._fail(
                f"stale snapshot installed: {node_id} installs the snapshot at {meta.index} (term {meta.term}) "
                f"over its state at {held}"
            )

    def stepped(self, node_id: str, replica: Replica) -> None:
        """After every step of a running node."""
        if replica.is_leader:
            term = replica.term
            known = self.leaders.setdefault(term, node_id)
            if known != node_id:
                self._fail(f"two leaders in term {term}: {known} and {node_id}")
            since = self._leading_since.get(node_id)
            if since is None or since[0] != term:
                self._leading_since[node_id] = (term, replica.now)
            self._one_change_in_flight(node_id, replica)
            self._commit_rule(node_id, replica)
        applied = replica.applied
        commit = replica.node.raft.log.committed
        before, committed_before = self._applied.get(node_id, (0, 0))
        if applied < before:
            self._fail(f"applied state went back: {node_id} had applied {before}, now {applied}")
        if commit < committed_before:
            self._fail(f"commit index went back: {node_id} had committed {committed_before}, now {commit}")
        self._applied[node_id] = (applied, commit)
        digest = replica.tree.digest
        known_digest = self.digests.setdefault(applied, digest)
        if digest != known_digest:
            self._fail(f"{node_id} has tree digest {digest:#x} at index {applied}, others {known_digest:#x}")

    def _commit_rule(self, node_id: str, replica: Replica) -> None:
        # Thesis 3.6.2 (Figure 8): a leader advances its commit index by counting replicas only to an entry of its
        # own term; the entries of earlier terms before it commit with it. Checked at every step it leads.
        log = replica.node.raft.log
        commit, term = log.committed, replica.term
        before = self._leader_commit.get(node_id)
        if before is not None and before[0] == term and commit > before[1]:
            entry_term = log.term_or_zero(commit)
            if entry_term != term:
                self._fail(
                    f"commit rule broken: leader {node_id} of term {term} commits up to {commit}, an entry of "
                    f"term {entry_term}, by counting replicas (thesis 3.6.2, Figure 8)"
                )
        self._leader_commit[node_id] = (term, commit)

    def _one_change_in_flight(self, node_id: str, replica: Replica) -> None:
        raft = replica.node.raft
        committed = raft.log.committed
        in_flight = [index for index, _change in raft.conf_entries if index > committed]
        if len(in_flight) > 1:
            self._fail(f"two membership changes in flight: leader {node_id} holds uncommitted changes at {in_flight}")

    def crashed(self, node_id: str) -> None:
        """``node_id``'s process is gone (its clock readings and leadership with it)."""
        self._leading_since.pop(node_id, None)
        self._leader_commit.pop(node_id, None)
        self._applied.pop(node_id, None)

    # --- sessions ------------------------------------------------------------------------------------------------

    def proposed(self, node_id: str, replica: Replica, entries: list[Entry]) -> None:
        """The leader ``node_id`` appends ``entries`` it proposed: a session closing must be due by its clock."""
        for entry in entries:
            if entry.type != EntryType.NORMAL or not entry.data or entry.term != replica.term:
                continue
            try:
                command = decode(entry.data)
            except DecodeError:
                continue
            if not isinstance(command, Command) or not isinstance(command.txn.op, CloseSessionOp):
                continue
            # Only the leader's own expiries: a restarted node closes its earlier incarnation's session at once.
            if command.origin == node_id:
                self._check_expiry(node_id, replica, command.txn.op.session_id)

    def _check_expiry(self, node_id: str, replica: Replica, session_id: int) -> None:
        session = replica.tree.sessions().get(session_id)
        if session_id == replica.session_id:
            self._fail(f"session expired early: leader {node_id} closes its own session {session_id:#x}")
        if session is None or session[0] == node_id:
            return  # closed already (a retry), or a session of this node's earlier incarnation
        members = replica.node.status().log_conf_state.members()
        if user_id(session[0]) == user_id(node_id) and session[0] not in members:
            return  # the session of the member this one replaced (its id, on a disk that is gone)
        owner, timeout_ms = session
        since = self._leading_since.get(node_id)
        last = max(since[1] if since is not None else replica.now, self._heard.get((node_id, session_id), 0.0))
        silent = replica.now - last
        if silent <= timeout_ms / 1000.0 - 1e-9:
            self._fail(
                f"session expired early: leader {node_id} closes session {session_id:#x} of {owner} after "
                f"{silent:.3f}s of silence by its clock, under the session timeout of {timeout_ms / 1000.0:.3f}s"
            )
