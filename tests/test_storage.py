"""The Storage contract, held against every implementation: MemoryStorage and LevelDBStorage.

The same tests run against each backend; a hypothesis test drives random sequences of appends, snapshots and
compactions against a trivial reference model of the log (a dict of entries, a snapshot and a compaction point) and
checks every read after every step, reopening the storage now and then (a clone for memory, a close and reopen for
LevelDB) to check that what was written survives.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedzk.consensus.types import ConfState, Entry, EntryType, HardState, SnapshotMeta
from embedzk.persist import CompactedError, MemoryStorage, Storage, UnavailableError

CONF = ConfState(voters=("a", "b", "c"))


@dataclass
class Backend:
    """How to make a fresh storage of one kind, and how to get it back after a "restart"."""

    name: str
    make: Callable[[ConfState], Storage]
    reopen: Callable[[Storage], Storage]


def _memory_backend() -> Backend:
    # A restart of a memory-backed node keeps the object as its disk; a clone is the stricter check, since it
    # must carry everything over.
    def reopen(storage: Storage) -> Storage:
        assert isinstance(storage, MemoryStorage)
        return storage.clone()

    return Backend("memory", MemoryStorage, reopen)


def _leveldb_backend(root: Path) -> Backend:
    from embedzk.persist.leveldb import LevelDBStorage

    counter = itertools.count()

    def make(conf_state: ConfState) -> Storage:
        return LevelDBStorage.open(
            root / f"db{next(counter)}", cluster_id="test-cluster", peer_id="a", conf_state=conf_state
        )

    def reopen(storage: Storage) -> Storage:
        assert isinstance(storage, LevelDBStorage)
        storage.close()
        return LevelDBStorage.open(storage.path, cluster_id="test-cluster", peer_id="a", create=False)

    return Backend("leveldb", make, reopen)


@pytest.fixture(params=["memory", "leveldb", "leveldb-tiny-bounds"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """Each backend in turn; every storage it makes is closed at the end of the test.

    "leveldb-tiny-bounds" shrinks LevelDBStorage's caches and batch sizes to almost nothing, so that every read
    falls back to the disk and every compaction and snapshot is split into several batches.
    """
    made: list[Storage] = []
    if request.param == "leveldb-tiny-bounds":
        from embedzk.persist import leveldb

        for name, value in [
            ("_RECENT_ENTRIES", 2),
            ("_RECENT_BYTES", 20),
            ("_TERM_RUNS", 1),
            ("_DELETES_PER_BATCH", 2),
            ("_CHUNK_BYTES_PER_BATCH", 8),
        ]:
            monkeypatch.setattr(leveldb, name, value)
    base = _memory_backend() if request.param == "memory" else _leveldb_backend(tmp_path)

    def make(conf_state: ConfState) -> Storage:
        storage = base.make(conf_state)
        made.append(storage)
        return storage

    def reopen(storage: Storage) -> Storage:
        again = base.reopen(storage)
        made.append(again)
        return again

    yield Backend(base.name, make, reopen)
    for storage in made:
        storage.close()


def ents(first: int, terms: list[int], size: int = 3) -> list[Entry]:
    """Entries from index ``first`` with the given terms, each with distinct data of ``size`` bytes or more."""
    return [
        Entry(term=t, index=first + k, data=f"{first + k}:{t}".encode().ljust(size, b"."))
        for k, t in enumerate(terms)
    ]


# --- fresh storage ---------------------------------------------------------------------------------------------


def test_fresh_storage_is_the_bootstrap_snapshot(backend: Backend) -> None:
    s = backend.make(CONF)
    assert isinstance(s, Storage)
    assert s.initial_state() == (HardState(), CONF)
    assert s.first_index() == 1
    assert s.last_index() == 0
    assert s.term(0) == 0
    assert s.snapshot_meta() == SnapshotMeta(index=0, term=0, conf_state=CONF)
    assert list(s.snapshot_chunks()) == []
    assert s.entries(1, 1) == []
    with pytest.raises(UnavailableError):
        s.term(1)
    with pytest.raises(UnavailableError):
        s.entries(1, 2)
    with pytest.raises(CompactedError):
        s.entries(0, 1)


# --- append ------------------------------------------------------------------------------------------------------


def test_append_and_read_back(backend: Backend) -> None:
    s = backend.make(CONF)
    log = ents(1, [1, 1, 2, 3])
    s.append(log, HardState(term=3, vote="b", commit=2))
    assert s.first_index() == 1
    assert s.last_index() == 4
    assert [s.term(i) for i in range(5)] == [0, 1, 1, 2, 3]
    assert s.entries(1, 5) == log
    assert s.entries(2, 4) == log[1:3]
    assert s.initial_state() == (HardState(term=3, vote="b", commit=2), CONF)


def test_append_keeps_entry_types_and_data(backend: Backend) -> None:
    s = backend.make(CONF)
    log = [Entry(1, 1, EntryType.CONF_CHANGE, b"\x00\xff" * 40), Entry(1, 2, EntryType.NORMAL, b"")]
    s.append(log)
    assert s.entries(1, 3) == log
    assert s.entries(1, 3)[0].type is EntryType.CONF_CHANGE


def test_append_replaces_conflicting_suffix(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 1, 1, 1]))
    s.append(ents(3, [2]))
    assert s.last_index() == 3
    assert [s.term(i) for i in range(1, 4)] == [1, 1, 2]
    assert s.entries(1, 4) == ents(1, [1, 1]) + ents(3, [2])
    with pytest.raises(UnavailableError):
        s.term(4)


def test_append_overwrites_a_longer_suffix_with_a_longer_one(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 1]))
    s.append(ents(2, [2, 2, 2, 2, 2]))
    assert s.last_index() == 6
    assert s.entries(1, 7) == ents(1, [1]) + ents(2, [2, 2, 2, 2, 2])


def test_append_of_hard_state_alone(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1]))
    s.append([], HardState(term=5, vote=None, commit=1))
    assert s.initial_state()[0] == HardState(term=5, vote=None, commit=1)
    assert s.last_index() == 1


def test_append_without_hard_state_keeps_the_old_one(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1]), HardState(term=1, vote="a", commit=0))
    s.append(ents(2, [1]))
    assert s.initial_state()[0] == HardState(term=1, vote="a", commit=0)


def test_append_with_a_gap_is_refused(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1]))
    with pytest.raises(ValueError):
        s.append(ents(4, [1]))
    with pytest.raises(ValueError):
        s.append([Entry(1, 3), Entry(1, 5)])
    assert s.last_index() == 2


def test_append_skips_entries_the_compaction_point_covers(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 1, 1]))
    s.save_snapshot(SnapshotMeta(3, 1, CONF), [b"snap"])
    s.compact(3)
    s.append(ents(2, [1, 1, 1, 2]))  # 2 and 3 are compacted: only 4 and 5 count
    assert s.first_index() == 4
    assert s.entries(4, 6) == ents(4, [1, 2])


def test_append_that_would_drop_snapshotted_entries_is_refused(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 1, 1]))
    s.save_snapshot(SnapshotMeta(3, 1, CONF), [b"snap"])
    with pytest.raises(ValueError):
        s.append(ents(2, [2]))
    assert s.entries(1, 5) == ents(1, [1, 1, 1, 1])


# --- entries() bounds and sizes ---------------------------------------------------------------------------------


def test_entries_bounds(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 1, 1, 1, 1]))
    s.save_snapshot(SnapshotMeta(3, 1, CONF), [])
    s.compact(3)
    assert s.first_index() == 4
    with pytest.raises(CompactedError):
        s.entries(3, 5)
    with pytest.raises(UnavailableError):
        s.entries(4, 8)
    assert s.entries(4, 7) == ents(4, [1, 1, 1])
    assert s.entries(7, 7) == []
    with pytest.raises(CompactedError):
        s.term(2)
    assert s.term(3) == 1
    with pytest.raises(UnavailableError):
        s.term(7)


def test_entries_max_bytes(backend: Backend) -> None:
    s = backend.make(CONF)
    log = ents(1, [1] * 5, size=10)
    assert all(len(e.data) == 10 for e in log)
    s.append(log)
    assert s.entries(1, 6, max_bytes=None) == log
    assert s.entries(1, 6, max_bytes=0) == log[:1]  # never fewer than one
    assert s.entries(1, 6, max_bytes=5) == log[:1]
    assert s.entries(1, 6, max_bytes=10) == log[:1]
    assert s.entries(1, 6, max_bytes=29) == log[:2]
    assert s.entries(1, 6, max_bytes=30) == log[:3]
    assert s.entries(2, 6, max_bytes=1000) == log[1:]


# --- snapshots and compaction -----------------------------------------------------------------------------------


def test_save_snapshot_leaves_the_log_alone(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2]))
    new_conf = ConfState(voters=("a", "b"), learners=("z",))
    s.save_snapshot(SnapshotMeta(2, 1, new_conf), [b"one", b"two"])
    assert s.snapshot_meta() == SnapshotMeta(2, 1, new_conf)
    assert list(s.snapshot_chunks()) == [b"one", b"two"]
    assert s.first_index() == 1
    assert s.entries(1, 4) == ents(1, [1, 1, 2])
    assert s.initial_state()[1] == new_conf


def test_save_snapshot_replaces_the_previous_chunks(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2]))
    s.save_snapshot(SnapshotMeta(1, 1, CONF), [b"a", b"b", b"c"])
    s.save_snapshot(SnapshotMeta(3, 2, CONF), [b"d"])
    assert list(s.snapshot_chunks()) == [b"d"]
    s = backend.reopen(s)
    assert list(s.snapshot_chunks()) == [b"d"]


def test_save_snapshot_refuses_nonsense(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2]))
    s.save_snapshot(SnapshotMeta(2, 1, CONF), [])
    with pytest.raises(ValueError):  # older than the one held
        s.save_snapshot(SnapshotMeta(1, 1, CONF), [])
    with pytest.raises(ValueError):  # past the log
        s.save_snapshot(SnapshotMeta(4, 2, CONF), [])
    with pytest.raises(ValueError):  # term disagrees with the log
        s.save_snapshot(SnapshotMeta(3, 1, CONF), [])
    assert s.snapshot_meta() == SnapshotMeta(2, 1, CONF)


def test_compact(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2, 2, 3]))
    s.save_snapshot(SnapshotMeta(4, 2, CONF), [b"x"])
    s.compact(2)
    assert (s.first_index(), s.last_index(), s.term(2)) == (3, 5, 1)
    s.compact(4)
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 5, 2)
    assert s.entries(5, 6) == ents(5, [3])
    s.compact(3)  # already done: nothing happens
    assert s.first_index() == 5
    with pytest.raises(ValueError):
        s.compact(5)  # past the snapshot


def test_compact_everything(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2]))
    s.save_snapshot(SnapshotMeta(3, 2, CONF), [b"x"])
    s.compact(3)
    assert (s.first_index(), s.last_index(), s.term(3)) == (4, 3, 2)
    assert s.entries(4, 4) == []
    s.append(ents(4, [3]))
    assert s.entries(4, 5) == ents(4, [3])


def test_install_snapshot_keeps_a_matching_suffix(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2, 2, 3]), HardState(3, "a", 2))
    meta = SnapshotMeta(3, 2, ConfState(voters=("a", "b")))
    s.install_snapshot(meta, [b"leader's", b"state"])
    assert s.snapshot_meta() == meta
    assert list(s.snapshot_chunks()) == [b"leader's", b"state"]
    assert (s.first_index(), s.last_index(), s.term(3)) == (4, 5, 2)
    assert s.entries(4, 6) == ents(4, [2, 3])
    assert s.initial_state() == (HardState(3, "a", 2), meta.conf_state)


def test_install_snapshot_drops_a_log_that_disagrees(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2, 2, 3]))
    s.install_snapshot(SnapshotMeta(3, 3, CONF), [b"s"])
    assert (s.first_index(), s.last_index(), s.term(3)) == (4, 3, 3)
    with pytest.raises(UnavailableError):
        s.entries(4, 5)


def test_install_snapshot_past_the_log(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1]))
    s.install_snapshot(SnapshotMeta(10, 4, CONF), [b"s"])
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 4)
    with pytest.raises(CompactedError):
        s.term(9)
    s.append(ents(11, [4, 4]))
    assert s.entries(11, 13) == ents(11, [4, 4])


def test_install_snapshot_older_than_held_is_refused(backend: Backend) -> None:
    s = backend.make(CONF)
    s.install_snapshot(SnapshotMeta(10, 4, CONF), [b"s"])
    with pytest.raises(ValueError):
        s.install_snapshot(SnapshotMeta(5, 4, CONF), [b"t"])
    assert s.snapshot_meta().index == 10


def test_everything_survives_a_restart(backend: Backend) -> None:
    s = backend.make(CONF)
    s.append(ents(1, [1, 1, 2, 2, 3, 3]), HardState(3, "c", 4))
    conf = ConfState(voters=("a", "b"), learners=("c",))
    s.save_snapshot(SnapshotMeta(4, 2, conf), [b"chunk-0", b"chunk-1"])
    s.compact(3)
    again = backend.reopen(s)
    assert again.initial_state() == (HardState(3, "c", 4), conf)
    assert (again.first_index(), again.last_index()) == (4, 6)
    assert again.term(3) == 2
    assert again.entries(4, 7) == ents(4, [2, 3, 3])
    assert again.snapshot_meta() == SnapshotMeta(4, 2, conf)
    assert list(again.snapshot_chunks()) == [b"chunk-0", b"chunk-1"]


def test_close_is_idempotent(backend: Backend) -> None:
    s = backend.make(CONF)
    s.close()
    s.close()


def test_memory_clone_is_independent() -> None:
    disk = MemoryStorage(CONF)
    disk.append(ents(1, [1, 1]), HardState(1, "a", 1))
    image = disk.clone()
    disk.append(ents(2, [2, 2]), HardState(2, "b", 2))
    disk.save_snapshot(SnapshotMeta(2, 2, CONF), [b"x"])
    disk.compact(2)
    assert image.last_index() == 2
    assert image.entries(1, 3) == ents(1, [1, 1])
    assert image.initial_state() == (HardState(1, "a", 1), CONF)
    assert image.snapshot_meta().index == 0
    image.append(ents(3, [5]))
    assert disk.term(3) == 2


def test_memory_storage_is_usable_after_close() -> None:
    # The simulator keeps the object as the node's disk across a crash, so close() must not lose anything.
    disk = MemoryStorage(CONF)
    disk.append(ents(1, [1]), HardState(1, "a", 0))
    disk.close()
    assert disk.entries(1, 2) == ents(1, [1])
    disk.append(ents(2, [1]))
    assert disk.last_index() == 2


# --- a reference model and random sequences ---------------------------------------------------------------------


@dataclass
class LogModel:
    """The obvious log: a dict of entries between the compaction point and the end, and the latest snapshot."""

    conf: ConfState
    hard: HardState = field(default_factory=HardState)
    snap: SnapshotMeta = field(default_factory=SnapshotMeta)
    chunks: tuple[bytes, ...] = ()
    compact_index: int = 0
    compact_term: int = 0
    log: dict[int, Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.snap = SnapshotMeta(0, 0, self.conf)

    @property
    def last(self) -> int:
        return self.compact_index + len(self.log)

    def term(self, index: int) -> int:
        return self.compact_term if index == self.compact_index else self.log[index].term

    def append(self, entries: list[Entry], hard: HardState | None) -> None:
        if entries:
            for i in range(entries[0].index, self.last + 1):
                del self.log[i]
            for e in entries:
                self.log[e.index] = e
        if hard is not None:
            self.hard = hard

    def install(self, meta: SnapshotMeta, chunks: tuple[bytes, ...]) -> None:
        keep = self.compact_index <= meta.index <= self.last and self.term(meta.index) == meta.term
        self.log = {i: e for i, e in self.log.items() if i > meta.index} if keep else {}
        self.compact_index, self.compact_term = meta.index, meta.term
        self.snap, self.chunks = meta, chunks

    def save(self, meta: SnapshotMeta, chunks: tuple[bytes, ...]) -> None:
        self.snap, self.chunks = meta, chunks

    def compact(self, index: int) -> None:
        if index > self.compact_index:
            self.compact_term = self.term(index)
            self.log = {i: e for i, e in self.log.items() if i > index}
            self.compact_index = index


def check_against(model: LogModel, s: Storage) -> None:
    """Every read the contract offers agrees with the model."""
    assert s.first_index() == model.compact_index + 1
    assert s.last_index() == model.last
    assert s.initial_state() == (model.hard, model.snap.conf_state)
    assert s.snapshot_meta() == model.snap
    assert tuple(s.snapshot_chunks()) == model.chunks
    for i in range(model.compact_index, model.last + 1):
        assert s.term(i) == model.term(i)
    assert s.entries(model.compact_index + 1, model.last + 1) == [model.log[i] for i in sorted(model.log)]
    with pytest.raises(UnavailableError):
        s.term(model.last + 1)
    if model.compact_index > 0:
        with pytest.raises(CompactedError):
            s.term(model.compact_index - 1)
        with pytest.raises(CompactedError):
            s.entries(model.compact_index, model.last + 1)


OPS = st.sampled_from(["append", "append", "append", "hard_state", "save", "compact", "install", "reopen"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_operations_agree_with_the_model(backend: Backend, data: st.DataObject) -> None:
    # 40 examples per backend keeps the default run short (LevelDB syncs every write).
    s = backend.make(CONF)
    model = LogModel(CONF)
    term = 1
    for step in range(data.draw(st.integers(1, 25), label="steps")):
        op = data.draw(OPS, label=f"op{step}")
        if op == "append":
            # Anywhere from just after the snapshot (entries it covers are applied, so never rewritten) to the end.
            lo = max(model.snap.index, model.compact_index) + 1
            start = data.draw(st.integers(lo, model.last + 1), label="start")
            term += data.draw(st.integers(0, 1), label="term bump")
            count = data.draw(st.integers(0, 6), label="count")
            new = ents(start, [term] * count, size=data.draw(st.integers(0, 40), label="size"))
            votes = st.sampled_from([None, "a"])
            hard = data.draw(st.none() | st.builds(HardState, st.just(term), votes, st.integers(0, 9)), label="hard")
            s.append(new, hard)
            model.append(new, hard)
        elif op == "hard_state":
            hard = HardState(term, data.draw(st.sampled_from([None, "a", "b"])), data.draw(st.integers(0, 99)))
            s.append([], hard)
            model.append([], hard)
        elif op == "save":
            lo = max(model.snap.index, model.compact_index)
            index = data.draw(st.integers(lo, model.last), label="save at")
            chunks = tuple(data.draw(st.lists(st.binary(max_size=20), max_size=3), label="chunks"))
            meta = SnapshotMeta(index, model.term(index), ConfState(voters=("a", "b", f"n{index}")))
            s.save_snapshot(meta, chunks)
            model.save(meta, chunks)
        elif op == "compact":
            index = data.draw(st.integers(0, model.snap.index), label="compact to")
            s.compact(index)
            model.compact(index)
        elif op == "install":
            index = data.draw(st.integers(model.snap.index, model.last + 3), label="install at")
            if model.compact_index <= index <= model.last and data.draw(st.booleans(), label="matching term"):
                snap_term = model.term(index)
            else:
                term += 1
                snap_term = term
            meta = SnapshotMeta(index, snap_term, ConfState(voters=(f"m{index}",)))
            chunks = tuple(data.draw(st.lists(st.binary(max_size=20), max_size=3), label="chunks"))
            s.install_snapshot(meta, chunks)
            model.install(meta, chunks)
        else:
            s = backend.reopen(s)
        check_against(model, s)


@pytest.mark.parametrize("module", ["embedzk.persist", "embedzk.persist.base", "embedzk.persist.leveldb"])
def test_persist_imports_first_in_a_fresh_interpreter(module: str) -> None:
    # persist.base and the consensus package import each other's modules: entering through persist must work.
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
