"""The ZeroMQ transport: what peers use for real, over ``tcp://``, ``ipc://`` or ``inproc://``.

Sockets. Each transport binds one ROUTER, on which it receives from everyone, and connects one DEALER per remote
peer, on which it sends. A DEALER's routing id is our peer id, so the remote ROUTER hands every frame over with
the id of its sender, and a restarted sender takes its id back at once (``ROUTER_HANDOVER``). Only the loop thread
touches these sockets (ZeroMQ sockets are not thread-safe); :meth:`ZmqTransport.wake` writes a byte to a socket
pair that the loop's poller watches beside the ROUTER, so other threads never come near a ZeroMQ socket.

Never blocking. DEALERs have ``IMMEDIATE`` set, so nothing queues for a peer that is not connected: send() fails
at once (``zmq.Again``) instead of piling up frames a restarted peer would receive stale. Sends use ``NOBLOCK``, so
a peer that stops reading costs us dropped frames at its high-water mark, never a stalled loop. Lost connections
are retried every 50 ms, backing off to 2 s; ZMTP heartbeats notice a silent peer within a few seconds.

Restarted ``inproc://`` peers. ZeroMQ never reconnects an inproc connection: once the bound ROUTER is closed, a
DEALER connected to it stays dead even when a new ROUTER binds the same address. Both ends live in one process and
one context, so each ROUTER bound to an inproc address records a new bind generation for it in a table shared by
the transports of that context (:class:`_InprocBinds`), and each inproc DEALER remembers the generation it
connected to. When a send to an inproc peer fails (``zmq.Again``), and only then, the transport compares the two and,
if the address was bound again since, connects anew and sends once more. Successful sends and tcp/ipc peers never
look at the table.

Addressing. Peers are named by id (a member key) and mapped to endpoints by :meth:`ZmqTransport.set_peers`; a name
that is itself an endpoint (``tcp://10.0.0.1:7000``) is sent to directly, which is how a peer reaches seeds and
founders whose ids it does not know yet. One DEALER serves each endpoint, whatever names lead to it: two DEALERs
with our routing id on one remote ROUTER would take the id from each other (``ROUTER_HANDOVER``).

Wire format. Every frame is a two-part ZeroMQ message ``[header, payload]``; the header is :data:`MAGIC`, one byte
of protocol version (the version the frame is written in: see :mod:`embedzk.membership.versions`), then the cluster
name, so that a stray client, a peer speaking no version we speak or of another cluster sharing a port range is
turned away before its payload reaches the codec. ``MAXMSGSIZE`` on the ROUTER
makes ZeroMQ itself refuse an oversized part (it closes that connection, so frames queued behind the oversized one
on it are lost too; the sender reconnects within 50 ms). ``inproc://`` has no such check, so the size is
checked again in Python. Whatever is rejected is counted in :meth:`ZmqTransport.stats` under ``rejected`` and
``rejected_<reason>``, logged at WARNING at most every ten seconds per reason, and skipped.

Security. With :class:`CurveKeys` every connection is encrypted and authenticated with CURVE: the cluster shares
one key pair, every ROUTER serves with it, every DEALER presents it, and a ZAP handler (one thread per ZeroMQ
context, shared by its transports) admits only clients presenting an authorised public key. Knowing the secret key
is what makes a process a member; routing ids are not authenticated beyond that. ZeroMQ runs no security
handshake over ``inproc://``, which never leaves the process.
"""

from __future__ import annotations

import itertools
import logging
import math
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import zmq
import zmq.auth.thread
from zmq.utils import z85

from embedzk.errors import ConfigurationError
from embedzk.membership.versions import PROTOCOL_MAX, PROTOCOL_MIN
from embedzk.settings import check_endpoint
from embedzk.transport.base import (
    DEFAULT_HWM,
    DEFAULT_MAX_FRAME_BYTES,
    RateLimitedLog,
    TransportClosedError,
    TransportStats,
    check_peer_id,
)

__all__ = ["MAGIC", "PROTOCOL_VERSION", "CurveKeys", "ZmqTransport", "frame_header"]

log = logging.getLogger("embedzk.transport")

#: First bytes of every frame header: tells an embedzk frame from anything else that reached the port.
MAGIC = b"EZK"
#: The protocol version frames are written in unless told otherwise (the oldest this build speaks).
PROTOCOL_VERSION = PROTOCOL_MIN

