"""Crash recovery with real processes, real LevelDB and SIGKILL: nothing acknowledged is ever lost.

Three peers run in three processes (``tests/crash_worker.py``) over tcp on loopback, each with its LevelDB
data_dir under the test's tmp_path. A write load (threads of this process sending creates and sets through
whichever peers are up) records every write a peer acknowledged. Then:

* a random peer, the leader as often as not, is SIGKILLed and restarted on its data_dir, round after round, while
  the load goes on; at the end every acknowledged write is on every peer and all peers hold the same tree (equal
  digests at equal applied indexes);
* the whole cluster is SIGKILLed at once and restarted: again nothing acknowledged is missing;
* a data_dir whose LevelDB files are damaged (a table file truncated or with flipped bytes, a table file missing,
  the manifest truncated, CURRENT missing, a record whose own checksum fails), that belongs to another peer or
  another cluster, or that another process holds, makes the peer refuse to start: the child exits with a
  StorageError naming the problem, never with a traceback and never by starting afresh.

Peers snapshot every few dozen entries, and in many small parts, so that kills land before, during and after
snapshots and log compactions.

Below them, the pieces that make snapshots safe to take while the loop runs, tested alone: snapshot streams that
read the tree as it was while transactions go on (copy-on-write), snapshots saved in parts by both storages
(nothing of a part is visible until the last, a crash or an installed snapshot drops the parts), the replica's
snapshot job, and seeded simulations in which every snapshot goes out in many parts.

The default run is bounded (well under a minute in all). ``EMBEDZK_CRASH_ROUNDS=N`` runs N kill/restart rounds
instead of the default 5 (and a whole-cluster kill per five rounds), for a soak::

    EMBEDZK_CRASH_ROUNDS=200 python -m pytest tests/test_crash_recovery.py -k "rounds or whole" -s

(about 2.5 s a round; the timeouts grow with N; ``-s`` shows what each run did, with its seed, which
``EMBEDZK_CRASH_SEED`` replays as far as timing allows). Every process a test starts is killed by pid when it ends.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest

from embedzk.codec import decode, encode
from embedzk.consensus.types import ConfState, Entry, HardState, SnapshotMeta
from embedzk.persist import LevelDBStorage, MemoryStorage, SnapshotPart
from embedzk.persist.records import seal
from embedzk.replica import Replica, ReplicaConfig
from embedzk.replica import snapshots as snapshot_jobs
from embedzk.testing import free_ports
from embedzk.testing.simulator import SimConfig, Simulation, SimulationFailure
from embedzk.tree import (
    CheckOp,
    CloseSessionOp,
    CreateOp,
    CreateSessionOp,
    DataTree,
    DeleteContainerOp,
    DeleteOp,
    MultiOp,
    SetDataOp,
    Txn,
)
from tests.crash_worker import START_FAILED, CrashPeer, PeerGone, StartFailed

ROUNDS = int(os.environ.get("EMBEDZK_CRASH_ROUNDS", "5"))
#: Whole-cluster kills: one in the default run, one more per five rounds asked for.
CYCLES = max(1, ROUNDS // 5)
SEED = int(os.environ.get("EMBEDZK_CRASH_SEED", str(random.randrange(1 << 30))))
IDS = ("a", "b", "c")

pytestmark = pytest.mark.timeout(60)


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (PeerGone, RuntimeError, TimeoutError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not so after {timeout}s (last: {last!r})")


class Cluster:
    """Three peer processes with their data_dirs; restarts a peer on the same address and data_dir."""

    def __init__(self, root: Path, **options: Any) -> None:
        self.root = root
        self.addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(IDS, free_ports(len(IDS)))}
        self.options = {
            "cluster": "crash",
            "session_timeout": 2.0,
            "snapshot_entries": 40,
            "snapshot_step_bytes": 8192,
            "request_timeout": 5.0,
            "start_timeout": 30.0,
        } | options
        self.peers: dict[str, CrashPeer] = {}
        self.started: list[CrashPeer] = []
        self.restarts = 0

    def config(self, pid: str) -> dict[str, Any]:
        return {
            "id": pid,
            "bind": self.addresses[pid],
            "peers": {o: a for o, a in self.addresses.items() if o != pid},
            "data_dir": str(self.root / pid),
            **self.options,
        }

    def spawn(self, pid: str) -> CrashPeer:
        log = open(self.root / f"{pid}.stderr", "a")  # noqa: SIM115 - the child owns it; closed below
        try:
            peer = CrashPeer(self.config(pid), stderr=log)
        finally:
            log.close()
        self.started.append(peer)
        self.peers[pid] = peer
        return peer

    def start_all(self) -> None:
        for pid in IDS:
            self.spawn(pid)
        for peer in list(self.peers.values()):
            peer.wait_started(60)

    def up(self) -> list[CrashPeer]:
        return [p for p in self.peers.values() if p.alive]

    def leader(self) -> str | None:
        for peer in self.up():
            try:
                leader = peer.call("leader", timeout=5)
            except (PeerGone, RuntimeError, TimeoutError):
                continue
            if leader:
                return str(leader)
        return None

    def kill(self, pid: str) -> None:
        self.peers[pid].kill()

    def restart(self, pid: str) -> CrashPeer:
        self.restarts += 1
        peer = self.spawn(pid)
        peer.wait_started(60)
        return peer

    def close(self) -> None:
        for peer in self.started:
            peer.kill()

    def converge(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every peer has applied the same index with the same digest, twice in a row."""
        previous: list[Any] = []

        def same() -> list[dict[str, Any]] | None:
            nonlocal previous
            for peer in self.peers.values():
                peer.call("sync")
            stats = [peer.call("stats") for peer in self.peers.values()]
            now = [(s["applied_index"], s["digest"]) for s in stats]
            settled = len(set(now)) == 1 and now == previous
            previous = now
            return stats if settled else None

        result: list[dict[str, Any]] = _wait_for(same, timeout, "peers converge", interval=0.3)
        return result


