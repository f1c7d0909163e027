"""The recipes: locks, elections, barriers, queues, counters, membership, service discovery and a tree cache.

Each has kazoo's name and behaviour and is built on the public Peer API alone; each is reachable from a peer as
``peer.Lock(path)``, ``peer.Election(path)`` and so on (see :class:`embedzk.recipes.mixin.PeerRecipes`).
"""

from embedzk.recipes._common import CancelledError, LockTimeout
from embedzk.recipes.barrier import Barrier, DoubleBarrier
from embedzk.recipes.cache import NodeData, TreeCache, TreeEvent
from embedzk.recipes.counter import Counter
from embedzk.recipes.election import Election, LeaderLatch
from embedzk.recipes.lock import Lock, ReadLock, Semaphore, WriteLock
from embedzk.recipes.party import Party, ShallowParty
from embedzk.recipes.queue import LockingQueue, Queue
from embedzk.recipes.registry import ServiceRegistry

__all__ = [
    "Barrier",
    "CancelledError",
    "Counter",
    "DoubleBarrier",
    "Election",
    "LeaderLatch",
    "Lock",
    "LockTimeout",
    "LockingQueue",
    "NodeData",
    "Party",
    "Queue",
    "ReadLock",
    "Semaphore",
    "ServiceRegistry",
    "ShallowParty",
    "TreeCache",
    "TreeEvent",
    "WriteLock",
]
