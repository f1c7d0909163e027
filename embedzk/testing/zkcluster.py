"""EmbedZKCluster: a cluster of embedzk peers in child processes, serving ZooKeeper's client protocol.

A test harness to run ZooKeeper client code (kazoo, zkCli.sh, Curator ...) against embedzk, with the surface of
kazoo's own test cluster (``kazoo.testing.common.ZookeeperCluster`` and its ``ManagedZooKeeper`` servers), so that
code written for that harness runs unchanged. Each server is one process running one :class:`~embedzk.Peer` of a
static membership (ids ``"1"``, ``"2"``, ...), listening for its peers on ``tcp://127.0.0.1:<port>`` and for
ZooKeeper clients on ``127.0.0.1:<port>``; both ports are chosen free once, when the cluster is made, and kept, so
a server that is stopped and run again comes back where its clients expect it, from its own data directory, as
the same member::

    from kazoo.client import KazooClient
    from embedzk.testing.zkcluster import EmbedZKCluster

    with EmbedZKCluster(size=3) as cluster:          # start() on enter, terminate() on exit
        client = KazooClient(hosts=cluster.hosts)    # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        client.start()
        client.create("/app", b"v1")
        cluster[0].stop()                            # a clean shutdown (SIGTERM); kill() is a crash (SIGKILL)
        assert client.get("/app")[0] == b"v1"        # the client moved to another server, same session
        cluster[0].run()                             # back on the same ports, from its own data directory
        client.stop()
        client.close()

What a server does and what the surface means:

* ``server.run()`` starts its process and returns once its client port accepts connections (a Peer serves
  clients only once it knows a leader, so a lone server of three waits for a second one: start them together with
  ``cluster.start()``). ``server.running`` is true from then until it stops.
* ``server.stop()`` asks for a clean shutdown (SIGTERM: the peer hands leadership over, its client connections
  close and their clients move to another server, keeping their sessions), and kills the process if it has not
  ended within ``stop_timeout``; ``server.kill()`` ends it at once (SIGKILL), as a crash would. Both keep its data.
* ``server.reset()`` stops it and wipes its data directory; ``server.destroy()`` kills it and wipes its data too.
  A server wiped while the others keep theirs has lost its log, and embedzk does not let a member vote with a log
  it lost: reset or terminate the whole cluster instead (``cluster.reset()``, ``cluster.terminate()``).
* ``server.get_logs(n)`` is the last ``n`` lines of its log file (``server.log_path``: the child's logging and
  anything it printed, across its restarts).
* ``cluster.start()``, ``stop()``, ``terminate()``, ``reset()`` act on every server at once; ``cluster[i]`` and
  iteration give the servers; ``get_logs()`` joins their logs. Unlike kazoo's, ``stop()`` keeps the servers, so
  ``start()`` can bring them back.

The child processes are only ever ended by their pid: by ``stop``/``kill``/``destroy``, by an :mod:`atexit` hook
of the process that started them, and, should that process die without running it, by themselves: each child
watches its standard input, a pipe from its parent, and stops once the pipe closes.

The data and the logs live under ``base_dir`` (by default a new temporary directory, removed by :meth:`close`
and at exit; a directory given by the caller is left in place). The servers are configured as kazoo's harness
configures ZooKeeper (``tickTime=2000``, ``maxClientCnxns=0``, every four-letter word answered, reconfig enabled:
:data:`KAZOO_CLIENT_SETTINGS`, and its superuser: :data:`KAZOO_PEER_OPTIONS`); ``client_settings`` and
``peer_options`` change that.

Not offered (as of this version): TLS (``get_ssl_client_configuration()`` raises NotImplementedError), observers
at start, and what the peers themselves do not serve (see docs/zookeeper.md: read-only mode, SASL).

The children are started as ``python -m embedzk.testing.zkcluster serve CONFIG_JSON``; that entry point is internal.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from embedzk.testing.ports import free_ports

__all__ = ["EmbedZKCluster", "EmbedZKServer", "KAZOO_CLIENT_SETTINGS", "kill_leftovers"]

log = logging.getLogger(__name__)

#: The client settings kazoo's test harness gives ZooKeeper in its zoo.cfg (``tickTime=2000``,
#: ``maxClientCnxns=0``, ``4lw.commands.whitelist=*``, ``reconfigEnabled=true``), as
#: :class:`~embedzk.zkserver.settings.ClientSettings` fields. kazoo's tests open many connections from 127.0.0.1,
#: ask for ``envi`` and reconfigure the ensemble, hence no connection limit, every four-letter word and reconfig.
KAZOO_CLIENT_SETTINGS: Mapping[str, Any] = {
    "tick_time_ms": 2000,
    "max_client_cnxns": 0,
    "four_letter_words": ["*"],
    "reconfig_enabled": True,
}

#: The peers' options kazoo's harness implies: its ZooKeeper servers take the superuser ``super`` with password
#: ``test`` (``-Dzookeeper.DigestAuthenticationProvider.superDigest``).
KAZOO_PEER_OPTIONS: Mapping[str, Any] = {"super_digest": "super:D/InIHSb7yEEbrWz8b9l71RjZJU="}

# The exit status of a child whose Peer could not start (the reason is in its log).
_START_FAILED = 3
_HOST = "127.0.0.1"

# Every child started by this process and not yet reaped, by pid: what the exit hook kills.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def _kill_children() -> None:
    """Kill (by pid) every child still running: the exit hook, so that no server outlives the process."""
    with _children_lock:
        children = list(_children.values())
        _children.clear()
    for child in children:
        _kill(child)


atexit.register(_kill_children)


def _kill(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``child`` by its pid, if it still runs, and reap it."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(10)
    if child.stdin is not None:
        with contextlib.suppress(OSError):
            child.stdin.close()


def _accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted now (it is closed again at once, unused)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_server(pid: int) -> bool:
    """Whether ``pid`` runs a server of this module (``/proc/<pid>/cmdline`` says so; without ``/proc``, whether
    the pid exists at all)."""
    if Path("/proc/self").exists():
        try:
            return b"embedzk.testing.zkcluster" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False  # gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not one of ours
    return True


def _checkout_root() -> str:
    """The directory holding the ``embedzk`` package this process imported: the children import the same one."""
    import embedzk

    return str(Path(embedzk.__file__).resolve().parent.parent)


class EmbedZKServer:
    """One server of an :class:`EmbedZKCluster`: a child process running one Peer (kazoo's ``ManagedZooKeeper``).

    Made by the cluster, which gives it its ports and its peers; see the module's documentation for what each
    method does. ``server_id`` is its peer id (``"1"``, ``"2"``, ...), ``client_port`` where it serves ZooKeeper
    clients, ``peer_port`` where its peers reach it, ``working_path`` its directory (``data/`` and ``server.log``).
    """

    def __init__(
        self,
        server_id: str,
        client_port: int,
        peer_port: int,
        peers: Mapping[str, str],
        working_path: str | os.PathLike[str],
        *,
        client_settings: Mapping[str, Any] | None = None,
        peer_options: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        log_level: str = "INFO",
    ) -> None:
        self.server_id = server_id
        #: The host both ports are on: loopback.
        self.host = _HOST
        self.client_port = client_port
        self.peer_port = peer_port
        #: Where the peer listens for its peers (``tcp://127.0.0.1:<peer_port>``).
        self.bind = f"tcp://{_HOST}:{peer_port}"
        #: The other members, id -> address.
        self.peers = dict(peers)
        self.working_path = Path(working_path)
        self.client_settings = dict(KAZOO_CLIENT_SETTINGS if client_settings is None else client_settings)
        self.peer_options = dict(KAZOO_PEER_OPTIONS if peer_options is None else peer_options)
        #: How long :meth:`run` waits for the client port to accept connections (seconds).
        self.start_timeout = start_timeout
        #: How long :meth:`stop` waits for a clean shutdown before it kills the process (seconds).
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False

    # -- where things are ---------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """Where ZooKeeper clients connect: ``"127.0.0.1:<client_port>"``."""
        return f"{self.host}:{self.client_port}"

    @property
    def data_path(self) -> Path:
        """The peer's data directory (LevelDB), kept across :meth:`stop` and :meth:`run`."""
        return self.working_path / "data"

    @property
    def log_path(self) -> Path:
        """The server's log file: every run appends to it."""
        return self.working_path / "server.log"

    @property
    def pid_path(self) -> Path:
        """The file holding the running child's pid (removed once it is reaped): see :func:`kill_leftovers`."""
        return self.working_path / "server.pid"

    @property
    def config_path(self) -> Path:
        """The JSON file the child reads its configuration from."""
        return self.working_path / "server.json"

    @property
    def pid(self) -> int | None:
        """The pid of the running child process, or None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """True once the process runs and its client port has accepted a connection, until it stops."""
        process = self._process
        if process is None or process.poll() is not None:
            return False
        if not self._ready:
            self._ready = _accepts(self.host, self.client_port, timeout=0.2)
        return self._ready

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.pid is not None else "stopped"
        return f"<EmbedZKServer {self.server_id} {self.address} {state}>"

    # -- life cycle ---------------------------------------------------------------------------------------------

    def run(self, timeout: float | None = None) -> None:
        """Start the process (if it is not running) and wait until its client port accepts connections.

        RuntimeError if the process ends first, TimeoutError after ``timeout`` (default ``start_timeout``); both
        carry the end of its log. A peer serves clients once it knows a leader: a majority must be running.
        """
        self.launch()
        self.wait_running(timeout)

    def launch(self) -> None:
        """Start the process if it is not running, without waiting for it to serve (see :meth:`wait_running`)."""
        if self._process is not None and self._process.poll() is None:
            return
        self._reap()
        self.data_path.mkdir(parents=True, exist_ok=True)
        config = {
            "id": self.server_id,
            "bind": self.bind,
            "peers": self.peers,
            "data_dir": str(self.data_path),
            "client_address": self.address,
            "client_settings": self.client_settings,
            "peer_options": self.peer_options,
            "log_level": self.log_level,
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        env = dict(os.environ)
        root = _checkout_root()
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        with open(self.log_path, "ab") as logfile:
            logfile.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting server {self.server_id}\n".encode())
            logfile.flush()
            # stdin is a pipe this process never writes to: when this process is gone, the child reads its end
            # and stops (see _serve). A new session: a terminal's ^C reaches the test process only, which then
            # ends its children itself.
            process = subprocess.Popen(
                [sys.executable, "-m", "embedzk.testing.zkcluster", "serve", str(self.config_path)],
                stdin=subprocess.PIPE,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.working_path),
                start_new_session=True,
            )
        with _children_lock:
            _children[process.pid] = process
        self.pid_path.write_text(f"{process.pid}\n")
        self._process = process
        self._ready = False
        log.info("server %s: pid %d, clients at %s, peers at %s", self.server_id, process.pid, self.address, self.bind)

    def wait_running(self, timeout: float | None = None) -> None:
        """Wait until the launched process's client port accepts connections (see :meth:`run`)."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            process = self._process
            if process is None:
                raise RuntimeError(f"server {self.server_id} was not launched")
            if process.poll() is not None:
                raise RuntimeError(
                    f"server {self.server_id} (pid {process.pid}) exited with status {process.returncode} before it "
                    f"served clients; the end of {self.log_path}:\n{self._tail(20)}"
                )
            if _accepts(self.host, self.client_port, timeout=0.2):
                self._ready = True
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"server {self.server_id} (pid {process.pid}) did not serve clients at {self.address} within "
                    f"{timeout}s (is a majority of the servers running?); the end of {self.log_path}:\n{self._tail(20)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the process cleanly (SIGTERM), killing it after ``timeout`` (default ``stop_timeout``); its data
        stays."""
        self.signal_stop()
        self.wait_stopped(timeout)

    def signal_stop(self) -> None:
        """Ask the process to stop (SIGTERM, by pid) without waiting; :meth:`wait_stopped` waits."""
        process = self._process
        self._ready = False
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)

    def wait_stopped(self, timeout: float | None = None) -> None:
        """Wait for the process to end after :meth:`signal_stop`; kill it (SIGKILL) once ``timeout`` has passed."""
        process = self._process
        if process is None:
            return
        try:
            process.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            log.warning("server %s (pid %d) did not stop in time: killed", self.server_id, process.pid)
        self._reap()

    def kill(self) -> None:
        """End the process at once (SIGKILL, by pid), as a crash would; its data stays."""
        self._ready = False
        self._reap()

    def reset(self) -> None:
        """Stop the server and wipe its data directory (its log stays)."""
        self.stop()
        shutil.rmtree(self.data_path, ignore_errors=True)

    def destroy(self) -> None:
        """Kill the server and wipe its data directory: it comes back, on :meth:`run`, as a new disk."""
        self.kill()
        shutil.rmtree(self.data_path, ignore_errors=True)

    def get_logs(self, num_lines: int = 100) -> list[str]:
        """The last ``num_lines`` lines of the server's log, each ending with a newline (kazoo's ``get_logs``)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as logfile:
                return logfile.readlines()[-num_lines:]
        except FileNotFoundError:
            return []

    def _tail(self, num_lines: int) -> str:
        return "".join(self.get_logs(num_lines))

    def _reap(self) -> None:
        """Kill the process if it still runs, by its pid, and forget it."""
        process, self._process = self._process, None
        if process is None:
            return
        _kill(process)
        with _children_lock:
            _children.pop(process.pid, None)
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()


