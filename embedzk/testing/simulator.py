"""The deterministic simulator: a whole cluster in one thread, on a virtual clock, driven by one seed.

Each simulated node is a real :class:`~embedzk.replica.Replica` (so the real consensus core and the real tree)
over a :class:`~embedzk.persist.MemoryStorage` that plays its disk. The network (:mod:`embedzk.testing.network`)
delays, reorders, drops and duplicates messages and partitions nodes; nodes crash, losing whatever they had not
yet written to their disk, and restart from it; members are added, promoted and removed while all this goes on.
Simulated clients issue creates, sets with versions, gets, deletes, syncs and multis against random nodes and
record a history, which is checked for linearizability at the end, beside the safety properties of Raft.

Every random choice comes from ``random.Random(seed)``, so a failing run is replayed exactly by its seed:
``python -m embedzk.testing.simulate --seed N``.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from embedzk.codec import decode
from embedzk.consensus.types import ConfChange, ConfChangeType, ConfState
from embedzk.errors import (
    ConnectionLossError,
    DecodeError,
    EmbedZKError,
    OperationTimeoutError,
    PeerStoppedError,
)
from embedzk.persist.memory import MemoryStorage
from embedzk.replica import Completion, Replica, ReplicaConfig
from embedzk.replica.messages import Command, pack
from embedzk.testing.network import NetworkProfile, SimNetwork
from embedzk.tree.txn import CheckOp, CreateOp, DeleteOp, MultiOp, SetDataOp

log = logging.getLogger(__name__)

#: How many virtual seconds one tick is (the nodes' tick interval in the simulation).
TICK = 0.01


class SimulationFailure(AssertionError):
    """A safety or linearizability check failed; the message says which, and how to replay the seed."""


#: Named variations of the seeds' own runs, for sweeps that stress one kind of fault:
#: ``crash-heavy``: faults almost three times as often, crashes only (no partitions to dilute them).
PROFILES: dict[str, dict[str, Any]] = {
    "crash-heavy": {"fault_interval": 0.15, "crashes": True, "partitions": False},
}


@dataclass(slots=True)
class SimConfig:
    """The shape of one simulated run. :meth:`from_seed` derives a varied one from the seed alone."""

    seed: int
    voters: int = 3
    learners: int = 0
    clients: int = 4
    keys: int = 4
    #: Virtual seconds of load and faults, then ``settle`` seconds healed to converge.
    duration: float = 3.0
    settle: float = 3.0
    network: NetworkProfile = field(default_factory=NetworkProfile)
    crashes: bool = True
    partitions: bool = True
    membership: bool = False
    #: Virtual seconds between two faults, on average.
    fault_interval: float = 0.4
    snapshot_entries: int = 40
    keep_entries: int = 5
    session_timeout: float = 1.0
    request_timeout: float = 1.0
    #: The named profile this run was derived with (see :data:`PROFILES`); "" for the seed's own.
    profile: str = ""

    @classmethod
    def for_seed(cls, seed: int, profile: str = "") -> SimConfig:
        """The run of ``seed`` under ``profile`` (a key of :data:`PROFILES`, or "" for :meth:`from_seed` as is)."""
        config = cls.from_seed(seed)
        if not profile:
            return config
        try:
            overrides = PROFILES[profile]
        except KeyError:
            raise ValueError(f"unknown simulation profile {profile!r}; known: {sorted(PROFILES)}") from None
        return dataclasses.replace(config, profile=profile, **overrides)

    @classmethod
    def from_seed(cls, seed: int) -> SimConfig:
        """A run whose topology and fault profile are chosen by the seed itself (so one number replays it)."""
        rng = random.Random(f"config-{seed}")
        voters = rng.choice((3, 3, 5))
        profile = NetworkProfile(
            drop_rate=rng.choice((0.0, 0.01, 0.05)),
            duplicate_rate=rng.choice((0.0, 0.01, 0.05)),
            long_delay_rate=rng.choice((0.0, 0.02, 0.1)),
        )
        return cls(
            seed=seed,
            voters=voters,
            learners=rng.choice((0, 0, 1)),
            clients=rng.randint(2, 5),
            keys=rng.randint(2, 5),
            network=profile,
            crashes=rng.random() < 0.8,
            partitions=rng.random() < 0.8,
            membership=rng.random() < 0.3,
            snapshot_entries=rng.choice((20, 40, 1000)),
        )


@dataclass(slots=True)
class Call:
    """One client call as the simulator saw it. ``ret`` None: the outcome is unknown (timeout, crash)."""

    client: int
    kind: str
    input: tuple[Any, ...]
    call: float
    node: str
    output: Any = None
    ret: float | None = None
    #: For reads: the index the node had applied when it answered.
    zxid: int | None = None
    #: For writes: (node id, request id), to find the entry that carried it in the final log.
    request: tuple[str, int] | None = None


class SimNode:
    """One simulated peer: a replica over a memory disk. ``replica`` is None while the node is down."""

    def __init__(self, sim: Simulation, node_id: str, storage: MemoryStorage) -> None:
        self.sim = sim
        self.id = node_id
        self.disk = storage
        self.replica: Replica | None = None
        self.crash_mode: str | None = None
        self.incarnation = 0
        self.tick_phase = sim.rng.uniform(0, TICK)
        self.clock_skew_ms = sim.rng.randint(-50, 50)

    @property
    def up(self) -> bool:
        """True while the node runs."""
        return self.replica is not None

    def start(self) -> None:
        """Boot (or reboot) from whatever is on the disk."""
        config = ReplicaConfig(
            id=self.id,
            tick_interval=TICK,
            election_tick=10,
            heartbeat_tick=1,
            session_timeout=self.sim.config.session_timeout,
            snapshot_entries=self.sim.config.snapshot_entries,
            keep_entries=self.sim.config.keep_entries,
            max_size_per_msg=4096,
            max_inflight_msgs=8,
        )
        self.incarnation += 1
        self.replica = Replica(config, self.disk, random.Random(self.sim.rng.random()))
        self.crash_mode = None
        self.pump()

    def crash(self) -> None:
        """Stop at once: whatever was not yet on the disk is gone; messages in flight to it are lost."""
        self.replica = None
        self.sim.network.drop_all_to(self.id)

    def pump(self) -> None:
        """Drive the replica until it has nothing more to do: persist, then send, apply and answer."""
        sim = self.sim
        while self.replica is not None and self.replica.has_ready():
            replica = self.replica
            rd = replica.ready()
            raft = rd.raft
            self._send(rd.early_messages)  # a leader's appends leave before its own disk write
            if self.crash_mode == "before_persist":
                self.crash()
                return
            if raft is not None:
                sim.check_committed(self.id, raft.committed_entries)
                if raft.snapshot is not None:
                    self.disk.install_snapshot(raft.snapshot[0], raft.snapshot[1])
                if raft.entries or raft.hard_state is not None:
                    self.disk.append(raft.entries, raft.hard_state)
            if self.crash_mode == "after_persist":
                self.crash()
                return
            out = replica.advance(rd)
            if out.snapshot is not None:
                self.disk.save_snapshot(*out.snapshot)
                self.disk.compact(out.compact_to)
            self._send(out.messages)
            sim.observe(self)
            for completion in out.completions:
                sim.complete(self, completion)

    def _send(self, messages: list[tuple[str, Any]]) -> None:
        for to, frame in pack(messages):
            self.sim.network.send(self.sim.now, self.id, to, frame)

    def tick(self) -> None:
        """One tick of the node's clock."""
        if self.replica is None:
            return
        self.replica.tick(self.sim.now, int(self.sim.now * 1000) + 1_700_000_000_000 + self.clock_skew_ms)
        self.pump()

    def deliver(self, frm: str, data: bytes) -> None:
        """A message arrives from ``frm``."""
        if self.replica is None or not data:
            return
        try:
            msg = decode(data)
        except DecodeError as exc:
            raise SimulationFailure(f"a message from {frm} to {self.id} did not decode: {exc}") from None
        self.replica.receive(frm, msg)
        self.pump()


