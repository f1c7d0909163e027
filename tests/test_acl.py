"""ACLs through the embedded API and through ZooKeeper's client protocol: the same checks for both, made where the
change is applied, on every peer."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError as KazooNoAuthError
from kazoo.security import make_acl as kazoo_make_acl
from kazoo.security import make_digest_acl as kazoo_make_digest_acl

from embedzk import Peer
from embedzk.errors import AuthFailedError, BadVersionError, InvalidACLError, NoAuthError, UnimplementedError
from embedzk.security import (
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    ACL,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)
from embedzk.testing.cluster import LocalCluster

pytestmark = pytest.mark.timeout(90)

_names = itertools.count()
ALICE = ("digest", "alice:secret")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Three peers: the first is alice (a digest identity), the other two have no identity."""
    with LocalCluster(n=3, client_address="127.0.0.1:0") as local:
        local.peers[0].add_auth(*ALICE)
        yield local


@pytest.fixture
def path() -> str:
    return f"/acl{next(_names)}"


def test_a_digest_acl_refuses_a_peer_without_the_identity_and_admits_one_with_it(
    cluster: LocalCluster, path: str
) -> None:
    owner, stranger = cluster.peers[0], cluster.peers[1]
    owner.create(path, b"private", acl=[make_digest_acl("alice", "secret", all=True)])
    stranger.sync()
    assert stranger.exists(path) is not None  # exists needs no permission, as in ZooKeeper
    with pytest.raises(NoAuthError):
        stranger.get(path)
    with pytest.raises(NoAuthError):
        stranger.set(path, b"mine now")
    with pytest.raises(NoAuthError):
        stranger.create(f"{path}/child")
    with pytest.raises(NoAuthError):
        stranger.get_children(path)
    assert owner.get(path)[0] == b"private"
    stranger.add_auth(*ALICE)
    try:
        assert stranger.get(path)[0] == b"private"
        stranger.set(path, b"shared")
    finally:
        stranger._ids = ()  # the module's peers are shared: forget the identity again
    owner.sync()
    assert owner.get(path)[0] == b"shared"


def test_set_acls_checks_the_acl_version_and_get_acls_reads_it(cluster: LocalCluster, path: str) -> None:
    peer = cluster.peers[2]
    peer.create(path, b"")
    acls, stat = peer.get_acls(path)
    assert acls == OPEN_ACL_UNSAFE and stat.aversion == 0
    new = peer.set_acls(path, READ_ACL_UNSAFE + [make_acl("world", "anyone", admin=True)], version=0)
    assert new.aversion == 1 and new.version == stat.version and new.mzxid == stat.mzxid
    with pytest.raises(BadVersionError):
        peer.set_acls(path, OPEN_ACL_UNSAFE, version=0)
    assert peer.get_acls(path)[0] == [ACL(Permissions.READ, Id("world", "anyone")), ACL(16, Id("world", "anyone"))]
    with pytest.raises(NoAuthError):
        peer.set(path, b"no write")  # READ and ADMIN only
    peer.set_acls(path, OPEN_ACL_UNSAFE)  # ADMIN allows it
    peer.set(path, b"writable again")


def test_creator_all_acl_means_the_creators_identities_and_needs_one(cluster: LocalCluster, path: str) -> None:
    with pytest.raises(InvalidACLError):
        cluster.peers[1].create(path, acl=CREATOR_ALL_ACL)  # no identity to give it to
    peer = cluster.peers[0]
    peer.create(path, acl=CREATOR_ALL_ACL)
    acls, _stat = peer.get_acls(path)
    assert acls == [ACL(Permissions.ALL, Id("digest", make_digest_acl_credential("alice", "secret")))]


def test_an_invalid_acl_is_refused_naming_the_problem(cluster: LocalCluster, path: str) -> None:
    peer = cluster.peers[0]
    with pytest.raises(InvalidACLError, match="scheme"):
        peer.create(path, acl=[make_acl("kerberos", "x", all=True)])
    with pytest.raises(InvalidACLError):
        peer.create(path, acl=[ACL(0, Id("world", "anyone"))])
    with pytest.raises(InvalidACLError):
        peer.create(path, acl=[make_acl("ip", "not-an-address", read=True)])
    with pytest.raises(InvalidACLError):
        peer.create(path, acl="world:anyone")
    assert peer.exists(path) is None


def test_the_superuser_passes_every_acl() -> None:
    super_digest = make_digest_acl_credential("super", "root")
    with Peer("su", super_digest=super_digest, auth_data=[("digest", "super:root")]) as peer:
        peer.create("/locked", b"x", acl=[make_digest_acl("bob", "pw", read=True)])
        assert peer.get("/locked")[0] == b"x"
        peer.set("/locked", b"y")  # bob could not; the superuser can
        peer.delete("/locked")


