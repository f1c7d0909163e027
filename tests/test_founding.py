"""Founding a cluster (single-decree Paxos among the founders): one decision, whatever the network and crashes do.

A small seeded world: founders exchange messages through a lossy, reordering, duplicating network; founders crash
and restart from the record they persisted (or, in the disk-loss runs, come back on a fresh disk with a new key).
Checked: no two founders ever learn different values; once the faults stop and a majority runs, everyone decides;
the decided voters are a majority of the founders, each a key that promised.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from embedzk.codec import decode, encode
from embedzk.membership.founding import Founding, majority
from embedzk.membership.identity import FoundingValue, MemberRecord
from embedzk.membership.messages import FoundPrepare, FoundRefused


class _Founder:
    def __init__(self, world: _World, address: str, generation: int = 0) -> None:
        self.world = world
        self.address = address
        self.generation = generation
        self.disk = MemberRecord(key=f"{address}@{generation:012x}")
        self.node: Founding | None = None
        self.start()

    def start(self) -> None:
        self.node = Founding(self.disk.key, self.address, self.world.founders, self.disk, self.world.rng, 5)

    def crash(self) -> None:
        self.node = None

    def wipe(self) -> None:
        self.generation += 1
        self.disk = MemberRecord(key=f"{self.address}@{self.generation:012x}")

    def pump(self) -> None:
        node = self.node
        if node is None:
            return
        taken = node.take_record()
        if taken is not None:
            seq, record = taken
            self.disk = decode(encode(record), expect=MemberRecord)  # persisted, as the codec would store it
            node.persisted(seq)
        for to, msg in node.take_messages():
            self.world.send(to, msg)
        if node.decided is not None:
            self.world.learned(self.address, node.decided)


class _World:
    def __init__(self, seed: int, n: int, wipes: bool = False) -> None:
        self.rng = random.Random(seed)
        self.founders = tuple(f"tcp://10.0.0.{i}:7000" for i in range(n))
        self.wipes = wipes
        self.in_flight: list[tuple[float, int, str, bytes]] = []
        self.now = 0.0
        self.seq = 0
        self.decisions: dict[str, FoundingValue] = {}
        self.nodes = {address: _Founder(self, address) for address in self.founders}
        self.faults = True
        self.loss = self.rng.choice((0.0, 0.1, 0.3))
        self.crash_rate = self.rng.choice((0.01, 0.05, 0.1))

    def send(self, to: str, msg: Any) -> None:
        if self.faults and self.rng.random() < self.loss:
            return  # lost
        copies = 2 if self.faults and self.rng.random() < 0.05 else 1
        for _ in range(copies):
            self.seq += 1
            delay = self.rng.uniform(0.1, 8.0) if self.faults else 0.5
            self.in_flight.append((self.now + delay, self.seq, to, encode(msg)))

    def learned(self, address: str, value: FoundingValue) -> None:
        for other, known in self.decisions.items():
            assert known == value, f"{address} decided {value}, {other} decided {known}"
        self.decisions[address] = value

    def step(self) -> None:
        self.now += 1.0
        due = sorted(m for m in self.in_flight if m[0] <= self.now)
        self.in_flight = [m for m in self.in_flight if m[0] > self.now]
        for _when, _seq, to, data in due:
            node = self.nodes[to]
            if node.node is not None:
                node.node.receive(decode(data))
                node.pump()
        for node in self.nodes.values():
            if self.faults and self.rng.random() < self.crash_rate:
                if node.node is not None:
                    node.crash()
                else:
                    if self.wipes and self.rng.random() < 0.3:
                        node.wipe()
                    node.start()
            if node.node is not None:
                node.node.tick()
                node.pump()


@pytest.mark.parametrize("seed", range(150))
def test_founders_decide_one_cluster_whatever_the_faults(seed: int) -> None:
    world = _World(seed, n=random.Random(seed).choice((1, 2, 3, 3, 5)))
    for _ in range(200):
        world.step()
    world.faults = False
    for node in world.nodes.values():
        if node.node is None:
            node.start()
    for _ in range(300):
        world.step()
        if len(world.decisions) == len(world.founders):
            break
    assert len(world.decisions) == len(world.founders), f"undecided after healing: {world.decisions}"
    value = next(iter(world.decisions.values()))
    addresses = {address for _key, address in value.voters}
    assert len(addresses) == len(value.voters) >= majority(len(world.founders))
    assert addresses <= set(world.founders)


@pytest.mark.parametrize("seed", range(100))
def test_a_founder_back_on_a_fresh_disk_never_splits_a_decision_it_did_not_take_part_in(seed: int) -> None:
    # Disks are lost here, so only what the protocol can promise is checked: the founders that never lost their
    # disk agree with each other.
    world = _World(seed, n=5, wipes=True)
    wiped: set[str] = set()
    original = world.learned

    def learned(address: str, value: FoundingValue) -> None:
        node = world.nodes[address]
        if node.generation:
            wiped.add(address)
            return
        original(address, value)

    world.learned = learned  # type: ignore[method-assign]
    for _ in range(300):
        world.step()


def test_a_founder_given_another_founder_list_refuses_to_take_part() -> None:
    record = MemberRecord(key="a@000000000001")
    a = Founding("a@000000000001", "tcp://a:1", ("tcp://a:1", "tcp://b:1"), record, random.Random(1), 5)
    a.receive(FoundPrepare(__import__("embedzk.membership.identity").membership.identity.Ballot(1, "c@1"),
                           ("tcp://a:1", "tcp://c:1"), "tcp://c:1"))
    (to, msg), = a.take_messages()
    assert to == "tcp://c:1" and isinstance(msg, FoundRefused)
    assert "tcp://b:1" in msg.reason and "tcp://c:1" in msg.reason
    c = Founding("c@1", "tcp://c:1", ("tcp://a:1", "tcp://c:1"), MemberRecord(key="c@1"), random.Random(2), 5)
    c.receive(msg)
    assert c.refusal == msg.reason
    c.tick()
    assert c.take_messages() == []  # it proposes nothing more


def test_a_single_founder_founds_alone_at_its_first_tick() -> None:
    node = Founding("solo@0", "inproc://solo", ("inproc://solo",), MemberRecord(key="solo@0"), random.Random(3), 5)
    for _ in range(5):
        node.tick()
        taken = node.take_record()
        if taken:
            node.persisted(taken[0])
        for to, msg in node.take_messages():
            assert to == "inproc://solo"
            node.receive(msg)
    assert node.decided is not None and node.decided.voter_keys() == ("solo@0",)
    assert node.record.cluster_uuid == node.decided.cluster_uuid


def _settle(node: Founding) -> list[tuple[str, Any]]:
    taken = node.take_record()
    if taken is not None:
        node.persisted(taken[0])
    return node.take_messages()


def test_a_later_proposer_proposes_again_the_value_a_majority_accepted() -> None:
    # a's value is accepted by a and b (so it is decided), but nobody hears of it; c then proposes a round of its
    # own and reaches b first: Paxos says c must propose a's value again, never a new one.
    founders = ("tcp://a:1", "tcp://b:1", "tcp://c:1")
    nodes = {
        address: Founding(f"{address[6]}@1", address, founders, MemberRecord(key=f"{address[6]}@1"),
                          random.Random(i), 50, listen_ticks=0)
        for i, address in enumerate(founders)
    }
    a, b, c = (nodes[x] for x in founders)
    a.tick()  # the lowest address proposes at its first tick
    prepares = _settle(a)
    for to, msg in prepares:
        if to != "tcp://c:1":
            nodes[to].receive(msg)
    for to, msg in _settle(nodes["tcp://a:1"]) + _settle(nodes["tcp://b:1"]):
        nodes[to].receive(msg)  # the promises reach a
    accepts: list[tuple[str, Any]] = []
    while not accepts:
        a.tick()  # c does not answer: a waits a little for it, then goes on with the majority it has
        accepts = _settle(a)
    for to, msg in accepts:
        if to != "tcp://c:1":
            nodes[to].receive(msg)
    for to, msg in _settle(nodes["tcp://a:1"]) + _settle(nodes["tcp://b:1"]):
        nodes[to].receive(msg)  # the acceptances reach a: decided
    assert a.decided is not None
    first = a.decided
    _settle(a)  # the Founded broadcast is lost
    # c proposes; only b and c answer before c decides.
    out: list[tuple[str, Any]] = []
    while not any(isinstance(m, FoundPrepare) for _t, m in out):
        c.tick()
        out = _settle(c)
    for to, msg in out:
        if to in ("tcp://b:1", "tcp://c:1"):
            nodes[to].receive(msg)
    for to, msg in _settle(b) + _settle(c):
        if to == "tcp://c:1":
            c.receive(msg)
    for to, msg in _settle(c):
        if to in ("tcp://b:1", "tcp://c:1"):
            nodes[to].receive(msg)
    for to, msg in _settle(b) + _settle(c):
        if to == "tcp://c:1":
            c.receive(msg)
    assert c.decided == first


@pytest.mark.parametrize("seed", range(20))
def test_two_founders_of_three_do_not_duel_while_the_first_waits_for_the_third(seed: int) -> None:
    # The first proposer has a majority (itself and the second founder) and waits out its grace for the third,
    # which never comes. The grace is longer than the retry delay: a second founder that proposed over it then
    # would have its prepare arrive during every grace, and no accept would ever succeed.
    rng = random.Random(seed)
    founders = ("tcp://10.0.0.0:7000", "tcp://10.0.0.1:7000", "tcp://10.0.0.2:7000")
    retry, grace = 5, 40
    nodes = {
        address: Founding(key, address, founders, MemberRecord(key=key), rng, retry, grace_ticks=grace)
        for address, key in ((a, f"{a}@{seed:012x}") for a in founders[:2])
    }
    in_flight: list[tuple[str, Any]] = []
    for tick in range(1, 200):
        delivered, in_flight = in_flight, []
        for to, msg in delivered:
            if to in nodes:
                nodes[to].receive(decode(encode(msg)))
        for node in nodes.values():
            node.tick()
            taken = node.take_record()
            if taken is not None:
                node.persisted(taken[0])
            in_flight += node.take_messages()
        if all(node.decided is not None for node in nodes.values()):
            break
    assert all(node.decided is not None for node in nodes.values())
    # Listening (2 retries), one round with its grace, and a few ticks of messages: one round, not a duel.
    assert tick <= 2 * retry + 2 * retry + grace + 6, tick