class Simulation:
    """One seeded run. :meth:`run` returns normally if every check passed, else raises SimulationFailure."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self.network = SimNetwork(self.rng, config.network)
        voters = tuple(f"n{i}" for i in range(config.voters))
        learners = tuple(f"l{i}" for i in range(config.learners))
        conf = ConfState(voters=voters, learners=learners)
        self.nodes: dict[str, SimNode] = {
            node_id: SimNode(self, node_id, MemoryStorage(conf)) for node_id in voters + learners
        }
        self._next_member = 0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.calls: list[Call] = []
        self._waiting: dict[tuple[str, int], tuple[Call, Callable[[Call], None]]] = {}
        self._request_ids = 0
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.digests: dict[int, int] = {}
        self.faults: list[str] = []
        self._load = True
        self._clients_idle: set[int] = set()

    # scheduling ----------------------------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual time ``when``."""
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, action))

    def _run_until(self, end: float) -> None:
        while True:
            next_event = self._events[0][0] if self._events else None
            next_msg = self.network.next_delivery()
            if next_msg is not None and (next_event is None or next_msg <= next_event):
                if next_msg > end:
                    break
                self.now = next_msg
                frm, to, data = self.network.pop()
                node = self.nodes.get(to)
                if node is not None:
                    node.deliver(frm, data)
            elif next_event is not None:
                if next_event > end:
                    break
                when, _, action = heapq.heappop(self._events)
                self.now = when
                action()
            else:
                break
        self.now = end

    def _schedule_ticks(self, node: SimNode, until: float) -> None:
        def tick() -> None:
            if node.id in self.nodes:
                node.tick()
                if self.now + TICK <= until:
                    self.at(self.now + TICK, tick)

        self.at(self.now + node.tick_phase, tick)

    # the run -------------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Simulate load and faults for ``duration``, heal, settle, and check everything."""
        config = self.config
        end = config.duration + config.settle
        for node in self.nodes.values():
            node.start()
            self._schedule_ticks(node, end + 3.0)
        for client in range(config.clients):
            # partial binds this client's number now (a bare lambda would see the loop variable's last value).
            self.at(self.rng.uniform(0.1, 0.3), functools.partial(self._client_step, client))
        if config.crashes or config.partitions or config.membership:
            self.at(self.rng.expovariate(1 / config.fault_interval), self._fault)
        self._run_until(config.duration)
        self._heal_all()
        self._load = False
        self._run_until(end)
        self._check_progress(end)
        self._final_checks()

    # clients -------------------------------------------------------------------------------------------------------

    def _client_step(self, client: int) -> None:
        if not self._load:
            return
        up = [n for n in self.nodes.values() if n.up]
        if not up:
            self.at(self.now + 0.05, lambda: self._client_step(client))
            return
        node = self.rng.choice(up)
        kind, args = self._random_op()
        call = Call(client, kind, args, self.now, f"{node.id}#{node.incarnation}")
        self.calls.append(call)
        replica = node.replica
        assert replica is not None
        if kind == "get":
            # A plain read: local, instantaneous, sequentially consistent only.
            call.output = _read(replica, args[0])
            call.ret = self.now
            call.zxid = replica.applied
            self._next_op(client)
            return
        self._request_ids += 1
        request_id = self._request_ids
        timeout = self.config.request_timeout
        if kind == "sync_get":
            self._waiting[(node.id, request_id)] = (call, lambda c: self._finish_sync_get(c, client))
            replica.sync(request_id, timeout)
        else:
            call.request = (node.id, request_id)
            self._waiting[(node.id, request_id)] = (call, lambda c: self._next_op(client))
            immediate = replica.submit(request_id, _to_op(kind, args), timeout)
            if immediate is not None:
                self.complete(node, immediate)
                return
        node.pump()

    def _finish_sync_get(self, call: Call, client: int) -> None:
        node = self.nodes.get(call.node.partition("#")[0])
        if call.output is not None and call.output[0] == "ok" and node is not None and node.replica is not None:
            call.output = _read(node.replica, call.input[0])
            call.zxid = node.replica.applied
        self._next_op(client)

    def _next_op(self, client: int) -> None:
        self.at(self.now + self.rng.expovariate(1 / 0.02), lambda: self._client_step(client))

    def _random_op(self) -> tuple[str, tuple[Any, ...]]:
        rng = self.rng
        key = f"/k{rng.randrange(self.config.keys)}"
        value = f"v{rng.randrange(1000)}".encode()
        roll = rng.random()
        if roll < 0.2:
            return "create", (key, value)
        if roll < 0.45:
            return "set", (key, value, rng.choice((-1, -1, 0, 1, 2, 3)))
        if roll < 0.55:
            return "delete", (key, rng.choice((-1, -1, 0, 1, 2)))
        if roll < 0.65:
            return "get", (key,)
        if roll < 0.85:
            return "sync_get", (key,)
        subs: list[tuple[Any, ...]] = []
        for _ in range(rng.randint(1, 3)):
            k = f"/k{rng.randrange(self.config.keys)}"
            v = f"m{rng.randrange(1000)}".encode()
            sub = rng.choice(("create", "set", "delete", "check"))
            if sub == "create":
                subs.append(("create", k, v))
            elif sub == "set":
                subs.append(("set", k, v, rng.choice((-1, 0, 1))))
            elif sub == "delete":
                subs.append(("delete", k, rng.choice((-1, 0, 1))))
            else:
                subs.append(("check", k, rng.choice((-1, 0, 1))))
        return "multi", tuple(subs)

    def complete(self, node: SimNode, completion: Completion) -> None:
        """A node answered a request."""
        entry = self._waiting.pop((node.id, completion.request_id), None)
        if entry is None:
            return
        call, then = entry
        error = completion.error
        if isinstance(error, (OperationTimeoutError, ConnectionLossError, PeerStoppedError)):
            call.output = None
            call.ret = None  # unknown outcome
        else:
            call.output = _result(call.kind, completion.value, error)
            call.ret = self.now
        then(call)

    def _abandon_calls(self, node_id: str) -> None:
        for key in [k for k in self._waiting if k[0] == node_id]:
            call, then = self._waiting.pop(key)
            call.output = None
            call.ret = None
            then(call)

    # faults --------------------------------------------------------------------------------------------------------

    def _fault(self) -> None:
        if not self._load:
            return
        config = self.config
        kinds = []
        if config.crashes:
            kinds += ["crash", "crash"]
        if config.partitions:
            kinds += ["partition", "partition_leader", "one_way", "bridge"]
        if config.membership:
            kinds += ["membership"]
        kinds.append("heal")
        kind = self.rng.choice(kinds)
        getattr(self, f"_fault_{kind}")()
        self.at(self.now + self.rng.expovariate(1 / config.fault_interval), self._fault)

    def _log_fault(self, text: str) -> None:
        self.faults.append(f"{self.now:.3f}s {text}")

    def _fault_crash(self) -> None:
        up = [n for n in self.nodes.values() if n.up]
        if not up:
            return
        node = self.rng.choice(up)
        mode = self.rng.choice(("now", "before_persist", "after_persist"))
        self._log_fault(f"crash {node.id} ({mode})")
        if mode == "now":
            node.crash()
        else:
            node.crash_mode = mode
            node.tick()  # the next ready decides; a node with nothing to do just crashes on its next one
        if node.up and mode != "now":
            node.crash()
        self._abandon_calls(node.id)
        downtime = self.rng.uniform(0.05, 1.0)
        self.at(self.now + downtime, lambda: self._restart(node))

    def _restart(self, node: SimNode) -> None:
        if node.id not in self.nodes or node.up:
            return
        self._log_fault(f"restart {node.id}")
        node.start()

    def _fault_partition(self) -> None:
        ids = list(self.nodes)
        self.rng.shuffle(ids)
        cut = self.rng.randint(1, len(ids) - 1)
        groups = [ids[:cut], ids[cut:]]
        self._log_fault(f"partition {groups}")
        self.network.heal()
        self.network.isolate(groups)

    def _fault_partition_leader(self) -> None:
        leader = self._current_leader()
        if leader is None:
            return
        self._log_fault(f"isolate leader {leader}")
        self.network.heal()
        self.network.isolate([[leader], [i for i in self.nodes if i != leader]])

    def _fault_one_way(self) -> None:
        ids = list(self.nodes)
        a, b = self.rng.sample(ids, 2)
        self._log_fault(f"cut {a}->{b}")
        self.network.cut(a, b)

    def _fault_bridge(self) -> None:
        ids = list(self.nodes)
        if len(ids) < 3:
            return
        self.rng.shuffle(ids)
        bridge = ids[0]
        rest = ids[1:]
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        self._log_fault(f"bridge {bridge} between {left} and {right}")
        self.network.heal()
        self.network.isolate([left, right])

    def _fault_heal(self) -> None:
        self._log_fault("heal")
        self.network.heal()

    def _fault_membership(self) -> None:
        leader_id = self._current_leader()
        if leader_id is None:
            return
        leader = self.nodes[leader_id].replica
        assert leader is not None
        conf = leader.node.status().conf_state
        rng = self.rng
        choice = rng.random()
        change: ConfChange
        if conf.learners and choice < 0.4 and len(conf.voters) < 5:
            change = ConfChange(ConfChangeType.PROMOTE, rng.choice(conf.learners))
        elif choice < 0.7 and len(self.nodes) < 7:
            self._next_member += 1
            new_id = f"m{self._next_member}"
            node = SimNode(self, new_id, MemoryStorage(ConfState()))
            self.nodes[new_id] = node
            node.start()
            self._schedule_ticks(node, self.config.duration + self.config.settle + 3.0)
            change = ConfChange(ConfChangeType.ADD_LEARNER, new_id)
        elif len(conf.voters) > 3:
            victim = rng.choice([v for v in conf.voters if v != leader_id] or list(conf.voters))
            change = ConfChange(ConfChangeType.REMOVE, victim)
        else:
            return
        try:
            leader.propose_conf_change(change)
        except EmbedZKError as exc:
            self._log_fault(f"membership {change.type.name} {change.node_id} refused: {exc}")
            return
        self._log_fault(f"membership {change.type.name} {change.node_id}")
        self.nodes[leader_id].pump()

    def _heal_all(self) -> None:
        self._log_fault("heal all, restart all")
        self.network.heal()
        self.network.profile = NetworkProfile()
        for node in self.nodes.values():
            if not node.up:
                node.start()

    def _current_leader(self) -> str | None:
        best: tuple[int, str] | None = None
        for node in self.nodes.values():
            if node.replica is not None and node.replica.is_leader:
                candidate = (node.replica.term, node.id)
                if best is None or candidate > best:
                    best = candidate
        return best[1] if best else None

    def summary(self) -> dict[str, int]:
        """What the run did, to show that it did something."""
        known = [c for c in self.calls if c.ret is not None]
        return {
            "calls": len(self.calls),
            "ok": sum(1 for c in known if c.output and c.output[0] == "ok"),
            "failed": sum(1 for c in known if c.output and c.output[0] == "err"),
            "unknown": len(self.calls) - len(known),
            "writes_ok": sum(1 for c in known if c.kind not in ("get", "sync_get") and c.output and c.output[0] == "ok"),
            "sync_gets_ok": sum(1 for c in known if c.kind == "sync_get" and c.output and c.output[0] == "ok"),
            "committed_entries": len(self.committed),
            "terms_with_leader": len(self.leaders),
            "faults": len(self.faults),
            "messages": self.network.sent,
            "dropped": self.network.dropped,
        }

    # checks --------------------------------------------------------------------------------------------------------

    def fail(self, what: str) -> None:
        """Raise a SimulationFailure that says what broke and how to replay it."""
        recent = "\n  ".join(self.faults[-12:])
        raise SimulationFailure(
            f"seed {self.config.seed}: {what}\n"
            f"at {self.now:.3f}s; recent faults:\n  {recent}\n"
            f"replay: python -m embedzk.testing.simulate --seed {self.config.seed}"
            + (f" --profile {self.config.profile}" if self.config.profile else "")
        )

    def observe(self, node: SimNode) -> None:
        """After every step of a node: election safety and digest agreement."""
        replica = node.replica
        if replica is None:
            return
        if replica.is_leader:
            known = self.leaders.setdefault(replica.term, node.id)
            if known != node.id:
                self.fail(f"two leaders in term {replica.term}: {known} and {node.id}")
        digest = self.digests.setdefault(replica.applied, replica.tree.digest)
        if digest != replica.tree.digest:
            self.fail(f"{node.id} has tree digest {replica.tree.digest:#x} at index {replica.applied}, others {digest:#x}")

    def check_committed(self, node_id: str, entries: list[Any]) -> None:
        """State machine safety: every node applies the same entry at the same index."""
        for entry in entries:
            known = self.committed.setdefault(entry.index, (entry.term, entry.data))
            if known != (entry.term, entry.data):
                self.fail(
                    f"{node_id} applies entry {entry.index} of term {entry.term}, "
                    f"but term {known[0]} was applied there elsewhere"
                )

    def _check_progress(self, now: float) -> None:
        # Liveness, once healed: a write through the leader and a sync on every member must complete.
        leader = self._current_leader()
        if leader is None:
            self.fail("no leader after the cluster was healed and settled")
        assert leader is not None
        answered: list[Call] = []
        leader_replica = self.nodes[leader].replica
        assert leader_replica is not None
        members = set(leader_replica.conf_state().members())
        probes: list[tuple[SimNode, str, tuple[Any, ...]]] = [(self.nodes[leader], "create", ("/k0", b"probe"))]
        probes += [(node, "sync_get", ("/k0",)) for node in self.nodes.values() if node.up and node.id in members]
        for node, kind, args in probes:
            replica = node.replica
            assert replica is not None
            self._request_ids += 1
            call = Call(-1, kind, args, self.now, f"{node.id}#{node.incarnation}")
            self.calls.append(call)
            self._waiting[(node.id, self._request_ids)] = (call, answered.append)
            if kind == "sync_get":
                replica.sync(self._request_ids, 2.0)
            else:
                call.request = (node.id, self._request_ids)
                immediate = replica.submit(self._request_ids, _to_op(kind, args), 2.0)
                if immediate is not None:
                    self.complete(node, immediate)
            node.pump()
        self._run_until(now + 2.5)
        stuck = [c for c in self.calls[-len(probes):] if c.ret is None]
        if stuck:
            self.fail(f"no progress after healing: {[(c.kind, c.node) for c in stuck]} got no answer")
        # Every member holds an open session once healed (sessions lost in faults are opened again).
        sessions = leader_replica.tree.sessions()
        for node, kind, _args in probes:
            replica = node.replica
            if kind == "sync_get" and replica is not None and replica.session_id not in sessions:
                self.fail(f"{node.id} has no open session after healing (its session: {replica.session_id})")

    def _final_checks(self) -> None:
        up = [n for n in self.nodes.values() if n.replica is not None]
        members = None
        leader = self._current_leader()
        if leader is None:
            self.fail("no leader after the cluster was healed and settled")
        assert leader is not None
        leader_replica = self.nodes[leader].replica
        assert leader_replica is not None
        members = set(leader_replica.node.status().conf_state.members())
        target = leader_replica.applied
        for node in up:
            if node.id not in members:
                continue
            replica = node.replica
            assert replica is not None
            if replica.applied != target:
                self.fail(f"{node.id} applied {replica.applied}, the leader {target}, after settling")
            if replica.tree.digest != leader_replica.tree.digest:
                self.fail(f"{node.id} digest differs from the leader's after settling")
        self._check_logs(up, members)
        self._check_history()

    def _check_logs(self, up: list[SimNode], members: set[str]) -> None:
        # Log matching: over the indexes two disks both hold, up to the commit point, the terms agree.
        for node in up:
            if node.id not in members:
                continue
            disk = node.disk
            first, last = disk.first_index(), disk.last_index()
            for index in range(first, last + 1):
                known = self.committed.get(index)
                if known is None:
                    continue
                if disk.term(index) != known[0]:
                    commit = node.replica.node.status().commit if node.replica else 0
                    if index <= commit:
                        self.fail(f"{node.id} holds term {disk.term(index)} at committed index {index}, not {known[0]}")

    def _check_history(self) -> None:
        from embedzk.testing.history_check import check_calls

        write_zxids: dict[tuple[str, int], int] = {}
        for index, (_term, data) in self.committed.items():
            if data:
                try:
                    command = decode(data)
                except DecodeError:
                    continue
                if isinstance(command, Command) and command.request_id > 0:
                    write_zxids[(command.origin, command.request_id)] = index
        problem = check_calls(self.calls, write_zxids)
        if problem:
            self.fail(problem)


