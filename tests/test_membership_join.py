"""The leader's side of a join, with a stand-in for the replica: which joins replace a member, and when."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from embedzk.consensus.types import ConfChange, ConfChangeType, ConfState
from embedzk.membership.identity import MemberRecord
from embedzk.membership.messages import JoinChallenge, JoinProof, JoinRefused, JoinRequest
from embedzk.membership.versions import JOIN_PROOF
from embedzk.replica.membership import Membership, MembershipConfig, Phase

LEADER = "s0@aaaaaaaaaaaa"
OLD = "w1@bbbbbbbbbbbb"  # the member the worker w1 is now, at sim://w1
GONE = "w1@cccccccccccc"  # an earlier (or later) process of w1, on another disk


@dataclass
class _Replica:
    """What Membership asks of a replica, for a leader whose log holds LEADER and OLD."""

    id: str = LEADER
    now: float = 100.0
    term: int = 3
    cluster_version: int = JOIN_PROOF
    removed_keys: set[str] = field(default_factory=set)
    sent: list[tuple[str, Any]] = field(default_factory=list)
    proposed: list[ConfChange] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=lambda: {LEADER: "sim://s0", OLD: "sim://w1"})
    config: Any = field(default_factory=lambda: SimpleNamespace(tick_interval=0.01, election_tick=10))

    is_leader = True

    @property
    def lead(self) -> str:
        return self.id

    @property
    def node(self) -> _Replica:
        return self

    def status(self) -> Any:
        conf = ConfState(voters=(LEADER,), learners=(OLD,))
        return SimpleNamespace(conf_state=conf, log_conf_state=conf)

    def propose_conf_change(self, change: ConfChange) -> None:
        self.proposed.append(change)

    def send(self, to: str, msg: Any) -> None:
        self.sent.append((to, msg))

    def address_of(self, key: str) -> str:
        return self.addresses[key]


def _leader() -> tuple[Membership, _Replica]:
    replica = _Replica()
    membership = Membership(replica, MembershipConfig(address="sim://s0"), MemberRecord(LEADER), random.Random(7))  # type: ignore[arg-type]
    assert membership.phase is Phase.MEMBER
    membership.became_leader()
    return membership, replica


def _join(key: str, address: str = "sim://w1", max_version: int = JOIN_PROOF) -> JoinRequest:
    return JoinRequest(key, address, 2, max_version)


def test_a_join_under_a_members_id_at_its_address_replaces_it_only_once_the_joiner_answers_a_challenge() -> None:
    membership, replica = _leader()
    membership.receive(GONE, _join(GONE))
    assert replica.proposed == []  # not on the request alone
    [(to, challenge)] = replica.sent
    assert to == "sim://w1" and isinstance(challenge, JoinChallenge) and challenge.key == GONE
    assert challenge.reply_to == "sim://s0"
    membership.receive(GONE, JoinProof(GONE, challenge.nonce + 1))  # a wrong nonce proves nothing
    assert replica.proposed == []
    membership.receive(OLD, JoinProof(GONE, challenge.nonce))  # nor a proof sent by another member
    assert replica.proposed == []
    membership.receive(GONE, JoinProof(GONE, challenge.nonce))
    assert replica.proposed == [ConfChange(ConfChangeType.REMOVE, OLD)]


def test_a_stale_join_of_a_process_gone_since_never_removes_the_live_member_at_its_address() -> None:
    # Churn seed 8605: a join request of an earlier process of w1, held back by a partition, reached the leader
    # after w1 had come back on a fresh disk at the same address, and the leader removed the live member.
    membership, replica = _leader()
    for _ in range(5):
        membership.receive(GONE, _join(GONE))  # replayed, again and again: nobody answers for GONE
        replica.now += 0.02
    assert replica.proposed == []
    nonces = {msg.nonce for _to, msg in replica.sent if isinstance(msg, JoinChallenge)}
    assert len(nonces) == 1  # one challenge open at a time, sent again with each request
    # The member at that address is another process: it does not answer a challenge for another key.
    member = Membership(_Replica(id=OLD), MembershipConfig(address="sim://w1"), MemberRecord(OLD), random.Random(1))  # type: ignore[arg-type]
    outbox: list[tuple[str, Any]] = member._replica.sent  # type: ignore[attr-defined]
    member.receive(LEADER, JoinChallenge(GONE, nonces.pop(), "sim://s0"))
    assert outbox == []


def test_a_proof_counts_for_the_reach_window_only() -> None:
    membership, replica = _leader()
    membership.receive(GONE, _join(GONE))
    challenge = replica.sent[-1][1]
    replica.now += 2 * membership.reach_window  # the answer comes too late: the challenge is closed
    membership.receive(GONE, JoinProof(GONE, challenge.nonce))
    assert replica.proposed == []


def test_a_joiner_answers_a_challenge_for_its_own_key_at_the_address_given() -> None:
    joiner = _Replica(id=GONE)
    membership = Membership(joiner, MembershipConfig(address="sim://w1", contacts=("sim://s0",)), MemberRecord(GONE), random.Random(1))  # type: ignore[arg-type]
    joiner.status = lambda: SimpleNamespace(conf_state=ConfState(), log_conf_state=ConfState())  # type: ignore[method-assign]
    membership.phase = Phase.JOINING
    membership.receive(LEADER, JoinChallenge(GONE, 42, "sim://s0"))
    assert joiner.sent == [("sim://s0", JoinProof(GONE, 42))]


def test_a_joiner_of_an_older_release_is_not_challenged() -> None:
    membership, replica = _leader()
    replica.cluster_version = JOIN_PROOF - 1  # a cluster in a rolling upgrade
    membership.receive(GONE, _join(GONE, max_version=JOIN_PROOF - 1))
    assert replica.proposed == [ConfChange(ConfChangeType.REMOVE, OLD)]


def test_a_live_member_at_another_address_is_not_replaced() -> None:
    membership, replica = _leader()
    membership.heard(OLD, replica.now)
    membership.receive(GONE, _join(GONE, address="sim://elsewhere"))
    assert replica.proposed == []
    [(to, refusal)] = replica.sent
    assert to == "sim://elsewhere" and isinstance(refusal, JoinRefused) and "in use by a live member" in refusal.reason
