"""kazoo's own test suite, run against a three-peer embedzk cluster (embedzk.testing.kazoo_plugin).

Each test marked ``kazoo`` runs one module of ``kazoo.tests`` in a child ``python -m pytest -p
embedzk.testing.kazoo_plugin --pyargs kazoo.tests.<module>`` (whose servers are three more processes, on loopback
ports), within a time budget, reads its JUnit report and asserts that at least :data:`PASS_RATE` of the tests that
ran passed (skipped ones do not count: kazoo skips for what the client's environment lacks, gevent, eventlet,
SASL). It prints the counts and every failing test with its message. A module known to fall short is marked so,
with the reason: it is expected to fall short (and reported XPASS once it no longer does) only by its pass rate; a
run that overruns its budget or reports nothing fails as ever. These tests are long and not part of the default run:

    python -m pytest -m kazoo tests/test_kazoo_suite.py            # every module, one after the other
    python -m pytest -m kazoo tests/test_kazoo_suite.py -k lock -s  # one module, with its summary printed

The one test without the marker runs in the default suite (well under 20 s): it runs a handful of kazoo's tests
that pass, and checks the stand-in cluster's own life cycle, so that the harness itself stays honest.

Every child is started by this process and killed by its pid if it overruns; the servers a killed child leaves
behind stop by themselves when it is gone, and are killed by their recorded pids here besides
(:func:`embedzk.testing.zkcluster.kill_leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from embedzk.testing.zkcluster import EmbedZKCluster, kill_leftovers

kazoo_client = pytest.importorskip("kazoo.client")

ROOT = Path(__file__).resolve().parent.parent

#: The share of the tests that ran which must pass, per module.
PASS_RATE = 0.95

#: The per-test timeout inside a child run (kazoo's read-only test alone waits up to 45 s).
PER_TEST_TIMEOUT = 120


class PassRateBelow(AssertionError):
    """A module's pass rate is below :data:`PASS_RATE` (what a module known to fall short is expected to raise)."""


@dataclass
class ModuleRun:
    """What a child run of one kazoo test module reported."""

    module: str
    seconds: float
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    #: (test id, "failed" or "error", the first line of its message), in the order of the report.
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ran(self) -> int:
        """The tests that ran (skipped ones excluded)."""
        return self.passed + self.failed + self.errors

    @property
    def pass_rate(self) -> float:
        """passed / ran (1.0 if none ran)."""
        return self.passed / self.ran if self.ran else 1.0

    def summary(self) -> str:
        """The counts and every failing test, one per line."""
        lines = [
            f"kazoo.tests.{self.module}: {self.passed} passed, {self.failed} failed, {self.errors} errors, "
            f"{self.skipped} skipped; pass rate {self.pass_rate:.3f} ({self.seconds:.0f} s)"
        ]
        lines += [f"  {kind.upper():6} {test_id}: {message}" for test_id, kind, message in self.problems]
        return "\n".join(lines)


def parse_junit(module: str, report: Path, seconds: float) -> ModuleRun:
    """Count the outcomes in a JUnit report, one outcome per test: failed, else error, else skipped, else passed.

    (A test that fails and then errors in its teardown counts once, as failed.)
    """
    run = ModuleRun(module, seconds)
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
        failure, error = case.find("failure"), case.find("error")
        if failure is not None or error is not None:
            element = failure if failure is not None else error
            assert element is not None
            kind = "failed" if failure is not None else "error"
            message = (element.get("message") or (element.text or "").strip() or "?").splitlines()[0][:200]
            run.problems.append((test_id, kind, message))
            if kind == "failed":
                run.failed += 1
            else:
                run.errors += 1
        elif case.find("skipped") is not None:
            run.skipped += 1
        else:
            run.passed += 1
    return run


