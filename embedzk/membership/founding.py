"""Founding a cluster: the founders agree once on its id and its first voters (single-decree Paxos).

Raft needs its first membership before it can elect anyone, and with member keys bound to disks
(:mod:`embedzk.membership.identity`) nobody knows the founders' keys in advance: the founders must agree on them.
Any majority of the founders may found the cluster, and no two foundings may ever both succeed, which is exactly
what single-decree Paxos decides (Lamport, "Paxos made simple"):

* every founder is an **acceptor**: it promises ballots and accepts values, durably (the :class:`MemberRecord`
  is persisted before the answer leaves, as a Raft vote is);
* any founder whose disk is fresh may **propose**, after a randomized delay (so that duelling proposers are rare):
  phase 1 gathers promises from a majority of the founders; the value is the highest-ballot value one of them
  accepted, or else a new one: a random cluster id and the promisers as the first voters; phase 2 asks the
  founders to accept it, and a majority accepting decides it;
* the decision is broadcast (:class:`Founded`); a founder that misses it learns it when it asks again (a decided
  acceptor answers every request with the decision) or from the cluster itself (Raft traffic, a member's
  :class:`ClusterInfo`).

The founders are addresses (the seeds, or the static members' addresses); every founder must be configured with
the same list, which every request carries: a founder configured with another list refuses to take part
(:class:`FoundRefused`), since two lists with disjoint majorities could found two clusters.

What no protocol can prevent: a founding is remembered only on the disks of those who took part, so if a majority
of the founders come up on fresh disks while every disk that remembers the cluster is down, they cannot know and
found a second cluster. A founder that can reach any member of the existing cluster joins it instead: a fresh
founder first *listens* for a while (it asks every founder, and a member answers any founding message with
:class:`ClusterInfo`, and the leader sends one to every founder address a few times in that while, members there or
not) before it promises or accepts anything, and a founder that learnt of a cluster answers every
founding request with what it learnt, so that a fresh founder cut off from the members cannot make a majority with
it either.

The class is sans-IO: the replica feeds it ticks and messages, persists :attr:`Founding.record` when
:meth:`Founding.take_record` hands it out, and sends what :meth:`Founding.take_messages` releases (only messages
whose record is durable).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import Any

from embedzk.membership.identity import Ballot, FoundingValue, MemberRecord
from embedzk.membership.messages import (
    FoundAccept,
    FoundAccepted,
    Founded,
    FoundPrepare,
    FoundPromise,
    FoundRefused,
    FoundReject,
)

__all__ = ["Founding", "majority"]


def majority(n: int) -> int:
    """The smallest majority of ``n``."""
    return n // 2 + 1


class Founding:
    """One founder's part in founding a cluster: acceptor always, proposer when its delay runs out.

    ``founders`` are the founders' addresses (this one's ``address`` among them); ``retry_ticks`` is the base
    delay between proposals (randomized up to twice that); ``grace_ticks`` how long a proposer that has a
    majority of promises waits for the other founders (founders started together should all be first voters: a
    cluster founded by a bare majority cannot lose one of them until the others have joined and been promoted).
    """

    def __init__(
        self,
        key: str,
        address: str,
        founders: tuple[str, ...],
        record: MemberRecord,
        rng: random.Random,
        retry_ticks: int,
        grace_ticks: int | None = None,
        listen_ticks: int | None = None,
    ) -> None:
        if address not in founders:
            raise ValueError(f"{address} is not among the founders {founders}")
        self.key = key
        self.address = address
        self.founders = tuple(sorted(set(founders)))
        self.record = record
        self._rng = rng
        self._retry_ticks = max(1, retry_ticks)
        self._grace_ticks = max(1, retry_ticks // 2 if grace_ticks is None else grace_ticks)
        # Ticks this founder only listens, at its start, for a member saying that the cluster exists; it answers
        # no founding request meanwhile. A founder that promised before (a restart) has listened already.
        taken_part = record.promised is not None or len(self.founders) == 1
        listen = 2 * self._retry_ticks if listen_ticks is None else max(0, listen_ticks)
        self._listen = 0 if taken_part else listen
        self._probed = self._listen == 0
        #: The decided value once known.
        self.decided: FoundingValue | None = record.accepted if record.cluster_uuid else None
        #: Why founding cannot go on (another founder is configured with another list), or None.
        self.refusal: str | None = None
        # Messages with the record sequence they wait for: released once that record is durable.
        self._outbox: list[tuple[int, str, Any]] = []
        self._record_seq = 0
        self._persisted_seq = 0
        self._record_dirty = False
        # Proposer state.
        self._highest_round = max(
            (b.round for b in (record.promised, record.accepted_ballot) if b is not None), default=0
        )
        self._ballot: Ballot | None = None
        self._phase = 0
        self._promises: dict[str, FoundPromise] = {}  # by address
        # Ticks left for the founders that have not answered yet, once a majority has: founders that start
        # together should all be first voters rather than join one by one afterwards.
        self._grace: int | None = None
        self._accepts: set[str] = set()  # addresses
        self._value: FoundingValue | None = None
        # The lowest-addressed founder tries first; the others wait longer, so that one proposer usually wins at
        # once (liveness only: any founder may propose, in any order).
        first = self.founders.index(address) == 0
        self._countdown = 1 if first else self._retry_ticks + rng.randrange(self._retry_ticks)

    # --- driver ----------------------------------------------------------------------------------------------

    def take_record(self) -> tuple[int, MemberRecord] | None:
        """The record to persist (with its sequence number), if it changed since last taken."""
        if not self._record_dirty:
            return None
        self._record_dirty = False
        return self._record_seq, self.record

    def persisted(self, seq: int) -> None:
        """The record of sequence ``seq`` (and every earlier one) is durable."""
        self._persisted_seq = max(self._persisted_seq, seq)

    def has_messages(self) -> bool:
        """Whether messages wait to be taken (released or not)."""
        return bool(self._outbox)

    def has_record(self) -> bool:
        """Whether the record changed since it was last taken."""
        return self._record_dirty

    def take_messages(self) -> list[tuple[str, Any]]:
        """(address, message) pairs whose record is durable, in order."""
        ready = [(to, msg) for seq, to, msg in self._outbox if seq <= self._persisted_seq]
        self._outbox = [item for item in self._outbox if item[0] > self._persisted_seq]
        return ready

    def tick(self) -> None:
        """One tick: start a new round when the delay runs out and nothing is decided."""
        if self.decided is not None or self.refusal is not None:
            return
        if self._listen > 0:
            if not self._probed:
                # Round 0 is no ballot: acceptors ignore it, members answer it with what they know.
                self._probed = True
                probe = FoundPrepare(Ballot(0, self.key), self.founders, self.address)
                for founder in self.founders:
                    if founder != self.address:
                        self._send(founder, probe)
            self._listen -= 1
            return
        if self._phase == 1 and self._grace is not None:
            self._grace -= 1
            if self._grace <= 0:
                self._begin_accept()
            return
        self._countdown -= 1
        if self._countdown > 0:
            return
        self._countdown = self._retry_ticks + self._rng.randrange(self._retry_ticks)
        self._highest_round += 1
        self._ballot = Ballot(self._highest_round, self.key)
        self._phase = 1
        self._promises = {}
        self._grace = None
        self._accepts = set()
        self._value = None
        prepare = FoundPrepare(self._ballot, self.founders, self.address)
        for founder in self.founders:
            self._send(founder, prepare)

    def receive(self, msg: Any) -> None:
        """A founding message (anything else is ignored)."""
        if isinstance(msg, FoundPrepare):
            self._on_prepare(msg)
        elif isinstance(msg, FoundPromise):
            self._on_promise(msg)
        elif isinstance(msg, FoundAccept):
            self._on_accept(msg)
        elif isinstance(msg, FoundAccepted):
            self._on_accepted(msg)
        elif isinstance(msg, FoundReject):
            self._on_reject(msg)
        elif isinstance(msg, Founded):
            self._on_founded(msg)
        elif isinstance(msg, FoundRefused):
            self.refusal = msg.reason

    # --- acceptor --------------------------------------------------------------------------------------------

    def _check_founders(self, founders: tuple[str, ...], reply_to: str) -> bool:
        if tuple(sorted(set(founders))) == self.founders:
            return True
        reason = (
            f"founders differ: {reply_to} was given {sorted(set(founders))}, {self.address} was given "
            f"{list(self.founders)}; every founder must be given the same list"
        )
        self._send(reply_to, FoundRefused(reason))
        return False

    def _on_prepare(self, msg: FoundPrepare) -> None:
        if self.decided is not None:
            self._send(msg.reply_to, Founded(self.decided))
            return
        if not self._check_founders(msg.founders, msg.reply_to):
            return
        if msg.ballot.round <= 0 or self._listen > 0:
            return  # a probe, or we are still listening for the cluster: the proposer asks again
        self._highest_round = max(self._highest_round, msg.ballot.round)
        promised = self.record.promised
        if promised is not None and msg.ballot < promised:
            self._send(msg.reply_to, FoundReject(msg.ballot, promised))
            return
        if promised != msg.ballot:
            self._update(promised=msg.ballot)
        self._defer_to(msg.ballot)
        record = self.record
        self._send(
            msg.reply_to,
            FoundPromise(msg.ballot, self.key, self.address, record.accepted_ballot, record.accepted),
            durable=True,
        )

    def _on_accept(self, msg: FoundAccept) -> None:
        if self.decided is not None:
            self._send(msg.reply_to, Founded(self.decided))
            return
        if not self._check_founders(msg.value.founders, msg.reply_to):
            return
        if self._listen > 0:
            return
        self._highest_round = max(self._highest_round, msg.ballot.round)
        promised = self.record.promised
        if promised is not None and msg.ballot < promised:
            self._send(msg.reply_to, FoundReject(msg.ballot, promised))
            return
        if self.record.accepted_ballot != msg.ballot:
            self._update(promised=msg.ballot, accepted=msg.value, accepted_ballot=msg.ballot)
        self._defer_to(msg.ballot)
        self._send(msg.reply_to, FoundAccepted(msg.ballot, self.key, self.address), durable=True)

    def _on_founded(self, msg: Founded) -> None:
        if self.decided is not None or tuple(sorted(set(msg.value.founders))) != self.founders:
            return
        self.decide(msg.value)

    def decide(self, value: FoundingValue) -> None:
        """``value`` is decided (heard from a proposer, or seen in the cluster itself)."""
        if self.decided is not None:
            return
        self.decided = value
        self._phase = 0
        self._update(cluster_uuid=value.cluster_uuid, accepted=value)

    # --- proposer --------------------------------------------------------------------------------------------

    def _defer_to(self, ballot: Ballot) -> None:
        """Another founder's round is under way (this one promised or accepted its ballot): give it the time to
        finish, grace included, before proposing over it. Without this two proposers duel: each one's prepare
        arrives while the other waits out its grace, and every accept is rejected."""
        if ballot.proposer == self.key:
            return
        wait = self._grace_ticks + self._retry_ticks + self._rng.randrange(self._retry_ticks)
        self._countdown = max(self._countdown, wait)

    def _on_promise(self, msg: FoundPromise) -> None:
        if self._phase != 1 or msg.ballot != self._ballot or self._ballot is None or msg.address not in self.founders:
            return
        # Counted by address: a founder that came back on a fresh disk (a new key) must not count twice.
        self._promises[msg.address] = msg
        if len(self._promises) < majority(len(self.founders)):
            return
        if len(self._promises) < len(self.founders) and not any(p.accepted for p in self._promises.values()):
            if self._grace is None:
                self._grace = self._grace_ticks
            return
        self._begin_accept()

    def _begin_accept(self) -> None:
        assert self._ballot is not None
        self._grace = None
        # Paxos: a value some acceptor may have had chosen must be proposed again; the highest ballot wins.
        previous = [p for p in self._promises.values() if p.accepted is not None and p.accepted_ballot is not None]
        if previous:
            best = max(previous, key=lambda p: p.accepted_ballot)  # type: ignore[arg-type, return-value]
            assert best.accepted is not None
            value = best.accepted
        else:
            voters = tuple(sorted((p.key, p.address) for p in self._promises.values()))
            value = FoundingValue(str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), voters, self.founders)
        self._value = value
        self._phase = 2
        accept = FoundAccept(self._ballot, value, self.address)
        for founder in self.founders:
            self._send(founder, accept)

    def _on_accepted(self, msg: FoundAccepted) -> None:
        if self._phase != 2 or msg.ballot != self._ballot or self._value is None or msg.address not in self.founders:
            return
        self._accepts.add(msg.address)
        if len(self._accepts) < majority(len(self.founders)):
            return
        value = self._value
        self.decide(value)
        for founder in self.founders:
            self._send(founder, Founded(value), durable=True)

    def _on_reject(self, msg: FoundReject) -> None:
        self._highest_round = max(self._highest_round, msg.promised.round)
        if msg.ballot == self._ballot and self._phase:
            self._phase = 0  # this round lost: the next starts after the delay, above what was seen

    # --- plumbing --------------------------------------------------------------------------------------------

    def _update(self, **changes: Any) -> None:
        self.record = dataclasses.replace(self.record, **changes)
        self._record_seq += 1
        self._record_dirty = True

    def _send(self, to: str, msg: Any, durable: bool = False) -> None:
        # Answers that promise something about this disk wait for the record to be durable; the rest go at once.
        self._outbox.append((self._record_seq if durable else self._persisted_seq, to, msg))
