"""Free loopback ports, for tests and examples that start peers in several processes."""

from __future__ import annotations

import socket


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports on ``host`` that are free right now.

    The ports are bound together (so they differ), then released for the caller's peers to bind. Another process
    could take one in between; on loopback in a test run that is rare, and the peer's bind error names the address.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            sockets.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