def run_kazoo_tests(targets: list[str], workdir: Path, budget: float) -> tuple[Path, float, str, list[int]]:
    """Run kazoo test modules or test ids (``--pyargs`` targets) in a child pytest with the plugin, within
    ``budget`` seconds; the JUnit report's path, the seconds taken, the end of the child's output, and the pids of
    the servers it left running (killed here; none when the child ended by itself).

    An overrun kills the child by its pid, then any server it left, and fails the test.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    report, output, cluster_dir = workdir / "junit.xml", workdir / "output.txt", workdir / "cluster"
    env = dict(os.environ)
    # The child imports embedzk (and the plugin) from this checkout, as this process does.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    command = [
        sys.executable, "-m", "pytest", "-p", "embedzk.testing.kazoo_plugin", "-p", "no:cacheprovider", "-q",
        "--timeout", str(PER_TEST_TIMEOUT), "--embedzk-cluster-dir", str(cluster_dir), "--junitxml", str(report),
        "--pyargs", *targets,
    ]
    began = time.monotonic()
    with open(output, "wb") as out:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        overran = False
        try:
            child.wait(budget)
        except subprocess.TimeoutExpired:
            overran = True
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(10)
            # The servers stop once the child is gone; make sure of it, by their recorded pids.
            leftovers = kill_leftovers(cluster_dir)
    seconds = time.monotonic() - began
    tail = "".join(output.read_text(errors="replace").splitlines(keepends=True)[-40:])
    what = " ".join(targets)
    if overran:
        pytest.fail(f"{what} overran its budget of {budget:.0f} s and was killed; its output ended:\n{tail}")
    if not report.exists():
        pytest.fail(f"{what} wrote no report (exit status {child.returncode}); its output ended:\n{tail}")
    return report, seconds, tail, leftovers


# ----------------------------------------------------------------------------------------------------------------
# every module, against the threshold

# What does not pass, and why (docs/zookeeper.md, "Not supported"), all in test_client, above the threshold: null
# data read back as b'' instead of None (test_create_null_data, test_set_null_data); no TLS port
# (TestSSLClient::test_create); reconfig's ZooKeeper server spec host:port:port names no address a peer listens at
# (TestReconfig::test_add_remove_observer). No module is known to fall short.

#: (module, time budget in seconds, why it is known to fall short of PASS_RATE or None).
MODULES: list[tuple[str, float, str | None]] = [
    ("test_client", 600, None),
    ("test_connection", 300, None),
    ("test_watchers", 300, None),
    ("test_lock", 300, None),
    ("test_election", 180, None),
    ("test_barrier", 180, None),
    ("test_queue", 180, None),
    ("test_counter", 180, None),
    ("test_party", 180, None),
    ("test_cache", 240, None),
    ("test_partitioner", 300, None),
    ("test_lease", 180, None),
    ("test_security", 180, None),
]


def _module_param(module: str, budget: float, short: str | None) -> object:
    marks = [pytest.mark.timeout(budget + 60)]
    if short is not None:
        marks.append(pytest.mark.xfail(raises=PassRateBelow, strict=False, reason=f"known below {PASS_RATE}: {short}"))
    return pytest.param(module, budget, id=module, marks=marks)


@pytest.mark.kazoo
@pytest.mark.parametrize(("module", "budget"), [_module_param(*entry) for entry in MODULES])
def test_kazoo_module(module: str, budget: float, tmp_path: Path) -> None:
    report, seconds, tail, _ = run_kazoo_tests([f"kazoo.tests.{module}"], tmp_path, budget)
    run = parse_junit(module, report, seconds)
    print(run.summary())
    if run.ran == 0:
        pytest.fail(f"kazoo.tests.{module}: no test ran; the output ended:\n{tail}")
    if run.pass_rate < PASS_RATE:
        raise PassRateBelow(f"pass rate {run.pass_rate:.3f} < {PASS_RATE}\n{run.summary()}")


# ----------------------------------------------------------------------------------------------------------------
# the harness itself, in the default run

#: kazoo tests that pass against embedzk, a spread of what the harness must carry: reads, writes, ephemeral and
#: sequential nodes, watches, sync, and (in a second test class, so after the harness's terminate and restart of
#: the cluster) a multi, which also needs the declared ZooKeeper version.
SMOKE_TESTS = [
    "kazoo.tests.test_client::TestClient::test_create_get_set",
    "kazoo.tests.test_client::TestClient::test_create_ephemeral",
    "kazoo.tests.test_client::TestClient::test_create_sequence",
    "kazoo.tests.test_client::TestClient::test_exists_watch",
    "kazoo.tests.test_client::TestClient::test_get_children2",
    "kazoo.tests.test_client::TestClient::test_delete_recursive",
    "kazoo.tests.test_client::TestClient::test_sync",
    "kazoo.tests.test_client::TestClientTransactions::test_basic_create",
]


@pytest.mark.timeout(90)
def test_a_few_kazoo_tests_pass_against_the_stand_in_cluster(tmp_path: Path) -> None:
    report, seconds, tail, leftovers = run_kazoo_tests(SMOKE_TESTS, tmp_path, budget=75)
    run = parse_junit("test_client", report, seconds)
    assert (run.passed, run.ran) == (len(SMOKE_TESTS), len(SMOKE_TESTS)), f"{run.summary()}\n{tail}"
    # The child ended every server it started before it exited: none was left for this process to kill.
    assert leftovers == []


@pytest.mark.timeout(90)
def test_a_stopped_server_comes_back_on_its_ports_as_the_same_member(tmp_path: Path) -> None:
    cluster = EmbedZKCluster(3, base_dir=tmp_path / "cluster", start_timeout=40)
    client = kazoo_client.KazooClient(hosts=cluster.hosts, timeout=10)
    try:
        cluster.start()
        assert all(server.running for server in cluster)
        client.start(timeout=20)
        client.create("/app", b"v1")
        first = cluster[0]
        address, pid = first.address, first.pid
        first.stop()
        assert not first.running and first.pid is None
        # The client moved to another server, its session intact (retry: a request may meet the move).
        assert client.retry(client.get, "/app")[0] == b"v1"
        client.retry(client.set, "/app", b"v2")
        first.run()
        assert first.address == address and first.pid not in (None, pid)
        # It is the same member, on its old data: it serves what was written while it was away.
        probe = kazoo_client.KazooClient(hosts=first.address, timeout=10)
        probe.start(timeout=20)
        try:
            probe.sync("/app")
            assert probe.get("/app")[0] == b"v2"
            assert probe.client_id[0] != client.client_id[0]
        finally:
            probe.stop()
            probe.close()
        assert any("starting server 1" in line for line in first.get_logs())
        pids = [server.pid for server in cluster]
        cluster.terminate()
        assert not any(server.running for server in cluster)
        for gone in pids:
            assert gone is not None
            with pytest.raises(ProcessLookupError):
                os.kill(gone, 0)
    finally:
        client.stop()
        client.close()
        cluster.close()
