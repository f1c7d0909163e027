"""What the child scripts of the multi-process tests share: a Peer in a process of its own, driven over stdin/stdout.

``python tests/<script>.py CONFIG_JSON`` (``peer_process.py``, ``recipe_worker.py``, ``crash_worker.py``) builds a
Peer from the config (:func:`start_peer`), prints ``{"started": true, "pid": ..., "leader": ...}`` once it is
connected, or, if ``Peer.start`` refuses, ``{"start_error": "ClassName", "message": ...}`` (and the same on stderr)
and exits with status :data:`START_FAILED`: a refusal to start is an answer, not a crash. It then reads one JSON
command per line, ``{"id": n, "op": ..., ...}``, and answers each with one line ``{"id": n, "ok": value}`` or
``{"id": n, "error": "ClassName", "message": ...}`` (:func:`serve`); ``stop`` stops the Peer (closing its session)
and ends the child. Events the child reports arrive as ``{"event": {...}}`` lines at any time. Bytes travel as
``{"b64": ...}`` (:func:`encode`, :func:`decode`).

The test side is :class:`WorkerProcess`: it matches answers to calls by id (so a child may answer out of order),
and kills only the process it started, by pid. Each script keeps just its own commands and its test-side methods.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TextIO

from embedzk.testing import free_ports  # noqa: F401  (re-exported for the scripts that import it from here)

if TYPE_CHECKING:
    from embedzk import Peer

#: The exit status of a child whose Peer refused to start (the reason is on its stdout and stderr).
START_FAILED = 3


def encode(value: Any) -> Any:
    """A JSON-able form of a value: bytes as ``{"b64": ...}``, dataclasses as dicts, exceptions as their name."""
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
    if isinstance(value, BaseException):
        return {"error": type(value).__name__}
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

_out_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    """Write one JSON line to stdout (whole, from any thread)."""
    line = json.dumps(obj)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def start_peer(config: dict[str, Any], start_timeout: float, **options: Any) -> Peer:
    """The Peer the config describes, started; announce it, or report the refusal and exit with START_FAILED.

    ``config`` has ``id``, ``bind``, ``peers`` (or ``seeds``, with ``voters`` and ``member_timeout``) and optionally
    ``data_dir``, ``start_timeout``, ``tick_interval`` and ``protocol_version``; each keyword of
    ``options`` names a further argument of Peer, taken from the config, with the keyword's value as its default.
    """
    from embedzk import Peer
    from embedzk.errors import EmbedZKError

    membership = {name: config[name] for name in ("seeds", "voters", "member_timeout", "tick_interval",
                                                   "protocol_version") if name in config}
    peer = Peer(
        config["id"],
        bind=config["bind"],
        peers=config.get("peers"),
        data_dir=config.get("data_dir"),
        **membership,
        **{name: config.get(name, default) for name, default in options.items()},
    )
    try:
        peer.start(timeout=config.get("start_timeout", start_timeout))
    except EmbedZKError as exc:
        emit({"start_error": type(exc).__name__, "message": str(exc)})
        sys.stderr.write(f"embedzk peer {config['id']} did not start: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        os._exit(START_FAILED)
    emit({"started": True, "pid": os.getpid(), "leader": peer.leader})
    return peer


def serve(
    peer: Peer,
    handle: Callable[[dict[str, Any]], Any],
    threads: int | None = None,
    at_end: Callable[[], None] | None = None,
) -> None:
    """Answer the commands on stdin with ``handle(command)`` (bytes decoded) until ``stop`` or the end of stdin.

    ``threads``: None runs one command at a time, in order; 0 runs each on a thread of its own (a blocking call
    does not hold up the next); N runs them on a pool of N threads. At the end of stdin (the test side is gone)
    ``at_end`` runs, by default ``peer.stop()``.
    """

    def answer(cmd: dict[str, Any]) -> None:
        try:
            emit({"id": cmd["id"], "ok": encode(handle(cmd))})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer the test side judges
            emit({"id": cmd["id"], "error": type(exc).__name__, "message": str(exc)})

    pool = ThreadPoolExecutor(threads) if threads else None
    for line in sys.stdin:
        cmd = decode(json.loads(line))
        if cmd["op"] == "stop":
            peer.stop()
            emit({"id": cmd["id"], "ok": None})
            return
        if pool is not None:
            pool.submit(answer, cmd)
        elif threads == 0:
            threading.Thread(target=answer, args=(cmd,), daemon=True).start()
        else:
            answer(cmd)
    (at_end or peer.stop)()


# ----------------------------------------------------------------------------------------------------------------
# the test side


class WorkerError(RuntimeError):
    """A command failed in the child; ``kind`` is the name of the exception class there."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class PeerGone(WorkerError):
    """The child process is gone (killed, or exited): the outcome of what was asked of it is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__("ProcessEnded", message)


class StartFailed(RuntimeError):
    """The child's Peer refused to start; ``name`` is the error's class name, ``message`` its text."""

    def __init__(self, name: str, message: str, returncode: int | None) -> None:
        super().__init__(f"{name}: {message} (exit status {returncode})")
        self.name = name
        self.message = message
        self.returncode = returncode


class WorkerProcess:
    """One child process running a Peer (the script named by ``script``); safe to call from several threads.

    Answers complete the Futures of :meth:`submit` (with the decoded value, or a WorkerError); once the child is
    gone, every open and later call fails with PeerGone. Events go to the queue ``events``.
    """

    #: The child script; each subclass names its own.
    script: str
    #: How long :meth:`wait_started` waits by default.
    start_wait = 30.0

    def __init__(self, config: dict[str, Any], stderr: TextIO | None = None) -> None:
        self.config = config
        self.id: str = config["id"]
        self.proc = subprocess.Popen(
            [sys.executable, self.script, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.start_info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._n = 0
        self._waiting: dict[int, Future[Any]] = {}
        self._gone = False
        self._started: Future[None] = Future()
        self._reader = threading.Thread(target=self._read, name=f"{type(self).__name__}-{self.id}", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        """True while the child runs and answers."""
        return not self._gone and self.proc.poll() is None

    def on_event(self, event: dict[str, Any]) -> None:
        """Take an event the child reported (a subclass may decode it first)."""
        self.events.put(event)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "event" in msg:
                self.on_event(msg["event"])
            elif "started" in msg:
                self.start_info = msg
                self._started.set_result(None)
            elif "start_error" in msg:
                self._started.set_exception(StartFailed(msg["start_error"], msg["message"], None))
            elif "id" in msg:
                with self._lock:
                    future = self._waiting.pop(msg["id"], None)
                if future is None:
                    continue  # its caller gave up waiting
                if "error" in msg:
                    future.set_exception(WorkerError(msg["error"], msg.get("message", "")))
                else:
                    future.set_result(decode(msg["ok"]))
        # End of output: the process is gone; whatever waits learns it now.
        with self._lock:
            self._gone = True
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(PeerGone(f"{self.id} (pid {self.pid}) is gone"))
        if not self._started.done():
            self._started.set_exception(PeerGone(f"{self.id} (pid {self.pid}) exited before it started"))

    def wait_started(self, timeout: float | None = None) -> None:
        """Wait until the child's Peer is connected; StartFailed if it refused to start, PeerGone if it died."""
        timeout = self.start_wait if timeout is None else timeout
        try:
            self._started.result(timeout)
        except StartFailed as exc:
            raise StartFailed(exc.name, exc.message, self.proc.wait(10)) from None
        except PeerGone:
            status = self.proc.wait(10)
            raise PeerGone(f"{self.id} (pid {self.pid}) exited with status {status} before it started") from None
        except FutureTimeout:
            raise TimeoutError(f"{self.id} did not start within {timeout}s") from None

    def submit(self, op: str, **fields: Any) -> Future[Any]:
        """Send the command ``{"op": op, **fields}`` (bytes encoded); its answer completes the returned Future."""
        future: Future[Any] = Future()
        fields = {k: encode(v) for k, v in fields.items()}
        with self._lock:
            if self._gone:
                future.set_exception(PeerGone(f"{self.id} (pid {self.pid}) is gone"))
                return future
            self._n += 1
            n = self._n
            self._waiting[n] = future
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": n, "op": op, **fields}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._waiting.pop(n, None)
                future.set_exception(PeerGone(f"{self.id} (pid {self.pid}) is not running"))
        return future

    def request(self, op: str, timeout: float, **fields: Any) -> Any:
        """Send a command and wait ``timeout`` seconds for its answer (TimeoutError after that)."""
        future = self.submit(op, **fields)
        try:
            return future.result(timeout)
        except FutureTimeout:
            with self._lock:
                for n, waiting in list(self._waiting.items()):
                    if waiting is future:
                        del self._waiting[n]
            raise TimeoutError(f"{self.id}: no answer to {op} within {timeout}s") from None

    def kill(self) -> int:
        """SIGKILL the child (by its pid), reap it; return time.monotonic_ns() just before the kill."""
        t = time.monotonic_ns()
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)
        return t

    def close(self) -> None:
        """Stop the child politely if it answers (its session closes), then make sure it is gone."""
        if self.alive:
            with contextlib.suppress(Exception):  # if it does not stop, it is killed below
                self.request("stop", 10)
                self.proc.wait(10)
        self.kill()
