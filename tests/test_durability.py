"""Durability where it is decided: the real loop, the real storage, and a disk that forgets what was not synced.

Raft's proof assumes that whatever a node promised (its vote, the entries it acknowledged) survives its crash. A
crash test with real processes cannot tell whether that holds: a SIGKILL keeps the operating system's page cache,
so a write made without ``sync=True`` survives it as well as a synced one. The simulator models the disk, but
drives the replicas with its own pump. Here the pieces that decide durability in production run as they are:
real Peers (each one's :class:`embedzk._loop.Loop` driving a real Replica) write through the real
:class:`~embedzk.persist.leveldb.LevelDBStorage` into real LevelDB directories, in a LocalCluster.

Two things are wrapped, by monkeypatching (the library has no test-only branch):

- each member's LevelDB handle (``embedzk.persist.leveldb._open_db``): every write batch still goes to LevelDB,
  and is also recorded into the member's :class:`DurableImage`, LevelDB's model of what a power cut leaves: a batch
  written with ``sync=True`` is durable, with every batch written before it, once the call returns; a batch written
  with ``sync=False`` sits in the page cache and is lost;
- each member's transport (LocalCluster's partitionable wrapper): every frame a member sends is decoded, and every
  message in it checked, at that moment, against the sender's durable image: the driver contract of
  :class:`embedzk.consensus.rawnode.Ready` (answers only after the Ready they belong to is durable).

A member "crashes" at a chosen point (right after it sent a vote grant or an acknowledgement): from then on it
sends nothing and its next write fails, as a process gone at once. It restarts from its durable image alone (the
directory is rebuilt from it), and must still hold every vote and acknowledged entry, and the cluster must still
hold every write it confirmed.

The last tests prove the check can fail: with every LevelDB write forced to ``sync=False`` (what a storage that
forgets to sync does), or with the driver sending its answers before its write, the same run reports it.
"""

from __future__ import annotations

import collections
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plyvel
import pytest

import embedzk.persist.leveldb as leveldb_module
from embedzk.codec import decode
from embedzk.consensus.messages import Message, MessageType
from embedzk.consensus.rawnode import RawNode, Ready
from embedzk.consensus.types import HardState
from embedzk.errors import StorageError
from embedzk.membership.identity import MemberRecord, user_id
from embedzk.membership.messages import FoundAccepted, FoundPromise
from embedzk.peer import Peer
from embedzk.persist.leveldb import LevelDBStorage
from embedzk.persist.records import CompactionPoint, unpack_entry, unseal
from embedzk.replica.messages import Bundle
from embedzk.testing.cluster import LocalCluster, _PartitionableTransport

pytestmark = pytest.mark.timeout(180)

# LevelDBStorage's key layout (see its module docstring); the values are sealed (records.seal).
_HARD_STATE = b"m/hardstate"
_MEMBER = b"m/member"
_COMPACTION = b"m/compact"


def _entry_key(index: int) -> bytes:
    return b"e" + index.to_bytes(8, "big")


class Crashed(Exception):
    """Raised into a crashed member's loop at its next disk write: the process is gone, nothing more is written."""


# --- what a disk holds ----------------------------------------------------------------------------------------------


