"""Membership churn in the simulator: the faults of a fleet whose workers come, go and die, and what must hold once
it is healed.

Faults (chosen by the simulation's seeded RNG, like every other):

* **wipe**: a node's machine dies and comes back on a fresh disk, at the same address (a pod restarted on an empty
  volume): it is a new member, under a new key; the old key is never heard again (its node is retired);
* **join**: a new worker (a new slot, a new address, a fresh disk) joins through the members it can reach;
* **leave**: a worker stops with ``leave``: it hands its seat over (a leader hands leadership over first) and is
  retired once the leader has removed it;
* **die**: a worker is gone for good; the autopilot must remove it after ``member_timeout`` (replacing it if it
  voted);
* **move**: a worker's machine restarts with its disk at a new address (a pod's new IP): the cluster must find it
  there and record the new address.

No fault retires a voter when that would leave fewer than a majority of the voters healthy (running and heard by
the leader): a cluster that lost a majority of its voters for good cannot recover by itself, and that is not what is
tested here.

Checked once healed (:meth:`Churn.check`): the voters are back to the target (or to every live member, if there are
fewer), every voter is alive, no retired key is still a member, every live member's recorded address is where it
listens, and no session of a process that is gone is still open.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from embedzk.membership.autopilot import next_change
from embedzk.membership.identity import member_key, new_tag
from embedzk.membership.messages import LeaveRequest
from embedzk.replica.membership import Phase
from embedzk.testing.simdisk import SimDisk

if TYPE_CHECKING:
    from embedzk.testing.simulator import SimNode, Simulation

__all__ = ["Churn"]

#: At most this many workers alive at once (joins stop there).
MAX_WORKERS = 7


class Churn:
    """The churn faults and checks of one simulation."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self._slots = 0
        self._moves = 0
        # Nodes whose disk was wiped, by slot, until their slot runs again.
        self._wiped: dict[str, SimNode] = {}
        # Nodes leaving: as good as gone when counting who is left.
        self._leaving: set[str] = set()

    # --- faults ------------------------------------------------------------------------------------------------

    def fault(self) -> None:
        """One churn fault, chosen at random."""
        kind = self.sim.rng.choice(("wipe", "wipe", "join", "join", "leave", "die", "move"))
        getattr(self, f"_{kind}")()

    def _live(self) -> list[SimNode]:
        return [n for n in self.sim.nodes.values() if not n.retired]

    def may_retire(self, key: str) -> bool:
        """Whether ``key`` may go for good and leave a majority of the voters alive in every configuration that
        may be in force: the leader's newest (in its log) and its committed one (the others may not have the
        newest yet)."""
        leader_id = self.sim._current_leader()
        if leader_id is None:
            return False
        leader = self.sim.nodes[leader_id].replica
        assert leader is not None
        status = leader.node.status()
        nodes = self.sim.nodes
        # One failure at a time: nothing goes while the membership is changing (a change in flight, one the
        # autopilot is about to make, a member that has not caught up with the newest configuration), since a
        # configuration that is about to be in force may need the very node that would go.
        membership = leader.membership
        if self._leaving or leader.node.raft.pending_conf_index > leader.applied:
            return False
        if next_change(leader.id, membership._views(leader.now), membership._policy()) is not None:
            return False
        for other in nodes.values():
            if other.replica is not None and other.replica.phase is Phase.MEMBER:
                if other.replica.node.status().log_conf_state != status.log_conf_state:
                    return False
        # Healthy: running, not leaving, and heard by the leader lately. A voter cut off for long is on its way
        # out of the membership (the autopilot removes it), so it does not count either: two failures at once
        # (one cut off, one gone) may cost a cluster its quorum for good, and that is not what is tested here.
        reachable = {view.key for view in leader.membership._views(leader.now) if view.reachable}
        for conf in (status.log_conf_state, status.conf_state):
            voters = conf.voters
            if key not in voters:
                continue
            healthy = [
                v for v in voters
                if v != key and v in nodes and nodes[v].up and not nodes[v].retired and v not in self._leaving
                and v in reachable
            ]
            if len(healthy) < len(voters) // 2 + 1:
                return False
        return True

    def _may_retire(self, node: SimNode) -> bool:
        return self.may_retire(node.id)

    def _retire(self, node: SimNode, why: str) -> None:
        node.retired = True
        if node.up:
            node.crash()
        self.sim._abandon_calls(node.id)
        self.sim.log_fault(f"{node.id} {why}")

    def _wipe(self) -> None:
        candidates = [n for n in self._live() if self._may_retire(n)]
        if not candidates:
            return
        old = self.sim.rng.choice(candidates)
        self._retire(old, "loses its disk")
        self._wiped[old.slot] = old
        downtime = self.sim.rng.uniform(0.05, 0.6)
        self.sim.at(self.sim.now + downtime, functools.partial(self._reborn, old))

    def _reborn(self, old: SimNode) -> None:
        """``old``'s slot runs again on a fresh disk: a new member."""
        if self._wiped.pop(old.slot, None) is None:
            return  # started already (healing came first)
        node = self._spawn(old.slot)
        node.address = old.address
        node.start()
        self.sim.log_fault(f"{old.slot} back on a fresh disk as {node.id}")

    def _spawn(self, slot: str) -> SimNode:
        from embedzk.testing.simulator import SimNode

        sim = self.sim
        key = member_key(slot, new_tag(sim.rng))
        node = SimNode(sim, key, SimDisk(), slot)
        sim.nodes[key] = node
        sim._schedule_ticks(node, sim.config.duration + sim.config.settle + 3.0)
        return node

    def _join(self) -> None:
        if len(self._live()) >= MAX_WORKERS:
            return
        self._slots += 1
        node = self._spawn(f"w{self._slots}")
        node.start()
        self.sim.log_fault(f"{node.id} joins")

    def _leave(self) -> None:
        sim = self.sim
        candidates = [n for n in self._live() if n.up and n.id not in self._leaving and self._may_retire(n)]
        if not candidates:
            return
        node = sim.rng.choice(candidates)
        replica = node.replica
        assert replica is not None
        sim.log_fault(f"{node.id} leaves")
        self._leaving.add(node.id)
        if replica.is_leader:
            voters = [v for v in replica.node.status().log_conf_state.voters if v != node.id]
            if voters:
                replica.transfer_leadership(sim.rng.choice(voters))
        replica.membership.leaving = True
        if replica.lead is not None and replica.lead != node.id:
            replica.send(replica.lead, LeaveRequest(node.id))  # as Peer.stop(leave=True) asks
        node.pump()
        self._await_removal(node, sim.now + 2.0)

    def _await_removal(self, node: SimNode, deadline: float) -> None:
        sim = self.sim
        if node.retired:
            return
        replica = node.replica
        leader_id = sim._current_leader()
        removed = replica is not None and replica.membership.phase is Phase.REMOVED
        if leader_id is not None:
            leader = sim.nodes[leader_id].replica
            removed = removed or (leader is not None and node.id not in leader.node.status().log_conf_state.members())
        if removed:
            self._leaving.discard(node.id)
            self._retire(node, "has left")
            return
        if replica is not None and replica.is_leader:
            # Still leading (the transfer was lost): hand over again, as Peer.stop(leave=True) does.
            voters = [v for v in replica.node.status().log_conf_state.voters if v != node.id]
            if voters:
                replica.transfer_leadership(sim.rng.choice(voters))
                node.pump()
        if sim.now < deadline:
            sim.at(sim.now + 0.05, functools.partial(self._await_removal, node, deadline))
        else:
            self._leaving.discard(node.id)
            if replica is not None:
                replica.membership.leaving = False  # gave up; it stays a member

    def _die(self) -> None:
        candidates = [n for n in self._live() if self._may_retire(n)]
        if candidates:
            self._retire(self.sim.rng.choice(candidates), "dies for good")

    def _move(self) -> None:
        sim = self.sim
        # Only a member moves: a founder is named by its address in every founder's list, and a seed that moved
        # before the cluster was founded is a configuration that cannot found (a seed is a stable name).
        candidates = [n for n in self._live() if n.replica is not None and n.replica.phase is Phase.MEMBER]
        if not candidates:
            return
        node = sim.rng.choice(candidates)
        node.crash()
        sim._abandon_calls(node.id)
        self._moves += 1
        if sim.bound.get(node.address) == node.id:
            del sim.bound[node.address]
        node.address = f"sim://{node.slot}-moved{self._moves}"
        sim.log_fault(f"{node.id} moves to {node.address}")
        sim.at(sim.now + sim.rng.uniform(0.05, 0.5), functools.partial(sim._restart, node))

    def heal(self) -> None:
        """Healing: every slot whose disk was wiped runs again, and nobody is leaving any more."""
        for old in list(self._wiped.values()):
            self._reborn(old)
        for node in self.sim.nodes.values():
            if node.replica is not None:
                node.replica.membership.leaving = False
        self._leaving.clear()

    # --- checks ------------------------------------------------------------------------------------------------

    def check(self) -> None:
        """What must hold once the cluster is healed and settled (see the module docstring)."""
        sim = self.sim
        leader_id = sim._current_leader()
        if leader_id is None:
            sim.fail("no leader after the cluster was healed and settled")
        leader = sim.nodes[leader_id].replica
        assert leader is not None
        conf = leader.conf_state()
        live = {n.id for n in sim.nodes.values() if n.up and not n.retired}
        gone = [key for key in conf.members() if key not in live]
        if gone:
            sim.fail(f"members gone for good are still in the membership after healing: {gone}")
        if sim.config.churn:
            live_members = [key for key in conf.members() if key in live]
            want = min(sim.config.voters, len(live_members))
            if len(conf.voters) != want:
                sim.fail(
                    f"the voters are not back to the target after healing: {len(conf.voters)} voters "
                    f"{list(conf.voters)}, target {sim.config.voters}, {len(live_members)} live members"
                )
        for key in conf.members():
            node = sim.nodes[key]
            recorded = leader.addresses.get(key)
            if recorded is not None and recorded != node.address:
                sim.fail(f"{key} listens at {node.address}, but the membership records {recorded}")
        for session_id, (owner, _timeout) in leader.tree.sessions().items():
            holder = sim.nodes.get(owner)
            if holder is None or holder.retired or not holder.up:
                sim.fail(f"session {session_id:#x} of {owner}, a process that is gone, is still open after healing")
