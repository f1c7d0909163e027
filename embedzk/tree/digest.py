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

A node that holds an ACL of its own (anything but OPEN_ACL, see :mod:`embedzk.tree.acl`) contributes that ACL as one
more term; a node without one contributes nothing more, so a tree without ACLs has exactly the digest it had before
ACLs existed (peers of both kinds compare digests during a rolling upgrade).

Exact formulas (stable: snapshots store the digest and restore checks it):

* node: ``crc32(data, crc32(meta, crc32(path.encode("utf-8"))))``
* session: ``crc32(owner.encode("utf-8"), crc32(SESSION_TAG + pack("<qq", session_id, timeout_ms)))``
* ACL of a node: ``crc`` starts as ``crc32(ACL_TAG, crc32(path.encode("utf-8")))``; then, for each entry
  ``(perms, scheme, id)`` in the ACL's order, with ``s = scheme.encode("utf-8")`` and ``i = id.encode("utf-8")``:
  ``crc = crc32(i, crc32(s, crc32(pack("<iII", perms, len(s), len(i)), crc)))``; the contribution is the final
  ``crc``. The lengths keep ``("ab", "c")`` and ``("a", "bc")`` apart.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

__all__ = ["ACL_TAG", "SESSION_TAG", "acl_digest", "node_digest", "node_digest_seeded", "path_seed", "session_digest"]

_crc32 = zlib.crc32

#: Prefixed to a session's record so that it can never collide with a node's (a node's path starts with "/").
SESSION_TAG = b"\x00session\x00"

#: Follows the path in a node's ACL term, so that it differs from the node's own term for the same path.
ACL_TAG = b"\x00acl\x00"

_SESSION = struct.Struct("<qq")
_ACL_ENTRY = struct.Struct("<iII")


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


def acl_digest(path: str, acl: Iterable[tuple[int, str, str]]) -> int:
    """The contribution of the ACL of the node at ``path`` to the tree digest; only for a node that holds one."""
    crc = _crc32(ACL_TAG, _crc32(path.encode("utf-8")))
    for perms, scheme, ident in acl:
        s = scheme.encode("utf-8")
        i = ident.encode("utf-8")
        crc = _crc32(i, _crc32(s, _crc32(_ACL_ENTRY.pack(perms, len(s), len(i)), crc)))
    return crc
