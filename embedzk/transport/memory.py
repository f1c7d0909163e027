"""An in-process transport for tests: peers of one process exchange frames through bounded, thread-safe queues.

It keeps the ZeroMQ transport's promises (never blocks, bounded queues, drops to unknown or absent peers are
reported by send(), wake() from any thread, a restarted peer is reached again at the same address) and adds what
a real network cannot do on demand: :class:`MemoryNetwork` cuts links, partitions peers and loses frames at random,
deterministically when given a seeded :class:`random.Random` and driven from one thread.

Frames lost to a fault are lost silently (send() still returns True): a real sender cannot see a partition either,
it only stops hearing back. The network counts them in :meth:`MemoryNetwork.stats`.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping

from embedzk.errors import ConfigurationError
from embedzk.transport.base import (
    DEFAULT_HWM,
    DEFAULT_MAX_FRAME_BYTES,
    TransportClosedError,
    TransportStats,
    check_peer_id,
)

__all__ = ["MemoryNetwork", "MemoryTransport"]

_SCHEME = "memory://"
#: Why send() may drop a frame: the ``dropped_send_<reason>`` counters of stats().
DROP_REASONS = ("unknown_peer", "not_connected", "full", "oversized", "closed")
#: Why an incoming frame may be rejected: the ``rejected_<reason>`` counters of stats().
REJECT_REASONS = ("oversized",)


class MemoryNetwork:
    """The medium that :class:`MemoryTransport` instances bind to, with fault hooks for tests.

    ``rng`` decides random losses; pass ``random.Random(seed)`` for a replayable run. Every method is thread-safe.
    """

    def __init__(self, rng: random.Random | None = None, *, drop_rate: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._rng = rng if rng is not None else random.Random()
        self._drop_rate = 0.0
        self.drop_rate = drop_rate
        self._bound: dict[str, MemoryTransport] = {}
        # Directed links (sender id, receiver id) whose frames are lost; a partition is a set of cut links.
        self._cut: set[tuple[str, str]] = set()
        # Peers cut from everyone, including peers that bind after the call.
        self._isolated: set[str] = set()
        self._delivered = 0
        self._lost_cut = 0
        self._lost_random = 0

    # --- fault hooks ---------------------------------------------------------------------------------------------

    @property
    def drop_rate(self) -> float:
        """Probability in [0, 1] that any frame is lost on its way."""
        return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"drop_rate must be within [0, 1], not {rate}")
        with self._lock:
            self._drop_rate = float(rate)

    def cut(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Lose every frame from ``a`` to ``b`` and, unless ``one_way``, from ``b`` to ``a``."""
        with self._lock:
            self._cut.add((a, b))
            if not one_way:
                self._cut.add((b, a))

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every link between peers of different groups; links inside a group stay up.

        Peers named in no group keep the links they have. Adds to cuts already made; :meth:`heal` undoes all.
        """
        sets = [frozenset(g) for g in groups]
        with self._lock:
            for i, left in enumerate(sets):
                for right in sets[i + 1 :]:
                    for a in left:
                        for b in right:
                            if a != b:
                                self._cut.add((a, b))
                                self._cut.add((b, a))

    def isolate(self, peer_id: str) -> None:
        """Cut ``peer_id`` off from every other peer, in both directions."""
        with self._lock:
            self._isolated.add(peer_id)

    def heal(self) -> None:
        """Restore every cut link and isolated peer (the drop rate stays as it is)."""
        with self._lock:
            self._cut.clear()
            self._isolated.clear()

    def stats(self) -> dict[str, int]:
        """Frames ``delivered`` to a queue, ``lost_cut`` to cuts and partitions, ``lost_random`` to the drop rate."""
        with self._lock:
            return {
                "delivered": self._delivered,
                "lost_cut": self._lost_cut,
                "lost_random": self._lost_random,
                "bound": len(self._bound),
            }

    # --- used by MemoryTransport ---------------------------------------------------------------------------------

    def _bind(self, endpoint: str, transport: MemoryTransport) -> None:
        with self._lock:
            holder = self._bound.get(endpoint)
            if holder is not None and holder is not transport:
                raise ConfigurationError(f"cannot bind {endpoint}: address already in use by {holder.id!r}")
            self._bound[endpoint] = transport

    def _unbind(self, endpoint: str, transport: MemoryTransport) -> None:
        with self._lock:
            if self._bound.get(endpoint) is transport:
                del self._bound[endpoint]

    def _route(self, frm: str, endpoint: str, frame: bytes) -> str | None:
        """Carry a frame; the reason send() must report a drop, or None (delivered, or lost to a fault)."""
        with self._lock:
            target = self._bound.get(endpoint)
            if target is None:
                return "not_connected"
            to = target.id
            if frm != to and (frm in self._isolated or to in self._isolated or (frm, to) in self._cut):
                self._lost_cut += 1
                return None
            # Draw only when a rate is set, so that a run without losses consumes nothing from a shared rng.
            if self._drop_rate and self._rng.random() < self._drop_rate:
                self._lost_random += 1
                return None
        reason = target._enqueue(frm, frame)
        if reason is None:
            with self._lock:
                self._delivered += 1
        return reason


class MemoryTransport:
    """A :class:`~embedzk.transport.base.Transport` over a :class:`MemoryNetwork`.

    ``bind`` is the address peers put in their ``set_peers`` map; it defaults to ``"memory://<id>"``. ``hwm`` bounds
    the frames waiting in this transport's receive queue (from all senders together): past it, senders' send()
    returns False. Frames larger than ``max_frame_bytes`` are refused by send() and, if they come from a sender
    with a larger bound, rejected on arrival.
    """

    def __init__(
        self,
        id: str,  # noqa: A002 - the Transport protocol's attribute name
        network: MemoryNetwork,
        *,
        bind: str | None = None,
        hwm: int = DEFAULT_HWM,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.id = check_peer_id(id)
        self.network = network
        self.endpoint = bind if bind is not None else _SCHEME + id
        if hwm < 1:
            raise ConfigurationError(f"hwm must be at least 1, not {hwm}")
        self.hwm = hwm
        self.max_frame_bytes = max_frame_bytes
        self._peers: dict[str, str] = {}
        # Everything below is shared with senders' threads and guarded by the condition.
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[str, bytes]] = deque()
        self._woken = False
        self._started = False
        self._closed = False
        self._stats = TransportStats(DROP_REASONS, REJECT_REASONS)

    def start(self) -> None:
        """Take the address on the network. Raises ConfigurationError if another open transport holds it."""
        if self._closed:
            raise TransportClosedError(f"transport {self.id!r} is closed")
        if self._started:
            return
        self.network._bind(self.endpoint, self)
        self._started = True

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        """Who we can send to: peer id -> address (another transport's ``endpoint``)."""
        peers = {}
        for peer_id, address in addresses.items():
            check_peer_id(peer_id)
            if not isinstance(address, str) or not address:
                raise ConfigurationError(f"address of peer {peer_id!r} must be a non-empty string, not {address!r}")
            peers[peer_id] = address
        self._peers = peers

    def send(self, to: str, frame: bytes) -> bool:
        """Queue ``frame`` at peer ``to``; False (counted) if unknown, absent, full, oversized or closed."""
        if self._closed or not self._started:
            return self._drop("closed" if self._closed else "not_connected")
        address = self._peers.get(to)
        if address is None and "://" in to:
            address = to  # a name that is an address (a seed, a founder) is sent to directly
        if address is None:
            return self._drop("unknown_peer")
        if len(frame) > self.max_frame_bytes:
            return self._drop("oversized")
        # bytes() so that a caller reusing a bytearray cannot change a frame already "on the wire".
        reason = self.network._route(self.id, address, bytes(frame))
        if reason is not None:
            return self._drop(reason)
        with self._cond:
            self._stats.sent(len(frame))
        return True

    def receive(self, timeout: float) -> list[tuple[str, bytes]]:
        """Wait at most ``timeout`` seconds for frames or a wake(), then return every frame queued now."""
        with self._cond:
            if not self._queue and not self._woken and not self._closed:
                self._cond.wait_for(lambda: self._queue or self._woken or self._closed, max(0.0, timeout))
            self._woken = False
            frames = list(self._queue)
            self._queue.clear()
            for _, frame in frames:
                self._stats.received(len(frame))
        return frames

    def wake(self) -> None:
        """Thread-safe: make a receive() in progress, or the next one, return at once."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        """Counters as in :meth:`Transport.stats`, plus ``queued`` (frames waiting) and ``peers``."""
        with self._cond:
            return self._stats.snapshot(queued=len(self._queue), peers=len(self._peers))

    def close(self) -> None:
        """Give up the address and drop queued frames. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        self.network._unbind(self.endpoint, self)

    def __enter__(self) -> MemoryTransport:
        """start() on entering a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """close() on leaving it."""
        self.close()

    # --- internals -----------------------------------------------------------------------------------------------

    def _drop(self, reason: str) -> bool:
        with self._cond:
            self._stats.dropped(reason)
        return False

    def _enqueue(self, frm: str, frame: bytes) -> str | None:
        """Called from the sender's thread: queue a frame, or the reason it cannot be."""
        with self._cond:
            if self._closed:
                return "not_connected"
            if len(frame) > self.max_frame_bytes:
                # The sender allowed it, we do not: as with ZeroMQ's MAXMSGSIZE, it is lost, not refused.
                self._stats.rejected("oversized")
                return None
            if len(self._queue) >= self.hwm:
                return "full"
            self._queue.append((frm, frame))
            self._cond.notify_all()
        return None

    def __repr__(self) -> str:
        return f"MemoryTransport({self.id!r}, endpoint={self.endpoint!r})"
