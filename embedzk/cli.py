"""``python -m embedzk``: look at a running cluster from a shell.

``status HOST:PORT[,HOST:PORT...]`` asks each member's client port for ``srvr`` and ``mntr``, ZooKeeper's
four-letter words, and prints one row per member: its role, its last zxid and how far it is behind the most advanced
member, its connections, its outstanding requests, its latency and its znode count. It needs nothing but the
standard library and works against ZooKeeper servers too.

``ls``, ``get`` and ``tree`` read the tree through a ZooKeeper client session, which takes kazoo
(``pip install embedzk[cli]``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO

__all__ = [
    "DEFAULT_PORT",
    "MemberStatus",
    "ask",
    "build_parser",
    "format_status",
    "main",
    "parse_address",
    "parse_mntr",
    "parse_srvr",
    "probe",
]

#: ZooKeeper's client port, for an address given without one.
DEFAULT_PORT = 2181

_NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
_KAZOO_MISSING = "needs kazoo, which is not installed: pip install embedzk[cli]"


class CliError(Exception):
    """A failure the command reports in one line on stderr, exiting with status 1."""


def parse_address(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6::addr]:port`` or a bare host (port 2181) as (host, port); ValueError if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: expected [host]:port")
        has_port, port_text = bool(rest), rest[1:]
    elif text.count(":") > 1:
        # An IPv6 address without brackets leaves no room for a port.
        host, has_port, port_text = text, False, ""
    else:
        host, colon, port_text = text.partition(":")
        has_port = bool(colon)
    if not host:
        raise ValueError(f"bad address {text!r}: no host")
    if not has_port:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad address {text!r}: port {port_text!r} is not a port number")
    return host, int(port_text)


def ask(host: str, port: int, word: str, timeout: float) -> str:
    """Send ``word`` to ``host:port`` on a new connection and return everything it answers until it closes.

    ``timeout`` bounds the whole exchange, connecting included. Raises OSError (ConnectionRefusedError,
    TimeoutError, socket.gaierror ...) when the member cannot be reached or does not finish answering in time.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(word.encode("ascii"))
        chunks: list[bytes] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            connection.settimeout(remaining)
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def parse_srvr(text: str) -> dict[str, str]:
    """``srvr``'s (or ``stat``'s) ``Name: value`` lines as a dict (``{"Mode": "leader", "Zxid": "0x1f", ...}``)."""
    figures: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(": ")
        if colon and not line.startswith(" "):
            figures[name.strip()] = value.strip()
    return figures


def parse_mntr(text: str) -> dict[str, str]:
    """``mntr``'s ``key<TAB>value`` lines as a dict (``{"zk_server_state": "leader", ...}``)."""
    figures: dict[str, str] = {}
    for line in text.splitlines():
        key, tab, value = line.partition("\t")
        if tab:
            figures[key.strip()] = value.strip()
    return figures


@dataclass
class MemberStatus:
    """What one member said, or why it said nothing."""

    #: The address as given.
    address: str
    #: ``srvr``'s figures, ``mntr``'s figures; None when the word got no usable answer.
    srvr: dict[str, str] | None = None
    mntr: dict[str, str] | None = None
    #: Why the member gave no figures at all (None when it did).
    error: str | None = None
    #: Remarks for the row: a word it refused, the leader's synced followers.
    notes: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """Whether the member gave its figures (through srvr, or through mntr where srvr failed)."""
        return self.srvr is not None or self.mntr is not None

    @property
    def zxid(self) -> int | None:
        """The member's last zxid, from srvr's ``Zxid`` line (mntr does not print it)."""
        text = (self.srvr or {}).get("Zxid")
        try:
            return int(text, 16) if text is not None else None
        except ValueError:
            return None


def probe(address: str, timeout: float = 2.0) -> MemberStatus:
    """Ask the member at ``address`` for ``srvr`` and then ``mntr``, each on its own connection.

    ZooKeeper closes a connection once it has answered a four-letter word, hence the two connections.
    """
    member = MemberStatus(address)
    try:
        host, port = parse_address(address)
    except ValueError as error:
        member.error = str(error)
        return member
    member.srvr, srvr_failure, reached = _figures(host, port, "srvr", timeout)
    if not reached:
        # Nobody there, or nobody answering: asking for mntr would only say the same, more slowly.
        member.error = srvr_failure
        return member
    member.mntr, mntr_failure, _ = _figures(host, port, "mntr", timeout)
    if not member.answered:
        member.error = srvr_failure
        return member
    member.notes += [failure for failure in (srvr_failure, mntr_failure) if failure is not None]
    if member.mntr is not None and "zk_synced_followers" in member.mntr:
        learners = member.mntr.get("zk_learners", member.mntr.get("zk_followers", "?"))
        member.notes.append(f"{member.mntr['zk_synced_followers']}/{learners} followers synced")
    return member


