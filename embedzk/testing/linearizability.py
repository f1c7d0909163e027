"""A linearizability checker for histories of a ZooKeeper-like store, and a simpler check for plain reads.

:func:`check` decides whether a history (a list of :class:`~embedzk.testing.history.Operation`) is linearizable
with respect to a sequential :class:`Model` of the store: whether there is one total order of the operations that
respects real time (an operation that returned before another was invoked comes first) and in which every answer
is the one the model gives. It is the search of Wing & Gong ("Testing and verifying concurrent objects", 1993)
with the memoization of Lowe ("Testing for linearizability", 2017), organised as Porcupine does it
(github.com/anishathalye/porcupine, ``checker.go``):

* the history is split into independent partitions by key (Herlihy & Wing's locality: a history is linearizable
  iff each object's sub-history is); a ``multi`` that touches several paths joins their partitions, through a
  union-find;
* each partition becomes a doubly linked list of call and return entries in time order; the candidates to
  linearize next are the calls that precede the first return still in the list (any of them may take effect
  first; none invoked after that return may); a linearized operation is lifted out of the list (both its
  entries) and put back when the search backtracks, as in Knuth's dancing links;
* Lowe's cache: a search node is the set of linearized operations (a bitset) and the model state; one reached
  before and abandoned is not searched again.

Unknown outcomes (``ret`` None: a timeout, a crash) are what makes this search explode, since each may or may not
have happened, anywhere after its call. Such an operation has no return entry, so nothing ever has to wait for it,
and its output is unconstrained. "Never" needs no branch of its own: the
search succeeds once every operation with a known outcome is placed, and the unknown ones left over did not happen.
Where to place the others is kept affordable by a canonical form (see :class:`_Search`), by subset dominance in
Lowe's cache (a node that needs more unknown operations than one already abandoned is abandoned too), and by a
first pass that allows at most one unknown operation just before each known one, which nearly always suffices.

The search's verdict never depends on the order in which it tries candidates, but its speed does: where
operations carry zxids it tries the store's own order first (writes at their zxid, reads after the writes they
saw), which turns the search into a near straight walk. A multi-key partition is also checked one key at a time
first (a necessary condition: :meth:`Model.restrict`), which finds most violations in a fraction of the time and
explains them on one key.

:func:`linearizable_subset` drops plain ``get`` calls, which ZooKeeper (and embedzk) serve from the local replica:
they are sequentially consistent, not linearizable. :func:`check_client_order` checks those: each client's
operations see non-decreasing zxids, and every read returns the value the committed writes, replayed in zxid
order, give at the zxid it read at.

Cost, measured on one loaded core with histories generated like the simulator's (tests/test_linearizability.py):
2,000 operations over 8 keys and 8 clients check in about 0.03 s without multis, and 0.2-0.5 s with 10-15% multis
(which join every key into one partition) and a few unknown outcomes; a violation in such a history is proved in
0.03-0.15 s (found key by key). The simulator's own runs (30-450 operations) take at most 0.1 s. The worst case
stays exponential: without zxids, dozens of unresolved unknown outcomes in one multi-key partition can outlast any
``timeout``, hence the advice in :mod:`embedzk.testing.history` on resolving them from the log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from embedzk.testing.history import READ_KINDS, WRITE_KINDS, Operation

__all__ = [
    "DECIDED_ERRORS",
    "CheckResult",
    "Model",
    "OrderResult",
    "ZnodeModel",
    "ZnodeState",
    "check",
    "check_client_order",
    "linearizable_subset",
]

State = TypeVar("State", bound=Hashable)


# --------------------------------------------------------------------------------------------------------------------
# Models


class Model(Protocol[State]):
    """A sequential specification: what one operation does to a state, and what it may answer.

    States must be hashable and compare by value: the search caches them (Lowe). A model may inherit from this
    class for the defaults of :meth:`partition`, :meth:`effectless` and the two describe methods.
    """

    def init(self) -> State:
        """The state before any operation."""
        ...

    def step(self, state: State, op: Operation) -> Sequence[State]:
        """The states ``op`` may lead to from ``state`` given its recorded output; empty: it cannot happen here.

        ``op.output`` None means any output is acceptable: return the states of every outcome the model allows.
        """
        ...

    def partition(self, op: Operation) -> Collection[Hashable]:
        """The keys ``op`` touches. Operations sharing a key are checked together; others independently.

        The premise, which the search also relies on inside a partition: operations with no key in common
        commute, and neither affects what the other may answer. The default puts every operation in one partition.
        """
        return ("*",)

    def effectless(self, op: Operation) -> bool:
        """True if ``op`` never changes the state whatever it answers (so an unknown outcome of it is irrelevant)."""
        return False

    def restrict(self, op: Operation, key: Hashable) -> Operation | None:
        """``op`` cut down to what it does to ``key``, or None if the model cannot say (the default).

        The cut may be weaker than ``op`` (accept more), never stronger: a history that is linearizable must stay
        so once every operation is cut down to one key. :func:`check` uses it to find single-key violations fast.
        """
        return None

    def describe_state(self, state: State) -> str:
        """A state, for a human."""
        return repr(state)

    def describe_step(self, state: State, op: Operation) -> str:
        """What the model says ``op`` would answer in ``state``, for a human reading a failure."""
        return ""


#: Error codes the store decides when it applies an operation; the model checks them. Any other error code is
#: read as "refused before it reached the log": the operation changed nothing.
DECIDED_ERRORS = frozenset({"NoNode", "NodeExists", "BadVersion", "NotEmpty"})

#: A :class:`ZnodeModel` state: ``(path, (data, version))`` for every present path, sorted by path (absent paths
#: are left out). A tuple rather than a dict so that it hashes, for the cache.
ZnodeState = tuple[tuple[str, tuple[bytes, int]], ...]

_NO_NODE = ("err", "NoNode")
_NODE_EXISTS = ("err", "NodeExists")
_BAD_VERSION = ("err", "BadVersion")
_OK_NONE = ("ok", None)


def _lookup(state: ZnodeState, path: str) -> tuple[bytes, int] | None:
    for p, node in state:
        if p == path:
            return node
    return None


def _store(state: ZnodeState, path: str, node: tuple[bytes, int] | None) -> ZnodeState:
    items = [item for item in state if item[0] != path]
    if node is not None:
        items.append((path, node))
        items.sort(key=lambda item: item[0])
    return tuple(items)


def _apply_one(state: ZnodeState, kind: str, path: str, args: Sequence[Any]) -> tuple[tuple[str, Any], ZnodeState]:
    node = _lookup(state, path)
    if kind == "create":
        if node is not None:
            return _NODE_EXISTS, state
        return ("ok", path), _store(state, path, (args[0], 0))
    if kind == "get" or kind == "sync_get":
        return (_NO_NODE if node is None else ("ok", node)), state
    if node is None:
        return _NO_NODE, state
    if kind == "set":
        data, version = args
        if version != -1 and version != node[1]:
            return _BAD_VERSION, state
        return ("ok", node[1] + 1), _store(state, path, (data, node[1] + 1))
    version = args[0]
    if version != -1 and version != node[1]:
        return _BAD_VERSION, state
    if kind == "delete":
        return _OK_NONE, _store(state, path, None)
    if kind == "check":
        return _OK_NONE, state
    raise ValueError(f"unknown operation kind {kind!r}")


def _agrees(expected: tuple[str, Any], output: Any) -> bool:
    # ("ok", None) records a success whose value was not kept: it matches any success.
    return output == expected or (output[0] == "ok" and expected[0] == "ok" and output[1] is None)


class ZnodeModel(Model[ZnodeState]):
    """The store as the checker sees it: flat paths, each absent or ``(data, version)``.

    ``create`` fails with NodeExists if the path is present and starts it at version 0; ``set`` and ``delete``
    fail with NoNode if it is absent and with BadVersion unless the version matches (-1: any); ``set`` answers the
    new version; ``get``/``sync_get`` answer ``(data, version)`` or NoNode; ``multi`` applies its sub-operations
    in order, all or nothing, and a failing one answers the code of its first failing sub-operation.
    """

    def init(self) -> ZnodeState:
        """Every path absent."""
        return ()

    def apply(self, state: ZnodeState, kind: str, input: Any) -> tuple[tuple[str, Any], ZnodeState]:
        """Run one operation: its result (``("ok", value)`` or ``("err", code)``) and the next state."""
        if kind == "multi":
            current = state
            results = []
            for sub in input:
                result, current = _apply_one(current, sub[0], sub[1], sub[2:])
                if result[0] == "err":
                    return result, state  # all or nothing
                results.append(result[1])
            return ("ok", tuple(results)), current
        return _apply_one(state, kind, input[0], input[1:])

    def step(self, state: ZnodeState, op: Operation) -> Sequence[ZnodeState]:
        """One next state, or none if ``op``'s recorded output differs from what the store would answer."""
        output = op.output
        if output is not None and output[0] == "err" and output[1] not in DECIDED_ERRORS:
            return (state,)  # refused before the log: no effect
        result, next_state = self.apply(state, op.kind, op.input)
        if output is None or _agrees(result, output):
            return (next_state,)
        return ()

    def partition(self, op: Operation) -> Collection[Hashable]:
        """The paths the operation touches (all of a multi's)."""
        return op.paths

    def effectless(self, op: Operation) -> bool:
        """Reads, and multis of checks only."""
        return op.kind in READ_KINDS or (op.kind == "multi" and all(sub[0] == "check" for sub in op.input))

    def restrict(self, op: Operation, key: Hashable) -> Operation | None:
        """A multi keeps its sub-operations on ``key``; a failed one (whose failing sub-operation may be elsewhere)
        becomes an empty multi that succeeds and changes nothing."""
        if op.kind != "multi":
            return op
        subs = tuple(sub for sub in op.input if sub[1] == key)
        if len(subs) == len(op.input):
            return op
        output = op.output
        if output is not None and output[0] == "ok" and output[1] is not None:
            output = ("ok", tuple(value for sub, value in zip(op.input, output[1]) if sub[1] == key))
        elif output is not None and output[0] == "err" and output[1] in DECIDED_ERRORS:
            subs, output = (), _OK_NONE
        return replace(op, input=subs, output=output)

    def describe_state(self, state: ZnodeState) -> str:
        """``{'/k1': b'v1' v2, '/k2': b'' v0}`` (paths not shown are absent)."""
        if not state:
            return "{} (every path absent)"
        return "{" + ", ".join(f"{path!r}: {data!r} v{version}" for path, (data, version) in state) + "}"

    def describe_step(self, state: ZnodeState, op: Operation) -> str:
        """``the store answers ok 3``."""
        result, _ = self.apply(state, op.kind, op.input)
        return f"the store answers {result[0]} {result[1]!r}"


