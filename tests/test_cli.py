"""``python -m embedzk``: status against members that answer, refuse, say nothing or are not there, and ls/get/tree
through a kazoo client (a stand-in here; kazoo itself is checked against ZooKeeper by its own tests).

The members are small four-letter-word servers started in the test on 127.0.0.1, answering with the text
:func:`embedzk.zkserver.fourletter.answer` makes and closing, as a ZooKeeper server does.
"""

from __future__ import annotations

import dataclasses
import io
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from embedzk import cli
from embedzk.zkserver.facts import ServerFacts
from embedzk.zkserver.fourletter import DEFAULT_WHITELIST, answer, word_of

pytestmark = pytest.mark.timeout(60)

ALL = frozenset({"*"})


def facts(mode: str, zxid: int, **changes: Any) -> ServerFacts:
    base = ServerFacts(
        version="0.1.0",
        peer_id="p",
        mode=mode,
        zxid=zxid,
        node_count=12,
        approximate_data_size=345,
        watch_count=0,
        watched_paths=0,
        watching_connections=0,
        ephemerals_count=0,
        outstanding_requests=1,
        packets_received=100,
        packets_sent=99,
        latency_min_ms=0.0,
        latency_avg_ms=1.5,
        latency_max_ms=9.0,
    )
    return dataclasses.replace(base, **changes)


class Member:
    """A four-letter-word server on 127.0.0.1: reads four bytes, answers, closes; or, if silent, never answers."""

    def __init__(
        self,
        server_facts: ServerFacts | None,
        whitelist: frozenset[str] = ALL,
        silent: bool = False,
        answers: Callable[[str, ServerFacts | None, frozenset[str]], str] = answer,
    ) -> None:
        self.facts = server_facts
        self.whitelist = whitelist
        self.silent = silent
        self.answers = answers
        self.words: list[str | None] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Closing a socket does not wake a thread blocked in its accept(): wake up now and then to see the stop.
        self._listener.settimeout(0.05)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stopping = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name=f"member {self.address}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.silent:
                self._held.append(connection)  # kept open, unanswered, until the test ends
                continue
            with connection:
                connection.settimeout(5)
                received = b""
                while len(received) < 4:
                    chunk = connection.recv(4 - len(received))
                    if not chunk:
                        break
                    received += chunk
                word = word_of(received)
                self.words.append(word)
                if word is not None:
                    connection.sendall(self.answers(word, self.facts, self.whitelist).encode())

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        assert not self._thread.is_alive()
        self._listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def members() -> Iterator[list[Member]]:
    started: list[Member] = []
    yield started
    for member in started:
        member.close()


@pytest.fixture
def nobody() -> Iterator[str]:
    """An address where nothing listens: a port bound, so no one else takes it, and never listened on."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{bound.getsockname()[1]}"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = cli.main(list(argv), out=out)
    return status, out.getvalue()


def rows(table: str) -> list[list[str]]:
    """The table's cells: columns are at least two spaces apart, and no cell holds two spaces."""
    return [re.split(r" {2,}", line.strip()) for line in table.splitlines()]


CELL = re.compile(r"\S+(?: \S+)*")
HEADER = ["ADDRESS", "MODE", "ZXID", "LAG", "CONNS", "OUTSTANDING", "LATENCY MIN/AVG/MAX", "ZNODES", "NOTE"]


# --- status --------------------------------------------------------------------------------------------------------


def test_status_prints_one_row_per_member_with_its_lag(members: list[Member]) -> None:
    leader = Member(facts("leader", 0x20, followers=2, synced_followers=1))
    behind = Member(facts("follower", 0x1E, outstanding_requests=0, latency_avg_ms=0.25))
    level = Member(facts("follower", 0x20, node_count=11))
    members += [leader, behind, level]
    status, table = run("status", f"{leader.address},{behind.address}", level.address)
    assert status == 0
    assert rows(table) == [
        HEADER,
        [leader.address, "leader", "0x20", "0", "0", "1", "0/1.5/9", "12", "1/2 followers synced"],
        [behind.address, "follower", "0x1e", "2", "0", "0", "0/0.25/9", "12"],
        [level.address, "follower", "0x20", "0", "0", "1", "0/1.5/9", "11"],
    ]
    # Each word on a connection of its own, srvr first.
    assert leader.words == ["srvr", "mntr"]
    # The columns line up: every row's cells start where the header's do.
    lines = table.splitlines()
    starts = [cell.start() for cell in CELL.finditer(lines[0])]
    for line in lines[1:]:
        cells = [cell.start() for cell in CELL.finditer(line)]
        assert cells == starts[: len(cells)], line


