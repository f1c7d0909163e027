"""Seeded random runs of whole Raft clusters under faults, checked for safety as they go.

Every run mixes ticks, proposals, reads, membership changes, snapshots with compaction, message loss, duplication
and reordering, partitions and crashes (at any point of a Ready: before persisting, after persisting but before
sending, after sending), then heals everything and checks the cluster converges. Checked throughout:

* election safety: at most one leader per term;
* state machine safety: every replica applies the same entry at an index;
* leader completeness: a new leader's log holds every entry any replica applied;
* read-index: a ReadState's index covers every entry applied anywhere before the read was asked for;
* the commit rule: a leader advances its commit index by counting replicas only to an entry of its own term;
* one vote per term, and durable: a node never grants two candidates its vote in one term, and restarts still
  holding the vote it sent.

``python -m tests.test_raft_random START COUNT [STEPS]``, from the repository's root, runs more seeds.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from typing import Literal

import pytest

from embedzk.consensus import (
    ConfState,
    Message,
    MessageType,
    ProposalDroppedError,
    Ready,
    StateRole,
)
from tests.raft_harness import CrashPoint, Driver, Network, Observer, SafetyError, conf_change

ALL = ["a", "b", "c", "d", "e"]


class RandomRun(Observer):
    """One seeded run: the harness's Network and Drivers, driven at random, with a pool of messages in flight
    instead of the Network's queue."""

    def __init__(self, seed: int, steps: int = 1500) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.steps = steps
        voters = ALL[: self.rng.choice([1, 3, 3, 5])]
        heartbeat_tick = self.rng.choice([1, 1, 3])
        max_inflight_msgs = self.rng.choice([1, 4, 256])
        # Without either, nodes removed while cut off disrupt the cluster at will (thesis 4.2.3): safe, but
        # convergence is not guaranteed, so every run keeps at least one.
        pre_vote, check_quorum = self.rng.choice([(True, True), (True, True), (False, True), (True, False)])
        self.net = Network(
            voters,
            seed=seed,
            election_tick=10,
            heartbeat_tick=heartbeat_tick,
            max_size_per_msg=64,
            max_inflight_msgs=max_inflight_msgs,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
        )
        for id in ALL:
            if id not in self.net.drivers:
                self.net.add_node(id, ConfState())
        self.net.observer = self
        self.pool: list[Message] = []
        self.down: set[str] = set()
        self.proposed = 0
        self.read_floor: dict[bytes, int] = {}
        self.reads_done = 0
        self.next_read = 0
        # node -> term -> the candidate it voted for (itself for a candidacy), from the messages it sent.
        self.votes: dict[str, dict[int, str]] = {}
        # node -> (term, commit index) when last seen leading.
        self.leader_commit: dict[str, tuple[int, int]] = {}

    # --- checks --------------------------------------------------------------------------------------------------

    def check_leader_completeness(self, id: str) -> None:
        node = self.net[id]
        log = node.raft.log
        for index, (term, _, _) in self.net.history.items():
            if index < log.first_index():
                continue
            if index > log.last_index():
                raise SafetyError(f"seed {self.seed}: new leader {id} lacks applied entry {index}")
            if log.term(index) != term:
                raise SafetyError(f"seed {self.seed}: new leader {id} has term {log.term(index)} at {index}, "
                                  f"applied term {term}")

    def check_reads(self, id: str) -> None:
        d = self.net.driver(id)
        for rs in d.read_states:
            floor = self.read_floor.pop(rs.request_ctx, None)
            if floor is not None and rs.index < floor:
                raise SafetyError(f"seed {self.seed}: read {rs.request_ctx!r} at {rs.index} misses {floor}")
            self.reads_done += 1
        d.read_states.clear()

    def check_votes(self, id: str, msgs: Sequence[Message]) -> None:
        votes = self.votes.setdefault(id, {})
        for m in msgs:
            if m.type == MessageType.VOTE or (m.type == MessageType.VOTE_RESP and not m.reject):
                candidate = id if m.type == MessageType.VOTE else m.to
                if votes.setdefault(m.term, candidate) != candidate:
                    raise SafetyError(f"seed {self.seed}: {id} voted for {votes[m.term]} and {candidate} in {m.term}")

    def check_commit_rule(self, id: str) -> None:
        raft = self.net[id].raft
        if raft.role != StateRole.LEADER:
            self.leader_commit.pop(id, None)
            return
        commit = raft.log.committed
        before = self.leader_commit.get(id)
        if before is not None and before[0] == raft.term and commit > before[1]:
            if raft.log.term(commit) != raft.term:
                raise SafetyError(f"seed {self.seed}: leader {id} of term {raft.term} commits {commit}, an entry "
                                  f"of term {raft.log.term(commit)} (thesis 3.6.2)")
        self.leader_commit[id] = (raft.term, commit)

    # --- the harness's hooks: checks on every Ready --------------------------------------------------------------

    def on_ready(self, driver: Driver, rd: Ready) -> None:
        if rd.soft_state is not None and rd.soft_state.role == StateRole.LEADER:
            self.check_leader_completeness(driver.id)

    def on_send(self, driver: Driver, msgs: Sequence[Message]) -> None:
        self.check_votes(driver.id, msgs)

    def on_advance(self, driver: Driver, rd: Ready) -> None:
        self.check_commit_rule(driver.id)

    # --- one node's loop, with crashes at any point of a Ready ---------------------------------------------------

    def process(self, id: str, crash_at: CrashPoint | None = None) -> None:
        sent, crashed = self.net.driver(id).process_until(crash_at)
        self.pool.extend(sent)
        if crashed:
            self.crash(id)
            return
        self.check_reads(id)

    def crash(self, id: str) -> None:
        self.net.restart(id)
        self.leader_commit.pop(id, None)
        votes = self.votes.get(id)
        if votes:
            term = max(votes)
            hs, _ = self.net.driver(id).storage.initial_state()
            if hs.term < term or (hs.term == term and hs.vote != votes[term]):
                raise SafetyError(f"seed {self.seed}: {id} voted for {votes[term]} in {term} but restarts with "
                                  f"term {hs.term}, vote {hs.vote}")
        self.pool = [m for m in self.pool if m.to != id]
        self.read_floor = {k: v for k, v in self.read_floor.items() if not k.startswith(id.encode())}

    # --- actions -------------------------------------------------------------------------------------------------

    def deliver_some(self) -> None:
        if not self.pool:
            return
        k = self.rng.randrange(len(self.pool)) if self.rng.random() < 0.3 else 0
        m = self.pool[k]
        r = self.rng.random()
        if r < 0.05:
            self.pool.pop(k)  # lost
            return
        if r > 0.95:
            pass  # duplicated: stays in the pool
        else:
            self.pool.pop(k)
        if m.to in self.down or (m.frm, m.to) in self.net.cut:
            return
        self.net[m.to].step(m)
        self.process(m.to)

    def step(self) -> None:
        rng = self.rng
        r = rng.random()
        live = [i for i in ALL if i not in self.down]
        if r < 0.45:
            for _ in range(rng.randrange(1, 8)):
                self.deliver_some()
        elif r < 0.65:
            id = rng.choice(live)
            self.net[id].tick()
            self.process(id)
        elif r < 0.78:
            id = rng.choice(live)
            self.proposed += 1
            try:
                self.net[id].propose(f"{self.seed}:{self.proposed}".encode())
            except ProposalDroppedError:
                pass
            self.process(id)
        elif r < 0.82:
            id = rng.choice(live)
            ctx = f"{id}:{self.next_read}".encode()
            self.next_read += 1
            try:
                self.net[id].read_index(ctx)
                self.read_floor[ctx] = max(self.net.history, default=0)
            except ProposalDroppedError:
                pass
            self.process(id)
        elif r < 0.85:
            leader = self.net.leader()
            if leader is not None and leader not in self.down:
                kind = rng.choice(["add", "learner", "remove", "promote", "remove"])
                target = rng.choice(ALL)
                try:
                    self.net[leader].propose_conf_change(conf_change(kind, target))
                except ProposalDroppedError:
                    pass
                self.process(leader)
        elif r < 0.87:
            id = rng.choice(live)
            d = self.net.driver(id)
            if d.applied_index > d.storage.snapshot_meta().index:
                keep = rng.choice([0, 0, 5])
                d.take_snapshot(compact=False)
                if d.applied_index - keep > d.storage.first_index() - 1:
                    d.storage.compact(d.applied_index - keep)
        elif r < 0.89:
            # Crash, at a random point of the next Ready.
            id = rng.choice(live)
            points: list[CrashPoint | Literal["now"]] = ["before-persist", "before-send", "before-apply", "now"]
            crash_at = rng.choice(points)
            if crash_at == "now":
                self.crash(id)
            else:
                self.net[id].tick()
                self.process(id, crash_at=crash_at)
        elif r < 0.91:
            if self.net.cut:
                self.net.heal()
            else:
                ids = ALL[:]
                rng.shuffle(ids)
                k = rng.randrange(1, 3)
                self.net.partition(ids[:k], ids[k:])
        elif r < 0.92:
            id = rng.choice(live)
            if self.net[id].role == StateRole.LEADER:
                target = rng.choice(ALL)
                self.net[id].transfer_leadership(target)
                self.process(id)
        else:
            for _ in range(rng.randrange(1, 20)):
                self.deliver_some()

    def converge(self) -> None:
        self.net.heal()
        members = set()
        for _ in range(3000):
            for id in ALL:
                self.net[id].tick()
                self.process(id)
            while self.pool:
                m = self.pool.pop(0)
                self.net[m.to].step(m)
                self.process(m.to)
            leader = self.net.leader()
            if leader is None:
                continue
            cs = self.net[leader].raft.trk.conf_state()
            members = set(cs.members())
            idx = self.net.driver(leader).applied_index
            caught_up = all(self.net.driver(i).applied_index == idx for i in members)
            if caught_up and idx == self.net[leader].raft.log.last_index():
                break
        else:
            raise AssertionError(f"seed {self.seed}: no convergence; leader={self.net.leader()}")
        # A write still commits.
        leader = self.net.leader()
        assert leader is not None
        before = len(self.net.driver(leader).applied)
        for _ in range(100):
            try:
                self.net[leader].propose(b"final")
                break
            except ProposalDroppedError:  # a leadership transfer still running
                for id in ALL:
                    self.net[id].tick()
                    self.process(id)
                leader = self.net.leader()
                assert leader is not None
                before = len(self.net.driver(leader).applied)
        for _ in range(200):
            for id in ALL:
                self.process(id)
            while self.pool:
                m = self.pool.pop(0)
                self.net[m.to].step(m)
                self.process(m.to)
            if all(self.net.driver(i).applied[-1:] == [b"final"] for i in members):
                break
            for id in ALL:
                self.net[id].tick()
        else:
            raise AssertionError(f"seed {self.seed}: final write not applied everywhere")
        assert len(self.net.driver(leader).applied) == before + 1

    def run(self) -> None:
        for _ in range(self.steps):
            self.step()
        self.converge()


def run_seed(seed: int, steps: int = 1500) -> RandomRun:
    run = RandomRun(seed, steps)
    run.run()
    return run


@pytest.mark.parametrize("seed", range(40))
def test_random_run(seed: int) -> None:
    run_seed(seed)


if __name__ == "__main__":  # pragma: no cover
    start = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    for s in range(start, start + count):
        try:
            run_seed(s, steps)
        except Exception as exc:  # noqa: BLE001
            print(f"seed {s}: {type(exc).__name__}: {exc}")
            raise
    print("ok")
