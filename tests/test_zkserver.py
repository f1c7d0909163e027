"""A peer serving ZooKeeper's client protocol: kazoo and a bare socket client against a 3-peer cluster.

What kazoo's own suite does not cover is here: addWatch (kazoo has no call for it), pipelining, a session moving
between peers, expiry, a client ahead of the peer, every bad input, and the reserved /zookeeper subtree.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.protocol.states import KazooState

from embedzk import Peer
from embedzk.testing.cluster import LocalCluster, wait_until
from embedzk.zkserver import ClientSettings
from embedzk.zkwire import OpCode, frame
from embedzk.zkwire.codes import AddWatchMode, ErrorCode, EventType
from embedzk.zkwire.records import (
    AddWatchRequest,
    CreateRequest,
    GetDataRequest,
    RemoveWatchesRequest,
    SetDataRequest,
)
from tests.zkraw import RawClient

pytestmark = pytest.mark.timeout(90)

_names = itertools.count()
OPEN = ()  # kazoo's default ACL list is OPEN_ACL_UNSAFE; an empty one is what a bare client sends here


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    settings = ClientSettings(four_letter_words=frozenset({"*"}), handshake_timeout=0.5, max_client_cnxns=20)
    with LocalCluster(n=3, client_address="127.0.0.1:0", client_settings=settings) as local:
        yield local


def follower(cluster: LocalCluster) -> Peer:
    leader = cluster.leader()
    return next(p for p in cluster.peers if p is not leader)


@pytest.fixture
def zk(cluster: LocalCluster) -> Iterator[KazooClient]:
    client = KazooClient(hosts=follower(cluster).client_address, timeout=10)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def root(zk: KazooClient) -> str:
    path = f"/zk{next(_names)}"
    zk.create(path)
    return path


def _create_body(path: str, data: bytes = b"", flags: int = 0) -> CreateRequest:
    from kazoo.security import OPEN_ACL_UNSAFE

    from embedzk.zkwire.records import ACL, Id

    acl = tuple(ACL(a.perms, Id(a.id.scheme, a.id.id)) for a in OPEN_ACL_UNSAFE)
    return CreateRequest(path, data, acl, flags)


# -- kazoo's ordinary calls ---------------------------------------------------------------------------------------


def test_kazoo_reads_and_writes_through_a_follower_with_zookeepers_errors(zk: KazooClient, root: str) -> None:
    zk.create(f"{root}/a", b"one")
    assert zk.get(f"{root}/a")[0] == b"one"
    stat = zk.set(f"{root}/a", b"two")
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        zk.set(f"{root}/a", b"three", version=0)
    with pytest.raises(NodeExistsError):
        zk.create(f"{root}/a")
    with pytest.raises(NoNodeError):
        zk.get(f"{root}/missing")
    with pytest.raises(NotEmptyError):
        zk.delete(root)
    first = zk.create(f"{root}/q-", sequence=True)
    second = zk.create(f"{root}/q-", sequence=True)
    assert (first, second) == (f"{root}/q-0000000001", f"{root}/q-0000000002")
    assert sorted(zk.get_children(root)) == ["a", "q-0000000001", "q-0000000002"]
    zk.delete(f"{root}/a")
    assert zk.exists(f"{root}/a") is None


def test_a_write_through_kazoo_is_seen_by_the_embedded_api_and_the_other_way(
    cluster: LocalCluster, zk: KazooClient, root: str
) -> None:
    zk.create(f"{root}/from-kazoo", b"k")
    leader = cluster.leader()
    leader.sync()
    assert leader.get(f"{root}/from-kazoo")[0] == b"k"
    leader.create(f"{root}/from-peer", b"p")
    zk.sync(root)
    assert zk.get(f"{root}/from-peer")[0] == b"p"


def test_ephemeral_nodes_belong_to_the_clients_session_and_go_when_it_closes(
    cluster: LocalCluster, zk: KazooClient, root: str
) -> None:
    zk.create(f"{root}/e", ephemeral=True)
    assert zk.exists(f"{root}/e").ephemeralOwner == zk.client_id[0]
    other = follower(cluster)
    zk.stop()
    other.sync()
    assert other.exists(f"{root}/e") is None


def test_a_multi_answers_every_operation_and_a_failed_one_changes_nothing(zk: KazooClient, root: str) -> None:
    tx = zk.transaction()
    tx.create(f"{root}/t1", b"x")
    tx.set_data(f"{root}/t1", b"y")
    tx.check(f"{root}/t1", 1)
    results = tx.commit()
    assert results[0] == f"{root}/t1" and results[1].version == 1 and results[2] is True
    tx = zk.transaction()
    tx.create(f"{root}/t2")
    tx.check(f"{root}/t1", 7)
    results = tx.commit()
    assert type(results[1]).__name__ == "BadVersionError"
    assert zk.exists(f"{root}/t2") is None


def test_kazoo_watches_fire_once_with_the_change(zk: KazooClient, root: str) -> None:
    events: list[object] = []
    fired = threading.Event()

    def watch(event: object) -> None:
        events.append(event)
        fired.set()

    zk.create(f"{root}/w", b"0")
    zk.get(f"{root}/w", watch=watch)
    zk.set(f"{root}/w", b"1")
    assert fired.wait(5)
    zk.set(f"{root}/w", b"2")
    # A marker: a notification leaves before the reply to the change that fired it, and kazoo runs watch functions
    # in the order their notifications came, so once the marker's has run, a second one for w would have too.
    marked = threading.Event()
    zk.create(f"{root}/marker")
    zk.get(f"{root}/marker", watch=lambda _event: marked.set())
    zk.set(f"{root}/marker", b"go")
    assert marked.wait(5)
    assert [(e.type, e.path) for e in events] == [("CHANGED", f"{root}/w")]  # type: ignore[attr-defined]


def test_the_reserved_zookeeper_subtree_lists_the_members_and_refuses_writes(
    cluster: LocalCluster, zk: KazooClient
) -> None:
    assert "zookeeper" in zk.get_children("/")
    assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]
    config = zk.get("/zookeeper/config")[0].decode()
    for peer in cluster.peers:
        assert f"server.{peer.id}=" in config
    from kazoo.exceptions import BadArgumentsError

    with pytest.raises(BadArgumentsError):
        zk.create("/zookeeper/mine")


# -- sessions -----------------------------------------------------------------------------------------------------


def test_a_session_moves_to_another_peer_with_its_ephemerals(cluster: LocalCluster, root: str) -> None:
    first, second = [p for p in cluster.peers][:2]
    one = KazooClient(hosts=first.client_address, timeout=10)
    one.start(timeout=10)
    try:
        one.create(f"{root}/mine", ephemeral=True)
        session_id, password = one.client_id
        two = KazooClient(hosts=second.client_address, timeout=10, client_id=(session_id, password))
        two.start(timeout=10)
        try:
            assert two.client_id[0] == session_id
            assert two.exists(f"{root}/mine").ephemeralOwner == session_id
        finally:
            two.stop()  # closes the session: its ephemeral goes, and the first client is told it expired
            two.close()
        lost = threading.Event()
        one.add_listener(lambda state: lost.set() if state == KazooState.LOST else None)
        assert lost.wait(10)
        first.sync()
        assert first.exists(f"{root}/mine") is None
    finally:
        one.stop()
        one.close()


def test_a_wrong_password_is_told_the_session_expired(cluster: LocalCluster) -> None:
    address = follower(cluster).client_address
    assert address is not None
    with RawClient(address) as raw:
        opened = raw.connect()
        assert opened.session_id != 0 and opened.time_out == 10_000
    with RawClient(address) as raw:
        answer = raw.connect(session_id=opened.session_id, passwd=b"x" * 16)
        assert (answer.session_id, answer.time_out) == (0, 0)
        assert raw.closed_by_server()


def test_a_silent_session_expires_after_its_timeout_and_not_before(cluster: LocalCluster) -> None:
    address = follower(cluster).client_address
    assert address is not None
    path = f"/silent{next(_names)}"
    with RawClient(address) as raw:
        opened = raw.connect(timeout_ms=4000)  # the lowest a client may have by default: 2 ticks of 2 s
        assert opened.time_out == 4000
        assert raw.call(OpCode.CREATE, _create_body(path, flags=1)).header.err == 0
        last_packet = time.monotonic()
        leader = cluster.leader()
        time.sleep(3.0)  # three quarters of the timeout: still there
        assert leader.exists(path) is not None
        wait_until(lambda: leader.exists(path) is None, timeout=4.0, what="the silent session's ephemeral to go")
        # Expired no earlier than the timeout, and within the timeout plus the keep-alive period and a round.
        assert 4.0 <= time.monotonic() - last_packet <= 4.0 + 3.0


def test_a_client_that_has_seen_more_than_the_peer_is_sent_elsewhere(cluster: LocalCluster) -> None:
    address = follower(cluster).client_address
    assert address is not None
    with RawClient(address) as raw, pytest.raises(ConnectionError):
        raw.connect(last_zxid=1 << 40)  # closed without an answer: the client tries another peer


# -- watches the bare protocol sets -------------------------------------------------------------------------------


def test_a_recursive_watch_names_the_node_that_changed(cluster: LocalCluster) -> None:
    address = follower(cluster).client_address
    assert address is not None
    base = f"/rw{next(_names)}"
    with RawClient(address) as raw, RawClient(address) as writer:
        raw.connect()
        writer.connect()
        assert writer.call(OpCode.CREATE, _create_body(base)).header.err == 0
        reply = raw.call(OpCode.ADD_WATCH, AddWatchRequest(base, AddWatchMode.PERSISTENT_RECURSIVE))
        assert reply.header.err == 0
        assert writer.call(OpCode.CREATE, _create_body(f"{base}/a")).header.err == 0
        assert writer.call(OpCode.CREATE, _create_body(f"{base}/a/b")).header.err == 0
        assert writer.call(OpCode.SET_DATA, SetDataRequest(f"{base}/a/b", b"x", -1)).header.err == 0
        events = [raw.reply() for _ in range(3)]
        assert [(e.header.xid, e.body.type, e.body.path) for e in events] == [  # type: ignore[union-attr]
            (-1, EventType.NODE_CREATED, f"{base}/a"),
            (-1, EventType.NODE_CREATED, f"{base}/a/b"),
            (-1, EventType.NODE_DATA_CHANGED, f"{base}/a/b"),
        ]
        # Persistent: removed only when asked; asking again finds nothing.
        assert raw.call(OpCode.REMOVE_WATCHES, RemoveWatchesRequest(base, 5)).header.err == 0
        assert raw.call(OpCode.REMOVE_WATCHES, RemoveWatchesRequest(base, 5)).header.err == ErrorCode.NOWATCHER


def test_the_notification_comes_before_the_reply_to_the_write_that_fired_it(cluster: LocalCluster) -> None:
    address = follower(cluster).client_address
    assert address is not None
    path = f"/order{next(_names)}"
    with RawClient(address) as raw:
        raw.connect()
        assert raw.call(OpCode.CREATE, _create_body(path)).header.err == 0
        assert raw.call(OpCode.GET_DATA, GetDataRequest(path, True)).header.err == 0
        xid = raw.send(OpCode.SET_DATA, SetDataRequest(path, b"new", -1))
        first, second = raw.reply(), raw.reply()
        assert (first.header.xid, second.header.xid) == (-1, xid)


def test_pipelined_requests_are_answered_in_order_and_read_their_own_writes(cluster: LocalCluster) -> None:
    address = follower(cluster).client_address
    assert address is not None
    base = f"/pipe{next(_names)}"
    with RawClient(address) as raw:
        raw.connect()
        assert raw.call(OpCode.CREATE, _create_body(base)).header.err == 0
        sent = []
        for i in range(50):
            sent.append(raw.send(OpCode.CREATE, _create_body(f"{base}/n{i}", str(i).encode())))
            sent.append(raw.send(OpCode.GET_DATA, GetDataRequest(f"{base}/n{i}", False)))
        replies = [raw.reply() for _ in sent]
        assert [r.header.xid for r in replies] == sent
        assert all(r.header.err == 0 for r in replies)
        assert [r.body.data for r in replies[1::2]] == [str(i).encode() for i in range(50)]  # type: ignore[union-attr]
        zxids = [r.header.zxid for r in replies]
        assert zxids == sorted(zxids)


# -- bad input ----------------------------------------------------------------------------------------------------


def _still_serves(cluster: LocalCluster, address: str) -> None:
    with RawClient(address) as raw:
        raw.connect()
        assert raw.call(OpCode.GET_DATA, GetDataRequest("/", False)).header.err == 0


@pytest.mark.parametrize(
    "what, data",
    [
        ("a frame longer than jute.maxbuffer", struct.pack(">i", 0x100000) + b"\0" * 64),
        ("a negative frame length", struct.pack(">i", -5)),
        ("a handshake that is not one", frame(b"\x01\x02\x03")),
    ],
)
def test_a_bad_first_packet_closes_the_connection_and_nothing_else(
    cluster: LocalCluster, what: str, data: bytes
) -> None:
    address = follower(cluster).client_address
    assert address is not None
    with RawClient(address) as raw:
        raw.send_raw(data)
        assert raw.closed_by_server(), what
    _still_serves(cluster, address)


@pytest.mark.parametrize(
    "what, packet",
    [
        ("an unknown opcode", struct.pack(">ii", 7, 9999)),
        ("a truncated request", struct.pack(">ii", 7, OpCode.GET_DATA) + b"\0\0"),
        ("bytes after a request's body", struct.pack(">ii", 7, OpCode.PING) + b"extra"),
        ("a request no client sends", struct.pack(">ii", 7, OpCode.CREATE_SESSION)),
    ],
)
def test_a_malformed_request_closes_the_connection_and_is_counted(
    cluster: LocalCluster, what: str, packet: bytes
) -> None:
    peer = follower(cluster)
    address = peer.client_address
    assert address is not None
    server = peer._client_server
    assert server is not None
    before = server._refused["malformed packet"]
    with RawClient(address) as raw:
        raw.connect()
        raw.send_raw(frame(packet))
        assert raw.closed_by_server(), what
    assert server._refused["malformed packet"] == before + 1
    _still_serves(cluster, address)


def test_a_client_that_never_speaks_is_closed_after_the_handshake_timeout(cluster: LocalCluster) -> None:
    address = follower(cluster).client_address
    assert address is not None
    with RawClient(address) as raw:
        began = time.monotonic()
        assert raw.closed_by_server(within=5.0)
        assert 0.5 <= time.monotonic() - began < 3.0


def test_connections_beyond_max_client_cnxns_from_one_address_are_refused() -> None:
    settings = ClientSettings(max_client_cnxns=2)
    with Peer("cnxns", client_address="127.0.0.1:0", client_settings=settings) as peer:
        address = peer.client_address
        assert address is not None
        with RawClient(address) as one, RawClient(address) as two:
            one.connect()
            two.connect()
            with RawClient(address) as three:
                assert three.closed_by_server()
            with pytest.raises((ConnectionError, socket.timeout)):
                with RawClient(address) as four:
                    four.connect()
        _still_serves_one(address)


def _still_serves_one(address: str) -> None:
    with RawClient(address) as raw:
        raw.connect()
        assert raw.call(OpCode.GET_DATA, GetDataRequest("/", False)).header.err == 0


def test_a_client_that_floods_without_reading_does_not_stall_the_peer() -> None:
    settings = ClientSettings(max_outstanding=100)
    with Peer("flood", client_address="127.0.0.1:0", client_settings=settings) as peer:
        address = peer.client_address
        assert address is not None
        with RawClient(address) as raw:
            raw.connect()
            peer.create("/f", b"x" * 1000)
            request = struct.pack(">ii", 1, OpCode.GET_DATA) + struct.pack(">i", 2) + b"/f" + b"\0"
            flood = frame(request) * 2000
            raw.sock.settimeout(0.5)
            try:
                for _ in range(50):
                    raw.sock.sendall(flood)  # never reads a reply: the server stops reading from it
            except (TimeoutError, OSError):
                pass
            began = time.monotonic()
            peer.set("/f", b"still")  # the peer itself is not stalled
            assert time.monotonic() - began < 2.0
            _still_serves_one(address)


def test_a_peer_without_client_address_serves_nothing() -> None:
    with Peer("quiet") as peer:
        assert peer.client_address is None


def test_a_bad_client_address_is_a_configuration_error() -> None:
    from embedzk import ConfigurationError

    with pytest.raises(ConfigurationError, match="client_address"):
        Peer("bad", client_address="nowhere")
    with pytest.raises(ConfigurationError, match="max_client_cnxns"):
        ClientSettings(max_client_cnxns=-1)


def test_reconfig_is_refused_unless_enabled(zk: KazooClient) -> None:
    from kazoo.exceptions import ReconfigDisabledError

    with pytest.raises(ReconfigDisabledError):
        zk.reconfig(joining="server.x=tcp://127.0.0.1:1:observer", leaving=None, new_members=None)


def test_reconfig_adds_and_removes_a_member_when_enabled() -> None:
    settings = ClientSettings(reconfig_enabled=True)
    from embedzk.testing.ports import free_ports

    one, two = free_ports(2)
    from embedzk.security import make_digest_acl_credential

    superuser = make_digest_acl_credential("super", "pw")
    with Peer(
        "r1",
        bind=f"tcp://127.0.0.1:{one}",
        client_address="127.0.0.1:0",
        client_settings=settings,
        super_digest=superuser,
    ) as first:
        newcomer = Peer("r2", bind=f"tcp://127.0.0.1:{two}", seeds=[])  # waits to be added
        starting = threading.Thread(target=newcomer.start, kwargs={"timeout": 30})
        starting.start()
        stranger = KazooClient(hosts=first.client_address, timeout=10)
        stranger.start(timeout=10)
        try:
            from kazoo.exceptions import NoAuthError as KazooNoAuthError

            with pytest.raises(KazooNoAuthError):  # only the superuser may change the membership
                stranger.reconfig(joining=f"server.r2={newcomer._bind}:observer", leaving=None, new_members=None)
        finally:
            stranger.stop()
            stranger.close()
        client = KazooClient(hosts=first.client_address, timeout=10, auth_data=[("digest", "super:pw")])
        client.start(timeout=10)
        try:
            data, _stat = client.reconfig(
                joining=f"server.r2={newcomer._bind}:observer", leaving=None, new_members=None
            )
            assert f"server.r2={newcomer._bind}:observer" in data.decode()
            starting.join(30)
            assert set(first.members()) == {"r1", "r2"}
            data, _stat = client.reconfig(joining=None, leaving="r2", new_members=None)
            assert "server.r2" not in data.decode()
            assert set(first.members()) == {"r1"}
        finally:
            client.stop()
            client.close()
            newcomer.stop(close_session=False)


def _four_letter_word(address: str, word: str) -> str:
    with RawClient(address) as raw:
        raw.send_raw(word.encode())
        chunks = []
        while True:
            data = raw.sock.recv(65536)
            if not data:
                return b"".join(chunks).decode()
            chunks.append(data)


def test_four_letter_words_answer_on_the_client_port(cluster: LocalCluster, zk: KazooClient, root: str) -> None:
    leader = cluster.leader()
    address = leader.client_address
    assert address is not None
    assert _four_letter_word(address, "ruok") == "imok"
    srvr = _four_letter_word(address, "srvr")
    assert "Mode: leader\n" in srvr
    mntr = dict(line.split("\t", 1) for line in _four_letter_word(address, "mntr").splitlines())
    leader.sync()
    assert mntr["zk_server_state"] == "leader"
    assert int(mntr["zk_znode_count"]) == leader.stats()["znode_count"]
    assert mntr["zk_synced_followers"] == "2"
    follower_address = follower(cluster).client_address
    assert follower_address is not None
    assert "Mode: follower\n" in _four_letter_word(follower_address, "srvr")


def test_only_srvr_is_answered_by_default() -> None:
    with Peer("words", client_address="127.0.0.1:0") as peer:
        address = peer.client_address
        assert address is not None
        assert "Mode: standalone" in _four_letter_word(address, "srvr")
        assert _four_letter_word(address, "ruok") == "ruok is not executed because it is not in the whitelist.\n"


def test_a_reconnecting_client_sets_its_watches_again_and_hears_what_it_missed(cluster: LocalCluster) -> None:
    from embedzk.zkwire.codes import SET_WATCHES_XID
    from embedzk.zkwire.records import SetWatches

    first, second = cluster.peers[0], cluster.peers[1]
    assert first.client_address is not None and second.client_address is not None
    path = f"/missed{next(_names)}"
    with RawClient(first.client_address) as raw:
        opened = raw.connect()
        assert raw.call(OpCode.CREATE, _create_body(path, b"old")).header.err == 0
        seen = raw.call(OpCode.GET_DATA, GetDataRequest(path, True)).header.zxid
    first.set(path, b"changed while away")  # the client is gone: nobody is told
    second.sync()
    with RawClient(second.client_address) as raw:
        resumed = raw.connect(session_id=opened.session_id, passwd=opened.passwd, last_zxid=seen)
        assert resumed.session_id == opened.session_id
        raw.send(OpCode.SET_WATCHES, SetWatches(seen, (path,), (), ()), xid=SET_WATCHES_XID)
        event, reply = raw.reply(), raw.reply()
        assert (event.header.xid, event.body.type, event.body.path) == (  # type: ignore[union-attr]
            -1, EventType.NODE_DATA_CHANGED, path
        )
        assert (reply.header.xid, reply.header.err) == (SET_WATCHES_XID, 0)


def test_random_packets_after_the_handshake_never_hurt_the_peer(cluster: LocalCluster) -> None:
    import random

    from embedzk.zkwire import JuteReader
    from embedzk.zkwire.records import ReplyHeader

    address = follower(cluster).client_address
    assert address is not None
    rng = random.Random(1234)
    valid = struct.pack(">ii", 1, OpCode.GET_DATA) + struct.pack(">i", 1) + b"/" + b"\0"
    for round_ in range(60):
        if round_ % 2:
            packet = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        else:  # a valid request with a few bytes changed: the decoder's corners, not just garbage
            packet = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                packet[rng.randrange(len(packet))] = rng.randrange(256)
            packet = bytes(packet)
        with RawClient(address) as raw:
            raw.connect()
            raw.send_raw(frame(packet))
            raw.sock.settimeout(2.0)
            try:
                while True:  # answered (a valid request by chance) or closed: either is fine
                    answer = raw.packet()
                    header = ReplyHeader.read(JuteReader(answer))
                    assert header.err in {int(code) for code in ErrorCode}, packet.hex()
            except (ConnectionError, TimeoutError, socket.timeout):
                pass
    _still_serves(cluster, address)
    assert cluster.leader().stats()["role"] == "leader"


def test_requests_sent_with_the_handshake_are_answered_once_the_session_is_open(cluster: LocalCluster) -> None:
    from embedzk.zkwire import encode_connect_request, encode_request
    from embedzk.zkwire.records import ConnectRequest, RequestHeader

    address = follower(cluster).client_address
    assert address is not None
    with RawClient(address) as raw:
        # The handshake and two requests in one write, before any answer: as a pipelining client sends them.
        raw.opcodes[1] = OpCode.GET_DATA
        raw.opcodes[2] = OpCode.EXISTS
        from embedzk.zkwire.records import ExistsRequest

        raw.send_raw(
            encode_connect_request(ConnectRequest(0, 0, 10_000, 0, b"\0" * 16, False))
            + encode_request(RequestHeader(1, OpCode.GET_DATA), GetDataRequest("/", False))
            + encode_request(RequestHeader(2, OpCode.EXISTS), ExistsRequest("/zookeeper", False))
        )
        from embedzk.zkwire import decode_connect_response

        assert decode_connect_response(raw.packet()).session_id != 0
        first, second = raw.reply(), raw.reply()
        assert (first.header.xid, first.header.err, second.header.xid, second.header.err) == (1, 0, 2, 0)


def test_kazoo_locks_hand_over_without_a_lost_wakeup(cluster: LocalCluster) -> None:
    # A waiter learns of its predecessor's release only from the watch its getData/exists set: if the notification
    # overtook the reply that set the watch, kazoo would drop it and the waiter would sleep to its timeout.
    path = f"/lock{next(_names)}"
    clients = [KazooClient(hosts=peer.client_address, timeout=10) for peer in cluster.peers]
    failures: list[str] = []
    counts = [0] * len(clients)

    def contend(index: int, client: KazooClient) -> None:
        lock = client.Lock(path, f"c{index}")
        for _ in range(15):
            began = time.monotonic()
            if not lock.acquire(timeout=10):
                failures.append(f"client {index} waited {time.monotonic() - began:.1f}s for the lock")
                return
            counts[index] += 1
            lock.release()

    for client in clients:
        client.start(timeout=10)
    try:
        threads = [threading.Thread(target=contend, args=(i, c)) for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for client in clients:
            client.stop()
            client.close()
    assert not failures
    assert counts == [15] * len(clients)


def test_a_reply_is_never_overtaken_by_the_notification_of_a_later_change(cluster: LocalCluster) -> None:
    # The peer's dispatch thread is kept busy by a slow application callback: nothing a client is sent may wait
    # for it, or a watch's notification would overtake the reply that set the watch (and kazoo would drop it).
    peer = follower(cluster)
    assert peer.client_address is not None
    path = f"/overtake{next(_names)}"
    peer.create(path, b"v0")
    busy = threading.Event()

    def slow(_event: object) -> None:
        busy.set()
        time.sleep(1.0)

    peer.exists(f"{path}-blocker", watch=slow)
    with RawClient(peer.client_address) as raw:
        raw.connect()
        peer.create(f"{path}-blocker")
        assert busy.wait(5)
        xid = raw.send(OpCode.GET_DATA, GetDataRequest(path, True))
        # The read has run on the loop once its watch is set there; the change must come after it.
        from embedzk.tree.watches import WatchKind

        wait_until(lambda: peer._registry.watchers(WatchKind.DATA, path), timeout=5, what="the read's watch")
        peer.set(path, b"v1")
        first, second = raw.reply(), raw.reply()
        assert (first.header.xid, second.header.xid) == (xid, -1)


def test_a_read_only_client_reads_from_a_peer_without_quorum_and_moves_back_to_read_write() -> None:
    from kazoo.exceptions import NotReadOnlyCallError
    from kazoo.protocol.states import KeeperState as KazooKeeperState

    with LocalCluster(n=3, client_address="127.0.0.1:0") as local:
        survivor = local.peers[0]
        survivor.create("/ro", b"kept")
        for peer in local.peers[1:]:
            peer.sync()
        for pid in local.ids[1:]:
            local.stop_member(pid, close_session=False)  # two of three gone: no quorum
        address = survivor.client_address
        assert address is not None
        client = KazooClient(hosts=address, timeout=10, read_only=True, connection_retry=None)
        read_only = threading.Event()
        writable = threading.Event()

        def listen(_state: object) -> None:
            if client.client_state == KazooKeeperState.CONNECTED_RO:
                read_only.set()
            elif client.client_state == KazooKeeperState.CONNECTED and read_only.is_set():
                writable.set()

        client.add_listener(listen)
        client.start(timeout=20)
        try:
            assert read_only.wait(20)
            assert client.get("/ro")[0] == b"kept"
            with pytest.raises(NotReadOnlyCallError):
                client.create("/fred")
            for pid in local.ids[1:]:
                local.restart_member(pid)
            assert writable.wait(30)  # the read-only connection was closed; kazoo came back read-write
            client.retry(client.create, "/fred")
            survivor.sync()
            assert survivor.exists("/fred") is not None
        finally:
            client.stop()
            client.close()
