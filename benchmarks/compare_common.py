"""What compare.py's systems share: worker processes driven over stdin/stdout, the workloads that run inside them,
process bookkeeping (every process started is killed by its pid at the end) and small statistics.

A worker ("agent") is ``python benchmarks/compare_<system>.py --agent CONFIG_JSON``. It opens its system's client
or embedded node, prints one JSON line ``{"started": ...}``, then reads one JSON command per line from stdin and
answers each with one JSON line (``{"ok": value}`` or ``{"error": "..."}``). It exits when stdin closes.

The workloads below are written once against a small adapter (:class:`Ops`) that each system fills in, so the
three systems run the same loops with the same sizes and the same timers.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from embedzk.testing import free_ports  # noqa: F401  (re-exported for the scripts that import it from here)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VALUE = b"x" * 100
#: The session timeout of every embedzk peer and kazoo client of compare.py, in seconds, set explicitly on both
#: (their defaults are 10 s) because the election failover is about one session expiring. ZooKeeper clamps a
#: client's timeout to [2, 20] x tickTime, so 4 s is the one value the servers at tickTime 200 (at most 4 s) and
#: at tickTime 2000 (at least 4 s) both grant as asked.
SESSION_TIMEOUT_S = 4.0


# ----------------------------------------------------------------------------------------------------------------
# statistics


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank of the sorted samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------------------------------------------
# processes: every one is registered and killed by its pid at the end


_prctl: Any
try:
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # loaded here, in the driver, not after a fork
except (OSError, AttributeError):
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux: the child gets SIGKILL if the driver dies without cleaning up (prctl PR_SET_PDEATHSIG), so a
    # crashed or SIGKILLed driver leaves no JVM or worker behind. Runs in the child between fork and exec, so it
    # does nothing but the one system call (the library was loaded before the fork).
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Processes:
    """The processes started by this run, by pid."""

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen[Any]] = {}
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kwargs)  # noqa: PLW1509 - see above
        with self._lock:
            self._procs[proc.pid] = proc
        return proc

    def kill(self, proc: subprocess.Popen[Any], wait: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
        with self._lock:
            self._procs.pop(proc.pid, None)

    def kill_all(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            self.kill(proc, wait=5.0)

    def alive(self) -> list[int]:
        with self._lock:
            return [pid for pid, p in self._procs.items() if p.poll() is None]


PROCESSES = Processes()


def rss_bytes(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


# ----------------------------------------------------------------------------------------------------------------
# the driver's side of a worker


class AgentError(RuntimeError):
    pass


class Agent:
    """A worker process of one system, driven over its stdin/stdout; every answer is awaited with a timeout."""

    def __init__(self, module_file: str, config: dict[str, Any], label: str) -> None:
        self.label = label
        self.config = config
        self.started_at = time.perf_counter()
        self.proc = PROCESSES.popen(
            [sys.executable, module_file, "--agent", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=REPO,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.start_info: Any = None
        self._next_id = 0
        self._expect: list[int] = []  # ids of commands sent and not yet answered, oldest first

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-40]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _line(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AgentError(f"{self.label}: no answer within {timeout:.0f}s") from None
        if line is None:
            tail = "".join(self._stderr[-8:]).strip()
            raise AgentError(f"{self.label}: worker exited ({self.proc.poll()}); stderr: {tail[-800:]}")
        return json.loads(line)

    def wait_started(self, timeout: float) -> float:
        """Wait for the worker's first line; return seconds from the process' launch to it."""
        msg = self._line(timeout)
        if "error" in msg:
            time.sleep(0.2)  # the worker exits after its error line: let its last words reach the stderr reader
            tail = "".join(self._stderr[-8:]).strip()
            raise AgentError(f"{self.label}: {msg['error']}" + (f"; stderr: {tail[-800:]}" if tail else ""))
        self.start_info = msg.get("started")
        return time.perf_counter() - self.started_at

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self._next_id += 1
        self._expect.append(self._next_id)
        try:
            self.proc.stdin.write(json.dumps({"op": op, "args": args, "id": self._next_id}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise AgentError(f"{self.label}: worker gone ({exc})") from None

    def answer(self, timeout: float = 120.0) -> Any:
        """The answer to the latest command sent; answers to older ones (left over by a failed workload, which
        gave up on some of its workers) are read and dropped."""
        if not self._expect:
            raise AgentError(f"{self.label}: no command awaits an answer")
        want = self._expect[-1]
        deadline = time.monotonic() + timeout
        while True:
            msg = self._line(max(0.0, deadline - time.monotonic()))
            if msg.get("id") == want:
                break
        self._expect.clear()
        if "error" in msg:
            raise AgentError(f"{self.label}: {msg['error']}")
        return msg["ok"]

    def call(self, op: str, timeout: float = 120.0, **args: Any) -> Any:
        self.send(op, **args)
        return self.answer(timeout)

    def kill(self) -> None:
        PROCESSES.kill(self.proc)

    def close(self) -> None:
        """Ask the worker to stop (it closes its node), then kill it by pid whatever happened."""
        if self.proc.poll() is None:
            try:
                self.send("stop")
                self.proc.wait(5)
            except Exception:
                pass
        PROCESSES.kill(self.proc)


class WorkerMembers:
    """The driver's side of a system whose members are its workers (embedzk, PySyncObj): three worker processes,
    each holding its system's node, so killing a member kills its client and the other way round.

    A subclass sets ``name``, ``names`` (what its workers answer to the ``leader`` op, in member order) and
    :meth:`_config`; the rest is shared.
    """

    name = ""
    module_file = ""
    names: list[str]

    def __init__(self) -> None:
        self.agents: list[Agent | None] = [None, None, None]

    def _config(self, i: int, expect_path: str | None) -> dict[str, Any]:
        """The worker's configuration for member i (``expect_path``: a node it must hold before it answers)."""
        raise NotImplementedError

    def _launch(self, i: int, expect_path: str | None = None) -> Agent:
        agent = Agent(self.module_file, self._config(i, expect_path), f"{self.name}-{i + 1}")
        self.agents[i] = agent
        return agent

    def start(self) -> None:
        for i in range(3):
            self._launch(i)
        for agent in self.agents:
            assert agent is not None
            agent.wait_started(90)

    def client(self, i: int) -> Agent:
        agent = self.agents[i]
        assert agent is not None
        return agent

    def leader(self) -> int:
        for agent in self.agents:
            if agent is not None and agent.proc.poll() is None:
                leader = agent.call("leader", timeout=10)
                if leader in self.names:
                    return self.names.index(leader)
        raise RuntimeError("no leader known")

    def member_alive(self, i: int) -> bool:
        agent = self.agents[i]
        return agent is not None and agent.proc.poll() is None

    def member_pid(self, i: int) -> int:
        return self.client(i).pid

    def client_pid(self, i: int) -> int | None:
        return None  # the client is the member

    def kill_member(self, i: int) -> None:
        agent = self.agents[i]
        if agent is not None:
            os.kill(agent.pid, signal.SIGKILL)  # by pid; reaped by the registry below
            PROCESSES.kill(agent.proc)

    def restart_member(self, i: int, expect_path: str | None = None, expect_count: int | None = None) -> float:
        """Start member i again on its data; seconds from the process' launch until it serves (and holds
        ``expect_path``, if given)."""
        return self._launch(i, expect_path).wait_started(180)

    def wait_member_ready(self, i: int) -> None:
        pass  # a worker answers "started" only once its node has joined

    # The client is the member: a worker killed is a member killed, and restarted on its data.
    client_alive = member_alive
    kill_client = kill_member

    def restart_client(self, i: int) -> None:
        self.restart_member(i)

    def stop(self) -> None:
        for agent in self.agents:
            if agent is not None:
                agent.close()


