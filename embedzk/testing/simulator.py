"""The deterministic simulator: a whole cluster in one thread, on a virtual clock, driven by one seed.

Each simulated node is a real :class:`~embedzk.replica.Replica` (so the real consensus core and the real tree)
over a :class:`~embedzk.testing.simdisk.SimDisk`, a memory disk that loses what was not synced when its machine
crashes. The network (:mod:`embedzk.testing.network`) delays, reorders, drops, duplicates, replays and corrupts
messages and partitions nodes. Nodes crash (before, during or after a write), restart, pause (a process frozen
longer than an election timeout), and run on clocks that drift and jump; members are added, promoted and removed
(the leader too), and leadership is handed over, while all this goes on; newly elected leaders are struck down at
once now and then, which is what turns a commit rule broken for an older term into lost data (Raft's Figure 8).

Simulated clients (:mod:`embedzk.testing.workload`) create, set, delete, read (plain and after ``sync()``) and
multi on flat keys, and work a small tree with nested paths, sequential and ephemeral nodes and watches. Checked
as the run goes (:mod:`embedzk.testing.invariants`): election safety, one vote per term, durable votes and
acknowledgments, no acknowledged or committed entry dropped, state machine safety, digest agreement, one
membership change at a time, session expiry against its timeout. Checked at the end: every member converged; the
history is linearizable (:mod:`embedzk.testing.linearizability` on the flat keys, and against the committed log on
everything, :mod:`embedzk.testing.logcheck`); watches fired as the committed history says
(:mod:`embedzk.testing.watchcheck`); every path read back on every member matches the log's replay.

Membership (:mod:`embedzk.testing.churn`): some runs start on fresh disks and found the cluster (the founders'
Paxos), and some churn: disks wiped (the node comes back as a new member, under a new key), workers joining,
leaving, dying for good, and coming back at another address, while the leader's autopilot keeps the voters; once
healed the voters must be back to the target, every member alive, no dead member left in the membership.

Every random choice comes from ``random.Random(seed)``, so a failing run is replayed exactly by its seed:
``python -m embedzk.testing.simulate --seed N``.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import logging
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from embedzk.codec import decode
from embedzk.consensus.messages import Message
from embedzk.consensus.types import ConfChange, ConfChangeType, ConfState
from embedzk.errors import (
    ConnectionLossError,
    DecodeError,
    EmbedZKError,
    OperationTimeoutError,
    PeerStoppedError,
)
from embedzk.membership.identity import is_address, member_key, new_tag
from embedzk.replica import Completion, Replica, ReplicaConfig
from embedzk.replica.membership import MembershipConfig
from embedzk.replica.messages import pack
from embedzk.testing.churn import Churn
from embedzk.testing.invariants import Invariants
from embedzk.testing.network import NetworkProfile, SimNetwork
from embedzk.testing.simdisk import SimDisk
from embedzk.testing.watchcheck import NodeWatches, WatchBook
from embedzk.testing.workload import FLAT_KINDS, SYNCED_READS, Workload, result_of, to_op
from embedzk.tree.watches import WatchKind

log = logging.getLogger(__name__)

#: How many virtual seconds one tick is (the nodes' tick interval in the simulation).
TICK = 0.01
#: The nodes' election timeout in ticks (so 0.1 s, randomized up to 0.2 s).
ELECTION_TICK = 10
#: Virtual seconds the liveness probes after healing get to be answered (their requests time out half a second
#: sooner), and how many more rounds a member that is still catching up gets.
PROBE_WINDOW = 2.5
CATCH_UP_ROUNDS = 4


class SimulationFailure(AssertionError):
    """A safety or linearizability check failed; the message says which, and how to replay the seed."""


#: Named variations of the seeds' own runs, for sweeps that stress one kind of fault:
#: ``crash-heavy``: faults almost three times as often, crashes (and the stale messages that greet a restarted
#: node) only, no partitions, pauses or clock faults to dilute them; new leaders struck down half the time.
PROFILES: dict[str, dict[str, Any]] = {
    "crash-heavy": {
        "fault_interval": 0.15,
        "crashes": True,
        "partitions": False,
        "pauses": False,
        "clocks": False,
        "transfers": False,
        "replays": True,
        "strike_rate": 0.5,
    },
    # ``churn``: every run founds itself on fresh disks and churns its membership, with crashes and partitions
    # on top; the administrator's own membership changes stay out (the autopilot decides).
    "churn": {
        "founding": True,
        "churn": True,
        "membership": False,
        "fault_interval": 0.2,
    },
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
    #: Processes frozen for a while (then resumed with their messages queued up and their clock gone on).
    pauses: bool = False
    #: Clocks that drift (a process ticking slow or fast) and jump (monotonic forward, wall both ways).
    clocks: bool = False
    #: Leadership handed to another voter now and then.
    transfers: bool = False
    #: The last message of a random kind delivered again now and then (a snapshot chunk, a vote, an append ...
    #: from another era).
    replays: bool = False
    #: Probability that a leader is crashed or cut off within moments of its election.
    strike_rate: float = 0.0
    #: Virtual seconds between two faults, on average.
    fault_interval: float = 0.4
    snapshot_entries: int = 40
    #: Bytes of applied entries that trigger a snapshot too (or the last snapshot's size); large: never.
    snapshot_bytes: int = 1 << 30
    keep_entries: int = 5
    #: Bytes of entries in one append message: small values split a catch-up into many round trips.
    max_size_per_msg: int = 4096
    max_inflight_msgs: int = 8
    #: Extra delay of every message to or from one node chosen at random (0: none): the others agree first and it
    #: hears last, which leaves logs of different lengths behind a crash.
    slow_node: float = 0.0
    #: Raft's pre-vote (thesis 9.6). Without it, a node back from a partition disrupts the leader and elections
    #: split more often: more terms with several candidates.
    pre_vote: bool = True
    session_timeout: float = 1.0
    request_timeout: float = 1.0
    #: Start on fresh disks: the voters found the cluster among themselves, the learners join it.
    founding: bool = False
    #: Membership churn (wiped disks, joins, leaves, deaths, moves) with the autopilot keeping ``voters`` voters.
    churn: bool = False
    #: Seconds a member may be unreachable before the autopilot removes it (churn runs).
    member_timeout: float = 0.8
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
            very_long_delay_rate=rng.choice((0.0, 0.005, 0.02)),
            replay_rate=rng.choice((0.0, 0.01, 0.03)),
            corrupt_rate=rng.choice((0.0, 0.0, 0.002, 0.01)),
            hold_when_cut=rng.random() < 0.5,
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
            membership=rng.random() < 0.4,
            pauses=rng.random() < 0.3,
            clocks=rng.random() < 0.3,
            transfers=rng.random() < 0.3,
            replays=rng.random() < 0.5,
            strike_rate=rng.choice((0.0, 0.1, 0.3)),
            snapshot_entries=rng.choice((10, 20, 40, 1000)),
            max_size_per_msg=rng.choice((64, 64, 256, 4096)),
            slow_node=rng.choice((0.0, 0.01, 0.03)),
            pre_vote=rng.random() < 0.7,
            max_inflight_msgs=rng.choice((2, 8)),
            founding=rng.random() < 0.3,
            churn=rng.random() < 0.25,
            member_timeout=rng.choice((0.5, 0.8, 1.5)),
            # Drawn apart, so that what every other choice of a seed was stays as it was.
            snapshot_bytes=random.Random(f"snapshot-bytes-{seed}").choice((1 << 30, 1 << 30, 1024, 4096)),
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
    #: For synced reads: the highest index any node knew committed when the call began (the sync must cover it).
    floor: int = 0


class SimClock:
    """One machine's clocks: a monotonic one that may drift (tick slow or fast) and jump forward, and a wall clock
    that is skewed and may step either way."""

    def __init__(self, skew_ms: int) -> None:
        self.rate = 1.0
        self._anchor = 0.0
        self._local = 0.0
        self.wall_offset_ms = skew_ms

    def monotonic(self, now: float) -> float:
        """The machine's monotonic time at virtual time ``now``."""
        return self._local + (now - self._anchor) * self.rate

    def set_rate(self, now: float, rate: float) -> None:
        """From ``now`` on, the clock runs ``rate`` times as fast as virtual time."""
        self._local, self._anchor, self.rate = self.monotonic(now), now, rate

    def jump(self, now: float, seconds: float) -> None:
        """The monotonic clock leaps forward (a suspended machine waking up)."""
        self._local, self._anchor = self.monotonic(now) + seconds, now

    def wall_ms(self, now: float) -> int:
        """The wall clock, in milliseconds since the epoch."""
        return 1_700_000_000_000 + int(now * 1000) + self.wall_offset_ms


