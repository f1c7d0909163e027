"""A simulated network: delays (so messages reorder), drops, duplicates, stale replays, corrupted frames and
partitions, on a virtual clock.

Messages travel as bytes, encoded and decoded by the real codec, so the simulator exercises the wire format too.
Every random choice comes from the simulation's seeded RNG, so a run is replayed exactly from its seed.

Corruption stays inside the fault model of a transport with integrity checks (TCP, CURVE): a corrupted frame is
one the codec must refuse (cut short, garbage, bytes appended) or a well-formed value of a type the receiver does
not expect. A frame whose corruption happens to decode is dropped instead: a valid message with a changed field is a
Byzantine fault, which Raft does not claim to survive.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from embedzk.codec import decode, encode
from embedzk.consensus.types import Entry
from embedzk.errors import DecodeError


#: How many of the latest frames of each kind of message the network remembers for replays.
REMEMBERED = 8


@dataclass(slots=True)
class NetworkProfile:
    """How unreliable the network is. Delays are virtual seconds."""

    min_delay: float = 0.0005
    max_delay: float = 0.005
    #: Probability that a message takes a long detour (``long_delay``): the main source of reordering.
    long_delay_rate: float = 0.02
    long_delay: float = 0.05
    #: Probability of a detour longer than an election timeout (up to ``very_long_delay``): a message from another
    #: era, which arrives after leaders and terms have moved on.
    very_long_delay_rate: float = 0.0
    very_long_delay: float = 0.6
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    #: Probability that a copy of the message is delivered again much later (up to ``very_long_delay``).
    replay_rate: float = 0.0
    #: Probability that the frame arrives corrupted (see the module docstring).
    corrupt_rate: float = 0.0
    #: Whether a cut link keeps what is sent on it (up to ``hold_limit`` frames) and delivers it when the link
    #: heals, as a ZeroMQ socket queues for a peer it lost until it reconnects: a burst of messages from another
    #: era. Otherwise a cut link loses them.
    hold_when_cut: bool = False
    hold_limit: int = 64


@dataclass(order=True, slots=True)
class _InFlight:
    deliver_at: float
    seq: int
    frm: str = field(compare=False)
    to: str = field(compare=False)
    data: bytes = field(compare=False)
    corrupt: bool = field(compare=False, default=False)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message arriving: ``data`` is empty when a cut link lost it in flight; ``corrupt`` says the network
    damaged it (the receiver must refuse it cleanly)."""

    frm: str
    to: str
    data: bytes
    corrupt: bool = False


#: A well-formed frame of a type no replica expects as a message: receivers must log it and drop it.
_FOREIGN = encode(Entry(term=1, index=1))


