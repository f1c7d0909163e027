"""A bare ZooKeeper client over a socket, built on embedzk.zkwire's client side: for the tests that need what kazoo
does not send (addWatch, pipelined requests, malformed packets) or must see the bytes a server answers."""

from __future__ import annotations

import socket
from typing import Any

from embedzk.zkwire import (
    FrameDecoder,
    Reply,
    decode_connect_response,
    decode_reply,
    encode_connect_request,
    encode_request,
)
from embedzk.zkwire.records import ConnectRequest, ConnectResponse, RequestHeader


def host_port(address: str) -> tuple[str, int]:
    """``"host:port"`` as a (host, port) pair."""
    host, _, port = address.rpartition(":")
    return host, int(port)


class RawClient:
    """One connection to a ZooKeeper server; every call blocks at most ``timeout`` seconds."""

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(host_port(address), timeout=timeout)
        self.decoder = FrameDecoder()
        self.opcodes: dict[int, int] = {}
        self.xid = 0

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def connect(
        self, timeout_ms: int = 10_000, session_id: int = 0, passwd: bytes = b"\0" * 16, last_zxid: int = 0
    ) -> ConnectResponse:
        """The handshake; returns the server's ConnectResponse."""
        self.send_raw(encode_connect_request(ConnectRequest(0, last_zxid, timeout_ms, session_id, passwd, False)))
        return decode_connect_response(self.packet())

    def send(self, opcode: int, body: Any = None, xid: int | None = None) -> int:
        """Send a request; returns its xid."""
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.opcodes[xid] = opcode
        self.send_raw(encode_request(RequestHeader(xid, opcode), body))
        return xid

    def packet(self) -> bytes:
        """The next whole packet from the server (socket.timeout if none comes, ConnectionError if it closes)."""
        while True:
            packet = self.decoder.next_packet()
            if packet is not None:
                return packet
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.decoder.feed(data)  # takes the bytes at once; the packets are taken one at a time above

    def reply(self) -> Reply:
        """The next reply or notification."""
        packet = self.packet()
        xid = int.from_bytes(packet[:4], "big", signed=True)
        return decode_reply(packet, self.opcodes.get(xid))

    def call(self, opcode: int, body: Any = None) -> Reply:
        """Send a request and return its reply (notifications that arrive first are skipped)."""
        xid = self.send(opcode, body)
        while True:
            reply = self.reply()
            if reply.header.xid == xid:
                return reply

    def closed_by_server(self, within: float = 5.0) -> bool:
        """Whether the server closes the connection within ``within`` seconds (reading and dropping what comes)."""
        self.sock.settimeout(within)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True
