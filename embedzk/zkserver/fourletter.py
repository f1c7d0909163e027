"""ZooKeeper's four-letter words: which ones a client may send, and the text each one answers.

A ZooKeeper server reads the first four bytes of a new connection as a frame length, unless they spell one of its
four-letter words (``echo srvr | nc host 2181``): then it answers in plain text and closes the connection. Tools
built on that text parse it line by line: ``zkServer.sh status`` greps ``Mode:``, the Prometheus exporters split
``mntr`` into ``key<TAB>value`` pairs and turn every value but the version's into a number, monitoring agents match
``srvr``'s ``Name: value`` lines. So every answer here keeps ZooKeeper 3.8's text, line for line: the same labels,
the same separators, numbers printed the way Java prints them (``0.0`` for a double, ``0x1f`` for a zxid).

This module is pure: :func:`answer` turns a :class:`~embedzk.zkserver.facts.ServerFacts` into text, and the server
does the reading, the writing and the closing.

Since ZooKeeper 3.5.3 a server answers only the words of its ``4lw.commands.whitelist`` setting, and ``srvr``
always (``zkServer.sh status`` depends on it); :func:`parse_whitelist` reads that setting.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Set
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from embedzk.errors import ConfigurationError
from embedzk.zkserver.facts import ConnectionFacts, ServerFacts

__all__ = [
    "DEFAULT_WHITELIST",
    "KNOWN_WORDS",
    "NOT_SERVING",
    "ZOOKEEPER_WORDS",
    "answer",
    "is_enabled",
    "parse_whitelist",
    "word_of",
]

#: The words this server answers.
KNOWN_WORDS: frozenset[str] = frozenset(
    {"conf", "cons", "dirs", "envi", "isro", "mntr", "ruok", "srvr", "stat", "wchs"}
)

#: Every word ZooKeeper 3.8/3.9 recognises, answered or not. The ones this server does not answer (the resets
#: ``crst`` and ``srst``, the trace masks ``gtmk`` and ``stmk``, the session dumps ``dump``, ``wchc`` and ``wchp``,
#: the digest log ``hash``) are still recognised, so that a client sending one gets a line saying so instead of
#: having its four bytes taken for a frame length of some 1.9 GB.
ZOOKEEPER_WORDS: frozenset[str] = KNOWN_WORDS | frozenset(
    {"crst", "dump", "gtmk", "hash", "srst", "stmk", "wchc", "wchp"}
)

#: ZooKeeper's default ``4lw.commands.whitelist`` since 3.5.3: only ``srvr``.
DEFAULT_WHITELIST: frozenset[str] = frozenset({"srvr"})

#: The line a ZooKeeper server prints for most words while it is not serving clients (during an election).
NOT_SERVING = "This ZooKeeper instance is not currently serving requests"

# ZooKeeper enables srvr whatever the whitelist says, because its own zkServer.sh status sends it.
_ALWAYS_ENABLED = "srvr"

# A four-letter word arrives where a frame's big-endian length would; looking the four bytes up whole is all
# ZooKeeper does too (FourLetterCommands.isKnown on the int they make).
_BY_BYTES: dict[bytes, str] = {word.encode("ascii"): word for word in ZOOKEEPER_WORDS}

# Java's Long.toHexString prints a negative long as its 64-bit two's complement (an unset zxid, -1, is
# ffffffffffffffff), where Python's hex would print a minus sign.
_LONG_MASK = (1 << 64) - 1

# The "- broadcast" suffix of zk_peer_state is ZooKeeper's Zab phase; a member answering clients is past
# discovery and synchronisation, the other phases.
_PEER_STATES = {
    "leader": "leading - broadcast",
    "follower": "following - broadcast",
    "observer": "observing - broadcast",
}


def word_of(prefix: bytes | bytearray | memoryview) -> str | None:
    """The four-letter word the first four bytes of ``prefix`` spell, or None (a frame length, or too short).

    Every word ZooKeeper recognises counts (:data:`ZOOKEEPER_WORDS`), answered here or not; case matters, as in
    ZooKeeper. Never raises, whatever the bytes.
    """
    if len(prefix) < 4:
        return None
    return _BY_BYTES.get(bytes(prefix[:4]))


def parse_whitelist(value: str | Iterable[str] | None) -> frozenset[str]:
    """The words enabled by a ``4lw.commands.whitelist`` setting: ``"stat, ruok, conf"``, ``"*"`` or a list of words.

    None is ZooKeeper's default (:data:`DEFAULT_WHITELIST`). ``*`` enables every word in :data:`KNOWN_WORDS`;
    blanks around the words and empty items are ignored, as ZooKeeper ignores them; ``srvr`` is always enabled, as
    in ZooKeeper. A word this server does not answer raises :class:`~embedzk.errors.ConfigurationError` naming it,
    where ZooKeeper would ignore it: a misspelt word would otherwise leave a command disabled with no sign why.
    """
    if value is None:
        return DEFAULT_WHITELIST
    items: Iterable[object] = [value] if isinstance(value, str) else value
    words = {_ALWAYS_ENABLED}
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"4lw.commands.whitelist: {item!r} is not a word")
        for part in item.split(","):
            word = part.strip()
            if not word:
                continue
            if word == "*":
                words |= KNOWN_WORDS
            elif word in KNOWN_WORDS:
                words.add(word)
            else:
                raise ConfigurationError(_refusal(word))
    return frozenset(words)


def _refusal(word: str) -> str:
    answered = ", ".join(sorted(KNOWN_WORDS))
    if word in ZOOKEEPER_WORDS:
        what = f"{word!r} is a ZooKeeper four-letter word that embedzk does not answer"
    elif word.lower() in KNOWN_WORDS:
        what = f"{word!r} is not a four-letter word (they are lower case: {word.lower()!r})"
    else:
        what = f"{word!r} is not a four-letter word embedzk answers"
    return f"4lw.commands.whitelist: {what}; the words it answers are {answered}, or * for all of them"


def is_enabled(word: str, whitelist: Set[str]) -> bool:
    """Whether ``word`` may be answered under ``whitelist``: listed, or ``*`` listed, or ``srvr`` (always)."""
    return word == _ALWAYS_ENABLED or word in whitelist or "*" in whitelist


def answer(word: str, facts: ServerFacts | None, whitelist: Set[str]) -> str:
    """The text a ZooKeeper 3.8 server sends back for ``word``, from ``facts``; the connection closes after it.

    ``word`` is one of :data:`ZOOKEEPER_WORDS` (as :func:`word_of` returns it; anything else raises ValueError).
    ``facts`` None means the peer is not serving clients yet (no leader known): the words that report on the
    server then answer :data:`NOT_SERVING`, as ZooKeeper's do during an election. A word not enabled by
    ``whitelist`` (see :func:`is_enabled`) answers ``"<word> is not executed because it is not in the
    whitelist.\\n"``; a ZooKeeper word this server does not implement answers a line saying so, whatever the
    whitelist, since enabling it would not help.
    """
    if word not in ZOOKEEPER_WORDS:
        raise ValueError(f"{word!r} is not a ZooKeeper four-letter word")
    if word not in KNOWN_WORDS:
        return f"{word} is not executed because embedzk does not support it.\n"
    if not is_enabled(word, whitelist):
        return f"{word} is not executed because it is not in the whitelist.\n"
    # ruok and envi do not look at the server in ZooKeeper either, so they answer during an election too; isro
    # prints "null" then.
    if word == "ruok":
        return "imok"
    if facts is None:
        if word == "envi":
            return "Environment:\n"
        return "null" if word == "isro" else NOT_SERVING + "\n"
    return _FORMATS[word](facts)


def _stat(facts: ServerFacts) -> str:
    return _server_report(facts, clients=True)


def _srvr(facts: ServerFacts) -> str:
    return _server_report(facts, clients=False)


def _server_report(facts: ServerFacts, clients: bool) -> str:
    """stat and srvr: StatCommand's text, srvr being stat without its Clients section."""
    lines = [f"Zookeeper version: {facts.version}"]
    if facts.read_only:
        lines.append("READ-ONLY mode; serving only read-only clients")
    if clients:
        lines.append("Clients:")
        lines.extend(_connection_info(connection, brief=True) for connection in facts.connections)
        lines.append("")
    lines += [
        f"Latency min/avg/max: {_long_ms(facts.latency_min_ms)}/{_average(facts.latency_avg_ms)}/"
        f"{_long_ms(facts.latency_max_ms)}",
        f"Received: {facts.packets_received}",
        f"Sent: {facts.packets_sent}",
        f"Connections: {len(facts.connections)}",
        f"Outstanding: {facts.outstanding_requests}",
        f"Zxid: 0x{_java_hex(facts.zxid)}",
        f"Mode: {facts.mode}",
        f"Node count: {facts.node_count}",
    ]
    if facts.mode == "leader":
        lines.append(
            f"Proposal sizes last/min/max: {facts.proposal_size_last}/{facts.proposal_size_min}/"
            f"{facts.proposal_size_max}"
        )
    return "".join(line + "\n" for line in lines)


