"""Service discovery: instances register under ``<path>/<service>/<instance id>`` as ephemeral nodes holding their
data; anyone lists them or watches them change. The shape of Curator's ServiceDiscovery, in a few calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import blinker

from embedzk.errors import EmbedZKError, NodeExistsError, NoNodeError, PeerStoppedError
from embedzk.model import KeeperState
from embedzk.recipes._common import (
    UNKNOWN_OUTCOME,
    Deadline,
    check_name,
    delete_quietly,
    join,
    normalize_path,
    retry,
    sync,
)

if TYPE_CHECKING:
    from embedzk.peer import Peer

log = logging.getLogger(__name__)

Instances = dict[str, bytes]


class ServiceRegistry:
    """Register service instances, list them, and hear when they change.

    Usage::

        registry = peer.ServiceRegistry("/services")
        registry.register("api", "host-1:8080", b'{"weight": 2}')
        registry.instances("api")           # {"host-1:8080": b'{"weight": 2}', ...}
        registry.services()                 # ["api", ...]

        registry.watch("api", lambda instances: print("api is now", sorted(instances)))

        def on_change(sender, service, instances): ...     # or a blinker signal, for every watched service
        registry.changed.connect(on_change, weak=False)

        registry.unregister("api", "host-1:8080")
        registry.close()                    # unregisters what this registry registered, ends its watches

    An instance is an ephemeral node: it disappears when its process dies (once the session expires). If this
    peer's own session is lost, the registry registers its instances again as soon as the peer is CONNECTED
    with a new session. Registering an instance id that exists under another session replaces it (the old
    owner's node is deleted first, so watchers see it go and come back). Watch callbacks and the ``changed``
    signal run on the peer's dispatch thread, after the change is visible to local reads; the first call of a
    ``watch`` callback happens at once, on the calling thread.
    """

    def __init__(self, peer: Peer, path: str = "/services") -> None:
        self.peer = peer
        self.path = normalize_path(path)
        #: Sent with ``service=`` (its name) and ``instances=`` (id -> data) when a watched service changes.
        self.changed = blinker.Signal("service registry changed")
        self._mine: dict[tuple[str, str], bytes] = {}
        self._lock = threading.RLock()
        self._watches: dict[str, _ServiceWatch] = {}
        self._keeper: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = False

    # --------------------------------------------------------------------------------------------------------
    # registering

    def _instance_path(self, service: str, instance_id: str) -> str:
        check_name(service, "a service name")
        check_name(instance_id, "an instance id")
        return join(join(self.path, service), instance_id)

    def register(self, service: str, instance_id: str, data: bytes = b"") -> str:
        """Register ``instance_id`` of ``service`` with ``data`` (bytes); return its path. Registering again
        replaces the data."""
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        path = self._instance_path(service, instance_id)
        with self._lock:
            self._mine[(service, instance_id)] = data
        self._ensure_registered(path, data)
        self._start_keeper()
        return path

    def update(self, service: str, instance_id: str, data: bytes) -> None:
        """Replace the data of an instance this registry registered."""
        if (service, instance_id) not in self._mine:
            raise KeyError(f"{service}/{instance_id} is not registered here")
        self.register(service, instance_id, data)

    def unregister(self, service: str, instance_id: str) -> bool:
        """Remove an instance this registry registered; True if its node was there."""
        path = self._instance_path(service, instance_id)
        with self._lock:
            self._mine.pop((service, instance_id), None)
        stat = self.peer.exists(path)
        if stat is None or stat.ephemeral_owner != self.peer.session_id:
            return False
        return delete_quietly(self.peer, path, Deadline(self.peer.request_timeout))

    def _ensure_registered(self, path: str, data: bytes) -> None:
        peer = self.peer
        while True:
            stat = peer.exists(path)
            if stat is not None and stat.ephemeral_owner == peer.session_id and peer.session_id is not None:
                if peer.get(path)[0] != data:
                    retry(peer, lambda: peer.set(path, data))
                return
            if stat is not None:
                delete_quietly(peer, path, Deadline(peer.request_timeout))  # left by an older session
            try:
                retry(peer, lambda: peer.create(path, data, ephemeral=True, makepath=True))
                return
            except NodeExistsError:
                sync(peer)  # made by an earlier attempt whose outcome was unknown, or by someone else: look again
            except UNKNOWN_OUTCOME:
                sync(peer)

    def _start_keeper(self) -> None:
        with self._lock:
            if self._keeper is not None or self._closed:
                return
            self.peer.add_listener(self._on_state)
            self._keeper = threading.Thread(target=self._keep, name=f"embedzk-registry-{self.path}", daemon=True)
            self._keeper.start()

    def _on_state(self, state: KeeperState) -> None:
        if state is KeeperState.CONNECTED:
            self._wake.set()

    def _keep(self) -> None:
        """Register again what a lost session took away."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                mine = dict(self._mine)
            for (service, instance_id), data in mine.items():
                try:
                    self._ensure_registered(self._instance_path(service, instance_id), data)
                except PeerStoppedError:
                    return
                except EmbedZKError as exc:
                    log.info("registry %s: could not register %s/%s again: %s", self.path, service, instance_id, exc)
                    self._wake.set()
                    self._wake.wait(0.2)

    # --------------------------------------------------------------------------------------------------------
    # looking

    def services(self) -> list[str]:
        """The names of the services with a node under the registry (instances or not)."""
        try:
            return sorted(self.peer.get_children(self.path))
        except NoNodeError:
            return []

    def instances(self, service: str) -> Instances:
        """``{instance id: data}`` of the instances of ``service`` in the local replica."""
        base = join(self.path, check_name(service, "a service name"))
        try:
            names = self.peer.get_children(base)
        except NoNodeError:
            return {}
        result: Instances = {}
        for name in sorted(names):
            try:
                result[name] = self.peer.get(join(base, name))[0]
            except NoNodeError:
                pass
        return result

    def watch(self, service: str, callback: Callable[[Instances], Any] | None = None) -> None:
        """Follow ``service``: call ``callback(instances)`` now and after every change of its instances, and send
        :attr:`changed`. Without a callback only the signal is sent."""
        with self._lock:
            watch = self._watches.get(service)
            if watch is None:
                watch = self._watches[service] = _ServiceWatch(self, service)
            if callback is not None:
                watch.callbacks.append(callback)
                callback(watch.last)

    def unwatch(self, service: str, callback: Callable[[Instances], Any] | None = None) -> None:
        """Stop calling ``callback`` (or, without one, stop following ``service`` at all)."""
        with self._lock:
            watch = self._watches.get(service)
            if watch is None:
                return
            if callback is not None and callback in watch.callbacks:
                watch.callbacks.remove(callback)
            if callback is None:
                del self._watches[service]
                watch.stop()

    def close(self) -> None:
        """Unregister this registry's instances and end its watches."""
        with self._lock:
            self._closed = True
            mine = list(self._mine)
            watches = list(self._watches.values())
            self._watches.clear()
        self._wake.set()
        self.peer.remove_listener(self._on_state)
        for watch in watches:
            watch.stop()
        for service, instance_id in mine:
            try:
                self.unregister(service, instance_id)
            except EmbedZKError:
                pass


class _ServiceWatch:
    """One followed service: a persistent recursive watch whose events recompute the instance list."""

    def __init__(self, registry: ServiceRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.path = join(registry.path, check_name(service, "a service name"))
        self.callbacks: list[Callable[[Instances], Any]] = []
        self._lock = threading.Lock()
        self.last: Instances = {}
        # Watch first, then read: a change made in between is in the read or in an event, never in neither.
        self.signal = registry.peer.watch(self.path, recursive=True)
        self.signal.connect(self._on_event, weak=False)
        with self._lock:
            self.last = registry.instances(service)

    def _on_event(self, sender: Any, event: Any = None) -> None:
        with self._lock:
            current = self.registry.instances(self.service)
            if current == self.last:
                return
            self.last = current
            callbacks = list(self.callbacks)
        for callback in callbacks:
            try:
                callback(current)
            except Exception:
                log.exception("a service registry callback raised")
        self.registry.changed.send(self.registry, service=self.service, instances=current)

    def stop(self) -> None:
        self.signal.disconnect(self._on_event)
        if not self.signal.receivers:
            try:
                self.registry.peer.unwatch(self.path)
            except EmbedZKError:
                pass