class _Records:
    """Reads LevelDBStorage's records out of a key-value view (``get(key) -> value | None``)."""

    def get(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    def _payload(self, key: bytes) -> bytes | None:
        value = self.get(key)
        return None if value is None else unseal(key, value)

    def hard_state(self) -> HardState:
        payload = self._payload(_HARD_STATE)
        return HardState() if payload is None else decode(payload)

    def member_record(self) -> MemberRecord | None:
        payload = self._payload(_MEMBER)
        return None if payload is None else decode(payload)

    def compaction(self) -> CompactionPoint:
        payload = self._payload(_COMPACTION)
        return CompactionPoint(0, 0) if payload is None else decode(payload)

    def term(self, index: int) -> int | None:
        """The term of entry ``index`` as held (the compaction point's included); None if not held."""
        point = self.compaction()
        if index == point.index:
            return point.term
        payload = self._payload(_entry_key(index))
        return None if payload is None else unpack_entry(payload).term

    def holds(self, index: int, term: int | None) -> bool:
        """Whether entry ``index`` of term ``term`` is held, or covered by the snapshot (compacted away)."""
        if index < self.compaction().index:
            return True
        return self.term(index) == term

    def last_index(self) -> int:
        index = self.compaction().index
        while self.get(_entry_key(index + 1)) is not None:
            index += 1
        return index


class LiveDisk(_Records):
    """What the member's LevelDB holds now, synced or not: what the node itself reads and believes."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value


class DurableImage(_Records):
    """What one member's disk would hold after a power cut now: every batch up to the last synced one.

    Batches are applied under a lock, whole, so that another member's loop thread (the commit check reads every
    voter's image) never sees half of one.
    """

    def __init__(self, keys: dict[bytes, bytes]) -> None:
        self._lock = threading.Lock()
        self._durable = dict(keys)
        self._pending: list[list[tuple[bytes, bytes | None]]] = []
        self.synced = 0
        self.unsynced = 0

    def written(self, ops: list[tuple[bytes, bytes | None]], sync: bool) -> None:
        """A batch reached LevelDB (``sync``: and the disk, with every batch before it)."""
        with self._lock:
            if not sync:
                self.unsynced += 1
                self._pending.append(ops)
                return
            self.synced += 1
            for batch in [*self._pending, ops]:
                for key, value in batch:
                    if value is None:
                        self._durable.pop(key, None)
                    else:
                        self._durable[key] = value
            self._pending = []

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._durable.get(key)

    def keys(self) -> dict[bytes, bytes]:
        """A copy of every durable key and value."""
        with self._lock:
            return dict(self._durable)


class _RecordingBatch:
    """A LevelDB write batch that is recorded into the member's image once written (refused once it crashed)."""

    def __init__(self, db: RecordingDB, inner: Any, sync: bool) -> None:
        self._db = db
        self._inner = inner
        self._sync = sync
        self._ops: list[tuple[bytes, bytes | None]] = []
        self._batch: Any = None

    def __enter__(self) -> _RecordingBatch:
        self._batch = self._inner.__enter__()
        return self

    def put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)
        self._ops.append((key, value))

    def delete(self, key: bytes) -> None:
        self._batch.delete(key)
        self._ops.append((key, None))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        if exc_type is None and self._db.pid in self._db.harness.crashed:
            crash = Crashed(f"{self._db.pid} crashed: this write never happens")
            self._inner.__exit__(Crashed, crash, None)  # transaction=True: LevelDB discards the batch
            raise crash
        result = self._inner.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._db.image.written(self._ops, self._sync)
        return result


class RecordingDB:
    """A plyvel DB whose write batches are recorded into a :class:`DurableImage`; everything else passes through."""

    def __init__(self, db: Any, pid: str, image: DurableImage, harness: DurabilityHarness) -> None:
        self._db = db
        self.pid = pid
        self.image = image
        self.harness = harness

    def write_batch(self, *, transaction: bool = False, sync: bool = False, **options: Any) -> _RecordingBatch:
        return _RecordingBatch(self, self._db.write_batch(transaction=transaction, sync=sync, **options), sync)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


# --- the harness ----------------------------------------------------------------------------------------------------


@dataclass
class Promises:
    """What a member told others that its disk must keep: its latest vote and acknowledgement (term, ...)."""

    #: (term, candidate): a vote granted, or a candidate's vote for itself.
    vote: tuple[int, str] | None = None
    #: (term, index, term of the entry at index): the highest acknowledgement in its latest term.
    ack: tuple[int, int, int] | None = None


