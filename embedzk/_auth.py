"""Who a requester is, for the ACL checks: the identities an ``add_auth`` (or a ZooKeeper client's auth packet) adds.

Only the ``digest`` scheme authenticates (``user:password``, checked by hashing, as ZooKeeper's
DigestAuthenticationProvider). A credential whose digest is the configured superuser's (ZooKeeper's
``superDigest``, ``super:<base64 sha1>``) also makes the requester the superuser, whom no ACL refuses. A ZooKeeper
client's address is its ``ip`` identity, added by the client server, not here.
"""

from __future__ import annotations

import binascii
import base64

from embedzk.errors import AuthFailedError, ConfigurationError, EmbedZKError
from embedzk.security import make_digest_acl_credential
from embedzk.tree.acl import SUPER

__all__ = ["Identities", "add_identity", "check_super_digest", "digest_id"]

#: The identities of one requester: (scheme, id) pairs, in the order they were added.
Identities = tuple[tuple[str, str], ...]


def digest_id(credential: str) -> str:
    """The ``digest`` id of a ``user:password`` credential (AuthFailedError if it is not one)."""
    if not isinstance(credential, str):
        raise AuthFailedError(f"a digest credential is a str user:password, not {type(credential).__name__}")
    user, sep, password = credential.partition(":")
    if not sep or not user:
        raise AuthFailedError("a digest credential is user:password")
    return make_digest_acl_credential(user, password)


def check_super_digest(value: object) -> str | None:
    """``value`` if it is a superuser digest (``user:<base64 of a SHA-1>``, as ZooKeeper's superDigest), or None;
    ConfigurationError naming what is wrong otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"super_digest must be a str user:base64-sha1, got {type(value).__name__}")
    user, sep, digest = value.partition(":")
    try:
        raw = base64.b64decode(digest, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not sep or not user or len(raw) != 20:
        raise ConfigurationError(
            f"super_digest {value!r} is not user:base64-sha1 (make one with "
            f"embedzk.security.make_digest_acl_credential(user, password))"
        )
    return value


def add_identity(
    ids: Identities,
    scheme: str,
    credential: str,
    super_digest: str | None,
    error: type[EmbedZKError] = AuthFailedError,
) -> Identities:
    """``ids`` with the identities ``scheme``/``credential`` adds; ``error`` (AuthFailedError by default) for a
    scheme other than digest or a credential that is not user:password."""
    if scheme != "digest":
        raise error(f"auth scheme {scheme!r} is not supported (digest is)")
    try:
        ident = digest_id(credential)
    except AuthFailedError as exc:
        raise error(str(exc)) from None
    added = [("digest", ident)]
    if super_digest is not None and ident == super_digest:
        added.append(SUPER)
    return ids + tuple(i for i in added if i not in ids)
