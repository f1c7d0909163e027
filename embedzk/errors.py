"""The errors embedzk raises.

Every error derives from :class:`EmbedZKError`. The names are kazoo's, so code written against kazoo catches the
same names here, and, as kazoo's, each carries ZooKeeper's ``KeeperException.Code`` value as ``code`` for code that
switches on it. The errors the replicated tree produces are results, decided identically on every replica; no
error crosses the wire (each replica computes its own from the log).
"""

from __future__ import annotations

from typing import ClassVar


class EmbedZKError(Exception):
    """Base class of every error embedzk raises."""

    #: ZooKeeper's error code for this error (``KeeperException.Code``); 0 is not an error.
    code: ClassVar[int] = -1


class ZnodeError(EmbedZKError):
    """An error the replicated tree returns for an operation; deterministic on every replica."""


class SystemZookeeperError(EmbedZKError):
    """An error of the system rather than of the operation."""

    code = -1


class RuntimeInconsistencyError(ZnodeError):
    """In a failed multi: an operation after the one that failed, never attempted."""

    code = -2


class DataInconsistencyError(SystemZookeeperError):
    """Replicas disagree, or stored data contradicts itself."""

    code = -3


class ConnectionLossError(SystemZookeeperError):
    """The request may or may not have taken effect: its outcome is unknown."""

    code = -4


class MarshallingError(SystemZookeeperError):
    """A message or record could not be encoded or decoded."""

    code = -5


class UnimplementedError(SystemZookeeperError):
    """The operation is not implemented."""

    code = -6


class OperationTimeoutError(SystemZookeeperError):
    """The operation did not complete within its timeout; its outcome is unknown."""

    code = -7


class BadArgumentsError(ZnodeError):
    """An argument is invalid: a malformed path, an oversized value, a bad flag combination."""

    code = -8


class NoNodeError(ZnodeError):
    """The node (or, for create, its parent) does not exist."""

    code = -101


class NoAuthError(ZnodeError):
    """Not authorised."""

    code = -102


class BadVersionError(ZnodeError):
    """The expected version does not match the node's version."""

    code = -103


class NoChildrenForEphemeralsError(ZnodeError):
    """Ephemeral nodes may not have children."""

    code = -108


class NodeExistsError(ZnodeError):
    """The node already exists."""

    code = -110


class NotEmptyError(ZnodeError):
    """The node has children."""

    code = -111


class SessionExpiredError(EmbedZKError):
    """The session has expired (or was closed): its ephemeral nodes are gone."""

    code = -112


class InvalidACLError(ZnodeError):
    """The ACL is invalid."""

    code = -114


class NoWatcherError(ZnodeError):
    """removeWatches or checkWatches found no watch of the kind asked for on the path."""

    code = -121


class NewConfigNoQuorumError(EmbedZKError):
    """A reconfig could not be made: the membership change it asked for did not complete (the new member did not
    answer, or no quorum)."""

    code = -13


class ReconfigDisabledError(EmbedZKError):
    """ZooKeeper's reconfig is not available (membership changes through ``add_member``/``remove_member``)."""

    code = -123


class AuthFailedError(EmbedZKError):
    """An auth packet named a scheme that is not supported, or a credential that is not valid for it."""

    code = -115


class SessionMovedError(EmbedZKError):
    """The session moved to another peer."""

    code = -118


class NotReadOnlyCallError(EmbedZKError):
    """A write was attempted where only reads are served."""

    code = -119


class RolledBackError(ZnodeError):
    """In a failed multi: an operation before the one that failed, undone with the rest (kazoo's name).

    Its message names the failing operation by its index in the transaction's results, counting from 0, and says
    how it failed.
    """

    code = 0


class NotLeaderError(EmbedZKError):
    """This peer is not the leader and the request cannot be forwarded (no leader is known)."""

    code = -4


class PeerStoppedError(EmbedZKError):
    """The peer is not running: it was never started, or it was stopped."""

    code = -4


class ConfigurationError(EmbedZKError):
    """The peer's configuration is wrong (ids, addresses, data directory); the message says what."""


class LoopThreadError(EmbedZKError):
    """A blocking call was made on the peer's own loop thread, where it would wait for itself forever."""


class MembershipError(EmbedZKError):
    """A membership change (add_member, remove_member, a leave) could not be made; the message says why."""


class StorageError(EmbedZKError):
    """The data directory cannot be used: locked, corrupt, of another cluster or peer, or of a newer format."""


class DecodeError(MarshallingError):
    """Bytes received from the network or read from storage are not a valid embedzk message or record."""
