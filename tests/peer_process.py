"""A Peer in a process of its own, driven by tests over its standard input and output.

``python tests/peer_process.py CONFIG_JSON`` starts a Peer and then reads one JSON command per line from stdin,
answering each with one JSON line on stdout: ``{"id": n, "ok": value}`` or ``{"id": n, "error": "ClassName",
"message": ...}``. Watch events arrive as ``{"event": {...}}`` lines at any time. The test side is
:class:`PeerProcess`, which always kills what it started (by pid) when it is done.
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
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _encode(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, BaseException):
        return {"error": type(value).__name__}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
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
        session_timeout=config.get("session_timeout", 10.0),
    )
    peer.start(timeout=config.get("start_timeout", 30.0))
    emit({"started": True, "leader": peer.leader})

    def on_event(path: str, event: Any) -> None:
        emit({"event": {"watch": path, "type": event.type.value, "path": event.path, "zxid": event.zxid,
                        "t": time.time()}})

    receivers = []
    for line in sys.stdin:
        cmd = json.loads(line)
        op, args, n = cmd["op"], [_decode(a) for a in cmd.get("args", [])], cmd["id"]
        kwargs = cmd.get("kwargs", {})
        try:
            if op == "stop":
                peer.stop()
                emit({"id": n, "ok": None})
                return
            if op == "watch":
                path = args[0]
                signal_ = peer.watch(path, recursive=kwargs.get("recursive", False))

                def receiver(sender: Any, event: Any, path: str = path) -> None:
                    on_event(path, event)

                receivers.append(receiver)
                signal_.connect(receiver, weak=False)
                result: Any = None
            elif op == "transaction":
                t = peer.transaction()
                for name, *op_args in args[0]:
                    getattr(t, name)(*[_decode(a) for a in op_args])
                result = t.commit()
            elif op == "data_watch":
                path = args[0]

                def on_data(data: Any, stat: Any, event: Any, path: str = path) -> None:
                    emit({"event": {"watch": path, "type": event.type.value if event else None, "path": path,
                                    "data": _encode(data), "t": time.time()}})

                peer.DataWatch(path, on_data)
                result = None
            elif op in ("leader", "is_leader", "session_id", "state", "observer"):
                result = getattr(peer, op)
                result = result.value if hasattr(result, "value") else result
            else:
                result = getattr(peer, op)(*args, **kwargs)
            emit({"id": n, "ok": _encode(result)})
        except Exception as exc:
            emit({"id": n, "error": type(exc).__name__, "message": str(exc)})
    peer.stop()


# ----------------------------------------------------------------------------------------------------------------
# the test side


class PeerProcess:
    """A child process running one Peer; call its methods with :meth:`call`."""

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
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.started = threading.Event()
        self.start_info: dict[str, Any] = {}
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
                self.events.put(msg["event"])
            elif "started" in msg:
                self.start_info = msg
                self.started.set()
            else:
                self._answers.put(msg)

    def wait_started(self, timeout: float = 30.0) -> None:
        """Wait until the child's peer is connected."""
        deadline = time.monotonic() + timeout
        while not self.started.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.id} exited with status {self.proc.returncode} before it started")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.id} did not start within {timeout}s")

    def call(self, op: str, *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Run ``peer.op(*args, **kwargs)`` in the child; raise RuntimeError naming the child's error."""
        with self._lock:
            self._n += 1
            n = self._n
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"id": n, "op": op, "args": [_encode(a) for a in args],
                                              "kwargs": kwargs}) + "\n")
            self.proc.stdin.flush()
            answer = self._answers.get(timeout=timeout)
        if answer.get("id") != n:
            raise RuntimeError(f"out of order answer {answer}")
        if "error" in answer:
            raise RuntimeError(f"{answer['error']}: {answer.get('message')}")
        return _decode(answer["ok"])

    def kill(self) -> None:
        """SIGKILL the child (by pid) and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        """Stop the child politely if it still runs, else kill it."""
        if self.proc.poll() is None:
            try:
                self.call("stop", timeout=10)
                self.proc.wait(10)
            except Exception:
                pass
        self.kill()


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
