"""Apache ZooKeeper in compare.py: a 3-server ensemble on loopback, driven from Python by kazoo.

The servers are the Debian package's jars (``apt-get install zookeeper``: ZooKeeper 3.8), started as
``java -Xmx1000m -cp /usr/share/java/zookeeper.jar:CONFDIR org.apache.zookeeper.server.quorum.QuorumPeerMain
zoo.cfg`` (the heap that upstream's zkServer.sh gives a server), one JVM per server, each with a generated zoo.cfg,
free loopback ports and its data directory under the run's temporary directory (transaction log fsynced, as
ZooKeeper's default forceSync=yes). A member is its server's JVM; beside each server runs one worker process with a
kazoo client connected to it first (its other servers listed after it), so "the client on member i" is an
application process that talks to server i over loopback, as kazoo users do. The workers and what the driver
shares with embedzk-kazoo (the same kazoo client code for both) are compare_kazoo's.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_common as common
import compare_kazoo

JAR_DIR = "/usr/share/java"
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
HEAP = "-Xmx1000m"


# ----------------------------------------------------------------------------------------------------------------
# the driver's side: the servers (the kazoo workers beside them are compare_kazoo's, as for embedzk-kazoo)


class System(compare_kazoo.KazooServers):
    """Three ZooKeeper servers (JVMs) and one kazoo worker beside each."""

    def __init__(self, root: str, tick_ms: int) -> None:
        ports = common.free_ports(9)
        super().__init__(ports[0:3])
        self.tick_ms = tick_ms
        self.name = f"zookeeper-tick{tick_ms}"
        self.description = (
            f"ZooKeeper 3.8 (Debian package), 3 JVMs on loopback, tickTime {tick_ms} ms, initLimit 10, "
            f"syncLimit 5, forceSync yes, {HEAP}; kazoo clients in 3 worker processes, session timeout "
            f"{common.SESSION_TIMEOUT_S:g} s"
        )
        self.root = os.path.join(root, self.name)
        self.quorum_ports = ports[3:6]
        self.election_ports = ports[6:9]
        self.servers: list[subprocess.Popen[Any] | None] = [None, None, None]

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
            "4lw.commands.whitelist=" + ",".join(compare_kazoo.FOUR_LETTER_WORDS),
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

    def _server_exited(self, i: int) -> str | None:
        proc = self.servers[i]
        if proc is not None and proc.poll() is not None:
            return self._server_log_tail(i)
        return None

    def start(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        super().start()

    def member_alive(self, i: int) -> bool:
        proc = self.servers[i]
        return proc is not None and proc.poll() is None

    def member_pid(self, i: int) -> int:
        proc = self.servers[i]
        assert proc is not None
        return proc.pid

    def kill_member(self, i: int) -> None:
        proc = self.servers[i]
        if proc is not None:
            common.PROCESSES.kill(proc)  # SIGKILL by pid, then reaped

    def _stop_servers(self) -> None:
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