def test_status_shows_srvr_when_mntr_is_not_whitelisted(members: list[Member]) -> None:
    member = Member(facts("standalone", 0x7), whitelist=DEFAULT_WHITELIST)
    members.append(member)
    status, table = run("status", member.address)
    # The member answered srvr, which is all the table needs: ZooKeeper's default whitelist is not a failure.
    assert status == 0
    assert rows(table)[1] == [
        member.address,
        "standalone",
        "0x7",
        "0",
        "0",
        "1",
        "0/1.5/9",
        "12",
        "mntr is not executed because it is not in the whitelist",
    ]
    assert member.words == ["srvr", "mntr"]


def test_status_of_an_address_nobody_listens_on_exits_1_saying_so(members: list[Member], nobody: str) -> None:
    member = Member(facts("leader", 0x3))
    members.append(member)
    status, table = run("status", f"{member.address},{nobody}")
    assert status == 1
    assert rows(table)[1][:2] == [member.address, "leader"]
    assert rows(table)[2] == [nobody, "-", "-", "-", "-", "-", "-", "-", "connection refused"]


def test_status_of_a_member_that_never_answers_times_out(members: list[Member]) -> None:
    silent = Member(facts("follower", 1), silent=True)
    members.append(silent)
    status, table = run("status", "--timeout", "0.3", silent.address)
    assert status == 1
    assert rows(table)[1] == [silent.address, "-", "-", "-", "-", "-", "-", "-", "timed out after 0.3 s"]


def test_status_of_a_member_not_serving_exits_1(members: list[Member]) -> None:
    electing = Member(None)
    members.append(electing)
    status, table = run("status", electing.address)
    assert status == 1
    assert rows(table)[1][-1] == "not serving requests (no leader?)"


def test_status_of_a_bad_address_exits_1(members: list[Member]) -> None:
    member = Member(facts("leader", 0x3))
    members.append(member)
    status, table = run("status", f"{member.address},127.0.0.1:notaport")
    assert status == 1
    assert rows(table)[2][0] == "127.0.0.1:notaport"
    assert "is not a port number" in rows(table)[2][-1]


def test_status_falls_back_to_mntr_when_srvr_is_refused(members: list[Member]) -> None:
    # ZooKeeper always answers srvr; a server that does not still gives its figures through mntr.
    def refusing_srvr(word: str, server: ServerFacts | None, whitelist: frozenset[str]) -> str:
        if word == "srvr":
            return "srvr is not executed because it is not in the whitelist.\n"
        return answer(word, server, whitelist)

    member = Member(facts("observer", 9), answers=refusing_srvr)
    members.append(member)
    status, table = run("status", member.address)
    assert status == 0
    assert rows(table)[1] == [
        member.address,
        "observer",
        "-",
        "-",
        "0",
        "1",
        "0/1.5/9",
        "12",
        "srvr is not executed because it is not in the whitelist",
    ]


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("HTTP/1.1 400 Bad Request\r\n\r\n", "unexpected answer to srvr: 'HTTP/1.1 400 Bad Request'"),
        ("", "srvr: closed without answering"),
    ],
)
def test_status_of_something_else_than_a_member_exits_1(members: list[Member], reply: str, why: str) -> None:
    member = Member(facts("leader", 1), answers=lambda word, server, whitelist: reply)
    members.append(member)
    status, table = run("status", member.address)
    assert status == 1
    assert rows(table)[1] == [member.address, "-", "-", "-", "-", "-", "-", "-", why]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("zk1:2181", ("zk1", 2181)),
        ("10.0.0.1:12181", ("10.0.0.1", 12181)),
        ("zk1", ("zk1", 2181)),
        ("[::1]:2182", ("::1", 2182)),
        ("[::1]", ("::1", 2181)),
        ("::1", ("::1", 2181)),
        (" zk1:2181 ", ("zk1", 2181)),
    ],
)
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert cli.parse_address(text) == address


