"""LevelDBStorage beyond the shared contract: reopening, refusing directories it must not use, and damage.

The Storage contract itself is checked in ``test_storage.py`` (against both backends). Here: what survives a
close and a kill, which directories are refused and with what message, and that damage to LevelDB's files or to
one of our records is reported as StorageError, never as a crash or a wrong answer.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import plyvel
import pytest

from embedzk.codec import decode, encode
from embedzk.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from embedzk.errors import StorageError
from embedzk.persist import LevelDBStorage, Storage
from embedzk.persist import leveldb as leveldb_module
from embedzk.membership.identity import Ballot, MemberRecord
from embedzk.persist.records import StoredIdentity, pack_entry, seal, unseal

CONF = ConfState(voters=("a", "b", "c"))
CLUSTER = "orders"
PEER = "a"


def open_storage(path: Path, **kwargs: Any) -> LevelDBStorage:
    """Open ``path`` as peer a of cluster "orders" (kwargs override)."""
    args: dict[str, Any] = {"cluster_id": CLUSTER, "peer_id": PEER, "conf_state": CONF}
    args.update(kwargs)
    return LevelDBStorage.open(path, **args)


def ents(first: int, count: int, term: int = 1, size: int = 150) -> list[Entry]:
    """``count`` entries from ``first``, each with ``size`` bytes of data that name their index."""
    return [Entry(term, first + k, data=f"{first + k}".encode().ljust(size, b"x")) for k in range(count)]


def entry_key(index: int) -> bytes:
    return b"e" + index.to_bytes(8, "big")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


# --- reopening ----------------------------------------------------------------------------------------------------


def test_reopen_returns_everything(data_dir: Path) -> None:
    conf = ConfState(voters=("a", "b"), learners=("c",))
    with open_storage(data_dir) as s:
        assert isinstance(s, Storage)
        s.append(ents(1, 50, term=1) + ents(51, 50, term=2), HardState(term=2, vote="b", commit=90))
        s.save_snapshot(SnapshotMeta(80, 2, conf), [b"alpha", b"", b"gamma" * 1000])
        s.compact(60)
    with open_storage(data_dir, conf_state=None, create=False) as s:
        assert s.initial_state() == (HardState(term=2, vote="b", commit=90), conf)
        assert (s.first_index(), s.last_index()) == (61, 100)
        assert s.term(60) == 2
        assert [s.term(i) for i in (61, 100)] == [2, 2]
        assert s.entries(61, 101) == ents(51, 50, term=2)[10:]
        assert s.snapshot_meta() == SnapshotMeta(80, 2, conf)
        assert list(s.snapshot_chunks()) == [b"alpha", b"", b"gamma" * 1000]


def test_reopen_after_install_snapshot(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append(ents(1, 10, term=1), HardState(1, "a", 5))
        s.install_snapshot(SnapshotMeta(20, 3, CONF), [b"leader"])
    with open_storage(data_dir) as s:
        assert (s.first_index(), s.last_index(), s.term(20)) == (21, 20, 3)
        assert list(s.snapshot_chunks()) == [b"leader"]
        assert s.initial_state()[0] == HardState(1, "a", 5)


def test_bootstrap_ignores_conf_state_once_bootstrapped(data_dir: Path) -> None:
    open_storage(data_dir).close()
    with open_storage(data_dir, conf_state=ConfState(voters=("z",))) as s:
        assert s.snapshot_meta().conf_state == CONF


def test_acknowledged_appends_survive_a_kill(data_dir: Path) -> None:
    # A writer process prints each last index once append() has returned; whatever it printed before SIGKILL
    # must be on disk.
    writer = textwrap.dedent(
        """
        import sys
        from embedzk.consensus.types import ConfState, Entry, HardState
        from embedzk.persist import LevelDBStorage
        s = LevelDBStorage.open(sys.argv[1], cluster_id="orders", peer_id="a", conf_state=ConfState(("a",)))
        index = 0
        while True:
            batch = [Entry(1, index + k + 1, data=b"x" * 150) for k in range(10)]
            s.append(batch, HardState(1, "a", index))
            index += 10
            print(index, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(data_dir)], stdout=subprocess.PIPE, text=True)
    acked = 0
    try:
        while acked < 300:
            line = _read_line(proc, timeout=20)
            acked = int(line)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    with open_storage(data_dir) as s:
        assert s.last_index() >= acked
        assert s.initial_state()[0].commit >= acked - 10
        got = s.entries(1, s.last_index() + 1)
        assert [e.index for e in got] == list(range(1, s.last_index() + 1))