# --------------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict of :func:`check`. ``str()`` of it is the report for a human.

    ``ok``: True (linearizable), False (not), None (the timeout struck first). On False or None, ``keys`` and
    ``operations`` are the partition that failed (or was being searched); on False, ``longest`` is the longest
    linearizable prefix the search found, in linearization order (unknown-outcome operations in it are placed
    where they took effect), ``states`` the model state after each of its steps, and ``stuck`` the pending
    operations, none of which can come next.
    """

    ok: bool | None
    partitions: int = 0
    operations_checked: int = 0
    elapsed: float = 0.0
    keys: tuple[Hashable, ...] = ()
    operations: tuple[Operation, ...] = ()
    longest: tuple[Operation, ...] = ()
    states: tuple[Any, ...] = ()
    stuck: tuple[Operation, ...] = ()
    explanation: str = ""

    def __str__(self) -> str:
        if self.explanation:
            return self.explanation
        return (
            f"linearizable: {self.operations_checked} operations in {self.partitions} partitions, "
            f"checked in {self.elapsed:.3f}s"
        )


@dataclass(slots=True)
class _Outcome:
    ok: bool
    longest: list[int] = field(default_factory=list)  # op indexes, in linearization order
    states: list[Any] = field(default_factory=list)
    state: Any = None  # the state after ``longest``
    stuck: list[int] = field(default_factory=list)


class _TimedOut(Exception):
    pass


# --------------------------------------------------------------------------------------------------------------------
# The search


def _hint(op: Operation) -> float | None:
    # Where the store itself says the operation took effect: writes at their zxid, reads after the writes they saw.
    if op.zxid is None:
        return None
    return 2.0 * op.zxid + (0.0 if op.kind in WRITE_KINDS else 1.0)


#: A move of the search: the entry of the operation with a known outcome it linearizes, the block of unknown-outcome
#: operations linearized just before it (their call entries), the state after each of those, and the state after it.
_Move = tuple[int, tuple[int, ...], tuple[Any, ...], Any]


class _Search:
    """Wing & Gong's search over one partition, with Lowe's cache; one instance per partition.

    A search node is (``done``, ``state``, ``taken``): the linearized operations with a known outcome (a bitset),
    the model state, and the unknown-outcome operations linearized so far (a bitset). A move from a node
    linearizes one pending operation ``x`` with a known outcome, preceded by a block of zero or more pending
    unknown-outcome operations. Blocks are limited to a canonical form that any linearization can be rewritten
    into, by moving unknown operations later (always allowed: they have no return to respect) or dropping them:

    * every operation of the block is linked to ``x`` by a chain of shared keys through the block: one that is
      not commutes with everything after it up to ``x`` (operations on disjoint keys commute: the premise of
      partitioning), so it can move past ``x``, or be dropped if nothing follows;
    * none is placed where it changes nothing (the same as never happening);
    * the last one matters to ``x``: ``x`` fails without it, or the two do not commute; otherwise it can move
      past ``x``.

    Blocks are tried only after every plain move from a node, smallest first; ``max_block`` bounds their size
    (a bounded search that succeeds is a proof; one that fails proves nothing). With zxids on unknown
    operations, the block the log suggests is tried right after each plain move.
    """

    #: Bound on the memo of model steps (entries), so that a long search under a long timeout stays in memory.
    MEMO_LIMIT = 1_000_000

    def __init__(
        self, model: Model[Any], ops: Sequence[Operation], deadline: float | None, max_block: int | None = None
    ) -> None:
        self.max_block = max_block
        self.model = model
        self.ops = ops
        self.deadline = deadline
        events: list[tuple[float, int, int]] = []
        for i, op in enumerate(ops):
            events.append((op.call, 0, i))
            if op.ret is not None:
                events.append((op.ret, 1, i))
        # At equal times a call sorts before a return, so the two count as concurrent (Porcupine does the same):
        # the lenient reading, which never reports a violation that a finer clock could explain away.
        events.sort()
        count = len(events)
        self.op_of = [i for _, _, i in events]
        self.is_return = [kind == 1 for _, kind, _ in events]
        return_at = {i: e for e, (_, kind, i) in enumerate(events) if kind == 1}
        self.known = len(return_at)
        # match: a known call's entry -> its return's entry; -1 for returns and for unknown outcomes' calls.
        self.match = [return_at.get(i, -1) if kind == 0 else -1 for _, kind, i in events]
        # The doubly linked list holds the entries of known outcomes; the head sentinel is entry ``count`` and -1
        # ends the list. Unknown outcomes' calls stay out of it (in ``unknown``, in time order): they have no
        # return to lift with them, and keeping the list short keeps the scan for candidates short.
        self.head = count
        self.next = [-1] * (count + 1)
        self.prev = [-1] * (count + 1)
        last = count
        for e in range(count):
            if self.is_return[e] or self.match[e] >= 0:
                self.next[last] = e
                self.prev[e] = last
                last = e
        self.unknown = [e for e in range(count) if not self.is_return[e] and self.match[e] < 0]
        # Each operation's keys as a bitset over the partition's keys.
        index: dict[Hashable, int] = {}
        self.keys = [sum(1 << index.setdefault(key, len(index)) for key in set(model.partition(op))) for op in ops]
        # The order to try candidates in. The verdict does not depend on it, the time to find a linearization
        # does: where zxids are known, the store's own order is nearly always the right guess.
        hints = [_hint(op) for op in ops]
        self.hinted = any(h is not None for h in hints)
        self.rank = [h if h is not None else math.inf for h in (hints[i] for i in self.op_of)]
        self.hinted_unknown = any(hints[self.op_of[u]] is not None for u in self.unknown)
        # The search asks the same step again and again as it backtracks (over 90% of the time on histories with
        # multis): remember the answers.
        self.memo: dict[tuple[int, Any], Sequence[Any]] = {}
        self.ticks = 0

    def _lift(self, e: int) -> None:
        nxt, prv = self.next, self.prev
        for x in (e, self.match[e]):
            p, n = prv[x], nxt[x]
            nxt[p] = n
            if n >= 0:
                prv[n] = p

    def _unlift(self, e: int) -> None:
        # Dancing links: undo the removals in reverse order and every neighbour pointer is right again.
        nxt, prv = self.next, self.prev
        for x in (self.match[e], e):
            nxt[prv[x]] = x
            n = nxt[x]
            if n >= 0:
                prv[n] = x

    def _tick(self) -> None:
        self.ticks += 1
        if self.deadline is not None and self.ticks & 1023 == 0 and time.monotonic() > self.deadline:
            raise _TimedOut

    def _step(self, i: int, state: Any) -> Sequence[Any]:
        found = self.memo.get((i, state))
        if found is None:
            self._tick()
            if len(self.memo) >= self.MEMO_LIMIT:
                self.memo.clear()
            found = self.memo[(i, state)] = self.model.step(state, self.ops[i])
        return found

    def _candidates(self) -> tuple[list[int], int]:
        # The calls before the first remaining return are exactly the operations that may be linearized next
        # (Wing & Gong). Returns those with a known outcome, and that first return's entry (``head`` if none).
        nxt, is_return = self.next, self.is_return
        found: list[int] = []
        e = nxt[self.head]
        while e >= 0 and not is_return[e]:
            found.append(e)
            e = nxt[e]
        if self.hinted:
            found.sort(key=self.rank.__getitem__)
        return found, (e if e >= 0 else self.head)

    def _moves(self, state: Any, taken: int, frontier: float) -> Iterator[_Move]:
        """Every move from a node: plain ones first, then blocks of one unknown operation, of two, and so on."""
        candidates, first_return = self._candidates()
        op_of, step = self.op_of, self._step
        pending = [u for u in self.unknown if u < first_return and not taken >> op_of[u] & 1]
        hinted = self.hinted_unknown and pending
        for e in candidates:
            for after in step(op_of[e], state):
                yield e, (), (), after
            if hinted:
                yield from self._hinted_block(e, state, self._usable(e, pending), frontier)
        if not pending:
            return
        usable = {e: self._usable(e, pending) for e in candidates}
        size = 1
        while True:
            grew = [False]
            for e in candidates:
                if len(usable[e]) >= size:
                    yield from self._blocks(e, state, usable[e], size, grew)
            if not grew[0] or size == self.max_block:
                return
            size += 1

    def _hinted_block(self, x: int, state: Any, usable: list[int], frontier: float) -> Iterator[_Move]:
        # The block the zxids suggest: the usable unknown operations the log puts between the operations already
        # linearized (``frontier``: the highest zxid rank among them) and x, in log order. Only a guess tried early
        # (every move is checked like any other, so a wrong guess costs time, not soundness).
        rank, step, op_of = self.rank, self._step, self.op_of
        limit = rank[x]
        block = sorted((u for u in usable if frontier < rank[u] < limit), key=rank.__getitem__)
        if not block or limit == math.inf:
            return
        kept: list[int] = []
        states: list[Any] = []
        for u in block:
            after = step(op_of[u], state)
            if len(after) != 1:
                return
            if after[0] != state:
                kept.append(u)
                states.append(after[0])
                state = after[0]
        if kept:
            for after_x in step(op_of[x], state):
                yield x, tuple(kept), tuple(states), after_x

    def _usable(self, x: int, pending: list[int]) -> list[int]:
        # The pending unknown operations linked to x by chains of pending unknown operations sharing keys.
        op_of, keys = self.op_of, self.keys
        reach = keys[op_of[x]]
        grown = True
        while grown:
            grown = False
            for u in pending:
                k = keys[op_of[u]]
                if k & reach and k & ~reach:
                    reach |= k
                    grown = True
        return [u for u in pending if keys[op_of[u]] & reach]

    def _blocks(self, x: int, state: Any, usable: list[int], size: int, grew: list[bool]) -> Iterator[_Move]:
        """The moves that linearize ``x`` after a block of exactly ``size`` of the ``usable`` unknown operations.

        Sets ``grew[0]`` if a block of that size exists at all (if none does, no larger one will).
        """
        op_of, step = self.op_of, self._step
        i_x = op_of[x]
        # Blocks reaching the same state with the same operations end alike: each is extended once. Closing one
        # with x is still tried on every arrival, as whether its last operation matters depends on which it is.
        extended: set[tuple[Any, int]] = set()
        closed: set[tuple[Any, int]] = set()

        def grow(before: Any, used: int, block: tuple[int, ...], states: tuple[Any, ...]) -> Iterator[_Move]:
            for u in usable:
                i = op_of[u]
                if used >> i & 1:
                    continue
                self._tick()
                for now in step(i, before):
                    if now == before:
                        continue  # changes nothing: the same as never happening
                    now_used = used | 1 << i
                    now_block, now_states = block + (u,), states + (now,)
                    if len(now_block) < size:
                        if (now, now_used) not in extended:
                            extended.add((now, now_used))
                            yield from grow(now, now_used, now_block, now_states)
                        continue
                    grew[0] = True
                    if (now, now_used) in closed:
                        continue
                    ends = step(i_x, now)
                    if ends and self._matters(i, before, i_x, ends):
                        closed.add((now, now_used))
                        for after in ends:
                            yield x, now_block, now_states, after

        yield from grow(state, 0, (), ())

    def _matters(self, i_u: int, before: Any, i_x: int, ends: Sequence[Any]) -> bool:
        # Does the unknown operation u, applied in state ``before``, matter to x right after it (``ends``: x's
        # outcomes then)? Not if x succeeds without it and the two commute (checked for deterministic steps only).
        alone = self._step(i_x, before)
        if not alone:
            return True
        if len(alone) == 1 and len(ends) == 1:
            swapped = self._step(i_u, alone[0])
            return not (len(swapped) == 1 and swapped[0] == ends[0])
        return True

    def _first_return(self) -> int:
        e = self.next[self.head]
        while e >= 0 and not self.is_return[e]:
            e = self.next[e]
        return e

    def run(self) -> _Outcome:
        """Search for a linearization; on failure, report the longest prefix found."""
        op_of, bit = self.op_of, [1 << i for i in range(len(self.ops))]
        # Lowe's cache, of fully explored (so failed) nodes: (done, state) -> the ``taken`` sets seen there. A node
        # is abandoned if one there had a subset of its unknown operations: every way to finish from it is a way
        # to finish from that one (the extra unknown operations could simply not have happened).
        failed: dict[tuple[int, Any], list[int]] = {}
        state: Any = self.model.init()
        done = taken = 0
        remaining = self.known
        frontier = -math.inf  # the highest zxid rank linearized (see _hinted_block)
        stack: list[tuple[Iterator[_Move], Any, int, int, float, _Move]] = []
        moves = self._moves(state, taken, frontier)
        best = -1
        outcome = _Outcome(ok=False)
        while True:
            if remaining == 0:
                # Every known outcome is placed; the unknown operations not placed never happened.
                return _Outcome(ok=True, longest=[i for frame in stack for i in _move_ops(frame[-1], op_of)])
            for move in moves:
                self._tick()
                e, block, _, after = move
                new_done = done | bit[op_of[e]]
                new_taken = taken
                for u in block:
                    new_taken |= bit[op_of[u]]
                seen = failed.get((new_done, after))
                if seen is not None and any(t | new_taken == new_taken for t in seen):
                    continue
                stack.append((moves, state, done, taken, frontier, move))
                self._lift(e)
                remaining -= 1
                state, done, taken = after, new_done, new_taken
                if self.rank[e] != math.inf:
                    frontier = max(frontier, self.rank[e])
                moves = self._moves(state, taken, frontier)
                break
            else:
                # Every move from here was tried: a dead end.
                failed.setdefault((done, state), []).append(taken)
                depth = self.known - remaining
                if depth > best:
                    best = depth
                    outcome.longest = [i for frame in stack for i in _move_ops(frame[-1], op_of)]
                    outcome.states = [s for frame in stack for s in (*frame[-1][2], frame[-1][3])]
                    outcome.state = state
                    # The pending operations with a known outcome, the one that returned first at the front.
                    first = op_of[self._first_return()]
                    pending = [op_of[c] for c in self._candidates()[0]]
                    outcome.stuck = [first] + [i for i in pending if i != first]
                if not stack:
                    return outcome
                moves, state, done, taken, frontier, (e, _, _, _) = stack.pop()
                self._unlift(e)
                remaining += 1


def _move_ops(move: _Move, op_of: list[int]) -> list[int]:
    e, block, _, _ = move
    return [op_of[u] for u in block] + [op_of[e]]


# --------------------------------------------------------------------------------------------------------------------
# Partitions and the entry point


def _partitions(ops: Sequence[Operation], model: Model[Any]) -> list[tuple[tuple[Hashable, ...], list[Operation]]]:
    """Group ``ops`` so that operations sharing a key (directly or through a multi) land together."""
    parent: dict[Hashable, Hashable] = {}

    def find(key: Hashable) -> Hashable:
        while parent[key] != key:
            parent[key] = parent[parent[key]]  # path halving
            key = parent[key]
        return key

    keyed: list[tuple[Operation, list[Hashable]]] = []
    for op in ops:
        keys = list(model.partition(op))
        keyed.append((op, keys))
        for key in keys:
            parent.setdefault(key, key)
        for key in keys[1:]:
            a, b = find(keys[0]), find(key)
            if a != b:
                parent[b] = a
    groups: dict[Any, list[Operation]] = {}
    loners: list[tuple[tuple[Hashable, ...], list[Operation]]] = []
    for op, keys in keyed:
        if keys:
            groups.setdefault(find(keys[0]), []).append(op)
        else:
            loners.append(((), [op]))
    members: dict[Any, list[Hashable]] = {}
    for key in parent:
        members.setdefault(find(key), []).append(key)
    result = [(tuple(sorted(members[root], key=repr)), group) for root, group in groups.items()]
    return result + loners


def linearizable_subset(operations: Iterable[Operation]) -> list[Operation]:
    """The operations whose linearizability ZooKeeper promises: all but plain ``get`` calls that answered.

    A plain ``get`` is served by the local replica, which may lag: it is only sequentially consistent (check it
    with :func:`check_client_order`). Writes, ``sync_get`` calls and unknown outcomes are kept.
    """
    return [op for op in operations if op.kind != "get" or op.ret is None]


def check(
    operations: Iterable[Operation],
    model: Model[Any] | None = None,
    timeout: float | None = None,
) -> CheckResult:
    """Is the history linearizable with respect to ``model`` (default :class:`ZnodeModel`)?

    Every operation given is checked, plain ``get`` calls included: pass :func:`linearizable_subset` of a
    ZooKeeper history. ``timeout`` bounds the wall-clock seconds spent; when it strikes the result's ``ok`` is None.

    Partitions are searched smallest first and the search stops at the first that fails. A partition that spans
    several keys (joined by multis) is first checked key by key, each operation cut down to what it does to that
    key (:meth:`Model.restrict`): a necessary condition, so a key that fails alone proves the whole history not
    linearizable, quickly and with a short explanation. Then the partition is searched whole, first allowing at
    most one unknown-outcome operation before each known one (fast, and enough for nearly every history), then
    without that limit if needed.
    """
    model = model if model is not None else ZnodeModel()
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    ops: list[Operation] = []
    for op in operations:
        if op.ret is not None and op.ret < op.call:
            raise ValueError(f"operation returns before it is called: {op.describe()}")
        if op.ret is None:
            if model.effectless(op):
                continue  # an unknown read constrains nothing
            if op.output is not None:
                op = Operation(op.client, op.kind, op.input, None, op.call, None, op.zxid, op.node)
        ops.append(op)
    ops.sort(key=lambda op: op.call)
    parts = _partitions(ops, model)
    parts.sort(key=lambda part: len(part[1]))

    def result(**fields: Any) -> CheckResult:
        return CheckResult(
            partitions=len(parts), operations_checked=len(ops), elapsed=time.monotonic() - start, **fields
        )

    for keys, group in parts:
        if all(op.ret is None for op in group):
            continue  # nothing has to be explained
        searches = [(key, *_restricted(model, group, key)) for key in keys] if len(keys) > 1 else []
        searches.append((None, group, group))
        for key, originals, subhistory in searches:
            if not subhistory or all(op.ret is None for op in subhistory):
                continue
            try:
                outcome = _search(model, subhistory, deadline)
            except _TimedOut:
                where = _keys(keys) if key is None else f"{key} (alone, within {_keys(keys)})"
                return result(
                    ok=None,
                    keys=keys if key is None else (key,),
                    operations=tuple(originals),
                    explanation=(
                        f"unknown: the {timeout}s timeout struck while searching the partition {where} "
                        f"({len(subhistory)} operations, {sum(op.ret is None for op in subhistory)} with unknown "
                        "outcomes)"
                    ),
                )
            if not outcome.ok:
                report = _failure(model, keys, key, originals, subhistory, outcome)
                return result(ok=False, **report)
    return result(ok=True)


def _search(model: Model[Any], ops: Sequence[Operation], deadline: float | None) -> _Outcome:
    outcome = _Search(model, ops, deadline, max_block=1).run()
    if not outcome.ok and any(op.ret is None for op in ops):
        outcome = _Search(model, ops, deadline).run()
    return outcome


def _restricted(model: Model[Any], group: list[Operation], key: Hashable) -> tuple[list[Operation], list[Operation]]:
    # The operations of ``group`` touching ``key``, and each cut down to ``key`` (both empty if the model cannot).
    originals: list[Operation] = []
    restricted: list[Operation] = []
    for op in group:
        if key not in model.partition(op):
            continue
        cut = model.restrict(op, key)
        if cut is None:
            return [], []
        if cut.ret is None and model.effectless(cut):
            continue
        originals.append(op)
        restricted.append(cut)
    return originals, restricted


def _keys(keys: tuple[Hashable, ...]) -> str:
    return "{" + ", ".join(map(str, keys)) + "}"


#: How many steps of the longest prefix the report prints (the rest is in ``CheckResult.longest``).
_REPORT_TAIL = 25


def _failure(
    model: Model[Any],
    keys: tuple[Hashable, ...],
    key: Hashable | None,
    originals: list[Operation],
    searched: list[Operation],
    outcome: _Outcome,
) -> dict[str, Any]:
    # The fields of a failed CheckResult, and the report for a human. ``searched`` are the operations the search
    # saw (``originals`` cut down to ``key``, when one key was searched alone); the report shows the originals.
    longest = [originals[i] for i in outcome.longest]
    stuck = [originals[i] for i in outcome.stuck]
    known = sum(op.ret is not None for op in originals)
    if key is None:
        head = f"not linearizable: partition {_keys(keys)} ({len(originals)} operations, {known} with a known outcome)"
    else:
        head = (
            f"not linearizable: key {key} alone already fails ({len(originals)} operations, {known} with a known "
            f"outcome; it shares the partition {_keys(keys)} with others through multis, whose effects on other "
            "keys are left out here)"
        )
    lines = [
        head,
        f"longest linearizable prefix: {len(longest)} steps"
        + (f" (the last {_REPORT_TAIL} shown)" if len(longest) > _REPORT_TAIL else ""),
    ]
    for n in range(max(0, len(longest) - _REPORT_TAIL), len(longest)):
        op = longest[n]
        note = "  (unknown outcome: took effect here)" if op.ret is None else ""
        lines.append(f"  {n + 1:5}. {op.describe()}{note}")
        lines.append(f"         -> {model.describe_state(outcome.states[n])}")
    lines.append(f"state after the prefix: {model.describe_state(outcome.state)}")
    lines.append("none of the pending operations can come next:")
    for i in outcome.stuck:
        said = model.describe_step(outcome.state, searched[i])
        lines.append(f"  {originals[i].describe()}" + (f"   [{said}]" if said else ""))
    if stuck:
        lines.append(
            f"(the first of them returned at {stuck[0].ret}: it, or another of them, must come before anything "
            "invoked after that)"
        )
    return {
        "keys": keys if key is None else (key,),
        "operations": tuple(originals),
        "longest": tuple(longest),
        "states": tuple(outcome.states),
        "stuck": tuple(stuck),
        "explanation": "\n".join(lines),
    }


# --------------------------------------------------------------------------------------------------------------------
# Sequential consistency of plain reads


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The verdict of :func:`check_client_order`: ``ok`` and, when not, one line per problem found."""

    ok: bool
    problems: tuple[str, ...] = ()
    reads_checked: int = 0
    writes_replayed: int = 0
    #: Paths whose values could not be checked: a write touching them may have committed at an unknown zxid.
    uncertain_paths: frozenset[str] = frozenset()

    def __str__(self) -> str:
        head = (
            f"client order {'ok' if self.ok else 'VIOLATED'}: {self.reads_checked} reads checked against "
            f"{self.writes_replayed} writes replayed in zxid order"
        )
        if self.uncertain_paths:
            head += f"; values unchecked on {sorted(self.uncertain_paths)}"
        shown = list(self.problems[:20])
        if len(self.problems) > 20:
            shown.append(f"... and {len(self.problems) - 20} more")
        return "\n".join([head, *("  " + p for p in shown)])


