"""One ZooKeeper client's connection to a peer: its handshake, its session, its requests answered in order.

Runs on the client server's thread (an asyncio loop); everything that reads or changes the replica is handed to the
peer's loop thread, and the answer comes back through ``call_soon_threadsafe``. Requests are pipelined: writes go
to the replica as they arrive (the log keeps their order), a read waits until the writes before it are applied (so
a client reads its own writes), and the replies leave in the order the requests came, as ZooKeeper's do. A watch
notification leaves as soon as the loop matched it, which is before the reply to the request that made the change
(the loop hands out a change's events before its completions).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from embedzk.errors import (
    AuthFailedError,
    ConnectionLossError,
    DecodeError,
    EmbedZKError,
    MembershipError,
    NewConfigNoQuorumError,
    NoAuthError,
    NotLeaderError,
    NotReadOnlyCallError,
    PeerStoppedError,
    ReconfigDisabledError,
    SessionExpiredError,
    UnimplementedError,
)
from embedzk.model import WatchedEvent
from embedzk.tree.acl import SUPER
from embedzk.tree.txn import CreateSessionOp, MultiOp
from embedzk.tree.watches import DirectWatcher
from embedzk.zkserver import fourletter, operations
from embedzk.zkserver.operations import READS, WRITES, ClientIdentity, ReadContext
from embedzk.zkwire import (
    FrameDecoder,
    FrameLengthError,
    OpCode,
    Request,
    decode_connect_request,
    decode_request,
    encode_connect_response,
    encode_notification,
    encode_reply,
    error_code,
)
from embedzk.zkwire.codes import PING_XID, EventType, KeeperState, event_type_from_model, op_name
from embedzk.zkwire.jute import JuteRecord
from embedzk.zkwire.records import (
    AuthPacket,
    ConnectRequest,
    ConnectResponse,
    GetDataResponse,
    MultiResponse,
    ReconfigRequest,
    ReplyHeader,
    SyncRequest,
    SyncResponse,
    WatcherEvent,
)

if TYPE_CHECKING:
    from embedzk.zkserver.server import ClientServer

log = logging.getLogger(__name__)

# Errors after which the connection is closed instead of answered: the client must learn of them as a lost
# connection (its requests' outcome unknown) and go to another peer, as from a ZooKeeper server that lost its leader.
_LOSSES = (ConnectionLossError, NotLeaderError, PeerStoppedError)

_SET_WATCHES_EVENTS = {
    "created": EventType.NODE_CREATED,
    "deleted": EventType.NODE_DELETED,
    "changed": EventType.NODE_DATA_CHANGED,
    "child": EventType.NODE_CHILDREN_CHANGED,
}


class _Watcher(DirectWatcher):
    """The connection in the peer's watch registry: one watcher per connection, so that one change sends the
    client one notification however many of its watches it matched (as ZooKeeper's WatchManager)."""

    __slots__ = ("_connection",)

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    def deliver(self, event: WatchedEvent) -> None:
        """Hand the event to the connection's thread (called on the peer's loop thread)."""
        self._connection.post(self._connection.notify, event)


class _Slot:
    """A request in the connection's pipeline, from its arrival until its reply leaves."""

    __slots__ = ("close_after", "frame", "opcode", "ordered", "request", "started", "xid")

    def __init__(self, request: Request | None, xid: int, opcode: int, ordered: bool) -> None:
        self.request = request
        self.xid = xid
        self.opcode = opcode
        #: A write or sync: reads after it wait until it is done.
        self.ordered = ordered
        self.started = time.monotonic()
        self.frame: bytes | None = None
        self.close_after: str | None = None


class ClientConnection(asyncio.Protocol):
    """A client's connection: the protocol object asyncio drives, on the client server's thread."""

    def __init__(self, server: ClientServer) -> None:
        self.server = server
        self.aloop: asyncio.AbstractEventLoop = server.aloop
        self.transport: asyncio.Transport | None = None
        self.host = ""
        self.port = 0
        self.identity = ClientIdentity("")
        self.watcher = _Watcher(self)
        self.session_id = 0
        self.timeout_ms = 0
        #: A read-only session (no quorum when it was opened): reads only, kept by this peer alone.
        self.read_only = False
        self.closed = False
        #: "handshake" until the ConnectRequest is answered, then "open".
        self.phase = "handshake"
        self.last_heard = time.monotonic()
        #: Whether a packet came since the server last reported the session alive to the leader.
        self.heard = False
        self.established_ms = int(time.time() * 1000)
        self.last_response_ms = 0
        self.received = 0
        self.sent = 0
        self.last_op = "NA"
        self.last_xid = -1
        self.last_zxid = -1
        self.latency_min = 0.0
        self.latency_max = 0.0
        self.latency_total = 0.0
        self.latency_count = 0
        self._decoder = FrameDecoder(server.settings.max_packet)
        self._head = b""  # the first bytes, until four are here: a four-letter word or a frame length
        self._slots: deque[_Slot] = deque()  # requests in arrival order, until their replies leave
        self._undispatched: deque[_Slot] = deque()  # requests not yet handed to the loop
        self._ordered_in_flight = 0
        self._reading_paused = False
        self._writing_paused = False
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._early: list[bytes] = []  # requests that came while the session was being opened

    # -- asyncio's callbacks ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A client connected: refused at once if its address has too many connections already."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # asyncio sets TCP_NODELAY only on sockets it made with IPPROTO_TCP; ours come from socket.create_server,
            # and without it a small reply waits for the client's delayed acknowledgement (up to 40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.host, self.port = str(peer[0]), int(peer[1])
        self.identity = ClientIdentity(self.host)
        reason = self.server.admit(self)
        if reason is not None:
            self.close(reason)
            return
        self._handshake_timer = self.aloop.call_later(self.server.settings.handshake_timeout, self._handshake_late)

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone, whoever closed it."""
        self.closed = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.server.forget(self)

    def pause_writing(self) -> None:
        """The client does not read its replies fast enough: stop reading its requests until it does."""
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        """The replies drained: read requests again."""
        self._writing_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        """Bytes from the client: cut into packets and handled in order."""
        if self.closed:
            return
        self.last_heard = time.monotonic()
        self.heard = True
        if self.phase == "handshake" and len(self._head) < 4 and self._decoder.buffered == 0:
            self._head += data
            if len(self._head) < 4:
                return
            data, self._head = self._head, b"\xff" * 4  # a word is recognised only in a connection's first 4 bytes
            word = fourletter.word_of(data[:4])
            if word is not None:
                self.server.answer_four_letter_word(self, word)
                return
        try:
            packets = self._decoder.feed(data)
            for packet in packets:
                self.received += 1
                self.server.packets_received += 1
                if self.phase == "handshake":
                    self._handshake(packet)
                elif self.phase == "connecting":
                    # Sent before the handshake's answer (a client may pipeline): kept for when the session is open,
                    # as many as a connection may have outstanding; then nothing more is read until then.
                    self._early.append(packet)
                    if len(self._early) >= self.server.settings.max_outstanding and self.transport is not None:
                        if not self._reading_paused:
                            self._reading_paused = True
                            self.transport.pause_reading()
                else:
                    self._request(packet)
                if self.closed:
                    return
        except FrameLengthError as exc:
            self.close(f"oversized packet: {exc}", refused="oversized packet")
        except DecodeError as exc:
            self.close(f"malformed packet: {exc}", refused="malformed packet")

    # -- helpers for the server ---------------------------------------------------------------------------------

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on this connection's thread (from any thread); nothing if the server stopped."""
        try:
            self.aloop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the server's loop is closed: the connection is gone with it

    def close(self, reason: str | None = None, refused: str | None = None) -> None:
        """Close the connection; ``reason`` is logged, ``refused`` counted in the server's stats."""
        if self.closed:
            return
        self.closed = True
        if reason is not None:
            log.info("client %s:%s (session %#x): closing: %s", self.host, self.port, self.session_id, reason)
        if refused is not None:
            self.server.count_refusal(refused)
        if self.transport is not None:
            self.transport.close()

    def write(self, frame: bytes) -> None:
        """Send one frame to the client."""
        if self.closed or self.transport is None:
            return
        self.transport.write(frame)
        self.sent += 1
        self.server.packets_sent += 1

    def notify(self, event: WatchedEvent) -> None:
        """Send a watch notification (on this connection's thread)."""
        if self.phase != "open":
            return
        self._send_event(event_type_from_model(event.type), event.path, event.zxid)

    def expire(self) -> None:
        """The session expired: close, as ZooKeeper does; the client learns of the expiry when it reconnects (its
        session is refused then), which is how every ZooKeeper client expects to learn it."""
        self.close("its session expired")

    def serves_read_write(self) -> bool:
        """Whether the connection holds a replicated (read-write) session: past its handshake, not read-only."""
        return self.phase == "open" and not self.read_only

    def outstanding(self) -> int:
        """Requests received and not answered yet."""
        return len(self._slots)

    def _send_event(self, event_type: EventType, path: str, zxid: int) -> None:
        self.write(encode_notification(WatcherEvent(int(event_type), int(KeeperState.SYNC_CONNECTED), path), zxid))

    def _handshake_late(self) -> None:
        if self.phase == "handshake":
            self.close(
                f"no handshake within {self.server.settings.handshake_timeout}s", refused="handshake timeout"
            )

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        limit = self.server.settings.max_outstanding
        pause = self._writing_paused or len(self._slots) >= limit
        if pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not pause and self._reading_paused and len(self._slots) <= limit // 2:
            self._reading_paused = False
            transport.resume_reading()

    # -- the handshake ------------------------------------------------------------------------------------------

    def _handshake(self, packet: bytes) -> None:
        request = decode_connect_request(packet, max_length=self.server.settings.max_packet)
        self.phase = "connecting"  # nothing more is read as a request until the handshake is answered
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if request.session_id == 0:
            self._open_session(request)
        else:
            self._resume_session(request)

    def _connected(
        self, request: ConnectRequest, session_id: int, timeout_ms: int, password: bytes, read_only_mode: bool = False
    ) -> None:
        if self.closed:
            return
        self.session_id = session_id
        self.timeout_ms = timeout_ms
        self.read_only = read_only_mode
        read_only = None if request.read_only is None else read_only_mode
        self.write(encode_connect_response(ConnectResponse(0, timeout_ms, session_id, password, read_only)))
        self.phase = "open"
        self.last_heard = time.monotonic()
        self.server.attach(self)
        early, self._early = self._early, []
        try:
            for packet in early:
                self._request(packet)
                if self.closed:
                    return
        except DecodeError as exc:
            self.close(f"malformed packet: {exc}", refused="malformed packet")
            return
        self._update_reading()
        log.debug("client %s:%s: session %#x, timeout %d ms", self.host, self.port, session_id, timeout_ms)

    def _refuse_session(self, request: ConnectRequest, why: str) -> None:
        # A session that is gone: a ConnectResponse with timeout 0 tells the client it expired, as ZooKeeper's does.
        read_only = None if request.read_only is None else False
        self.write(encode_connect_response(ConnectResponse(0, 0, 0, b"\0" * 16, read_only)))
        self.close(why)

    def _behind(self, request: ConnectRequest, applied: int) -> bool:
        if request.last_zxid_seen <= applied:
            return False
        # As ZooKeeper's servers: a client that has seen more than this peer has applied must not go back in time;
        # closing without an answer sends it to another peer.
        self.close(
            f"the client has seen zxid {request.last_zxid_seen:#x}, this peer has applied only {applied:#x}: "
            f"it must try another peer",
            refused="client ahead of this peer",
        )
        return True

    def _open_session(self, request: ConnectRequest) -> None:
        server = self.server
        timeout_ms = server.settings.negotiate(request.time_out)
        if request.read_only and server.leaderless():
            # No quorum for a while now, and the client accepts a read-only session: no need to wait to learn it.
            self._open_read_only(request, timeout_ms)
            return
        session_id = operations.new_session_id()
        op = CreateSessionOp(session_id, timeout_ms, operations.CLIENT_SESSION_OWNER)

        def opened(_value: Any) -> tuple[int, str]:
            replica = server.replica
            return replica.applied, replica.cluster_uuid

        # A client that accepts a read-only session does not wait long for a quorum that may be gone.
        wait = min(server.request_timeout, 2 * server.peer.no_leader_timeout) if request.read_only else (
            server.request_timeout
        )
        start = lambda fut: server.loop.submit(op, wait, transform=opened, future=fut)  # noqa: E731

        def done(result: tuple[int, str]) -> None:
            applied, secret = result
            if not self._behind(request, applied):
                self._connected(request, session_id, timeout_ms, operations.session_password(secret, session_id))

        def failed(exc: BaseException) -> None:
            if request.read_only:
                self._open_read_only(request, timeout_ms)
            else:
                self.close(f"could not open a session: {exc}")

        self._when_done(start, done, failed)

    def _open_read_only(self, request: ConnectRequest, timeout_ms: int) -> None:
        """ZooKeeper's read-only mode, for a client that asked for it while no quorum can open its session: a
        session of this peer alone (not replicated, so it owns no ephemeral node), reads from this peer's replica,
        every write refused with NOTREADONLY. Closed once a leader is known again, so the client moves to a
        read-write session."""
        server = self.server

        def look() -> tuple[int, bool]:
            replica = server.replica
            return replica.applied, replica.lead is not None

        def opened(result: tuple[int, bool]) -> None:
            applied, has_leader = result
            if has_leader:
                self.close("a leader is known again: the client should open a read-write session")
                return
            if self._behind(request, applied):
                return
            session_id = operations.new_session_id()
            log.info("client %s:%s: read-only session %#x (no quorum)", self.host, self.port, session_id)
            self._connected(request, session_id, timeout_ms, bytes(16), read_only_mode=True)

        self._when_done(
            lambda fut: server.loop.call(look, future=fut),
            opened,
            lambda exc: self.close(f"could not open a read-only session: {exc}"),
        )

    def _resume_session(self, request: ConnectRequest) -> None:
        server = self.server
        session_id = request.session_id

        def look() -> tuple[int, str, int | None]:
            replica = server.replica
            session = replica.tree.sessions().get(session_id)
            timeout = None
            if session is not None and session[0] == operations.CLIENT_SESSION_OWNER:
                timeout = session[1]
            return replica.applied, replica.cluster_uuid, timeout

        def check(result: tuple[int, str, int | None], synced: bool) -> None:
            applied, secret, timeout = result
            if self._behind(request, applied):
                return
            if timeout is None and not synced:
                # Perhaps opened so recently that it is not applied here yet: catch up with the leader, look again.
                self._when_done(
                    lambda fut: server.loop.sync(server.request_timeout, future=fut),
                    lambda _none: self._when_done(lambda fut: server.loop.call(look, future=fut), lambda r: check(r, True), failed),
                    failed,
                )
                return
            if timeout is None or request.passwd != operations.session_password(secret, session_id):
                self._refuse_session(request, f"session {session_id:#x} is expired or its password is wrong")
                return
            self._connected(request, session_id, timeout, operations.session_password(secret, session_id))

        def failed(exc: BaseException) -> None:
            self.close(f"could not resume session {session_id:#x}: {exc}")

        self._when_done(lambda fut: server.loop.call(look, future=fut), lambda r: check(r, False), failed)

    # -- requests -----------------------------------------------------------------------------------------------

    def _request(self, packet: bytes) -> None:
        request = decode_request(packet, max_length=self.server.settings.max_packet)
        opcode = request.opcode
        self.last_op = op_name(opcode)
        self.last_xid = request.xid
        if opcode == OpCode.PING:
            # Out of band, as ZooKeeper's clients expect: the ping keeps the session, whatever else is in flight.
            self.write(encode_reply(ReplyHeader(PING_XID, self.server.last_zxid, 0)))
            return
        ordered = opcode in WRITES or opcode in (OpCode.SYNC, OpCode.RECONFIG)
        slot = _Slot(request, request.xid, opcode, ordered=ordered)
        self._slots.append(slot)
        self._undispatched.append(slot)
        self._dispatch()
        self._update_reading()

    def _dispatch(self) -> None:
        while self._undispatched and not self.closed:
            slot = self._undispatched[0]
            if not slot.ordered and self._ordered_in_flight:
                return  # a read waits for the writes before it
            self._undispatched.popleft()
            if slot.ordered:
                self._ordered_in_flight += 1
            try:
                self._start(slot)
            except EmbedZKError as exc:
                self._fail(slot, exc)

    def _start(self, slot: _Slot) -> None:
        request = slot.request
        assert request is not None
        opcode = request.opcode
        server = self.server
        if opcode == OpCode.SYNC and self.read_only:
            raise NotReadOnlyCallError("sync needs the leader: this is a read-only session (no quorum)")
        if opcode == OpCode.SYNC:
            assert isinstance(request.body, SyncRequest)
            path = request.body.path or ""
            self._when_done(
                lambda fut: server.loop.sync(server.request_timeout, future=fut),
                lambda _none: self._answer(slot, SyncResponse(path), server.last_zxid),
                lambda exc: self._fail(slot, exc),
            )
        elif opcode in WRITES:
            self._start_write(slot, request)
        elif opcode in READS:
            self._start_read(slot, request)
        elif opcode == OpCode.AUTH:
            self._auth(slot, request)
        elif opcode == OpCode.RECONFIG:
            self._reconfig(slot, request)
        else:
            raise UnimplementedError(f"{op_name(opcode)} is not supported")

    def _start_write(self, slot: _Slot, request: Request) -> None:
        server = self.server
        if self.read_only:
            if request.opcode == OpCode.CLOSE_SESSION:  # a session of this peer alone: nothing to close elsewhere
                slot.close_after = "the client closed its read-only session"
                self._answer(slot, None, server.last_zxid)
                return
            raise NotReadOnlyCallError(f"{op_name(request.opcode)}: this is a read-only session (no quorum)")
        op = operations.write_op(request, self.session_id)
        if request.opcode == OpCode.CLOSE_SESSION:
            slot.close_after = "the client closed its session"
        if op is None or (isinstance(op, MultiOp) and not op.ops):
            # Nothing to propose (an empty multi): answered at once, in order.
            def answer_now() -> tuple[JuteRecord | None, int]:
                return MultiResponse(()), server.replica.applied

            self._when_done(
                lambda fut: server.loop.call(answer_now, future=fut), lambda r: self._answer(slot, *r), self._failer(slot)
            )
            return

        def reply(value: Any) -> tuple[JuteRecord | None, int]:
            replica = server.replica
            return operations.write_reply(request, value, replica.tree), replica.applied

        start = lambda fut: server.loop.submit(  # noqa: E731
            op,
            server.request_timeout,
            transform=reply,
            errors_as_values=request.opcode == OpCode.MULTI,
            session_id=self.session_id,
            ids=self.identity.ids,
            future=fut,
        )
        self._when_done(start, lambda r: self._answer(slot, *r), self._failer(slot))

    def _start_read(self, slot: _Slot, request: Request) -> None:
        server = self.server
        ctx = ReadContext(
            None, server.registry, self.watcher, self.session_id, self.identity, server.config_text
        )

        def read() -> tuple[JuteRecord | None, list[tuple[str, str]], int]:
            replica = server.replica
            ctx.tree = replica.tree
            body, fire = operations.run_read(request, ctx)
            return body, fire, replica.applied

        def done(result: tuple[JuteRecord | None, list[tuple[str, str]], int]) -> None:
            body, fire, zxid = result
            for kind, path in fire:
                self._send_event(_SET_WATCHES_EVENTS[kind], path, zxid)
            self._answer(slot, body, zxid)

        self._when_done(lambda fut: server.loop.call(read, future=fut), done, self._failer(slot))

    def _reconfig(self, slot: _Slot, request: Request) -> None:
        server = self.server
        if not server.settings.reconfig_enabled:
            raise ReconfigDisabledError("reconfig is disabled (ClientSettings.reconfig_enabled)")
        assert isinstance(request.body, ReconfigRequest)
        changes = operations.parse_reconfig(request.body)  # bad input is told first, as ZooKeeper does
        if SUPER not in self.identity.added:
            # As ZooKeeper: only the superuser may change the membership (its ACL on /zookeeper/config).
            raise NoAuthError("reconfig needs the superuser (auth with the digest of the peer's super_digest)")
        operations.check_reconfig_addresses(changes)

        def next_change(_done: Any = None) -> None:
            if not changes:
                def config() -> tuple[JuteRecord | None, int]:
                    text = server.config_text().encode("utf-8")
                    return GetDataResponse(text, operations.reserved_stat(len(text))), server.replica.applied

                self._when_done(
                    lambda fut: server.loop.call(config, future=fut), lambda r: self._answer(slot, *r), self._failer(slot)
                )
                return
            kind, peer_id, address, voter = changes.pop(0)
            start = lambda fut: server.loop.member_change(  # noqa: E731
                kind, peer_id, address, voter, server.request_timeout, future=fut
            )

            def failed(exc: BaseException) -> None:
                if isinstance(exc, MembershipError):  # ZooKeeper's word for a change that could not be made
                    exc = NewConfigNoQuorumError(f"reconfig: {kind} {peer_id}: {exc}")
                self._fail(slot, exc)

            self._when_done(start, next_change, failed)

        next_change()

    def _auth(self, slot: _Slot, request: Request) -> None:
        body = request.body
        assert isinstance(body, AuthPacket)
        scheme = body.scheme or ""
        try:
            credential = bytes(body.auth or b"").decode("utf-8")
            self.identity.authenticate(scheme, credential, self.server.peer._super_digest)
        except (UnicodeDecodeError, AuthFailedError) as exc:
            # As ZooKeeper: the client is told AUTHFAILED and the connection closes.
            slot.close_after = f"auth failed: {exc}"
            raise AuthFailedError(f"auth failed: {exc}") from None
        self._answer(slot, None, self.server.last_zxid)

    # -- answers ------------------------------------------------------------------------------------------------

    def _failer(self, slot: _Slot) -> Callable[[BaseException], None]:
        return lambda exc: self._fail(slot, exc)

    def _when_done(
        self,
        start: Callable[[Future[Any]], Future[Any]],
        on_result: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        """Hand work to the peer's loop with ``start(future)``, and call ``on_result`` or ``on_error`` on this
        connection's thread once it is done.

        The future's callback is attached before the work is queued, so it runs on the loop thread the moment the
        work completes: the answer is then queued for this thread in the loop's own order, after every watch event
        the loop handed out before it and before every one after (a reply never overtakes, nor is overtaken by, the
        notification of a change it did or did not see).
        """

        def settle(f: Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                self.post(on_error, exc)
            else:
                self.post(on_result, f.result())

        future: Future[Any] = Future()
        future.add_done_callback(settle)
        start(future)

    def _answer(self, slot: _Slot, body: JuteRecord | None, zxid: int) -> None:
        self.server.saw_zxid(zxid)
        slot.frame = encode_reply(ReplyHeader(slot.xid, zxid, 0), body)
        self._settled(slot, zxid)

    def _fail(self, slot: _Slot, exc: BaseException) -> None:
        if isinstance(exc, _LOSSES):
            self.close(f"{op_name(slot.opcode)} (xid {slot.xid}): {exc}")
            return
        if not isinstance(exc, EmbedZKError):
            log.error("client %s:%s: %s (xid %d) failed", self.host, self.port, op_name(slot.opcode), slot.xid,
                      exc_info=exc)
        if isinstance(exc, SessionExpiredError):
            slot.close_after = "its session expired"
        zxid = self.server.last_zxid
        slot.frame = encode_reply(ReplyHeader(slot.xid, zxid, int(error_code(exc))))
        self._settled(slot, zxid)

    def _settled(self, slot: _Slot, zxid: int) -> None:
        if slot.ordered:
            self._ordered_in_flight -= 1
        self.last_zxid = zxid
        now = time.monotonic()
        slots = self._slots
        while slots and slots[0].frame is not None:
            head = slots.popleft()
            assert head.frame is not None
            self.write(head.frame)
            self._count_latency(now - head.started)
            if head.close_after is not None:
                self.close(head.close_after)
                return
        self.last_response_ms = int(time.time() * 1000)
        self._dispatch()
        self._update_reading()

    def _count_latency(self, seconds: float) -> None:
        ms = seconds * 1000.0
        if self.latency_count == 0 or ms < self.latency_min:
            self.latency_min = ms
        self.latency_max = max(self.latency_max, ms)
        self.latency_total += ms
        self.latency_count += 1
        self.server.count_latency(ms)

