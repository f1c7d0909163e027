"""What simulated clients did: the history that the linearizability checker judges.

A history is a list of :class:`Operation` values, one per client call, recorded by a :class:`HistoryRecorder`
(or built by hand in tests). The checker in :mod:`embedzk.testing.linearizability` reads only the fields below,
so any recorder that fills them the same way can feed it.

Shapes
------
Every ``input`` and ``output`` is made of tuples, strings, ints, bytes and None only (values compare with
``==``, so use tuples, never lists). Paths are flat: children of ``/`` such as ``"/k1"``.

=============  ==================================  ===============================================================
``kind``       ``input``                           ``output`` (when the outcome is known)
=============  ==================================  ===============================================================
``create``     ``(path, data)``                    ``("ok", path)``
``set``        ``(path, data, version)``           ``("ok", new_version)``
``delete``     ``(path, version)``                 ``("ok", None)``
``get``        ``(path,)``                         ``("ok", (data, version))``
``sync_get``   ``(path,)``                         ``("ok", (data, version))``: a read after ``sync()``
``multi``      ``(sub, sub, ...)``                 ``("ok", (result, result, ...))`` or ``("ok", None)``
=============  ==================================  ===============================================================

A ``version`` in an input is an int, ``-1`` meaning "any version". ``data`` is bytes. The sub-operations of a
multi are ``("create", path, data)``, ``("set", path, data, version)``, ``("delete", path, version)`` and
``("check", path, version)``; their results in an ``ok`` output are the path, the new version, None and None.

A failed call has the output ``("err", code)`` with ``code`` one of ``"NoNode"``, ``"NodeExists"``,
``"BadVersion"``, ``"NotEmpty"`` (the conditions the store decides when it applies the operation). A failed multi
reports the code of its first failing sub-operation and changes nothing. Any other code (``"SessionExpired"``,
``"BadArguments"`` ...) is read as "refused before it reached the log: no effect". A call that *might* have taken
effect (a timeout, a lost connection, a crash of the node that served it) must instead be recorded with an
unknown outcome: ``output`` None and ``ret`` None.

``("ok", None)`` means "succeeded, value not recorded" for any kind, and matches every successful result.

Times and zxids
---------------
``call`` is when the client invoked the operation and ``ret`` when it saw the answer, on one clock shared by
all clients (the simulator's virtual clock). ``ret`` None means the outcome is unknown: the operation may take
effect at any moment after ``call``, or never. Equal times count as concurrent.

``zxid`` says where the store put the operation. For a read (``get``, ``sync_get``) it is the index the serving
replica had applied when it answered. For a write (``create``, ``set``, ``delete``, ``multi``) it is the index of
the log entry that carried it, whether the write succeeded or failed its condition. None: not known.
:func:`~embedzk.testing.linearizability.check_client_order` needs zxids (it judges plain reads by them);
:func:`~embedzk.testing.linearizability.check` does not, and its verdict never depends on them, but it tries the
order they give first, which makes it much faster on large histories.

Unknown outcomes are what makes checking expensive. A simulator that can read the final log should resolve them:
a write whose outcome the client never learnt but which the log shows committed keeps ``ret`` None and gets the
entry's index as ``zxid`` (:meth:`HistoryRecorder.annotate`); one the log shows never committed may simply be left
out of the history. Unknown reads constrain nothing and are ignored.

``node`` names the replica that served the call; only explanations (and, if asked, sessions of
``check_client_order``) use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["READ_KINDS", "WRITE_KINDS", "HistoryRecorder", "Operation", "as_operations"]

#: Kinds that change nothing: ``get`` (sequentially consistent only) and ``sync_get`` (linearizable).
READ_KINDS = frozenset({"get", "sync_get"})
#: Kinds that go through the log.
WRITE_KINDS = frozenset({"create", "set", "delete", "multi"})


@dataclass(frozen=True, slots=True)
class Operation:
    """One client call: what was asked, what came back, and when. The module docstring gives the shapes."""

    client: int
    kind: str
    input: Any
    output: Any
    call: float
    ret: float | None
    zxid: int | None = None
    node: str | None = None

    @property
    def unknown(self) -> bool:
        """True when the outcome is unknown: no answer came back, so the call may or may not have taken effect."""
        return self.ret is None

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths this operation reads or writes, in the order its input names them, without repeats."""
        if self.kind == "multi":
            return tuple(dict.fromkeys(sub[1] for sub in self.input))
        return (self.input[0],)

    def describe(self) -> str:
        """One line for a human: client, interval, the call and its answer."""
        end = "?" if self.ret is None else f"{self.ret:.4f}"
        where = f" @{self.node}" if self.node is not None else ""
        zxid = f" zxid={self.zxid}" if self.zxid is not None else ""
        return (
            f"client {self.client}{where} [{self.call:.4f}, {end}] "
            f"{describe_call(self.kind, self.input)} -> {describe_output(self.output)}{zxid}"
        )


