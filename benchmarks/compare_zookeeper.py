"""Apache ZooKeeper in compare.py: a 3-server ensemble on loopback, driven from Python by kazoo.

The servers are the Debian package's jars (``apt-get install zookeeper``: ZooKeeper 3.8), started as
``java -Xmx1000m -cp /usr/share/java/zookeeper.jar:CONFDIR org.apache.zookeeper.server.quorum.QuorumPeerMain
zoo.cfg`` (the heap that upstream's zkServer.sh gives a server), one JVM per server, each with a generated zoo.cfg,
free loopback ports and its data directory under the run's temporary directory (transaction log fsynced, as
ZooKeeper's default forceSync=yes). A member is its server's JVM; beside each server runs one worker process with a
kazoo client connected to it first (its other servers listed after it), so "the client on member i" is an
application process that talks to server i over loopback, as kazoo users do.

Run as ``python benchmarks/compare_zookeeper.py --agent CONFIG`` it is one such kazoo worker (see compare_common).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common

JAR_DIR = "/usr/share/java"
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
HEAP = "-Xmx1000m"


# ----------------------------------------------------------------------------------------------------------------
# the worker: a kazoo client


class KazooOps(common.Ops):
    def __init__(self, client: Any) -> None:
        self.client = client
        self._seq = 0

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


def _check_txn(results: list[Any]) -> None:
    for r in results:
        if isinstance(r, Exception):
            raise r


def _open(config: dict[str, Any]) -> tuple[common.Ops, dict[str, Any]]:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=config["hosts"], randomize_hosts=False, timeout=common.SESSION_TIMEOUT_S)
    client.start(timeout=60)
    return KazooOps(client), {"hosts": config["hosts"]}


# ----------------------------------------------------------------------------------------------------------------
# the driver's side: the servers


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


class System:
    """Three ZooKeeper servers (JVMs) and one kazoo worker beside each."""

    supports_watches = True
    supports_election = True
    local_reads = False

    def __init__(self, root: str, tick_ms: int) -> None:
        self.tick_ms = tick_ms
        self.name = f"zookeeper-tick{tick_ms}"
        self.description = (
            f"ZooKeeper 3.8 (Debian package), 3 JVMs on loopback, tickTime {tick_ms} ms, initLimit 10, "
            f"syncLimit 5, forceSync yes, {HEAP}; kazoo clients in 3 worker processes, session timeout "
            f"{common.SESSION_TIMEOUT_S:g} s"
        )
        self.root = os.path.join(root, self.name)
        ports = common.free_ports(9)
        self.client_ports = ports[0:3]
        self.quorum_ports = ports[3:6]
        self.election_ports = ports[6:9]
        self.servers: list[subprocess.Popen[Any] | None] = [None, None, None]
        self.agents: list[common.Agent | None] = [None, None, None]
        self.launched_at = [0.0, 0.0, 0.0]

    # -- servers ------------------------------------------------------------------------------------------------

    def check(self) -> None:
        if shutil.which("java") is None:
            raise RuntimeError("no java on PATH (bash benchmarks/setup_compare.sh installs the zookeeper package)")
        if not os.path.exists(os.path.join(JAR_DIR, "zookeeper.jar")):
            raise RuntimeError(f"{JAR_DIR}/zookeeper.jar missing (apt-get install zookeeper)")
        import kazoo  # noqa: F401

    def _write_config(self, i: int) -> str:
        base = os.path.join(self.root, f"s{i + 1}")
        data = os.path.join(base, "data")
        os.makedirs(data, exist_ok=True)
        with open(os.path.join(data, "myid"), "w") as f:
            f.write(f"{i + 1}\n")
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={data}",
            f"clientPort={self.client_ports[i]}",
            "clientPortAddress=127.0.0.1",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,mntr,ruok,cons",
            "quorumListenOnAllIPs=false",
        ]
        for j in range(3):
            lines.append(f"server.{j + 1}=127.0.0.1:{self.quorum_ports[j]}:{self.election_ports[j]}")
        cfg = os.path.join(base, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        return cfg

    def _launch_server(self, i: int) -> None:
        cfg = self._write_config(i)
        base = os.path.dirname(cfg)
        log = open(os.path.join(base, "server.log"), "ab")
        classpath = os.pathsep.join([os.path.join(JAR_DIR, "zookeeper.jar"), base])
        argv = [
            "java", HEAP, "-XX:+HeapDumpOnOutOfMemoryError",
            f"-Dzookeeper.log.dir={base}", "-Dzookeeper.root.logger=WARN,CONSOLE",
            "-cp", classpath, MAIN, cfg,
        ]
        self.launched_at[i] = time.perf_counter()
        self.servers[i] = common.PROCESSES.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=base)
        log.close()

    def _server_log_tail(self, i: int) -> str:
        path = os.path.join(self.root, f"s{i + 1}", "server.log")
        try:
            with open(path, errors="replace") as f:
                return f.read()[-600:]
        except OSError:
            return ""

    def _wait_serving(self, i: int, timeout: float, min_count: int | None = None) -> float:
        """Wait until server i answers srvr as leader or follower (holding at least min_count nodes);
        the seconds since its JVM was launched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.servers[i]
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper server {i + 1} exited: {self._server_log_tail(i)}")
            mode, count = server_state(self.client_ports[i])
            if mode in ("leader", "follower") and (min_count is None or (count or 0) >= min_count):
                return time.perf_counter() - self.launched_at[i]
            time.sleep(0.01)
        raise RuntimeError(f"ZooKeeper server {i + 1} not serving after {timeout:.0f}s: {self._server_log_tail(i)}")

    def _hosts(self, i: int) -> str:
        order = [i] + [j for j in range(3) if j != i]
        return ",".join(f"127.0.0.1:{self.client_ports[j]}" for j in order)

    def start(self) -> None:
        os.makedirs(self.root, exist_ok=True)
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
        raise RuntimeError("no ZooKeeper server reports Mode: leader")

    def member_alive(self, i: int) -> bool:
        proc = self.servers[i]
        return proc is not None and proc.poll() is None

    def member_pid(self, i: int) -> int:
        proc = self.servers[i]
        assert proc is not None
        return proc.pid

    def client_pid(self, i: int) -> int | None:
        return self.client(i).pid

    def session_timeouts(self) -> list[float]:
        """The session timeouts (s) the servers granted their clients, from ``cons`` (ZooKeeper clamps what a
        client asks for to [2, 20] x tickTime; kazoo does not expose what it was granted)."""
        granted = []
        for port in self.client_ports:
            granted += [int(ms) / 1000.0 for ms in re.findall(r"\bto=(\d+)", four_letter(port, "cons")) if int(ms)]
        return granted

    def node_count(self) -> int:
        counts = [server_state(p)[1] or 0 for p in self.client_ports]
        return max(counts)

    def kill_member(self, i: int) -> None:
        proc = self.servers[i]
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            common.PROCESSES.kill(proc)

    def restart_member(self, i: int, expect_path: str | None = None, expect_count: int | None = None) -> float:
        """Start server i again on its data; seconds from the JVM's launch until it serves as a member of the
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
            os.kill(agent.pid, signal.SIGKILL)
            common.PROCESSES.kill(agent.proc)

    def restart_client(self, i: int) -> None:
        """A new kazoo worker beside server i (a new session)."""
        self._launch_client(i).wait_started(60)

    def stop(self) -> None:
        for agent in self.agents:
            if agent is not None:
                agent.close()
        for proc in self.servers:
            if proc is not None:
                common.PROCESSES.kill(proc)


def java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], check=False, capture_output=True, text=True, timeout=30)
        return (out.stderr or out.stdout).strip().splitlines()[0]
    except Exception as exc:
        return f"unavailable ({exc})"


def zookeeper_version() -> str:
    jars = sorted(glob.glob(os.path.join(JAR_DIR, "zookeeper-3*.jar")))
    return os.path.basename(jars[0])[len("zookeeper-"):-len(".jar")] if jars else "unknown"


if __name__ == "__main__":
    common.worker_main(_open)
