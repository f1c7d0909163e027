"""Znode path syntax: ZooKeeper's ``PathUtils.validatePath``, and splitting a path into parent and name.

A valid path is absolute, has no trailing slash (except ``"/"`` itself), and no empty, ``"."`` or ``".."``
segment. It contains none of the characters ZooKeeper rejects: NUL, the C0 controls U+0001-U+001F, DEL and the C1
controls U+007F-U+009F, U+D800-U+F8FF (surrogates and the private use area) and U+FFF0-U+FFFF. ZooKeeper checks
UTF-16 code units, so a character beyond the Basic Multilingual Plane, which Java stores as a surrogate pair, is
rejected too.

For a sequential create ZooKeeper validates ``path + "1"`` (``validatePath(path, isSequential)``): the name part
may then be empty, and ``"/q/"`` creates ``"/q/0000000000"``.
"""

from __future__ import annotations

import re

from embedzk.errors import BadArgumentsError

__all__ = ["ROOT", "parent_of", "split_path", "validate_path"]

#: The root of the namespace; it always exists.
ROOT = "/"

# Every character PathUtils.validatePath rejects, as one class (see the module docstring for the ranges). The ranges
# are escapes for the regular expression, not characters of the literal: a surrogate code point in a string literal
# is refused by compilers of typed Python (mypyc).
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\uffff\U00010000-\U0010ffff]")


def validate_path(path: str, sequential: bool = False) -> None:
    """Raise :class:`BadArgumentsError` naming the problem unless ``path`` is a valid znode path.

    ``sequential``: the path is the prefix of a sequential create, so ``path + "1"`` is what must be valid.
    """
    if not isinstance(path, str):
        raise BadArgumentsError(f"a path must be a str, got {type(path).__name__}")
    if sequential:
        path = path + "1"
    # Fast acceptance for the common case; the slow walk below only runs to explain a failure.
    if path == ROOT:
        return
    if (
        path.startswith("/")
        and not path.endswith("/")
        and _BAD_CHAR.search(path) is None
        and not _has_bad_segment(path)
    ):
        return
    raise BadArgumentsError(_reason(path))


def _has_bad_segment(path: str) -> bool:
    for name in path.split("/")[1:]:
        if name == "" or name == "." or name == "..":
            return True
    return False


def _reason(path: str) -> str:
    """Say why ``path`` is invalid, in ZooKeeper's words and with its character index."""
    if path == "":
        return "path length must be > 0"
    if not path.startswith("/"):
        return f'invalid path "{path}": path must start with / character'
    if path.endswith("/"):
        return f'invalid path "{path}": path must not end with / character'
    last = "/"
    for i in range(1, len(path)):
        c = path[i]
        if c == "\x00":
            why = f"null character not allowed @{i}"
        elif c == "/" and last == "/":
            why = f"empty node name specified @{i}"
        elif (
            c == "."
            and (i + 1 == len(path) or path[i + 1] == "/")
            and (path[i - 1] == "/" or (last == "." and path[i - 2] == "/"))
        ):
            why = f"relative paths not allowed @{i}"  # a "." or ".." segment
        elif _BAD_CHAR.match(c):
            why = f"invalid character {c!r} @{i}"
        else:
            last = c
            continue
        return f'invalid path "{path}": {why}'
    raise AssertionError(f"{path!r} was rejected without a reason")  # pragma: no cover - the checks above agree


def split_path(path: str) -> tuple[str, str]:
    """Split a valid path other than ``"/"`` into its parent's path and its own name."""
    parent, _, name = path.rpartition("/")
    return (parent or ROOT), name


def parent_of(path: str) -> str:
    """The parent's path of a valid path other than ``"/"``."""
    return split_path(path)[0]
