"""Raft scenarios as data: a script of inputs to a cluster and, under each input, the trace it must produce.

The files are ``tests/testdata/raft/*.txt``, in the datadriven form of etcd-io/raft's ``testdata``; the test is
``tests/test_raft_scenarios.py``, which runs every file through :func:`run_file` on the harness of
:mod:`tests.raft_harness`. A file is a sequence of blocks::

    # Comments (and blank lines) before a command are kept as they are.
    campaign a
    ----
    a became pre-candidate at term 0

A block is one command line, a line ``----``, then the expected output up to the next blank line (an output has
no blank line in it; a command with nothing to say prints ``ok``). Any behaviour change of the consensus core shows
as a difference between a trace and its file: the test fails with a unified diff of each block that differs,
named by file and line.

Adding a scenario, or taking a changed trace
--------------------------------------------

1. Write ``tests/testdata/raft/<name>.txt``: comments saying which rule (thesis section) it checks and what to look
   for, and the commands, each followed by a line ``----`` and nothing else (or an old trace).
2. Fill in the traces: ``EMBEDZK_REWRITE=1 python -m pytest -q tests/test_raft_scenarios.py -k <name>``.
3. Read every line of the new trace (``git diff``) and check it against the rule before committing it: a trace is
   what the code does, not what it should do, until someone has read it.

The same flag rewrites the traces after a deliberate change of behaviour; the diff of the files is then the
change to review.

Commands
--------

Nodes are named by their ids; ``key=value`` arguments are optional, lists are written ``(x,y,z)``; a DATA or
CONTEXT is one word without ``=``.

``add-nodes a b c [learners=(l)] [log=(1,1)] [log-c=(1)] [term=2] [prevote=false] [checkquorum=false]
[election=10] [heartbeat=1] [max-size=N] [max-inflight=N]``
    Start the cluster (once per file): voters a, b, c and the learners, every one with a log holding entries
    1.. of the terms ``log`` (``log-<id>`` for one node), nothing known to be committed, in the term ``term``
    (by default its last entry's). Prints every node's state.
``campaign a``, ``propose a DATA``, ``read-index a CONTEXT``, ``transfer-leadership a TO``
    The input to ``a``; prints the node's change of role or term (``ok`` if none), or ``dropped: reason`` for a
    refused proposal or read.
``tick a [b ...] [n=1]``, ``tick-heartbeat a [b ...]``, ``tick-election a [b ...]``
    Tick the nodes once (``n`` times), a heartbeat timeout's worth, or an election timeout's worth (the minimum:
    a follower's randomized timeout may be up to twice that). Prints changes of role or term.
``process-ready a [b ...]``
    Carry out every Ready of the nodes (as the driver of :mod:`embedzk.consensus` must); prints each Ready.
``deliver-msgs a [b ...]``
    Deliver every message queued for the nodes, in the order sent; prints them and the changes they cause.
    Messages across a cut are dropped (and printed as such).
``stabilize [a b ...] [quiet=true]``
    Process and deliver until nothing moves (among the nodes named, or all): each round, every node with a Ready
    carries it out, then every node with messages waiting takes them. ``quiet=true`` prints only ``ok``.
``elect a``
    ``campaign a`` then a quiet ``stabilize``; prints every node's state (a short way to set a scene up).
``isolate a``, ``heal``
    Cut every link to and from ``a``; restore every link.
``status [a ...]``, ``progress a``, ``log a``
    Print the nodes' state; the leader ``a``'s view of every member's progress; ``a``'s log.

Notation of the traces
----------------------

``> a handling Ready`` is followed by the Ready's parts, in the order the driver carries them out (``EarlyMessages``
leave before the Ready is durable, ``Messages`` after). ``> b receiving messages`` lists each message delivered,
followed by the role or term change it caused in ``b``, if any. A message is ``from->to TYPE Term:t``, then what
its type carries: ``Log:term/index`` (the entry before the appended ones, the acknowledged index, or the candidate's
last entry), ``Commit:``, ``Rejected`` (for an append: ``Index:`` the index refused, ``Hint:term/index`` the
follower's guess of the last entry that may match), ``Context:``, ``Entries:[term/index ...]``. A node's state is
``id: role Term: Lead: Vote: Commit: Applied: LastIndex:``.
"""

