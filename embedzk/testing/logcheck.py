"""The end-of-run judgement of a simulated history against the committed log.

The committed log is the order the store promises: every write takes effect at the index of the entry that carried
it (its zxid), every read sees the state after the entries up to the index its replica had applied. So a history is
linearizable if (and, given truthful zxids, only if):

1. every write whose answer the client saw is in the committed log (an acknowledged write is never lost), and its
   answer is what :class:`~embedzk.testing.treemodel.TreeModel`, replaying the log, gives at its index;
2. every read answered with the state the model has at the read's index;
3. real time agrees with the log: an operation that completed before another began has a smaller index (a write)
   or one at most as large (a synced read). A synced read that missed a completed write is a *stale read*.

Plain reads (``get``, ``tget``) are only sequentially consistent: each client's view, on one node, never goes back
in time. Unlike :func:`~embedzk.testing.linearizability.check`, this needs the zxids, but it judges every kind of
call (nested paths, sequential and ephemeral nodes, sessions that close) in one pass over the log. The simulator
runs both: the search on the flat keys, which trusts no zxid, and this on everything.

The replay also checks a promise of the replicas: the leaders' clock never goes back within the log, across changes
of leader too (mtimes, and the TTL decisions made from them, are monotonic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from embedzk.codec import decode
from embedzk.errors import DecodeError
from embedzk.replica.messages import Command
from embedzk.testing.history import describe_call, describe_output
from embedzk.testing.treemodel import TreeModel, UnsupportedOp
from embedzk.testing.workload import READ_KINDS, SYNCED_READS
from embedzk.tree.txn import CreateOp, DeleteContainerOp, MultiOp, SetDataOp

__all__ = ["LogReplay", "check_history", "describe"]

_PLAIN_READS = frozenset({"get", "tget"})
#: The operations whose time stamp the tree keeps (ctime, mtime) or decides by (a TTL's expiry). A follower's own
#: housekeeping (closing its earlier incarnation's sessions) carries the follower's clock, which nothing reads.
_TIMED = (CreateOp, SetDataOp, MultiOp, DeleteContainerOp)


@dataclass(slots=True)
class LogReplay:
    """The committed log decoded and replayed: each index's result, and which request each entry answered."""

    #: request (origin, request id) -> the index of the entry that carried it.
    zxids: dict[tuple[str, int], int] = field(default_factory=dict)
    #: index -> what the model answers for the entry there.
    results: dict[int, tuple[str, Any]] = field(default_factory=dict)
    #: The model after the last entry.
    model: TreeModel = field(default_factory=TreeModel)
    last: int = 0
    problems: list[str] = field(default_factory=list)


def describe(call: Any) -> str:
    """One line for a call record: who, where, when, what, and the answer."""
    end = "?" if call.ret is None else f"{call.ret:.4f}"
    zxid = f" zxid={call.zxid}" if getattr(call, "zxid", None) is not None else ""
    return (
        f"client {call.client} @{call.node} [{call.call:.4f}, {end}] {describe_call(call.kind, call.input)} -> "
        f"{describe_output(call.output)}{zxid}"
    )


def _read(model: TreeModel, kind: str, path: str) -> tuple[str, Any]:
    return model.children(path) if kind == "tsync_children" else model.get(path)


def _agrees(expected: tuple[str, Any], output: Any) -> bool:
    return output == expected or (output[0] == "ok" and expected[0] == "ok" and output[1] is None)


def check_history(
    committed: Mapping[int, tuple[int, bytes]], calls: Sequence[Any], last: int
) -> tuple[LogReplay, list[str]]:
    """Replay ``committed`` (index -> (term, data)) up to ``last`` and judge ``calls`` (the simulator's records:
    ``kind``, ``input``, ``output``, ``call``, ``ret``, ``node``, ``client``, ``zxid`` for reads, ``request`` for
    writes). Returns the replay and the problems found (empty: the history passes)."""
    replay = LogReplay()
    problems = replay.problems
    reads = sorted((c for c in calls if _judged_read(c)), key=lambda c: c.zxid)
    pending = iter(reads)
    next_read = next(pending, None)
    model = replay.model
    last_time: tuple[int, int, int] | None = None  # index, term, time stamp of the latest timed entry
    for index in range(1, last + 1):
        while next_read is not None and next_read.zxid < index:
            _judge_read(model, next_read, problems)
            next_read = next(pending, None)
        entry = committed.get(index)
        if entry is None:
            problems.append(f"no record of committed entry {index}: the log cannot be replayed past {index - 1}")
            return replay, problems
        command = _command(entry[1])
        if command is None:
            continue
        txn = command.txn
        if isinstance(txn.op, _TIMED):
            term = entry[0]
            if last_time is not None and txn.time_ms < last_time[2]:
                problems.append(
                    f"the leader's time goes back in the log: entry {index} (term {term}) is stamped "
                    f"{txn.time_ms} ms, entry {last_time[0]} (term {last_time[1]}) {last_time[2]} ms"
                )
            if last_time is None or txn.time_ms >= last_time[2] or term != last_time[1]:
                last_time = (index, term, txn.time_ms)
        try:
            replay.results[index] = model.apply(txn.op, txn.session_id)
        except UnsupportedOp as exc:
            problems.append(f"entry {index}: {exc}")
            return replay, problems
        if command.request_id > 0:
            replay.zxids[(command.origin, command.request_id)] = index
    replay.last = last
    for read in [next_read, *pending]:
        if read is not None and read.zxid <= last:
            _judge_read(model, read, problems)
    _judge_writes(replay, calls, problems)
    _judge_real_time(replay, calls, problems)
    _judge_sessions(replay, calls, problems)
    return replay, problems