def _mntr(facts: ServerFacts) -> str:
    """mntr: one ``zk_<name>\\t<value>`` line per figure, with ZooKeeper's names.

    ZooKeeper 3.8 prints the version and the state first and its gauges after them in hash order; the order here
    is that of ZooKeeper's documentation. Every value but zk_version's and zk_peer_state's is a number, since the
    Prometheus exporters turn each of them into a sample. zk_followers is ZooKeeper 3.4/3.5's name for what 3.6+
    calls zk_learners; both are printed so that dashboards of either age find theirs.
    """
    pairs: list[tuple[str, object]] = [
        ("version", facts.version),
        ("server_state", facts.mode),
    ]
    peer_state = _PEER_STATES.get(facts.mode)
    if peer_state is not None:
        pairs.append(("peer_state", peer_state))
    pairs += [
        ("avg_latency", _average(facts.latency_avg_ms)),
        ("max_latency", _long_ms(facts.latency_max_ms)),
        ("min_latency", _long_ms(facts.latency_min_ms)),
        ("packets_received", facts.packets_received),
        ("packets_sent", facts.packets_sent),
        ("num_alive_connections", len(facts.connections)),
        ("outstanding_requests", facts.outstanding_requests),
        ("znode_count", facts.node_count),
        ("watch_count", facts.watch_count),
        ("ephemerals_count", facts.ephemerals_count),
        ("approximate_data_size", facts.approximate_data_size),
        ("global_sessions", facts.global_sessions),
        ("connection_rejected", sum(facts.refused.values())),
    ]
    # ZooKeeper leaves these two out where it cannot know them (off Unix); so does this.
    if facts.open_file_descriptors >= 0:
        pairs.append(("open_file_descriptor_count", facts.open_file_descriptors))
    if facts.max_file_descriptors >= 0:
        pairs.append(("max_file_descriptor_count", facts.max_file_descriptors))
    if facts.mode == "leader":
        pairs += [
            ("learners", facts.followers),
            ("followers", facts.followers),
            ("synced_followers", facts.synced_followers),
            ("pending_syncs", facts.pending_syncs),
            ("last_proposal_size", facts.proposal_size_last),
            ("max_proposal_size", facts.proposal_size_max),
            ("min_proposal_size", facts.proposal_size_min),
        ]
    # A figure not tracked (-1) is left out rather than printed as a false value: an exporter then simply has no
    # sample for it.
    return "".join(
        f"zk_{key}\t{value}\n" for key, value in pairs if not (key in _UNTRACKED_WHEN_NEGATIVE and value == -1)
    )


