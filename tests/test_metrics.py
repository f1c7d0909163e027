"""embedzk.metrics: the figures of stats() and of the client server, as a prometheus_client registry exports them."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")

from kazoo.client import KazooClient
from prometheus_client import CollectorRegistry, generate_latest

from embedzk import Peer
from embedzk.metrics import PeerCollector

pytestmark = pytest.mark.timeout(60)


def _scrape(registry: CollectorRegistry) -> dict[str, float]:
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_a_scrape_reports_the_peers_figures_and_its_clients() -> None:
    with Peer("m", client_address="127.0.0.1:0") as peer:
        registry = CollectorRegistry()
        registry.register(PeerCollector(peer))
        for i in range(4):
            peer.create(f"/n{i}")
        client = KazooClient(hosts=peer.client_address, timeout=5)
        client.start(timeout=5)
        try:
            client.get("/n0")
            values = _scrape(registry)
        finally:
            client.stop()
            client.close()
        stats = peer.stats()
    assert values['embedzk_up{peer="m"}'] == 1
    assert values['embedzk_znode_count{peer="m"}'] == stats["znode_count"] == 5
    assert values['zk_znode_count{peer="m"}'] == 5
    assert values['embedzk_role{peer="m",role="leader"}'] == 1
    assert values['embedzk_role{peer="m",role="follower"}'] == 0
    assert values['zk_server_state{peer="m",state="leader"}'] == 1
    assert values['zk_num_alive_connections{peer="m"}'] == 1
    assert values['zk_packets_received{peer="m"}'] >= 2  # the handshake and the get
    assert values['embedzk_applied_index{peer="m"}'] >= 5


def test_a_stopped_peer_is_reported_down_without_failing_the_scrape() -> None:
    peer = Peer("gone")
    peer.start()
    registry = CollectorRegistry()
    registry.register(PeerCollector(peer))
    peer.stop()
    values = _scrape(registry)
    assert values == {'embedzk_up{peer="gone"}': 0.0}
