"""ZooKeeper's ACLs as the tree keeps and checks them: pure functions of their arguments.

An ACL is a tuple of entries ``(perms, scheme, id)``; ``perms`` is a bit set of :class:`Perm`. The schemes are
ZooKeeper's built-in ones:

* ``world``: the only id is ``"anyone"``, and it matches every requester;
* ``auth``: only in a request, never stored: it stands for every identity the requester authenticated
  (:func:`expand_auth`, ZooKeeper's ``PrepRequestProcessor.fixupACL``);
* ``digest``: ``"user:base64(sha1(user:password))"``, matched by an identity ``("digest", the same id)``;
* ``ip``: an IPv4 or IPv6 address, or a network ``address/prefix``, matched by an identity ``("ip", address)``
  inside it (``IPAuthenticationProvider``).

A requester's identities are ``(scheme, id)`` pairs that the serving peer vouches for; :data:`SUPER` among them
passes every check, as ZooKeeper's superuser does. What ZooKeeper leaves to pluggable providers (sasl, x509) is not
known here: such schemes are refused in an ACL.

The tree stores an ACL only when it is not :data:`OPEN_ACL`, and always in the normal form :func:`validate_acl`
gives (no ``auth`` entry, no duplicate), so that every replica hashes and snapshots the same thing.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import ipaddress
import re
from typing import Any

from embedzk.errors import InvalidACLError
from embedzk.tree.digest import acl_digest

__all__ = [
    "OPEN_ACL",
    "SCHEMES",
    "SUPER",
    "AclEntry",
    "Identity",
    "Perm",
    "acl_digest",
    "allowed",
    "expand_auth",
    "validate_acl",
]


class Perm(enum.IntFlag):
    """ZooKeeper's permission bits (``ZooDefs.Perms``)."""

    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


#: One ACL entry: (perms, scheme, id).
AclEntry = tuple[int, str, str]
#: One identity of a requester: (scheme, id).
Identity = tuple[str, str]

#: Everything to everyone (ZooKeeper's ``OPEN_ACL_UNSAFE``): what a node without an ACL of its own has.
OPEN_ACL: tuple[AclEntry, ...] = ((31, "world", "anyone"),)
#: The identity that passes every check: the serving peer vouches that the client authenticated as ZooKeeper's
#: superuser.
SUPER: Identity = ("super", "")

#: The schemes an ACL entry may name.
SCHEMES = frozenset({"world", "auth", "digest", "ip"})

# DigestAuthenticationProvider.generateDigest: base64 of a 20-byte SHA-1, always 27 characters and one "=".
_DIGEST_HASH = re.compile(r"[A-Za-z0-9+/]{27}=")
# ::ffff:0:0/96, the IPv4-mapped addresses.
_V4_MAPPED = 0xFFFF << 32
_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def validate_acl(acl: Any, path: str) -> tuple[AclEntry, ...]:
    """``acl`` in normal form (a tuple of ``(int, str, str)`` tuples, duplicates dropped, the first kept, as
    ZooKeeper's ``removeDuplicates``); InvalidACLError naming ``path`` and the problem if it is not a valid ACL."""
    if not isinstance(acl, (list, tuple)) or not acl:
        raise InvalidACLError(
            f"InvalidACL for {path}: an ACL is a non-empty list of (perms, scheme, id) entries, got {_kind(acl)}"
        )
    entries = [_entry(entry, index, path) for index, entry in enumerate(acl)]
    return tuple(dict.fromkeys(entries))


