"""embedzk.zkserver.fourletter, ZooKeeper's four-letter words: the text of every answer, line for line, and the
whitelist rules.

The expected texts are literal. Those marked "ZooKeeper 3.8.0" are what a ZooKeeper 3.8.0 server answered when
asked the same word in the same state (a standalone server, then a three-member ensemble), so a difference from them
is a difference from ZooKeeper, not a matter of taste.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedzk.errors import ConfigurationError
from embedzk.zkserver.facts import ConnectionFacts, ServerFacts
from embedzk.zkserver.fourletter import (
    DEFAULT_WHITELIST,
    KNOWN_WORDS,
    NOT_SERVING,
    ZOOKEEPER_WORDS,
    answer,
    is_enabled,
    parse_whitelist,
    word_of,
)
from embedzk.zkwire import DEFAULT_MAX_PACKET

pytestmark = pytest.mark.timeout(60)

ALL = frozenset({"*"})
ZK_VERSION = "3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC"


def facts(**changes: Any) -> ServerFacts:
    """A follower with round figures; each test changes what it looks at."""
    base = ServerFacts(
        version="0.1.0",
        peer_id="p2",
        mode="follower",
        zxid=0x2A,
        node_count=12,
        approximate_data_size=345,
        watch_count=7,
        watched_paths=3,
        watching_connections=2,
        ephemerals_count=4,
        outstanding_requests=1,
        packets_received=100,
        packets_sent=99,
        latency_min_ms=0.0,
        latency_avg_ms=1.5,
        latency_max_ms=9.0,
    )
    return dataclasses.replace(base, **changes)


SESSION = ConnectionFacts(
    host="127.0.0.1",
    port=56598,
    queued=0,
    received=4,
    sent=4,
    session_id=0x10001C0AEF90000,
    timeout_ms=10000,
    latency_min_ms=0.0,
    latency_avg_ms=8.25,
    latency_max_ms=18.0,
    last_latency_ms=2.0,
    last_op="GETC",
    last_xid=3,
    last_zxid=2,
    established_ms=1796316157337,
    last_response_ms=29416339,
)
SESSIONLESS = ConnectionFacts(host="127.0.0.1", port=56602, queued=0, received=1, sent=0)


# --- srvr and stat -------------------------------------------------------------------------------------------------


def test_srvr_of_a_leader_is_zookeepers_text() -> None:
    leader = facts(
        version=ZK_VERSION,
        mode="leader",
        zxid=0x100000000,
        node_count=5,
        outstanding_requests=0,
        packets_received=1,
        packets_sent=0,
        latency_avg_ms=0.0,
        latency_max_ms=0.0,
        connections=(SESSIONLESS,),
    )
    # ZooKeeper 3.8.0, the leader of three, asked srvr on a fresh connection.
    assert answer("srvr", leader, DEFAULT_WHITELIST) == (
        "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\n"
        "Latency min/avg/max: 0/0.0/0\n"
        "Received: 1\n"
        "Sent: 0\n"
        "Connections: 1\n"
        "Outstanding: 0\n"
        "Zxid: 0x100000000\n"
        "Mode: leader\n"
        "Node count: 5\n"
        "Proposal sizes last/min/max: -1/-1/-1\n"
    )


def test_srvr_of_a_follower_has_no_proposal_line_and_prints_the_given_version() -> None:
    assert answer("srvr", facts(), DEFAULT_WHITELIST) == (
        "Zookeeper version: 0.1.0\n"
        "Latency min/avg/max: 0/1.5/9\n"
        "Received: 100\n"
        "Sent: 99\n"
        "Connections: 0\n"
        "Outstanding: 1\n"
        "Zxid: 0x2a\n"
        "Mode: follower\n"
        "Node count: 12\n"
    )


def test_stat_lists_the_clients_briefly_before_the_figures() -> None:
    standalone = facts(
        version=ZK_VERSION,
        mode="standalone",
        zxid=2,
        node_count=6,
        outstanding_requests=0,
        packets_received=18,
        packets_sent=18,
        latency_min_ms=2.0,
        latency_avg_ms=8.25,
        latency_max_ms=18.0,
        connections=(SESSION, SESSIONLESS),
    )
    # ZooKeeper 3.8.0 standalone with one kazoo session; ZooKeeper shows the connection that asks as [0] (its
    # interest set while it runs the command), every connection here shows [1].
    assert answer("stat", standalone, ALL) == (
        "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\n"
        "Clients:\n"
        " /127.0.0.1:56598[1](queued=0,recved=4,sent=4)\n"
        " /127.0.0.1:56602[1](queued=0,recved=1,sent=0)\n"
        "\n"
        "Latency min/avg/max: 2/8.25/18\n"
        "Received: 18\n"
        "Sent: 18\n"
        "Connections: 2\n"
        "Outstanding: 0\n"
        "Zxid: 0x2\n"
        "Mode: standalone\n"
        "Node count: 6\n"
    )


def test_stat_with_no_clients_keeps_the_empty_line() -> None:
    text = answer("stat", facts(), ALL)
    assert text.startswith("Zookeeper version: 0.1.0\nClients:\n\nLatency min/avg/max: 0/1.5/9\n")


def test_a_read_only_member_says_so_under_the_version() -> None:
    text = answer("srvr", facts(read_only=True), ALL)
    assert text.startswith("Zookeeper version: 0.1.0\nREAD-ONLY mode; serving only read-only clients\nLatency")
    assert answer("isro", facts(read_only=True), ALL) == "ro"
    assert answer("isro", facts(), ALL) == "rw"


@pytest.mark.parametrize(
    ("average", "printed"),
    [
        (0.0, "0.0"),
        (3.0, "3.0"),
        (8.25, "8.25"),
        (1 / 3, "0.3333"),  # rounded to 4 decimals, as AvgMinMaxCounter does
        (2 / 3, "0.6667"),
        (0.00005, "1.0E-4"),  # Java's notation below 10^-3
        (0.00004, "0.0"),
        (12345678.0, "1.2345678E7"),  # and from 10^7 up
        (9999999.0, "9999999.0"),
    ],
)
def test_the_average_latency_is_printed_as_java_prints_a_double(average: float, printed: str) -> None:
    assert f"Latency min/avg/max: 0/{printed}/9\n" in answer("srvr", facts(latency_avg_ms=average), ALL)
    assert f"zk_avg_latency\t{printed}\n" in answer("mntr", facts(latency_avg_ms=average), ALL)


def test_min_and_max_latency_are_whole_milliseconds() -> None:
    text = answer("srvr", facts(latency_min_ms=0.4, latency_avg_ms=0.7, latency_max_ms=1.9), ALL)
    assert "Latency min/avg/max: 0/0.7/1\n" in text


def test_a_negative_zxid_prints_as_javas_unsigned_hex() -> None:
    assert "Zxid: 0xffffffffffffffff\n" in answer("srvr", facts(zxid=-1), ALL)


# --- cons ----------------------------------------------------------------------------------------------------------


def test_cons_gives_each_session_in_full_and_a_sessionless_connection_briefly() -> None:
    # ZooKeeper 3.8.0 standalone, same session as above (the asking connection shows [0] there).
    assert answer("cons", facts(connections=(SESSION, SESSIONLESS)), ALL) == (
        " /127.0.0.1:56598[1](queued=0,recved=4,sent=4,sid=0x10001c0aef90000,lop=GETC,est=1796316157337,to=10000,"
        "lcxid=0x3,lzxid=0x2,lresp=29416339,llat=2,minlat=0,avglat=8,maxlat=18)\n"
        " /127.0.0.1:56602[1](queued=0,recved=1,sent=0)\n"
        "\n"
    )


def test_cons_leaves_out_lcxid_before_any_request_and_prints_an_unset_zxid_as_java_does() -> None:
    fresh = dataclasses.replace(SESSION, last_xid=-1, last_zxid=-1, last_op="NA")
    assert answer("cons", facts(connections=(fresh,)), ALL) == (
        " /127.0.0.1:56598[1](queued=0,recved=4,sent=4,sid=0x10001c0aef90000,lop=NA,est=1796316157337,to=10000,"
        "lzxid=0xffffffffffffffff,lresp=29416339,llat=2,minlat=0,avglat=8,maxlat=18)\n"
        "\n"
    )


def test_cons_with_no_connections_is_one_empty_line() -> None:
    assert answer("cons", facts(), ALL) == "\n"


@pytest.mark.parametrize(
    ("host", "printed"),
    [
        ("10.1.2.3", "/10.1.2.3:2181"),
        ("::1", "/[0:0:0:0:0:0:0:1]:2181"),
        ("fe80::a:bc", "/[fe80:0:0:0:0:0:a:bc]:2181"),
        ("client.example", "/client.example:2181"),
    ],
)
def test_a_client_address_is_printed_as_javas_inet_socket_address(host: str, printed: str) -> None:
    connection = ConnectionFacts(host=host, port=2181, queued=0, received=0, sent=0)
    assert answer("cons", facts(connections=(connection,)), ALL) == f" {printed}[1](queued=0,recved=0,sent=0)\n\n"


# --- mntr ----------------------------------------------------------------------------------------------------------


def test_mntr_of_a_leader() -> None:
    leader = facts(
        mode="leader",
        connections=(SESSION,),
        refused={"malformed packet": 2, "too many connections": 1},
        followers=3,
        synced_followers=2,
        pending_syncs=1,
        global_sessions=5,
        open_file_descriptors=40,
        max_file_descriptors=20000,
        proposal_size_last=36,
        proposal_size_min=32,
        proposal_size_max=48,
    )
    assert answer("mntr", leader, ALL) == (
        "zk_version\t0.1.0\n"
        "zk_server_state\tleader\n"
        "zk_peer_state\tleading - broadcast\n"
        "zk_avg_latency\t1.5\n"
        "zk_max_latency\t9\n"
        "zk_min_latency\t0\n"
        "zk_packets_received\t100\n"
        "zk_packets_sent\t99\n"
        "zk_num_alive_connections\t1\n"
        "zk_outstanding_requests\t1\n"
        "zk_znode_count\t12\n"
        "zk_watch_count\t7\n"
        "zk_ephemerals_count\t4\n"
        "zk_approximate_data_size\t345\n"
        "zk_global_sessions\t5\n"
        "zk_connection_rejected\t3\n"
        "zk_open_file_descriptor_count\t40\n"
        "zk_max_file_descriptor_count\t20000\n"
        "zk_learners\t3\n"
        "zk_followers\t3\n"
        "zk_synced_followers\t2\n"
        "zk_pending_syncs\t1\n"
        "zk_last_proposal_size\t36\n"
        "zk_max_proposal_size\t48\n"
        "zk_min_proposal_size\t32\n"
    )


def test_mntr_of_a_follower_has_no_leader_lines_and_no_unknown_descriptor_counts() -> None:
    assert answer("mntr", facts(), ALL) == (
        "zk_version\t0.1.0\n"
        "zk_server_state\tfollower\n"
        "zk_peer_state\tfollowing - broadcast\n"
        "zk_avg_latency\t1.5\n"
        "zk_max_latency\t9\n"
        "zk_min_latency\t0\n"
        "zk_packets_received\t100\n"
        "zk_packets_sent\t99\n"
        "zk_num_alive_connections\t0\n"
        "zk_outstanding_requests\t1\n"
        "zk_znode_count\t12\n"
        "zk_watch_count\t7\n"
        "zk_ephemerals_count\t4\n"
        "zk_approximate_data_size\t345\n"
        "zk_global_sessions\t0\n"
        "zk_connection_rejected\t0\n"
    )


def test_mntr_peer_state_by_mode() -> None:
    # ZooKeeper 3.8.0 prints zk_peer_state on the members of an ensemble and not on a standalone server.
    assert "zk_peer_state\tobserving - broadcast\n" in answer("mntr", facts(mode="observer"), ALL)
    standalone = answer("mntr", facts(mode="standalone"), ALL)
    assert "zk_server_state\tstandalone\n" in standalone
    assert "zk_peer_state" not in standalone


def _exporter_parse(text: str) -> dict[str, str]:
    """mntr as the Prometheus zookeeper-exporter reads it: tabs made spaces, split on spaces, field 1 the value."""
    samples: dict[str, str] = {}
    for line in text.split("\n"):
        fields = line.replace("\t", " ").split(" ")
        if fields[0] == "":
            continue
        assert len(fields) >= 2, f"{line!r} has no value: the exporter would index past its end"
        samples[fields[0]] = fields[1]
    return samples


connection_facts = st.builds(
    ConnectionFacts,
    host=st.sampled_from(["127.0.0.1", "::1", "10.0.0.7"]),
    port=st.integers(1, 65535),
    queued=st.integers(0, 10**6),
    received=st.integers(0, 10**12),
    sent=st.integers(0, 10**12),
    session_id=st.integers(-(2**63), 2**63 - 1),
    timeout_ms=st.integers(0, 10**6),
    latency_min_ms=st.floats(0, 1e6),
    latency_avg_ms=st.floats(0, 1e6),
    latency_max_ms=st.floats(0, 1e6),
    last_latency_ms=st.floats(0, 1e6),
    last_op=st.sampled_from(["NA", "GETD", "SETD", "PING"]),
    last_xid=st.integers(-1, 2**31 - 1),
    last_zxid=st.integers(-1, 2**63 - 1),
)
server_facts = st.builds(
    ServerFacts,
    version=st.just("0.1.0.dev0"),
    peer_id=st.just("p"),
    mode=st.sampled_from(["leader", "follower", "observer", "standalone"]),
    zxid=st.integers(0, 2**63 - 1),
    node_count=st.integers(0, 10**9),
    approximate_data_size=st.integers(0, 10**12),
    watch_count=st.integers(0, 10**9),
    watched_paths=st.integers(0, 10**9),
    watching_connections=st.integers(0, 10**6),
    ephemerals_count=st.integers(0, 10**9),
    outstanding_requests=st.integers(0, 10**6),
    packets_received=st.integers(0, 10**12),
    packets_sent=st.integers(0, 10**12),
    latency_min_ms=st.floats(0, 1e9),
    latency_avg_ms=st.floats(0, 1e9),
    latency_max_ms=st.floats(0, 1e9),
    connections=st.lists(connection_facts, max_size=3).map(tuple),
    refused=st.dictionaries(st.sampled_from(["malformed packet", "limit"]), st.integers(0, 100)),
    followers=st.integers(0, 10),
    synced_followers=st.integers(0, 10),
    global_sessions=st.integers(0, 10**6),
    open_file_descriptors=st.integers(-1, 10**6),
    max_file_descriptors=st.integers(-1, 10**6),
    read_only=st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(server=server_facts)
def test_every_mntr_value_is_a_number_the_exporters_can_read(server: ServerFacts) -> None:
    text = answer("mntr", server, ALL)
    assert text.endswith("\n")
    for line in text.splitlines():
        key, tab, value = line.partition("\t")
        assert tab and key.startswith("zk_") and value, line
    samples = _exporter_parse(text)
    assert samples["zk_server_state"] == server.mode
    for key, value in samples.items():
        # The exporter turns these three into labels; every other value becomes a sample, so must be a number.
        if key not in ("zk_version", "zk_server_state", "zk_peer_state"):
            float(value)


@settings(max_examples=100, deadline=None)
@given(server=server_facts)
def test_srvr_lines_are_what_zkserver_sh_and_the_agents_match(server: ServerFacts) -> None:
    text = answer("srvr", server, ALL)
    # zkServer.sh status: grep "Mode:" and print the rest of the line.
    [mode_line] = [line for line in text.splitlines() if "Mode:" in line]
    assert mode_line == f"Mode: {server.mode}"
    names = [line.split(": ", 1)[0] for line in text.splitlines() if not line.startswith("READ-ONLY")]
    expected = ["Zookeeper version", "Latency min/avg/max", "Received", "Sent", "Connections", "Outstanding"]
    expected += ["Zxid", "Mode", "Node count"] + (["Proposal sizes last/min/max"] if server.mode == "leader" else [])
    assert names == expected
    assert int(text.split("Zxid: 0x", 1)[1].split("\n", 1)[0], 16) == server.zxid


# --- the other words -----------------------------------------------------------------------------------------------


def test_ruok_conf_envi_wchs_dirs() -> None:
    server = facts(
        config={"clientPort": "2181", "tickTime": "2000", "serverId": "p2"},
        environment={"zookeeper.version": "0.1.0", "os.name": "Linux"},
        data_dir_size=457,
    )
    assert answer("ruok", server, ALL) == "imok"
    assert answer("conf", server, ALL) == "clientPort=2181\ntickTime=2000\nserverId=p2\n"
    assert answer("envi", server, ALL) == "Environment:\nzookeeper.version=0.1.0\nos.name=Linux\n"
    assert answer("wchs", server, ALL) == "2 connections watching 3 paths\nTotal watches:7\n"
    # ZooKeeper 3.8.0 standalone, data and log in one directory.
    assert answer("dirs", server, ALL) == "datadir_size: 457\nlogdir_size: 457\n"


def test_a_member_not_serving_answers_as_zookeeper_does_during_an_election() -> None:
    for word in ("srvr", "stat", "mntr", "conf", "cons", "wchs", "dirs"):
        assert answer(word, None, ALL) == NOT_SERVING + "\n"
    assert NOT_SERVING == "This ZooKeeper instance is not currently serving requests"
    assert answer("ruok", None, ALL) == "imok"
    assert answer("isro", None, ALL) == "null"
    assert answer("envi", None, ALL) == "Environment:\n"


# --- the whitelist -------------------------------------------------------------------------------------------------


def test_a_word_not_in_the_whitelist_is_refused_in_zookeepers_words() -> None:
    for word in sorted(KNOWN_WORDS - {"srvr"}):
        refusal = f"{word} is not executed because it is not in the whitelist.\n"
        assert answer(word, facts(), DEFAULT_WHITELIST) == refusal
        assert answer(word, None, DEFAULT_WHITELIST) == refusal
    assert answer("mntr", facts(), frozenset({"stat"})) == "mntr is not executed because it is not in the whitelist.\n"
    assert answer("stat", facts(), frozenset({"stat"})).startswith("Zookeeper version: 0.1.0\nClients:\n")


def test_srvr_is_always_answered_and_star_answers_everything() -> None:
    assert answer("srvr", facts(), frozenset()).startswith("Zookeeper version: 0.1.0\nLatency")
    for word in KNOWN_WORDS:
        assert is_enabled(word, ALL)
        assert "whitelist" not in answer(word, facts(), ALL)
    assert is_enabled("srvr", frozenset())
    assert not is_enabled("stat", frozenset({"mntr"}))


def test_a_zookeeper_word_not_implemented_says_so_whatever_the_whitelist() -> None:
    for word in sorted(ZOOKEEPER_WORDS - KNOWN_WORDS):
        expected = f"{word} is not executed because embedzk does not support it.\n"
        assert answer(word, facts(), ALL) == expected
        assert answer(word, facts(), DEFAULT_WHITELIST) == expected
        assert answer(word, None, frozenset({word})) == expected


def test_answer_refuses_what_is_not_a_word() -> None:
    for word in ("xyzw", "STAT", "", "kill"):
        with pytest.raises(ValueError, match="not a ZooKeeper four-letter word"):
            answer(word, facts(), ALL)


def test_the_resets_are_not_claimed_without_a_reset() -> None:
    assert {"crst", "srst"} <= ZOOKEEPER_WORDS - KNOWN_WORDS
    assert KNOWN_WORDS == {"ruok", "srvr", "stat", "mntr", "conf", "cons", "envi", "wchs", "dirs", "isro"}
    assert DEFAULT_WHITELIST == {"srvr"}


def test_parse_whitelist_reads_zookeepers_setting() -> None:
    assert parse_whitelist(None) == DEFAULT_WHITELIST
    assert parse_whitelist("stat, ruok, conf") == {"stat", "ruok", "conf", "srvr"}
    assert parse_whitelist("mntr,,  ,isro") == {"mntr", "isro", "srvr"}
    assert parse_whitelist("") == {"srvr"}
    assert parse_whitelist("*") == KNOWN_WORDS
    assert parse_whitelist(" * , ruok") == KNOWN_WORDS
    assert parse_whitelist(["stat", " mntr "]) == {"stat", "mntr", "srvr"}
    assert parse_whitelist(("stat,cons",)) == {"stat", "cons", "srvr"}
    assert parse_whitelist([]) == {"srvr"}


@pytest.mark.parametrize(
    ("setting", "named", "reason"),
    [
        ("stat, stta", "'stta'", "not a four-letter word embedzk answers"),
        ("dump", "'dump'", "a ZooKeeper four-letter word that embedzk does not answer"),
        ("srst,ruok", "'srst'", "a ZooKeeper four-letter word that embedzk does not answer"),
        ("STAT", "'STAT'", "lower case"),
        ("stat ruok", "'stat ruok'", "not a four-letter word"),  # a space is not a separator
    ],
)
def test_parse_whitelist_refuses_a_word_it_does_not_answer_naming_it(setting: str, named: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_whitelist(setting)
    assert named in str(raised.value)
    assert reason in str(raised.value)
    assert "4lw.commands.whitelist" in str(raised.value)


def test_parse_whitelist_refuses_what_is_not_a_string() -> None:
    with pytest.raises(ConfigurationError, match="not a word"):
        parse_whitelist([b"stat"])  # type: ignore[list-item]


# --- word_of -------------------------------------------------------------------------------------------------------


def test_word_of_recognises_every_zookeeper_word() -> None:
    for word in ZOOKEEPER_WORDS:
        assert word_of(word.encode("ascii")) == word
        assert word_of(bytearray(word.encode("ascii"))) == word
        # What follows the four bytes (nc's newline, stmk's mask) does not matter.
        assert word_of(word.encode("ascii") + b"\n") == word
    assert ZOOKEEPER_WORDS >= KNOWN_WORDS | {"dump", "gtmk", "stmk", "wchc", "wchp", "hash", "crst", "srst"}


@pytest.mark.parametrize(
    "prefix",
    [b"\x00\x00\x00\x2c", b"\x00\x00\x00\x00", b"\x00\x10\x00\x00", b"\xff\xf4\xff\xfd", b"STAT", b"Ruok", b"ruo", b""],
)
def test_word_of_leaves_frame_lengths_and_near_misses_alone(prefix: bytes) -> None:
    assert word_of(prefix) is None


def test_no_word_is_a_frame_length_a_client_could_send() -> None:
    # Each word, read as a big-endian length, is far above any packet size the server accepts, so recognising the
    # words never takes a real frame for one.
    for word in ZOOKEEPER_WORDS:
        assert int.from_bytes(word.encode("ascii"), "big") > 1000 * DEFAULT_MAX_PACKET


@settings(max_examples=500, deadline=None)
@given(prefix=st.binary(min_size=0, max_size=8))
def test_word_of_never_raises_and_only_names_the_words_spelt(prefix: bytes) -> None:
    word = word_of(prefix)
    if word is None:
        assert prefix[:4].decode("latin-1") not in ZOOKEEPER_WORDS
    else:
        assert word in ZOOKEEPER_WORDS
        assert prefix[:4] == word.encode("ascii")


@settings(max_examples=200, deadline=None)
@given(prefix=st.binary(min_size=4, max_size=4))
def test_word_of_on_any_four_bytes(prefix: bytes) -> None:
    assert word_of(prefix) == (prefix.decode("latin-1") if prefix.decode("latin-1") in ZOOKEEPER_WORDS else None)