from __future__ import annotations

import difflib
import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embedzk.consensus import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    Ready,
    ReadState,
    SnapshotMeta,
    SoftState,
    StateRole,
    decode_conf_change,
)
from embedzk.persist.memory import MemoryStorage
from tests.raft_harness import Driver, Network, Observer

__all__ = ["REWRITE_ENV", "Block", "Mismatch", "ScenarioError", "parse", "run_file", "run_text"]

#: Set to 1 to write the traces the code produces into the files instead of comparing them.
REWRITE_ENV = "EMBEDZK_REWRITE"

SEPARATOR = "----"


class ScenarioError(Exception):
    """A scenario file that cannot be run: a bad command or argument, named by file and line."""


# --- the file -----------------------------------------------------------------------------------------------------


@dataclass
class Block:
    """One command of a scenario file, with the text before it and the output expected of it."""

    #: Comments and blank lines before the command, verbatim.
    before: list[str]
    command: str
    #: The command's line number (from 1).
    line: int
    expected: list[str]


@dataclass
class Mismatch:
    """A command whose output differs from the file's."""

    block: Block
    actual: list[str]

    def diff(self, name: str) -> str:
        """The difference, as a unified diff named by ``name`` and the command's line."""
        lines = difflib.unified_diff(
            self.block.expected, self.actual, f"expected ({name}:{self.block.line})", "actual", lineterm="", n=2
        )
        return f"{name}:{self.block.line}: {self.block.command}\n" + "\n".join(lines)


def parse(text: str, name: str = "<scenario>") -> tuple[list[Block], list[str]]:
    """The blocks of a scenario file, and the lines after the last one."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blocks: list[Block] = []
    before: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            before.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ScenarioError(f"{name}:{i + 1}: {line!r} is not followed by a line {SEPARATOR!r}")
        expected: list[str] = []
        j = i + 2
        while j < len(lines) and lines[j].strip():
            expected.append(lines[j])
            j += 1
        blocks.append(Block(before, line, i + 1, expected))
        before = []
        i = j + 1  # the blank line that ends the output
    return blocks, before


def render(blocks: Sequence[Block], outputs: Sequence[list[str]], tail: Sequence[str]) -> str:
    """A scenario file with ``outputs`` under its commands."""
    out: list[str] = []
    for k, (block, output) in enumerate(zip(blocks, outputs, strict=True)):
        out.extend(block.before)
        out.append(block.command)
        out.append(SEPARATOR)
        out.extend(output)
        if k < len(blocks) - 1 or tail:
            out.append("")
    out.extend(tail)
    return "\n".join(out) + "\n"


def run_text(text: str, name: str = "<scenario>") -> tuple[list[Block], list[str], list[list[str]]]:
    """Run a scenario: its blocks, the lines after them, and each command's output."""
    blocks, tail = parse(text, name)
    runner = Runner()
    outputs = []
    for block in blocks:
        try:
            outputs.append(runner.run(block.command))
        except ScenarioError as exc:
            raise ScenarioError(f"{name}:{block.line}: {block.command}: {exc}") from None
    return blocks, tail, outputs


def run_file(path: Path, rewrite: bool = False) -> list[Mismatch]:
    """Run the scenario in ``path``: the commands whose output differs from the file's (with ``rewrite``, the file
    takes the new outputs instead, and nothing differs)."""
    text = path.read_text()
    blocks, tail, outputs = run_text(text, path.name)
    if rewrite:
        new = render(blocks, outputs, tail)
        if new != text:
            path.write_text(new)
        return []
    return [Mismatch(b, out) for b, out in zip(blocks, outputs, strict=True) if out != b.expected]


# --- notation -----------------------------------------------------------------------------------------------------


