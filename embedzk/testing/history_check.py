"""The end-of-run judgement of a simulated history: linearizability of writes and synced reads, and sequential
consistency of plain reads, through :mod:`embedzk.testing.linearizability`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embedzk.testing.history import Operation
from embedzk.testing.linearizability import (
    check,
    check_client_order,
    linearizable_subset,
)

#: Wall-clock seconds the linearizability search may take for one run before the verdict is "unknown" (a failure:
#: a history the checker cannot decide is one we cannot vouch for).
CHECK_TIMEOUT = 60.0


def check_calls(calls: Sequence[Any], write_zxids: Mapping[tuple[str, int], int]) -> str | None:
    """None if the history passes; otherwise a report of what is wrong.

    ``calls`` are the simulator's call records (with ``request`` = (node id, request id) for writes);
    ``write_zxids`` maps such a request to the log index it committed at, read from the final log, so that
    writes whose outcome the client never learnt still take their place in the order of writes.
    Unlike :func:`embedzk.testing.logcheck.check_history`, the verdict trusts no zxid (they only guide the search).
    """
    ops = []
    for call in calls:
        zxid = call.zxid
        if call.kind not in ("get", "sync_get"):
            zxid = write_zxids.get(call.request) if call.request is not None else None
            if call.ret is None and zxid is None:
                # Unknown outcome and not in the final log: it never took effect.
                continue
        ops.append(Operation(call.client, call.kind, call.input, call.output, call.call, call.ret, zxid, call.node))
    result = check(linearizable_subset(ops), timeout=CHECK_TIMEOUT)
    if result.ok is not True:
        return str(result)
    order = check_client_order(ops, session=lambda op: (op.client, op.node))
    if not order.ok:
        return "plain reads are not sequentially consistent:\n  " + "\n  ".join(order.problems[:20])
    return None