def _judged_read(call: Any) -> bool:
    # A read answered at a known zxid, with a value or with NoNode (any other error decided nothing).
    return (
        call.kind in READ_KINDS
        and call.kind != "watch"
        and call.ret is not None
        and call.zxid is not None
        and call.output is not None
        and (call.output[0] == "ok" or call.output == ("err", "NoNode"))
    )


def _command(data: bytes) -> Command | None:
    if not data:
        return None
    try:
        value = decode(data)
    except DecodeError:
        return None
    return value if isinstance(value, Command) else None


def _judge_read(model: TreeModel, call: Any, problems: list[str]) -> None:
    expected = _read(model, call.kind, call.input[0])
    if not _agrees(expected, call.output):
        problems.append(
            f"read answered {describe_output(call.output)} but at zxid {call.zxid} the committed log gives "
            f"{describe_output(expected)}: {describe(call)}"
        )


def _write_zxid(replay: LogReplay, call: Any) -> int | None:
    return replay.zxids.get(call.request) if call.request is not None else None


def _judge_writes(replay: LogReplay, calls: Iterable[Any], problems: list[str]) -> None:
    for call in calls:
        if call.kind in READ_KINDS or call.ret is None or call.output is None:
            continue
        zxid = _write_zxid(replay, call)
        if zxid is None:
            if call.output[0] == "ok":
                problems.append(f"lost write: answered ok but no committed entry carries it: {describe(call)}")
            continue
        expected = replay.results.get(zxid)
        if expected is not None and not _agrees(expected, call.output):
            problems.append(
                f"write answered {describe_output(call.output)} but its entry {zxid} gives "
                f"{describe_output(expected)} in the committed log: {describe(call)}"
            )


def _judge_real_time(replay: LogReplay, calls: Iterable[Any], problems: list[str]) -> None:
    # (time, 0 for a call / 1 for a return, n, call, zxid): calls sort before returns at equal times (concurrent).
    events: list[tuple[float, int, int, Any, int]] = []
    for n, call in enumerate(calls):
        if call.kind in _PLAIN_READS or call.kind == "watch":
            continue
        if call.kind in SYNCED_READS:
            if call.ret is None or call.zxid is None or call.output is None or call.output[0] != "ok":
                continue
            zxid = call.zxid
        else:
            found = _write_zxid(replay, call)
            if found is None:
                continue
            zxid = found
        events.append((call.call, 0, n, call, zxid))
        if call.ret is not None:
            events.append((call.ret, 1, n, call, zxid))
    events.sort(key=lambda e: e[:3])
    latest: tuple[int, Any] | None = None  # the largest zxid among completed operations, and which one
    for _when, kind, _n, call, zxid in events:
        if kind == 1:
            if latest is None or zxid > latest[0]:
                latest = (zxid, call)
            continue
        if latest is None:
            continue
        if call.kind in SYNCED_READS and zxid < latest[0]:
            problems.append(
                f"stale read: a synced read at zxid {zxid} missed {describe(latest[1])}, which completed at zxid "
                f"{latest[0]} before the read began: {describe(call)}"
            )
        elif call.kind not in SYNCED_READS and zxid <= latest[0]:
            problems.append(
                f"real-time order broken: a write took effect at zxid {zxid}, before {describe(latest[1])} "
                f"(zxid {latest[0]}), which completed before the write began: {describe(call)}"
            )


def _judge_sessions(replay: LogReplay, calls: Iterable[Any], problems: list[str]) -> None:
    # A client talking to one node (one incarnation) never sees the past again, and reads its own writes.
    latest: dict[tuple[int, str], Any] = {}
    for call in sorted((c for c in calls if c.ret is not None and c.kind != "watch"), key=lambda c: c.call):
        zxid = call.zxid if call.kind in READ_KINDS else _write_zxid(replay, call)
        if zxid is None:
            continue
        key = (call.client, call.node)
        before = latest.get(key)
        if before is not None and zxid < before[0]:
            problems.append(f"went back in time: {describe(call)} after {describe(before[1])}")
        if before is None or zxid >= before[0]:
            latest[key] = (zxid, call)
