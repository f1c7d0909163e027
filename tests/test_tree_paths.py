"""Path syntax: the table of ZooKeeper's PathUtils.validatePath, character ranges, and the sequential rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedzk.errors import BadArgumentsError
from embedzk.tree import validate_path
from embedzk.tree.paths import parent_of, split_path

VALID = [
    "/",
    "/a",
    "/a/b",
    "/a/b/c",
    "/zookeeper",
    "/.a",
    "/a.",
    "/...",
    "/a/...",
    "/a/.b",
    "/a/..b",
    "/a/b..",
    "/a b",
    "/a-b_c:d@e",
    "/é",
    "/\u00a0",  # NBSP: just past the C1 range
    "/\u4e2d\u6587",
    "/\uf900",  # just past the private use area
    "/\uffef",  # just before U+FFF0
    "/\x20",
]

# (path, a fragment of the reason ZooKeeper gives)
INVALID = [
    ("", "length must be > 0"),
    ("a", "must start with /"),
    ("a/b", "must start with /"),
    ("/a/", "must not end with /"),
    ("//", "must not end with /"),
    ("//a", "empty node name specified @1"),
    ("/a//b", "empty node name specified @3"),
    ("/.", "relative paths not allowed @1"),
    ("/..", "relative paths not allowed @2"),
    ("/a/.", "relative paths not allowed @3"),
    ("/a/..", "relative paths not allowed @4"),
    ("/a/./b", "relative paths not allowed @3"),
    ("/a/../b", "relative paths not allowed @4"),
    ("/a\x00b", "null character not allowed @2"),
    ("/\x01", "invalid character"),
    ("/a\x1f", "invalid character"),
    ("/a\tb", "invalid character"),
    ("/a\nb", "invalid character"),
    ("/\x7f", "invalid character"),
    ("/\x80", "invalid character"),
    ("/\x9f", "invalid character"),
    ("/\ud800", "invalid character"),
    ("/\udfff", "invalid character"),
    ("/\ue000", "invalid character"),
    ("/\uf8ff", "invalid character"),
    ("/\ufff0", "invalid character"),
    ("/\uffff", "invalid character"),
    ("/\U0001f600", "invalid character"),  # a surrogate pair in Java's UTF-16
]


@pytest.mark.parametrize("path", VALID)
def test_valid_paths_pass(path: str) -> None:
    validate_path(path)


@pytest.mark.parametrize(("path", "reason"), INVALID)
def test_invalid_paths_are_refused_with_zookeepers_reason(path: str, reason: str) -> None:
    with pytest.raises(BadArgumentsError) as info:
        validate_path(path)
    assert reason in str(info.value)


@pytest.mark.parametrize("path", [None, b"/a", 1, ["/a"]])
def test_non_strings_are_refused(path: object) -> None:
    with pytest.raises(BadArgumentsError, match="must be a str"):
        validate_path(path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("/q/", True),  # "/q/1": the name is all suffix
        ("/", True),  # "/1"
        ("/q/job-", True),
        ("/q/.", True),  # "/q/.1" is a name, not a relative path
        ("/q//", False),
        ("/q/..", True),  # "/q/..1" is a name, not a relative path
        ("q/", False),
    ],
)
def test_sequential_validates_path_plus_one(prefix: str, ok: bool) -> None:
    # PathUtils.validatePath(path, isSequential) checks path + "1".
    if ok:
        validate_path(prefix, sequential=True)
    else:
        with pytest.raises(BadArgumentsError):
            validate_path(prefix, sequential=True)


def test_trailing_slash_only_valid_as_a_sequential_prefix() -> None:
    with pytest.raises(BadArgumentsError):
        validate_path("/q/")
    validate_path("/q/", sequential=True)


@pytest.mark.parametrize(
    ("path", "parent", "name"),
    [("/a", "/", "a"), ("/a/b", "/a", "b"), ("/a/b/c", "/a/b", "c")],
)
def test_split_path(path: str, parent: str, name: str) -> None:
    assert split_path(path) == (parent, name)
    assert parent_of(path) == parent


def _java_validate(path: str) -> bool:
    """An independent, literal transcription of PathUtils.validatePath over UTF-16 code units."""
    units = []
    for ch in path:
        cp = ord(ch)
        if cp > 0xFFFF:
            cp -= 0x10000
            units += [chr(0xD800 + (cp >> 10)), chr(0xDC00 + (cp & 0x3FF))]
        else:
            units.append(ch)
    if not units or units[0] != "/":
        return False
    if len(units) == 1:
        return True
    if units[-1] == "/":
        return False
    last = "/"
    for i in range(1, len(units)):
        c = units[i]
        if c == "\x00":
            return False
        if c == "/" and last == "/":
            return False
        if c == "." and last == ".":
            if units[i - 2] == "/" and (i + 1 == len(units) or units[i + 1] == "/"):
                return False
        elif c == ".":
            if units[i - 1] == "/" and (i + 1 == len(units) or units[i + 1] == "/"):
                return False
        elif "\x00" < c <= "\x1f" or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\uf8ff" or "\ufff0" <= c <= "\uffff":
            return False
        last = c
    return True


_ALPHABET = ["/", ".", "a", "\x00", "\x1f", "\x20", "\x7f", "\xa0", "\ud800", "\uf900", "\uffff", "\U0001f600"]


@given(st.text(alphabet=st.sampled_from(_ALPHABET), max_size=8))
def test_agrees_with_a_literal_transcription_of_zookeeper(path: str) -> None:
    try:
        validate_path(path)
        ok = True
    except BadArgumentsError:
        ok = False
    assert ok == _java_validate(path)
