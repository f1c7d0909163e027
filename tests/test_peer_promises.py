"""Promises of docs/peer.md held on a LocalCluster: watches outlive their peer's session, and a recursive delete raced
by other peers' writes removes the whole subtree at once, or fails with a documented error leaving it whole.

docs/peer.md, Watches: "Watches are local to a peer and survive a session's expiry: the peer keeps applying changes,
so they keep firing." Znode operations: "Recursive delete removes the whole subtree in one atomic multi, retried if
children come and go meanwhile"; delete raises NoNodeError, BadVersionError or NotEmptyError.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from embedzk import (
    EventType,
    KeeperState,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    Peer,
    WatchedEvent,
)
from embedzk.testing.cluster import LocalCluster, wait_until

pytestmark = pytest.mark.timeout(120)

#: The session timeout of the watch tests: short, so that a session expires quickly, and still more than two
#: election timeouts (0.3 s each by default), as Peer demands.
SESSION_TIMEOUT = 1.0


class Journal:
    """What the watch callbacks of one peer received, in the order they ran.

    Every callback of a peer runs on its one dispatch thread, so the entries are in dispatch order; the test thread
    only reads them (a list's append and copy are atomic).
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, Any, WatchedEvent | None]] = []

    def one_shot(self, name: str) -> Callable[[WatchedEvent], None]:
        return lambda event: self.entries.append((name, None, event))

    def receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, event: WatchedEvent) -> None:
            self.entries.append((name, None, event))

        return receive

    def data_watch(self, data: bytes | None, stat: Any, event: WatchedEvent | None) -> None:
        self.entries.append(("DataWatch", data, event))

    def children_watch(self, children: list[str], event: WatchedEvent | None) -> None:
        self.entries.append(("ChildrenWatch", sorted(children), event))

    def of(self, name: str) -> list[tuple[Any, WatchedEvent | None]]:
        return [(value, event) for who, value, event in list(self.entries) if who == name]

    def events(self, name: str) -> list[tuple[EventType, str, int]]:
        return [(e.type, e.path, e.zxid) for _value, e in self.of(name) if e is not None]


def _expire_session(
    cluster: LocalCluster, peer: Peer, witness: Peer, ephemeral: str, meanwhile: Callable[[], Any]
) -> None:
    """Cut ``peer`` off until the cluster has expired its session (its ``ephemeral`` node gone on ``witness``), call
    ``meanwhile`` (writes the others make while it is away), heal, and wait until it has a new session."""
    states: list[KeeperState] = []
    peer.add_listener(states.append)
    old_session = peer.session_id
    cluster.isolate(peer.id)
    wait_until(lambda: witness.exists(ephemeral) is None, timeout=10 + 2 * SESSION_TIMEOUT, what="the session expires")
    meanwhile()
    cluster.heal()
    wait_until(lambda: KeeperState.LOST in states, timeout=20, what=f"{peer.id} hears that its session expired")
    wait_until(
        lambda: peer.connected and peer.session_id not in (None, old_session),
        timeout=20,
        what=f"{peer.id} has a new session",
    )
    peer.remove_listener(states.append)


