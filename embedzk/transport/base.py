"""The Transport interface, and the small pieces every implementation shares.

A transport moves opaque frames (bytes the caller has already encoded) between peers named by string ids. It is a
datagram service with no promises: a frame may be lost, and :meth:`Transport.send` says so only when the loss is
known locally (unknown peer, queue full, peer not connected). Raft retries on its own, so a transport that drops
early and never blocks is what the loop wants: a send that waited on a dead peer would stall heartbeats to the
live ones.

Threading: a transport belongs to one thread, the peer's loop thread, which calls every method but
:meth:`Transport.wake`; any thread may call ``wake()`` to cut short a ``receive()`` in progress (or the next one).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from embedzk.errors import ConfigurationError, EmbedZKError

__all__ = [
    "DEFAULT_HWM",
    "DEFAULT_MAX_FRAME_BYTES",
    "RateLimitedLog",
    "Transport",
    "TransportClosedError",
    "TransportStats",
    "check_peer_id",
]

#: The largest frame accepted by default: the same bound the codec puts on what it decodes.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024

#: Frames queued per direction and per peer before send() starts dropping.
DEFAULT_HWM = 10_000

# ZeroMQ routing ids are at most 255 bytes, and ids starting with a zero byte are reserved for ids ZeroMQ makes up
# for anonymous peers; the same rules apply to every transport so that a cluster can move between them.
_MAX_ID_BYTES = 255


class TransportClosedError(EmbedZKError):
    """The transport was closed and cannot be started again: make a new one."""


def check_peer_id(peer_id: object) -> str:
    """Return ``peer_id`` if it can name a peer on the wire, else raise ConfigurationError saying why."""
    if not isinstance(peer_id, str) or not peer_id:
        raise ConfigurationError(f"a peer id must be a non-empty string, not {peer_id!r}")
    try:
        raw = peer_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"peer id {peer_id!r} is not valid UTF-8 text: {exc}") from None
    if len(raw) > _MAX_ID_BYTES:
        raise ConfigurationError(f"peer id {peer_id[:40]!r}... is {len(raw)} bytes long; at most {_MAX_ID_BYTES}")
    if raw[0] == 0:
        raise ConfigurationError(f"peer id {peer_id!r} may not start with a NUL character")
    return peer_id


@runtime_checkable
class Transport(Protocol):
    """Moves frames between peers. One thread (the loop) uses it; :meth:`wake` may be called from any thread.

    The driver's order: construct, :meth:`start`, :meth:`set_peers` (at any time after, as membership changes),
    then loop on :meth:`receive` and :meth:`send`; :meth:`close` at the end.
    """

    #: This peer's id: what receivers see as the sender of our frames.
    id: str

    @property
    def endpoint(self) -> str:
        """The address other peers reach us at; after start(), the one actually bound (a port 0 made real)."""
        ...

    def start(self) -> None:
        """Bind and connect. Raises ConfigurationError if the address cannot be used."""
        ...

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        """Who we can send to: peer id -> endpoint. New peers are connected, removed ones disconnected, peers whose
        endpoint changed are reconnected. Raises ConfigurationError for an invalid id or endpoint."""
        ...

    def send(self, to: str, frame: bytes) -> bool:
        """Queue ``frame`` for peer ``to``; never blocks. False (and counted in stats) if the frame was dropped
        here: unknown peer, peer not connected, queue at its high-water mark, frame too large, transport closed.
        True means queued, not delivered."""
        ...

    def receive(self, timeout: float) -> list[tuple[str, bytes]]:
        """Wait at most ``timeout`` seconds for frames or a :meth:`wake`, then return every frame available now as
        ``(sender id, frame)`` in arrival order (possibly none). Malformed frames are counted, logged and skipped:
        nothing a remote sends makes this raise."""
        ...

    def wake(self) -> None:
        """Thread-safe: make a :meth:`receive` in progress, or else the next one, return at once."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters: ``sent``, ``received``, ``dropped_send`` (and ``dropped_send_<reason>``), ``rejected`` (and
        ``rejected_<reason>``), byte counts, and gauges such as ``peers``."""
        ...

    def close(self) -> None:
        """Free sockets and queues. Idempotent; afterwards send() returns False and receive() returns []."""
        ...


class TransportStats:
    """Monotonic counters with a total per family: ``drop("full")`` counts ``dropped_send`` and
    ``dropped_send_full``, so a dashboard can watch one number and a debugger can see why."""

    __slots__ = ("_counts",)

    def __init__(self, drop_reasons: Iterable[str] = (), reject_reasons: Iterable[str] = ()) -> None:
        # Every reason the implementation can report starts at zero, so that stats() always has the same keys.
        self._counts: Counter[str] = Counter(
            sent=0, received=0, bytes_sent=0, bytes_received=0, dropped_send=0, rejected=0
        )
        for reason in drop_reasons:
            self._counts["dropped_send_" + reason] = 0
        for reason in reject_reasons:
            self._counts["rejected_" + reason] = 0

    def sent(self, size: int) -> None:
        """Count a frame handed to the network."""
        self._counts["sent"] += 1
        self._counts["bytes_sent"] += size

    def received(self, size: int, frames: int = 1) -> None:
        """Count ``frames`` frames of ``size`` bytes in all handed to the caller."""
        self._counts["received"] += frames
        self._counts["bytes_received"] += size

    def dropped(self, reason: str) -> None:
        """Count a frame send() refused, for ``reason``."""
        self._counts["dropped_send"] += 1
        self._counts["dropped_send_" + reason] += 1

    def rejected(self, reason: str) -> None:
        """Count an incoming frame that was malformed, for ``reason``."""
        self._counts["rejected"] += 1
        self._counts["rejected_" + reason] += 1

    def snapshot(self, **gauges: int) -> dict[str, int]:
        """A copy of every counter, with ``gauges`` (current values, not counts) added."""
        out = dict(self._counts)
        out.update(gauges)
        return out


class RateLimitedLog:
    """Logs a warning per reason at most once per ``interval`` seconds, with how many were held back.

    A misbehaving or hostile sender can produce thousands of bad frames a second; one line per frame would drown
    the application's log and cost more than the frames themselves.
    """

    __slots__ = ("_interval", "_last", "_logger", "_suppressed")

    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, reason: str, message: str, *args: object) -> None:
        """Log ``message % args`` at WARNING unless ``reason`` was logged within the interval."""
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        held = self._suppressed.pop(reason, 0)
        if held:
            self._logger.warning(message + " (and %d more like it not logged)", *args, held)
        else:
            self._logger.warning(message, *args)