class DurabilityHarness:
    """Wraps every member's LevelDB and transport of the LocalClusters of one test, and checks the driver contract.

    ``violations`` collects every message that left before what it depends on was durable; ``checked`` counts
    the checks made, by kind, so a test can tell that its run exercised them.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, voters: Iterable[str]) -> None:
        self.voters = set(voters)
        self.images: dict[str, DurableImage] = {}
        self.live: dict[str, LiveDisk] = {}
        self.crashed: set[str] = set()
        self.violations: list[str] = []
        self.checked: collections.Counter[str] = collections.Counter()
        self.promises: dict[str, Promises] = collections.defaultdict(Promises)
        # The last frames sent, for the report of a violation.
        self.recent: collections.deque[str] = collections.deque(maxlen=12)
        self._trigger: tuple[frozenset[str], Callable[[Any], bool]] | None = None
        self.crash_event = threading.Event()
        self.crashed_by_trigger: str | None = None
        self._lock = threading.Lock()

        original_open = leveldb_module._open_db
        original_send = _PartitionableTransport.send

        def open_db(path: Path, *, create: bool) -> Any:
            db = original_open(path, create=create)
            pid = Path(path).name
            # What the directory holds when it is opened is durable: written before a clean stop (the page cache
            # reaches the disk eventually), or rebuilt from the image a crash left.
            with db.iterator() as it:
                image = DurableImage(dict(it))
            with self._lock:
                self.images[pid] = image
                self.live[pid] = LiveDisk(db)
                self.crashed.discard(pid)
            return RecordingDB(db, pid, image, self)

        def send(transport: _PartitionableTransport, to: str, frame: bytes) -> bool:
            pid = user_id(transport.id)
            if pid in self.crashed:
                return False  # the process is gone
            messages = self._check_frame(pid, frame)
            sent: bool = original_send(transport, to, frame)
            self._maybe_crash(pid, messages)
            return sent

        monkeypatch.setattr(leveldb_module, "_open_db", open_db)
        monkeypatch.setattr(_PartitionableTransport, "send", send)

    # crashes -----------------------------------------------------------------------------------------------------

    def crash(self, pid: str) -> None:
        """``pid``'s process is gone, now: it sends nothing more and its next write fails."""
        self.crashed.add(pid)

    def crash_after(self, pids: Iterable[str], predicate: Callable[[Any], bool]) -> None:
        """Crash the first of ``pids`` that sends a message matching ``predicate``, right after that send."""
        self.crash_event.clear()
        self.crashed_by_trigger = None
        self._trigger = (frozenset(pids), predicate)

    def _maybe_crash(self, pid: str, messages: list[Any]) -> None:
        with self._lock:
            trigger = self._trigger
            if trigger is None or pid not in trigger[0] or not any(trigger[1](m) for m in messages):
                return
            self._trigger = None
            self.crashed.add(pid)
            self.crashed_by_trigger = pid
        self.crash_event.set()

    # the contract, at every send ---------------------------------------------------------------------------------

    def _check_frame(self, pid: str, frame: bytes) -> list[Any]:
        msg = decode(frame)
        messages = list(msg.messages) if isinstance(msg, Bundle) else [msg]
        self.recent.append(f"{pid}: {messages!r}"[:300])
        for m in messages:
            problem = self._contract(pid, m)
            if problem is not None:
                self.violations.append(f"{pid}: {problem}")
        return messages

    def _contract(self, pid: str, m: Any) -> str | None:
        """What is wrong with ``pid`` sending ``m`` now, given its durable image (None: nothing)."""
        image = self.images[pid]
        if isinstance(m, FoundPromise):
            # A founder's promise is a Paxos acceptor's: it must outlive a crash, as a Raft vote (MemberRecord).
            self.checked["founding promise"] += 1
            record = image.member_record()
            if record is None or record.promised is None or record.promised < m.ballot:
                return f"founding promise of {m.ballot} sent, but the disk holds {record}"
            return None
        if isinstance(m, FoundAccepted):
            self.checked["founding acceptance"] += 1
            record = image.member_record()
            if record is None or record.accepted_ballot is None or record.accepted_ballot < m.ballot:
                return f"founding acceptance of {m.ballot} sent, but the disk holds {record}"
            return None
        if not isinstance(m, Message) or m.type in (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP):
            return None  # a pre-vote changes no state; other messages promise nothing about the disk
        hs = image.hard_state()
        if m.type is MessageType.SNAP:
            self.checked["snapshot chunk"] += 1
        if m.type is MessageType.VOTE:
            # A candidate's vote for itself: forgotten, it could vote for another candidate in the same term.
            self.checked["vote request"] += 1
            self._promise_vote(pid, m.term, m.frm)
            if hs.term < m.term or (hs.term == m.term and hs.vote != m.frm):
                return f"vote request {m!r} sent, but the disk holds term {hs.term}, vote {hs.vote}"
        elif m.type is MessageType.VOTE_RESP and not m.reject:
            self.checked["vote grant"] += 1
            self._promise_vote(pid, m.term, m.to)
            if hs.term < m.term or (hs.term == m.term and hs.vote != m.to):
                return f"vote grant {m!r} sent, but the disk holds term {hs.term}, vote {hs.vote}"
        elif m.type is MessageType.APP_RESP and not m.reject:
            self.checked["acknowledgement"] += 1
            live = self.live[pid]
            term = live.term(m.index)
            if term is None and m.index > live.compaction().index:
                return f"acknowledgement {m!r} sent before entry {m.index} was even written"
            if term is None:
                return None  # the log moved on since (a snapshot overtook it): nothing left to promise
            self._promise_ack(pid, m.term, m.index, term)
            if not image.holds(m.index, term) or hs.term < m.term:
                return (
                    f"acknowledgement {m!r} of entry {m.index} (term {term}) sent, but the disk holds entries up "
                    f"to {image.last_index()}, term {hs.term}"
                )
        # Every message carries its sender's term, which it must not forget (it would accept a stale leader, or
        # vote again in that term): the leader's appends too, whose term was durable since its campaign.
        if m.type in (MessageType.APP, MessageType.HEARTBEAT) and m.commit:
            problem = self._check_commit(pid, m)
            if problem is not None:
                return problem
        self.checked["term"] += 1
        if m.term > hs.term:
            return f"{m!r} sent in term {m.term}, but the disk holds term {hs.term} (vote {hs.vote})"
        return None

    def _check_commit(self, pid: str, m: Message) -> str | None:
        # An entry is committed once a majority of the voters hold it durably (the leader counts itself only after
        # its own write): no commit index may leave before that is true.
        term = self.live[pid].term(m.commit)
        if term is None:
            return None  # compacted: committed long ago
        self.checked["commit"] += 1
        holders = sorted(q for q in self.voters if q in self.images and self.images[q].holds(m.commit, term))
        if 2 * len(holders) <= len(self.voters):
            return f"{m!r} announces commit {m.commit}, but only {holders} hold entry {m.commit} on disk"
        return None

    def _promise_vote(self, pid: str, term: int, candidate: str) -> None:
        promises = self.promises[pid]
        if promises.vote is None or promises.vote[0] <= term:
            promises.vote = (term, candidate)

    def _promise_ack(self, pid: str, term: int, index: int, entry_term: int) -> None:
        promises = self.promises[pid]
        if promises.ack is None or (promises.ack[0], promises.ack[1]) <= (term, index):
            promises.ack = (term, index, entry_term)

    # after a crash ------------------------------------------------------------------------------------------------

    def restore(self, pid: str, directory: Path, cluster_id: str) -> list[str]:
        """Replace ``pid``'s directory by its durable image, as the machine finds it after the crash, and check
        that the real storage reads back every promise ``pid`` made. Returns what was lost."""
        keys = self.images[pid].keys()
        shutil.rmtree(directory)
        if not keys:
            return [f"{pid} restarts on an empty disk, having promised {self.promises[pid]}"]
        db = plyvel.DB(str(directory), create_if_missing=True)
        with db.write_batch(transaction=True, sync=True) as batch:
            for key, value in keys.items():
                batch.put(key, value)
        db.close()
        try:
            storage = LevelDBStorage.open(directory, cluster_id=cluster_id, peer_id=pid, create=False)
        except StorageError as exc:
            return [f"{pid} cannot restart from its disk: {exc}"]
        try:
            return self._lost(pid, storage)
        finally:
            storage.close()

    def _lost(self, pid: str, storage: LevelDBStorage) -> list[str]:
        hs = storage.initial_state()[0]
        promises = self.promises[pid]
        lost = []
        if promises.vote is not None:
            self.checked["vote kept"] += 1
            term, candidate = promises.vote
            if hs.term < term or (hs.term == term and hs.vote != candidate):
                lost.append(
                    f"vote not durable: {pid} voted for {candidate} in term {term}, but restarts with term "
                    f"{hs.term} and vote {hs.vote}"
                )
        if promises.ack is not None:
            self.checked["acknowledgement kept"] += 1
            term, index, entry_term = promises.ack
            held = index < storage.first_index() or (
                index <= storage.last_index() and storage.term(index) == entry_term
            )
            if hs.term < term or (hs.term == term and not held):
                lost.append(
                    f"acknowledged entries lost: {pid} acknowledged entries up to {index} in term {term}, but "
                    f"restarts in term {hs.term} holding entries up to {storage.last_index()}"
                )
        return lost

    def report(self) -> str:
        """The violations, with the last frames sent before the check."""
        shown = "\n".join(self.violations[:10])
        recent = "\n".join(self.recent)
        return f"{len(self.violations)} violations:\n{shown}\nlast frames sent:\n{recent}"