def quote(data: bytes) -> str:
    """Bytes as a double-quoted string."""
    return json.dumps(data.decode("utf-8", "backslashreplace"))


def fmt_entry(e: Entry) -> str:
    """``term/index EntryNormal "data"``, or the membership change an entry holds."""
    if e.type == EntryType.CONF_CHANGE:
        cc = decode_conf_change(e)
        body = f"EntryConfChange {cc.type.name} {cc.node_id}" if cc is not None else "EntryConfChange (undecodable)"
    else:
        body = f"EntryNormal {quote(e.data)}"
    return f"{e.term}/{e.index} {body}"


def fmt_members(cs: ConfState) -> str:
    """``Voters:(a b c)``, and the learners if any."""
    out = f"Voters:({' '.join(cs.voters)})"
    if cs.learners:
        out += f" Learners:({' '.join(cs.learners)})"
    return out


def fmt_meta(meta: SnapshotMeta) -> str:
    """A snapshot's ``term/index`` and membership."""
    return f"{meta.term}/{meta.index} {fmt_members(meta.conf_state)}"


_LOG_TYPES = frozenset({MessageType.APP, MessageType.APP_RESP, MessageType.VOTE, MessageType.PRE_VOTE})
_COMMIT_TYPES = frozenset({MessageType.APP, MessageType.HEARTBEAT})


def fmt_message(m: Message) -> str:
    """``from->to TYPE Term:t`` and the fields its type uses (see the module docstring)."""
    parts = [f"{m.frm}->{m.to} {m.type.name} Term:{m.term}"]
    rejected_append = m.type == MessageType.APP_RESP and m.reject
    if m.type == MessageType.READ_INDEX_RESP:
        parts.append(f"Index:{m.index}")
    elif m.type == MessageType.SNAP_RESP:
        parts.append(f"Snapshot:{m.log_term}/{m.index}")
    elif rejected_append:
        pass  # below
    elif m.type in _LOG_TYPES or m.index or m.log_term:
        parts.append(f"Log:{m.log_term}/{m.index}")
    if m.type in _COMMIT_TYPES or m.commit:
        parts.append(f"Commit:{m.commit}")
    if rejected_append:
        parts.append(f"Rejected Index:{m.index} Hint:{m.log_term}/{m.reject_hint}")
    elif m.reject:
        parts.append("Rejected")
    if m.context:
        parts.append(f"Context:{quote(m.context)}")
    if m.entries:
        parts.append("Entries:[" + ", ".join(fmt_entry(e) for e in m.entries) + "]")
    if m.snapshot is not None:
        parts.append(f"Snapshot:{fmt_meta(m.snapshot)}")
    if m.type in (MessageType.SNAP, MessageType.SNAP_RESP):
        parts.append(f"ChunkIndex:{m.chunk_index}")
    if m.type == MessageType.SNAP:
        parts.append(f"ChunkCount:{m.chunk_count} ({len(m.chunk)} bytes)")
    return " ".join(parts)


def fmt_soft(soft: SoftState) -> str:
    """``Lead:a State:leader``."""
    return f"Lead:{soft.lead or '-'} State:{soft.role.value}"


def fmt_hard(hs: HardState) -> str:
    """``HardState Term:1 Vote:a Commit:0``."""
    return f"HardState Term:{hs.term} Vote:{hs.vote or '-'} Commit:{hs.commit}"


def fmt_read_state(rs: ReadState) -> str:
    """``Index:2 Context:"r1"``."""
    return f"Index:{rs.index} Context:{quote(rs.request_ctx)}"