_SCHEMES = ("tcp://", "ipc://", "inproc://")
_INPROC = "inproc://"
# ZeroMQ's reconnect backoff, in milliseconds: quick to find a restarted peer, gentle on a dead one.
_RECONNECT_IVL_MS = 50
_RECONNECT_IVL_MAX_MS = 2000
#: Why send() may drop a frame: the ``dropped_send_<reason>`` counters of stats().
DROP_REASONS = ("unknown_peer", "not_connected", "blocked", "oversized", "closed", "error")
#: Why an incoming frame may be rejected: the ``rejected_<reason>`` counters of stats().
REJECT_REASONS = ("parts", "magic", "version", "cluster", "oversized", "identity")
# Flags as plain ints: pyzmq's enum members cost a conversion on every call of the hot path.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
# Below this size a copy is cheaper than ZeroMQ's zero-copy bookkeeping (pyzmq's own default threshold).
_COPY_THRESHOLD = 65536
# How long start() keeps trying an address that is in use (see _bind_router).
_BIND_RETRY_S = 0.5
# Identities decoded once and remembered: a cluster has few senders, and decoding on every frame is wasted work.
_IDENTITY_CACHE_SIZE = 4096
# Endpoints reached by address rather than through set_peers (seeds, founders, joiners' reply addresses): at most
# this many DEALERs for them, the least recently used closed first, so that requests naming many reply addresses
# cannot make us hold unbounded sockets.
_ON_DEMAND_ENDPOINTS = 64


