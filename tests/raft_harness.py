"""The one harness of the consensus tests (every ``tests/test_raft_*.py`` and the scenarios of
:mod:`tests.raft_scenarios`): a small, synchronous network of RawNodes, and helpers for a lone node.

Each :class:`Driver` does exactly what the package docstring of :mod:`embedzk.consensus` tells a driver to do:
install a received snapshot, persist entries and hard state, then hand out messages, apply committed entries
(membership changes through ``apply_conf_change``), and advance; it can stop at any point of a Ready, as a crash
would (:meth:`Driver.process_until`). :class:`Network` delivers messages in FIFO order (or not: tests may drop,
duplicate, reorder and partition) and checks two safety properties as it goes: at most one leader per term, and
every replica applies the same entry at the same index. An :class:`Observer` sees every Ready of every driver, for
checks of its own (the random runs) or a trace (the scenarios).

A node outside any Network: :func:`fresh` (empty log), :func:`node_with_log` / :func:`storage_with_log` (a given
log), carried through its Readies by :func:`drive` (persisting) or :func:`drain` (persisting nothing, returning
the messages).

Test modules import it as ``tests.raft_harness`` (see ``tests/conftest.py``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import cbor2

from embedzk.consensus import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    RawNode,
    Ready,
    ReadState,
    SnapshotMeta,
    StateRole,
    decode_conf_change,
)
from embedzk.persist.memory import MemoryStorage

__all__ = [
    "ABC",
    "CrashPoint",
    "Driver",
    "Network",
    "Observer",
    "SafetyError",
    "conf_change",
    "drain",
    "drive",
    "fresh",
    "log_terms",
    "node_with_log",
    "storage_with_log",
]

#: The three voters most tests run.
ABC = ["a", "b", "c"]

#: Where in a Ready a driver may crash: before persisting it, after persisting but before sending its messages, or
#: after sending but before applying its committed entries.
CrashPoint = Literal["before-persist", "before-send", "before-apply"]

# --- a node on its own --------------------------------------------------------------------------------------------


def fresh(id: str = "a", voters: tuple[str, ...] = ("a", "b", "c"), **cfg: object) -> tuple[RawNode, MemoryStorage]:
    """A new node of ``voters`` with an empty log, and its storage."""
    storage = MemoryStorage(ConfState(voters=voters))
    return RawNode(Config(id=id, **cfg), storage), storage  # type: ignore[arg-type]


def storage_with_log(
    terms: list[int], term: int, voters: Iterable[str] = ("a", "b", "c"), vote: str | None = None
) -> MemoryStorage:
    """A storage whose log holds entries 1.. with ``terms`` (no data), in ``term``."""
    storage = MemoryStorage(ConfState(voters=tuple(voters)))
    storage.append([Entry(term=t, index=i + 1) for i, t in enumerate(terms)], HardState(term=term, vote=vote))
    return storage


def node_with_log(id: str, terms: list[int], term: int, vote: str | None = None, **cfg: object) -> RawNode:
    """A node of {a, b, c} whose log holds entries 1.. with ``terms``, in ``term``."""
    return RawNode(Config(id=id, **cfg), storage_with_log(terms, term, vote=vote))  # type: ignore[arg-type]


def log_terms(node: RawNode) -> list[int]:
    """The terms of every entry ``node`` holds, from its first index."""
    log = node.raft.log
    return [log.term(i) for i in range(log.first_index(), log.last_index() + 1)]


def drive(node: RawNode, storage: MemoryStorage | None) -> tuple[list[Message], list[Entry]]:
    """Carry out every Ready of a node that is not part of a Network: persist (unless ``storage`` is None: a node
    whose disk does not matter to the test), collect messages and committed entries (membership changes
    applied), advance."""
    msgs: list[Message] = []
    applied: list[Entry] = []
    while node.has_ready():
        rd = node.ready()
        msgs.extend(rd.early_messages)
        if storage is not None:
            if rd.snapshot is not None:
                storage.install_snapshot(*rd.snapshot)
            if rd.entries or rd.hard_state is not None:
                storage.append(rd.entries, rd.hard_state)
        msgs.extend(rd.messages)
        for e in rd.committed_entries:
            cc = decode_conf_change(e)
            if cc is not None:
                node.apply_conf_change(cc)
            applied.append(e)
        node.advance(rd)
    return msgs, applied


def drain(node: RawNode) -> list[Message]:
    """Carry out the node's Readies as :func:`drive` does but persisting nothing (for a node whose disk does not
    matter to the test); return its messages."""
    return drive(node, None)[0]


def conf_change(kind: str, node: str) -> ConfChange:
    """A ConfChange from a short name: add, learner, remove, promote."""
    types = {
        "add": ConfChangeType.ADD_VOTER,
        "learner": ConfChangeType.ADD_LEARNER,
        "remove": ConfChangeType.REMOVE,
        "promote": ConfChangeType.PROMOTE,
    }
    return ConfChange(type=types[kind], node_id=node)


class SafetyError(AssertionError):
    """A Raft safety property was violated."""


class Observer:
    """Sees every Ready a :class:`Driver` carries out (set :attr:`Network.observer`); does nothing by default."""

    def on_ready(self, driver: Driver, rd: Ready) -> None:
        """``driver`` took ``rd`` and has done nothing with it yet (but record a new leader)."""

    def on_send(self, driver: Driver, msgs: Sequence[Message]) -> None:
        """``rd.messages`` leave, now that ``rd`` is durable (not called for ``rd.early_messages``)."""

    def on_advance(self, driver: Driver, rd: Ready) -> None:
        """``driver`` carried out ``rd`` and advanced its node."""


class Driver:
    """One replica: a RawNode, its MemoryStorage and a trivial state machine (the list of applied data)."""

    def __init__(self, network: Network, id: str, storage: MemoryStorage, **config: object) -> None:
        self.network = network
        self.id = id
        self.storage = storage
        self.config = config
        self.applied: list[bytes] = []  # data of applied normal entries with data, in order
        self.applied_index = 0
        self.conf_state = storage.snapshot_meta().conf_state
        self.read_states: list[ReadState] = []
        self.readies = 0
        self._restore_state_machine()
        self.node = self._make_node()

    def _make_node(self) -> RawNode:
        cfg = dict(self.config)
        cfg.setdefault("rng", random.Random(f"{self.network.seed}-{self.id}-{self.network.restarts}"))
        return RawNode(Config(id=self.id, applied=self.applied_index, **cfg), self.storage)  # type: ignore[arg-type]

    def _restore_state_machine(self) -> None:
        meta = self.storage.snapshot_meta()
        chunks = self.storage.snapshot_chunks()
        self.applied = list(cbor2.loads(b"".join(chunks))) if chunks else []
        self.applied_index = meta.index
        self.conf_state = meta.conf_state

    def restart(self) -> None:
        """Crash and restart from storage (which holds everything the driver persisted)."""
        self._restore_state_machine()
        self.read_states = []
        self.node = self._make_node()

    def take_snapshot(self, compact: bool = True, chunk_bytes: int = 16) -> SnapshotMeta:
        """Snapshot the state machine at the applied index (in chunks of ``chunk_bytes``) and compact the log."""
        index = self.applied_index
        meta = SnapshotMeta(index=index, term=self.storage.term(index), conf_state=self.conf_state)
        data = cbor2.dumps(self.applied)
        chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
        self.storage.save_snapshot(meta, chunks)
        if compact:
            self.storage.compact(index)
        return meta

    def process(self) -> list[Message]:
        """Carry out every Ready; returns the messages to send."""
        out, _ = self.process_until(None)
        return out

    def process_until(self, crash_at: CrashPoint | None) -> tuple[list[Message], bool]:
        """Carry out every Ready, or, with ``crash_at``, stop at that point of the first one as a crash would (the
        caller then restarts the node). Returns the messages sent so far and whether it stopped at ``crash_at``."""
        out: list[Message] = []
        node = self.node
        observer = self.network.observer
        while node.has_ready():
            rd = node.ready()
            self.readies += 1
            if rd.soft_state is not None and rd.soft_state.role == StateRole.LEADER:
                self.network.record_leader(node.term, self.id)
            if observer is not None:
                observer.on_ready(self, rd)
            # 0. a leader's appends and heartbeats may leave before its own disk write.
            out.extend(rd.early_messages)
            if crash_at == "before-persist":
                return out, True
            # 1. the snapshot, 2. entries and hard state: durable before any other message leaves.
            if rd.snapshot is not None:
                meta, chunks = rd.snapshot
                self.storage.install_snapshot(meta, chunks)
                self.applied = list(cbor2.loads(b"".join(chunks))) if chunks else []
                self.applied_index = meta.index
                self.conf_state = meta.conf_state
            if rd.entries or rd.hard_state is not None:
                self.storage.append(rd.entries, rd.hard_state)
            if crash_at == "before-send":
                return out, True
            # 3. messages.
            if observer is not None:
                observer.on_send(self, rd.messages)
            out.extend(rd.messages)
            if crash_at == "before-apply":
                return out, True
            # 4. committed entries.
            for e in rd.committed_entries:
                self._apply(e)
            self.read_states.extend(rd.read_states)
            node.advance(rd)
            if observer is not None:
                observer.on_advance(self, rd)
        return out, False

    def _apply(self, e: Entry) -> None:
        if e.index != self.applied_index + 1:
            raise SafetyError(f"{self.id} applies {e.index} after {self.applied_index}")
        self.network.record_applied(self.id, e)
        self.applied_index = e.index
        if e.type == EntryType.CONF_CHANGE:
            cc = decode_conf_change(e)
            if cc is not None:
                self.conf_state = self.node.apply_conf_change(cc)
        elif e.data:
            self.applied.append(e.data)


class Network:
    """Drivers joined by a message queue, with faults on demand."""

    def __init__(
        self,
        ids: Iterable[str],
        learners: Iterable[str] = (),
        seed: int = 0,
        storages: dict[str, MemoryStorage] | None = None,
        **config: object,
    ) -> None:
        ids = list(ids)
        learners = list(learners)
        self.seed = seed
        self.restarts = 0
        self.rng = random.Random(seed)
        self.config = config
        cs = ConfState(voters=tuple(ids), learners=tuple(learners))
        self.drivers: dict[str, Driver] = {}
        for id in ids + learners:
            storage = (storages or {}).get(id) or MemoryStorage(cs)
            self.drivers[id] = Driver(self, id, storage, **config)
        self.queue: deque[Message] = deque()
        self.cut: set[tuple[str, str]] = set()
        #: Called for every message about to be delivered; returning False drops it.
        self.filter: Callable[[Message], bool] | None = None
        #: Sees every Ready of every driver.
        self.observer: Observer | None = None
        self.delivered: list[Message] = []
        self.record_delivered = False
        self.leaders: dict[int, str] = {}
        self.history: dict[int, tuple[int, EntryType, bytes]] = {}

    # --- safety bookkeeping ----------------------------------------------------------------------------------

    def record_leader(self, term: int, id: str) -> None:
        """Election safety: at most one leader per term (thesis 3.6.3, property 1)."""
        known = self.leaders.setdefault(term, id)
        if known != id:
            raise SafetyError(f"two leaders in term {term}: {known} and {id}")

    def record_applied(self, id: str, e: Entry) -> None:
        """State machine safety: every replica applies the same entry at an index."""
        record = (e.term, e.type, e.data)
        known = self.history.setdefault(e.index, record)
        if known != record:
            raise SafetyError(f"{id} applied {record} at {e.index}, another replica applied {known}")

    # --- membership of the harness ---------------------------------------------------------------------------

    def __getitem__(self, id: str) -> RawNode:
        return self.drivers[id].node

    def driver(self, id: str) -> Driver:
        """The driver of ``id``."""
        return self.drivers[id]

    def add_node(self, id: str, conf_state: ConfState | None = None, **config: object) -> Driver:
        """A new, empty replica (to be added by a membership change). It knows no members until the leader
        tells it (through the log or a snapshot)."""
        cfg = dict(self.config)
        cfg.update(config)
        driver = Driver(self, id, MemoryStorage(conf_state or ConfState()), **cfg)
        self.drivers[id] = driver
        return driver

    def restart(self, id: str) -> None:
        """Crash ``id`` and restart it from its storage; messages in flight to it are lost."""
        self.restarts += 1
        self.queue = deque(m for m in self.queue if m.to != id)
        self.drivers[id].restart()

    # --- faults ------------------------------------------------------------------------------------------------

    def isolate(self, id: str) -> None:
        """Cut every link to and from ``id``."""
        for other in self.drivers:
            if other != id:
                self.cut.add((id, other))
                self.cut.add((other, id))

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups."""
        sets = [set(g) for g in groups]
        for a in sets:
            for b in sets:
                if a is not b:
                    for x in a:
                        for y in b:
                            self.cut.add((x, y))

    def heal(self) -> None:
        """Restore every link."""
        self.cut.clear()

    # --- running -----------------------------------------------------------------------------------------------

    def process(self, ids: Iterable[str] | None = None) -> None:
        """Let each driver carry out its Ready; queue the messages."""
        for id in list(ids if ids is not None else self.drivers):
            self.queue.extend(self.drivers[id].process())

    def deliver(self, m: Message) -> None:
        """Deliver one message (subject to cuts and the filter)."""
        if (m.frm, m.to) in self.cut or m.to not in self.drivers:
            return
        if self.filter is not None and not self.filter(m):
            return
        if self.record_delivered:
            self.delivered.append(m)
        self.drivers[m.to].node.step(m)

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process and deliver until nothing moves."""
        for _ in range(max_rounds):
            self.process()
            if not self.queue:
                return
            while self.queue:
                self.deliver(self.queue.popleft())
        raise AssertionError("the network did not settle")

    def tick(self, n: int = 1, ids: Iterable[str] | None = None) -> None:
        """Tick the nodes ``n`` times, settling the network after each tick."""
        for _ in range(n):
            for id in list(ids if ids is not None else self.drivers):
                self.drivers[id].node.tick()
            self.stabilize()

    def take(self) -> list[Message]:
        """Process every node and take the queued messages without delivering them."""
        self.process()
        out = list(self.queue)
        self.queue.clear()
        return out

    def elect(self, id: str) -> None:
        """Make ``id`` campaign and settle; it should then lead."""
        self.drivers[id].node.campaign()
        self.stabilize()

    def leader(self) -> str | None:
        """The node that is leader in the highest term, if any."""
        best: tuple[int, str] | None = None
        for id, d in self.drivers.items():
            if d.node.role == StateRole.LEADER and (best is None or d.node.term > best[0]):
                best = (d.node.term, id)
        return best[1] if best else None

    def propose(self, id: str, data: bytes) -> None:
        """Propose ``data`` on ``id`` and settle."""
        self.drivers[id].node.propose(data)
        self.stabilize()

    def applied(self, id: str) -> list[bytes]:
        """What ``id`` applied (data of normal entries)."""
        return self.drivers[id].applied

    def msgs_of(self, msgs: Iterable[Message], kind: MessageType) -> list[Message]:
        """The messages of one type."""
        return [m for m in msgs if m.type == kind]