def test_a_failed_write_leaves_the_disk_as_it_was(data_dir: Path) -> None:
    s = open_storage(data_dir)
    s.append(ents(1, 5), HardState(1, "a", 2))
    s._db = _FailingDB(s._db, fail_after=3)  # the fourth put of the next batch fails
    with pytest.raises(StorageError, match="disk full"):
        s.append(ents(3, 10, term=2), HardState(2, "b", 2))
    with pytest.raises(StorageError, match="unusable"):
        s.last_index()  # nothing is trusted after a failed write
    s._db = s._db.inner
    s.close()
    with open_storage(data_dir) as s:
        assert s.last_index() == 5
        assert s.entries(1, 6) == ents(1, 5)
        assert s.initial_state()[0] == HardState(1, "a", 2)


def test_large_compaction_and_snapshot_in_several_batches(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leveldb_module, "_DELETES_PER_BATCH", 7)
    monkeypatch.setattr(leveldb_module, "_CHUNK_BYTES_PER_BATCH", 100)
    chunks = [bytes([n]) * 60 for n in range(25)]
    with open_storage(data_dir) as s:
        s.append(ents(1, 100))
        s.save_snapshot(SnapshotMeta(90, 1, CONF), chunks)
        s.compact(90)
        assert list(s.snapshot_chunks()) == chunks
    db = plyvel.DB(str(data_dir))
    try:
        assert [k for k in db.iterator(prefix=b"e", include_value=False)] == [entry_key(i) for i in range(91, 101)]
        assert len(list(db.iterator(prefix=b"s", include_value=False))) == 25
    finally:
        db.close()
    with open_storage(data_dir) as s:
        assert (s.first_index(), s.last_index()) == (91, 100)
        assert list(s.snapshot_chunks()) == chunks