def check_client_order(
    operations: Iterable[Operation],
    session: Callable[[Operation], Hashable] = lambda op: op.client,
) -> OrderResult:
    """Check what ZooKeeper promises plain reads: sequential consistency, through zxids.

    Two properties, over the operations that carry a ``zxid`` (see :mod:`embedzk.testing.history`):

    1. Within one session (by default one client; pass ``session=lambda op: (op.client, op.node)`` if a client
       may talk to a different node for each call, since nothing then keeps its view from going back), the zxids
       of the completed operations, in call order, never decrease: a client never sees the past again, and reads
       its own writes.
    2. Values: the writes with a zxid, replayed through :class:`ZnodeModel` in zxid order, answer what they
       answered, and every read (``get`` or ``sync_get``) answered with the state its path has after the writes
       at or before its zxid. A write with no zxid that may have taken effect (success, or unknown outcome) makes
       the values of its paths (and of the paths joined to them by multis) uncertain: those are skipped and
       listed in ``uncertain_paths``. A write known not to have happened may simply be left out of ``operations``.
    """
    ops = sorted(operations, key=lambda op: op.call)
    problems: list[str] = []

    sessions: dict[Hashable, list[Operation]] = {}
    for op in ops:
        if op.ret is not None and op.zxid is not None:
            sessions.setdefault(session(op), []).append(op)
    for calls in sessions.values():
        latest = calls[0]
        for op in calls[1:]:
            assert op.zxid is not None and latest.zxid is not None
            if op.zxid < latest.zxid:
                problems.append(f"went back in time: {op.describe()} after {latest.describe()}")
            else:
                latest = op

    model = ZnodeModel()
    writes = [op for op in ops if op.kind in WRITE_KINDS]
    reads = [op for op in ops if op.kind in READ_KINDS and op.ret is not None and op.zxid is not None]
    by_zxid: dict[int, Operation] = {}
    for op in writes:
        if op.zxid is None:
            continue
        if op.zxid in by_zxid:
            problems.append(f"two writes claim zxid {op.zxid}: {by_zxid[op.zxid].describe()} and {op.describe()}")
        by_zxid[op.zxid] = op

    uncertain: set[str] = set()
    parts = _partitions(writes + reads, model)
    replayed = checked = 0
    for keys, group in parts:
        if any(_may_have_happened(op) and op.zxid is None for op in group if op.kind in WRITE_KINDS):
            uncertain.update(str(k) for k in keys)
            continue
        timeline = sorted(
            ((op.zxid, op.kind in READ_KINDS, n, op) for n, op in enumerate(group) if op.zxid is not None),
            key=lambda item: item[:3],  # writes at a zxid apply before the reads at that zxid
        )
        state = model.init()
        for zxid, is_read, _, op in timeline:
            if is_read:
                if op.output is None or (op.output[0] == "err" and op.output[1] not in DECIDED_ERRORS):
                    continue
                checked += 1
                result, _ = model.apply(state, op.kind, op.input)
                if not _agrees(result, op.output):
                    problems.append(
                        f"read answered {op.output[0]} {op.output[1]!r} but at zxid {zxid} the committed writes "
                        f"give {result[0]} {result[1]!r}: {op.describe()}"
                    )
                continue
            if op.output is not None and op.output[0] == "err" and op.output[1] not in DECIDED_ERRORS:
                continue
            replayed += 1
            result, state = model.apply(state, op.kind, op.input)
            if op.output is not None and not _agrees(result, op.output):
                problems.append(
                    f"write answered {op.output[0]} {op.output[1]!r} but replayed in zxid order it gives "
                    f"{result[0]} {result[1]!r}: {op.describe()}"
                )
    return OrderResult(
        ok=not problems,
        problems=tuple(problems),
        reads_checked=checked,
        writes_replayed=replayed,
        uncertain_paths=frozenset(uncertain),
    )


def _may_have_happened(op: Operation) -> bool:
    return op.output is None or op.output[0] == "ok"