# How to read each word's answer, and a line every real answer has.
_READERS: dict[str, tuple[Callable[[str], dict[str, str]], str]] = {
    "srvr": (parse_srvr, "Mode"),
    "mntr": (parse_mntr, "zk_server_state"),
}


def _figures(host: str, port: int, word: str, timeout: float) -> tuple[dict[str, str] | None, str | None, bool]:
    """``word``'s figures, or None and why not, in words for the table; and whether the member was reached."""
    try:
        text = ask(host, port, word, timeout)
    except ConnectionRefusedError:
        return None, "connection refused", False
    except socket.gaierror:
        return None, "cannot resolve host", False
    except TimeoutError:
        return None, f"timed out after {timeout:g} s", False
    except OSError as error:
        return None, f"{word}: {error.strerror or error}", False
    refusal = _refusal(text, word)
    if refusal is not None:
        return None, refusal, True
    parse, required = _READERS[word]
    figures = parse(text)
    if required not in figures:
        return None, f"unexpected answer to {word}: {_first_line(text)!r}", True
    return figures, None, True


def _refusal(text: str, word: str) -> str | None:
    """Why ``text`` is not ``word``'s figures, when it is a refusal rather than an answer."""
    if not text:
        return f"{word}: closed without answering"
    first = _first_line(text)
    # "<word> is not executed because it is not in the whitelist.", or another reason in the same words.
    if "is not executed because" in first:
        return first.rstrip(".")
    if first.startswith(_NOT_SERVING):
        return "not serving requests (no leader?)"
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


_COLUMNS = ("ADDRESS", "MODE", "ZXID", "LAG", "CONNS", "OUTSTANDING", "LATENCY MIN/AVG/MAX", "ZNODES", "NOTE")