# ----------------------------------------------------------------------------------------------------------------
# the worker's side


class Ops:
    """What each system's worker supplies to the shared workloads. Paths are ZooKeeper-style ("/bench/x");
    a key-value system maps them to keys."""

    def ensure(self, path: str) -> None:
        raise NotImplementedError

    def create_async(self, path: str, value: bytes, done: Callable[[BaseException | None], None]) -> None:
        """Start a create; call ``done(exc_or_None)`` once it is committed (from any thread)."""
        raise NotImplementedError

    def set(self, path: str, value: bytes) -> None:
        raise NotImplementedError

    def get(self, path: str) -> Any:
        raise NotImplementedError

    def read_throughput(self, path: str, seconds: float) -> float:
        """Reads/s from one thread, the fastest way the system's API offers; default: get() in a loop."""
        get = self.get
        n = 0
        began = time.perf_counter()
        end = began + seconds
        while True:
            for _ in range(200):
                get(path)
            n += 200
            now = time.perf_counter()
            if now >= end:
                return n / (now - began)

    def sync(self) -> None:
        pass

    def watch(self, path: str, on_event: Callable[[], None]) -> None:
        """Call ``on_event()`` on every change of ``path`` from now on."""
        raise NotImplementedError

    def lock(self, path: str) -> tuple[Callable[[float], bool], Callable[[], None]]:
        """(acquire(timeout) -> bool, release()) of a mutual-exclusion lock shared by the workers."""
        raise NotImplementedError

    def write_once(self, path: str, timeout: float) -> None:
        """One small write (a sequential create or a set), raising if it did not commit within timeout."""
        raise NotImplementedError

    def election(self, path: str, identifier: str) -> Any:
        """A leader election on ``path`` with kazoo's face: ``run(fn)`` blocks until elected, calls ``fn()``,
        then steps down; ``cancel()`` makes a waiting ``run`` give up; ``contenders()`` lists identifiers."""
        raise NotImplementedError

    def load(self, prefix: str, start: int, count: int, batch: int) -> None:
        """Create count nodes prefix/n<start..> of VALUE, in batches (transactions or bulk updates)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def pipelined(ops: Ops, prefix: str, n: int, window: int) -> float:
    """n creates with at most ``window`` outstanding, from one thread; returns writes/s."""
    ops.ensure(prefix)
    slots = threading.Semaphore(window)
    done = threading.Event()
    errors: list[BaseException] = []
    left = [n]
    count_lock = threading.Lock()

    def finished(exc: BaseException | None) -> None:
        if exc is not None:
            errors.append(exc)
        slots.release()
        with count_lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    began = time.perf_counter()
    for i in range(n):
        slots.acquire()
        ops.create_async(f"{prefix}/n{i}", VALUE, finished)
    if not done.wait(300):
        raise RuntimeError(f"pipelined writes: {left[0]} of {n} never completed")
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} writes failed, first: {errors[0]!r}")
    return n / elapsed


def sequential(ops: Ops, path: str, n: int, max_seconds: float = 1e9) -> dict[str, float]:
    """n sets of one node, one at a time (fewer if max_seconds runs out first, but at least 20); p50/p99 of each
    call's duration in seconds, and how many were timed."""
    times: list[float] = []
    end = time.perf_counter() + max_seconds
    for _ in range(n):
        began = time.perf_counter()
        ops.set(path, VALUE)
        times.append(time.perf_counter() - began)
        if began > end and len(times) >= 20:
            break
    return {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99), "n": len(times)}


