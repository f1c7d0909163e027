"""The kazoo side of compare.py: one client-side code for every system that serves ZooKeeper's client protocol.

Two systems run it: ``zookeeper-tick*`` (Apache ZooKeeper's JVMs, compare_zookeeper.py) and ``embedzk-kazoo``
(embedzk peers serving ZooKeeper's protocol, compare_embedzk_kazoo.py). Both are three servers with one worker
process beside each, a kazoo client connected to that server first (the others listed after it, not shuffled), so
"the client on member i" is an application process that talks to server i over loopback. The workers are this
module, ``python benchmarks/compare_kazoo.py --agent CONFIG`` (see compare_common), whatever the servers are: the
two systems are measured through the same client calls, the same kazoo, the same timers.

:class:`KazooServers` is the driver's side both share: the workers, and what it learns from the servers through
ZooKeeper's four-letter words (``srvr``: role and node count; ``cons``: the session timeouts granted). A subclass
starts, kills and restarts the servers.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common

#: The four-letter words the servers of both systems answer: srvr (role, node count), cons (session timeouts),
#: mntr and ruok for a person looking at a running benchmark.
FOUR_LETTER_WORDS = ("srvr", "mntr", "ruok", "cons")


# ----------------------------------------------------------------------------------------------------------------
# the worker: a kazoo client


class KazooOps(common.Ops):
    def __init__(self, client: Any) -> None:
        self.client = client
        self._seq = 0
        #: The session move in progress (move_arm to move_wait): its node, the state changes seen, the session.
        self._move: dict[str, Any] | None = None

    def ensure(self, path: str) -> None:
        self.client.ensure_path(path)

    def create_async(self, path: str, value: bytes, done: Callable[[BaseException | None], None]) -> None:
        def finished(result: Any) -> None:
            try:
                result.get_nowait()
            except Exception as exc:
                done(exc)
                return
            done(None)

        self.client.create_async(path, value).rawlink(finished)

    def set(self, path: str, value: bytes) -> None:
        self.client.set(path, value)

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def read_throughput(self, path: str, seconds: float) -> float:
        # Over the network the fastest a kazoo user reads is pipelined: get_async with up to 1,000 outstanding.
        slots = threading.Semaphore(1000)
        done = [0]
        lock = threading.Lock()
        errors: list[BaseException] = []

        def finished(result: Any) -> None:
            try:
                result.get_nowait()
            except Exception as exc:
                errors.append(exc)
            with lock:
                done[0] += 1
            slots.release()

        began = time.perf_counter()
        end = began + seconds
        sent = 0
        while time.perf_counter() < end:
            slots.acquire()
            self.client.get_async(path).rawlink(finished)
            sent += 1
        for _ in range(1000):  # wait for the outstanding ones
            slots.acquire()
        elapsed = time.perf_counter() - began
        if errors:
            raise RuntimeError(f"{len(errors)} reads failed, first {errors[0]!r}")
        return sent / elapsed

    def sync(self) -> None:
        self.client.sync("/")

    def watch(self, path: str, on_event: Callable[[], None]) -> None:
        # kazoo 2.11 has no persistent watches: a one-shot watch re-armed from its own callback (what DataWatch
        # does, without reading the data back). Every change fires once as long as changes are further apart
        # than the re-arm's round trip (the workload spaces them by milliseconds).
        def fired(event: Any) -> None:
            on_event()
            self.client.exists_async(path, watch=fired)

        self.client.exists(path, watch=fired)

    def lock(self, path: str) -> tuple[Callable[[float], bool], Callable[[], None]]:
        from kazoo.exceptions import LockTimeout

        lock = self.client.Lock(path, identifier=str(os.getpid()))

        def acquire(timeout: float) -> bool:
            try:
                return bool(lock.acquire(timeout=timeout))
            except LockTimeout:
                return False

        return acquire, lock.release

    def write_once(self, path: str, timeout: float) -> None:
        self.client.create_async(path, b"", sequence=True, makepath=True).get(timeout=timeout)

    def election(self, path: str, identifier: str) -> Any:
        return self.client.Election(path, identifier)

    def load(self, prefix: str, start: int, count: int, batch: int) -> None:
        self.client.ensure_path(prefix)
        pending: list[Any] = []
        for first in range(start, start + count, batch):
            txn = self.client.transaction()
            for i in range(first, min(first + batch, start + count)):
                txn.create(f"{prefix}/n{i}", common.VALUE)
            pending.append(txn.commit_async())
            if len(pending) >= 8:
                _check_txn(pending.pop(0).get(timeout=120))
        for result in pending:
            _check_txn(result.get(timeout=120))

    def close(self) -> None:
        self.client.stop()
        self.client.close()

    # -- session move: the client's server goes away, the client goes on elsewhere with its session ------------

    def connected_port(self) -> int | None:
        """The port of the server this client is connected to now, or None while it is not connected."""
        # kazoo keeps the socket of its current connection there; its own command() (four-letter words to "the
        # current server") reads the peer's address the same way.
        sock = getattr(self.client._connection, "_socket", None)
        if sock is None or not self.client.connected:
            return None
        try:
            return int(sock.getpeername()[1])
        except OSError:
            return None

    def move_arm(self, path: str) -> dict[str, Any]:
        """Create the ephemeral node ``path`` and start noting the client's state changes (time.time())."""
        from kazoo.protocol.states import KazooState

        self.client.create(path, b"", ephemeral=True, makepath=True)
        states: list[tuple[float, str]] = []
        connected = threading.Event()

        def listener(state: Any) -> None:
            states.append((time.time(), str(state)))
            # A CONNECTED after the connection was lost (SUSPENDED): the session is back, on some server.
            if state == KazooState.CONNECTED and any(s != "CONNECTED" for _, s in states):
                connected.set()

        self.client.add_listener(listener)
        self._move = {"path": path, "states": states, "connected": connected, "listener": listener,
                      "session": self.client.client_id[0]}
        return {"port": self.connected_port(), "session": f"{self.client.client_id[0]:x}"}

    def move_wait(self, seconds: float) -> dict[str, Any]:
        """Wait until the client is CONNECTED again after losing its connection; check that its session is the
        same and its ephemeral node still its own. Times are time.time() (the driver's clock too)."""
        move = self._move
        if move is None:
            raise RuntimeError("move_wait without move_arm")
        self._move = None
        try:
            if not move["connected"].wait(seconds):
                raise RuntimeError(f"not connected again within {seconds:.0f}s; states {move['states']}")
            connected_at = next(t for t, s in reversed(move["states"]) if s == "CONNECTED")
            if any(s == "LOST" for _, s in move["states"]):
                raise RuntimeError(f"the session was lost: states {move['states']}")
            if self.client.client_id[0] != move["session"]:
                raise RuntimeError("the client has a new session")
            stat = self.client.exists(move["path"])
            verified_at = time.time()
            if stat is None or stat.ephemeralOwner != move["session"]:
                raise RuntimeError(f"the ephemeral {move['path']} is gone or not the session's: {stat}")
            suspended_at = next((t for t, s in move["states"] if s == "SUSPENDED"), None)
            return {"suspended_at": suspended_at, "connected_at": connected_at, "verified_at": verified_at,
                    "port": self.connected_port(), "states": [s for _, s in move["states"]]}
        finally:
            self.client.remove_listener(move["listener"])
            try:  # tidy up; a failure here must not hide the one above
                self.client.delete(move["path"])
            except Exception:
                pass


