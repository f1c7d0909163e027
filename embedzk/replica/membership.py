"""The replica's membership duties: founding or joining a cluster, telling the leader where it is, and, on the
leader, admitting joiners, keeping the voters (the autopilot) and carrying out the application's member changes.

A replica is in one of four phases (:class:`Phase`):

* FOUNDING: a fresh disk whose address is among the founders runs the founding (:mod:`embedzk.membership.founding`)
  until it is decided; it then bootstraps Raft with the founding voters if it is one of them, and joins otherwise;
* JOINING: a fresh disk asks the leader, through any member it can reach, to be added as a learner, every half
  second, until the leader starts replicating to it;
* MEMBER: the usual life. Every second it sends the leader a :class:`Presence` (its address and protocol versions);
  the leader records a changed address in the log and raises the cluster's version when every member speaks a
  newer one;
* REMOVED: the leader said it is no longer a member (or it applied its own removal): it stops taking part, and the
  driver decides what follows (a peer with seeds joins again as a new member, on a fresh disk).

A fresh disk is always a new member: a peer that comes back on one under an old id joins with a new member key, and
the leader removes the old key once it is sure the old process is gone (same address, or unreachable) and the new
one is alive (it answers a challenge at its address: a join request replayed from a process gone since must not
replace a live member), then adds the new one; the autopilot gives it the old one's vote back once it has caught up.
Two live processes claiming one id with different disks: the second is refused.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedzk.consensus import ProposalDroppedError
from embedzk.consensus.types import ConfChange, ConfChangeType, ConfState
from embedzk.membership.autopilot import AutopilotPolicy, MemberView, next_change
from embedzk.membership.founding import Founding
from embedzk.membership.identity import FoundingValue, MemberRecord, is_address, user_id
from embedzk.membership.messages import (
    ClusterInfo,
    FoundAccept,
    FoundAccepted,
    Founded,
    FoundPrepare,
    FoundPromise,
    FoundRefused,
    FoundReject,
    JoinChallenge,
    JoinProof,
    JoinRefused,
    JoinRequest,
    LeaveRequest,
    LivenessEcho,
    LivenessProbe,
    MemberChange,
    MemberChangeResult,
    MemberStatus,
    Presence,
    Removed,
)
from embedzk.membership.versions import (
    JOIN_PROOF,
    LIVENESS_PROBES,
    MEMBER_STATUS,
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    join_refusal,
)

if TYPE_CHECKING:
    from embedzk.replica.replica import Replica

log = logging.getLogger(__name__)

__all__ = ["MemberInfo", "MembershipConfig", "Membership", "Phase"]

_FOUNDING_MESSAGES = (FoundPrepare, FoundPromise, FoundReject, FoundAccept, FoundAccepted, Founded, FoundRefused)

#: Seconds between a joiner's requests, and between the leader's invitations of a member being added.
JOIN_INTERVAL = 0.5
#: Seconds between a member's Presence messages (and the leader's MemberStatus broadcasts).
PRESENCE_INTERVAL = 1.0
#: Entries a learner may be behind the leader's commit index and still be promoted.
MAX_PROMOTION_LAG = 256
#: Seconds a joiner's announced address is kept for sending while it is not a member.
ANNOUNCED_TTL = 60.0
#: Cap on the stabilization time: a learner reachable this long without a break is stable, however long the
#: member timeout.
MAX_STABILIZATION = 10.0


class Phase(enum.Enum):
    """Where a replica stands with respect to the cluster (see the module docstring)."""

    FOUNDING = "founding"
    JOINING = "joining"
    MEMBER = "member"
    REMOVED = "removed"


@dataclass(slots=True)
class MembershipConfig:
    """How a replica takes part in the membership.

    ``founders``: the founders' addresses (seeds, or the static members' addresses), empty when the cluster is
    never founded from here (a replica bootstrapped by hand, or one that only joins); ``contacts``: where to ask
    to join; ``wants_vote``: configured to vote (a static member); ``voters``: the number of voters the autopilot
    keeps (None: a static cluster); ``member_timeout``: seconds unreachable before the autopilot removes a member
    (None: never).
    """

    address: str = ""
    founders: tuple[str, ...] = ()
    contacts: tuple[str, ...] = ()
    wants_vote: bool = False
    voters: int | None = None
    member_timeout: float | None = None
    min_version: int = PROTOCOL_MIN
    max_version: int = PROTOCOL_MAX
    #: Seconds a founder with a majority of the founders' promises waits for the rest before founding without them.
    founding_grace: float = 1.0


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as this replica sees it. ``reachable`` and ``lag`` are None when unknown here (a follower of a
    cluster whose version does not carry the leader's member status yet)."""

    key: str
    id: str
    address: str
    voter: bool
    leader: bool
    reachable: bool | None
    lag: int | None


@dataclass(slots=True)
class _Job:
    """An application's add_member/remove_member on the leader, until it is done or given up."""

    origin: str
    request: int
    kind: str
    peer_id: str
    address: str
    voter: bool
    key: str
    deadline: float