def read_latency(ops: Ops, path: str, n: int) -> dict[str, float]:
    """n gets of one node, each timed on its own; p50/p99 in seconds."""
    get = ops.get
    clock = time.perf_counter
    times = []
    for _ in range(n):
        began = clock()
        get(path)
        times.append(clock() - began)
    return {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}


def lock_run(ops: Ops, path: str, start_at: float, seconds: float, me: str) -> list[tuple[float, str]]:
    """From wall-clock ``start_at`` for ``seconds``: acquire, note (time, me), release, again.

    Returns the acquisitions; the driver merges those of all workers and counts the changes of holder.
    """
    acquire, release = ops.lock(path)
    got: list[tuple[float, str]] = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        if not acquire(max(0.05, end - time.time())):
            continue
        got.append((time.time(), me))
        release()
    return got


class Contender:
    """This worker's place in one election: ``run(lead)`` on a thread of its own, where ``lead`` notes the moment
    it starts (``time.time()``: the driver's clock too, on the same machine) and then holds leadership until
    :meth:`leave`. Whoever is elected stays elected until its process dies or leaves."""

    def __init__(self, election: Any) -> None:
        self.election = election
        #: When this worker's leadership function started running (time.time()), or None.
        self.started_at: float | None = None
        self.error: BaseException | None = None
        self._leading = threading.Event()
        self._leave = threading.Event()
        self._thread = threading.Thread(target=self._run, name="election-contender", daemon=True)
        self._thread.start()

    def _lead(self) -> None:
        self.started_at = time.time()
        self._leading.set()
        self._leave.wait()

    def _run(self) -> None:
        try:
            self.election.run(self._lead)
        except Exception as exc:  # embedzk's run raises CancelledError when cancelled; kazoo's swallows it
            if not self._leave.is_set():
                self.error = exc
                self._leading.set()  # wake a waiter: it reports the error

    def wait_leading(self, timeout: float) -> float | None:
        """The moment this worker's leadership function started, waiting at most ``timeout`` for it; None if it
        did not start in that time."""
        self._leading.wait(timeout)
        if self.error is not None:
            raise RuntimeError(f"election failed: {self.error!r}")
        return self.started_at

    def leave(self, timeout: float = 30.0) -> bool:
        """Step down if leading (the function returns and ``run`` deletes the node), else stop waiting; True if
        this worker led at some point."""
        self._leave.set()
        if not self._leading.is_set():
            self.election.cancel()  # harmless if it was elected in the meantime: its function returns at once
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the election did not end within {timeout:.0f}s")
        return self.started_at is not None


