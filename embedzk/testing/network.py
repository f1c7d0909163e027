"""A simulated network: delays (so messages reorder), drops, duplicates and partitions, on a virtual clock.

Messages travel as bytes, encoded and decoded by the real codec, so the simulator exercises the wire format too.
Every random choice comes from the simulation's seeded RNG, so a run is replayed exactly from its seed.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class NetworkProfile:
    """How unreliable the network is. Delays are virtual seconds."""

    min_delay: float = 0.0005
    max_delay: float = 0.005
    #: Probability that a message takes a long detour (``long_delay``): the main source of reordering.
    long_delay_rate: float = 0.02
    long_delay: float = 0.05
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0


@dataclass(order=True, slots=True)
class _InFlight:
    deliver_at: float
    seq: int
    frm: str = field(compare=False)
    to: str = field(compare=False)
    data: bytes = field(compare=False)


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

    def heal(self) -> None:
        """Restore every link."""
        self._cut.clear()

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
        if (frm, to) in self._cut or (profile.drop_rate and rng.random() < profile.drop_rate):
            self.dropped += 1
            return
        copies = 2 if profile.duplicate_rate and rng.random() < profile.duplicate_rate else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            delay = rng.uniform(profile.min_delay, profile.max_delay)
            if profile.long_delay_rate and rng.random() < profile.long_delay_rate:
                delay += rng.uniform(0, profile.long_delay)
            self._seq += 1
            heapq.heappush(self._queue, _InFlight(now + delay, self._seq, frm, to, data))

    def next_delivery(self) -> float | None:
        """When the next message arrives, or None if nothing is in flight."""
        return self._queue[0].deliver_at if self._queue else None

    def pop(self) -> tuple[str, str, bytes]:
        """The next message to arrive: (frm, to, data). A link cut while it was in flight loses it (returns it
        with empty data, which the caller drops)."""
        msg = heapq.heappop(self._queue)
        if (msg.frm, msg.to) in self._cut:
            self.dropped += 1
            return msg.frm, msg.to, b""
        return msg.frm, msg.to, msg.data

    def drop_all_to(self, node: str) -> None:
        """Lose everything in flight to ``node`` (it crashed: its socket buffers are gone)."""
        kept = [m for m in self._queue if m.to != node]
        self.dropped += len(self._queue) - len(kept)
        self._queue = kept
        heapq.heapify(self._queue)
