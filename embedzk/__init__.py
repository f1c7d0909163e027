"""embedzk: ZooKeeper, embedded.

Every worker process of an application creates one :class:`Peer`; the peers elect a leader, replicate one
hierarchical namespace of znodes with ZooKeeper's semantics, keep it in LevelDB and signal changes through blinker.
"""

from embedzk.errors import (
    BadArgumentsError,
    BadVersionError,
    ConfigurationError,
    ConnectionLossError,
    DataInconsistencyError,
    DecodeError,
    EmbedZKError,
    MarshallingError,
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
from embedzk.model import EventType, KeeperState, Stat, WatchedEvent
from embedzk.peer import Peer, Transaction

__version__ = "0.1.0.dev0"

__all__ = [
    "BadArgumentsError",
    "BadVersionError",
    "ConfigurationError",
    "ConnectionLossError",
    "DataInconsistencyError",
    "DecodeError",
    "EmbedZKError",
    "EventType",
    "KeeperState",
    "MarshallingError",
    "NoChildrenForEphemeralsError",
    "NoNodeError",
    "NodeExistsError",
    "NotEmptyError",
    "NotLeaderError",
    "OperationTimeoutError",
    "Peer",
    "PeerStoppedError",
    "RolledBackError",
    "RuntimeInconsistencyError",
    "SessionExpiredError",
    "Stat",
    "StorageError",
    "Transaction",
    "WatchedEvent",
    "ZnodeError",
]