# --- the scenario ---------------------------------------------------------------------------------------------------


def is_ack_from(index: int) -> Callable[[Any], bool]:
    """A successful append acknowledgement covering ``index``."""

    def match(m: Any) -> bool:
        return isinstance(m, Message) and m.type is MessageType.APP_RESP and not m.reject and m.index >= index

    return match


def is_vote_grant(m: Any) -> bool:
    """A granted (real, not pre-) vote."""
    return isinstance(m, Message) and m.type is MessageType.VOTE_RESP and not m.reject


def leader_first_index(peer: Peer) -> int:
    """The first entry ``peer`` still holds in its log (the ones before it are in its snapshot)."""
    storage = peer._storage
    assert storage is not None
    return storage.first_index()


def crash_and_restore(
    c: LocalCluster, harness: DurabilityHarness, pid: str, data_dir: Path, cluster_id: str
) -> list[str]:
    """Stop ``pid`` as a crash leaves it (its session left to expire) and rebuild its directory from its image."""
    harness.crash(pid)
    c.stop_member(pid, close_session=False)
    return harness.restore(pid, data_dir / pid, cluster_id)


def write(peer: Peer, paths: Iterable[str]) -> list[str]:
    """Create ``paths`` through ``peer`` (pipelined); the paths confirmed."""
    futures = [peer.create_async(path, b"x") for path in paths]
    return [future.result(30) for future in futures]


