"""A stand-in for the replica, for tests of the leader's membership duties (tests/test_membership_*.py): a leader
whose log holds LEADER (a voter) and W1 (a learner, at sim://w1), or the ``learners`` given, all caught up."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from embedzk.consensus.types import ConfChange, ConfState
from embedzk.membership.versions import PROTOCOL_MAX

LEADER = "s0@aaaaaaaaaaaa"
W1 = "w1@bbbbbbbbbbbb"


@dataclass
class ReplicaStandIn:
    """What Membership asks of a replica. ``id`` other than LEADER: a follower of LEADER."""

    id: str = LEADER
    now: float = 100.0
    term: int = 3
    cluster_version: int = PROTOCOL_MAX
    cluster_uuid: str = "a-cluster"
    applied: int = 10
    removed_keys: set[str] = field(default_factory=set)
    sent: list[tuple[str, Any]] = field(default_factory=list)
    proposed: list[ConfChange] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=lambda: {LEADER: "sim://s0", W1: "sim://w1"})
    config: Any = field(default_factory=lambda: SimpleNamespace(tick_interval=0.01, election_tick=10))
    learners: tuple[str, ...] = (W1,)

    @property
    def is_leader(self) -> bool:
        return self.id == LEADER

    @property
    def lead(self) -> str:
        return LEADER

    @property
    def node(self) -> ReplicaStandIn:
        return self

    @property
    def raft(self) -> Any:
        return SimpleNamespace(pending_conf_index=0)

    def status(self) -> Any:
        conf = ConfState(voters=(LEADER,), learners=self.learners)
        progress = {key: SimpleNamespace(match=10) for key in conf.members()}
        return SimpleNamespace(conf_state=conf, log_conf_state=conf, progress=progress, commit=10)

    def conf_state(self) -> ConfState:
        return self.status().conf_state

    def propose_conf_change(self, change: ConfChange) -> None:
        self.proposed.append(change)

    def propose_cluster_version(self, version: int) -> bool:
        return False

    def send(self, to: str, msg: Any) -> None:
        self.sent.append((to, msg))

    def address_of(self, key: str) -> str:
        return self.addresses[key]

    def is_member(self, key: str) -> bool:
        return key in self.status().log_conf_state.members()