def _check_txn(results: list[Any]) -> None:
    for r in results:
        if isinstance(r, Exception):
            raise r


def _open(config: dict[str, Any]) -> tuple[common.Ops, dict[str, Any]]:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=config["hosts"], randomize_hosts=False, timeout=common.SESSION_TIMEOUT_S)
    client.start(timeout=60)
    return KazooOps(client), {"hosts": config["hosts"]}


def _extra(ops: common.Ops, op: str, args: dict[str, Any]) -> Any:
    assert isinstance(ops, KazooOps)
    if op == "connected_port":
        return ops.connected_port()
    if op == "move_arm":
        return ops.move_arm(args["path"])
    if op == "move_wait":
        return ops.move_wait(args["seconds"])
    raise ValueError(f"unknown op {op}")


# ----------------------------------------------------------------------------------------------------------------
# the driver's side: what the servers say to four-letter words


def four_letter(port: int, word: str = "srvr", timeout: float = 2.0) -> str:
    """Send a four-letter command to a server's client port; its answer (empty if it does not answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def server_state(port: int) -> tuple[str | None, int | None]:
    """(mode, node count) from ``srvr``: mode is leader, follower or None while the server does not serve."""
    text = four_letter(port)
    mode = None
    count = None
    for line in text.splitlines():
        if line.startswith("Mode:"):
            mode = line.split(":", 1)[1].strip()
        elif line.startswith("Node count:"):
            count = int(line.split(":", 1)[1].strip())
    return mode, count


class KazooServers:
    """Three servers of ZooKeeper's client protocol and one kazoo worker beside each (the driver's side).

    A subclass sets ``name``, ``description`` and ``client_ports`` (in member order) and supplies the servers:
    :meth:`check`, :meth:`_launch_server` (which sets ``launched_at[i]``), :meth:`_server_exited`,
    :meth:`member_pid`, :meth:`kill_member` and :meth:`_stop_servers`.
    """

    supports_watches = True
    supports_election = True
    supports_session_move = True
    local_reads = False
    name = ""
    description = ""

    def __init__(self, client_ports: list[int]) -> None:
        self.client_ports = client_ports
        self.agents: list[common.Agent | None] = [None, None, None]
        self.launched_at = [0.0, 0.0, 0.0]

    # -- the servers: the subclass's ---------------------------------------------------------------------------

    def check(self) -> None:
        raise NotImplementedError

    def _launch_server(self, i: int) -> None:
        """Start server i (on its data, if it has some), without waiting; note ``launched_at[i]``."""
        raise NotImplementedError

    def _server_exited(self, i: int) -> str | None:
        """Why server i's process ended (with the end of its log), or None while it runs."""
        raise NotImplementedError

    def member_pid(self, i: int) -> int:
        raise NotImplementedError

    def member_alive(self, i: int) -> bool:
        raise NotImplementedError

    def kill_member(self, i: int) -> None:
        """SIGKILL server i's process, by its pid."""
        raise NotImplementedError

    def _stop_servers(self) -> None:
        """Kill every server process, by its pid."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------------------

    def _wait_serving(self, i: int, timeout: float, min_count: int | None = None) -> float:
        """Wait until server i answers srvr as leader or follower (holding at least min_count nodes); the
        seconds since its process was launched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self._server_exited(i)
            if exited is not None:
                raise RuntimeError(f"{self.name} server {i + 1} exited: {exited}")
            mode, count = server_state(self.client_ports[i])
            if mode in ("leader", "follower") and (min_count is None or (count or 0) >= min_count):
                return time.perf_counter() - self.launched_at[i]
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} server {i + 1} not serving after {timeout:.0f}s")

    def _hosts(self, i: int) -> str:
        order = [i] + [j for j in range(3) if j != i]
        return ",".join(f"127.0.0.1:{self.client_ports[j]}" for j in order)

    def start(self) -> None:
        for i in range(3):
            self._launch_server(i)
        for i in range(3):
            self._wait_serving(i, 90)
        for i in range(3):
            self._launch_client(i)
        for agent in self.agents:
            assert agent is not None
            agent.wait_started(60)

    def _launch_client(self, i: int) -> common.Agent:
        agent = common.Agent(os.path.abspath(__file__), {"hosts": self._hosts(i)}, f"{self.name}-client{i + 1}")
        self.agents[i] = agent
        return agent

    def client(self, i: int) -> common.Agent:
        agent = self.agents[i]
        assert agent is not None
        return agent

    def leader(self) -> int:
        for i in range(3):
            mode, _ = server_state(self.client_ports[i])
            if mode == "leader":
                return i
        raise RuntimeError(f"no {self.name} server reports Mode: leader")

    def client_pid(self, i: int) -> int | None:
        return self.client(i).pid

    def session_timeouts(self) -> list[float]:
        """The session timeouts (s) the servers granted their clients, from ``cons`` (a server clamps what a
        client asks for to [2, 20] x tickTime; kazoo does not expose what it was granted)."""
        granted = []
        for port in self.client_ports:
            granted += [int(ms) / 1000.0 for ms in re.findall(r"\bto=(\d+)", four_letter(port, "cons")) if int(ms)]
        return granted

    def node_count(self) -> int:
        counts = [server_state(p)[1] or 0 for p in self.client_ports]
        return max(counts)

    def restart_member(self, i: int, expect_path: str | None = None, expect_count: int | None = None) -> float:
        """Start server i again on its data; seconds from its process' launch until it serves as a member of the
        ensemble holding at least ``expect_count`` znodes."""
        self._launch_server(i)
        return self._wait_serving(i, 180, expect_count)

    def wait_member_ready(self, i: int) -> None:
        self._wait_serving(i, 120)

    # -- the kazoo workers: a client killed leaves its server running ----------------------------------------

    def client_alive(self, i: int) -> bool:
        agent = self.agents[i]
        return agent is not None and agent.proc.poll() is None

    def kill_client(self, i: int) -> None:
        agent = self.agents[i]
        if agent is not None:
            common.PROCESSES.kill(agent.proc)  # SIGKILL by pid, then reaped

    def restart_client(self, i: int) -> None:
        """A new kazoo worker beside server i (a new session)."""
        self._launch_client(i).wait_started(60)

    def connected_member(self, i: int) -> int | None:
        """The member whose server the worker beside member i is connected to now (None: not connected)."""
        port = self.client(i).call("connected_port", timeout=30)
        return self.client_ports.index(port) if port in self.client_ports else None

    def rehome_client(self, i: int) -> None:
        """Replace the worker beside member i by a new one connected to server i (the old one closes its
        session), for a workload that needs it there after its client moved to another server."""
        self.client(i).close()
        self.restart_client(i)

    def stop(self) -> None:
        try:
            for agent in self.agents:
                if agent is not None:
                    agent.close()
        finally:
            self._stop_servers()


if __name__ == "__main__":
    common.worker_main(_open, _extra)
