"""A pytest plugin that runs kazoo's own test suite against an embedzk cluster instead of ZooKeeper.

kazoo ships its tests inside the package (``kazoo.tests``); they get their servers from
``kazoo.testing.harness.get_global_cluster()``, which runs ZooKeeper from a Java installation. Loaded with ``-p``,
this plugin replaces that function by one returning an :class:`~embedzk.testing.zkcluster.EmbedZKCluster`: three
embedzk peers in child processes, each serving ZooKeeper's client protocol on a loopback port::

    python -m pytest -p embedzk.testing.kazoo_plugin --pyargs kazoo.tests.test_client
    python -m pytest -p embedzk.testing.kazoo_plugin --pyargs kazoo.tests.test_lock -k test_lock_reentrant

The same works for a user's own tests written on kazoo's harness (``KazooTestCase``, ``KazooTestHarness``): load
the plugin and they run against embedzk.

Options (each also read from the environment variable named in brackets):

``--embedzk-zk-version VERSION`` [``EMBEDZK_KAZOO_ZK_VERSION``], default ``3.9``
    The ZooKeeper version the tests are told the servers are. kazoo's tests gate some cases on the server's
    version (3.4 or 3.5 and above); they take it from ``kazoo.tests.util.CI_ZK_VERSION`` (which kazoo fills from
    ``ZOOKEEPER_VERSION`` on its CI) or else ask the server with ``KazooClient.server_version()``, which parses the
    ``envi`` four-letter word. embedzk speaks the client protocol of ZooKeeper 3.5 to 3.9 (create2, containers and
    TTLs, multi-read, removeWatches, persistent and recursive watches, getEphemerals, whoAmI), so the tests are told
    3.9: the gates then select the cases of a current ZooKeeper, and what embedzk lacks of it (ACLs, read-only mode,
    TLS) shows as failures, not skips. ``none`` declares nothing: the gated tests then ask the server itself, and
    so test ``server_version()`` as well (which, as long as embedzk's ``envi`` names no ZooKeeper version, fails
    every gated test). ``ZOOKEEPER_VERSION`` is set to the same value if it is unset, for code that reads it.
``--embedzk-cluster-dir DIR`` [``EMBEDZK_KAZOO_CLUSTER_DIR``]
    Where the servers keep their data and logs (``DIR/server.N/server.log``), left in place afterwards; by default
    a temporary directory, removed at the end.
``ZOOKEEPER_CLUSTER_SIZE`` (environment only, as kazoo's), default 3: how many servers.

kazoo's harness imports ``kazoo.testing.common``, which needs ``pyOpenSSL`` and ``pyjks`` for the TLS material of
its ZooKeeper servers. embedzk serves no TLS, so when they are not installed the plugin lets that module load
without them (stand-ins that fail if ever called, visible to that module only); kazoo's TLS test then fails with
NotImplementedError instead.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

import pytest

from embedzk.testing.zkcluster import EmbedZKCluster

__all__ = ["DEFAULT_ZK_VERSION", "get_global_cluster", "install"]

#: The ZooKeeper version kazoo's tests are told by default (see the module's documentation).
DEFAULT_ZK_VERSION = "3.9"

_cluster: EmbedZKCluster | None = None
_cluster_dir: str | None = None


def get_global_cluster() -> EmbedZKCluster:
    """The one cluster of this test run (kazoo's ``get_global_cluster``), made on first use, started by the harness.

    kazoo's harness starts it when a server is not running, and terminates it (kills the servers, wipes their
    data) after each test class.
    """
    global _cluster
    if _cluster is None:
        size = int(os.environ.get("ZOOKEEPER_CLUSTER_SIZE") or 3)
        _cluster = EmbedZKCluster(size, base_dir=_cluster_dir)
    return _cluster


def _parse_version(text: str) -> tuple[int, ...]:
    """``"3.9"`` (pre-release suffixes such as ``-alpha`` ignored, as kazoo does) as ``(3, 9)``."""
    return tuple(int(part) for part in text.split("-")[0].split("."))


class _Unavailable(types.ModuleType):
    """Stands in for a module kazoo.testing.common imports only for ZooKeeper's TLS setup: any use raises."""

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(
            f"{self.__name__}.{name}: not installed, and not needed against embedzk, which serves no TLS"
        )


def _import_harness() -> types.ModuleType:
    """Import ``kazoo.testing.harness``, letting ``kazoo.testing.common`` load without pyOpenSSL and pyjks."""
    missing = []
    for name in ("OpenSSL", "jks"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    # Only for the import of kazoo.testing.common: afterwards the names leave sys.modules again, so that any other
    # code asking whether pyOpenSSL is installed still hears no.
    for name in missing:
        sys.modules[name] = _Unavailable(name)
    try:
        return importlib.import_module("kazoo.testing.harness")
    finally:
        for name in missing:
            sys.modules.pop(name, None)


def install(zk_version: str | None = DEFAULT_ZK_VERSION, cluster_dir: str | None = None) -> None:
    """Point kazoo's harness at :func:`get_global_cluster` and declare ``zk_version`` (None: declare nothing).

    What the plugin does when pytest loads it; callable directly to use kazoo's harness against embedzk outside
    pytest.
    """
    global _cluster_dir
    _cluster_dir = cluster_dir
    harness = _import_harness()
    # The harness and KazooTestCase look get_global_cluster up in the harness module at each call; CLUSTER is
    # its cache, which some code reads directly.
    harness.get_global_cluster = get_global_cluster  # type: ignore[attr-defined]
    if zk_version is not None:
        version = _parse_version(zk_version)
        os.environ.setdefault("ZOOKEEPER_VERSION", zk_version)
        # The test modules copy CI_ZK_VERSION with ``from kazoo.tests.util import CI_ZK_VERSION`` when pytest
        # imports them, after this runs; kazoo sets it only when the CI variable is set too, which would change
        # other tests' behaviour (longer waits, the build test), so it is set here alone.
        util = importlib.import_module("kazoo.tests.util")
        util.CI_ZK_VERSION = version  # type: ignore[attr-defined]


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's options (see the module's documentation)."""
    group = parser.getgroup("embedzk", "kazoo's tests against embedzk")
    group.addoption(
        "--embedzk-zk-version",
        default=os.environ.get("EMBEDZK_KAZOO_ZK_VERSION", DEFAULT_ZK_VERSION),
        help="the ZooKeeper version kazoo's version-gated tests are told (default %(default)s; 'none': ask the "
        "server with server_version())",
    )
    group.addoption(
        "--embedzk-cluster-dir",
        default=os.environ.get("EMBEDZK_KAZOO_CLUSTER_DIR") or None,
        help="keep the servers' data and logs in this directory (default: a temporary one, removed at the end)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Install the cluster before any test module is imported."""
    version = config.getoption("--embedzk-zk-version")
    install(None if str(version).lower() == "none" else str(version), config.getoption("--embedzk-cluster-dir"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say, at the top of the run, what the tests run against."""
    version = config.getoption("--embedzk-zk-version")
    size = int(os.environ.get("ZOOKEEPER_CLUSTER_SIZE") or 3)
    return [f"kazoo's harness -> embedzk: {size} peers in child processes; ZooKeeper version declared: {version}"]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Kill the servers at the end of the run (the exit hook would too; this is earlier and explicit)."""
    global _cluster
    if _cluster is not None:
        _cluster.terminate()
        _cluster.close()
        _cluster = None
