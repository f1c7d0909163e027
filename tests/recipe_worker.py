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
Counter ``count`` times, emitting ``counted`` after each), ``stop``.

:class:`RecipeWorker` is the test side; it always kills what it started (by pid).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def encode(value: Any) -> Any:
    """A JSON-able form of a recipe's answer."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(encode(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: encode(getattr(value, k)) for k in value.__dataclass_fields__}
    if hasattr(value, "value") and type(value).__module__ == "embedzk.model":
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def decode(value: Any) -> Any:
    """The inverse of :func:`encode` for bytes (the rest stays JSON)."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------------------
# the child


def _child(config: dict[str, Any]) -> None:
    sys.path.insert(0, os.path.dirname(HERE))
    from embedzk import Peer

    out_lock = threading.Lock()

    def emit(obj: dict[str, Any]) -> None:
        line = json.dumps(obj)
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    peer = Peer(
        config["id"],
        bind=config["bind"],
        peers=config["peers"],
        data_dir=config.get("data_dir"),
        observer=config.get("observer", False),
        session_timeout=config.get("session_timeout", 2.0),
    )
    peer.start(timeout=config.get("start_timeout", 60.0))
    emit({"started": True, "pid": os.getpid(), "leader": peer.leader})

    objects: dict[str, Any] = {}
    abdicate: dict[str, threading.Event] = {}

    def event(tag: str, *args: Any) -> None:
        emit({"event": {"tag": tag, "args": encode(list(args)), "t": time.monotonic_ns(), "pid": os.getpid()}})

    def run(cmd: dict[str, Any]) -> Any:
        op = cmd["op"]
        args = decode(cmd.get("args", []))
        kwargs = decode(cmd.get("kwargs", {}))
        if op == "new":
            objects[cmd["name"]] = getattr(peer, cmd["recipe"])(*args, **kwargs)
            return None
        if op == "call":
            attr = getattr(objects[cmd["name"]], cmd["method"])
            result = attr(*args, **kwargs) if callable(attr) else attr
            if cmd["method"] in ("__iter__",):
                result = list(result)
            return result
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

    def serve(cmd: dict[str, Any]) -> None:
        try:
            emit({"id": cmd["id"], "ok": encode(run(cmd))})
        except Exception as exc:
            emit({"id": cmd["id"], "error": type(exc).__name__, "message": str(exc)})

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "stop":
            peer.stop()
            emit({"id": cmd["id"], "ok": None})
            return
        threading.Thread(target=serve, args=(cmd,), daemon=True).start()
    peer.stop()


# ----------------------------------------------------------------------------------------------------------------
# the test side


class WorkerError(RuntimeError):
    """A command failed in the worker; ``kind`` is the name of the exception class there."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class RecipeWorker:
    """A child process running one Peer and its recipes."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.id = config["id"]
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.started = threading.Event()
        self._futures: dict[int, Future[Any]] = {}
        self._n = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "event" in msg:
                msg["event"]["args"] = decode(msg["event"].get("args", []))
                self.events.put(msg["event"])
            elif "started" in msg:
                self.started.set()
            elif "id" in msg:
                with self._lock:
                    future = self._futures.pop(msg["id"], None)
                if future is None:
                    continue
                if "error" in msg:
                    future.set_exception(WorkerError(msg["error"], msg.get("message", "")))
                else:
                    future.set_result(decode(msg["ok"]))
        with self._lock:  # the process ended: nothing more will be answered
            futures, self._futures = self._futures, {}
        for future in futures.values():
            future.set_exception(WorkerError("ProcessEnded", f"{self.id} exited"))

    def wait_started(self, timeout: float = 60.0) -> None:
        """Wait until the child's peer is connected."""
        deadline = time.monotonic() + timeout
        while not self.started.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.id} exited with status {self.proc.returncode} before it started")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} did not start within {timeout}s")

    def submit(self, op: str, **fields: Any) -> Future[Any]:
        """Send a command; its answer completes the returned Future."""
        future: Future[Any] = Future()
        fields = {k: encode(v) for k, v in fields.items()}
        with self._lock:
            self._n += 1
            n = self._n
            self._futures[n] = future
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"id": n, "op": op, **fields}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._futures.pop(n, None)
                future.set_exception(WorkerError("ProcessEnded", f"{self.id} is not running"))
        return future

    def call(self, op: str, timeout: float = 30.0, **fields: Any) -> Any:
        """Send a command and wait for its answer."""
        return self.submit(op, **fields).result(timeout)

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

    def kill(self) -> int:
        """SIGKILL the child (by pid), reap it; return time.monotonic_ns() just before the kill."""
        t = time.monotonic_ns()
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        return t

    def close(self) -> None:
        """Stop the child politely if it still runs (its session closes), then make sure it is gone."""
        if self.proc.poll() is None:
            try:
                self.call("stop", timeout=10)
                self.proc.wait(10)
            except Exception:
                pass
        self.kill()


def free_ports(n: int) -> list[int]:
    """n TCP ports on 127.0.0.1 that are free right now."""
    import socket

    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


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