def fmt_ready(rd: Ready) -> list[str]:
    """A Ready's parts, in the order the driver carries them out."""
    out = [f"Ready MustSync={str(rd.must_sync).lower()}:"]
    if rd.soft_state is not None:
        out.append(fmt_soft(rd.soft_state))
    if rd.hard_state is not None:
        out.append(fmt_hard(rd.hard_state))
    if rd.early_messages:
        out.append("EarlyMessages:")
        out.extend(fmt_message(m) for m in rd.early_messages)
    if rd.snapshot is not None:
        meta, chunks = rd.snapshot
        out.append(f"Snapshot:{fmt_meta(meta)} ({len(chunks)} chunks)")
    if rd.entries:
        out.append("Entries:")
        out.extend(fmt_entry(e) for e in rd.entries)
    if rd.messages:
        out.append("Messages:")
        out.extend(fmt_message(m) for m in rd.messages)
    if rd.committed_entries:
        out.append("CommittedEntries:")
        out.extend(fmt_entry(e) for e in rd.committed_entries)
    if rd.read_states:
        out.append("ReadStates:")
        out.extend(fmt_read_state(rs) for rs in rd.read_states)
    return out


# --- the runner ---------------------------------------------------------------------------------------------------


@dataclass
class Args:
    """A command's arguments: words, and ``key=value`` options (read each at most once, so a misspelt option is
    an error)."""

    words: list[str]
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Args:
        """Split ``text`` (the command line without the command)."""
        args = cls([])
        for token in text.split():
            key, eq, value = token.partition("=")
            if eq:
                args.options[key] = value
            else:
                args.words.append(token)
        return args

    def take(self, key: str) -> str | None:
        """The raw value of option ``key``, if given."""
        return self.options.pop(key, None)

    def flag(self, key: str, default: bool) -> bool:
        """A true/false option."""
        value = self.take(key)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise ScenarioError(f"{key}={value}: true or false")
        return value == "true"

    def number(self, key: str, default: int) -> int:
        """An integer option."""
        value = self.take(key)
        try:
            return default if value is None else int(value)
        except ValueError:
            raise ScenarioError(f"{key}={value}: not a number") from None

    def items(self, key: str) -> list[str] | None:
        """A list option, ``(x,y,z)``."""
        value = self.take(key)
        if value is None:
            return None
        if not (value.startswith("(") and value.endswith(")")):
            raise ScenarioError(f"{key}={value}: a list is written (x,y,z)")
        inner = value[1:-1]
        return [v for v in inner.split(",") if v] if inner else []

    def done(self) -> None:
        """Refuse options nobody read."""
        if self.options:
            raise ScenarioError(f"unknown option(s): {', '.join(sorted(self.options))}")


