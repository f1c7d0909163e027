"""A prometheus_client collector of a peer's figures, to register in the application's own registry.

    from prometheus_client import REGISTRY
    from embedzk.metrics import PeerCollector

    REGISTRY.register(PeerCollector(peer))

Every scrape reads :meth:`Peer.stats` (one hop to the peer's loop thread, bounded by ``timeout``) and yields gauges
and counters named ``embedzk_*``; with a client server running (``client_address``), also the figures ZooKeeper's
``mntr`` reports, under the names ZooKeeper's Prometheus exporters use (``zk_*``), so existing dashboards work.
A peer that is not running yields ``embedzk_up 0`` and nothing else, never an exception in the scrape.

Needs the optional extra: ``pip install embedzk[metrics]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from embedzk.peer import Peer

__all__ = ["PeerCollector"]

# stats() key -> (metric name, help, kind); kind "gauge" or "counter".
_PEER_FIGURES: dict[str, tuple[str, str, str]] = {
    "term": ("embedzk_term", "The Raft term this peer is in.", "gauge"),
    "commit_index": ("embedzk_commit_index", "The highest log index known to be committed.", "gauge"),
    "applied_index": ("embedzk_applied_index", "The highest log index applied to this peer's tree (its zxid).", "gauge"),
    "snapshot_index": ("embedzk_snapshot_index", "The log index of the latest snapshot.", "gauge"),
    "znode_count": ("embedzk_znode_count", "Znodes in the tree, the root included.", "gauge"),
    "sessions": ("embedzk_sessions", "Open sessions in the cluster (peers' and ZooKeeper clients').", "gauge"),
    "outstanding_requests": ("embedzk_outstanding_requests", "Requests of this peer not answered yet.", "gauge"),
    "watch_count": ("embedzk_watch_count", "Watches set on this peer.", "gauge"),
    "latency_avg_ms": ("embedzk_write_latency_avg_ms", "Average latency of recent writes, ms.", "gauge"),
    "latency_p50_ms": ("embedzk_write_latency_p50_ms", "Median latency of recent writes, ms.", "gauge"),
    "latency_p99_ms": ("embedzk_write_latency_p99_ms", "99th percentile latency of recent writes, ms.", "gauge"),
    "latency_max_ms": ("embedzk_write_latency_max_ms", "Highest latency of recent writes, ms.", "gauge"),
    "callbacks_pending": ("embedzk_callbacks_pending", "Watch callbacks queued and not run yet.", "gauge"),
    "callbacks_failed": ("embedzk_callbacks_failed", "Watch callbacks that raised.", "counter"),
    "callbacks_slow": ("embedzk_callbacks_slow", "Watch callbacks that ran too long.", "counter"),
    "frames_rejected": ("embedzk_frames_rejected", "Frames from the network refused as invalid.", "counter"),
}

# clients figure key -> (ZooKeeper exporter's name, help, kind). All gauges, as the exporters export mntr's figures,
# so that a counter's "_total" suffix does not rename them.
_CLIENT_FIGURES: dict[str, tuple[str, str, str]] = {
    "connections": ("zk_num_alive_connections", "Open ZooKeeper client connections.", "gauge"),
    "outstanding_requests": ("zk_outstanding_requests", "Client requests received and not answered.", "gauge"),
    "packets_received": ("zk_packets_received", "Packets received from ZooKeeper clients.", "gauge"),
    "packets_sent": ("zk_packets_sent", "Packets sent to ZooKeeper clients.", "gauge"),
    "latency_min_ms": ("zk_min_latency", "Lowest client request latency, ms.", "gauge"),
    "latency_avg_ms": ("zk_avg_latency", "Average client request latency, ms.", "gauge"),
    "latency_max_ms": ("zk_max_latency", "Highest client request latency, ms.", "gauge"),
}

_ROLES = ("leader", "follower", "candidate", "precandidate", "observer")


class PeerCollector(Collector):
    """Collects one peer's figures at every scrape. ``timeout``: seconds a scrape waits for the peer's loop."""

    def __init__(self, peer: Peer, timeout: float = 2.0) -> None:
        self._peer = peer
        self._timeout = timeout

    def describe(self) -> list[Metric]:
        """Nothing up front: the metrics depend on whether the peer serves ZooKeeper clients."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics of one scrape."""
        labels = ["peer"]
        peer_id = self._peer.id
        try:
            stats = self._peer.stats_async().result(self._timeout)
        except Exception:
            # A stopped or stalled peer: say so, rather than failing the application's whole scrape.
            up = GaugeMetricFamily("embedzk_up", "Whether the peer is running and answered.", labels=labels)
            up.add_metric([peer_id], 0)
            yield up
            return
        up = GaugeMetricFamily("embedzk_up", "Whether the peer is running and answered.", labels=labels)
        up.add_metric([peer_id], 1)
        yield up
        yield from _families(_PEER_FIGURES, stats, peer_id)
        role = GaugeMetricFamily("embedzk_role", "1 for the role this peer has now.", labels=["peer", "role"])
        now = "observer" if stats.get("observer") and stats.get("role") != "leader" else str(stats.get("role"))
        for name in _ROLES:
            role.add_metric([peer_id, name], 1 if name == now else 0)
        yield role
        state = GaugeMetricFamily("zk_server_state", "1 for this peer's ZooKeeper state.", labels=["peer", "state"])
        for name in ("leader", "follower", "observer"):
            state.add_metric([peer_id, name], 1 if _zk_state(stats) == name else 0)
        yield state
        znodes = GaugeMetricFamily("zk_znode_count", "Znodes in the tree.", labels=labels)
        znodes.add_metric([peer_id], stats.get("znode_count", 0))
        yield znodes
        watches = GaugeMetricFamily("zk_watch_count", "Watches set on this peer.", labels=labels)
        watches.add_metric([peer_id], stats.get("watch_count", 0))
        yield watches
        clients = stats.get("clients")
        if clients is not None:
            yield from _families(_CLIENT_FIGURES, clients, peer_id)
            refused = GaugeMetricFamily(
                "zk_connection_rejected", "Client connections closed for a bad input or a limit.", labels=["peer", "reason"]
            )
            for reason, count in sorted(clients.get("refused", {}).items()):
                refused.add_metric([peer_id, reason], count)
            yield refused


def _zk_state(stats: dict[str, Any]) -> str:
    if stats.get("role") == "leader":
        return "leader"
    return "observer" if stats.get("observer") else "follower"


def _families(table: dict[str, tuple[str, str, str]], figures: dict[str, Any], peer_id: str) -> Iterator[Metric]:
    for key, (name, text, kind) in table.items():
        value = figures.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        family: Metric
        if kind == "counter":
            family = CounterMetricFamily(name, text, labels=["peer"])
        else:
            family = GaugeMetricFamily(name, text, labels=["peer"])
        family.add_metric([peer_id], value)
        yield family
