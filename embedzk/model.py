"""The small immutable values of the public API: Stat, WatchedEvent, EventType, KeeperState, Member."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stat:
    """A znode's metadata, with ZooKeeper's eleven fields.

    zxids are log indexes of the entries that made the change; ``ctime`` and ``mtime`` are milliseconds since the
    epoch, chosen by the leader when it proposed the change.
    """

    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    data_length: int
    num_children: int
    pzxid: int

    # kazoo's ZnodeStat offers these aliases; code written for kazoo reads them.
    @property
    def created(self) -> float:
        """ctime in seconds since the epoch."""
        return self.ctime / 1000.0

    @property
    def last_modified(self) -> float:
        """mtime in seconds since the epoch."""
        return self.mtime / 1000.0

    @property
    def children_count(self) -> int:
        """The number of children (kazoo's alias of num_children)."""
        return self.num_children

    @property
    def dataLength(self) -> int:  # noqa: N802 - ZooKeeper's spelling, kept for kazoo users
        """ZooKeeper's spelling of data_length."""
        return self.data_length

    @property
    def numChildren(self) -> int:  # noqa: N802 - ZooKeeper's spelling, kept for kazoo users
        """ZooKeeper's spelling of num_children."""
        return self.num_children

    @property
    def ephemeralOwner(self) -> int:  # noqa: N802 - ZooKeeper's spelling, kept for kazoo users
        """ZooKeeper's spelling of ephemeral_owner."""
        return self.ephemeral_owner


class EventType(str, enum.Enum):
    """What changed, as kazoo's EventType."""

    CREATED = "CREATED"
    DELETED = "DELETED"
    CHANGED = "CHANGED"
    CHILD = "CHILD"
    NONE = "NONE"


class KeeperState(str, enum.Enum):
    """The state of a peer's session, as kazoo's KazooState.

    CONNECTED: a leader is known and this peer's session is open. SUSPENDED: the peer has lost contact with a
    majority; reads still answer from the local replica, writes wait. LOST: the session expired; its ephemeral nodes
    are gone.
    """

    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    LOST = "LOST"


@dataclass(frozen=True, slots=True)
class WatchedEvent:
    """What a watch callback receives: the kind of change, the peer's state, and the path it concerns."""

    type: EventType
    state: KeeperState
    path: str
    #: The log index (zxid) of the change that fired this event; 0 for events not caused by a change.
    zxid: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    """One member of the cluster, as :meth:`Peer.members` reports it.

    ``id`` is the peer's id and ``address`` where it listens; ``voter`` whether it votes (the others observe);
    ``leader`` whether it leads. ``reachable`` and ``lag`` (entries behind the leader's commit index) are what the
    leader sees; a follower of a cluster whose protocol version is too old to carry them reports None.
    ``key`` is the member's name in the consensus protocol: its id and the tag of its disk.
    """

    id: str
    address: str
    voter: bool
    leader: bool
    reachable: bool | None
    lag: int | None
    key: str