class SimNetwork:
    """Messages in flight between simulated nodes, and the links that are cut."""

    def __init__(self, rng: random.Random, profile: NetworkProfile | None = None) -> None:
        self._rng = rng
        self.profile = profile or NetworkProfile()
        self._queue: list[_InFlight] = []
        self._seq = 0
        # (frm, to) pairs whose messages are lost: partitions are sets of cut directed links.
        self._cut: set[tuple[str, str]] = set()
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0
        self.replayed = 0
        self.corrupted = 0
        #: Extra delay of every message to or from a node (a peer in a far rack: it hears of everything last).
        self.extra_delay: dict[str, float] = {}
        # Frames kept on cut links (hold_when_cut), per link, oldest first.
        self._held: dict[tuple[str, str], list[bytes]] = {}
        # The latest frames that carried each kind of message (see remember()), with their links, oldest first.
        self._remembered: dict[str, list[tuple[str, str, bytes]]] = {}

    # partitions --------------------------------------------------------------------------------------------------

    def cut(self, frm: str, to: str) -> None:
        """Lose every message from ``frm`` to ``to`` (one way)."""
        self._cut.add((frm, to))

    def isolate(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every link between different groups (symmetric partition)."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self._cut.add((x, y))
                        self._cut.add((y, x))

    def heal(self, now: float = 0.0) -> None:
        """Restore every link; frames held on cut links leave now, in order."""
        self._cut.clear()
        held, self._held = self._held, {}
        for (frm, to), frames in held.items():
            for data in frames:
                self._push(now + self._rng.uniform(self.profile.min_delay, self.profile.max_delay), frm, to, data)

    def is_cut(self, frm: str, to: str) -> bool:
        """True if messages from ``frm`` to ``to`` are lost."""
        return (frm, to) in self._cut

    def describe_cuts(self) -> str:
        """The cut links, for a failure report."""
        return ", ".join(f"{a}->{b}" for a, b in sorted(self._cut)) or "none"

    # traffic -----------------------------------------------------------------------------------------------------

    def send(self, now: float, frm: str, to: str, data: bytes) -> None:
        """Put a message on the wire at virtual time ``now``."""
        self.sent += 1
        profile = self.profile
        rng = self._rng
        if (frm, to) in self._cut:
            if profile.hold_when_cut:
                held = self._held.setdefault((frm, to), [])
                if len(held) < profile.hold_limit:
                    held.append(data)
                    return
            self.dropped += 1
            return
        if profile.drop_rate and rng.random() < profile.drop_rate:
            self.dropped += 1
            return
        copies = 2 if profile.duplicate_rate and rng.random() < profile.duplicate_rate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            delay = rng.uniform(profile.min_delay, profile.max_delay)
            if profile.long_delay_rate and rng.random() < profile.long_delay_rate:
                delay += rng.uniform(0, profile.long_delay)
            if profile.very_long_delay_rate and rng.random() < profile.very_long_delay_rate:
                delay += rng.uniform(profile.long_delay, profile.very_long_delay)
            if self.extra_delay:
                delay += self.extra_delay.get(frm, 0.0) + self.extra_delay.get(to, 0.0)
            self._push(now + delay, frm, to, data)
        if profile.replay_rate and rng.random() < profile.replay_rate:
            self.replayed += 1
            self._push(now + rng.uniform(profile.long_delay, profile.very_long_delay), frm, to, data)

    def _push(self, when: float, frm: str, to: str, data: bytes) -> None:
        corrupt = False
        profile = self.profile
        if profile.corrupt_rate and self._rng.random() < profile.corrupt_rate:
            damaged = self._corrupt(data)
            if damaged is None:
                self.dropped += 1
                return
            data, corrupt = damaged, True
            self.corrupted += 1
        self._seq += 1
        heapq.heappush(self._queue, _InFlight(when, self._seq, frm, to, data, corrupt))

    def _corrupt(self, data: bytes) -> bytes | None:
        """A damaged copy of ``data`` that must not decode as a message, or None (then the frame is lost)."""
        rng = self._rng
        kind = rng.randrange(4)
        if kind == 0:
            damaged = data[: rng.randrange(len(data))]  # cut short
        elif kind == 1:
            damaged = rng.randbytes(rng.randint(1, 64))  # garbage
        elif kind == 2:
            damaged = data + rng.randbytes(rng.randint(1, 8))  # trailing bytes
        else:
            return _FOREIGN  # well-formed, of a type nobody sends
        try:
            decode(damaged)
        except DecodeError:
            return damaged
        except Exception:  # noqa: BLE001 - the receiver reports what the codec raised instead of DecodeError
            return damaged
        return None  # it decodes: a Byzantine change, out of the fault model

    def remember(self, kind: str, frm: str, to: str, data: bytes) -> None:
        """Keep ``data`` among the latest frames carrying a message of ``kind``, for :meth:`replay_old`."""
        frames = self._remembered.setdefault(kind, [])
        frames.append((frm, to, data))
        if len(frames) > REMEMBERED:
            del frames[0]

    def replay_old(self, now: float) -> int:
        """Deliver again, in their order, the latest frames of every kind of message (stale duplicates from another
        era: the chunks of the last snapshot transfers, the last votes, appends, answers ...); returns how many.
        Kinds, not frames, are remembered: a rare kind (a snapshot chunk) comes back as surely as the heartbeats
        that make most of the traffic."""
        frames = [frame for kind in sorted(self._remembered) for frame in self._remembered[kind]]
        when = now
        for frm, to, data in frames:
            when += self._rng.uniform(0, self.profile.min_delay)
            self._push(when, frm, to, data)
        self.replayed += len(frames)
        return len(frames)

    def next_delivery(self) -> float | None:
        """When the next message arrives, or None if nothing is in flight."""
        return self._queue[0].deliver_at if self._queue else None

    def pop(self) -> Delivery:
        """The next message to arrive. A link cut while it was in flight loses it (empty data: the caller drops it)."""
        msg = heapq.heappop(self._queue)
        if (msg.frm, msg.to) in self._cut:
            self.dropped += 1
            return Delivery(msg.frm, msg.to, b"")
        return Delivery(msg.frm, msg.to, msg.data, msg.corrupt)

    def drop_all_to(self, node: str) -> None:
        """Lose everything in flight to ``node`` (it crashed: its socket buffers are gone)."""
        kept = [m for m in self._queue if m.to != node]
        self.dropped += len(self._queue) - len(kept)
        self._queue = kept
        heapq.heapify(self._queue)
