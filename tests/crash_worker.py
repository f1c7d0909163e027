"""A Peer in a process of its own, for the crash tests: killed with SIGKILL, restarted on its data_dir.

``python tests/crash_worker.py CONFIG_JSON`` starts a Peer and prints ``{"started": true}`` once it is connected,
or, if ``Peer.start`` fails, ``{"start_error": "StorageError", "message": ...}`` (and the same on stderr) and exits
with status :data:`START_FAILED`: a refusal to start is an answer, not a crash. It then reads one JSON command per
line from stdin and answers each with ``{"id": n, "ok": value}`` or ``{"id": n, "error": "ClassName",
"message": ...}``. Commands run concurrently (a write waiting for a new leader does not hold up a ``stats``), so
answers may come out of order; :class:`CrashPeer` matches them to their calls by id.

The test side, :class:`CrashPeer`, kills only the process it started, by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TextIO

HERE = os.path.dirname(os.path.abspath(__file__))

#: The exit status of a child whose Peer refused to start (the reason is on its stdout and stderr).
START_FAILED = 3


# ----------------------------------------------------------------------------------------------------------------
# the child


def _child(config: dict[str, Any]) -> None:
    sys.path.insert(0, os.path.dirname(HERE))
    from concurrent.futures import ThreadPoolExecutor

    from embedzk import Peer
    from embedzk.errors import EmbedZKError, NoNodeError

    if "snapshot_step_bytes" in config:
        # Make snapshots of these small trees go out in many parts, as a big tree's do.
        from embedzk.replica import snapshots

        snapshots.STEP_BYTES = config["snapshot_step_bytes"]
        snapshots.CHUNK_BYTES = max(128, config["snapshot_step_bytes"] // 2)

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
        cluster=config.get("cluster", "embedzk"),
        session_timeout=config.get("session_timeout", 10.0),
        snapshot_entries=config.get("snapshot_entries", 10_000),
        request_timeout=config.get("request_timeout", 10.0),
    )
    try:
        peer.start(timeout=config.get("start_timeout", 30.0))
    except EmbedZKError as exc:
        emit({"start_error": type(exc).__name__, "message": str(exc)})
        sys.stderr.write(f"embedzk peer {config['id']} did not start: {type(exc).__name__}: {exc}\n")
        sys.stderr.flush()
        os._exit(START_FAILED)
    emit({"started": True})

    def stats() -> dict[str, Any]:
        s = peer.stats()
        keys = ("role", "term", "leader", "commit_index", "applied_index", "snapshot_index", "znode_count", "digest")
        return {k: s.get(k) for k in keys}

    def read(path: str) -> str | None:
        try:
            return peer.get(path)[0].decode()
        except NoNodeError:
            return None

    def check(expected: list[list[str]]) -> list[list[Any]]:
        """The (path, expected, found) of every expected value this peer does not hold."""
        wrong = []
        for path, value in expected:
            found = read(path)
            if found != value:
                wrong.append([path, value, found])
        return wrong

    ops: dict[str, Callable[..., Any]] = {
        "create": lambda path, value: peer.create(path, value.encode()),
        "set": lambda path, value: peer.set(path, value.encode()).version,
        "get": read,
        "values": lambda paths: {p: read(p) for p in paths},
        "check": check,
        "sync": lambda: peer.sync(),
        "stats": stats,
        "leader": lambda: peer.leader,
    }

    def run(n: int, op: str, args: list[Any]) -> None:
        try:
            emit({"id": n, "ok": ops[op](*args)})
        except Exception as exc:  # noqa: BLE001 - every failure is an answer the test side judges
            emit({"id": n, "error": type(exc).__name__, "message": str(exc)})

    pool = ThreadPoolExecutor(8)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "stop":
            peer.stop()
            emit({"id": cmd["id"], "ok": None})
            return
        pool.submit(run, cmd["id"], cmd["op"], cmd.get("args", []))
    peer.stop(close_session=False)


# ----------------------------------------------------------------------------------------------------------------
# the test side


class PeerGone(RuntimeError):
    """The child process is gone (killed, or exited): the outcome of what was asked of it is unknown."""


class StartFailed(RuntimeError):
    """The child's Peer refused to start; ``name`` is the error's class name, ``message`` its text."""

    def __init__(self, name: str, message: str, returncode: int | None) -> None:
        super().__init__(f"{name}: {message} (exit status {returncode})")
        self.name = name
        self.message = message
        self.returncode = returncode


class CrashPeer:
    """One child process running a Peer; :meth:`call` is safe from several threads at once."""

    def __init__(self, config: dict[str, Any], stderr: TextIO | None = None) -> None:
        self.config = config
        self.id: str = config["id"]
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        self._n = 0
        self._waiting: dict[int, Future[Any]] = {}
        self._gone = False
        self._started: Future[None] = Future()
        self._reader = threading.Thread(target=self._read, name=f"crash-peer-{self.id}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True while the child runs and answers."""
        return not self._gone and self.proc.poll() is None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "started" in msg:
                self._started.set_result(None)
            elif "start_error" in msg:
                self._started.set_exception(StartFailed(msg["start_error"], msg["message"], None))
            else:
                with self._lock:
                    future = self._waiting.pop(msg.get("id"), None)
                if future is not None:
                    future.set_result(msg)
        # End of output: the process is gone; whatever waits learns it now.
        with self._lock:
            self._gone = True
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(PeerGone(f"peer {self.id} (pid {self.pid}) is gone"))
        if not self._started.done():
            self._started.set_exception(PeerGone(f"peer {self.id} (pid {self.pid}) exited before it started"))

    def wait_started(self, timeout: float = 30.0) -> None:
        """Wait until the child's Peer is connected; StartFailed if it refused to start, PeerGone if it died."""
        try:
            self._started.result(timeout)
        except StartFailed as exc:
            raise StartFailed(exc.name, exc.message, self.proc.wait(10)) from None
        except FutureTimeout:
            raise TimeoutError(f"peer {self.id} did not start within {timeout}s") from None

    def call(self, op: str, *args: Any, timeout: float = 15.0) -> Any:
        """Run ``op`` in the child; RuntimeError("Name: message") for the child's errors, PeerGone if it died."""
        future: Future[Any] = Future()
        with self._lock:
            if self._gone:
                raise PeerGone(f"peer {self.id} (pid {self.pid}) is gone")
            self._n += 1
            n = self._n
            self._waiting[n] = future
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": n, "op": op, "args": list(args)}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._waiting.pop(n, None)
                raise PeerGone(f"peer {self.id} (pid {self.pid}) is gone") from None
        try:
            answer = future.result(timeout)
        except FutureTimeout:
            with self._lock:
                self._waiting.pop(n, None)
            raise TimeoutError(f"peer {self.id}: no answer to {op} within {timeout}s") from None
        if "error" in answer:
            raise RuntimeError(f"{answer['error']}: {answer.get('message')}")
        return answer["ok"]

    def kill(self) -> None:
        """SIGKILL the child (by its pid) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)

    def close(self) -> None:
        """Stop the child politely if it answers, then make sure it is gone."""
        if self.alive:
            try:
                self.call("stop", timeout=10)
                self.proc.wait(10)
            except (PeerGone, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                pass  # killed below
        self.kill()


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