@pytest.mark.parametrize("catch_up", ["log", "snapshot"])
def test_watches_made_before_a_session_expired_keep_firing_after_it(catch_up: str) -> None:
    """Every kind of watch a peer made before its session expired fires for the changes it applies afterwards:
    those it missed while cut off (replayed from the log, or told as net changes when it catches up by installing
    the leader's snapshot), and those made once it has a new session.

    Fails if the peer drops or disables its watches when its session expires or is renewed (as ZooKeeper's client
    does with its one-shot watches, and kazoo with its DataWatch and ChildrenWatch on LOST), or if a snapshot
    installed on the way back replaces the tree without telling the watchers.
    """
    # keep_entries (1,000) entries stay behind each snapshot: more writes than that while the peer is away, with a
    # snapshot every 50 entries, leave the leader without the log the peer needs, so it sends its snapshot.
    during = 1 if catch_up == "log" else 1_200
    options: dict[str, Any] = {"session_timeout": SESSION_TIMEOUT}
    if catch_up == "snapshot":
        options["snapshot_entries"] = 50
    with LocalCluster(n=3, **options) as c:
        leader = c.leader()
        peer = next(p for p in c.peers if p is not leader)  # the peer whose session expires
        root = "/watched"
        leader.create(root)
        leader.create(f"{root}/config", b"v0")
        leader.create(f"{root}/kids")
        peer.sync()
        peer.create(f"{root}/eph", ephemeral=True)  # goes with the session, on every peer

        journal = Journal()
        peer.watch(root).connect(journal.receiver("persistent"), weak=False)
        peer.watch(root, recursive=True).connect(journal.receiver("recursive"), weak=False)
        peer.DataWatch(f"{root}/config")(journal.data_watch)
        peer.ChildrenWatch(root, send_event=True)(journal.children_watch)
        assert peer.exists(f"{root}/later", watch=journal.one_shot("exists")) is None
        assert peer.get_children(f"{root}/kids", watch=journal.one_shot("get_children")) == []
        assert peer.get(f"{root}/config", watch=journal.one_shot("get"))[0] == b"v0"
        wait_until(lambda: journal.of("DataWatch") and journal.of("ChildrenWatch"), what="the first calls")
        assert journal.of("DataWatch") == [(b"v0", None)]
        assert journal.of("ChildrenWatch") == [(["config", "eph", "kids"], None)]
        watches = peer.stats()
        before_away = leader.exists(root).pzxid  # type: ignore[union-attr]  # the ephemeral node's creation

        def write_while_away() -> None:
            futures = [leader.set_async(f"{root}/config", b"during-%d" % i) for i in range(during)]
            for future in futures:
                future.result(30)

        _expire_session(c, peer, leader, f"{root}/eph", write_while_away)

        # Changes made once the peer has its new session, by another peer.
        leader.create(f"{root}/later")
        later = leader.exists(f"{root}/later").czxid  # type: ignore[union-attr]
        leader.create(f"{root}/kids/k")
        kid = leader.exists(f"{root}/kids/k").czxid  # type: ignore[union-attr]
        after = leader.set(f"{root}/config", b"after").mzxid
        peer.sync()
        assert peer.get(f"{root}/config")[0] == b"after"

        def heard_everything() -> bool:
            return (
                (EventType.CHANGED, f"{root}/config", after) in journal.events("recursive")
                and (b"after", after) in [(data, e.zxid) for data, e in journal.of("DataWatch") if e is not None]
                and bool(journal.of("exists"))
                and bool(journal.of("get_children"))
            )

        wait_until(heard_everything, timeout=20, what="the watches fire for the changes made after the expiry")

        # One-shot watches: each fired once, for the first change of its node, both after the expiry.
        assert journal.events("exists") == [(EventType.CREATED, f"{root}/later", later)]
        assert journal.events("get_children") == [(EventType.CHILD, f"{root}/kids", kid)]
        [(kind, path, zxid)] = journal.events("get")  # the first change of the config: made while the peer was away
        assert (kind, path) == (EventType.CHANGED, f"{root}/config") and before_away < zxid < later

        # Persistent watch of the root: the ephemeral node's going (caught up), then /later (its new session).
        persistent = journal.events("persistent")
        assert persistent[-1] == (EventType.CHILD, root, later)
        assert [zxid for kind, path, zxid in persistent[:-1] if kind is EventType.CHILD and path == root], persistent
        assert all(zxid > before_away for _k, _p, zxid in persistent)

        # Recursive watch: everything under the root made after the expiry.
        recursive = journal.events("recursive")
        assert recursive[-3:] == [
            (EventType.CREATED, f"{root}/later", later),
            (EventType.CREATED, f"{root}/kids/k", kid),
            (EventType.CHANGED, f"{root}/config", after),
        ]
        caught_up = recursive[:-3]
        if catch_up == "log":
            # Change by change: the ephemeral node deleted by the expiry of the peer's own session, the write.
            assert (EventType.DELETED, f"{root}/eph") in [(k, p) for k, p, _z in caught_up], caught_up
            assert [k for k, p, _z in caught_up if p == f"{root}/config"] == [EventType.CHANGED] * during
        else:
            # Not every one of the writes: the peer installed a snapshot (else this case tests nothing of it).
            assert len([p for _k, p, _z in caught_up if p == f"{root}/config"]) < during, "no snapshot installed"

        # DataWatch and ChildrenWatch: called for what was missed (each call reads the node as it is when it runs,
        # which may already be later), then for the changes made after; the last call sees the latest state.
        data_calls = journal.of("DataWatch")
        assert [e for _d, e in data_calls if e is not None and e.type is EventType.CHANGED and e.zxid < later]
        assert data_calls[-1][0] == b"after" and data_calls[-1][1].zxid == after  # type: ignore[union-attr]
        children_calls = journal.of("ChildrenWatch")
        assert [e for _c, e in children_calls if e is not None and e.type is EventType.CHILD and e.zxid < later]
        assert children_calls[-1][0] == ["config", "kids", "later"]
        assert children_calls[-1][1].zxid == later  # type: ignore[union-attr]

        # One dispatch thread, in zxid order, throughout.
        zxids = [e.zxid for _who, _value, e in list(journal.entries) if e is not None]
        assert zxids == sorted(zxids)
        now = peer.stats()
        assert now["persistent_watches"] == watches["persistent_watches"]
        assert now["callbacks_failed"] == 0