def frame_header(cluster: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    """The header part of a frame of ``cluster``: :data:`MAGIC`, the version byte, the cluster name."""
    return MAGIC + bytes((version,)) + cluster


@dataclass(frozen=True)
class CurveKeys:
    """The cluster's CURVE key pair (Z85 text, 40 bytes, or raw 32 bytes), and which client keys may connect.

    Every member holds the same pair. ``authorized`` lists further client public keys admitted besides
    ``public_key`` (for a key rotation, say).
    """

    public_key: bytes
    secret_key: bytes
    authorized: frozenset[bytes] = field(default_factory=frozenset)

    @classmethod
    def generate(cls) -> CurveKeys:
        """A fresh random key pair."""
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    def authorized_z85(self) -> frozenset[bytes]:
        """Every admitted client public key, as Z85 text."""
        return frozenset(_z85(key) for key in (self.public_key, *self.authorized))


def _z85(key: bytes) -> bytes:
    if len(key) == 40:
        return key
    if len(key) == 32:
        return z85.encode(key)
    raise ConfigurationError(f"a CURVE key is 40 bytes of Z85 text or 32 raw bytes, not {len(key)} bytes")


def _check_endpoint(endpoint: object, what: str) -> str:
    check_endpoint(endpoint, what)
    assert isinstance(endpoint, str)
    return endpoint


class ZmqTransport:
    """A :class:`~embedzk.transport.base.Transport` over ZeroMQ.

    ``bind`` is where this peer listens; ``"tcp://127.0.0.1:0"`` takes a free port, and :attr:`endpoint` then gives
    the real address. ``context`` defaults to the process's shared ``zmq.Context.instance()``, which ``inproc://``
    needs (inproc endpoints only reach sockets of the same context). ``max_frame_bytes`` bounds a frame's payload,
    ``hwm`` the frames queued per peer and direction, ``max_batch`` the frames one receive() returns (the rest wait
    for the next call). ``cluster`` names the cluster in every frame header. ``versions`` is the range of protocol
    versions accepted on arrival; :attr:`version` the one frames are written in. ``curve`` turns on CURVE.
    ``heartbeat`` (seconds, None for none) is the ZMTP ping interval; a connection silent for three intervals is
    dropped, so frames stop queueing to a peer that vanished without closing its connection.
    """

    def __init__(
        self,
        id: str,  # noqa: A002 - the Transport protocol's attribute name
        bind: str,
        *,
        context: zmq.Context[Any] | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        hwm: int = DEFAULT_HWM,
        cluster: bytes | str = b"",
        curve: CurveKeys | None = None,
        heartbeat: float | None = 1.0,
        max_batch: int = DEFAULT_HWM,
        versions: tuple[int, int] = (PROTOCOL_MIN, PROTOCOL_MAX),
    ) -> None:
        self.id = check_peer_id(id)
        if not 1 <= versions[0] <= versions[1] <= 255:
            raise ConfigurationError(f"protocol versions {versions} must be a range within 1..255")
        self.versions = versions
        self._version = versions[0]
        self._id_bytes = id.encode("utf-8")
        self.bind = _check_endpoint(bind, f"bind address of peer {id!r}")
        if isinstance(cluster, str):
            cluster = cluster.encode("utf-8")
        if max_frame_bytes < 1 or hwm < 1 or max_batch < 1:
            raise ConfigurationError("max_frame_bytes, hwm and max_batch must be at least 1")
        self.cluster = bytes(cluster)
        self.max_frame_bytes = max_frame_bytes
        self.hwm = hwm
        self.max_batch = max_batch
        self.curve = curve
        self._curve_authorized = curve.authorized_z85() if curve is not None else frozenset()
        if curve is not None:
            _z85(curve.secret_key)
        self._heartbeat_ms = None if heartbeat is None else max(1, round(heartbeat * 1000))
        self._context = context if context is not None else zmq.Context.instance()
        self._header = frame_header(self.cluster, self._version)
        # Frames sent to an address (a peer not known as a member: a seed, a founder, a joiner) are written in the
        # oldest version we speak, which every peer that might answer there speaks: a joiner too old for the
        # cluster must still read the refusal that says so.
        self._header_oldest = frame_header(self.cluster, versions[0])

        # Peer id -> endpoint (set_peers), and one DEALER per endpoint.
        self._addresses: dict[str, str] = {}
        self._dealers: dict[str, zmq.Socket[bytes]] = {}
        # Endpoints sent to by address, least recently used first (see _ON_DEMAND_ENDPOINTS).
        self._on_demand: dict[str, None] = {}
        # inproc:// only: the bind generations of this context's endpoints, and the one each inproc DEALER (by
        # endpoint) connected to. tcp:// and ipc:// endpoints have no entry.
        self._inproc_binds = _InprocBinds.of(self._context)
        self._inproc_generations: dict[str, int] = {}
        self._router: zmq.Socket[bytes] | None = None
        self._poller: zmq.Poller | None = None
        self._endpoint: str | None = None
        self._zap_domain: str | None = None
        self._identities: dict[bytes, str] = {}
        self._stats = TransportStats(DROP_REASONS, REJECT_REASONS)
        self._log = RateLimitedLog(log)
        self._closed = False
        # wake(): any thread writes a byte, the loop polls the read end as a raw fd and drains it. Made here, not in
        # start(), so that wake() is safe to call at any time; both ends non-blocking, so a flood of wakes can only
        # fill the buffer (and a full buffer already means "wake up").
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # --- lifecycle -----------------------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The protocol version frames are written in (the cluster's version, once known)."""
        return self._version

    @version.setter
    def version(self, version: int) -> None:
        if not self.versions[0] <= version <= self.versions[1]:
            raise ConfigurationError(f"protocol version {version} is outside the range spoken, {self.versions}")
        self._version = version
        self._header = frame_header(self.cluster, version)

    @property
    def endpoint(self) -> str:
        """The address peers connect to: after start(), the one actually bound (with the real port for port 0)."""
        return self._endpoint if self._endpoint is not None else self.bind

    def start(self) -> None:
        """Bind the ROUTER and connect to the peers given so far. Raises ConfigurationError if the address cannot
        be bound (in use, malformed, ipc path too long)."""
        if self._closed:
            raise TransportClosedError(f"transport {self.id!r} is closed")
        if self._router is not None:
            return
        # Also kept in a local, set exactly when curve is: the attribute is Optional (None again once released),
        # the local lets the socket option below use it as the str it is there.
        zap_domain: str | None = None
        if self.curve is not None:
            zap_domain = self._zap_domain = f"embedzk/{self.id}/{uuid.uuid4().hex}"
            _ZapService.register(self._context, zap_domain, self._curve_authorized)
        router = self._socket(zmq.ROUTER)
        try:
            router.setsockopt(zmq.RCVHWM, self.hwm)
            # ZeroMQ checks each part against it; the header is small, but must pass even if the bound is tiny.
            router.setsockopt(zmq.MAXMSGSIZE, max(self.max_frame_bytes, len(self._header)))
            # A restarted peer reconnects before the ROUTER has noticed its old connection is dead: without
            # handover, the new connection with the same routing id would be ignored until then.
            router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            if self.curve is not None and zap_domain is not None:
                router.setsockopt(zmq.CURVE_SERVER, 1)
                router.setsockopt(zmq.CURVE_SECRETKEY, self.curve.secret_key)
                router.setsockopt(zmq.ZAP_DOMAIN, zap_domain.encode())
            self._bind_router(router)
            self._endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            if self._endpoint.startswith(_INPROC):
                # After the bind, never before: a DEALER that reads the old generation and then connects to this
                # ROUTER only reconnects once too often; the other order could leave it on a dead predecessor.
                _InprocBinds.bound(self._inproc_binds, self._endpoint)
        except zmq.ZMQError as exc:
            router.close(linger=0)
            self._release_zap()
            raise ConfigurationError(f"peer {self.id!r} cannot bind {self.bind}: {exc}") from None
        self._router = router
        self._poller = zmq.Poller()
        self._poller.register(router, zmq.POLLIN)
        self._poller.register(self._wake_r.fileno(), zmq.POLLIN)
        self._apply_peers()

    def _bind_router(self, router: zmq.Socket[bytes]) -> None:
        # ZeroMQ releases an address in its I/O thread some time after close(), so a peer restarted within this
        # process can find its own old address still taken for a millisecond or two: retry briefly before deciding
        # that someone else holds it.
        deadline = time.monotonic() + _BIND_RETRY_S
        while True:
            try:
                router.bind(self.bind)
                return
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005)

    def close(self) -> None:
        """Close every socket at once (LINGER 0: queued frames are dropped). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for dealer in self._dealers.values():
            dealer.close(linger=0)
        self._dealers.clear()
        self._on_demand.clear()
        self._inproc_generations.clear()
        if self._router is not None:
            self._router.close(linger=0)
            self._router = None
        self._poller = None
        self._release_zap()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> ZmqTransport:
        """start() on entering a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """close() on leaving it."""
        self.close()

    # --- peers ---------------------------------------------------------------------------------------------------

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        """Who we can send to: peer id -> endpoint. Connects new peers, disconnects removed ones (dropping what was
        queued for them), reconnects peers whose endpoint changed. Before start() the map is kept for start()."""
        wanted = {check_peer_id(pid): _check_endpoint(ep, f"address of peer {pid!r}") for pid, ep in addresses.items()}
        self._addresses = wanted
        if self._router is not None:
            self._apply_peers()

    def _apply_peers(self) -> None:
        wanted = set(self._addresses.values()) | set(self._on_demand)
        for endpoint in [ep for ep in self._dealers if ep not in wanted]:
            self._dealers.pop(endpoint).close(linger=0)
            self._inproc_generations.pop(endpoint, None)
        for peer_id, endpoint in self._addresses.items():
            if endpoint not in self._dealers:
                self._dealers[endpoint] = self._connect(peer_id, endpoint)

    def _endpoint_for(self, to: str) -> str | None:
        """Where frames for ``to`` go when it is not a peer of set_peers: ``to`` itself, if it is an endpoint."""
        if not to.startswith(_SCHEMES) or to in _SCHEMES:
            return None
        if to in self._on_demand:
            self._on_demand[to] = self._on_demand.pop(to)  # most recently used last
        else:
            self._on_demand[to] = None
            if len(self._on_demand) > _ON_DEMAND_ENDPOINTS:
                oldest = next(iter(self._on_demand))
                del self._on_demand[oldest]
                if oldest not in self._addresses.values() and oldest in self._dealers:
                    self._dealers.pop(oldest).close(linger=0)
                    self._inproc_generations.pop(oldest, None)
        if to not in self._dealers and self._router is not None:
            try:
                self._dealers[to] = self._connect(to, to)
            except ConfigurationError:
                del self._on_demand[to]
                return None
        return to

    def _connect(self, peer_id: str, endpoint: str) -> zmq.Socket[bytes]:
        dealer = self._socket(zmq.DEALER)
        try:
            dealer.setsockopt(zmq.ROUTING_ID, self._id_bytes)
            dealer.setsockopt(zmq.SNDHWM, self.hwm)
            dealer.setsockopt(zmq.IMMEDIATE, 1)
            dealer.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
            dealer.setsockopt(zmq.RECONNECT_IVL_MAX, _RECONNECT_IVL_MAX_MS)
            if self.curve is not None:
                dealer.setsockopt(zmq.CURVE_SERVERKEY, self.curve.public_key)
                dealer.setsockopt(zmq.CURVE_PUBLICKEY, self.curve.public_key)
                dealer.setsockopt(zmq.CURVE_SECRETKEY, self.curve.secret_key)
            if endpoint.startswith(_INPROC):
                # Read before connecting (see start()): a bind in between costs one needless reconnect at most.
                self._inproc_generations[endpoint] = self._inproc_binds.get(endpoint, 0)
            dealer.connect(endpoint)
        except zmq.ZMQError as exc:
            dealer.close(linger=0)
            raise ConfigurationError(f"peer {self.id!r} cannot connect to {peer_id!r} at {endpoint}: {exc}") from None
        return dealer

    def _socket(self, kind: int) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if self._heartbeat_ms is not None:
            sock.setsockopt(zmq.HEARTBEAT_IVL, self._heartbeat_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * self._heartbeat_ms)
        return sock

    # --- sending -------------------------------------------------------------------------------------------------

    def send(self, to: str, frame: bytes) -> bool:
        """Queue ``frame`` for ``to`` without blocking; False (counted as ``dropped_send_<reason>``) when the peer
        is unknown, not connected or at its high-water mark (``blocked``), the frame is too large, or we are
        closed. ``frame`` must not be modified afterwards (large frames are sent without a copy)."""
        endpoint = self._addresses.get(to)
        header = self._header
        if endpoint is None:
            if self._closed:
                return self._drop("closed")
            endpoint = self._endpoint_for(to)
            if endpoint is None:
                return self._drop("unknown_peer")
            header = self._header_oldest
        dealer = self._dealers.get(endpoint)
        if dealer is None:
            return self._drop("closed" if self._closed else "not_connected")
        size = len(frame)
        if size > self.max_frame_bytes:
            self._log.warning(
                "oversized", "transport %s: not sending a %d-byte frame to %s: limit %d", self.id, size, to,
                self.max_frame_bytes,
            )
            return self._drop("oversized")
        return self._put(to, endpoint, dealer, header, frame, size, rebind=True)

    def _put(
        self, to: str, endpoint: str, dealer: zmq.Socket[bytes], header: bytes, frame: bytes, size: int, rebind: bool
    ) -> bool:
        """Hand the frame to ``dealer``; on ``zmq.Again`` from an inproc peer bound again since we connected (and
        ``rebind``), connect anew and try once more."""
        try:
            # Two sends rather than send_multipart, with int flags: this is the hot path, and pyzmq's enum flags
            # and generic loop cost more than the system call. ZeroMQ accepts or refuses a multipart message as a
            # whole at its first part, so the second send cannot fail with Again. Large payloads go without a copy.
            dealer.send(header, _SNDMORE_NOBLOCK)
            dealer.send(frame, _NOBLOCK, copy=size < _COPY_THRESHOLD)
        except zmq.Again:
            # Not connected (IMMEDIATE) or queue full: ZeroMQ does not say which, and the cure is the same, except
            # for an inproc peer bound again since we connected, which ZeroMQ will never reconnect us to.
            if rebind and endpoint in self._inproc_generations:
                fresh = self._rebound(to, endpoint)
                if fresh is not None:
                    return self._put(to, endpoint, fresh, header, frame, size, rebind=False)
            return self._drop("blocked")
        except zmq.ZMQError as exc:
            self._log.warning("send_error", "transport %s: sending to %s failed: %s", self.id, to, exc)
            return self._drop("error")
        self._stats.sent(size)
        return True

    def _rebound(self, to: str, endpoint: str) -> zmq.Socket[bytes] | None:
        """A new DEALER for an inproc:// peer whose address was bound again since ours connected; None if it was
        not (the peer is just not there, or slow)."""
        if self._inproc_binds.get(endpoint, 0) == self._inproc_generations[endpoint]:
            return None
        self._dealers.pop(endpoint).close(linger=0)
        del self._inproc_generations[endpoint]
        try:
            dealer = self._connect(to, endpoint)
        except ConfigurationError as exc:
            # Cannot happen for an address that connected before; if it does, the next set_peers() tries again.
            self._log.warning("send_error", "transport %s: reconnecting to %s failed: %s", self.id, to, exc)
            return None
        self._dealers[endpoint] = dealer
        log.debug("transport %s: %s at %s was bound again: connected anew", self.id, to, endpoint)
        return dealer

    def _drop(self, reason: str) -> bool:
        self._stats.dropped(reason)
        return False

    # --- receiving -----------------------------------------------------------------------------------------------

    def receive(self, timeout: float) -> list[tuple[str, bytes]]:
        """Wait at most ``timeout`` seconds for frames or a wake(); return the frames available now (at most
        ``max_batch``) as ``(sender id, payload)``. Malformed frames are counted, logged and skipped."""
        router = self._router
        if router is None or self._poller is None:
            return []
        # Frames already waiting: hand them over without a poll system call.
        frames = self._drain(router)
        if frames:
            return frames
        ms = 0 if timeout <= 0 else math.ceil(timeout * 1000)
        ready = self._poller.poll(ms)
        if not ready:
            return frames
        wake_fd = self._wake_r.fileno()
        for what, _ in ready:
            if what == wake_fd:
                self._clear_wake()
        return self._drain(router)

    def wake(self) -> None:
        """Thread-safe: make a receive() in progress, or the next one, return at once. Harmless after close()."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            # BlockingIOError: the buffer is full of wakes not yet drained, which already do the job.
            # Other OSErrors: closed under us; nobody is left to wake.
            pass

    def _clear_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _drain(self, router: zmq.Socket[bytes]) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        append = out.append
        recv = router.recv
        more = router.getsockopt
        header = self._header
        limit = self.max_frame_bytes
        identities = self._identities
        size = 0
        for _ in range(self.max_batch):
            try:
                ident = recv(_NOBLOCK)
            except zmq.Again:
                break
            # Fast path: a well-formed frame from a sender seen before, [identity, header, payload].
            if more(_RCVMORE):
                head = recv(_NOBLOCK)
                if more(_RCVMORE):
                    payload = recv(_NOBLOCK)
                    if not more(_RCVMORE) and head == header and len(payload) <= limit:
                        sender = identities.get(ident)
                        if sender is not None:
                            append((sender, payload))
                            size += len(payload)
                            continue
                    parts = [ident, head, payload]
                else:
                    parts = [ident, head]
            else:
                parts = [ident]
            count = len(parts)
            while more(_RCVMORE):
                # Parts past the third make the message bad whatever they hold: count them, keep none, so that a
                # message of a million parts costs no memory here.
                recv(_NOBLOCK)
                count += 1
            sender = self._check(parts, count)
            if sender is not None:
                append((sender, parts[2]))
                size += len(parts[2])
        if out:
            self._stats.received(size, len(out))
        return out

    def _check(self, parts: list[bytes], count: int) -> str | None:
        """The sender of a message of ``count`` parts (the first ones in ``parts``) that passes every check, or
        None after counting and logging why it does not."""
        ident = parts[0]
        if count != 3:
            return self._reject("parts", ident, f"{count - 1} parts instead of 2")
        header = parts[1]
        if len(header) < len(MAGIC) + 1 or header[: len(MAGIC)] != MAGIC:
            return self._reject("magic", ident, f"header {header[:16]!r} does not start with {MAGIC!r}")
        version = header[len(MAGIC)]
        if not self.versions[0] <= version <= self.versions[1]:
            low, high = self.versions
            return self._reject("version", ident, f"protocol version {version}, we speak {low}..{high}")
        if header[len(MAGIC) + 1 :] != self.cluster:
            return self._reject(
                "cluster", ident, f"cluster {header[len(MAGIC) + 1 :][:64]!r}, we are {self.cluster!r}"
            )
        if len(parts[2]) > self.max_frame_bytes:
            return self._reject("oversized", ident, f"{len(parts[2])} bytes, limit {self.max_frame_bytes}")
        # ZeroMQ makes up ids starting with a zero byte for sockets that set none: not one of our DEALERs.
        if not ident or ident[0] == 0:
            return self._reject("identity", ident, "anonymous sender (no routing id set)")
        try:
            sender = ident.decode("utf-8")
        except UnicodeDecodeError:
            return self._reject("identity", ident, "routing id is not UTF-8")
        if len(self._identities) < _IDENTITY_CACHE_SIZE:
            self._identities[ident] = sender
        return sender

    def _reject(self, reason: str, ident: bytes, detail: str) -> str | None:
        # Typed like _check, whose rejecting branches return its value: always None, meaning "no valid sender".
        self._stats.rejected(reason)
        self._log.warning(reason, "transport %s: rejected a frame from %r: %s", self.id, ident[:64], detail)
        return None

    # --- introspection -------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters (see :meth:`Transport.stats`) and the ``peers`` gauge."""
        return self._stats.snapshot(peers=len(self._addresses))

    def _release_zap(self) -> None:
        if self._zap_domain is not None:
            _ZapService.unregister(self._context, self._zap_domain)
            self._zap_domain = None

    def __repr__(self) -> str:
        return f"ZmqTransport({self.id!r}, endpoint={self.endpoint!r})"


