"""A founder back on a fresh disk, with the members of the live cluster elsewhere: it must join, never found."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from embedzk.consensus.types import ConfState
from embedzk.membership.identity import Ballot, MemberRecord
from embedzk.membership.messages import ClusterInfo, FoundPrepare, JoinRequest, Presence
from embedzk.replica.membership import Membership, MembershipConfig, Phase
from tests.membership_standin import ReplicaStandIn

FOUNDERS = ("sim://n0", "sim://n1", "sim://n2")
FRESH = "n2@999999999999"  # n2's slot on a fresh disk
OTHER_FRESH = "n0@888888888888"  # n0's slot on a fresh disk too
MEMBER = "m1@777777777777"  # a member of the live cluster, at no founder address


class _FreshDisk(ReplicaStandIn):
    """A replica with nothing on its disk: no membership in its log."""

    def status(self) -> Any:
        return SimpleNamespace(conf_state=ConfState(), log_conf_state=ConfState(), progress={}, commit=0)


def _fresh_founder() -> tuple[Membership, _FreshDisk]:
    replica = _FreshDisk(id=FRESH, term=0, cluster_uuid="")
    config = MembershipConfig(address="sim://n2", founders=FOUNDERS, contacts=FOUNDERS)
    membership = Membership(replica, config, MemberRecord(FRESH), random.Random(3))  # type: ignore[arg-type]
    assert membership.phase is Phase.FOUNDING
    return membership, replica


def _prepare() -> FoundPrepare:
    return FoundPrepare(Ballot(1, OTHER_FRESH), FOUNDERS, "sim://n0")


def test_a_fresh_founder_that_hears_a_member_announce_itself_joins_and_takes_no_part_in_a_founding() -> None:
    # Crash-heavy seed 44319: nobody of the live cluster listened at a founder address and its leader was cut off,
    # so no answer and no beacon reached the founders back on fresh disks; a member that knew no leader announced
    # itself to the founder addresses, and they went on to found a second cluster beside the live one.
    membership, replica = _fresh_founder()
    membership.receive(MEMBER, Presence("sim://m1", 1, 6))
    assert membership.phase is Phase.JOINING
    membership.receive(OTHER_FRESH, _prepare())
    answers = [msg for to, msg in replica.sent if to == "sim://n0"]
    assert answers and all(isinstance(msg, ClusterInfo) for msg in answers)  # what it learnt, never a promise
    assert answers[-1].members == {MEMBER: "sim://m1"}
    replica.sent.clear()
    membership.tick()
    assert ("sim://m1", JoinRequest(FRESH, "sim://n2", membership.config.min_version, membership.config.max_version)) in replica.sent


def test_a_fresh_founder_that_hears_only_other_founders_goes_on_founding() -> None:
    # The other side of the rule: founders started together on fresh disks hear each other, not a cluster.
    membership, replica = _fresh_founder()
    for _ in range(3):
        membership.receive(OTHER_FRESH, _prepare())
        membership.tick()
        membership.after_step()
    assert membership.phase is Phase.FOUNDING
    assert not any(isinstance(msg, (ClusterInfo, JoinRequest)) for _to, msg in replica.sent)
