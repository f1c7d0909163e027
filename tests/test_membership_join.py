"""The leader's side of a join, with a stand-in for the replica: which joins replace a member, and when."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from embedzk.consensus.types import ConfChange, ConfChangeType, ConfState
from embedzk.membership.identity import MemberRecord
from embedzk.membership.messages import JoinChallenge, JoinProof, JoinRefused, JoinRequest
from embedzk.membership.versions import JOIN_PROOF
from embedzk.replica.membership import Membership, MembershipConfig, Phase
from tests.membership_standin import LEADER, W1, ReplicaStandIn

OLD = W1  # the member the worker w1 is now, at sim://w1
GONE = "w1@cccccccccccc"  # an earlier (or later) process of w1, on another disk


def _leader() -> tuple[Membership, ReplicaStandIn]:
    replica = ReplicaStandIn(cluster_version=JOIN_PROOF)
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
    member = Membership(ReplicaStandIn(id=OLD), MembershipConfig(address="sim://w1"), MemberRecord(OLD), random.Random(1))  # type: ignore[arg-type]
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
    joiner = ReplicaStandIn(id=GONE)
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