def test_open_sweeps_garbage_a_crash_left_behind(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append(ents(1, 10))
        s.save_snapshot(SnapshotMeta(5, 1, CONF), [b"snap"])
        s.compact(5)
    # As if a crash had come between moving the compaction point (or the snapshot) and deleting what it covers.
    db = plyvel.DB(str(data_dir))
    stale_entry = seal(entry_key(3), pack_entry(ents(3, 1)[0]))
    db.put(entry_key(3), stale_entry)
    stale_chunk = b"s" + (0).to_bytes(8, "big") + (0).to_bytes(4, "big")
    db.put(stale_chunk, seal(stale_chunk, b"old"))
    db.close()
    with open_storage(data_dir) as s:
        assert (s.first_index(), s.last_index()) == (6, 10)
        assert list(s.snapshot_chunks()) == [b"snap"]
    db = plyvel.DB(str(data_dir))
    try:
        assert db.get(entry_key(3)) is None
        assert db.get(stale_chunk) is None
    finally:
        db.close()


def test_close_is_idempotent_and_use_after_close_is_an_error(data_dir: Path) -> None:
    s = open_storage(data_dir)
    s.close()
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.last_index()
    with pytest.raises(StorageError, match="closed"):
        s.append(ents(1, 1))
    with open_storage(data_dir) as again:  # the lock was released
        assert again.last_index() == 0


# --- directories refused --------------------------------------------------------------------------------------------


def test_locked_by_another_process(data_dir: Path) -> None:
    open_storage(data_dir).close()
    holder = textwrap.dedent(
        """
        import sys, time
        from embedzk.persist import LevelDBStorage
        s = LevelDBStorage.open(sys.argv[1], cluster_id="orders", peer_id="a")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(data_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert _read_line(proc, timeout=20) == "ready"
        with pytest.raises(StorageError, match="is locked: another process") as info:
            open_storage(data_dir)
        assert str(data_dir) in str(info.value)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    open_storage(data_dir).close()  # free again once the holder is gone


def test_locked_by_another_open_in_this_process(data_dir: Path) -> None:
    with open_storage(data_dir):
        with pytest.raises(StorageError, match="is locked"):
            open_storage(data_dir)


def test_another_cluster_or_peer(data_dir: Path) -> None:
    open_storage(data_dir).close()
    with pytest.raises(StorageError) as info:
        open_storage(data_dir, cluster_id="billing", peer_id="b")
    assert str(info.value) == f"data_dir {data_dir} belongs to cluster orders peer a, not cluster billing peer b"
    with pytest.raises(StorageError, match="belongs to cluster orders peer a, not cluster orders peer b"):
        open_storage(data_dir, peer_id="b")
    open_storage(data_dir).close()  # a refused open leaves the lock free


def test_newer_format(data_dir: Path) -> None:
    open_storage(data_dir).close()
    db = plyvel.DB(str(data_dir))
    db.put(b"m/identity", seal(b"m/identity", encode(StoredIdentity(99, CLUSTER, PEER))))
    db.close()
    with pytest.raises(StorageError, match="format version 99, newer than this build reads"):
        open_storage(data_dir)


def test_directory_with_other_files_is_refused(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("precious")
    with pytest.raises(StorageError, match="holds files but no embedzk database .*notes.txt"):
        open_storage(data_dir)
    assert sorted(os.listdir(data_dir)) == ["notes.txt"]


def test_leveldb_of_someone_else_is_refused(data_dir: Path) -> None:
    db = plyvel.DB(str(data_dir), create_if_missing=True)
    db.put(b"user:1", b"precious")
    db.close()
    with pytest.raises(StorageError, match="no embedzk identity"):
        open_storage(data_dir)
    db = plyvel.DB(str(data_dir))
    assert list(db.iterator()) == [(b"user:1", b"precious")]
    db.close()


def test_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(StorageError, match="is not a directory"):
        open_storage(tmp_path / "f")


def test_a_fresh_directory_without_membership_waits_for_one(data_dir: Path) -> None:
    # A peer that founds or joins a cluster learns its membership later.
    with open_storage(data_dir, conf_state=None) as s:
        assert s.snapshot_meta() == SnapshotMeta(0, 0, ConfState())
        assert s.member_record() is None


def test_the_member_record_is_durable_and_its_key_is_for_life(data_dir: Path) -> None:
    record = MemberRecord(key="a@0123456789ab")
    with open_storage(data_dir) as s:
        s.save_member_record(record)
        founded = MemberRecord(key=record.key, cluster_uuid="c0ffee", promised=Ballot(3, "b@1"))
        s.save_member_record(founded)
        with pytest.raises(ValueError, match="belongs to member a@0123456789ab"):
            s.save_member_record(MemberRecord(key="a@ba9876543210"))
    with open_storage(data_dir) as s:
        assert s.member_record() == founded


def test_a_format_1_directory_is_migrated_and_keeps_the_bare_id_as_its_key(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append([Entry(1, 1, data=b"x")], HardState(1, "a", 1))
    db = plyvel.DB(str(data_dir))
    db.put(b"m/identity", seal(b"m/identity", encode(StoredIdentity(1, CLUSTER, PEER))))
    db.delete(b"m/member")
    db.close()
    with open_storage(data_dir) as s:
        assert s.member_record() == MemberRecord(key=PEER)
        assert s.entries(1, 2) == [Entry(1, 1, data=b"x")]
    db = plyvel.DB(str(data_dir))
    assert decode(unseal(b"m/identity", db.get(b"m/identity")), expect=StoredIdentity).format_version == 2
    db.close()


def test_create_false_on_a_missing_directory(data_dir: Path) -> None:
    with pytest.raises(StorageError, match="holds no embedzk database"):
        open_storage(data_dir, create=False)
    assert not data_dir.exists()


def test_empty_directory_is_bootstrapped(data_dir: Path) -> None:
    data_dir.mkdir()
    with open_storage(data_dir) as s:
        assert s.snapshot_meta() == SnapshotMeta(0, 0, CONF)


# --- damage ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def table_file(data_dir: Path) -> Path:
    """A directory whose data sits in one .ldb table file (compacted out of the log), and that file."""
    rng = random.Random(7)  # incompressible data, so the table file is big enough to aim at its data blocks
    with open_storage(data_dir) as s:
        for batch in range(20):
            s.append([Entry(1, batch * 100 + k + 1, data=rng.randbytes(150)) for k in range(100)])
        s.save_snapshot(SnapshotMeta(1500, 1, CONF), [b"z" * 5000])
    db = plyvel.DB(str(data_dir))
    db.compact_range()
    db.close()
    tables = sorted(data_dir.glob("*.ldb"))
    assert len(tables) >= 1 and tables[0].stat().st_size > 100_000
    return tables[0]


def test_flipped_bytes_in_a_table_file(data_dir: Path, table_file: Path) -> None:
    data = bytearray(table_file.read_bytes())
    for pos in (len(data) // 5, len(data) // 2):
        data[pos] ^= 0xFF
    table_file.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=f"data_dir {data_dir} is corrupt"):
        open_storage(data_dir)


def test_truncated_table_file(data_dir: Path, table_file: Path) -> None:
    os.truncate(table_file, table_file.stat().st_size // 2)
    with pytest.raises(StorageError, match=f"data_dir {data_dir}"):
        open_storage(data_dir)


def test_missing_table_file(data_dir: Path, table_file: Path) -> None:
    table_file.unlink()
    with pytest.raises(StorageError, match=f"data_dir {data_dir}"):
        open_storage(data_dir)


def _log_only_dir(data_dir: Path) -> Path:
    """A directory whose data sits only in LevelDB's write-ahead .log (never compacted), and that file."""
    with open_storage(data_dir) as s:
        for batch in range(20):
            s.append(ents(batch * 100 + 1, 100), HardState(1, "a", batch * 100))
    logs = sorted(data_dir.glob("*.log"), key=lambda p: p.stat().st_size)
    assert logs and logs[-1].stat().st_size > 100_000
    return logs[-1]


def test_flipped_bytes_in_the_log_file(data_dir: Path) -> None:
    log = _log_only_dir(data_dir)
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0xFF
    log.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=f"data_dir {data_dir} is corrupt"):
        open_storage(data_dir)


def test_truncated_log_file_reads_as_a_crash_before_the_lost_writes(data_dir: Path) -> None:
    # LevelDB cannot tell a truncated log from a writer that died mid-write (a torn tail is expected after a
    # crash), so it replays the whole batches before the cut and reports nothing. What we hold then is still a
    # consistent prefix of what was written: whole batches, entries and hard state together.
    log = _log_only_dir(data_dir)
    os.truncate(log, log.stat().st_size // 2)
    with open_storage(data_dir) as s:
        last = s.last_index()
        assert 0 < last < 2000 and last % 100 == 0
        assert s.initial_state()[0].commit == last - 100
        assert s.entries(1, last + 1) == ents(1, last)


def test_checksum_mismatch_of_one_entry(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append(ents(1, 10))
    db = plyvel.DB(str(data_dir))
    value = bytearray(db.get(entry_key(7)))
    value[-1] ^= 0x01  # one bit of the entry's data
    db.put(entry_key(7), bytes(value))
    db.close()
    with pytest.raises(StorageError) as info:
        open_storage(data_dir)
    assert str(info.value) == f"corrupt record {entry_key(7)!r} in {data_dir}: checksum mismatch"


def test_checksum_mismatch_of_the_hard_state(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append([], HardState(3, "b", 0))
    db = plyvel.DB(str(data_dir))
    value = bytearray(db.get(b"m/hardstate"))
    value[0] ^= 0x80  # the checksum itself
    db.put(b"m/hardstate", bytes(value))
    db.close()
    with pytest.raises(StorageError, match=r"corrupt record b'm/hardstate' in .*: checksum mismatch"):
        open_storage(data_dir)


def test_a_record_under_the_wrong_key_is_caught(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append(ents(1, 10))
    db = plyvel.DB(str(data_dir))
    db.put(entry_key(4), db.get(entry_key(5)))  # a valid record, in the wrong place
    db.close()
    with pytest.raises(StorageError, match=r"corrupt record .* checksum mismatch"):
        open_storage(data_dir)


def test_checksum_mismatch_of_a_snapshot_chunk_is_caught_on_read(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append(ents(1, 3))
        s.save_snapshot(SnapshotMeta(2, 1, CONF), [b"one", b"two"])
    db = plyvel.DB(str(data_dir))
    key = b"s" + (1).to_bytes(8, "big") + (1).to_bytes(4, "big")
    value = bytearray(db.get(key))
    value[-1] ^= 0x01
    db.put(key, bytes(value))
    db.close()
    with open_storage(data_dir) as s:  # chunks are read on demand, not at open
        chunks = s.snapshot_chunks()
        assert len(chunks) == 2 and chunks[0] == b"one"
        with pytest.raises(StorageError, match="corrupt record .* checksum mismatch"):
            chunks[1]
        with pytest.raises(StorageError, match="corrupt record .* checksum mismatch"):
            list(chunks)


def test_snapshot_chunks_are_read_one_at_a_time_from_the_snapshot_asked_for(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_storage(data_dir) as s:
        s.append(ents(1, 6))
        s.save_snapshot(SnapshotMeta(2, 1, CONF), [b"a0", b"a1", b"a2"])
        reads: list[bytes] = []
        original = LevelDBStorage._stored_chunk

        def counting(self: LevelDBStorage, view: Any, generation: int, number: int) -> bytes:
            chunk = original(self, view, generation, number)
            reads.append(chunk)
            return chunk

        monkeypatch.setattr(LevelDBStorage, "_stored_chunk", counting)
        chunks = s.snapshot_chunks()
        assert len(chunks) == 3 and reads == []  # nothing read until a chunk is asked for
        assert chunks[1] == b"a1" and reads == [b"a1"]
        # A newer snapshot replaces this one (its chunks are deleted from the database): the sequence handed out
        # before still reads the old snapshot's chunks, never a mix of the two.
        s.save_snapshot(SnapshotMeta(5, 1, CONF), [b"b0"])
        s.compact(5)
        assert list(chunks) == [b"a0", b"a1", b"a2"] and chunks[-1] == b"a2" and chunks[0:2] == [b"a0", b"a1"]
        assert list(s.snapshot_chunks()) == [b"b0"]
        with pytest.raises(IndexError):
            chunks[3]


def test_a_hole_in_the_log(data_dir: Path) -> None:
    with open_storage(data_dir) as s:
        s.append(ents(1, 10))
    db = plyvel.DB(str(data_dir))
    db.delete(entry_key(6))
    db.close()
    with pytest.raises(StorageError, match="entry 6 missing"):
        open_storage(data_dir)


def test_a_missing_record(data_dir: Path) -> None:
    open_storage(data_dir).close()
    db = plyvel.DB(str(data_dir))
    db.delete(b"m/compact")
    db.close()
    with pytest.raises(StorageError, match=r"corrupt record b'm/compact' .*: record missing"):
        open_storage(data_dir)


# --- helpers --------------------------------------------------------------------------------------------------------


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line the child prints, waiting at most ``timeout`` seconds (a hung child fails the test)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"child {proc.pid} printed nothing in {timeout} s")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"child {proc.pid} exited with {proc.wait(timeout=5)}")
    return line.strip()


class _FailingDB:
    """A plyvel DB whose write batches fail (like a full disk) after ``fail_after`` puts."""

    def __init__(self, inner: Any, fail_after: int) -> None:
        self.inner = inner
        self.fail_after = fail_after

    def write_batch(self, **kwargs: Any) -> Any:
        return _FailingBatch(self.inner.write_batch(**kwargs), self.fail_after)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _FailingBatch:
    def __init__(self, inner: Any, fail_after: int) -> None:
        self.inner = inner
        self.left = fail_after

    def __enter__(self) -> _FailingBatch:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)

    def put(self, key: bytes, value: bytes) -> None:
        if self.left == 0:
            raise OSError("disk full")
        self.left -= 1
        self.inner.put(key, value)

    def delete(self, key: bytes) -> None:
        self.inner.delete(key)