class SimNode:
    """One simulated peer: a replica over a simulated disk. ``replica`` is None while the node is down."""

    def __init__(self, sim: Simulation, node_id: str, disk: SimDisk, slot: str = "") -> None:
        self.sim = sim
        #: The member key: the node's name in the protocol (its id, and its disk's tag for a disk that has one).
        self.id = node_id
        #: The worker this node runs as (a wiped disk's successor runs in the same slot, under a new key).
        self.slot = slot or node_id
        #: Where it listens: what founders and joiners send to before they know its key.
        self.address = f"sim://{self.slot}"
        #: Gone for good (its disk wiped, it died, or it left): never restarted.
        self.retired = False
        self.disk = disk
        disk.on_drop = self._dropping
        self.replica: Replica | None = None
        self.crash_mode: str | None = None
        self.incarnation = 0
        self.tick_phase = sim.rng.uniform(0, TICK)
        self.clock = SimClock(sim.rng.randint(-50, 50))
        self.paused_until = 0.0
        self._held: list[tuple[str, bytes, bool]] = []
        self.watches: NodeWatches | None = None

    @property
    def name(self) -> str:
        """``id#incarnation``: this run of the node's process."""
        return f"{self.id}#{self.incarnation}"

    @property
    def up(self) -> bool:
        """True while the node's process exists (running or paused)."""
        return self.replica is not None

    @property
    def available(self) -> bool:
        """True while the node runs and is not paused: clients can talk to it."""
        return self.replica is not None and self.sim.now >= self.paused_until

    def start(self) -> None:
        """Boot (or reboot) from whatever is on the disk."""
        config = ReplicaConfig(
            id=self.id,
            tick_interval=TICK,
            election_tick=ELECTION_TICK,
            heartbeat_tick=1,
            session_timeout=self.sim.config.session_timeout,
            snapshot_entries=self.sim.config.snapshot_entries,
            snapshot_bytes=self.sim.config.snapshot_bytes,
            keep_entries=self.sim.config.keep_entries,
            max_size_per_msg=self.sim.config.max_size_per_msg,
            max_inflight_msgs=self.sim.config.max_inflight_msgs,
            pre_vote=self.sim.config.pre_vote,
            membership=self.sim.membership_config(self),
        )
        self.sim.bound[self.address] = self.id
        if self.incarnation:
            self.sim.invariants.restarting(self.id, self.disk)
        self.incarnation += 1
        self.replica = Replica(config, self.disk, random.Random(self.sim.rng.random()))
        self.crash_mode = None
        self.paused_until = 0.0
        self.watches = self.sim.watch_book.start(self.name, self.replica.applied)
        self.pump()

    def crash(self) -> None:
        """The machine stops at once: what was not synced is lost; messages in flight to it are lost."""
        self.replica = None
        self._held = []
        self.watches = None
        self.sim.network.drop_all_to(self.id)
        self.sim.invariants.crashed(self.id)
        lost = self.disk.crash(self.sim.rng)
        if lost:
            self.sim.log_fault(f"{self.id} lost {lost} unsynced writes")

    def _dropping(self, dropped: list[tuple[int, int]]) -> None:
        replica = self.replica
        leader = None
        if replica is not None:
            leader_id = self.sim.invariants.leaders.get(replica.term)
            node = self.sim.nodes.get(leader_id) if leader_id is not None else None
            if node is not None and node.replica is not None and node.replica.term == replica.term:
                leader = node.replica
        self.sim.invariants.dropping(self.id, replica, dropped, leader)

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
            writes: list[Callable[[], None]] = []
            record = rd.record
            if record is not None:
                writes.append(functools.partial(self.disk.save_member_record, record))
            if raft is not None:
                if raft.entries and replica.is_leader:
                    sim.invariants.proposed(self.id, replica, raft.entries)
                sim.invariants.applying(self.id, raft.committed_entries)
                if raft.snapshot is not None:
                    sim.invariants.installing(self.id, replica, raft.snapshot[0])
                    writes.append(functools.partial(self.disk.install_snapshot, *raft.snapshot))
                if raft.entries or raft.hard_state is not None:
                    writes.append(
                        functools.partial(self.disk.append, raft.entries, raft.hard_state, sync=raft.must_sync)
                    )
            if self.crash_mode == "torn" and writes:
                # Power fails part-way through the Ready: each batch is atomic, the Ready is not.
                for write in writes[: sim.rng.randrange(len(writes))]:
                    write()
                self.crash()
                return
            for write in writes:
                write()
            if self.crash_mode is not None:
                self.crash()
                return
            before = replica.applied
            out = replica.advance(rd)
            if out.snapshot is not None:
                self.disk.save_snapshot(*out.snapshot)
                self.disk.compact(out.compact_to)
            self._send(out.messages)
            self._watch(out.installed_index, before, out.applied)
            sim.invariants.stepped(self.id, replica)
            if replica.is_leader:
                sim.new_leader(self.id, replica.term)
            for completion in out.completions:
                sim.complete(self, completion)

    def _watch(self, snapshot: int | None, before: int, applied: list[tuple[int, Any]]) -> None:
        # Feed the node's watches with what it applied, and the committed history of changes with what each
        # index triggered (entries with no events are absent from ``applied``). ``snapshot``: the index of a
        # snapshot installed in this step (the empty bootstrap one, at 0, replaces nothing).
        replica = self.replica
        watches = self.watches
        assert replica is not None and watches is not None
        start = before
        if snapshot is not None and snapshot > 0:
            watches.snapshot_installed()
            start = snapshot
        events = dict(applied)
        book = self.sim.watch_book
        for zxid in range(start + 1, replica.applied + 1):
            found = events.get(zxid, ())
            book.record(self.id, zxid, found)
            if found:
                watches.applied(zxid, found)
        watches.advanced(replica.applied)

    def _send(self, messages: list[tuple[str, Any]]) -> None:
        if not messages:
            return
        self.sim.invariants.sent(self.id, messages)
        kinds: dict[str, set[str]] = {}
        for to, msg in messages:
            kinds.setdefault(to, set()).add(msg.type.name if isinstance(msg, Message) else type(msg).__name__)
        network = self.sim.network
        for to, frame in pack(messages):
            if is_address(to):
                # Founders and joiners reach a worker by its address: whoever listens there now gets it.
                target = self.sim.bound.get(to)
                sent_kinds = kinds.pop(to)
                if target is None:
                    continue
                kinds.setdefault(target, set()).update(sent_kinds)
                to = target
            network.send(self.sim.now, self.id, to, frame)
            for kind in kinds[to]:
                network.remember(kind, self.id, to, frame)

    def tick(self) -> None:
        """One tick of the node's clock."""
        if self.replica is None or self.sim.now < self.paused_until:
            return
        now = self.sim.now
        self.replica.tick(self.clock.monotonic(now), self.clock.wall_ms(now))
        self.pump()

    def deliver(self, frm: str, data: bytes, corrupt: bool = False) -> None:
        """A message arrives from ``frm`` (``corrupt``: damaged by the network; it must be refused cleanly)."""
        if self.replica is None or not data:
            return
        if self.sim.now < self.paused_until:
            self._held.append((frm, data, corrupt))  # in the socket's buffer until the process runs again
            return
        try:
            msg = decode(data)
        except DecodeError as exc:
            if corrupt:
                self.sim.rejected += 1
                return
            self.sim.fail(f"a message from {frm} to {self.id} did not decode: {exc}")
        except Exception as exc:  # noqa: BLE001 - the codec's contract is DecodeError and nothing else
            self.sim.fail(
                f"decoding a {'corrupted' if corrupt else 'sound'} frame from {frm} raised {type(exc).__name__} "
                f"instead of DecodeError: {exc}"
            )
        self.sim.invariants.delivered(self.id, self.replica, msg, frm)
        self.replica.receive(frm, msg)
        self.pump()

    def resume(self) -> None:
        """A paused process runs again: what arrived meanwhile is read now."""
        held, self._held = self._held, []
        for frm, data, corrupt in held:
            self.deliver(frm, data, corrupt)
        self.tick()