def serve(make_ops: Callable[[dict[str, Any]], tuple[Ops, dict[str, Any]]], config: dict[str, Any],
          extra: Callable[[Ops, str, dict[str, Any]], Any] | None = None) -> None:
    """The worker's main loop: open the system, then answer commands until stdin closes or "stop" comes."""
    out = sys.stdout
    out_lock = threading.Lock()

    def emit(obj: dict[str, Any]) -> None:
        with out_lock:
            out.write(json.dumps(obj) + "\n")
            out.flush()

    try:
        ops, info = make_ops(config)
    except BaseException as exc:  # report why the worker could not start, then exit
        emit({"error": f"start failed: {type(exc).__name__}: {exc}"})
        return
    emit({"started": info})
    watch_times: list[float] = []
    profilers: dict[str, Any] = {}
    contenders: dict[str, Contender] = {}  # by election path

    def run(op: str, args: dict[str, Any]) -> Any:
        if op == "pid":
            return os.getpid()
        if op == "ensure":
            ops.ensure(args["path"])
            return None
        if op == "set":
            ops.set(args["path"], VALUE)
            return None
        if op == "sync":
            ops.sync()
            return None
        if op == "pipelined":
            return pipelined(ops, args["prefix"], args["n"], args["window"])
        if op == "sequential":
            return sequential(ops, args["path"], args["n"], args.get("max_seconds", 1e9))
        if op == "read_latency":
            return read_latency(ops, args["path"], args["n"])
        if op == "read_throughput":
            return ops.read_throughput(args["path"], args["seconds"])
        if op == "watch_setup":
            ops.watch(args["path"], lambda: watch_times.append(time.time()))
            return None
        if op == "watch_write":
            sent = []
            for _ in range(args["n"]):
                sent.append(time.time())
                ops.set(args["path"], VALUE)
                time.sleep(args["gap"])
            return sent
        if op == "watch_results":
            seen = list(watch_times)
            watch_times.clear()
            return seen
        if op == "lock_run":
            return lock_run(ops, args["path"], args["start_at"], args["seconds"], args["me"])
        if op == "write_until_ok":
            # Failover probe: try one small write after another until one commits; the time it committed.
            deadline = time.time() + args["limit"]
            attempts = 0
            last: BaseException | None = None
            while time.time() < deadline:
                attempts += 1
                try:
                    ops.write_once(args["path"], args["attempt_timeout"])
                    return {"ok_at": time.time(), "attempts": attempts}
                except Exception as exc:
                    last = exc
                    time.sleep(0.002)
            raise RuntimeError(f"no write committed within {args['limit']}s ({attempts} attempts, last {last!r})")
        if op == "election_join":
            if args["path"] in contenders:
                raise ValueError(f"already contending in {args['path']}")
            contenders[args["path"]] = Contender(ops.election(args["path"], args["me"]))
            return None
        if op == "election_contenders":
            return len(contenders[args["path"]].election.contenders())
        if op == "election_wait":
            return contenders[args["path"]].wait_leading(args["seconds"])
        if op == "election_leave":
            return contenders.pop(args["path"]).leave()
        if op == "load":
            began = time.perf_counter()
            ops.load(args["prefix"], args["start"], args["count"], args["batch"])
            return time.perf_counter() - began
        if op == "profile":
            return _profile(ops, args["on"], args.get("prefix"), profilers)
        if extra is not None:
            return extra(ops, op, args)
        raise ValueError(f"unknown op {op}")

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "stop":
            break
        try:
            emit({"ok": run(cmd["op"], cmd.get("args", {})), "id": cmd.get("id")})
        except Exception as exc:  # report and keep serving
            emit({"error": f"{type(exc).__name__}: {exc}", "id": cmd.get("id")})
    try:
        ops.close()
    except Exception:
        pass
    emit({"ok": "stopped"})


def worker_main(make_ops: Callable[[dict[str, Any]], tuple[Ops, dict[str, Any]]],
                extra: Callable[[Ops, str, dict[str, Any]], Any] | None = None) -> None:
    """The ``__main__`` of a system's module: ``--agent CONFIG_JSON`` makes the process a worker."""
    if len(sys.argv) > 2 and sys.argv[1] == "--agent":
        serve(make_ops, json.loads(sys.argv[2]), extra)
    else:
        print("a worker of compare.py; run python benchmarks/compare.py", file=sys.stderr)
        sys.exit(2)


def _profile(ops: Ops, on: bool, prefix: str | None, profilers: dict[str, Any]) -> Any:
    """cProfile this worker's command thread and, where the system has one, its loop thread."""
    import cProfile

    hook = getattr(ops, "loop_call", None)  # run a function on the system's own loop thread, if it has one
    if on:
        profilers["client"] = cProfile.Profile()
        profilers["client"].enable()
        if hook is not None:
            profilers["loop"] = cProfile.Profile()
            hook(profilers["loop"].enable)
        return None
    profilers["client"].disable()
    if "loop" in profilers and hook is not None:
        hook(profilers["loop"].disable)
    written = []
    for name, profiler in profilers.items():
        if prefix:
            profiler.dump_stats(f"{prefix}-{name}.prof")
            written.append(f"{prefix}-{name}.prof")
    profilers.clear()
    return written