# ----------------------------------------------------------------------------------------------------------------
# recursive delete raced by other peers


def _make_subtree(peer: Peer, sub: str) -> list[str]:
    """Create ``sub`` with branches, leaves and a deeper chain; return every path created, parents first."""
    paths = [sub]
    for b in range(4):
        paths.append(f"{sub}/b{b}")
        paths.extend(f"{sub}/b{b}/leaf{i}" for i in range(3))
    paths.extend([f"{sub}/b0/leaf0/x", f"{sub}/b0/leaf0/x/y"])
    transaction = peer.transaction()
    for path in paths:
        transaction.create(path)
    assert all(isinstance(result, str) for result in transaction.commit())
    return paths


def _assert_gone_everywhere(peers: list[Peer], parent: str, sub: str) -> None:
    """After a sync, no peer has ``sub`` or anything under it, and all agree on their tree."""
    name = sub.rsplit("/", 1)[1]
    for peer in peers:
        peer.sync()
        assert peer.exists(sub) is None, peer.id
        assert name not in peer.get_children(parent), peer.id
        with pytest.raises(NoNodeError):
            peer.get_children(sub)
        assert peer.connected, peer.id
    # Replicas at the same index hold the same tree (stats' digest); nothing else writes now.
    wait_until(
        lambda: len({(s["applied_index"], s["digest"], s["znode_count"]) for s in (p.stats() for p in peers)}) == 1,
        timeout=10,
        what="every peer at the same index with the same tree",
    )


def _race_subtree_reads(deleter: Peer, sub: str, changes: list[Callable[[], Any]], monkeypatch: Any) -> list[int]:
    """Make ``changes[i]`` happen (on another peer, committed) right after the deleter's attempt i has read the
    subtree and before it sends its multi; return the number of operations of each attempt."""
    original = deleter._subtree_deletes
    attempts: list[int] = []

    def racing(tree: Any, path: str, ops: list[Any]) -> None:
        original(tree, path, ops)
        if path == sub:  # the outermost call: the whole subtree has been read, the multi is not sent yet
            attempts.append(len(ops))
            if len(attempts) <= len(changes):
                changes[len(attempts) - 1]()

    monkeypatch.setattr(deleter, "_subtree_deletes", racing)
    return attempts


