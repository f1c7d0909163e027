"""The recipes as methods of a Peer (``peer.Lock(path)``, ``peer.Election(path)`` ...), kazoo's way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedzk.recipes.barrier import Barrier, DoubleBarrier
    from embedzk.recipes.cache import TreeCache
    from embedzk.recipes.counter import Counter, Number
    from embedzk.recipes.election import Election, LeaderLatch
    from embedzk.recipes.lock import Lock, ReadLock, Semaphore, WriteLock
    from embedzk.recipes.party import Party, ShallowParty
    from embedzk.recipes.queue import LockingQueue, Queue
    from embedzk.recipes.registry import ServiceRegistry


class PeerRecipes:
    """Mixed into :class:`embedzk.Peer`: one factory method per recipe, each built on the public Peer API.

    Each method returns a new recipe object bound to this peer; see the classes in :mod:`embedzk.recipes`.
    """

    def Lock(self, path: str, identifier: Any = None) -> Lock:  # noqa: N802 - kazoo's names
        """A mutual-exclusion lock: ``with peer.Lock("/locks/x"): ...`` (:class:`embedzk.recipes.Lock`)."""
        from embedzk.recipes.lock import Lock

        return Lock(self, path, identifier)  # type: ignore[arg-type]

    def ReadLock(self, path: str, identifier: Any = None) -> ReadLock:  # noqa: N802
        """The shared side of a read/write lock: ``with peer.ReadLock("/locks/t"): ...``."""
        from embedzk.recipes.lock import ReadLock

        return ReadLock(self, path, identifier)  # type: ignore[arg-type]

    def WriteLock(self, path: str, identifier: Any = None) -> WriteLock:  # noqa: N802
        """The exclusive side of a read/write lock: ``with peer.WriteLock("/locks/t"): ...``."""
        from embedzk.recipes.lock import WriteLock

        return WriteLock(self, path, identifier)  # type: ignore[arg-type]

    def Semaphore(self, path: str, identifier: Any = None, max_leases: int = 1) -> Semaphore:  # noqa: N802
        """A counting semaphore: ``with peer.Semaphore("/limits/x", max_leases=4): ...``."""
        from embedzk.recipes.lock import Semaphore

        return Semaphore(self, path, identifier, max_leases)  # type: ignore[arg-type]

    def Election(self, path: str, identifier: Any = None) -> Election:  # noqa: N802
        """Leader election: ``peer.Election("/election/x").run(fn)`` runs ``fn`` while leader."""
        from embedzk.recipes.election import Election

        return Election(self, path, identifier)  # type: ignore[arg-type]

    def LeaderLatch(self, path: str, identifier: Any = None) -> LeaderLatch:  # noqa: N802
        """Leadership as a latch: ``latch = peer.LeaderLatch("/election/x"); latch.start(); latch.wait()``."""
        from embedzk.recipes.election import LeaderLatch

        return LeaderLatch(self, path, identifier)  # type: ignore[arg-type]

    def Barrier(self, path: str) -> Barrier:  # noqa: N802
        """A barrier: ``create()``, ``wait()``, ``remove()``."""
        from embedzk.recipes.barrier import Barrier

        return Barrier(self, path)  # type: ignore[arg-type]

    def DoubleBarrier(self, path: str, num_clients: int, identifier: Any = None) -> DoubleBarrier:  # noqa: N802
        """A double barrier for ``num_clients`` participants: ``enter()``, compute, ``leave()``."""
        from embedzk.recipes.barrier import DoubleBarrier

        return DoubleBarrier(self, path, num_clients, identifier)  # type: ignore[arg-type]

    def Queue(self, path: str) -> Queue:  # noqa: N802
        """A FIFO queue with priorities: ``put(value, priority=100)``, ``get()``, ``len()``."""
        from embedzk.recipes.queue import Queue

        return Queue(self, path)  # type: ignore[arg-type]

    def LockingQueue(self, path: str) -> LockingQueue:  # noqa: N802
        """A queue handing each entry to one consumer: ``get(timeout)``, then ``consume()`` or ``release()``."""
        from embedzk.recipes.queue import LockingQueue

        return LockingQueue(self, path)  # type: ignore[arg-type]

    def Counter(self, path: str, default: Number = 0, support_curator: bool = False) -> Counter:  # noqa: N802
        """A shared counter: ``counter += 1`` is atomic."""
        from embedzk.recipes.counter import Counter

        return Counter(self, path, default, support_curator)  # type: ignore[arg-type]

    def Party(self, path: str, identifier: Any = None) -> Party:  # noqa: N802
        """Group membership: ``join()``, ``leave()``, ``list(party)``."""
        from embedzk.recipes.party import Party

        return Party(self, path, identifier)  # type: ignore[arg-type]

    def ShallowParty(self, path: str, identifier: Any = None) -> ShallowParty:  # noqa: N802
        """Group membership with identifiers in node names: ``join()``, ``list(party)``."""
        from embedzk.recipes.party import ShallowParty

        return ShallowParty(self, path, identifier)  # type: ignore[arg-type]

    def TreeCache(self, path: str) -> TreeCache:  # noqa: N802
        """A local mirror of a subtree with listener events: ``start()``, ``get_data(path)``, ``listen(fn)``."""
        from embedzk.recipes.cache import TreeCache

        return TreeCache(self, path)  # type: ignore[arg-type]

    def ServiceRegistry(self, path: str = "/services") -> ServiceRegistry:  # noqa: N802
        """Service discovery: ``register(service, instance_id, data)``, ``instances(service)``, ``watch``."""
        from embedzk.recipes.registry import ServiceRegistry

        return ServiceRegistry(self, path)  # type: ignore[arg-type]