class Load:
    """Writer threads: unique creates, and sets of a few keys per thread with increasing values.

    Records every acknowledged write. A write whose outcome is unknown (the peer died, a timeout, a change of
    leader) may or may not have happened: creates of it are not expected, and a key's final value must lie
    between its last acknowledged and its last attempted value.
    """

    KEYS = 3

    def __init__(self, cluster: Cluster, threads: int = 3, seed: int = 0) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.created: dict[str, str] = {}  # acknowledged creates: path -> value
        self.acked: dict[str, int] = {}  # key -> highest acknowledged value
        self.sets = 0  # acknowledged sets
        self.attempted: dict[str, int] = {}  # key -> highest attempted value
        self.unknown = 0
        self.running = threading.Event()
        self.per_start = threads
        self.threads: list[threading.Thread] = []

    def _peer(self, rng: random.Random) -> CrashPeer | None:
        up = self.cluster.up()
        return rng.choice(up) if up else None

    def _write(self, rng: random.Random, op: str, path: str, value: str) -> bool:
        peer = self._peer(rng)
        if peer is None:
            time.sleep(0.05)
            return False
        try:
            peer.call(op, path, value, timeout=10)
            return True
        except (PeerGone, RuntimeError, TimeoutError):
            with self.lock:
                self.unknown += 1
            time.sleep(0.01)
            return False

    def _run(self, t: int) -> None:
        rng = random.Random(self.rng.random())
        keys = [f"/key-t{t}k{k}" for k in range(self.KEYS)]
        for key in keys:  # a key whose create's outcome is unknown is looked for before its sets mean anything
            while self.running.is_set():
                if self._write(rng, "create", key, "0") or self._exists(rng, key):
                    with self.lock:
                        self.acked[key] = self.attempted[key] = 0
                    break
        keys = [key for key in keys if key in self.acked]
        n = 0
        while self.running.is_set():
            n += 1
            if rng.random() < 0.7 or not keys:
                path, value = f"/w-t{t}n{n}", f"v{t}.{n}"
                if self._write(rng, "create", path, value):
                    with self.lock:
                        self.created[path] = value
            else:
                key = rng.choice(keys)
                with self.lock:
                    self.attempted[key] = n
                if self._write(rng, "set", key, str(n)):
                    with self.lock:
                        self.acked[key] = max(self.acked[key], n)
                        self.sets += 1

    def _exists(self, rng: random.Random, path: str) -> bool:
        peer = self._peer(rng)
        try:
            return peer is not None and peer.call("sync") is None and peer.call("get", path) is not None
        except (PeerGone, RuntimeError, TimeoutError):
            return False

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start writing (again): new threads, with keys of their own; what was recorded stays."""
        self.running.set()
        first = len(self.threads)
        new = [threading.Thread(target=self._run, args=(first + t,), daemon=True) for t in range(self.per_start)]
        self.threads += new
        for thread in new:
            thread.start()

    def stop(self) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join(30)

    def check(self, cluster: Cluster) -> None:
        """Every acknowledged write is on every peer."""
        expected = sorted(self.created.items())
        for peer in cluster.peers.values():
            wrong = peer.call("check", [list(kv) for kv in expected], timeout=60)
            assert wrong == [], f"peer {peer.id} lost acknowledged writes: {wrong[:10]} ({len(wrong)} in all)"
            values = peer.call("values", sorted(self.acked), timeout=60)
            for key, value in values.items():
                assert value is not None, f"peer {peer.id} lost {key}"
                assert self.acked[key] <= int(value) <= self.attempted[key], (peer.id, key, value)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _report(what: str, cluster: Cluster, load: Load, stats: list[dict[str, Any]], began: float) -> None:
    print(
        f"\n{what}: seed {SEED}, {cluster.restarts} restarts, {len(load.created)} acknowledged creates, "
        f"{load.sets} acknowledged sets, {load.unknown} writes of unknown outcome, "
        f"applied {stats[0]['applied_index']}, snapshots at {[s['snapshot_index'] for s in stats]}, "
        f"{time.monotonic() - began:.1f}s"
    )


# ---------------------------------------------------------------------------------------------------------------
# kill and restart under load


@pytest.mark.timeout(60 + 10 * ROUNDS)
def test_rounds_of_sigkill_and_restart_lose_nothing_acknowledged(cluster: Cluster) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    cluster.start_all()
    with Load(cluster, seed=SEED) as load:
        killed_leaders = 0
        for round_ in range(ROUNDS):
            time.sleep(rng.uniform(0.2, 0.6))
            # The leader every other round at least; otherwise anyone (the leader again, by chance).
            leader = cluster.leader()
            if (round_ % 2 == 0 or rng.random() < 1 / 3) and leader is not None:
                victim = leader
            else:
                victim = rng.choice(IDS)
            killed_leaders += victim == leader
            cluster.kill(victim)
            time.sleep(rng.uniform(0.0, 0.6))  # the others go on (and elect a leader) meanwhile
            cluster.restart(victim)
        time.sleep(0.5)
    assert killed_leaders >= ROUNDS // 2
    stats = cluster.converge()
    load.check(cluster)
    assert len(load.created) > 20 * ROUNDS, f"too little load to mean anything: {len(load.created)} creates"
    assert max(s["snapshot_index"] for s in stats) > 0, "no snapshot was taken"
    _report("kill/restart rounds", cluster, load, stats, began)


@pytest.mark.timeout(60 + 30 * CYCLES)
def test_the_whole_cluster_sigkilled_at_once_loses_nothing_acknowledged(cluster: Cluster) -> None:
    began = time.monotonic()
    cluster.start_all()
    load = Load(cluster, seed=SEED)
    for _cycle in range(CYCLES):
        with load:
            time.sleep(2.0)
            for peer in cluster.peers.values():  # all at once: no peer gets to notice the others going
                os.kill(peer.pid, signal.SIGKILL)
        for peer in cluster.peers.values():
            peer.kill()  # reap
        for pid in IDS:
            cluster.spawn(pid)
        for peer in cluster.peers.values():
            peer.wait_started(60)
        cluster.restarts += len(IDS)
        stats = cluster.converge()
        load.check(cluster)  # what was acknowledged before either kill
    assert len(load.created) > 20
    _report(f"whole cluster killed {CYCLES} time(s)", cluster, load, stats, began)


# ---------------------------------------------------------------------------------------------------------------
# data_dirs a peer must refuse


def _solo_data_dir(root: Path) -> tuple[Path, dict[str, Any]]:
    """The data_dir of a one-peer cluster that wrote a few hundred znodes (snapshots included), with its data
    compacted into LevelDB table files; and the config that started it."""
    (port,) = free_ports(1)
    config: dict[str, Any] = {
        "id": "a",
        "bind": f"tcp://127.0.0.1:{port}",
        "peers": {},
        "data_dir": str(root / "solo"),
        "cluster": "crash",
        "snapshot_entries": 20,
    }
    peer = CrashPeer(config)
    try:
        peer.wait_started(30)
        for n in range(60):
            peer.call("create", f"/n{n}", "x" * 2000)
        peer.call("stop")
    finally:
        peer.kill()
    db = plyvel.DB(config["data_dir"])
    db.compact_range()
    db.close()
    return Path(config["data_dir"]), config


def _damage(kind: str, path: Path) -> str:
    """Damage the LevelDB directory at ``path``; return what the refusal must say."""
    tables = sorted(path.glob("*.ldb"), key=lambda p: p.stat().st_size)
    if kind == "truncated table":
        os.truncate(tables[-1], tables[-1].stat().st_size // 2)
        return f"data_dir {path}"
    if kind == "flipped bytes in a table":
        data = bytearray(tables[-1].read_bytes())
        for pos in range(len(data) // 4, len(data) * 3 // 4, len(data) // 8):
            data[pos] ^= 0xFF
        tables[-1].write_bytes(bytes(data))
        return f"data_dir {path} is corrupt"
    if kind == "missing table":
        tables[-1].unlink()
        return f"data_dir {path}"
    if kind == "truncated manifest":
        (manifest,) = path.glob("MANIFEST-*")
        os.truncate(manifest, manifest.stat().st_size // 2)
        return f"data_dir {path}"
    if kind == "missing CURRENT":
        (path / "CURRENT").unlink()
        return f"data_dir {path} holds files but no embedzk database"
    if kind == "a record's own checksum":
        db = plyvel.DB(str(path))
        key, value = next(iter(db.iterator(prefix=b"e")))
        db.put(key, value[:-1] + bytes([value[-1] ^ 1]))
        db.close()
        return f"corrupt record {key!r} in {path}: checksum mismatch"
    raise AssertionError(kind)


DAMAGE = (
    "truncated table",
    "flipped bytes in a table",
    "missing table",
    "truncated manifest",
    "missing CURRENT",
    "a record's own checksum",
)


def test_damaged_or_foreign_data_dirs_are_refused_with_a_clear_storage_error(tmp_path: Path) -> None:
    original, config = _solo_data_dir(tmp_path)
    cases: list[tuple[str, dict[str, Any], str]] = []
    for n, kind in enumerate(DAMAGE):
        copy = tmp_path / f"damaged-{n}"
        shutil.copytree(original, copy)
        cases.append((kind, config | {"data_dir": str(copy)}, _damage(kind, copy)))
    for kind, changed, expected in (
        ("another peer's", {"id": "b"}, "belongs to cluster crash peer a, not cluster crash peer b"),
        ("another cluster's", {"cluster": "other"}, "belongs to cluster crash peer a, not cluster other peer a"),
        ("held by another process", {}, "is locked: another process"),
    ):
        copy = tmp_path / f"foreign-{len(cases)}"
        shutil.copytree(original, copy)
        cases.append((kind, config | changed | {"data_dir": str(copy)}, expected))
    holder = plyvel.DB(cases[-1][1]["data_dir"])  # LevelDB's lock, as a running peer holds it
    peers: list[tuple[str, CrashPeer, str]] = []
    try:
        for kind, cfg, expected in cases:  # all at once: each is one process start
            port = free_ports(1)[0]
            peers.append((kind, CrashPeer(cfg | {"bind": f"tcp://127.0.0.1:{port}", "start_timeout": 10}), expected))
        for kind, peer, expected in peers:
            with pytest.raises(StartFailed) as refused:
                peer.wait_started(60)
            error = refused.value
            assert error.name == "StorageError", (kind, error)
            assert expected in error.message, (kind, error.message)
            assert error.returncode == START_FAILED, (kind, error)
    finally:
        holder.close()
        for _kind, peer, _expected in peers:
            peer.kill()
    # Nothing started afresh over the damage: the original still holds its data, and a peer starts on it.
    peer = CrashPeer(config | {"bind": f"tcp://127.0.0.1:{free_ports(1)[0]}"})
    try:
        peer.wait_started(30)
        assert peer.call("get", "/n59") == "x" * 2000
    finally:
        peer.kill()




# ---------------------------------------------------------------------------------------------------------------
# snapshot streams read the tree as it was (copy-on-write)


_NAMES = ("a", "b", "c")


def _random_op(rng: random.Random) -> Any:
    def path() -> str:
        return "/" + "/".join(rng.choice(_NAMES) for _ in range(rng.randint(1, 3)))

    k = rng.random()
    if k < 0.35:
        return CreateOp(
            path(),
            rng.randbytes(rng.randint(0, 5)),
            makepath=rng.random() < 0.5,
            ephemeral=rng.random() < 0.1,
            sequential=rng.random() < 0.1,
            container=rng.random() < 0.05,
        )
    if k < 0.55:
        return DeleteOp(path())
    if k < 0.75:
        return SetDataOp(path(), rng.randbytes(3))
    if k < 0.85:  # fails more often than not: a rolled back multi must leave the streams alone too
        return MultiOp((CreateOp(path(), makepath=True), SetDataOp(path(), b"m"), CheckOp(path(), rng.choice((-1, 0)))))
    if k < 0.9:
        return CreateSessionOp(rng.randint(1, 3), 5000, "owner")
    if k < 0.95:
        return CloseSessionOp(rng.randint(1, 3))
    return DeleteContainerOp(path())


@pytest.mark.parametrize("seed", range(25))
def test_a_snapshot_stream_is_the_tree_as_it_was_when_opened(seed: int) -> None:
    rng = random.Random(seed)
    tree = DataTree()
    open_streams: list[tuple[Any, list[bytes], list[bytes]]] = []  # (stream, expected, read so far)
    for zxid in range(1, 400):
        tree.apply(Txn(rng.randint(0, 3), 1000 + zxid, _random_op(rng)), zxid)
        if rng.random() < 0.05:
            open_streams.append((tree.snapshot_chunks(128), list(tree.snapshot_chunks(128)), []))
        for stream, _expected, read in open_streams:
            if rng.random() < 0.3:
                read.extend(itertools.islice(stream, rng.randint(1, 3)))
        if open_streams and rng.random() < 0.01:
            open_streams.pop(0)[0].close()  # abandoned half-way
        for stream, expected, read in [s for s in open_streams if not s[0].open]:
            assert read == expected
        open_streams = [s for s in open_streams if s[0].open]
    for stream, expected, read in open_streams:
        read.extend(stream)
        assert read == expected
    assert tree._streams == 0 and not tree._fresh  # every stream ended: no copying any more
    restored = DataTree.restore(tree.snapshot_chunks(128))
    assert restored.digest == tree.digest and restored.node_count() == tree.node_count()


def test_a_stream_copies_each_changed_directory_once_and_readers_see_the_new_tree() -> None:
    tree = DataTree()
    for zxid, path in enumerate(["/d", "/d/x", "/d/y", "/e"], start=1):
        tree.apply(Txn(0, 1, CreateOp(path)), zxid)
    before = list(tree.snapshot_chunks())
    stream = tree.snapshot_chunks()
    old_root, old_d = tree._root, tree._root.children["d"]  # type: ignore[index]
    tree.apply(Txn(0, 2, SetDataOp("/d/x", b"1")), 5)
    root, d = tree._root, tree._root.children["d"]  # type: ignore[index]
    assert root is not old_root and d is not old_d  # the dicts on the path were copied...
    assert old_root.children["d"] is old_d and old_d.children["x"].data == b""  # type: ignore[index]
    tree.apply(Txn(0, 2, SetDataOp("/d/y", b"2")), 6)
    assert tree._root is root and tree._root.children["d"] is d  # type: ignore[index]  # ...once
    assert tree.get("/d/x")[0] == b"1" and tree.get("/d/y")[0] == b"2"
    assert list(stream) == before and not stream.open
    tree.apply(Txn(0, 2, SetDataOp("/d/y", b"3")), 7)
    assert tree._root is root  # no stream open: changes in place again


def test_a_stream_left_unread_stops_the_copying_when_collected() -> None:
    tree = DataTree()
    stream = tree.snapshot_chunks()
    assert tree._streams == 1
    del stream
    gc.collect()
    assert tree._streams == 0


# ---------------------------------------------------------------------------------------------------------------
# snapshots saved in parts


@pytest.fixture(params=["memory", "leveldb"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStorage(CONF)
    else:
        s = LevelDBStorage.open(tmp_path / "db", cluster_id="c", peer_id="a", conf_state=CONF)
        yield s
        s.close()


CONF = ConfState(voters=("a",))


def _log(storage: Any, last: int) -> None:
    storage.append([Entry(1, i) for i in range(storage.last_index() + 1, last + 1)], HardState(1, "a", last))


def test_parts_become_the_snapshot_only_with_the_last(storage: Any) -> None:
    _log(storage, 20)
    storage.save_snapshot(SnapshotMeta(5, 1, CONF), [b"old"])
    meta = SnapshotMeta(10, 1, CONF)
    storage.save_snapshot(meta, SnapshotPart(0, (b"p0", b"p1"), False))
    storage.compact(0)  # what the driver does after every part: nothing yet
    storage.save_snapshot(meta, SnapshotPart(2, (b"p2",), False))
    assert storage.snapshot_meta().index == 5 and list(storage.snapshot_chunks()) == [b"old"]
    storage.save_snapshot(meta, SnapshotPart(3, (b"p3",), True))
    assert storage.snapshot_meta() == meta and list(storage.snapshot_chunks()) == [b"p0", b"p1", b"p2", b"p3"]
    storage.compact(8)
    assert storage.first_index() == 9


def test_a_part_that_does_not_follow_is_refused(storage: Any) -> None:
    _log(storage, 20)
    meta = SnapshotMeta(10, 1, CONF)
    with pytest.raises(ValueError, match="follows nothing"):
        storage.save_snapshot(meta, SnapshotPart(1, (b"x",), False))
    storage.save_snapshot(meta, SnapshotPart(0, (b"p0",), False))
    with pytest.raises(ValueError, match="follows 1 chunks"):
        storage.save_snapshot(meta, SnapshotPart(2, (b"x",), True))
    with pytest.raises(ValueError, match="follows 1 chunks"):
        storage.save_snapshot(SnapshotMeta(11, 1, CONF), SnapshotPart(1, (b"x",), True))
    with pytest.raises(ValueError, match="past the last entry"):
        storage.save_snapshot(SnapshotMeta(30, 1, CONF), SnapshotPart(0, (b"x",), False))


def test_an_installed_or_whole_snapshot_drops_the_parts(storage: Any) -> None:
    _log(storage, 20)
    meta = SnapshotMeta(10, 1, CONF)
    storage.save_snapshot(meta, SnapshotPart(0, (b"p0",), False))
    storage.install_snapshot(SnapshotMeta(15, 1, CONF), [b"leader"])
    with pytest.raises(ValueError, match="follows nothing"):
        storage.save_snapshot(meta, SnapshotPart(1, (b"p1",), True))
    assert list(storage.snapshot_chunks()) == [b"leader"]
    storage.save_snapshot(SnapshotMeta(16, 1, CONF), SnapshotPart(0, (b"q0",), False))
    storage.save_snapshot(SnapshotMeta(17, 1, CONF), [b"whole"])
    with pytest.raises(ValueError, match="follows nothing"):
        storage.save_snapshot(SnapshotMeta(16, 1, CONF), SnapshotPart(1, (b"q1",), True))
    # A new first part starts over.
    storage.save_snapshot(SnapshotMeta(18, 1, CONF), SnapshotPart(0, (b"r0",), False))
    storage.save_snapshot(SnapshotMeta(19, 1, CONF), SnapshotPart(0, (b"s0",), False))
    storage.save_snapshot(SnapshotMeta(19, 1, CONF), SnapshotPart(1, (b"s1",), True))
    assert list(storage.snapshot_chunks()) == [b"s0", b"s1"] and storage.snapshot_meta().index == 19


def test_a_crash_between_parts_leaves_the_previous_snapshot_and_no_garbage(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with LevelDBStorage.open(path, cluster_id="c", peer_id="a", conf_state=CONF) as s:
        _log(s, 20)
        s.save_snapshot(SnapshotMeta(5, 1, CONF), [b"old"])
        s.save_snapshot(SnapshotMeta(10, 1, CONF), SnapshotPart(0, (b"p0", b"p1"), False))
        s.save_snapshot(SnapshotMeta(10, 1, CONF), SnapshotPart(2, (b"p2",), False))
    # (closing is what a kill does to what is on disk: the parts were synced, the switch never came)
    with LevelDBStorage.open(path, cluster_id="c", peer_id="a") as s:
        assert s.snapshot_meta().index == 5 and list(s.snapshot_chunks()) == [b"old"]
        # The next snapshot's chunks go under a generation no leftover can share, and nothing is left over.
        s.save_snapshot(SnapshotMeta(12, 1, CONF), SnapshotPart(0, (b"n0",), False))
        s.save_snapshot(SnapshotMeta(12, 1, CONF), SnapshotPart(1, (b"n1",), True))
    db = plyvel.DB(str(path))
    chunk_keys = [k for k, _v in db.iterator(prefix=b"s")]
    db.close()
    assert len(chunk_keys) == 2 and len({k[1:9] for k in chunk_keys}) == 1
    with LevelDBStorage.open(path, cluster_id="c", peer_id="a") as s:
        assert list(s.snapshot_chunks()) == [b"n0", b"n1"]


def test_leftover_chunks_of_a_higher_generation_never_mix_with_a_new_snapshot(tmp_path: Path) -> None:
    # Leftovers of an unfinished snapshot that a sweep removed but a power cut brought back (the sweep is not
    # synced): a new snapshot must not reuse their generation, or its chunk count would not add up.
    path = tmp_path / "db"
    with LevelDBStorage.open(path, cluster_id="c", peer_id="a", conf_state=CONF) as s:
        _log(s, 20)
    db = plyvel.DB(str(path))
    for n in range(5):
        key = b"s" + (1).to_bytes(8, "big") + n.to_bytes(4, "big")
        db.put(key, seal(key, b"leftover"))
    db.close()
    with LevelDBStorage.open(path, cluster_id="c", peer_id="a") as s:
        s.save_snapshot(SnapshotMeta(10, 1, CONF), [b"one"])
    db = plyvel.DB(str(path))
    for n in range(5):  # the leftovers are back (the sweep "lost")
        key = b"s" + (1).to_bytes(8, "big") + n.to_bytes(4, "big")
        db.put(key, seal(key, b"leftover"))
    db.close()
    with LevelDBStorage.open(path, cluster_id="c", peer_id="a") as s:
        assert list(s.snapshot_chunks()) == [b"one"]
        s.save_snapshot(SnapshotMeta(11, 1, CONF), SnapshotPart(0, (b"a",), False))
        s.save_snapshot(SnapshotMeta(11, 1, CONF), SnapshotPart(1, (b"b",), True))
    with LevelDBStorage.open(path, cluster_id="c", peer_id="a") as s:
        assert list(s.snapshot_chunks()) == [b"a", b"b"]


# ---------------------------------------------------------------------------------------------------------------
# the replica's snapshot job


def _tree(nodes: int) -> DataTree:
    tree = DataTree()
    for zxid in range(1, nodes + 1):
        tree.apply(Txn(0, 1, CreateOp(f"/n{zxid}", b"x" * 100)), zxid)
    return tree


def test_a_small_snapshot_goes_out_whole_in_one_step() -> None:
    tree = _tree(10)
    meta = SnapshotMeta(10, 1, CONF)
    job = snapshot_jobs.SnapshotJob(meta, tree, b"header", tree.snapshot_chunks(), compact_to=3)
    chunks, done = job.step()
    assert done and isinstance(chunks, list) and chunks[0] == b"header"
    assert DataTree.restore(chunks[1:]).digest == tree.digest


def test_a_big_snapshot_goes_out_in_bounded_parts_while_the_tree_changes() -> None:
    tree = _tree(2000)
    expected = [b"header", *tree.snapshot_chunks(1024)]
    job = snapshot_jobs.SnapshotJob(SnapshotMeta(2000, 1, CONF), tree, b"header", tree.snapshot_chunks(1024), 0)
    parts: list[SnapshotPart] = []
    done = False
    zxid = 2000
    while not done:
        part, done = job.step(4096)
        assert isinstance(part, SnapshotPart) and part.last == done and part.chunks
        assert sum(map(len, part.chunks)) < 4096 + 1024
        parts.append(part)
        zxid += 1
        tree.apply(Txn(0, 1, SetDataOp(f"/n{zxid - 1999}", b"changed")), zxid)
    assert len(parts) > 10
    assert [c for p in parts for c in p.chunks] == expected
    assert [p.first for p in parts] == list(itertools.accumulate([0] + [len(p.chunks) for p in parts[:-1]]))
    assert tree._streams == 0


def test_a_cancelled_job_stops_the_copying() -> None:
    tree = _tree(100)
    job = snapshot_jobs.SnapshotJob(SnapshotMeta(100, 1, CONF), tree, b"h", tree.snapshot_chunks(256), 0)
    job.step(512)
    assert tree._streams == 1
    job.cancel()
    assert tree._streams == 0


@pytest.mark.parametrize("seed", range(5000, 5005))
def test_simulations_with_every_snapshot_in_many_parts(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Snapshots every 20 entries, each sent in steps of one chunk of at most 128 bytes: every snapshot spans many
    # advance() calls, with crashes, partitions, installs from the leader and membership changes going on.
    monkeypatch.setattr(snapshot_jobs, "STEP_BYTES", 1)
    monkeypatch.setattr(snapshot_jobs, "CHUNK_BYTES", 128)
    parts = 0
    save_part = MemoryStorage._save_part

    def counting(self: MemoryStorage, meta: SnapshotMeta, part: SnapshotPart) -> None:
        nonlocal parts
        parts += 1
        save_part(self, meta, part)

    monkeypatch.setattr(MemoryStorage, "_save_part", counting)
    # Crashes and membership changes on, leaders never struck: enough progress for many snapshots in every seed.
    config = dataclasses.replace(
        SimConfig.from_seed(seed), snapshot_entries=20, keep_entries=5, duration=4.0, founding=False, churn=False,
        crashes=True, membership=True, strike_rate=0.0,
    )
    try:
        Simulation(config).run()
    except SimulationFailure as exc:
        pytest.fail(f"seed {seed} with snapshots every 20 entries in parts of one chunk: {exc}")
    assert parts > 0


class _Replicas:
    """Three replicas over memory disks, a FIFO network, a manual clock; a node can be cut off and frozen."""

    TICK = 0.01

    def __init__(self) -> None:
        self.ids = ["r0", "r1", "r2"]
        conf = ConfState(voters=tuple(self.ids))
        rng = random.Random(3)
        self.disks = {i: MemoryStorage(conf) for i in self.ids}
        self.replicas = {
            i: Replica(
                ReplicaConfig(id=i, tick_interval=self.TICK, session_timeout=5.0, snapshot_entries=20, keep_entries=0),
                self.disks[i],
                random.Random(rng.random()),
            )
            for i in self.ids
        }
        self.now = 0.0
        self.queue: list[tuple[str, str, bytes]] = []
        self.frozen: set[str] = set()
        self.request = 0

    def pump(self, node_id: str) -> None:
        replica, disk = self.replicas[node_id], self.disks[node_id]
        while replica.has_ready():
            rd = replica.ready()
            self.queue.extend((node_id, to, encode(msg)) for to, msg in rd.early_messages)
            if rd.raft is not None:
                if rd.raft.snapshot is not None:
                    disk.install_snapshot(*rd.raft.snapshot)
                if rd.raft.entries or rd.raft.hard_state is not None:
                    disk.append(rd.raft.entries, rd.raft.hard_state)
            out = replica.advance(rd)
            if out.snapshot is not None:
                disk.save_snapshot(*out.snapshot)
                disk.compact(out.compact_to)
            self.queue.extend((node_id, to, encode(msg)) for to, msg in out.messages)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / self.TICK)):
            self.now += self.TICK
            for node_id, replica in self.replicas.items():
                if node_id not in self.frozen:
                    replica.tick(self.now, 1_700_000_000_000 + int(self.now * 1000))
                    self.pump(node_id)
            while self.queue:
                frm, to, data = self.queue.pop(0)
                if frm not in self.frozen and to not in self.frozen:
                    self.replicas[to].receive(frm, decode(data))
                    self.pump(to)

    def leader(self) -> Replica:
        (leader,) = [r for r in self.replicas.values() if r.is_leader]
        return leader

    def write(self, op: Any) -> None:
        self.request += 1
        self.leader().submit(self.request, op, timeout=10.0)


def test_a_snapshot_from_the_leader_ends_a_snapshot_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_jobs, "STEP_BYTES", 1)
    monkeypatch.setattr(snapshot_jobs, "CHUNK_BYTES", 128)
    cancelled: list[DataTree] = []
    cancel = snapshot_jobs.SnapshotJob.cancel

    def counting(job: snapshot_jobs.SnapshotJob) -> None:
        cancelled.append(job.tree)
        cancel(job)

    monkeypatch.setattr(snapshot_jobs.SnapshotJob, "cancel", counting)
    c = _Replicas()
    c.run(1.0)
    follower = next(r for r in c.replicas.values() if not r.is_leader)
    # A big tree, so that the follower's snapshots take hundreds of steps; stop it in the middle of one.
    for n in range(300):
        c.write(CreateOp(f"/n{n}", b"x" * 100))
    for _ in range(500):
        c.run(c.TICK)
        job = getattr(follower, "_snapshot_job", None)
        if job is not None and follower.applied >= 300:
            break
    assert getattr(follower, "_snapshot_job", None) is not None
    old_tree = follower.tree
    c.frozen.add(follower.id)
    # Meanwhile the others shrink the tree and snapshot and compact past everything the follower holds.
    for n in range(295):
        c.write(DeleteOp(f"/n{n}"))
    c.run(1.0)
    for n in range(60):
        c.write(SetDataOp("/n299", b"%d" % n))
    leader = c.leader()
    for _ in range(100):
        c.run(0.1)
        if c.disks[leader.id].first_index() > follower.applied + 1:
            break
    assert c.disks[leader.id].first_index() > follower.applied + 1, "the leader never compacted past the follower"
    c.frozen.clear()
    c.run(3.0)
    assert old_tree in cancelled and old_tree._streams == 0
    assert follower.applied == leader.applied and follower.tree.digest == leader.tree.digest
    assert follower.tree.get_children("/") == leader.tree.get_children("/")
    assert c.disks[follower.id]._staged is None