class Runner(Observer):
    """Runs the commands of one scenario on a :class:`Network`, tracing every Ready and delivery."""

    def __init__(self) -> None:
        self._net: Network | None = None
        self.out: list[str] = []
        self.quiet = False
        self._before_ready: tuple[StateRole, int] | None = None
        self.commands: dict[str, Callable[[Args], None]] = {
            "add-nodes": self.add_nodes,
            "campaign": self.campaign,
            "propose": self.propose,
            "read-index": self.read_index,
            "transfer-leadership": self.transfer_leadership,
            "tick": self.tick,
            "tick-heartbeat": self.tick_heartbeat,
            "tick-election": self.tick_election,
            "process-ready": self.process_ready,
            "deliver-msgs": self.deliver_msgs,
            "stabilize": self.stabilize,
            "elect": self.elect,
            "isolate": self.isolate,
            "heal": self.heal,
            "status": self.status,
            "progress": self.progress,
            "log": self.log,
        }

    # --- plumbing ----------------------------------------------------------------------------------------------

    @property
    def net(self) -> Network:
        """The cluster (after ``add-nodes``)."""
        if self._net is None:
            raise ScenarioError("no nodes yet: add-nodes first")
        return self._net

    def run(self, line: str) -> list[str]:
        """Run one command line; its output."""
        name, _, rest = line.strip().partition(" ")
        command = self.commands.get(name)
        if command is None:
            raise ScenarioError(f"unknown command {name!r}")
        args = Args.parse(rest)
        self.out = []
        command(args)
        args.done()
        out = self.out or ["ok"]
        if any(not line.strip() for line in out):
            raise ScenarioError("an output line is blank")  # it would end the block
        return out

    def emit(self, line: str, indent: int = 0) -> None:
        """One line of output (none in quiet mode)."""
        if not self.quiet:
            self.out.append(" " * indent + line)

    def driver(self, id: str) -> Driver:
        """The driver of node ``id``."""
        if id not in self.net.drivers:
            raise ScenarioError(f"no node {id!r}")
        return self.net.driver(id)

    def ids(self, args: Args, at_least: int = 1) -> list[str]:
        """The node ids among the arguments (every node when none is named and ``at_least`` is 0)."""
        if not args.words:
            if at_least:
                raise ScenarioError("name a node")
            return list(self.net.drivers)
        for id in args.words:
            self.driver(id)
        return list(args.words)

    def role_term(self, id: str) -> tuple[StateRole, int]:
        """The role and term of ``id``."""
        node = self.driver(id).node
        return node.role, node.term

    def changed(self, id: str, before: tuple[StateRole, int], indent: int) -> None:
        """Say so if ``id``'s role or term is no longer ``before``."""
        role, term = self.role_term(id)
        if (role, term) != before:
            self.emit(f"{id} became {role.value} at term {term}", indent)

    def on_input(self, id: str, action: Callable[[], object]) -> None:
        """Give ``id`` an input; say what it changed, or why it was refused."""
        before = self.role_term(id)
        try:
            action()
        except ProposalDroppedError as exc:
            self.emit(f"dropped: {exc}")
        self.changed(id, before, 0)

    # --- the harness's hooks -------------------------------------------------------------------------------------

    def on_ready(self, driver: Driver, rd: Ready) -> None:
        self._before_ready = self.role_term(driver.id)
        self.emit(f"> {driver.id} handling Ready")
        for line in fmt_ready(rd):
            self.emit(line, 2)

    def on_advance(self, driver: Driver, rd: Ready) -> None:
        assert self._before_ready is not None
        self.changed(driver.id, self._before_ready, 2)

    # --- commands ------------------------------------------------------------------------------------------------

    def add_nodes(self, args: Args) -> None:
        if self._net is not None:
            raise ScenarioError("add-nodes runs once")
        voters = list(args.words)
        if not voters:
            raise ScenarioError("name the voters")
        learners = args.items("learners") or []
        log = args.items("log") or []
        term = args.number("term", 0)
        members = ConfState(voters=tuple(voters), learners=tuple(learners))
        storages: dict[str, MemoryStorage] = {}
        for id in voters + learners:
            terms = args.items(f"log-{id}")
            try:
                own = [int(t) for t in (log if terms is None else terms)]
            except ValueError:
                raise ScenarioError(f"a log is a list of terms: {terms or log}") from None
            storage = storages[id] = MemoryStorage(members)
            if own or term:
                entries = [Entry(term=t, index=i + 1) for i, t in enumerate(own)]
                storage.append(entries, HardState(term=max([term, *own])))
        self._net = Network(
            voters,
            learners=learners,
            storages=storages,
            pre_vote=args.flag("prevote", True),
            check_quorum=args.flag("checkquorum", True),
            election_tick=args.number("election", 10),
            heartbeat_tick=args.number("heartbeat", 1),
            max_size_per_msg=args.number("max-size", 1 << 20),
            max_inflight_msgs=args.number("max-inflight", 256),
        )
        self._net.observer = self
        self.status(Args([]))

    def campaign(self, args: Args) -> None:
        (id,) = self.ids(args)
        self.on_input(id, self.driver(id).node.campaign)

    def propose(self, args: Args) -> None:
        id, data = self._two(args, "propose NODE DATA")
        self.on_input(id, lambda: self.driver(id).node.propose(data.encode()))

    def read_index(self, args: Args) -> None:
        id, ctx = self._two(args, "read-index NODE CONTEXT")
        self.on_input(id, lambda: self.driver(id).node.read_index(ctx.encode()))

    def transfer_leadership(self, args: Args) -> None:
        id, to = self._two(args, "transfer-leadership NODE TO")
        self.on_input(id, lambda: self.driver(id).node.transfer_leadership(to))

    def _two(self, args: Args, usage: str) -> tuple[str, str]:
        if len(args.words) != 2:
            raise ScenarioError(f"usage: {usage}")
        self.driver(args.words[0])
        return args.words[0], args.words[1]

    def _tick(self, ids: Iterable[str], n: int) -> None:
        for id in ids:

            def ticks(node: RawNode = self.driver(id).node) -> None:
                for _ in range(n):
                    node.tick()

            self.on_input(id, ticks)

    def tick(self, args: Args) -> None:
        self._tick(self.ids(args), args.number("n", 1))

    def tick_heartbeat(self, args: Args) -> None:
        ids = self.ids(args)
        self._tick(ids, self.driver(ids[0]).node.raft.heartbeat_timeout)

    def tick_election(self, args: Args) -> None:
        ids = self.ids(args)
        self._tick(ids, self.driver(ids[0]).node.raft.election_timeout)

    def process_ready(self, args: Args) -> None:
        for id in self.ids(args):
            self.net.process([id])

    def deliver_msgs(self, args: Args) -> None:
        for id in self.ids(args):
            self._deliver(id)

    def _deliver(self, id: str) -> bool:
        """Deliver what waits for ``id``; False if nothing did."""
        net = self.net
        msgs = [m for m in net.queue if m.to == id]
        if not msgs:
            return False
        net.queue = deque(m for m in net.queue if m.to != id)
        dropped = [m for m in msgs if (m.frm, m.to) in net.cut]
        if dropped:
            self.emit(f"> {id} cut off, dropping")
            for m in dropped:
                self.emit(fmt_message(m), 2)
        delivered = [m for m in msgs if (m.frm, m.to) not in net.cut]
        if delivered:
            self.emit(f"> {id} receiving messages")
            for m in delivered:
                self.emit(fmt_message(m), 2)
                before = self.role_term(id)
                net.deliver(m)
                self.changed(id, before, 2)
        return True

    def stabilize(self, args: Args) -> None:
        quiet = args.flag("quiet", False)
        ids = self.ids(args, at_least=0)
        self.quiet = quiet
        try:
            for _ in range(10_000):
                moved = False
                for id in ids:
                    if self.driver(id).node.has_ready():
                        moved = True
                        self.net.process([id])
                for id in ids:
                    moved = self._deliver(id) or moved
                if not moved:
                    return
            raise ScenarioError("the cluster did not settle")
        finally:
            self.quiet = False

    def elect(self, args: Args) -> None:
        (id,) = self.ids(args)
        self.quiet = True
        try:
            self.driver(id).node.campaign()
        finally:
            self.quiet = False
        self.stabilize(Args([], {"quiet": "true"}))
        self.status(Args([]))

    def isolate(self, args: Args) -> None:
        (id,) = self.ids(args)
        self.net.isolate(id)

    def heal(self, args: Args) -> None:
        self.net.heal()

    def status(self, args: Args) -> None:
        for id in self.ids(args, at_least=0):
            st = self.driver(id).node.status()
            self.emit(
                f"{id}: {st.role.value} Term:{st.term} Lead:{st.lead or '-'} Vote:{st.vote or '-'} "
                f"Commit:{st.commit} Applied:{st.applied} LastIndex:{st.last_index}"
            )

    def progress(self, args: Args) -> None:
        (id,) = self.ids(args)
        progress = self.driver(id).node.status().progress
        if not progress:
            self.emit(f"{id} is not the leader")
        for member, pr in progress.items():
            flags = (" learner" if pr.is_learner else "") + (" paused" if pr.paused else "")
            self.emit(f"{member}: {pr.state} Match:{pr.match} Next:{pr.next} Inflight:{pr.inflight}{flags}")

    def log(self, args: Args) -> None:
        (id,) = self.ids(args)
        log = self.driver(id).node.raft.log
        entries = log.slice(log.first_index(), log.last_index() + 1) if log.last_index() >= log.first_index() else []
        if not entries:
            self.emit("(empty)")
        for e in entries:
            self.emit(fmt_entry(e))