def run_crashes(c: LocalCluster, harness: DurabilityHarness, data_dir: Path, *, to_the_end: bool) -> list[str]:
    """A follower crashed right after an acknowledgement, then (``to_the_end``) a voter right after it granted its
    vote in the election that replaces a crashed leader; each restarts from its durable image. Returns what the
    restarted members lost (empty when every promise was durable)."""
    cluster_id = c.peers[0].cluster
    leader = c.leader()
    leader.ensure_path("/d")
    confirmed = write(leader, [f"/d/{i:04}" for i in range(10)])

    # A follower crashes right after it acknowledged the next write: the write commits through the other one.
    follower = next(p.id for p in c.voters if p is not leader)
    next_index = leader.stats()["commit_index"] + 1
    harness.crash_after([follower], is_ack_from(next_index))
    confirmed += write(leader, ["/d/0010"])
    assert harness.crash_event.wait(30), "the follower never acknowledged the write"
    lost = crash_and_restore(c, harness, follower, data_dir, cluster_id)
    if lost or not to_the_end:
        return lost
    # Cut off while it is away: otherwise the transport queues what the leader sends it meanwhile (entries it
    # still held then), and the follower would catch up from that backlog rather than from the snapshot.
    c.isolate(follower)

    # Past the entries kept behind a snapshot (ReplicaConfig.keep_entries, 1,000) while it is away: it comes back
    # to a log compacted past its own, and installs the leader's snapshot.
    # Snapshots are taken as the log grows, so how far the log is compacted depends on timing: write until the
    # leader no longer holds the entry after the follower's last one (at most ten more batches).
    held = harness.images[follower].last_index()
    written = 11
    for _ in range(16):
        if written >= 1200 and leader_first_index(leader) > held + 1:
            break
        confirmed += write(leader, [f"/d/{i:04}" for i in range(written, written + 200)])
        written += 200
    assert leader_first_index(leader) > held + 1, "the leader never compacted its log past the absent follower's"
    c.heal()
    back = c.restart_member(follower)
    back.sync()
    assert sorted(back.get_children("/d")) == sorted(p.rsplit("/", 1)[1] for p in confirmed)

    # The leader crashes; the first voter to grant its vote in the election that follows crashes right after.
    old_leader = leader.id
    others = [p.id for p in c.voters if p.id != old_leader]
    harness.crash_after(others, is_vote_grant)
    lost = crash_and_restore(c, harness, old_leader, data_dir, cluster_id)
    assert harness.crash_event.wait(30), "no vote was granted after the leader crashed"
    granter = harness.crashed_by_trigger
    assert granter is not None
    lost += crash_and_restore(c, harness, granter, data_dir, cluster_id)
    if lost:
        return lost

    # Back from their images, the three agree, and every write confirmed is there, on each.
    c.restart_member(granter)
    c.restart_member(old_leader)
    c.wait_connected(30)
    confirmed += write(c.leader(), ["/d/9999"])
    for peer in c.peers:
        peer.sync()
        assert sorted(peer.get_children("/d")) == sorted(p.rsplit("/", 1)[1] for p in confirmed), peer.id
    return []


def durable_cluster(data_dir: Path) -> LocalCluster:
    # Snapshots often, so that the follower that was away comes back to a compacted log.
    return LocalCluster(n=3, data_dir=data_dir, snapshot_entries=200)


# --- the tests ------------------------------------------------------------------------------------------------------