def _kind(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "an empty one"
    return f"a {type(value).__name__}"


def _entry(entry: Any, index: int, path: str) -> AclEntry:
    """One entry checked and converted to plain types; InvalidACLError saying which one and why."""

    def refuse(problem: str) -> InvalidACLError:
        return InvalidACLError(f"InvalidACL for {path}: entry {index}: {problem}")

    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise refuse("an entry is a (perms, scheme, id) triple")
    perms, scheme, ident = entry
    # A bool is an int in Python, never a permission set; a Perm is one.
    if not isinstance(perms, int) or isinstance(perms, bool):
        raise refuse(f"perms must be an int, got {type(perms).__name__}")
    if not 1 <= perms <= Perm.ALL:
        raise refuse(f"perms {perms} is not in 1..31")
    if type(scheme) is not str or type(ident) is not str:
        raise refuse("the scheme and the id must be str")
    if scheme not in SCHEMES:
        raise refuse(f"unknown scheme {scheme!r} (known: {', '.join(sorted(SCHEMES))})")
    if not _utf8(ident):
        raise refuse("the id is not valid unicode")
    problem = _id_problem(scheme, ident)
    if problem:
        raise refuse(problem)
    return (int(perms), scheme, ident)


def _utf8(text: str) -> bool:
    # Ids are hashed as UTF-8 into the digest: a lone surrogate would make every replica fail alike, but later.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _id_problem(scheme: str, ident: str) -> str | None:
    """Why ``ident`` is not a valid id of ``scheme``, or None; ``auth`` takes any id, as ZooKeeper ignores it."""
    if scheme == "world" and ident != "anyone":
        return f"the world scheme has the one id 'anyone', not {ident!r}"
    if scheme == "digest" and not _valid_digest_id(ident):
        return f"a digest id is 'user:base64(sha1(user:password))' (28 characters after the colon), not {ident!r}"
    if scheme == "ip" and _ip_network(ident) is None:
        return f"an ip id is an IPv4 or IPv6 address or address/prefix, not {ident!r}"
    return None


def _valid_digest_id(ident: str) -> bool:
    # ZooKeeper only asks for "user:something"; the hash part is checked here too, since a digest identity is always
    # made by DigestAuthenticationProvider.generateDigest and an ACL with anything else can never match.
    user, colon, digest = ident.partition(":")
    if not colon or not user or not _utf8(user) or _DIGEST_HASH.fullmatch(digest) is None:
        return False
    try:
        return len(base64.b64decode(digest, validate=True)) == 20
    except binascii.Error:  # pragma: no cover - the pattern admits only decodable text
        return False


@functools.lru_cache(maxsize=1024)
def _ip_network(expr: str) -> ipaddress.IPv6Network | None:
    """The network an ``ip`` id stands for (an address alone is a full-length prefix), or None if it is invalid.

    Stricter than ``ipaddress.ip_network``: no netmask notation, no IPv6 zone, a prefix of decimal digits no longer
    than the address. Host bits may be set, as ZooKeeper masks them (``10.1.2.3/8`` is ``10.0.0.0/8``). An IPv4
    network is returned as its IPv4-mapped IPv6 network (``10.0.0.0/8`` is ``::ffff:10.0.0.0/104``), so that a client
    reaching an IPv6 socket from an IPv4 address matches it, as Java's InetAddress makes it do in ZooKeeper. Cached:
    ACL checks parse the same few ids over and over.
    """
    text, slash, bits = expr.partition("/")
    address = _ip_address(text)
    if address is None:
        return None
    prefix: int = address.max_prefixlen
    if slash:
        if not (bits.isascii() and bits.isdigit()) or int(bits) > address.max_prefixlen:
            return None
        prefix = int(bits)
    return ipaddress.IPv6Network((_mapped(address), prefix + 128 - address.max_prefixlen), strict=False)


@functools.lru_cache(maxsize=1024)
def _ip_address(text: str) -> _IpAddress | None:
    """``text`` as an IPv4 or IPv6 address, or None (a zone ``%eth0`` is refused: it names no network)."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _mapped(address: _IpAddress) -> ipaddress.IPv6Address:
    """An IPv4 address as its IPv4-mapped IPv6 address (RFC 4291, 2.5.5.2); an IPv6 address as it is."""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(_V4_MAPPED | int(address))
    return address


def expand_auth(acl: tuple[AclEntry, ...], ids: tuple[Identity, ...], path: str) -> tuple[AclEntry, ...]:
    """``acl`` with each ``auth`` entry replaced by one entry of the same perms per digest identity in ``ids``.

    ZooKeeper's ``fixupACL``: only providers that say ``isAuthenticated()`` count, which of the built-in schemes is
    digest alone (not ip, not world, not super). An ``auth`` entry that finds none is InvalidACLError, and so is one
    whose identity is not a well-formed digest id (it could never be stored). Duplicates the expansion makes are
    dropped, the first kept, so that the result is in :func:`validate_acl`'s normal form (ZooKeeper would keep them).
    """
    if all(scheme != "auth" for _, scheme, _ in acl):
        return acl
    digests = [ident for scheme, ident in ids if scheme == "digest" and _valid_digest_id(ident)]
    expanded: list[AclEntry] = []
    for perms, scheme, ident in acl:
        if scheme != "auth":
            expanded.append((perms, scheme, ident))
            continue
        if not digests:
            raise InvalidACLError(
                f"InvalidACL for {path}: an auth entry needs the requester to have authenticated with digest"
            )
        expanded.extend((perms, "digest", digest) for digest in digests)
    return tuple(dict.fromkeys(expanded))


def allowed(acl: tuple[AclEntry, ...] | None, perm: int, ids: tuple[Identity, ...]) -> bool:
    """Whether a requester with identities ``ids`` holds ``perm`` on a node with ``acl`` (None: :data:`OPEN_ACL`).

    ZooKeeperServer.checkACL: :data:`SUPER` passes; otherwise an entry must hold one of ``perm``'s bits and match:
    ``world:anyone`` always, ``digest`` an identical digest identity, ``ip`` an ip identity inside its network.
    """
    if acl is None or SUPER in ids:
        return True
    for perms, scheme, ident in acl:
        if not perms & perm:
            continue
        if scheme == "world":
            if ident == "anyone":
                return True
        elif scheme == "digest":
            if ("digest", ident) in ids:
                return True
        elif scheme == "ip" and _ip_matches(ident, ids):
            return True
    return False


def _ip_matches(expr: str, ids: tuple[Identity, ...]) -> bool:
    network = _ip_network(expr)
    if network is None:
        return False
    for scheme, ident in ids:
        if scheme == "ip":
            address = _ip_address(ident)
            if address is not None and _mapped(address) in network:
                return True
    return False
