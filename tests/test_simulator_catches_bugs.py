"""The simulator's checks must catch real bugs: inject classic ones and watch them fail (a mutation score).

A simulator whose checks never fail proves nothing. Each test here breaks the system on purpose, in a way a careless
implementation could (Raft's Figure 8, an unconfirmed read index, a vote that is not durable ...), by monkeypatching
a method of the consensus core, of the storage or of the session tracker (never a branch in the library), then runs
the seeds of the default test run in order and requires that one of the first few reports the bug as the violation
it is, not just any failure. docs/testing.md lists the seeds each one took.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from embedzk.consensus.log import RaftLog
from embedzk.consensus.messages import Message, MessageType
from embedzk.consensus.raft import Raft, StateRole
from embedzk.consensus.rawnode import RawNode, Ready
from embedzk.consensus.read_only import ReadOnly
from embedzk.consensus.types import Entry, HardState, SnapshotMeta
from embedzk.persist.memory import MemoryStorage
from embedzk.replica.sessions import SessionTracker
from embedzk.testing.simulate import run_seed

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Mutant:
    """A bug: how to inject it, where to hunt it, and what the simulator must call it."""

    name: str
    inject: Callable[[pytest.MonkeyPatch], None]
    #: What the report must say: a regular expression over the failure text.
    expect: str
    #: "" for the seeds' own runs, or a profile of the default run (its crash-heavy seeds).
    profile: str = ""
    #: The budget: how many seeds of the default run may go by before the bug must have been caught (the default
    #: run has 200 of the seeds' own, 40 crash-heavy and 40 churn ones).
    seeds: int = 40


def first_catch(seeds: range, profile: str = "") -> tuple[int, str] | None:
    """The first seed of ``seeds`` whose run fails, and its report."""
    for seed in seeds:
        problem = run_seed(seed, profile=profile)
        if problem:
            return seed, problem
    return None


# --- the bugs ---------------------------------------------------------------------------------------------------


def figure_8_commit(mp: pytest.MonkeyPatch) -> None:
    # The leader commits an entry once a majority holds it, whatever its term (thesis 3.6.2 forbids it for
    # entries of earlier terms: a later leader may still overwrite them).
    def maybe_commit(self: RaftLog, index: int, term: int) -> bool:
        if index > self.committed:
            self.commit_to(index)
            return True
        return False

    mp.setattr(RaftLog, "maybe_commit", maybe_commit)


def read_index_unconfirmed(mp: pytest.MonkeyPatch) -> None:
    # The leader answers a read index with its commit index at once, without the heartbeat round that proves it
    # is still the leader (thesis 6.4 step 3): a deposed leader that does not know it serves stale reads.
    def read_on_leader(self: Raft, ctx: bytes, requester: str | None) -> None:
        self._respond_read(self.log.committed, ctx, requester)

    mp.setattr(Raft, "_read_on_leader", read_on_leader)


def vote_not_persisted(mp: pytest.MonkeyPatch) -> None:
    # The storage drops the vote from the hard state it saves: after a restart the node may vote again.
    original = MemoryStorage.append

    def append(self: MemoryStorage, entries: Any, hard_state: HardState | None = None, sync: bool = True) -> None:
        if hard_state is not None:
            hard_state = dataclasses.replace(hard_state, vote=None)
        original(self, entries, hard_state, sync)

    mp.setattr(MemoryStorage, "append", append)


def two_votes_in_one_term(mp: pytest.MonkeyPatch) -> None:
    # A node grants its vote to any candidate with a good log, forgetting the one it voted for in this term.
    original = Raft._handle_vote

    def handle_vote(self: Raft, m: Message) -> None:
        if m.type is not MessageType.VOTE or self.vote in (None, m.frm):
            original(self, m)
            return
        vote, lead = self.vote, self.lead
        self.vote = self.lead = None
        original(self, m)
        if self.vote is None:
            self.vote = vote
        self.lead = lead

    mp.setattr(Raft, "_handle_vote", handle_vote)


def committed_entry_truncated(mp: pytest.MonkeyPatch) -> None:
    # A follower replaces its log after the append's entries with nothing, instead of truncating only at the first
    # conflict: a late, shorter append removes entries it acknowledged, which the leader may have committed.
    def maybe_append(
        self: RaftLog, index: int, log_term: int, commit: int, entries: tuple[Entry, ...]
    ) -> tuple[int, list[Entry]] | None:
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        appended = list(entries)
        if appended:
            self.unstable.truncate_and_append(appended)
        self.commit_to(min(commit, last_new))
        return last_new, appended

    mp.setattr(RaftLog, "maybe_append", maybe_append)


def stale_term_appends(mp: pytest.MonkeyPatch) -> None:
    # A node takes appends from a leader of an older term as if they were of its own (thesis 3.4 says reject).
    original = Raft.step

    def step(self: Raft, m: Message) -> None:
        if m.type is MessageType.APP and m.term < self.term:
            m = dataclasses.replace(m, term=self.term)
        original(self, m)

    mp.setattr(Raft, "step", step)


def sync_one_entry_early(mp: pytest.MonkeyPatch) -> None:
    # The read index is recorded one entry short of the commit index: sync() returns before the last write.
    original = ReadOnly.add_request

    def add_request(self: ReadOnly, index: int, ctx: bytes, requester: str | None) -> bool:
        return original(self, max(0, index - 1), ctx, requester)

    mp.setattr(ReadOnly, "add_request", add_request)


def uncommitted_entry_applied(mp: pytest.MonkeyPatch) -> None:
    # Entries are handed out for applying as soon as they are in the log, committed or not.
    def has_next(self: RaftLog) -> bool:
        return self.last_index() > self.applying and self.unstable.snapshot is None

    def next_entries(self: RaftLog) -> list[Entry]:
        if not has_next(self):
            return []
        return self.slice(self.applying + 1, self.last_index() + 1, self.max_applying_bytes)

    def applied_to(self: RaftLog, index: int) -> None:
        self.applied = max(self.applied, index)
        self.applying = max(self.applying, index)

    mp.setattr(RaftLog, "has_next_committed_entries", has_next)
    mp.setattr(RaftLog, "next_committed_entries", next_entries)
    mp.setattr(RaftLog, "applied_to", applied_to)


def stale_snapshot_installed(mp: pytest.MonkeyPatch) -> None:
    # A follower installs any complete snapshot from its leader, even one older than what it already applied.
    original = Raft._handle_snapshot_chunk

    def handle_chunk(self: Raft, m: Message) -> None:
        log = self.log
        held = log.committed
        if m.snapshot is not None and 0 < m.snapshot.index <= held:
            log.committed = m.snapshot.index - 1  # "is it newer than what we hold?" is never asked
        original(self, m)
        if log.committed < held and not log.has_next_or_in_progress_snapshot():
            log.committed = held

    def restore(self: Raft, meta: SnapshotMeta, chunks: list[bytes]) -> bool:
        if self.role is not StateRole.FOLLOWER:
            return False
        self.log.restore(meta, chunks)
        self._reset_conf(meta.conf_state)
        return True

    mp.setattr(Raft, "_handle_snapshot_chunk", handle_chunk)
    mp.setattr(Raft, "_restore", restore)


def unsynced_tail_lost(mp: pytest.MonkeyPatch) -> None:
    # New entries are written without a sync: a machine crash loses the tail the node acknowledged.
    original = RawNode.ready

    def ready(self: RawNode) -> Ready:
        rd = original(self)
        if rd.entries:
            rd.must_sync = False
        return rd

    mp.setattr(RawNode, "ready", ready)


def session_expired_early(mp: pytest.MonkeyPatch) -> None:
    # The leader's session tracker reads timeouts as half what they are: ephemerals go before their time.
    original = SessionTracker.expired

    def expired(self: SessionTracker, timeouts_ms: Mapping[int, int], now: float, retry_after: float) -> list[int]:
        return original(self, {s: t // 2 for s, t in timeouts_ms.items()}, now, retry_after)

    mp.setattr(SessionTracker, "expired", expired)


def two_membership_changes(mp: pytest.MonkeyPatch) -> None:
    # The leader accepts a membership change while another one is still in flight (thesis 4.1 forbids it).
    from embedzk.consensus.confchange import decode_conf_change, validate_change

    def refusal(self: Raft, e: Entry) -> str | None:
        cc = decode_conf_change(e)
        if cc is None:
            return "not a valid ConfChange"
        return validate_change(self.trk.conf_state(), cc)

    mp.setattr(Raft, "_conf_change_refusal", refusal)


def wiped_member_keeps_its_key(mp: pytest.MonkeyPatch) -> None:
    # A node whose disk was wiped comes back under its old member key, as if the disk did not matter: it votes and
    # acknowledges in its old self's place with everything its old self promised forgotten.
    from embedzk.testing.churn import Churn
    from embedzk.testing.simdisk import SimDisk
    from embedzk.testing.simulator import SimNode

    def reborn(self: Churn, old: SimNode) -> None:
        if self._wiped.pop(old.slot, None) is None:
            return
        old.retired = False
        old.disk = SimDisk()
        old.disk.on_drop = old._dropping
        old.start()
        self.sim.log_fault(f"{old.slot} back on a fresh disk as {old.id} (the same key)")

    mp.setattr(Churn, "_reborn", reborn)


def autopilot_asleep(mp: pytest.MonkeyPatch) -> None:
    # The leader never changes the membership by itself: dead members stay, lost voters are never replaced.
    import embedzk.replica.membership as membership

    mp.setattr(membership, "next_change", lambda leader, members, policy: None)


MUTANTS = [
    Mutant("figure-8 commit", figure_8_commit, r"commit rule broken|applied there elsewhere|lost write",
           profile="crash-heavy"),
    Mutant("read index without leadership confirmation", read_index_unconfirmed, r"sync returned early|stale read"),
    Mutant("vote not persisted", vote_not_persisted, r"vote not durable", profile="crash-heavy"),
    Mutant("two votes in one term", two_votes_in_one_term, r"two votes in one term"),
    Mutant("committed entry truncated", committed_entry_truncated,
           r"acknowledged entry dropped|committed entry truncated"),
    Mutant("appends accepted from a stale term", stale_term_appends, r"append from a stale term accepted"),
    Mutant("sync one entry early", sync_one_entry_early, r"sync returned early|stale read"),
    Mutant("uncommitted entry applied", uncommitted_entry_applied, r"applied there elsewhere"),
    Mutant("stale snapshot installed", stale_snapshot_installed,
           r"stale snapshot installed|went back|past the commit index|stale read|sync returned early", profile="crash-heavy"),
    Mutant("unsynced tail lost on a crash", unsynced_tail_lost, r"acknowledged entries lost", profile="crash-heavy"),
    Mutant("session expired early", session_expired_early, r"session expired early"),
    Mutant("two membership changes in flight", two_membership_changes, r"two membership changes in flight",
           profile="crash-heavy"),
    Mutant("a wiped member votes as its old self", wiped_member_keeps_its_key,
           r"vote not durable|acknowledged entries lost|acknowledged entry dropped|two leaders in term",
           profile="churn"),
    Mutant("the autopilot never replaces a dead member", autopilot_asleep,
           r"gone for good are still in the membership|voters are not back to the target", profile="churn"),
]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name.replace(" ", "-") for m in MUTANTS])
def test_mutant_is_caught(mutant: Mutant, monkeypatch: pytest.MonkeyPatch) -> None:
    mutant.inject(monkeypatch)
    caught = first_catch(range(mutant.seeds), mutant.profile)
    assert caught is not None, f"{mutant.name} went unnoticed in {mutant.seeds} seeds"
    seed, problem = caught
    print(f"{mutant.name}: caught by seed {seed} ({seed + 1} seeds): {problem.splitlines()[0]}")
    assert re.search(mutant.expect, problem), f"{mutant.name} reported as something else (seed {seed}):\n{problem}"
    replay = f"replay: python -m embedzk.testing.simulate --seed {seed}"
    assert replay in problem and (not mutant.profile or f"--profile {mutant.profile}" in problem)