def _read(replica: Replica, path: str) -> tuple[Any, ...]:
    stat = replica.tree.exists(path)
    if stat is None:
        return ("err", "NoNode")
    data, stat = replica.tree.get(path)
    return ("ok", (data, stat.version))


def _to_op(kind: str, args: tuple[Any, ...]) -> Any:
    if kind == "create":
        return CreateOp(args[0], args[1])
    if kind == "set":
        return SetDataOp(args[0], args[1], args[2])
    if kind == "delete":
        return DeleteOp(args[0], args[1])
    if kind == "multi":
        ops: list[Any] = []
        for sub in args:
            if sub[0] == "create":
                ops.append(CreateOp(sub[1], sub[2]))
            elif sub[0] == "set":
                ops.append(SetDataOp(sub[1], sub[2], sub[3]))
            elif sub[0] == "delete":
                ops.append(DeleteOp(sub[1], sub[2]))
            else:
                ops.append(CheckOp(sub[1], sub[2]))
        return MultiOp(tuple(ops))
    raise ValueError(kind)


_ERROR_NAMES = {
    "NoNodeError": "NoNode",
    "NodeExistsError": "NodeExists",
    "BadVersionError": "BadVersion",
    "NotEmptyError": "NotEmpty",
}


def _error_name(error: EmbedZKError) -> str:
    return _ERROR_NAMES.get(type(error).__name__, type(error).__name__)


def _result(kind: str, value: Any, error: EmbedZKError | None) -> tuple[Any, ...]:
    if kind == "sync_get":
        return ("ok", None) if error is None else ("err", _error_name(error))
    if error is not None:
        return ("err", _error_name(error))
    if kind == "create":
        return ("ok", value)
    if kind == "set":
        return ("ok", value.version)
    return ("ok", None)
