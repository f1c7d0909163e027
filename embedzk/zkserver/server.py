"""A peer's ZooKeeper client server: ZooKeeper's client protocol on a TCP address, on a thread of its own.

``Peer(client_address="127.0.0.1:2181")`` starts one. The server runs an asyncio loop on its own thread (never the
peer's loop thread, which it only hands work to); each connection is a
:class:`~embedzk.zkserver.connection.ClientConnection`. Every second or so the server tells the replica which
client sessions are alive here (the leader expires the others, as ZooKeeper's leader does), closes the connections
whose session expired, and closes every connection once this peer has known no leader for ``no_leader_timeout``,
so that clients move to a peer that can serve them, keeping their sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import socket
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from embedzk.errors import ConfigurationError
from embedzk.tree.watches import WatchKind, WatchRegistry
from embedzk.zkserver import fourletter
from embedzk.zkserver.connection import ClientConnection
from embedzk.zkserver.facts import ConnectionFacts, ServerFacts
from embedzk.zkserver.settings import ClientSettings

if TYPE_CHECKING:
    from embedzk._loop import Loop
    from embedzk.peer import Peer
    from embedzk.replica import Replica

log = logging.getLogger(__name__)

__all__ = ["ClientServer", "parse_client_address"]

#: The ZooKeeper release whose client protocol the server speaks (every request of a 3.9 client).
ZOOKEEPER_PROTOCOL_RELEASE = "3.9.0"

# How often the sessions held here are reported to the leader and checked, at most (seconds).
_KEEPALIVE_INTERVAL = 1.0


def parse_client_address(address: Any) -> tuple[str, int]:
    """``"host:port"`` (port 0: any free port) as (host, port); ConfigurationError naming what is wrong."""
    if not isinstance(address, str) or ":" not in address:
        raise ConfigurationError(f"client_address must be 'host:port', got {address!r}")
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(f"client_address {address!r}: the port is not a number") from None
    if not host or not 0 <= port <= 65535:
        raise ConfigurationError(f"client_address {address!r}: give a host and a port 0-65535")
    return host, port


class ClientServer:
    """Serves ZooKeeper clients for one peer; started and stopped by the peer."""

    def __init__(self, peer: Peer, address: str, settings: ClientSettings) -> None:
        self.peer = peer
        self.settings = settings
        self._host, self._port = parse_client_address(address)
        self.aloop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._socket: socket.socket | None = None
        self._connections: set[ClientConnection] = set()
        self._by_host: Counter[str] = Counter()
        self._sessions: dict[int, ClientConnection] = {}
        self._refused: Counter[str] = Counter()
        self._leaderless_since: float | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._started_at = time.monotonic()
        #: The highest zxid a reply carried: what pings and errors answer with.
        self.last_zxid = 0
        self.packets_received = 0
        self.packets_sent = 0
        self._latency_min = 0.0
        self._latency_max = 0.0
        self._latency_total = 0.0
        self._latency_count = 0

    # -- the peer's side ----------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Where the server listens, ``host:port`` (the port chosen when 0 was asked)."""
        if self._socket is None:
            return f"{self._host}:{self._port}"
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def loop(self) -> Loop:
        """The peer's loop, to which reads and writes are handed."""
        loop = self.peer._loop
        assert loop is not None
        return loop

    @property
    def replica(self) -> Replica:
        """The peer's replica: only ever touched on the peer's loop thread."""
        replica = self.peer._replica
        assert replica is not None
        return replica

    @property
    def registry(self) -> WatchRegistry:
        """The peer's watch registry, where the clients' watches are kept beside the application's."""
        return self.peer._registry

    @property
    def request_timeout(self) -> float:
        """How long a client's write or sync may take (the peer's request_timeout)."""
        return self.peer.request_timeout

    def start(self) -> None:
        """Bind (raising ConfigurationError if the address cannot be had) and start serving on a new thread."""
        try:
            sock = socket.create_server((self._host, self._port), family=_family(self._host))
        except OSError as exc:
            raise ConfigurationError(f"client_address {self._host}:{self._port} cannot be bound: {exc}") from None
        self._socket = sock
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.aloop)
            try:
                self._server = self.aloop.run_until_complete(
                    self.aloop.create_server(lambda: ClientConnection(self), sock=sock)
                )
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                return
            self._keepalive = self.aloop.call_later(self._keepalive_interval(), self._keep_alive)
            started.set()
            try:
                self.aloop.run_forever()
            finally:
                self.aloop.close()

        self._thread = threading.Thread(target=run, name=f"embedzk-{self.peer.id}-clients", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise ConfigurationError(f"client server at {self.address} could not start: {failure[0]}")
        log.info("peer %s: serving ZooKeeper clients at %s", self.peer.id, self.address)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (their sessions live on: clients move to another peer) and stop the thread."""
        thread = self._thread
        if thread is None:
            return

        def shutdown() -> None:
            if self._keepalive is not None:
                self._keepalive.cancel()
            if self._server is not None:
                self._server.close()
            for connection in list(self._connections):
                connection.close("the peer is stopping")
            # Let the transports finish closing before the loop stops.
            self.aloop.call_later(0.05, self.aloop.stop)

        try:
            self.aloop.call_soon_threadsafe(shutdown)
        except RuntimeError:
            pass  # already closed
        thread.join(timeout)
        self._thread = None

    # -- what the connections call ------------------------------------------------------------------------------

    def admit(self, connection: ClientConnection) -> str | None:
        """Count a new connection in; the reason to refuse it, if its address has too many already."""
        limit = self.settings.max_client_cnxns
        if limit and self._by_host[connection.host] >= limit:
            self.count_refusal("too many connections")
            return f"too many connections from {connection.host} (max_client_cnxns={limit})"
        self._by_host[connection.host] += 1
        self._connections.add(connection)
        return None

    def forget(self, connection: ClientConnection) -> None:
        """A connection closed: its watches go (the client sets them again wherever it reconnects)."""
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        self._by_host[connection.host] -= 1
        if self._by_host[connection.host] <= 0:
            del self._by_host[connection.host]
        if self._sessions.get(connection.session_id) is connection:
            del self._sessions[connection.session_id]
        registry, watcher = self.registry, connection.watcher
        loop = self.peer._loop
        if loop is not None:
            loop.call(lambda: registry.remove_all(watcher))

    def attach(self, connection: ClientConnection) -> None:
        """A connection now holds its session; an older connection here holding the same session is closed."""
        older = self._sessions.get(connection.session_id)
        self._sessions[connection.session_id] = connection
        if older is not None and older is not connection:
            older.close("its session moved to a newer connection")

    def leaderless(self) -> bool:
        """Whether this peer has known no leader for at least ``no_leader_timeout`` (as of the last check)."""
        since = self._leaderless_since
        return since is not None and time.monotonic() - since >= self.peer.no_leader_timeout

    def count_refusal(self, reason: str) -> None:
        """A connection was refused or closed for ``reason`` (a bad input or a limit)."""
        self._refused[reason] += 1

    def count_latency(self, ms: float) -> None:
        """A request was answered ``ms`` milliseconds after it arrived."""
        if self._latency_count == 0 or ms < self._latency_min:
            self._latency_min = ms
        self._latency_max = max(self._latency_max, ms)
        self._latency_total += ms
        self._latency_count += 1

    def saw_zxid(self, zxid: int) -> None:
        """A reply carries ``zxid``."""
        if zxid > self.last_zxid:
            self.last_zxid = zxid

    def config_text(self) -> str:
        """``/zookeeper/config``: the members as ZooKeeper lists its dynamic configuration (on the loop thread)."""
        replica = self.replica
        lines = []
        for member in sorted(replica.members(), key=lambda m: m.id):
            role = "participant" if member.voter else "observer"
            lines.append(f"server.{member.id}={member.address}:{role}")
        return "\n".join(lines)

    def figures(self) -> dict[str, Any]:
        """The server's own counters, for :meth:`Peer.stats` (``clients``): read from any thread."""
        connections = list(self._connections)  # one C-level copy: safe against the server thread adding one
        count = self._latency_count
        return {
            "address": self.address,
            "connections": len(connections),
            "sessions": len(self._sessions),
            "outstanding_requests": sum(c.outstanding() for c in connections),
            "packets_received": self.packets_received,
            "packets_sent": self.packets_sent,
            "latency_min_ms": self._latency_min,
            "latency_avg_ms": self._latency_total / count if count else 0.0,
            "latency_max_ms": self._latency_max,
            "refused": dict(self._refused),
        }

    # -- four-letter words --------------------------------------------------------------------------------------

    def answer_four_letter_word(self, connection: ClientConnection, word: str) -> None:
        """Answer ``word`` on ``connection`` and close it, as ZooKeeper does: the replica's figures are read on the
        peer's loop, the rest (the connections, the data directory for ``dirs``) here, on this server's thread."""
        whitelist = self.settings.four_letter_words

        def reply(figures: dict[str, Any] | None) -> None:
            if connection.closed:
                return
            facts = self.facts(figures, data_dir_size=word == "dirs")
            connection.write(fourletter.answer(word, facts, whitelist).encode("utf-8"))
            connection.close()

        future: Future[Any] = Future()  # None for figures: the peer is stopping, answer with what is known here
        future.add_done_callback(lambda f: connection.post(reply, f.result() if f.exception() is None else None))
        self.loop.call(self._replica_figures, future=future)

    def _replica_figures(self) -> dict[str, Any]:
        replica = self.replica
        stats = replica.stats()
        tree = replica.tree
        members = replica.members()
        stats["members"] = [(m.id, m.voter, m.leader, m.reachable, m.lag) for m in members]
        stats["ephemerals"] = tree.ephemeral_count()
        stats["watch_count"] = self.registry.count()
        watched: set[str] = set()
        for kind in WatchKind:
            watched |= self.registry.paths(kind)
        stats["watched_paths"] = len(watched)
        return stats

    def facts(self, figures: dict[str, Any] | None, data_dir_size: bool = False) -> ServerFacts:
        """This server's figures, with the replica's ``figures`` (None: unknown, the peer is stopping); on this
        server's thread. ``data_dir_size``: walk the data directory for its size (only ``dirs`` prints it)."""
        figures = figures or {}
        members = figures.get("members", [])
        me = self.peer._member_key
        leader = figures.get("leader")
        if len(members) <= 1:
            mode = "standalone"
        elif leader is not None and leader == me:
            mode = "leader"
        elif any(m[0] == self.peer.id and m[1] for m in members):
            mode = "follower"
        else:
            mode = "observer"
        followers = [m for m in members if not m[2]] if mode == "leader" else []
        synced = [m for m in followers if m[1] and m[3] and (m[4] or 0) == 0]
        count = self._latency_count
        connections = tuple(
            ConnectionFacts(
                host=c.host,
                port=c.port,
                queued=c.outstanding(),
                received=c.received,
                sent=c.sent,
                session_id=c.session_id,
                timeout_ms=c.timeout_ms,
                latency_min_ms=c.latency_min,
                latency_avg_ms=c.latency_total / c.latency_count if c.latency_count else 0.0,
                latency_max_ms=c.latency_max,
                last_op=c.last_op,
                last_xid=c.last_xid,
                last_zxid=c.last_zxid,
                established_ms=c.established_ms,
                last_response_ms=c.last_response_ms,
            )
            for c in sorted(self._connections, key=lambda c: (c.host, c.port))
        )
        settings = self.settings
        low, high = settings.session_timeout_bounds
        data_dir = self.peer._data_dir
        return ServerFacts(
            version=server_version(),
            peer_id=self.peer.id,
            mode=mode,
            zxid=int(figures.get("applied_index", self.last_zxid)),
            node_count=int(figures.get("znode_count", 0)),
            approximate_data_size=-1,
            watch_count=int(figures.get("watch_count", 0)),
            watched_paths=int(figures.get("watched_paths", 0)),
            watching_connections=sum(1 for c in self._connections if c.session_id),
            ephemerals_count=int(figures.get("ephemerals", 0)),
            outstanding_requests=sum(c.outstanding() for c in self._connections),
            packets_received=self.packets_received,
            packets_sent=self.packets_sent,
            latency_min_ms=self._latency_min,
            latency_avg_ms=self._latency_total / count if count else 0.0,
            latency_max_ms=self._latency_max,
            connections=connections,
            refused=dict(self._refused),
            followers=len(followers),
            synced_followers=len(synced),
            global_sessions=int(figures.get("sessions", 0)),
            config={
                "clientPort": str(self.address.rpartition(":")[2]),
                "clientPortAddress": self._host,
                "dataDir": data_dir or "(in memory)",
                "tickTime": str(settings.tick_time_ms),
                "maxClientCnxns": str(settings.max_client_cnxns),
                "minSessionTimeout": str(low),
                "maxSessionTimeout": str(high),
                "serverId": self.peer.id,
            },
            environment={
                "zookeeper.version": f"{server_version()}, built on embedzk",
                "host.name": socket.gethostname(),
                "python.version": platform.python_version(),
                "os.name": platform.system(),
                "os.arch": platform.machine(),
                "os.version": platform.release(),
                "user.dir": os.getcwd(),
            },
            data_dir_size=_dir_size(data_dir) if data_dir_size else 0,
            open_file_descriptors=_open_fds(),
            max_file_descriptors=_max_fds(),
            read_only=leader is None,
        )

    # -- keeping sessions ---------------------------------------------------------------------------------------

    def _keepalive_interval(self) -> float:
        held = [c.timeout_ms for c in self._sessions.values() if c.timeout_ms]
        shortest = min(held, default=self.settings.session_timeout_bounds[0])
        return max(0.05, min(_KEEPALIVE_INTERVAL, shortest / 1000.0 / 4))

    def _keep_alive(self) -> None:
        self._keepalive = self.aloop.call_later(self._keepalive_interval(), self._keep_alive)
        now = time.monotonic()
        alive = []
        for session_id, connection in list(self._sessions.items()):
            if now - connection.last_heard > connection.timeout_ms / 1000.0:
                connection.close(f"no packet for {connection.timeout_ms} ms (its session timeout)")
                continue
            if connection.read_only:
                continue  # a session of this peer alone: no leader keeps it, none expires it
            # Only a session heard since the last report is reported alive, so that the leader's clock for it runs
            # from the client's last packet (give or take one keep-alive interval), not from this report.
            if connection.heard:
                connection.heard = False
                alive.append(session_id)
        loop = self.peer._loop
        if loop is None:
            return

        def on_loop() -> tuple[list[int], bool]:
            replica = self.replica
            replica.keep_alive(alive)
            open_sessions = replica.tree.sessions()
            return [sid for sid in alive if sid not in open_sessions], replica.lead is not None

        try:
            future = loop.call(on_loop)
        except Exception:
            return
        future.add_done_callback(
            lambda f: self._post(self._checked, f.result()) if f.exception() is None else None
        )

    def _post(self, fn: Any, *args: Any) -> None:
        try:
            self.aloop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    def _checked(self, result: tuple[list[int], bool]) -> None:
        expired, has_leader = result
        for session_id in expired:
            connection = self._sessions.get(session_id)
            if connection is not None:
                connection.expire()
        now = time.monotonic()
        if has_leader:
            self._leaderless_since = None
            for connection in list(self._connections):
                if connection.read_only:  # as ZooKeeper's: back to a read-write session now that one can be had
                    connection.close("a leader is known again: the client should open a read-write session")
            return
        if self._leaderless_since is None:
            self._leaderless_since = now
        elif now - self._leaderless_since >= self.peer.no_leader_timeout and any(
            c.serves_read_write() for c in self._connections
        ):
            log.warning(
                "peer %s: no leader for %.1fs: closing %d client connections so that they move to another peer",
                self.peer.id, now - self._leaderless_since, sum(c.serves_read_write() for c in self._connections),
            )
            for connection in list(self._connections):
                # A read-only session is what a client asks for in just this case; a handshake settles itself.
                if connection.serves_read_write():
                    connection.close("this peer knows no leader")


def server_version() -> str:
    """The version a client reads from ``srvr``, ``mntr`` and ``envi``: the ZooKeeper release whose client protocol
    is spoken, then embedzk's own (kazoo's ``server_version()`` and feature checks read the leading digits)."""
    from embedzk import __version__

    return f"{ZOOKEEPER_PROTOCOL_RELEASE}-embedzk-{__version__}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _dir_size(path: str | None) -> int:
    if not path:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue  # a file compacted away while we walked
    return total


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _max_fds() -> int:
    try:
        import resource

        return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except (ImportError, OSError, ValueError):
        return -1