_UNTRACKED_WHEN_NEGATIVE: Final = frozenset(
    {"approximate_data_size", "pending_syncs", "last_proposal_size", "max_proposal_size", "min_proposal_size"}
)


def _conf(facts: ServerFacts) -> str:
    return "".join(f"{name}={value}\n" for name, value in facts.config.items())


def _cons(facts: ServerFacts) -> str:
    # One line per connection, then an empty line, as ConsCommand prints them.
    return "".join(_connection_info(connection, brief=False) + "\n" for connection in facts.connections) + "\n"


def _envi(facts: ServerFacts) -> str:
    return "Environment:\n" + "".join(f"{name}={value}\n" for name, value in facts.environment.items())


def _wchs(facts: ServerFacts) -> str:
    return (
        f"{facts.watching_connections} connections watching {facts.watched_paths} paths\n"
        f"Total watches:{facts.watch_count}\n"
    )


def _dirs(facts: ServerFacts) -> str:
    # The log and the snapshots share one LevelDB directory, so both lines give its size, as ZooKeeper's do when
    # dataLogDir is not set apart from dataDir.
    return f"datadir_size: {facts.data_dir_size}\nlogdir_size: {facts.data_dir_size}\n"


def _isro(facts: ServerFacts) -> str:
    return "ro" if facts.read_only else "rw"