def test_a_recursive_delete_is_retried_when_the_subtree_changed_since_it_was_read(monkeypatch: Any) -> None:
    """A child created, a leaf deleted, a grandchild created under a leaf, each by another peer between the
    deleter's read of the subtree and its multi: every attempt fails as a whole, and the next one, reading the
    subtree again, deletes all of it, the newcomers included.

    Fails if the delete gives up at the first NotEmptyError or NoNodeError, retries the multi it built from the old
    read, or reads a replica that has not yet applied the change that made its attempt fail.
    """
    with LocalCluster(n=3) as c:
        leader = c.leader()
        deleter, other = [p for p in c.peers if p is not leader]  # a follower deletes, another follower races it
        paths = _make_subtree(leader, "/tree")
        deleter.sync()
        changes = [
            lambda: other.create("/tree/b1/newcomer"),
            lambda: other.delete("/tree/b2/leaf1"),
            lambda: other.create("/tree/b3/leaf2/grandchild"),
        ]
        attempts = _race_subtree_reads(deleter, "/tree", changes, monkeypatch)
        assert deleter.delete("/tree", recursive=True) is None
        # Each attempt saw the previous change: one delete more, one fewer, one more; the fourth went through.
        n = len(paths) - 1
        assert attempts == [n, n + 1, n, n + 1]
        assert deleter.exists("/tree") is None  # a peer reads its own writes
        _assert_gone_everywhere(c.peers, "/", "/tree")


def test_a_recursive_delete_raced_at_every_attempt_gives_up_with_not_empty_and_deletes_nothing(
    monkeypatch: Any,
) -> None:
    """Raced at every attempt, the delete ends with NotEmptyError (the documented error), after a bounded number
    of attempts, and every attempt failed as a whole: nothing of the subtree is gone, on any peer.

    Fails if an attempt deletes part of the subtree before failing (a multi that is not all or nothing, or
    deletes sent one by one), or if the delete retries forever or ends in another error.
    """
    with LocalCluster(n=3) as c:
        leader = c.leader()
        deleter = next(p for p in c.peers if p is not leader)
        paths = _make_subtree(leader, "/kept")
        deleter.sync()
        added: list[str] = []

        def add_one() -> None:
            added.append(leader.create("/kept/b1/more-", sequence=True))

        attempts = _race_subtree_reads(deleter, "/kept", [add_one] * 100, monkeypatch)
        with pytest.raises(NotEmptyError):
            deleter.delete("/kept", recursive=True)
        assert 1 < len(attempts) < 100
        for peer in c.peers:
            peer.sync()
            for path in paths + added:
                assert peer.exists(path) is not None, (peer.id, path)
            names = ["leaf0", "leaf1", "leaf2"] + [path.rsplit("/", 1)[1] for path in added]
            assert sorted(peer.get_children("/kept/b1")) == sorted(names), peer.id
        monkeypatch.undo()  # nobody races it now: it goes through
        deleter.delete("/kept", recursive=True)
        _assert_gone_everywhere(c.peers, "/", "/kept")


class _Churn:
    """A thread per peer creating and deleting leaves under the branches of a subtree until told to stop.

    Each creates sequential leaves ``n-`` under a random branch, or deletes one of the ``n-`` leaves its peer sees;
    it never touches the nodes the test made. NoNodeError (a leaf deleted by another, or the subtree gone) and
    NodeExistsError are the races it expects; anything else is kept in ``errors``.
    """

    def __init__(self, peers: list[Peer], sub: str, seed: int) -> None:
        self.sub = sub
        self.done = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(peer, random.Random(seed * 10 + i)), daemon=True)
            for i, peer in enumerate(peers)
        ]

    def __enter__(self) -> _Churn:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "a churning thread is stuck"

    def _run(self, peer: Peer, rng: random.Random) -> None:
        while not self._stop.is_set():
            branch = f"{self.sub}/b{rng.randrange(4)}"
            try:
                leaves = [name for name in peer.get_children(branch) if name.startswith("n-")]
                if leaves and rng.random() < 0.5:
                    peer.delete(f"{branch}/{rng.choice(leaves)}")
                else:
                    peer.create(f"{branch}/n-", sequence=True)
                with self._lock:
                    self.done += 1
            except (NoNodeError, NodeExistsError):
                pass
            except BaseException as exc:  # noqa: BLE001 - kept for the test to report
                self.errors.append(exc)
                return
            self._stop.wait(rng.uniform(0, 0.004))  # paces the writers a little, so that some attempts get through