def kill_leftovers(base_dir: str | os.PathLike[str]) -> list[int]:
    """Kill (SIGKILL, by pid) every server process recorded under ``base_dir`` that still runs; their pids.

    For a test that ran an :class:`EmbedZKCluster` in another process and had to kill that process: its servers
    stop by themselves once their parent is gone (they watch a pipe from it), and this makes sure at once. A pid
    is only killed while ``/proc/<pid>/cmdline`` shows it is still a server of this module (a pid may be reused);
    where there is no ``/proc``, the pid file alone decides.
    """
    killed = []
    for pid_file in sorted(Path(base_dir).glob("server.*/server.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if _is_server(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass  # gone meanwhile, or not ours
        # Killed or gone: the file no longer names a running server.
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    return killed


class EmbedZKCluster:
    """A cluster of ``size`` :class:`EmbedZKServer` processes (kazoo's ``ZookeeperCluster``); see the module.

    ``base_dir``: where the servers' directories go (default: a new temporary directory, removed by :meth:`close`
    and at exit). ``client_settings``: :class:`~embedzk.zkserver.settings.ClientSettings` fields as JSON values
    (default :data:`KAZOO_CLIENT_SETTINGS`). ``peer_options``: further keyword arguments of :class:`~embedzk.Peer`
    as JSON values (``session_timeout``, ``tick_interval`` ...). ``start_timeout`` bounds :meth:`start` and each
    server's ``run()``, ``stop_timeout`` each server's clean shutdown.
    """

    def __init__(
        self,
        size: int = 3,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        client_settings: Mapping[str, Any] | None = None,
        peer_options: Mapping[str, Any] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        log_level: str = "INFO",
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self._own_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="embedzk-zkcluster-") if base_dir is None else base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        # Every port is chosen once, here: a restarted server must come back where its clients and peers expect it.
        ports = free_ports(2 * size, _HOST)
        ids = [str(i + 1) for i in range(size)]
        binds = {sid: f"tcp://{_HOST}:{ports[2 * i + 1]}" for i, sid in enumerate(ids)}
        self._servers: list[EmbedZKServer] = [
            EmbedZKServer(
                sid,
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                peers={other: address for other, address in binds.items() if other != sid},
                working_path=self.base_dir / f"server.{sid}",
                client_settings=client_settings,
                peer_options=peer_options,
                start_timeout=start_timeout,
                stop_timeout=stop_timeout,
                log_level=log_level,
            )
            for i, sid in enumerate(ids)
        ]
        self._closed = False
        atexit.register(self.close)

    # -- kazoo's surface ----------------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> EmbedZKServer:
        """The ``index``-th server (0-based; its ``server_id`` is ``str(index + 1)``)."""
        return self._servers[index]

    def __iter__(self) -> Iterator[EmbedZKServer]:
        """The servers, in id order."""
        return iter(self._servers)

    def __len__(self) -> int:
        """How many servers the cluster has."""
        return len(self._servers)

    def start(self, timeout: float | None = None) -> None:
        """Start every server that is not running, together, and wait until each serves clients."""
        servers = [s for s in self._servers if not s.running]
        for server in servers:
            server.launch()
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        for server in servers:
            server.wait_running(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop every server cleanly, together (their data stays; :meth:`start` brings them back)."""
        self._stop(self._servers)

    def terminate(self) -> None:
        """Kill every server and wipe its data (kazoo's harness does this after each test class)."""
        for server in self._servers:
            server.destroy()

    def reset(self) -> None:
        """Stop every server and wipe its data; :meth:`start` then makes a new, empty cluster."""
        self.stop()
        for server in self._servers:
            shutil.rmtree(server.data_path, ignore_errors=True)

    def get_logs(self) -> list[str]:
        """The last lines of every server's log, server after server."""
        logs: list[str] = []
        for server in self._servers:
            logs += [f"=== server {server.server_id} ({server.log_path})\n"] + server.get_logs()
        return logs

    def get_ssl_client_configuration(self) -> dict[str, bytes]:
        """kazoo's TLS test material; embedzk serves no TLS port, so this raises NotImplementedError."""
        raise NotImplementedError("embedzk serves ZooKeeper clients over plain TCP only: no TLS port to test")

    # -- beyond kazoo's -----------------------------------------------------------------------------------------

    @property
    def hosts(self) -> str:
        """Every server's address, comma separated: the ``hosts`` string a ZooKeeper client takes."""
        return ",".join(server.address for server in self._servers)

    def stop_servers(self, servers: Sequence[EmbedZKServer]) -> None:
        """Stop the given servers cleanly, together (faster than one after the other, and with no quorum lost
        in between for the ones stopping last to wait on)."""
        self._stop(servers)

    def close(self) -> None:
        """Kill every server; remove ``base_dir`` if the cluster made it. Idempotent; also run at exit."""
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.kill()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> EmbedZKCluster:
        """Start the cluster; :meth:`terminate` and :meth:`close` at the end of the block."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill the servers and remove what the cluster made."""
        self.terminate()
        self.close()

    def __repr__(self) -> str:
        return f"<EmbedZKCluster {self.hosts} at {self.base_dir}>"

    @staticmethod
    def _stop(servers: Sequence[EmbedZKServer]) -> None:
        for server in servers:
            server.signal_stop()
        for server in servers:
            server.wait_stopped()


# ----------------------------------------------------------------------------------------------------------------
# the child: python -m embedzk.testing.zkcluster serve CONFIG_JSON


def _serve(config_path: str) -> int:
    """Run the Peer ``config_path`` describes until SIGTERM, SIGINT or the end of standard input; the exit status."""
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    logging.basicConfig(
        level=getattr(logging, str(config.get("log_level", "INFO")).upper(), logging.INFO),
        format=f"%(asctime)s [server {config['id']} pid %(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from embedzk import Peer
    from embedzk.zkserver.settings import ClientSettings

    settings = dict(config.get("client_settings") or {})
    if "four_letter_words" in settings:
        settings["four_letter_words"] = frozenset(settings["four_letter_words"])
    peer = Peer(
        config["id"],
        bind=config["bind"],
        peers=config["peers"],
        data_dir=config["data_dir"],
        client_address=config["client_address"],
        client_settings=ClientSettings(**settings),
        **(config.get("peer_options") or {}),
    )
    done = threading.Event()
    asked = threading.Event()  # a stop was asked for (a signal, the parent gone): not a failure to start
    failure: list[BaseException] = []

    def on_signal(signum: int, frame: Any) -> None:
        asked.set()
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_parent(fd: int) -> None:
        # The parent never writes: the end of the pipe means it is gone, and nobody would ever stop this process.
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside the buffered reader holds its
        # lock, and the interpreter, which flushes stdin as it shuts down, would abort on it.
        while os.read(fd, 4096):
            pass
        logging.getLogger(__name__).warning("the parent process is gone: stopping")
        asked.set()
        done.set()

    def start() -> None:
        try:
            # As long as it takes: the parent decides how long to wait, and kills this process if it gives up.
            peer.start(timeout=365 * 24 * 3600.0)
        except BaseException as exc:  # reported below, and the process ends
            failure.append(exc)
            done.set()

    threading.Thread(target=watch_parent, args=(sys.stdin.fileno(),), name="parent-watch", daemon=True).start()
    # start() runs on a thread of its own so that the main thread stays free to take a signal: a stop() during
    # start() makes the waiting start() give up.
    threading.Thread(target=start, name="peer-start", daemon=True).start()
    while not done.wait(0.5):
        pass
    peer.stop(close_session=True, timeout=2.0)
    if failure and not asked.is_set():
        logging.getLogger(__name__).error("peer %s did not start: %r", config["id"], failure[0])
        return _START_FAILED
    logging.getLogger(__name__).info("peer %s stopped", config["id"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The child's entry point: ``serve CONFIG_JSON``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "serve":
        sys.stderr.write("usage: python -m embedzk.testing.zkcluster serve CONFIG_JSON\n")
        return 2
    return _serve(args[1])


if __name__ == "__main__":
    sys.exit(main())