def describe_call(kind: str, input: Any) -> str:
    """``set('/k1', b'v1', -1)``: a call in a form that reads like the API."""
    if kind == "multi":
        return "multi[" + ", ".join(f"{sub[0]}({', '.join(map(repr, sub[1:]))})" for sub in input) + "]"
    return f"{kind}({', '.join(map(repr, input))})"


def describe_output(output: Any) -> str:
    """``ok 3``, ``err NoNode`` or ``?`` for an unknown outcome."""
    if output is None:
        return "?"
    status, value = output
    return f"{status} {value!r}"


class HistoryRecorder:
    """Records the calls of simulated clients as they happen.

    ``token = rec.invoke(client, kind, input, now)`` when a client calls; then exactly one of
    ``rec.complete(token, output, now)`` when the answer arrives or ``rec.unknown(token)`` when the call timed
    out or its node crashed. A call still open when :meth:`operations` is asked for counts as unknown, which is
    what a call cut short by the end of the run is.
    """

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: list[Operation] = []

    def invoke(self, client: int, kind: str, input: Any, now: float, *, node: str | None = None) -> int:
        """Record that ``client`` called ``kind`` with ``input`` at ``now``; returns the token for the answer."""
        self._ops.append(Operation(client, kind, input, None, now, None, None, node))
        return len(self._ops) - 1

    def complete(self, token: int, output: Any, now: float, *, zxid: int | None = None) -> None:
        """The call answered ``output`` at ``now``; ``zxid`` as the module docstring defines it."""
        op = self._ops[token]
        if now < op.call or math.isnan(now):
            raise ValueError(f"answer at {now} precedes the call at {op.call}")
        self._ops[token] = replace(op, output=output, ret=now, zxid=zxid if zxid is not None else op.zxid)

    def unknown(self, token: int, *, zxid: int | None = None) -> None:
        """The call will never answer (timeout, crash): it may or may not have taken effect."""
        op = self._ops[token]
        self._ops[token] = replace(op, output=None, ret=None, zxid=zxid if zxid is not None else op.zxid)

    def annotate(self, token: int, *, zxid: int) -> None:
        """Attach a zxid learnt later, e.g. the log index at which an unknown-outcome write did commit."""
        self._ops[token] = replace(self._ops[token], zxid=zxid)

    def operations(self) -> list[Operation]:
        """Every recorded call in invocation order (stable for equal times)."""
        return sorted(self._ops, key=lambda op: op.call)

    def __len__(self) -> int:
        return len(self._ops)


def as_operations(records: Any) -> list[Operation]:
    """Copy records of any class with the fields of :class:`Operation` (missing ``zxid``/``node``: None).

    Lets a simulator keep its own mutable call objects and hand them to the checker at the end.
    """
    return [
        Operation(
            client=r.client,
            kind=r.kind,
            input=r.input,
            output=r.output if r.ret is not None else None,
            call=r.call,
            ret=r.ret,
            zxid=getattr(r, "zxid", None),
            node=getattr(r, "node", None),
        )
        for r in records
    ]