class _InprocBinds:
    """Bind generations of ``inproc://`` endpoints, one table per ZeroMQ context (inproc addresses are per context).

    The table maps an endpoint to a number that changes each time a transport's ROUTER binds it; numbers come from
    one process-wide counter, so no two binds share one. The binding transport writes its entry (any thread: one
    dict assignment under the GIL), DEALERs of the same context read it when they connect and when a send fails.
    """

    _lock = threading.Lock()
    _by_context: ClassVar[weakref.WeakKeyDictionary[zmq.Context[Any], dict[str, int]]] = weakref.WeakKeyDictionary()
    _counter = itertools.count(1)

    @classmethod
    def of(cls, context: zmq.Context[Any]) -> dict[str, int]:
        """The table of ``context`` (endpoint -> generation; 0, or no entry, for never bound)."""
        with cls._lock:
            table = cls._by_context.get(context)
            if table is None:
                table = cls._by_context[context] = {}
            return table

    @classmethod
    def bound(cls, table: dict[str, int], endpoint: str) -> None:
        """Record that ``endpoint`` of ``table``'s context was just bound."""
        table[endpoint] = next(cls._counter)


class _ZapService:
    """One ZAP handler thread per ZeroMQ context, shared by the CURVE transports of that context.

    ZeroMQ asks the handler bound at ``inproc://zeromq.zap.01`` of the server socket's context whether a client
    may connect; only one can bind there per context, so transports register their ZAP domain and admitted keys
    with a shared handler (pyzmq's ThreadAuthenticator), which stops when the last of them closes.
    """

    _lock = threading.Lock()
    _by_context: dict[int, _ZapService] = {}

    def __init__(self, context: zmq.Context[Any]) -> None:
        self.authenticator = zmq.auth.thread.ThreadAuthenticator(context, log=logging.getLogger("embedzk.zap"))
        self.domains: dict[str, frozenset[bytes]] = {}

    def callback(self, domain: str, client_key: bytes) -> bool:
        """pyzmq's credentials-provider hook: is ``client_key`` (Z85) admitted in ``domain``?"""
        return client_key in self.domains.get(domain, frozenset())

    @classmethod
    def register(cls, context: zmq.Context[Any], domain: str, keys: Iterable[bytes]) -> None:
        """Admit ``keys`` on sockets of ``context`` whose ZAP domain is ``domain``; starts the handler if needed."""
        with cls._lock:
            service = cls._by_context.get(id(context))
            if service is None:
                service = cls(context)
                try:
                    service.authenticator.start()
                except zmq.ZMQError as exc:
                    raise ConfigurationError(
                        f"cannot start a ZAP handler for CURVE in this ZeroMQ context ({exc}); if the application "
                        "runs its own, give embedzk a separate context"
                    ) from None
                cls._by_context[id(context)] = service
            service.domains[domain] = frozenset(keys)
            service.authenticator.configure_curve_callback(domain, credentials_provider=service)

    @classmethod
    def unregister(cls, context: zmq.Context[Any], domain: str) -> None:
        """Forget ``domain``; stop the handler when no domain is left."""
        with cls._lock:
            service = cls._by_context.get(id(context))
            if service is None:
                return
            service.domains.pop(domain, None)
            service.authenticator.credentials_providers.pop(domain, None)
            if not service.domains:
                del cls._by_context[id(context)]
                service.authenticator.stop()
