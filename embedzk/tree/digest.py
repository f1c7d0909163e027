"""The tree digest: a cheap fingerprint of the whole replicated state, maintained incrementally.

As ZooKeeper 3.6's ``DigestCalculator``, each znode contributes the CRC32 of its path, its stat and its data, and
the tree's digest is the sum of these contributions: adding a node adds its CRC, removing it subtracts it, changing
it subtracts the old and adds the new. Reading the digest is O(1) and no per-node value is stored. Replicas at the
same log index must have equal digests; a difference means they diverged.

Here the stat is the packed 60-byte record of :data:`embedzk.tree.datatree.META` (czxid, mzxid, pzxid, ctime,
mtime, version, cversion as kept: the children created, not Stat.cversion; aversion, ephemeral_owner;
little-endian) and the path is UTF-8. Open sessions contribute too, so a replica that lost a session is noticed
even before the session's ephemerals matter. Unlike ZooKeeper the root node is included (ZooKeeper skips ``"/"``
only because it also stores the root under ``""``).

Exact formulas (stable: snapshots store the digest and restore checks it):

* node: ``crc32(data, crc32(meta, crc32(path.encode("utf-8"))))``
* session: ``crc32(owner.encode("utf-8"), crc32(SESSION_TAG + pack("<qq", session_id, timeout_ms)))``
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["SESSION_TAG", "node_digest", "node_digest_seeded", "path_seed", "session_digest"]

_crc32 = zlib.crc32

#: Prefixed to a session's record so that it can never collide with a node's (a node's path starts with "/").
SESSION_TAG = b"\x00session\x00"

_SESSION = struct.Struct("<qq")


def node_digest(path: str, meta: bytes, data: bytes) -> int:
    """The contribution of one znode to the tree digest."""
    return _crc32(data, _crc32(meta, _crc32(path.encode("utf-8"))))


def path_seed(path: str) -> int:
    """The CRC32 of a path alone: the start of its node's digest, shared when the same node is hashed twice."""
    return _crc32(path.encode("utf-8"))


def node_digest_seeded(seed: int, meta: bytes, data: bytes) -> int:
    """:func:`node_digest` from the :func:`path_seed` of the node's path."""
    return _crc32(data, _crc32(meta, seed))


def session_digest(session_id: int, owner: str, timeout_ms: int) -> int:
    """The contribution of one open session to the tree digest."""
    return _crc32(owner.encode("utf-8"), _crc32(SESSION_TAG + _SESSION.pack(session_id, timeout_ms)))
