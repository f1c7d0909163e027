"""What a peer's client server knows about itself at one moment: the figures its four-letter words print.

The server gathers a :class:`ServerFacts` (on the peer's loop thread for the replica's figures, on its own thread
for the connections' figures) and :mod:`embedzk.zkserver.fourletter` formats it; keeping the two apart lets the
formatting be tested without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    """One client connection, as ``cons`` and ``stat`` list it."""

    #: The client's address and port.
    host: str
    port: int
    #: Requests received but not answered yet.
    queued: int
    #: Packets received from and sent to the client.
    received: int
    sent: int
    #: The session (0 until the handshake is done), its negotiated timeout in ms.
    session_id: int = 0
    timeout_ms: int = 0
    #: Latency of this connection's requests, in ms.
    latency_min_ms: float = 0.0
    latency_avg_ms: float = 0.0
    latency_max_ms: float = 0.0
    #: Latency of this connection's last request, in ms (``llat``).
    last_latency_ms: float = 0.0
    #: The last request's opcode name ("NA" before any), its xid, the zxid of its reply.
    last_op: str = "NA"
    last_xid: int = -1
    last_zxid: int = -1
    #: Wall-clock milliseconds since the epoch: when the connection was made, when the last response left.
    established_ms: int = 0
    last_response_ms: int = 0


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """A peer's figures as its four-letter words report them; ZooKeeper's names where it has one."""

    #: The embedzk version (``Zookeeper version:`` line).
    version: str
    #: The peer's id, and its role: "leader", "follower", "observer" or "standalone" (a one-member cluster).
    peer_id: str
    mode: str
    #: The last zxid (log index) applied by this peer.
    zxid: int
    #: Znodes in the tree, and the bytes of their data and paths (zk_approximate_data_size).
    node_count: int
    approximate_data_size: int
    #: Watches set by this peer's clients, and on how many distinct paths, and by how many connections.
    watch_count: int
    watched_paths: int
    watching_connections: int
    #: Ephemeral nodes in the tree (zk_ephemerals_count).
    ephemerals_count: int
    #: Requests of this server's clients received and not yet answered.
    outstanding_requests: int
    #: Packets received from and sent to clients since start.
    packets_received: int
    packets_sent: int
    #: Request latency over all clients since start, in ms.
    latency_min_ms: float
    latency_avg_ms: float
    latency_max_ms: float
    #: The open connections.
    connections: tuple[ConnectionFacts, ...] = ()
    #: Connections closed by the server for a bad input or a limit, by reason ("malformed packet", ...).
    refused: dict[str, int] = field(default_factory=dict)
    #: On the leader: the members that follow it, and how many of those are voters caught up with it.
    followers: int = 0
    synced_followers: int = 0
    #: On the leader: sync requests waiting for their answer (zk_pending_syncs).
    pending_syncs: int = 0
    #: On the leader: the size in bytes of the last, smallest and largest entry proposed (-1 before any), the
    #: ``Proposal sizes last/min/max`` line.
    proposal_size_last: int = -1
    proposal_size_min: int = -1
    proposal_size_max: int = -1
    #: The replica's open sessions (all clients and peers of the cluster).
    global_sessions: int = 0
    #: Configuration lines for ``conf``: name -> value, in order.
    config: dict[str, str] = field(default_factory=dict)
    #: Environment lines for ``envi``: name -> value, in order.
    environment: dict[str, str] = field(default_factory=dict)
    #: Bytes in the data directory (0 in memory), for ``dirs``.
    data_dir_size: int = 0
    #: File descriptors open and the most allowed (-1 where unknown).
    open_file_descriptors: int = -1
    max_file_descriptors: int = -1
    #: Whether the peer serves reads only (no leader known): ``isro`` answers "ro".
    read_only: bool = False