def format_status(members: Sequence[MemberStatus]) -> str:
    """The table ``status`` prints: a header, one row per member, columns aligned."""
    zxids = [zxid for zxid in (member.zxid for member in members) if zxid is not None]
    highest = max(zxids) if zxids else None
    rows = [_COLUMNS]
    for member in members:
        if not member.answered:
            rows.append((member.address, "-", "-", "-", "-", "-", "-", "-", member.error or "no answer"))
            continue
        srvr = member.srvr or {}
        mntr = member.mntr or {}
        zxid = member.zxid
        if "Latency min/avg/max" in srvr:
            latency = srvr["Latency min/avg/max"]
        elif "zk_min_latency" in mntr:
            latency = f"{mntr['zk_min_latency']}/{mntr.get('zk_avg_latency', '?')}/{mntr.get('zk_max_latency', '?')}"
        else:
            latency = "-"
        rows.append(
            (
                member.address,
                srvr.get("Mode", mntr.get("zk_server_state", "-")),
                f"0x{zxid:x}" if zxid is not None else "-",
                str(highest - zxid) if highest is not None and zxid is not None else "-",
                srvr.get("Connections", mntr.get("zk_num_alive_connections", "-")),
                srvr.get("Outstanding", mntr.get("zk_outstanding_requests", "-")),
                latency,
                srvr.get("Node count", mntr.get("zk_znode_count", "-")),
                "; ".join(member.notes),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def _status(arguments: argparse.Namespace, out: TextIO) -> int:
    addresses = [part.strip() for spec in arguments.addresses for part in spec.split(",") if part.strip()]
    if not addresses:
        raise CliError("status: no address given")
    members = [probe(address, arguments.timeout) for address in addresses]
    out.write(format_status(members))
    return 0 if all(member.answered for member in members) else 1


def _load_kazoo() -> tuple[ModuleType, ModuleType, type[BaseException]]:
    """kazoo's client and exceptions modules and its timeout error, or CliError saying how to install it."""
    # Imported by name so that the library and its type check do not depend on kazoo, an optional extra.
    try:
        client = importlib.import_module("kazoo.client")
        exceptions = importlib.import_module("kazoo.exceptions")
        handler = importlib.import_module("kazoo.handlers.threading")
    except ImportError:
        raise CliError(_KAZOO_MISSING) from None
    timeout_error: type[BaseException] = handler.KazooTimeoutError
    return client, exceptions, timeout_error


def _open_client(hosts: str, timeout: float) -> Any:
    """A started kazoo client connected to ``hosts`` (kazoo's ``host:port,host:port`` form)."""
    client_module, _, timeout_error = _load_kazoo()
    # kazoo logs every failed connection attempt as a warning, which with logging unconfigured lands on stderr
    # line after line; the command says in one line what went wrong instead.
    quiet = logging.getLogger("embedzk.cli.kazoo")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    client = client_module.KazooClient(hosts=hosts, logger=quiet)
    try:
        client.start(timeout=timeout)
    except timeout_error:
        client.close()
        raise CliError(f"could not connect to {hosts} within {timeout:g} s") from None
    return client


def _with_client(arguments: argparse.Namespace, work: Callable[[Any], None]) -> int:
    _, exceptions, _ = _load_kazoo()
    client = _open_client(arguments.hosts, arguments.timeout)
    try:
        work(client)
    except exceptions.NoNodeError:
        raise CliError(f"{arguments.command}: no node {arguments.path}") from None
    except exceptions.KazooException as error:
        raise CliError(f"{arguments.command} {arguments.path}: {type(error).__name__} {error}".rstrip()) from None
    finally:
        client.stop()
        client.close()
    return 0


def _ls(arguments: argparse.Namespace, out: TextIO) -> int:
    def work(client: Any) -> None:
        for child in sorted(client.get_children(arguments.path)):
            out.write(child + "\n")

    return _with_client(arguments, work)


def _get(arguments: argparse.Namespace, out: TextIO) -> int:
    def work(client: Any) -> None:
        data, _ = client.get(arguments.path)
        _write_bytes(out, data or b"")

    return _with_client(arguments, work)


def _tree(arguments: argparse.Namespace, out: TextIO) -> int:
    def work(client: Any) -> None:
        # Depth first, children in order, one full path a line: the output greps and diffs like find's.
        pending = [arguments.path]
        while pending:
            path = pending.pop()
            out.write(path + "\n")
            children = sorted(client.get_children(path), reverse=True)
            pending.extend(path.rstrip("/") + "/" + child for child in children)

    return _with_client(arguments, work)


def _write_bytes(out: TextIO, data: bytes) -> None:
    """A znode's data as it is: raw bytes where the stream takes them, a newline after unless it ends with one."""
    ending = b"" if data.endswith(b"\n") else b"\n"
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        buffer.write(data + ending)
        buffer.flush()
    else:
        out.write((data + ending).decode("utf-8", errors="backslashreplace"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m embedzk``: one sub-command each for status, ls, get and tree."""
    parser = argparse.ArgumentParser(
        prog="python -m embedzk",
        description="Look at a running embedzk (or ZooKeeper) cluster through its members' client ports.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    status = commands.add_parser(
        "status",
        help="each member's role, zxid, lag, connections and latency (four-letter words srvr and mntr)",
        description="Ask every member for srvr and mntr and print one row per member. Exits 1 if any member "
        "gave no figures.",
    )
    status.add_argument(
        "addresses", nargs="+", metavar="HOST:PORT", help="the members' client ports, comma- or space-separated"
    )
    status.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="how long one member has to answer one word (default 2)",
    )
    status.set_defaults(run=_status)

    for name, run, help_text in (
        ("ls", _ls, "list a znode's children"),
        ("get", _get, "print a znode's data"),
        ("tree", _tree, "print the path of a znode and of every znode under it"),
    ):
        command = commands.add_parser(name, help=f"{help_text} (needs kazoo: pip install embedzk[cli])")
        command.add_argument("hosts", metavar="HOST:PORT[,HOST:PORT...]", help="client ports to connect to")
        if name == "get":
            command.add_argument("path", metavar="PATH", help="the znode")
        else:
            command.add_argument("path", metavar="PATH", nargs="?", default="/", help="the znode (default /)")
        command.add_argument(
            "--timeout",
            type=_positive_seconds,
            default=5.0,
            metavar="SECONDS",
            help="how long to wait for a session (default 5)",
        )
        command.set_defaults(run=run)
    return parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``python -m embedzk`` with ``argv`` (the process's arguments when None); return the exit status.

    0: done (for status: every member answered); 1: a member did not answer, or the command failed (said on
    stderr); 2: bad arguments.
    """
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command is None:
        parser.print_help(sys.stderr)
        return 2
    stream = out if out is not None else sys.stdout
    try:
        status: int = arguments.run(arguments, stream)
    except CliError as error:
        stream.flush()
        print(f"embedzk: {error}", file=sys.stderr)
        return 1
    return status