def test_nothing_leaves_before_it_is_durable_and_restarts_keep_every_promise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = DurabilityHarness(monkeypatch, ["p0", "p1", "p2"])
    with durable_cluster(tmp_path) as c:
        lost = run_crashes(c, harness, tmp_path, to_the_end=True)
    assert lost == []
    assert not harness.violations, harness.report()
    # The run exercised every check it claims: votes (granted and asked for), acknowledgements, commit indexes,
    # founding, and the promises read back after each crash.
    for kind in (
        "vote request",
        "vote grant",
        "acknowledgement",
        "commit",
        "snapshot chunk",
        "founding promise",
        "founding acceptance",
        "vote kept",
        "acknowledgement kept",
    ):
        assert harness.checked[kind] > 0, (kind, harness.checked)
    assert all(image.synced for image in harness.images.values())


def test_a_storage_that_never_syncs_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every LevelDB batch written with sync=False, whatever the driver asked for: what a storage that forgets
    # its fsync does. A SIGKILL keeps the page cache, so every crash test with real processes still passes.
    write_batch = LevelDBStorage._write

    def unsynced(self: LevelDBStorage, puts: Any, deletes: Any, *, sync: bool) -> None:
        write_batch(self, puts, deletes, sync=False)

    monkeypatch.setattr(LevelDBStorage, "_write", unsynced)
    harness = DurabilityHarness(monkeypatch, ["p0", "p1", "p2"])
    with durable_cluster(tmp_path) as c:
        lost = run_crashes(c, harness, tmp_path, to_the_end=False)
    report = harness.report()
    # Reported at the send: the founding promises, the vote grants and the acknowledgements ...
    assert any(re.search(r"founding promise of .* sent, but the disk holds None", v) for v in harness.violations)
    assert any(re.search(r"vote grant .* sent, but the disk holds term 0", v) for v in harness.violations), report
    assert any(re.search(r"acknowledgement .* sent, but the disk holds", v) for v in harness.violations), report
    assert any(re.search(r"announces commit \d+, but only \[\] hold", v) for v in harness.violations), report
    # ... and at the restart: the crashed follower comes back with nothing of what it promised.
    assert len(lost) == 1 and re.match(r"p\d restarts on an empty disk", lost[0]), lost
    assert all(image.synced == 0 for image in harness.images.values())


def test_answers_sent_before_the_write_are_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The storage syncs, but the driver sends its answers (vote grants, acknowledgements) before the write they
    # depend on, as if they were a leader's appends: a crash in between loses what the answer promised.
    ready = RawNode.ready

    def answers_early(self: RawNode) -> Ready:
        rd = ready(self)
        rd.early_messages = [*rd.early_messages, *rd.messages]
        rd.messages = []
        return rd

    monkeypatch.setattr(RawNode, "ready", answers_early)
    harness = DurabilityHarness(monkeypatch, ["p0", "p1", "p2"])
    with durable_cluster(tmp_path) as c:
        leader = c.leader()
        leader.ensure_path("/d")
        write(leader, [f"/d/{i:03}" for i in range(10)])
    report = harness.report()
    assert any(re.search(r"vote grant .* sent, but the disk holds term \d+, vote", v) for v in harness.violations)
    assert any(re.search(r"acknowledgement .* sent before entry \d+ was even written", v) for v in harness.violations)


def test_a_clean_run_waits_for_nothing_it_should_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The contract costs no extra waiting where nothing depends on the disk: the leader's appends leave before its
    # own write (they promise nothing about it), so its followers' writes overlap its own.
    harness = DurabilityHarness(monkeypatch, ["p0", "p1", "p2"])
    early: list[str] = []
    original = _PartitionableTransport.send

    def send(transport: _PartitionableTransport, to: str, frame: bytes) -> bool:
        pid = user_id(transport.id)
        msg = decode(frame)
        for m in list(msg.messages) if isinstance(msg, Bundle) else [msg]:
            # Entries the leader's own disk does not hold yet, not even unsynced: sent before its write.
            if isinstance(m, Message) and m.type is MessageType.APP and m.entries:
                if m.entries[-1].index > harness.live[pid].last_index():
                    early.append(pid)
        return original(transport, to, frame)

    monkeypatch.setattr(_PartitionableTransport, "send", send)
    with durable_cluster(tmp_path) as c:
        leader = c.leader()
        leader.ensure_path("/d")
        write(leader, [f"/d/{i:03}" for i in range(50)])
    assert not harness.violations, harness.report()
    assert early, "no append left before the leader's own write"