_FORMATS: dict[str, Callable[[ServerFacts], str]] = {
    "conf": _conf,
    "cons": _cons,
    "dirs": _dirs,
    "envi": _envi,
    "isro": _isro,
    "mntr": _mntr,
    "srvr": _srvr,
    "stat": _stat,
    "wchs": _wchs,
}


def _connection_info(connection: ConnectionFacts, brief: bool) -> str:
    """One connection as ServerCnxn.dumpConnectionInfo prints it (brief for stat, full for cons)."""
    # The bracketed figure is Java NIO's interest set; 1 (reading) is what an idle connection shows.
    text = (
        f" {_socket_address(connection.host, connection.port)}[1](queued={connection.queued},"
        f"recved={connection.received},sent={connection.sent}"
    )
    if not brief and connection.session_id != 0:
        text += (
            f",sid=0x{_java_hex(connection.session_id)},lop={connection.last_op},est={connection.established_ms}"
            f",to={connection.timeout_ms}"
        )
        if connection.last_xid >= 0:
            text += f",lcxid=0x{_java_hex(connection.last_xid)}"
        # A connection's latencies are whole milliseconds in ZooKeeper, its average an integer division.
        text += (
            f",lzxid=0x{_java_hex(connection.last_zxid)},lresp={connection.last_response_ms}"
            f",llat={_long_ms(connection.last_latency_ms)},minlat={_long_ms(connection.latency_min_ms)}"
            f",avglat={_long_ms(connection.latency_avg_ms)},maxlat={_long_ms(connection.latency_max_ms)}"
        )
    return text + ")"


def _socket_address(host: str, port: int) -> str:
    """A remote address as Java's InetSocketAddress prints it: ``/127.0.0.1:5000``, ``/[0:0:0:0:0:0:0:1]:5000``."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return f"/{host}:{port}"
    if isinstance(address, ipaddress.IPv6Address):
        # Java writes every group of an IPv6 address, without leading zeros and without "::".
        groups = ":".join(format(int(group, 16), "x") for group in address.exploded.split(":"))
        return f"/[{groups}]:{port}"
    return f"/{address}:{port}"


def _java_hex(value: int) -> str:
    """Long.toHexString."""
    return format(value & _LONG_MASK, "x")


def _long_ms(value: float) -> int:
    """A latency as ZooKeeper keeps it, a long count of whole milliseconds (a request under 1 ms counts 0)."""
    return int(value) if math.isfinite(value) else 0


def _average(value: float) -> str:
    """An average latency as ZooKeeper prints it: rounded half-up to 4 decimals (AvgMinMaxCounter), then as a
    Java double."""
    if not math.isfinite(value):
        return "0.0"
    rounded = Decimal(value).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return _java_double(float(rounded))


def _java_double(value: float) -> str:
    """Double.toString: the shortest digits that round-trip, in plain notation from 10^-3 up to 10^7 (always with a
    fractional part: ``3.0``), in Java's scientific notation (``1.2345E7``) outside."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    # repr gives the same shortest round-tripping digits as Java (JDK 19+); only the notation differs.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(str(d) for d in digit_tuple)
    magnitude = len(digits) + exponent - 1  # the power of ten of the first digit
    if -3 <= magnitude < 7:
        if exponent >= 0:
            return f"{sign}{digits}{'0' * exponent}.0"
        point = len(digits) + exponent
        if point > 0:
            return f"{sign}{digits[:point]}.{digits[point:]}"
        return f"{sign}0.{'0' * -point}{digits}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{magnitude}"
