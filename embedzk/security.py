"""ACLs with kazoo's names, so that code written for kazoo's ``kazoo.security`` runs unchanged.

    from embedzk.security import make_digest_acl, OPEN_ACL_UNSAFE

    peer = Peer("w1", auth_data=[("digest", "alice:secret")])
    peer.create("/private", b"x", acl=[make_digest_acl("alice", "secret", all=True)])
    acls, stat = peer.get_acls("/private")

An ACL is a list of :class:`ACL` entries: permissions (:class:`Permissions` bits) granted to an :class:`Id` (a
scheme and an id). The schemes are ZooKeeper's: ``world`` (id ``anyone``: everyone), ``digest``
(``user:base64(sha1(user:password))``, matched by an ``add_auth("digest", "user:password")``), ``ip`` (an address or
a network such as ``10.0.0.0/8``, matched by a ZooKeeper client's address) and ``auth`` (at create or set time: every
digest identity the caller has added). kazoo's ACL and Id objects, and any object with the same attributes, are
accepted wherever these are.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Any, NamedTuple

from embedzk.errors import InvalidACLError
from embedzk.tree.acl import Perm

__all__ = [
    "ACL",
    "ANYONE_ID_UNSAFE",
    "AUTH_IDS",
    "CREATOR_ALL_ACL",
    "OPEN_ACL_UNSAFE",
    "READ_ACL_UNSAFE",
    "Id",
    "Permissions",
    "acl_entries",
    "acls_of",
    "make_acl",
    "make_digest_acl",
    "make_digest_acl_credential",
]


class Id(NamedTuple):
    """An identity: a scheme and an id within it."""

    scheme: str
    id: str


class ACL(NamedTuple):
    """One entry of a node's access control list: ``perms`` (:class:`Permissions` bits) for ``id``."""

    perms: int
    id: Id

    @property
    def acl_list(self) -> list[str]:
        """The permissions by name ("ALL", or some of "READ", "WRITE", "CREATE", "DELETE", "ADMIN"), as kazoo's."""
        if self.perms & Permissions.ALL == Permissions.ALL:
            return ["ALL"]
        names = ("READ", "WRITE", "CREATE", "DELETE", "ADMIN")
        return [name for name in names if self.perms & getattr(Permissions, name)]


class Permissions:
    """ZooKeeper's permission bits, as kazoo's class of plain ints (the tree's :class:`~embedzk.tree.acl.Perm`)."""

    READ = int(Perm.READ)
    WRITE = int(Perm.WRITE)
    CREATE = int(Perm.CREATE)
    DELETE = int(Perm.DELETE)
    ADMIN = int(Perm.ADMIN)
    ALL = int(Perm.ALL)


#: Everyone.
ANYONE_ID_UNSAFE = Id("world", "anyone")
#: Whoever creates or sets the ACL: each of the digest identities they added.
AUTH_IDS = Id("auth", "")
#: Everything to everyone: what a node gets when no ACL is given.
OPEN_ACL_UNSAFE = [ACL(Permissions.ALL, ANYONE_ID_UNSAFE)]
#: Everything to the creator's identities.
CREATOR_ALL_ACL = [ACL(Permissions.ALL, AUTH_IDS)]
#: Reading to everyone.
READ_ACL_UNSAFE = [ACL(Permissions.READ, ANYONE_ID_UNSAFE)]


def make_digest_acl_credential(username: str, password: str) -> str:
    """The ``digest`` id of a user and password: ``user:base64(sha1(user:password))``, as ZooKeeper makes it."""
    credential = f"{username}:{password}".encode()
    digest = hashlib.sha1(credential).digest()  # noqa: S324 - ZooKeeper's scheme, not a choice
    return f"{username}:{base64.b64encode(digest).decode('ascii')}"


def make_acl(
    scheme: str,
    credential: str,
    read: bool = False,
    write: bool = False,
    create: bool = False,
    delete: bool = False,
    admin: bool = False,
    all: bool = False,  # noqa: A002 - kazoo's keyword
) -> ACL:
    """An :class:`ACL` for ``Id(scheme, credential)`` with the permissions asked for."""
    if all:
        perms = Permissions.ALL
    else:
        perms = 0
        for wanted, bit in (
            (read, Permissions.READ),
            (write, Permissions.WRITE),
            (create, Permissions.CREATE),
            (delete, Permissions.DELETE),
            (admin, Permissions.ADMIN),
        ):
            if wanted:
                perms |= bit
    return ACL(perms, Id(scheme, credential))


def make_digest_acl(
    username: str,
    password: str,
    read: bool = False,
    write: bool = False,
    create: bool = False,
    delete: bool = False,
    admin: bool = False,
    all: bool = False,  # noqa: A002 - kazoo's keyword
) -> ACL:
    """A ``digest`` :class:`ACL` for a user and a plain-text password."""
    return make_acl(
        "digest", make_digest_acl_credential(username, password), read, write, create, delete, admin, all
    )


def acl_entries(acls: Any, path: str = "") -> tuple[tuple[int, str, str], ...]:
    """``acls`` (a list of ACL-like objects: ``.perms`` and ``.id.scheme``, ``.id.id``) as the tree's
    (perms, scheme, id) triples; InvalidACLError naming what is wrong with one that is not an ACL list."""
    if isinstance(acls, (str, bytes)) or not isinstance(acls, Iterable):
        raise InvalidACLError(f"{path}: an ACL is a list of ACL entries, not {type(acls).__name__}")
    entries = []
    for index, entry in enumerate(acls):
        try:
            perms, scheme, ident = entry.perms, entry.id.scheme, entry.id.id
        except AttributeError:
            raise InvalidACLError(f"{path}: ACL entry {index} is not an ACL (perms, Id(scheme, id))") from None
        if isinstance(perms, bool) or not isinstance(perms, int):
            raise InvalidACLError(f"{path}: ACL entry {index}: perms must be an int, not {perms!r}")
        if not isinstance(scheme, str) or not isinstance(ident, str):
            raise InvalidACLError(f"{path}: ACL entry {index}: the scheme and the id must be str")
        entries.append((int(perms), scheme, ident))
    return tuple(entries)


def acls_of(entries: Iterable[tuple[int, str, str]]) -> list[ACL]:
    """The tree's (perms, scheme, id) triples as a list of :class:`ACL`, as ``get_acls`` returns them."""
    return [ACL(perms, Id(scheme, ident)) for perms, scheme, ident in entries]