def _check_history(events: list[tuple[EventType, str, int]], made: list[str], sub: str) -> None:
    """Replay what a recursive watch of ``sub`` heard, from the nodes ``made`` at the start: every change is
    possible at its point, and the zxid that deletes ``sub`` deletes everything left under it, at once, last."""
    live = set(made)
    by_zxid: dict[int, list[tuple[EventType, str]]] = {}
    for kind, path, zxid in events:
        by_zxid.setdefault(zxid, []).append((kind, path))
    assert list(by_zxid) == sorted(by_zxid), "events out of zxid order"
    end = None
    for zxid, changes in by_zxid.items():
        assert end is None, f"a change under {sub} after it was deleted: {changes} at {zxid}"
        for kind, path in changes:
            parent = path.rsplit("/", 1)[0]
            if kind is EventType.CREATED:
                assert path not in live and parent in live, (zxid, kind, path)
                live.add(path)
            elif kind is EventType.DELETED:
                assert path in live and not any(p.startswith(path + "/") for p in live - {path}), (zxid, kind, path)
                live.remove(path)
        if (EventType.DELETED, sub) in changes:
            end = zxid
            assert not live, f"left behind by the recursive delete at {zxid}: {sorted(live)}"
        else:
            # Only the churn changes anything before: one leaf at a time, never a node the test made.
            assert len(changes) == 1 and changes[0][1].rsplit("/", 1)[1].startswith("n-"), (zxid, changes)
    assert end is not None, f"{sub} was never deleted"


def test_a_recursive_delete_while_other_peers_create_and_delete_under_it_removes_it_all_at_once() -> None:
    """Three peers create and delete leaves under a subtree while one of them (the leader, then each follower)
    deletes it recursively. The delete returns, or gives up with NotEmptyError (then, the churn stopped, it goes
    through); the churn meets only the errors its races explain; and on every peer a recursive watch of the subtree
    heard the same changes, ending with one zxid that deleted everything left, after which every peer, synced,
    has nothing of it.

    Fails if the delete leaves part of the subtree (deletes not in one multi, or a multi applied partly), if a peer
    crashes or diverges (different events, digests or trees), if the delete raises anything else, or if a write
    can create under a node that is gone.
    """
    with LocalCluster(n=3) as c:
        leader = c.leader()
        deleters = [leader] + [p for p in c.peers if p is not leader]
        for number, deleter in enumerate(deleters):
            sub = f"/churn{number}"
            made = _make_subtree(leader, sub)
            journals: dict[str, list[tuple[EventType, str, int]]] = {}
            for peer in c.peers:
                peer.sync()  # the subtree is there: the watch hears only what comes next
                heard: list[tuple[EventType, str, int]] = []
                journals[peer.id] = heard
                peer.watch(sub, recursive=True).connect(
                    lambda sender, event, heard=heard: heard.append((event.type, event.path, event.zxid)), weak=False
                )
            with _Churn(c.peers, sub, seed=number) as churn:
                wait_until(lambda: churn.done >= 30 or churn.errors, timeout=30, what="the churn is under way")
                assert not churn.errors, churn.errors
                try:
                    deleter.delete(sub, recursive=True)
                    raced = False
                except NotEmptyError:
                    raced = True  # children kept coming: allowed, and then nothing may be gone
                    assert deleter.exists(sub) is not None
                churn.stop()
            assert not churn.errors, churn.errors
            if raced:
                deleter.delete(sub, recursive=True)
            assert deleter.exists(sub) is None
            _assert_gone_everywhere(c.peers, "/", sub)
            for peer in c.peers:
                heard = journals[peer.id]
                wait_until(
                    lambda: (EventType.DELETED, sub) in [(k, p) for k, p, _z in heard],  # noqa: B023 - waited on here
                    timeout=10,
                    what=f"{peer.id}'s watch hears that {sub} is gone",
                )
                peer.unwatch(sub)
            first = journals[deleters[0].id]
            for peer in c.peers:
                assert journals[peer.id] == first, f"{peer.id} heard other changes than {deleters[0].id}"
            _check_history(first, made, sub)
        for peer in c.peers:
            stats = peer.stats()  # raises PeerStoppedError if the peer crashed
            assert stats["callbacks_failed"] == 0 and peer.connected
