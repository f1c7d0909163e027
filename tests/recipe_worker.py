"""A Peer and its recipes in a process of its own, driven by tests (and the recipe benchmark) over stdin/stdout.

``python tests/recipe_worker.py CONFIG_JSON`` starts a Peer, prints ``{"started": ...}``, then reads one JSON
command per line. Every command runs on a thread of its own (so a blocking ``acquire`` does not stop the next
command) and is answered by one line ``{"id": n, "ok": value}`` or ``{"id": n, "error": "ClassName", ...}``.
Callbacks the test asks for arrive as ``{"event": {"tag": ..., "args": [...], "t": monotonic_ns}}`` lines. Times
are ``time.monotonic_ns()``: CLOCK_MONOTONIC, one clock for every process on a Linux machine, so intervals logged
by different workers can be compared.

Commands (``op``): ``new`` (name, recipe, args, kwargs: ``objects[name] = peer.<recipe>(*args)``), ``call`` (name,
method, args, kwargs; a non-callable attribute is returned as is), ``peer`` (method, args, kwargs), ``listen``
(name, method, tag, args: pass a callback that emits events to ``obj.method(*args, callback)``), ``elect`` (name:
run an Election, emitting ``leader`` when elected and holding until ``abdicate``), ``lock_loop`` (path, count,
hold: take a Lock ``count`` times, return the log of acquire/release times), ``count_loop`` (name, count: add 1 to a
Counter ``count`` times, emitting ``counted`` after each), ``dispatched`` (return once every change committed
before it is applied on this peer and the watch callbacks it triggered have run), ``settled`` (name: how many
``call`` commands run on ``objects[name]``, if every one sleeps in its recipe's Waker with no wake-up pending, i.e. has
acted on all it saw; else None), ``stop``.

:class:`RecipeWorker` is the test side; it always kills what it started (by pid).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

if __name__ == "__main__":
    # Started as ``python tests/<script>.py`` (tests._worker_protocol.WorkerProcess): Python put tests/ first on
    # sys.path, not the repository's root. Put the root first, as pytest does for the test modules (see
    # tests/conftest.py), so that the helpers (tests._worker_protocol) and embedzk come from this checkout.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests._worker_protocol import (  # some re-exported, for the tests and the recipe benchmark
    WorkerError,
    WorkerProcess,
    decode,
    emit,
    encode,
    free_ports,
    serve,
    start_peer,
)

__all__ = ["RecipeWorker", "WorkerError", "decode", "encode", "free_ports", "start_cluster"]

# ----------------------------------------------------------------------------------------------------------------
# the child


def _child(config: dict[str, Any]) -> None:
    from embedzk.recipes._common import Deadline, Waker

    peer = start_peer(config, 60.0, observer=False, session_timeout=2.0)
    objects: dict[str, Any] = {}
    abdicate: dict[str, threading.Event] = {}
    # The threads asleep in a recipe's Waker now, and the threads running a call on each object: a test asks
    # ("settled") whether a blocked call has acted on everything it saw, instead of sleeping and hoping.
    sleeping: dict[threading.Thread, Waker] = {}
    calls: dict[str, set[threading.Thread]] = collections.defaultdict(set)
    original_wait = Waker.wait

    def wait(waker: Waker, deadline: Deadline) -> bool:
        me = threading.current_thread()
        sleeping[me] = waker
        try:
            return original_wait(waker, deadline)
        finally:
            sleeping.pop(me, None)

    Waker.wait = wait  # type: ignore[method-assign, assignment]

    def settled(name: str) -> int | None:
        """How many calls on ``objects[name]`` are running, if every one sleeps with no wake-up pending; else None."""
        running = list(calls[name])
        for thread in running:
            waker = sleeping.get(thread)
            if waker is None or waker.event.is_set():
                return None
        return len(running)

    def dispatched() -> None:
        # A marker written now comes after every change committed before; its watch fires after theirs (one
        # dispatch thread, callbacks in zxid order).
        fired = threading.Event()
        marker = f"/dispatched-{uuid.uuid4().hex[:8]}"
        peer.exists(marker, watch=lambda event: fired.set())
        peer.create(marker)
        if not fired.wait(10):
            raise TimeoutError("the marker's watch never fired")
        peer.delete(marker)

    def event(tag: str, *args: Any) -> None:
        emit({"event": {"tag": tag, "args": encode(list(args)), "t": time.monotonic_ns(), "pid": os.getpid()}})

    def run(cmd: dict[str, Any]) -> Any:
        op, args, kwargs = cmd["op"], cmd.get("args", []), cmd.get("kwargs", {})
        if op == "new":
            objects[cmd["name"]] = getattr(peer, cmd["recipe"])(*args, **kwargs)
            return None
        if op == "call":
            me = threading.current_thread()
            calls[cmd["name"]].add(me)
            try:
                attr = getattr(objects[cmd["name"]], cmd["method"])
                result = attr(*args, **kwargs) if callable(attr) else attr
            finally:
                calls[cmd["name"]].discard(me)
            if cmd["method"] in ("__iter__",):
                result = list(result)
            return result
        if op == "settled":
            return settled(cmd["name"])
        if op == "dispatched":
            dispatched()
            return None
        if op == "len":
            return len(objects[cmd["name"]])
        if op == "iter":
            return list(objects[cmd["name"]])
        if op == "iadd":
            counter = objects[cmd["name"]]
            counter += args[0]
            return counter.post_value
        if op == "peer":
            attr = getattr(peer, cmd["method"])
            return attr(*args, **kwargs) if callable(attr) else attr
        if op == "listen":
            tag = cmd["tag"]
            getattr(objects[cmd["name"]], cmd["method"])(*args, lambda *a, **k: event(tag, *a, *k.values()))
            return None
        if op == "elect":
            name = cmd["name"]
            election = objects[name]
            stop = abdicate.setdefault(name, threading.Event())

            def lead() -> None:
                event("leader", name)
                while not stop.wait(0.05):
                    if not election.is_leader:
                        event("relinquished", name)
                        return

            election.run(lead)
            return True
        if op == "abdicate":
            abdicate.setdefault(cmd["name"], threading.Event()).set()
            return None
        if op == "lock_loop":
            lock = peer.Lock(cmd["path"], config["id"])
            log: list[tuple[int, int, str]] = []
            pid = os.getpid()
            hold = cmd.get("hold", 0.0)
            for _ in range(cmd["count"]):
                lock.acquire()
                log.append((time.monotonic_ns(), pid, "acquire"))
                if hold:
                    time.sleep(hold)
                log.append((time.monotonic_ns(), pid, "release"))
                lock.release()
            return log
        if op == "count_loop":
            counter = objects[cmd["name"]]
            for _ in range(cmd["count"]):
                counter += 1
                event("counted", counter.post_value)
            return cmd["count"]
        raise ValueError(f"unknown op {op!r}")

    serve(peer, run, threads=0)


# ----------------------------------------------------------------------------------------------------------------
# the test side


class RecipeWorker(WorkerProcess):
    """A child process running one Peer and its recipes."""

    script = os.path.abspath(__file__)
    start_wait = 60.0

    def on_event(self, event: dict[str, Any]) -> None:
        event["args"] = decode(event.get("args", []))
        self.events.put(event)

    def call(self, op: str, timeout: float = 30.0, **fields: Any) -> Any:
        """Send a command and wait for its answer."""
        return self.request(op, timeout, **fields)

    # shorthands
    def new(self, name: str, recipe: str, *args: Any, **kwargs: Any) -> None:
        """``objects[name] = peer.<recipe>(*args, **kwargs)`` in the child."""
        self.call("new", name=name, recipe=recipe, args=list(args), kwargs=kwargs)

    def do(self, name: str, method: str, *args: Any, wait: float = 30.0, **kwargs: Any) -> Any:
        """``objects[name].<method>(*args, **kwargs)`` in the child; wait ``wait`` seconds for the answer."""
        return self.call("call", timeout=wait, name=name, method=method, args=list(args), kwargs=kwargs)

    def start_do(self, name: str, method: str, *args: Any, **kwargs: Any) -> Future[Any]:
        """:meth:`do` without waiting."""
        return self.submit("call", name=name, method=method, args=list(args), kwargs=kwargs)

    def peer(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``peer.<method>(*args, **kwargs)`` in the child."""
        return self.call("peer", method=method, args=list(args), kwargs=kwargs)

    def next_event(self, tag: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next event with ``tag`` (others before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.id}: no {tag!r} event within {timeout}s")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event["tag"] == tag:
                return event


def start_cluster(n: int, session_timeout: float = 2.0, prefix: str = "w") -> list[RecipeWorker]:
    """n workers forming one cluster over tcp on loopback, all started (kills them all if one fails)."""
    ids = [f"{prefix}{i}" for i in range(n)]
    addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(ids, free_ports(n))}
    workers: list[RecipeWorker] = []
    try:
        for pid in ids:
            workers.append(RecipeWorker({
                "id": pid,
                "bind": addresses[pid],
                "peers": {o: a for o, a in addresses.items() if o != pid},
                "session_timeout": session_timeout,
            }))
        for worker in workers:
            worker.wait_started()
    except BaseException:
        for worker in workers:
            worker.kill()
        raise
    return workers


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