class Simulation:
    """One seeded run. :meth:`run` returns normally if every check passed, else raises SimulationFailure."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self.network = SimNetwork(self.rng, config.network)
        self.invariants = Invariants(self.fail)
        self.watch_book = WatchBook(self.fail)
        self.workload = Workload(self.rng, config.keys)
        voters = tuple(f"n{i}" for i in range(config.voters))
        learners = tuple(f"l{i}" for i in range(config.learners))
        #: Address -> the key of the node listening there now.
        self.bound: dict[str, str] = {}
        #: The founders' addresses (the first voters' slots): founding runs found among them, and a founder back on
        #: a fresh disk asks them whether the cluster exists.
        self.founders = tuple(f"sim://{slot}" for slot in voters)
        self.first_voters = voters
        self.nodes: dict[str, SimNode] = {}
        if config.founding:
            for slot in voters + learners:
                key = member_key(slot, new_tag(self.rng))
                self.nodes[key] = SimNode(self, key, SimDisk(), slot)
        else:
            conf = ConfState(voters=voters, learners=learners)
            for slot in voters + learners:
                self.nodes[slot] = SimNode(self, slot, SimDisk(conf))
        voters = tuple(k for k, n in self.nodes.items() if n.slot in self.first_voters)
        self.churn = Churn(self)
        if config.slow_node:
            self.network.extra_delay[self.rng.choice(voters)] = config.slow_node
        self._next_member = 0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.calls: list[Call] = []
        self._waiting: dict[tuple[str, int], tuple[Call, Callable[[Call], None]]] = {}
        self._request_ids = 0
        # What each node had applied when the last liveness probes were sent.
        self._applied_at_probe: dict[str, int] = {}
        self._watch_ids = 0
        self._followups: dict[int, tuple[str, tuple[Any, ...], str]] = {}
        self.faults: list[str] = []
        self.rejected = 0
        self._load = True
        self._elected: set[int] = set()

    # scheduling ----------------------------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual time ``when``."""
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, action))

    def _run_until(self, end: float) -> None:
        try:
            self._loop(end)
        except SimulationFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - any other exception is a node crashing on its input: a bug
            frames = traceback.extract_tb(exc.__traceback__)[-4:]
            where = "; ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames)
            self.fail(f"a node raised {type(exc).__name__}: {exc} (at {where})")
        self.now = end

    def _loop(self, end: float) -> None:
        while True:
            next_event = self._events[0][0] if self._events else None
            next_msg = self.network.next_delivery()
            if next_msg is not None and (next_event is None or next_msg <= next_event):
                if next_msg > end:
                    break
                self.now = next_msg
                delivery = self.network.pop()
                node = self.nodes.get(delivery.to)
                if node is not None:
                    node.deliver(delivery.frm, delivery.data, delivery.corrupt)
            elif next_event is not None:
                if next_event > end:
                    break
                when, _, action = heapq.heappop(self._events)
                self.now = when
                action()
            else:
                break

    def _schedule_ticks(self, node: SimNode, until: float) -> None:
        def tick() -> None:
            if node.id in self.nodes:
                node.tick()
                following = self.now + TICK / node.clock.rate
                if following <= until:
                    self.at(following, tick)

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
        if any((config.crashes, config.partitions, config.membership, config.pauses, config.clocks, config.replays)):
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
        available = [n for n in self.nodes.values() if n.available]
        if not available:
            self.at(self.now + 0.05, functools.partial(self._client_step, client))
            return
        followup = self._followups.pop(client, None)
        if followup is not None:
            kind, args, avoid = followup
            node = self.rng.choice([n for n in available if n.id != avoid] or available)
        else:
            kind, args = self.workload.next_call(reader=client == 0)
            node = self.rng.choice(available)
        call = Call(client, kind, args, self.now, node.name)
        self.calls.append(call)
        replica = node.replica
        assert replica is not None
        if kind in ("get", "tget"):
            # A plain read: local, instantaneous, sequentially consistent only.
            call.output = _read(replica, kind, args[0])
            call.ret = self.now
            call.zxid = replica.applied
            self._next_op(client)
            return
        if kind == "watch":
            self._set_watch(node, replica, call)
            self._next_op(client)
            return
        self._request_ids += 1
        request_id = self._request_ids
        timeout = self.config.request_timeout
        key = (node.id, request_id)
        if kind in SYNCED_READS:
            call.floor = self._committed_anywhere()
            self._waiting[key] = (call, functools.partial(self._finish_sync, client))
            replica.sync(request_id, timeout)
        else:
            call.request = key
            self._waiting[key] = (call, functools.partial(self._written, client))
            immediate = replica.submit(request_id, to_op(kind, args), timeout)
            if immediate is not None:
                self.complete(node, immediate)
                return
        # The client gives up by its own clock too: a node whose clock runs slow (or is paused) times it out late.
        self.at(self.now + timeout + 0.05, functools.partial(self._give_up, key))
        node.pump()

    def _give_up(self, key: tuple[str, int]) -> None:
        entry = self._waiting.pop(key, None)
        if entry is not None:
            call, then = entry
            call.output = None
            call.ret = None
            then(call)

    def _set_watch(self, node: SimNode, replica: Replica, call: Call) -> None:
        kind_name, path = call.input
        exists = replica.tree.exists(path) is not None
        call.ret = self.now
        call.zxid = replica.applied
        if kind_name == "child" and not exists:
            call.output = ("err", "NoNode")  # get_children raises NoNode and sets no watch
            return
        kind = WatchKind.CHILD if kind_name == "child" else WatchKind.DATA if exists else WatchKind.EXIST
        self._watch_ids += 1
        assert node.watches is not None
        node.watches.add(self._watch_ids, kind, path, replica.applied)
        call.output = ("ok", None)

    def _committed_anywhere(self) -> int:
        # Any node's commit index is committed for the whole cluster: the highest one is what a sync must cover.
        return max((n.replica.node.raft.log.committed for n in self.nodes.values() if n.replica), default=0)

    def _finish_sync(self, client: int, call: Call) -> None:
        node = self.nodes.get(call.node.partition("#")[0])
        if call.output is not None and call.output[0] == "ok" and node is not None and node.replica is not None:
            call.output = _read(node.replica, call.kind, call.input[0])
            call.zxid = node.replica.applied
            if call.zxid < call.floor:
                # Replica.sync's promise: it completes once every write committed before it began is applied here.
                self.fail(
                    f"sync returned early: {call.kind}{call.input} at {call.node} began after index {call.floor} "
                    f"was committed, but returned with {call.zxid} applied"
                )
        self._next_op(client)

    def _written(self, client: int, call: Call) -> None:
        output = call.output
        if output is not None and output[0] == "ok" and call.kind in ("create", "set", "tcreate", "tset"):
            path = output[1] if call.kind == "tcreate" else call.input[0]
            if call.kind == "tcreate":
                self.workload.created(path)
            if self.rng.random() < 0.3:
                # Read it back through another node, as a client that moved to another server would.
                kind = "sync_get" if call.kind in ("create", "set") else "tsync_get"
                self._followups[client] = (kind, (path,), call.node.partition("#")[0])
        self._next_op(client)

    def _next_op(self, client: int) -> None:
        # A read-back follows at once; other calls after a think time.
        pause = 0.0005 if client in self._followups else self.rng.expovariate(1 / 0.02)
        self.at(self.now + pause, functools.partial(self._client_step, client))

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
            call.output = result_of(call.kind, completion.value, error)
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
            kinds += ["partition", "partition_leader", "partition_leader", "one_way", "bridge"]
        if config.membership:
            kinds += ["membership", "membership"]
        if config.churn:
            kinds += ["churn", "churn", "churn"]
        if config.pauses:
            kinds += ["pause"]
        if config.clocks:
            kinds += ["clock"]
        if config.transfers:
            kinds += ["transfer"]
        if config.replays:
            kinds += ["replay", "replay"]
        kinds.append("heal")
        kind = self.rng.choice(kinds)
        getattr(self, f"_fault_{kind}")()
        self.at(self.now + self.rng.expovariate(1 / config.fault_interval), self._fault)

    def log_fault(self, text: str) -> None:
        """Note a fault (the last ones are shown with a failure)."""
        self.faults.append(f"{self.now:.3f}s {text}")

    def _fault_crash(self, node: SimNode | None = None) -> None:
        if node is None:
            up = [n for n in self.nodes.values() if n.up]
            if not up:
                return
            node = self.rng.choice(up)
        mode = self.rng.choice(("now", "before_persist", "after_persist", "torn"))
        self.log_fault(f"crash {node.id} ({mode})")
        if mode == "now" or self.now < node.paused_until:
            node.crash()
        else:
            node.crash_mode = mode
            node.tick()  # the next ready decides; a node with nothing to do just crashes on its next one
        if node.up and mode != "now":
            node.crash()
        self._abandon_calls(node.id)
        downtime = self.rng.uniform(0.05, 1.0)
        self.at(self.now + downtime, functools.partial(self._restart, node))

    def _restart(self, node: SimNode) -> None:
        if node.id not in self.nodes or node.up or node.retired:
            return
        self.log_fault(f"restart {node.id}")
        node.start()

    def _fault_partition(self) -> None:
        ids = list(self.nodes)
        self.rng.shuffle(ids)
        cut = self.rng.randint(1, len(ids) - 1)
        groups = [ids[:cut], ids[cut:]]
        self.log_fault(f"partition {groups}")
        self.network.heal(self.now)
        self.network.isolate(groups)

    def _fault_partition_leader(self) -> None:
        leader = self._current_leader()
        if leader is None:
            return
        slow = self.rng.random() < 0.75
        self.log_fault(f"isolate leader {leader}" + (", its clock at 0.1x" if slow else ""))
        if slow:
            # An overloaded leader cut off: its timers run late, so it learns late that it lost the others.
            self.nodes[leader].clock.set_rate(self.now, 0.1)
        self.network.heal(self.now)
        self.network.isolate([[leader], [i for i in self.nodes if i != leader]])

    def _fault_one_way(self) -> None:
        ids = list(self.nodes)
        a, b = self.rng.sample(ids, 2)
        self.log_fault(f"cut {a}->{b}")
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
        self.log_fault(f"bridge {bridge} between {left} and {right}")
        self.network.heal(self.now)
        self.network.isolate([left, right])

    def _fault_heal(self) -> None:
        self.log_fault("heal")
        self.network.heal(self.now)

    def _fault_pause(self) -> None:
        # A process frozen (a stop-the-world pause, a swapped-out VM) for longer than an election timeout, often:
        # on waking it still believes what it believed, while the others moved on.
        running = [n for n in self.nodes.values() if n.available]
        if not running:
            return
        leader = self._current_leader()
        node = self.nodes[leader] if leader is not None and self.rng.random() < 0.5 else self.rng.choice(running)
        length = self.rng.uniform(0.05, 1.5)
        self.log_fault(f"pause {node.id} for {length:.3f}s")
        node.paused_until = self.now + length
        self.at(node.paused_until, node.resume)

    def _fault_clock(self) -> None:
        running = [n for n in self.nodes.values() if n.up]
        if not running:
            return
        node = self.rng.choice(running)
        roll = self.rng.random()
        if roll < 0.5:
            rate = self.rng.choice((0.25, 0.5, 0.8, 1.25, 2.0))
            self.log_fault(f"clock of {node.id} runs at {rate}x")
            node.clock.set_rate(self.now, rate)
        elif roll < 0.75:
            leap = self.rng.uniform(0.1, 1.5)
            self.log_fault(f"monotonic clock of {node.id} jumps {leap:.3f}s")
            node.clock.jump(self.now, leap)
        else:
            step = self.rng.randint(-5000, 5000)
            self.log_fault(f"wall clock of {node.id} steps {step} ms")
            node.clock.wall_offset_ms += step

    def _fault_replay(self) -> None:
        self.log_fault(f"replay {self.network.replay_old(self.now)} old frames")

    def _fault_transfer(self) -> None:
        leader_id = self._current_leader()
        if leader_id is None:
            return
        leader = self.nodes[leader_id].replica
        assert leader is not None
        voters = [v for v in leader.node.status().log_conf_state.voters if v != leader_id]
        if not voters:
            return
        target = self.rng.choice(voters)
        self.log_fault(f"transfer leadership {leader_id} -> {target}")
        leader.transfer_leadership(target)
        self.nodes[leader_id].pump()

    def _fault_churn(self) -> None:
        self.churn.fault()

    def membership_config(self, node: SimNode) -> MembershipConfig:
        """How ``node`` founds or joins the cluster, and how the leader keeps its voters."""
        config = self.config
        contacts = tuple(sorted(n.address for n in self.nodes.values() if n.up and n is not node)) or self.founders
        return MembershipConfig(
            address=node.address,
            founders=self.founders,
            contacts=tuple(sorted(set(contacts) | set(self.founders))),
            wants_vote=not config.churn and node.slot in self.first_voters,
            voters=config.voters if config.churn else None,
            member_timeout=config.member_timeout if config.churn else None,
            founding_grace=0.1,
        )

    def _fault_membership(self) -> None:
        leader_id = self._current_leader()
        if leader_id is None:
            return
        if not self._propose_membership(leader_id):
            return
        if self.rng.random() < 0.5:
            # A second change at once: the leader must refuse it while the first is in flight.
            self._propose_membership(leader_id)

    def _propose_membership(self, leader_id: str) -> bool:
        leader = self.nodes[leader_id].replica
        if leader is None or not leader.is_leader:
            return False
        conf = leader.node.status().log_conf_state
        rng = self.rng
        choice = rng.random()
        change: ConfChange
        if conf.learners and choice < 0.4 and len(conf.voters) < 5:
            # Not a learner gone for good (a wiped disk's old key, a dead worker waiting for the autopilot), and
            # not while too many voters are gone: a promotion that leaves fewer than a majority of the new voters
            # alive costs the cluster its quorum for good, an operator's mistake and not what is tested here.
            alive = [key for key in conf.learners if key in self.nodes and not self.nodes[key].retired]
            if not alive:
                return False
            target = rng.choice(alive)
            voters = [*conf.voters, target]
            living = [v for v in voters if v in self.nodes and not self.nodes[v].retired]
            if len(living) < len(voters) // 2 + 1:
                return False
            change = ConfChange(ConfChangeType.PROMOTE, target)
        elif choice < 0.7 and len(self.nodes) < 7:
            self._next_member += 1
            new_id = f"m{self._next_member}"
            node = SimNode(self, new_id, SimDisk(ConfState()))
            self.nodes[new_id] = node
            node.start()
            self._schedule_ticks(node, self.config.duration + self.config.settle + 3.0)
            change = ConfChange(ConfChangeType.ADD_LEARNER, new_id)
        elif len(conf.voters) > 3:
            # Any voter, the leader too (it manages the cluster without counting itself until the change commits);
            # with churn, not one whose removal leaves fewer than a majority of the voters alive (some may be
            # gone for good, waiting for the autopilot).
            victim = rng.choice(conf.voters)
            if self.config.churn and not self.churn.may_retire(victim):
                return False
            change = ConfChange(ConfChangeType.REMOVE, victim)
        else:
            return False
        try:
            leader.propose_conf_change(change)
        except EmbedZKError as exc:
            self.log_fault(f"membership {change.type.name} {change.node_id} refused: {exc}")
            return False
        self.log_fault(f"membership {change.type.name} {change.node_id}")
        self.nodes[leader_id].pump()
        return True

    def _strike(self, node_id: str, term: int) -> None:
        # A new leader struck down before its first entry is everywhere: what Raft's Figure 8 is made of.
        node = self.nodes.get(node_id)
        if node is None or node.replica is None or node.replica.term != term or not self._load:
            return
        if self.rng.random() < 0.5 and self.config.crashes:
            self.log_fault(f"strike new leader {node_id} of term {term}: crash")
            self._fault_crash(node)
        else:
            self.log_fault(f"strike new leader {node_id} of term {term}: cut off")
            self.network.heal(self.now)
            self.network.isolate([[node_id], [i for i in self.nodes if i != node_id]])

    def new_leader(self, node_id: str, term: int) -> None:
        """``node_id`` leads in ``term``: the first time it is seen, now and then, strike it within moments."""
        if term in self._elected:
            return
        self._elected.add(term)
        if self._load and self.config.strike_rate and self.rng.random() < self.config.strike_rate:
            # Half the strikes land before anything the new leader sent arrived: its first entry stays its own.
            delay = 0.0 if self.rng.random() < 0.5 else self.rng.uniform(0.0, 0.02)
            self.at(self.now + delay, functools.partial(self._strike, node_id, term))

    def _heal_all(self) -> None:
        self.log_fault("heal all, restart all")
        self.network.heal(self.now)
        self.network.profile = NetworkProfile()
        self.churn.heal()
        for node in list(self.nodes.values()):
            node.clock.set_rate(self.now, 1.0)
            if not node.up and not node.retired:
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
            "writes_ok": sum(
                1 for c in known if c.request is not None and c.output and c.output[0] == "ok"
            ),
            "synced_reads_ok": sum(1 for c in known if c.kind in SYNCED_READS and c.output and c.output[0] == "ok"),
            "committed_entries": len(self.invariants.committed),
            "terms_with_leader": len(self.invariants.leaders),
            "faults": len(self.faults),
            "messages": self.network.sent,
            "dropped": self.network.dropped,
            "corrupted": self.network.corrupted,
        }

    # checks --------------------------------------------------------------------------------------------------------

    def fail(self, what: str) -> NoReturn:
        """Raise a SimulationFailure that says what broke and how to replay it."""
        recent = "\n  ".join(self.faults[-12:])
        raise SimulationFailure(
            f"seed {self.config.seed}: {what}\n"
            f"at {self.now:.3f}s; recent faults:\n  {recent}\n"
            f"replay: python -m embedzk.testing.simulate --seed {self.config.seed}"
            + (f" --profile {self.config.profile}" if self.config.profile else "")
        )

    def _check_progress(self, now: float) -> None:
        # Liveness, once healed: a write through the leader and a sync on every member must complete.
        leader = self._current_leader()
        if leader is None:
            self.fail("no leader after the cluster was healed and settled")
        answered: list[Call] = []
        leader_replica = self.nodes[leader].replica
        assert leader_replica is not None
        members = set(leader_replica.conf_state().members())
        probes: list[tuple[SimNode, str, tuple[Any, ...]]] = [(self.nodes[leader], "create", ("/k0", b"probe"))]
        probes += [(node, "sync_get", ("/k0",)) for node in self.nodes.values() if node.up and node.id in members]
        stuck = self._probe(probes, answered, now)
        # A member far behind on a slow link, with the small messages and short pipeline some runs configure, may
        # need longer than one round to catch up: it is making progress while what it applied grows. Ask such a
        # member again, a bounded number of times; a member that applied nothing new in a round is stuck.
        for _round in range(CATCH_UP_ROUNDS):
            if not stuck or any(c.kind != "sync_get" for c in stuck):
                break
            nodes = [self.nodes[c.node.partition("#")[0]] for c in stuck]
            if not all(n.replica is not None and n.replica.applied > self._applied_at_probe[n.id] for n in nodes):
                break
            stuck = self._probe([(n, "sync_get", ("/k0",)) for n in nodes], answered, self.now)
        if stuck:
            self.fail(f"no progress after healing: {[(c.kind, c.node) for c in stuck]} got no answer")
        # Every member holds an open session once healed (sessions lost in faults are opened again), and no
        # session of a process that is gone is left open.
        sessions = leader_replica.tree.sessions()
        for node, kind, _args in probes:
            replica = node.replica
            if kind == "sync_get" and replica is not None and replica.session_id not in sessions:
                self.fail(f"{node.id} has no open session after healing (its session: {replica.session_id})")
        for session_id, (owner, _timeout) in sessions.items():
            holder = self.nodes.get(owner)
            if holder is not None and holder.replica is not None and owner in members:
                if holder.replica.session_id != session_id:
                    self.fail(
                        f"stale session left open: {session_id:#x} of {owner}, whose process now holds "
                        f"{holder.replica.session_id}"
                    )

    def _probe(self, probes: list[tuple[SimNode, str, tuple[Any, ...]]], answered: list[Call], now: float) -> list[Call]:
        """Send each probe (a write, or a sync and a read) and give them PROBE_WINDOW seconds: the calls that got
        no answer. Notes what each node had applied when asked (``_applied_at_probe``)."""
        self._applied_at_probe.clear()
        for node, kind, args in probes:
            replica = node.replica
            assert replica is not None
            self._applied_at_probe[node.id] = replica.applied
            self._request_ids += 1
            # Each probe is a client of its own (negative: the workload's are not), also across rounds.
            call = Call(-1 - len(self.calls), kind, args, self.now, node.name)
            self.calls.append(call)
            then = answered.append if kind != "sync_get" else functools.partial(self._probe_read, answered)
            self._waiting[(node.id, self._request_ids)] = (call, then)
            if kind == "sync_get":
                replica.sync(self._request_ids, PROBE_WINDOW - 0.5)
            else:
                call.request = (node.id, self._request_ids)
                immediate = replica.submit(self._request_ids, to_op(kind, args), PROBE_WINDOW - 0.5)
                if immediate is not None:
                    self.complete(node, immediate)
            node.pump()
        self._run_until(now + PROBE_WINDOW)
        return [c for c in self.calls[-len(probes):] if c.ret is None]

    def _probe_read(self, answered: list[Call], call: Call) -> None:
        node = self.nodes[call.node.partition("#")[0]]
        if call.output is not None and call.output[0] == "ok" and node.replica is not None:
            call.output = _read(node.replica, call.kind, call.input[0])
            call.zxid = node.replica.applied
        answered.append(call)

    def _final_checks(self) -> None:
        up = [n for n in self.nodes.values() if n.replica is not None]
        leader = self._current_leader()
        if leader is None:
            self.fail("no leader after the cluster was healed and settled")
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
        self._check_history(target, [n for n in up if n.id in members])
        self.churn.check()

    def _check_logs(self, up: list[SimNode], members: set[str]) -> None:
        # Log matching: over the indexes two disks both hold, up to the commit point, the terms agree.
        committed = self.invariants.committed
        for node in up:
            if node.id not in members:
                continue
            disk = node.disk
            commit = node.replica.node.status().commit if node.replica else 0
            for index in range(disk.first_index(), min(disk.last_index(), commit) + 1):
                known = committed.get(index)
                if known is not None and disk.term(index) != known[0]:
                    self.fail(f"{node.id} holds term {disk.term(index)} at committed index {index}, not {known[0]}")

    def _check_history(self, last: int, members: list[SimNode]) -> None:
        from embedzk.testing.history_check import check_calls
        from embedzk.testing.logcheck import check_history

        replay, problems = check_history(self.invariants.committed, self.calls, last)
        if problems:
            self.fail(problems[0] + (f"\n(and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
        self._read_back(replay.model, members)
        watch_problems = self.watch_book.judge()
        if watch_problems:
            self.fail(watch_problems[0])
        flat = [c for c in self.calls if c.kind in FLAT_KINDS]
        problem = check_calls(flat, replay.zxids)
        if problem:
            self.fail(problem)

    def _read_back(self, model: Any, members: list[SimNode]) -> None:
        # Every path the committed log leaves, read on every member, and nothing else there.
        for node in members:
            replica = node.replica
            assert replica is not None
            tree = replica.tree
            for path, expected in model.nodes.items():
                if path == "/":
                    continue
                got = _read(replica, "get", path)
                if got != ("ok", (expected.data, expected.version)):
                    self.fail(f"read-back: {node.id} reads {path} as {got}, the committed log gives "
                              f"{(expected.data, expected.version)}")
                if sorted(tree.get_children(path)) != sorted(expected.children):
                    self.fail(f"read-back: {node.id} lists the children of {path} as "
                              f"{sorted(tree.get_children(path))}, the committed log gives {sorted(expected.children)}")
            if tree.node_count() != len(model.nodes):
                self.fail(f"read-back: {node.id} holds {tree.node_count()} znodes, the committed log {len(model.nodes)}")
            if set(tree.sessions()) != set(model.sessions):
                self.fail(f"read-back: {node.id} holds sessions {sorted(tree.sessions())}, the committed log "
                          f"{sorted(model.sessions)}")


def _read(replica: Replica, kind: str, path: str) -> tuple[Any, ...]:
    tree = replica.tree
    if tree.exists(path) is None:
        return ("err", "NoNode")
    if kind == "tsync_children":
        return ("ok", tuple(sorted(tree.get_children(path))))
    data, stat = tree.get(path)
    return ("ok", (data, stat.version))