@pytest.mark.parametrize("text", [":2181", "zk1:", "zk1:0", "zk1:65536", "zk1:21x", "[::1", "[::1]x", "[]:1", "[::1]:"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad address"):
        cli.parse_address(text)


def test_parse_srvr_and_mntr() -> None:
    server = facts("leader", 0x1F, followers=2, synced_followers=2)
    srvr = cli.parse_srvr(answer("srvr", server, ALL))
    assert srvr["Mode"] == "leader"
    assert srvr["Zxid"] == "0x1f"
    assert srvr["Latency min/avg/max"] == "0/1.5/9"
    assert srvr["Zookeeper version"] == "0.1.0"
    assert srvr["Proposal sizes last/min/max"] == "-1/-1/-1"
    # stat's client lines start with a space and are not figures.
    stat = cli.parse_srvr(" /127.0.0.1:1[1](queued=0,recved=1,sent=0)\nMode: follower\n")
    assert stat == {"Mode": "follower"}
    mntr = cli.parse_mntr(answer("mntr", server, ALL))
    assert mntr["zk_server_state"] == "leader"
    assert mntr["zk_synced_followers"] == "2"
    assert mntr["zk_version"] == "0.1.0"


# --- the command line ----------------------------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "embedzk", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m embedzk")
    for command in ("status", "ls", "get", "tree"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.MULTILINE), command


def test_no_command_prints_the_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: python -m embedzk" in capsys.readouterr().err


def test_a_bad_timeout_is_an_argument_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["status", "--timeout", "0", "127.0.0.1:1"])
    assert raised.value.code == 2
    assert "must be more than 0 seconds" in capsys.readouterr().err


# --- ls, get, tree -------------------------------------------------------------------------------------------------


class FakeClient:
    """The part of kazoo's KazooClient that ls, get and tree use, over a dict of path -> data."""

    def __init__(self, nodes: dict[str, bytes]) -> None:
        self.nodes = nodes
        self.opened: list[tuple[str, float]] = []  # (hosts, timeout) of each session opened
        self.stopped = False
        self.closed = False

    def _check(self, path: str) -> None:
        from kazoo.exceptions import NoNodeError

        if path not in self.nodes:
            raise NoNodeError()

    def get_children(self, path: str) -> list[str]:
        self._check(path)
        prefix = path.rstrip("/") + "/"
        children = [p[len(prefix) :] for p in self.nodes if p != "/" and p.startswith(prefix)]
        # Out of order, as ZooKeeper may give them: the commands sort.
        return sorted((child for child in children if "/" not in child), reverse=True)

    def get(self, path: str) -> tuple[bytes, object]:
        self._check(path)
        return self.nodes[path], object()

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True


NODES = {
    "/": b"",
    "/app": b"",
    "/app/config": b"color=blue",
    "/app/workers": b"",
    "/app/workers/w1": b"\x00\xffraw",
    "/app/workers/w2": b"line\n",
    "/zookeeper": b"",
}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    pytest.importorskip("kazoo")
    fake = FakeClient(NODES)

    def open_client(hosts: str, timeout: float) -> FakeClient:
        fake.opened.append((hosts, timeout))
        return fake

    monkeypatch.setattr(cli, "_open_client", open_client)
    return fake


def test_ls_lists_the_children_in_order(client: FakeClient) -> None:
    assert run("ls", "127.0.0.1:2181,127.0.0.1:2182", "/app") == (0, "config\nworkers\n")
    assert run("ls", "127.0.0.1:2181") == (0, "app\nzookeeper\n")
    assert client.opened == [("127.0.0.1:2181,127.0.0.1:2182", 5.0), ("127.0.0.1:2181", 5.0)]
    assert client.stopped and client.closed


def test_get_prints_the_data_as_it_is(client: FakeClient, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert cli.main(["get", "h:1", "/app/config"]) == 0
    assert cli.main(["get", "h:1", "/app/workers/w1"]) == 0
    assert cli.main(["get", "h:1", "/app/workers/w2"]) == 0
    assert capsysbinary.readouterr().out == b"color=blue\n\x00\xffraw\nline\n"


def test_tree_prints_every_path_depth_first(client: FakeClient) -> None:
    assert run("tree", "h:1") == (
        0,
        "/\n/app\n/app/config\n/app/workers\n/app/workers/w1\n/app/workers/w2\n/zookeeper\n",
    )
    assert run("tree", "h:1", "/app/workers") == (0, "/app/workers\n/app/workers/w1\n/app/workers/w2\n")


def test_a_missing_node_exits_1_naming_it(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("get", "h:1", "/nothing") == (1, "")
    assert capsys.readouterr().err == "embedzk: get: no node /nothing\n"
    assert client.closed


def test_without_kazoo_the_commands_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "kazoo.client", None)
    for command in ("ls", "get", "tree"):
        assert run(command, "127.0.0.1:1", "/") == (1, "")
        assert "pip install embedzk[cli]" in capsys.readouterr().err