def test_bad_auth_data_and_super_digest_are_configuration_errors() -> None:
    from embedzk import ConfigurationError

    with pytest.raises(ConfigurationError, match="scheme"):
        Peer("a1", auth_data=[("kerberos", "x")])
    with pytest.raises(ConfigurationError, match="user:password"):
        Peer("a2", auth_data=[("digest", "no-colon")])
    with pytest.raises(ConfigurationError, match="super_digest"):
        Peer("a3", super_digest="super:not-base64-sha1")
    with Peer("a4") as peer, pytest.raises(AuthFailedError):
        peer.add_auth("ip", "127.0.0.1")


def test_acls_outlive_a_restart_from_the_data_directory(tmp_path: object) -> None:
    data_dir = str(tmp_path)
    with Peer("disk", data_dir=data_dir, auth_data=[ALICE], snapshot_entries=3) as peer:
        peer.create("/kept", b"x", acl=[make_digest_acl("alice", "secret", all=True)])
        for i in range(5):  # past a snapshot, so the ACL travels through one
            peer.create(f"/pad{i}")
    with Peer("disk", data_dir=data_dir) as peer:
        with pytest.raises(NoAuthError):
            peer.get("/kept")
        with pytest.raises(NoAuthError):
            peer.get_acls("/kept")  # reading an ACL needs READ or ADMIN
        peer.add_auth(*ALICE)
        assert peer.get("/kept")[0] == b"x"


def test_a_cluster_below_protocol_version_4_refuses_acls_and_says_why() -> None:
    with Peer("v3", protocol_version=3) as peer:
        with pytest.raises(UnimplementedError, match="protocol version 4"):
            peer.create("/x", acl=[make_digest_acl("alice", "secret", all=True)])
        peer.create("/open", acl=OPEN_ACL_UNSAFE)  # the default ACL needs nothing new
        with pytest.raises(UnimplementedError):
            peer.set_acls("/open", READ_ACL_UNSAFE)


# -- through ZooKeeper's client protocol --------------------------------------------------------------------------


def _kazoo(cluster: LocalCluster, index: int, **options: object) -> KazooClient:
    client = KazooClient(hosts=cluster.peers[index].client_address, timeout=10, **options)  # type: ignore[arg-type]
    client.start(timeout=10)
    return client


def test_kazoo_clients_are_held_to_the_acl_and_so_is_the_embedded_api(cluster: LocalCluster, path: str) -> None:
    alice = _kazoo(cluster, 0, auth_data=[ALICE])
    stranger = _kazoo(cluster, 1)
    try:
        alice.create(path, b"k", acl=[kazoo_make_digest_acl("alice", "secret", all=True)])
        stranger.sync(path)
        with pytest.raises(KazooNoAuthError):
            stranger.get(path)
        with pytest.raises(KazooNoAuthError):
            stranger.set(path, b"x")
        assert alice.get(path)[0] == b"k"
        peer = cluster.peers[2]
        peer.sync()
        with pytest.raises(NoAuthError):
            peer.get(path)
        acl, stat = alice.get_acls(path)
        assert [(a.perms, a.id.scheme, a.id.id) for a in acl] == [
            (31, "digest", make_digest_acl_credential("alice", "secret"))
        ]
        assert stat.aversion == 0
    finally:
        for client in (alice, stranger):
            client.stop()
            client.close()


def test_an_ip_acl_matches_the_clients_address(cluster: LocalCluster, path: str) -> None:
    client = _kazoo(cluster, 0)
    try:
        client.create(path, acl=[kazoo_make_acl("ip", "127.0.0.0/8", read=True, admin=True)])
        client.get(path)  # from 127.0.0.1
        client.create(f"{path}x", acl=[kazoo_make_acl("ip", "10.0.0.0/8", read=True)])
        with pytest.raises(KazooNoAuthError):
            client.get(f"{path}x")
        with pytest.raises(NoAuthError):
            cluster.peers[0].get(path)  # the embedded API has no address: an ip entry never admits it
    finally:
        client.stop()
        client.close()


def test_a_bad_auth_packet_closes_the_connection_with_authfailed(cluster: LocalCluster) -> None:
    from kazoo.exceptions import AuthFailedError as KazooAuthFailedError

    client = _kazoo(cluster, 0)
    try:
        with pytest.raises(KazooAuthFailedError):
            client.add_auth("kerberos", "whatever")
    finally:
        client.stop()
        client.close()


def test_the_asyncio_face_reads_and_sets_acls() -> None:
    import asyncio

    async def main() -> None:
        with Peer("aio-acl") as peer:
            aio = peer.aio
            aio.add_auth(*ALICE)
            await aio.create("/a", b"x", acl=[make_digest_acl("alice", "secret", all=True)])
            acls, stat = await aio.get_acls("/a")
            assert [a.id.scheme for a in acls] == ["digest"] and stat.aversion == 0
            assert (await aio.set_acls("/a", OPEN_ACL_UNSAFE, version=0)).aversion == 1

    asyncio.run(main())