@dataclass(slots=True)
class _Asked:
    """An add_member/remove_member this replica asked for, waiting for the leader's answer."""

    change: MemberChange
    deadline: float
    sent_at: float = -1.0
    sent_to: str | None = None
    #: The leader made the change; the caller is answered once this replica has applied it too.
    made: bool = False


class Membership:
    """The membership duties of one replica (see the module docstring). Driven by the replica."""

    def __init__(
        self, replica: Replica, config: MembershipConfig, record: MemberRecord, rng: random.Random
    ) -> None:
        self._replica = replica
        self.config = config
        self.key = replica.id
        self.record = record
        self._rng = rng
        tick = replica.config.tick_interval
        election = tick * replica.config.election_tick
        #: Seconds without hearing from a member before it counts as unreachable.
        self.reach_window = max(2 * election, 3 * tick)
        self._record_seq = 0
        self._persisted_seq = 0
        self._record_dirty = False
        # Founding record sequence numbers behind ours: released to the founding once ours is durable.
        self._founding_seqs: list[tuple[int, int]] = []
        self.founding: Founding | None = None
        #: Why this replica cannot go on (a refused join, founders configured differently), for the driver.
        self.refusal: str | None = None
        #: Why this replica was removed, once it was.
        self.removed_reason: str | None = None
        self.contacts: list[str] = [c for c in config.contacts if c != config.address]
        self._last_join = -1e9
        self._last_presence = -1e9
        # The leader this member last announced itself to (None: none yet, or to everyone).
        self._presence_lead: str | None = None
        self._last_status = -1e9
        self._last_invite = -1e9
        self._last_beacon = -1e9
        self.leaving = False
        # The leader's knowledge of the members (reset when it becomes leader).
        self._heard: dict[str, float] = {}
        # When each member was last shown alive by fresh evidence: the sending time of its latest echoed probe.
        self._echoed: dict[str, float] = {}
        self._since: dict[str, float] = {}
        self._versions: dict[str, tuple[int, int]] = {}
        self._wants_vote: set[str] = set()
        self._leaving: set[str] = set()
        # The leader's liveness probes of this term (protocol 6): their numbers, and when each was sent (kept for the
        # reach window: an echo of an older one would say nothing of now).
        self._probe_seq = 0
        self._probes: dict[int, float] = {}
        self._last_probe = -1e9
        # Joiners challenged to show they are alive (key: nonce, when, their request), and those that did (key: when);
        # each counts for the reach window.
        self._challenges: dict[str, tuple[int, float, JoinRequest]] = {}
        self._proven: dict[str, float] = {}
        self._jobs: dict[tuple[str, int], _Job] = {}
        self._proposed_cluster_id = False
        self._proposed_version = 0
        self._proposed_addresses: dict[str, str] = {}
        # What the leader last said about the members (protocol 3), and when.
        self._status: MemberStatus | None = None
        self._status_at = 0.0
        # add_member/remove_member asked from here.
        self._asked: dict[int, _Asked] = {}
        # Addresses members (and joiners) announced that the log does not hold yet, with when: used for sending
        # meanwhile.
        self.announced: dict[str, tuple[str, float]] = {}
        self.routes_changed = False
        # What a member told us of the existing cluster, while we are not a member ourselves.
        self._learnt: ClusterInfo | None = None
        self.phase = self._initial_phase()

    # --- phases --------------------------------------------------------------------------------------------------

    def _initial_phase(self) -> Phase:
        status = self._replica.node.status()
        record = self.record
        if status.conf_state.members() or status.log_conf_state.members():
            if record.accepted is not None and record.cluster_uuid == record.accepted.cluster_uuid:
                self._remember_founders(record.accepted)
            return Phase.MEMBER
        decided = record.accepted if record.cluster_uuid else None
        if decided is not None and self.key in decided.voter_keys():
            # Decided and recorded, then stopped before Raft was bootstrapped: do it now.
            self._bootstrap(decided)
            return Phase.MEMBER
        if self.config.address in self.config.founders and not record.cluster_uuid:
            self.founding = Founding(
                self.key,
                self.config.address,
                self.config.founders,
                record,
                self._rng,
                retry_ticks=self._replica.config.election_tick,
                grace_ticks=max(1, round(self.config.founding_grace / self._replica.config.tick_interval)),
            )
            return Phase.FOUNDING
        if decided is not None:
            self.contacts = [address for _key, address in decided.voters] + self.contacts
        return Phase.JOINING

    def _bootstrap(self, value: FoundingValue) -> None:
        self._replica.node.bootstrap(ConfState(voters=value.voter_keys()))
        self._remember_founders(value)

    def _remember_founders(self, value: FoundingValue) -> None:
        # Where the first voters are, for sending, until the log records it (the first leader proposes it).
        now = self._replica.now
        for key, address in value.voters:
            if key != self.key:
                self.announced[key] = (address, now)
        self.routes_changed = True

    def _became_member(self) -> None:
        self.phase = Phase.MEMBER
        log.info("%s: member of the cluster", self.key)

    def removed(self, reason: str) -> None:
        """This replica is no longer a member."""
        if self.phase is Phase.REMOVED:
            return
        self.phase = Phase.REMOVED
        self.removed_reason = reason
        log.log(logging.INFO if self.leaving else logging.WARNING, "%s: %s", self.key, reason)

    # --- record persistence (the driver) ------------------------------------------------------------------------

    def take_record(self) -> MemberRecord | None:
        """The member record to persist now, if it changed."""
        founding = self.founding
        if founding is not None:
            taken = founding.take_record()
            if taken is not None:
                seq, record = taken
                self.record = record
                self._record_seq += 1
                self._record_dirty = True
                self._founding_seqs.append((self._record_seq, seq))
        if not self._record_dirty:
            return None
        self._record_dirty = False
        return self.record

    def persisted(self) -> None:
        """Every record taken so far is durable."""
        self._persisted_seq = self._record_seq
        founding = self.founding
        if founding is not None:
            for ours, theirs in self._founding_seqs:
                if ours <= self._persisted_seq:
                    founding.persisted(theirs)
            self._founding_seqs = [s for s in self._founding_seqs if s[0] > self._persisted_seq]

    def _update_record(self, **changes: Any) -> None:
        record = dataclasses.replace(self.record, **changes)
        if record != self.record:
            self.record = record
            self._record_seq += 1
            self._record_dirty = True

    def cluster_known(self, cluster_uuid: str) -> None:
        """The replicated state names the cluster: the disk records it."""
        if cluster_uuid and not self.record.cluster_uuid:
            self._update_record(cluster_uuid=cluster_uuid)

    # --- inputs -----------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Time passed (the replica's clock is current)."""
        replica = self._replica
        now = replica.now
        phase = self.phase
        if phase is Phase.FOUNDING:
            founding = self.founding
            assert founding is not None
            founding.tick()
        elif phase is Phase.JOINING:
            if now - self._last_join >= JOIN_INTERVAL:
                self._last_join = now
                self._ask_to_join()
        elif phase is Phase.MEMBER:
            lead = replica.lead
            # A new leader hears at once, not up to PRESENCE_INTERVAL later: until it knows which protocol a member
            # speaks, it judges the member by any frame, and the autopilot makes no change resting on that.
            if now - self._last_presence >= PRESENCE_INTERVAL or (lead is not None and lead != self._presence_lead):
                self._last_presence = now
                self._presence_lead = lead
                self._announce()
            if replica.is_leader:
                if now - self._last_beacon >= self.reach_window / 4:
                    self._last_beacon = now
                    self._beacon()
                self._lead(now)
        if self.announced:
            self._forget_announced(now)
        if self._challenges or self._proven:
            self._forget_proofs(now)
        self._retry_asked(now)

    def after_step(self) -> None:
        """Called after every input and output: notices the founding's decision and Raft adopting a membership."""
        founding = self.founding
        if founding is not None:
            if founding.refusal is not None and self.refusal is None:
                self.refusal = founding.refusal
            for to, msg in founding.take_messages():
                if to == self.config.address:
                    founding.receive(msg)  # a founder's answers to itself, once durable
                else:
                    self._replica.send(to, msg)
            if self.phase is Phase.FOUNDING and founding.decided is not None:
                value = founding.decided
                status = self._replica.node.status()
                if status.conf_state.members() or status.log_conf_state.members():
                    # The first leader's appends came before the decision did: Raft took the membership from
                    # them already.
                    self._remember_founders(value)
                    self._became_member()
                elif self.key in value.voter_keys():
                    self._bootstrap(value)
                    self._became_member()
                else:
                    self.phase = Phase.JOINING
                    self.contacts = [address for _key, address in value.voters]
                    self._last_join = -1e9
        if self.phase in (Phase.JOINING, Phase.FOUNDING):
            status = self._replica.node.status()
            if status.conf_state.members() or status.log_conf_state.members():
                self._became_member()

    def receive(self, frm: str, msg: Any) -> bool:
        """A membership message from ``frm`` (a member key); False if ``msg`` is not one."""
        if isinstance(msg, _FOUNDING_MESSAGES):
            self._on_founding_message(msg)
        elif isinstance(msg, ClusterInfo):
            self._on_cluster_info(msg)
        elif isinstance(msg, JoinRequest):
            self._on_join_request(frm, msg)
        elif isinstance(msg, JoinChallenge):
            if msg.key == self.key and self.phase is Phase.JOINING and is_address(msg.reply_to):
                self._replica.send(msg.reply_to, JoinProof(self.key, msg.nonce))
        elif isinstance(msg, JoinProof):
            self._on_join_proof(frm, msg)
        elif isinstance(msg, LivenessProbe):
            if self.phase is not Phase.REMOVED:
                self._replica.send(frm, LivenessEcho(msg.term, msg.seq))
        elif isinstance(msg, LivenessEcho):
            self._on_liveness_echo(frm, msg)
        elif isinstance(msg, JoinRefused):
            if msg.key == self.key and self.phase is not Phase.MEMBER:
                self.refusal = msg.reason
        elif isinstance(msg, Presence):
            self._on_presence(frm, msg)
        elif isinstance(msg, Removed):
            # For this member only: another may have listened at this address before (or may, after). A joiner
            # hears it too: its key was added and removed again before its disk learnt it was a member (it was
            # down, say), and a removed key never comes back, so it must join anew (crash-heavy seed 33114).
            if (
                msg.key == self.key
                and self.phase in (Phase.MEMBER, Phase.JOINING)
                and msg.term >= self._replica.term
            ):
                self.removed(msg.reason)
        elif isinstance(msg, MemberStatus):
            if frm == self._replica.lead and msg.term == self._replica.term:
                self._status = msg
                self._status_at = self._replica.now
        elif isinstance(msg, LeaveRequest):
            if self._replica.is_leader and msg.key == frm:
                self._leaving.add(frm)
        elif isinstance(msg, MemberChange):
            self._on_member_change(frm, msg)
        elif isinstance(msg, MemberChangeResult):
            self._on_member_change_result(msg)
        else:
            return False
        return True

    def frame_from(self, key: str, now: float) -> None:
        """A frame came from ``key`` (the leader's view). For a member that answers liveness probes this says
        nothing: the frame may be a late copy of one sent before it died. For one that does not, it is all there is."""
        if not self._probed(key):
            self.heard(key, now)

    def heard(self, key: str, at: float) -> None:
        """``key`` was alive at ``at`` (the leader's view). Evidence may come late and out of order: the latest wins,
        and a member whose evidence had lapsed for the reach window starts its stability over. Of a peer that is not
        a member (yet) nothing is kept: it gets a fresh start when it becomes one (see :meth:`_views`), since
        what was heard of it before may be long past by then (crash-heavy seed 33114: a joiner heard from until the
        cluster spoke protocol 6, then added, was counted silent since and removed at once)."""
        last = self._heard.get(key)
        if last is None:
            return
        if at - last > self.reach_window:
            self._since[key] = at
        if at > last:
            self._heard[key] = at

    def _probed(self, key: str) -> bool:
        # Whether the leader judges ``key`` by echoes of its probes alone: every member speaks protocol 6, or this
        # one told us it does.
        return (
            self._replica.cluster_version >= LIVENESS_PROBES
            or self._versions.get(key, (0, 0))[1] >= LIVENESS_PROBES
        )

    def postpone(self, shift: float, now: float) -> None:
        """The replica was not running for ``shift`` seconds (see Replica.tick): the members' silence then is its
        own, so their last-heard and stability times move on by that much (never past ``now``)."""
        for key, heard in self._heard.items():
            self._heard[key] = min(heard + shift, now)
        for key, since in self._since.items():
            self._since[key] = min(since + shift, now)

    def became_leader(self) -> None:
        """This replica just became leader: every member gets a fresh start (none is judged on a predecessor's
        knowledge, none is promoted before it has been seen stable under this leader)."""
        now = self._replica.now
        members = self._replica.node.status().log_conf_state.members()
        self._heard = dict.fromkeys(members, now)
        self._since = dict.fromkeys(members, now)
        self._echoed = {}
        self._probe_seq = 0
        self._probes = {}
        self._last_probe = -1e9
        self._leaving = set()
        self._challenges = {}
        self._proven = {}
        self._proposed_cluster_id = False
        self._proposed_version = 0
        self._proposed_addresses = {}

    # --- founding and joining ------------------------------------------------------------------------------------

    def _on_founding_message(self, msg: Any) -> None:
        reply_to = getattr(msg, "reply_to", None)
        answer_to = reply_to if isinstance(reply_to, str) and is_address(reply_to) else None
        if self.phase is Phase.MEMBER:
            if answer_to is not None:
                self._replica.send(answer_to, self.cluster_info())
            return
        founding = self.founding
        if self._learnt is not None and (founding is None or founding.decided is None):
            # We know the cluster exists: say so, and take no part in founding another.
            if answer_to is not None:
                self._replica.send(answer_to, self._learnt)
            return
        if founding is not None:
            founding.receive(msg)

    def cluster_info(self) -> ClusterInfo:
        """What this member tells a founder or joiner about the cluster."""
        replica = self._replica
        members = replica.node.status().log_conf_state.members()
        addresses = {key: replica.address_of(key) for key in members}
        lead = replica.lead or ""
        return ClusterInfo(replica.cluster_uuid or self.record.cluster_uuid, lead, addresses, replica.cluster_version)

    def _beacon(self) -> None:
        # The leader tells every founder address that the cluster exists, members or not. A founder only learns
        # of the cluster from whoever listens at a founder address, and the members there may all be gone (left,
        # or replaced after losing their disks) while the cluster lives on elsewhere: a majority of founders back
        # on fresh disks would then found a second cluster. A fresh founder listens for two election timeouts
        # before it promises anything; this comes four times in that while. A member at the address ignores it.
        info = self.cluster_info()
        for address in self.config.founders:
            if address != self.config.address:
                self._replica.send(address, info)

    def _on_cluster_info(self, info: ClusterInfo) -> None:
        if self.phase not in (Phase.FOUNDING, Phase.JOINING):
            return
        if info.members:
            self._learnt = info
        if self.phase is Phase.FOUNDING:
            log.info("%s: a cluster exists already (%s): joining it", self.key, info.cluster_uuid)
            self.phase = Phase.JOINING
            self._last_join = -1e9
        now = self._replica.now
        for key, address in info.members.items():
            if is_address(address) and key != self.key:
                self.announced[key] = (address, now)  # how the joiner answers the leader's first appends
        self.routes_changed = True
        leader = info.members.get(info.leader)
        known = [leader] if leader else []
        known += [address for key, address in sorted(info.members.items()) if key != info.leader]
        self.contacts = list(dict.fromkeys(known + [c for c in self.contacts if c not in known]))

    def _ask_to_join(self) -> None:
        config = self.config
        request = JoinRequest(self.key, config.address, config.min_version, config.max_version, config.wants_vote)
        replica = self._replica
        if replica.lead is not None and replica.lead != self.key:
            replica.send(replica.lead, request)
        for contact in self.contacts:
            replica.send(contact, request)

    def _on_join_request(self, frm: str, req: JoinRequest) -> None:
        replica = self._replica
        if self.phase is not Phase.MEMBER or frm != req.key or not is_address(req.address):
            return
        if not replica.is_leader:
            replica.send(req.address, self.cluster_info())
            return
        refusal = join_refusal(user_id(req.key), req.min_version, req.max_version, replica.cluster_version)
        if refusal is not None:
            replica.send(req.address, JoinRefused(req.key, refusal))
            return
        self._versions[req.key] = (req.min_version, req.max_version)
        if req.voter:
            self._wants_vote.add(req.key)
        status = replica.node.status()
        members = status.log_conf_state.members()
        if req.key in members:
            return  # added already; it hears so through the log
        if req.key in replica.removed_keys:
            # Removed already: a request of its from before (delayed, or replayed) must not bring it back.
            replica.send(req.address, Removed(req.key, replica.term, f"{req.key} was removed from the cluster"))
            return
        self.announced[req.key] = (req.address, replica.now)
        self.routes_changed = True
        name = user_id(req.key)
        for old in members:
            if old == req.key or user_id(old) != name:
                continue
            old_address = replica.address_of(old)
            gone = old_address == req.address or replica.now - self._heard.get(old, -1e9) > self.reach_window
            if not gone:
                replica.send(
                    req.address,
                    JoinRefused(
                        req.key,
                        f"peer id {name!r} is in use by a live member ({old} at {old_address}) with another "
                        f"data directory; give this peer another id, or stop the other one first",
                    ),
                )
                return
            if req.max_version >= JOIN_PROOF and not self._alive(req):
                return
            # The old process is gone for good (its disk with it): replace it, one change at a time.
            if self._propose(ConfChange(ConfChangeType.REMOVE, old)):
                log.info("%s: %s came back on a new disk as %s: removing the old member", self.key, old, req.key)
                if old in status.conf_state.voters:
                    self._wants_vote.add(req.key)
            return
        if self._propose(ConfChange(ConfChangeType.ADD_LEARNER, req.key, req.address.encode())):
            log.info("%s: adding %s (at %s) as a learner", self.key, req.key, req.address)

    def _alive(self, req: JoinRequest) -> bool:
        """Whether joiner ``req.key`` answered a challenge lately; if not, challenge it (again) at its address."""
        now = self._replica.now
        proven = self._proven.get(req.key)
        if proven is not None and now - proven <= self.reach_window:
            return True
        challenge = self._challenges.get(req.key)
        if challenge is None or now - challenge[1] > self.reach_window:
            # A nonce kept while the challenge is open: a joiner whose answers take longer than its requests'
            # interval still answers the one that counts.
            challenge = (self._rng.getrandbits(63), now, req)
            self._challenges[req.key] = challenge
        self._replica.send(req.address, JoinChallenge(req.key, challenge[0], self.config.address))
        return False

    def _on_join_proof(self, frm: str, proof: JoinProof) -> None:
        challenge = self._challenges.get(frm)
        if frm != proof.key or challenge is None or challenge[0] != proof.nonce or not self._replica.is_leader:
            return
        if self._replica.now - challenge[1] > self.reach_window:
            return  # too late to say anything of now
        del self._challenges[frm]
        self._proven[frm] = self._replica.now
        self._on_join_request(frm, challenge[2])

    def _forget_proofs(self, now: float) -> None:
        # A proof, and an open challenge, count for the reach window: an old answer says nothing of now.
        window = self.reach_window
        self._challenges = {k: c for k, c in self._challenges.items() if now - c[1] <= window}
        self._proven = {k: at for k, at in self._proven.items() if now - at <= window}

    def _propose(self, change: ConfChange) -> bool:
        try:
            self._replica.node.propose_conf_change(change)
        except ProposalDroppedError:
            return False  # one change at a time: asked again later
        return True

    # --- presence ------------------------------------------------------------------------------------------------

    def _announce(self) -> None:
        replica = self._replica
        config = self.config
        presence = Presence(config.address, config.min_version, config.max_version, config.wants_vote, self.leaving)
        lead = replica.lead
        if lead is not None:
            if lead != self.key:
                replica.send(lead, presence)
            return
        # No leader known: maybe nobody knows where we are now (every member came back at a new address, say).
        # Tell every member where the log says it is, and the seeds, which are meant to be stable names.
        for key in replica.node.status().log_conf_state.members():
            if key != self.key:
                replica.send(key, presence)
        for contact in self.contacts:
            replica.send(contact, presence)

    def _on_presence(self, frm: str, msg: Presence) -> None:
        replica = self._replica
        if not is_address(msg.address):
            return
        if self.phase in (Phase.FOUNDING, Phase.JOINING):
            # Only a member announces itself, so a cluster exists and ``frm`` is in it. A member that knows no
            # leader announces itself to every address it knows, founder addresses included: a founder back on a
            # fresh disk may hear of the cluster this way alone (crash-heavy seed 44319: no member was left at a
            # founder address and the leader was cut off, so no answer and no beacon came, and two founders on
            # fresh disks founded a second cluster beside the live one, whose members' announcements they heard).
            self._on_cluster_info(ClusterInfo("", "", {frm: msg.address}))
            return
        if replica.address_of(frm) != msg.address and frm in replica.node.status().log_conf_state.members():
            # Send to where it is now even before the log says so (it may be our only way to reach it).
            self.announced[frm] = (msg.address, replica.now)
            self.routes_changed = True
        if not replica.is_leader:
            return
        if not replica.is_member(frm):
            # Only a member whose removal was applied is told so: one that is not a member *yet* (its addition
            # was lost with an uncommitted entry, or is still to come) must not take it for its end.
            if frm in replica.removed_keys:
                why = f"{frm} is not a member of the cluster (removed)"
                replica.send(msg.address, Removed(frm, replica.term, why))
            return
        self._versions[frm] = (msg.min_version, msg.max_version)
        if msg.voter:
            self._wants_vote.add(frm)
        if msg.leaving:
            self._leaving.add(frm)

    # --- the leader -------------------------------------------------------------------------------------------

    def _lead(self, now: float) -> None:
        replica = self._replica
        self._heard[self.key] = now
        self._since.setdefault(self.key, now)
        if replica.cluster_uuid == "" and not self._proposed_cluster_id:
            cluster = self.record.cluster_uuid or str(_uuid4(self._rng))
            if replica.propose_cluster_command_id(cluster):
                self._proposed_cluster_id = True
        if now - self._last_probe >= self.reach_window / 6:
            self._last_probe = now
            self._probe(now)
        self._record_addresses()
        self._raise_version()
        self._run_jobs(now)
        if replica.node.raft.pending_conf_index <= replica.applied:
            change = next_change(self.key, self._views(now), self._policy())
            if change is not None and self._propose(change):
                log.info("%s: autopilot: %s %s", self.key, change.type.name, change.node_id)
        if replica.cluster_version >= MEMBER_STATUS and now - self._last_status >= PRESENCE_INTERVAL:
            self._last_status = now
            self._broadcast_status(now)

    def _probe(self, now: float) -> None:
        # Ask every member that answers probes to show it is alive now; forget probes too old to say so.
        replica = self._replica
        window = self.reach_window
        self._probes = {seq: at for seq, at in self._probes.items() if now - at <= window}
        probed = [
            key for key in replica.node.status().log_conf_state.members() if key != self.key and self._probed(key)
        ]
        if not probed:
            return
        self._probe_seq += 1
        self._probes[self._probe_seq] = now
        probe = LivenessProbe(replica.term, self._probe_seq)
        for key in probed:
            replica.send(key, probe)

    def _on_liveness_echo(self, frm: str, echo: LivenessEcho) -> None:
        # Dated when the probe left, not when the echo came: a late echo says nothing of the time in between.
        sent = self._probes.get(echo.seq)
        if sent is not None and self._replica.is_leader and echo.term == self._replica.term:
            self.heard(frm, sent)
            if frm in self._heard and sent > self._echoed.get(frm, -1e18):
                self._echoed[frm] = sent

    def _policy(self) -> AutopilotPolicy:
        config = self.config
        election = self._replica.config.tick_interval * self._replica.config.election_tick
        if config.voters is None:
            # A static member configured to vote is promoted as soon as it has caught up: there is nothing to flap
            # between, its seat is its own.
            return AutopilotPolicy(None, None, 0.0, MAX_PROMOTION_LAG)
        timeout = config.member_timeout
        stabilization = max(2 * election, min(MAX_STABILIZATION, (timeout or MAX_STABILIZATION) / 4))
        return AutopilotPolicy(config.voters, timeout, stabilization, MAX_PROMOTION_LAG)

    def _views(self, now: float) -> list[MemberView]:
        status = self._replica.node.status()
        conf = status.log_conf_state
        commit = status.commit
        views = []
        members = conf.members()
        if self._heard.keys() != set(members):
            # A member new to this leader (added since it took over) gets the same fresh start as the others did
            # then: judged from now on, stable from now on. A member gone is forgotten.
            self._heard = {key: self._heard.get(key, now) for key in members}
            self._since = {key: self._since.get(key, now) for key in members}
            self._echoed = {key: at for key, at in self._echoed.items() if key in self._heard}
        for key in members:
            heard = self._heard[key]
            reachable = key == self.key or now - heard <= self.reach_window
            progress = status.progress.get(key)
            lag = 0 if key == self.key or progress is None else max(0, commit - progress.match)
            views.append(
                MemberView(
                    key=key,
                    voter=key in conf.voters,
                    reachable=reachable,
                    unreachable_for=0.0 if reachable else now - heard,
                    # Stable for as long as it was seen to be, up to when it was last heard: a learner that went
                    # silent is not counted stable for the window in which it still passes for reachable.
                    stable_for=heard - self._since.get(key, heard) if reachable else 0.0,
                    lag=lag,
                    wants_vote=key in self._wants_vote,
                    leaving=key in self._leaving,
                    acknowledged=key == self.key or (progress is not None and progress.match > 0),
                    proven=key == self.key or now - self._echoed.get(key, -1e18) <= self.reach_window,
                )
            )
        return views

    def _forget_announced(self, now: float) -> None:
        # An announced address is used for sending until the log records it (or, for a peer that never became a
        # member, until it is old).
        replica = self._replica
        for key, (address, when) in list(self.announced.items()):
            if replica.addresses.get(key) == address or now - when > ANNOUNCED_TTL:
                del self.announced[key]
                self.routes_changed = True

    def _record_addresses(self) -> None:
        # Every member's address goes into the log: the first voters' (known from the founding), a member's that
        # came back elsewhere, this leader's own.
        replica = self._replica
        for key in replica.conf_state().members():
            if key == self.key:
                address = self.config.address
            else:
                announced = self.announced.get(key)
                address = announced[0] if announced is not None else ""
            if not address or replica.addresses.get(key) == address or self._proposed_addresses.get(key) == address:
                continue
            if replica.propose_member_address(key, address):
                self._proposed_addresses[key] = address

    def _raise_version(self) -> None:
        replica = self._replica
        members = replica.node.status().log_conf_state.members()
        self._versions[self.key] = (self.config.min_version, self.config.max_version)
        if any(key not in self._versions for key in members):
            return
        target = min(self._versions[key][1] for key in members)
        if target > replica.cluster_version and target > self._proposed_version:
            if replica.propose_cluster_version(target):
                self._proposed_version = target
                log.info("%s: every member speaks protocol %d: raising the cluster's version", self.key, target)

    def _broadcast_status(self, now: float) -> None:
        replica = self._replica
        views = self._views(now)
        status = MemberStatus(
            replica.term,
            tuple(v.key for v in views if v.reachable),
            {v.key: v.lag for v in views},
        )
        for view in views:
            if view.key != self.key:
                replica.send(view.key, status)

    # --- add_member / remove_member -------------------------------------------------------------------------------

    def ask(
        self, request: int, kind: str, peer_id: str, address: str, voter: bool, key: str, timeout: float
    ) -> None:
        """The application asks for a member change; its Completion (``request``) comes when the leader is done."""
        change = MemberChange(request, kind, peer_id, address, voter, key)
        self._asked[request] = _Asked(change, self._replica.now + timeout)
        self._retry_asked(self._replica.now)

    def _retry_asked(self, now: float) -> None:
        replica = self._replica
        election = replica.config.tick_interval * replica.config.election_tick
        for request, asked in list(self._asked.items()):
            if asked.made:
                if self._applied_here(asked.change):
                    del self._asked[request]
                    replica.complete_member_change(request, None)
                    continue
            if now >= asked.deadline:
                del self._asked[request]
                replica.complete_member_change(
                    request, f"{asked.change.kind} {asked.change.peer_id!r}: no answer from the leader in time"
                )
                continue
            lead = replica.lead
            if lead is None or asked.made:
                continue
            if asked.sent_to == lead and now - asked.sent_at < election:
                continue
            asked.sent_to, asked.sent_at = lead, now
            if lead == self.key:
                self._on_member_change(self.key, asked.change)
            else:
                replica.send(lead, asked.change)

    def _on_member_change(self, origin: str, change: MemberChange) -> None:
        replica = self._replica
        if not replica.is_leader:
            replica.send(origin, MemberChangeResult(change.request, "not the leader", done=False))
            return
        job_key = (origin, change.request)
        if job_key in self._jobs:
            return
        election = replica.config.tick_interval * replica.config.election_tick
        key = change.key
        if change.kind == "remove" and not key:
            key = next((k for k in replica.node.status().log_conf_state.members() if user_id(k) == change.peer_id), "")
        self._jobs[job_key] = _Job(
            origin, change.request, change.kind, change.peer_id, change.address, change.voter, key,
            replica.now + max(30.0, 20 * election),
        )
        self._run_jobs(replica.now)

    def _run_jobs(self, now: float) -> None:
        if not self._jobs:
            return
        replica = self._replica
        conf = replica.node.status().log_conf_state
        applied = replica.conf_state()
        invite = now - self._last_invite >= JOIN_INTERVAL
        if invite:
            self._last_invite = now
        for job_key, job in list(self._jobs.items()):
            error: str | None = None
            done = False
            if now >= job.deadline:
                error = f"{job.kind} {job.peer_id!r} did not complete in time"
            elif job.kind == "remove":
                if job.key not in conf.members() and job.key not in applied.members():
                    done = True
                elif job.key in conf.members():
                    self._propose(ConfChange(ConfChangeType.REMOVE, job.key))
            else:
                added = [k for k in applied.members() if user_id(k) == job.peer_id]
                if added:
                    if job.voter:
                        self._wants_vote.add(added[0])
                    done = not job.voter or added[0] in applied.voters
                elif invite and is_address(job.address):
                    replica.send(job.address, self.cluster_info())
            if done or error is not None:
                del self._jobs[job_key]
                if job.origin == self.key:
                    replica.complete_member_change(job.request, error)
                else:
                    replica.send(job.origin, MemberChangeResult(job.request, error or ""))

    def _on_member_change_result(self, result: MemberChangeResult) -> None:
        asked = self._asked.get(result.request)
        if asked is None:
            return
        if not result.done:
            asked.sent_to = None  # not the leader any more: ask the next one
            return
        if result.error:
            del self._asked[result.request]
            self._replica.complete_member_change(result.request, result.error)
            return
        asked.made = True  # answered once applied here too, so that the caller reads its own change
        self._retry_asked(self._replica.now)

    def _applied_here(self, change: MemberChange) -> bool:
        conf = self._replica.conf_state()
        if change.kind == "remove":
            return change.key not in conf.members()
        keys = [key for key in conf.members() if user_id(key) == change.peer_id]
        return bool(keys) and (not change.voter or keys[0] in conf.voters)

    # --- the members, as this replica sees them -----------------------------------------------------------------

    def members(self) -> list[MemberInfo]:
        """Every member with what this replica knows of it."""
        replica = self._replica
        now = replica.now
        lead = replica.lead
        views = {v.key: v for v in self._views(now)} if replica.is_leader else {}
        fresh = self._status if self._status is not None and now - self._status_at <= 3 * PRESENCE_INTERVAL else None
        out = []
        conf = replica.conf_state()  # as applied: what the log has settled (and where each member is)
        for key in conf.members():
            reachable: bool | None
            lag: int | None
            if key in views:
                reachable, lag = views[key].reachable, views[key].lag
            elif fresh is not None:
                reachable, lag = key in fresh.reachable, fresh.lag.get(key)
            elif key == self.key:
                reachable, lag = True, None
            else:
                reachable, lag = None, None
            out.append(
                MemberInfo(key, user_id(key), replica.address_of(key), key in conf.voters, key == lead, reachable, lag)
            )
        return out

    def stats(self) -> dict[str, Any]:
        """Membership figures for stats()."""
        return {
            "member_key": self.key,
            "membership_phase": self.phase.value,
            "removed": self.removed_reason,
            "cluster_uuid": self._replica.cluster_uuid or self.record.cluster_uuid,
            "cluster_version": self._replica.cluster_version,
        }

    def has_work(self) -> bool:
        """Whether the driver should run a ready/advance round for membership's sake (a record to persist, founding
        messages to release, a decision to act on, a membership Raft has adopted)."""
        founding = self.founding
        if self._record_dirty or (founding is not None and (founding.has_record() or founding.has_messages())):
            return True
        if self.phase is Phase.FOUNDING and founding is not None and founding.decided is not None:
            return True
        if self.phase in (Phase.JOINING, Phase.FOUNDING):
            status = self._replica.node.status()
            return bool(status.conf_state.members() or status.log_conf_state.members())
        return False


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)
