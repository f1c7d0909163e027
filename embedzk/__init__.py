"""embedzk: ZooKeeper, embedded.

Every worker process of an application creates one :class:`Peer`; the peers elect a leader, replicate one
hierarchical namespace of znodes with ZooKeeper's semantics, keep it in LevelDB and signal changes through blinker.
"""

from typing import TYPE_CHECKING, Any

from embedzk.errors import (
    BadArgumentsError,
    BadVersionError,
    ConfigurationError,
    ConnectionLossError,
    DataInconsistencyError,
    DecodeError,
    EmbedZKError,
    LoopThreadError,
    MarshallingError,
    MembershipError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    NotLeaderError,
    OperationTimeoutError,
    PeerStoppedError,
    RolledBackError,
    RuntimeInconsistencyError,
    SessionExpiredError,
    StorageError,
    ZnodeError,
)
from embedzk.model import EventType, KeeperState, Member, Stat, WatchedEvent

if TYPE_CHECKING:  # for type checkers and editors; at run time these load on first use (see __getattr__)
    from embedzk.peer import Peer, Transaction
    from embedzk.recipes import (
        Barrier,
        CancelledError,
        Counter,
        DoubleBarrier,
        Election,
        LeaderLatch,
        Lock,
        LockingQueue,
        LockTimeout,
        Party,
        Queue,
        ReadLock,
        Semaphore,
        ServiceRegistry,
        ShallowParty,
        TreeCache,
        WriteLock,
    )

# The runtime (the Peer over ZeroMQ and LevelDB, and the recipes built on it) loads on first use: the pure parts
# (embedzk.consensus, embedzk.tree, embedzk.codec ...) import without zmq, plyvel or the Peer.
_RECIPES = (
    "Barrier", "CancelledError", "Counter", "DoubleBarrier", "Election", "LeaderLatch", "Lock", "LockingQueue",
    "LockTimeout",
    "LoopThreadError", "Party", "Queue", "ReadLock", "Semaphore", "ServiceRegistry", "ShallowParty", "TreeCache",
    "WriteLock",
)
_LAZY = {"Peer": "embedzk.peer", "Transaction": "embedzk.peer", **dict.fromkeys(_RECIPES, "embedzk.recipes")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'embedzk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0.dev0"

__all__ = [
    "BadArgumentsError",
    "BadVersionError",
    "Barrier",
    "CancelledError",
    "ConfigurationError",
    "ConnectionLossError",
    "Counter",
    "DataInconsistencyError",
    "DecodeError",
    "DoubleBarrier",
    "Election",
    "EmbedZKError",
    "EventType",
    "KeeperState",
    "LeaderLatch",
    "Lock",
    "LockingQueue",
    "LockTimeout",
    "MarshallingError",
    "Member",
    "MembershipError",
    "NoChildrenForEphemeralsError",
    "NodeExistsError",
    "NoNodeError",
    "NotEmptyError",
    "NotLeaderError",
    "OperationTimeoutError",
    "Party",
    "Peer",
    "PeerStoppedError",
    "Queue",
    "ReadLock",
    "RolledBackError",
    "RuntimeInconsistencyError",
    "Semaphore",
    "ServiceRegistry",
    "SessionExpiredError",
    "ShallowParty",
    "Stat",
    "StorageError",
    "Transaction",
    "TreeCache",
    "WatchedEvent",
    "WriteLock",
    "ZnodeError",
]
