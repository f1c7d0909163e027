"""The codec: every registered wire type round-trips, and no bytes make decode() do anything but return a
registered value or raise DecodeError, quickly and without allocating absurdly.

The strategies are generated from each type's hints, and the types are found by importing every embedzk module,
so a wire type added anywhere is covered here without touching this file.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import math
import os
import pkgutil
import resource
import sys
import time
import timeit
import types
import typing
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import embedzk
from embedzk.codec import (
    DEFAULT_MAX_SIZE,
    DecodeError,
    core,
    decode,
    encode,
    encode_spliced,
    message,
    registered_types,
)
from embedzk.consensus import Message
from embedzk.replica.messages import Bundle, Forward, SessionPing, pack
from embedzk.tree.txn import SetDataOp

# -- discovering every wire type ----------------------------------------------------------------------------------


def _import_every_module() -> list[str]:
    """Import every embedzk module, so that every @message registration has run; returns what failed."""
    failures: list[str] = []
    for info in pkgutil.walk_packages(embedzk.__path__, "embedzk.", onerror=failures.append):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "embedzk":
                failures.append(f"{info.name}: {exc}")
            # an optional third-party dependency that is not installed: its module's types cannot be tested here
        except Exception as exc:
            failures.append(f"{info.name}: {type(exc).__name__}: {exc}")
    return failures


IMPORT_FAILURES = _import_every_module()
# Snapshot at collection, in tag order: the types that tests below register for themselves are left out.
REGISTERED: dict[int, type] = dict(sorted(registered_types().items()))
REGISTERED_CLASSES = frozenset(REGISTERED.values())


def test_every_module_imports_so_every_wire_type_is_covered() -> None:
    assert not IMPORT_FAILURES, "wire types of these modules are not covered:\n" + "\n".join(IMPORT_FAILURES)


def test_the_known_wire_types_are_registered() -> None:
    from embedzk.consensus.types import (
        ConfChange,
        ConfState,
        Entry,
        HardState,
        SnapshotMeta,
    )
    from embedzk.tree import txn

    for cls in (txn.CreateOp, txn.DeleteOp, txn.SetDataOp, txn.CheckOp, txn.MultiOp, txn.CreateSessionOp,
                txn.CloseSessionOp, txn.DeleteContainerOp, txn.Txn, Entry, HardState, ConfState, ConfChange,
                SnapshotMeta):  # fmt: skip
        assert cls in REGISTERED_CLASSES


# -- strategies from type hints -----------------------------------------------------------------------------------

_INT = st.integers(min_value=-(2**64), max_value=2**64 - 1)  # what CBOR's major types 0 and 1 hold
_PLAIN_DATA = st.recursive(
    st.none() | st.booleans() | _INT | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_CACHE: dict[Any, st.SearchStrategy[Any]] = {}


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """Values of ``hint``, as the codec must carry them."""
    if hint not in _CACHE:
        # deferred: a wire type may (one day) contain itself
        _CACHE[hint] = st.deferred(lambda: _strategy_for(hint))
    return _CACHE[hint]


def _strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        int: _INT,
        bool: st.booleans(),
        str: st.text(max_size=12),
        bytes: st.binary(max_size=24),
        float: st.floats(allow_nan=False),
        type(None): st.none(),
        Any: _PLAIN_DATA,
    }
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _instances(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in args])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=3)
    if origin in (frozenset, set):
        return st.frozensets(strategy_for(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=3)
    raise TypeError(f"no strategy for {hint!r}")


def _instances(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        kwargs = {name: draw(strategy) for name, strategy in fields.items()}
        try:
            return cls(**kwargs)
        except (ValueError, TypeError):  # a __post_init__ refused the combination
            assume(False)

    return build()


ANY_REGISTERED = st.sampled_from(list(REGISTERED.values())).flatmap(strategy_for)


def assert_identical(a: Any, b: Any) -> None:
    """Equal, and of the very same types all the way down (== lets True pass for 1 and 1 for 1.0)."""
    assert type(a) is type(b), (a, b)
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_identical(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_identical(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_identical(a[k], b[k])
    elif isinstance(a, frozenset):
        assert {(type(x), x) for x in a} == {(type(x), x) for x in b}
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def check_decode(data: bytes) -> Any:
    """decode() either returns a registered value, which round-trips, or raises DecodeError with a reason."""
    try:
        value = decode(data)
    except DecodeError as exc:
        assert str(exc), "a DecodeError must say why"
        assert len(str(exc)) < 1000, "an error message must not echo the attacker's bytes"
        return None
    assert type(value) in REGISTERED_CLASSES
    again = decode(encode(value))
    assert_identical(again, value)
    return value


# -- round trips --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(REGISTERED.values()), ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_registered_type_round_trips(cls: type, data: st.DataObject) -> None:
    value = data.draw(strategy_for(cls))
    encoded = encode(value)
    decoded = decode(encoded, expect=cls)
    assert_identical(decoded, value)
    assert encode(decoded) == encoded  # deterministic: the same value always makes the same bytes
    assert decode(bytearray(encoded)) == value
    assert decode(memoryview(encoded)) == value


def test_decoding_with_the_wrong_expectation_fails() -> None:
    from embedzk.consensus.types import Entry, HardState

    with pytest.raises(DecodeError, match="expected a HardState"):
        decode(encode(Entry(1, 2)), expect=HardState)


# -- fuzzing: random and mutated bytes ----------------------------------------------------------------------------

FUZZ = settings(max_examples=250, deadline=timedelta(seconds=1), suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    check_decode(data)


@FUZZ
@given(st.sampled_from(sorted(REGISTERED)), st.binary(max_size=64))
def test_random_fields_behind_a_valid_header(tag: int, rest: bytes) -> None:
    # An array header, a real tag and version, then garbage: reaches the converters far more often than noise.
    wire = core._BY_TAG[tag]
    n = 2 + len(wire.field_names)
    head = cbor2.dumps([None] * n)[:-n]  # the array header alone (None is one byte)
    check_decode(head + cbor2.dumps(tag) + cbor2.dumps(wire.version) + rest)


def _mutate_bytes(data: bytes, draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace", "append", "duplicate"]))
    at = draw(st.integers(0, len(data)))
    if kind == "flip" and data:
        i = min(at, len(data) - 1)
        return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=9)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 8)) :]
    if kind == "replace" and data:
        i = min(at, len(data) - 1)
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    if kind == "duplicate":
        return data[:at] + data[at // 2 : at] + data[at:]
    return data + draw(st.binary(min_size=1, max_size=9))


@FUZZ
@given(ANY_REGISTERED, st.data())
def test_mutated_encodings(value: Any, data: st.DataObject) -> None:
    encoded = encode(value)
    for _ in range(data.draw(st.integers(1, 3))):
        encoded = _mutate_bytes(encoded, data.draw)
    check_decode(encoded)


# Values that are wrong in interesting ways wherever they land: type confusions, CBOR's odd corners, and every
# kind of semantic tag cbor2 would otherwise act on.
_HOSTILE_LEAVES = st.sampled_from(
    [
        True, False, None, 0, 1, -1, 2**64 - 1, -(2**64), 0.0, 1.5, float("nan"), float("inf"), "", "x", b"", b"x",
        [], {}, {"a": 1}, {b"k": [1]}, [[[[]]]], cbor2.undefined, cbor2.CBORSimpleValue(99),
    ]
)  # fmt: skip
_SOME_TAGS = [0, 1, 2, 3, 4, 5, 21, 24, 25, 28, 29, 30, 32, 35, 36, 37, 52, 54, 256, 258, 260, 261, 1004, 43000, 55799]


def _hostile(draw: st.DrawFn, node: Any) -> Any:
    kind = draw(st.sampled_from(["leaf", "tag", "swap", "nest", "grow", "shrink", "retag"]))
    if kind == "tag":
        return cbor2.CBORTag(draw(st.sampled_from(_SOME_TAGS)), node)
    if kind == "swap":  # the neighbouring type: str<->bytes, int<->bool/float, list<->map
        swaps: dict[type, Callable[[Any], Any]] = {
            str: lambda v: v.encode(),
            bytes: lambda v: v.decode("latin-1"),
            int: lambda v: bool(v & 1) if v >= 0 else float(v),
            bool: int,
            list: lambda v: {str(i): x for i, x in enumerate(v)},
        }
        return swaps.get(type(node), lambda v: [v])(node)
    if kind == "nest":
        for _ in range(draw(st.integers(1, 200))):
            node = [node]
        return node
    if type(node) is list and kind == "grow":
        return node + [draw(_HOSTILE_LEAVES)]
    if type(node) is list and kind == "shrink" and node:
        return node[:-1]
    if type(node) is list and kind == "retag" and len(node) >= 2:
        return [draw(st.sampled_from(sorted(REGISTERED) + [0, 999, True])), draw(st.integers(-1, 3)), *node[2:]]
    return draw(_HOSTILE_LEAVES)


def _mutate_tree(node: Any, draw: st.DrawFn) -> Any:
    """Replace one node, chosen by walking down from the root, with something hostile."""
    if type(node) is list and node and draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(node) - 1))
        return [*node[:i], _mutate_tree(node[i], draw), *node[i + 1 :]]
    return _hostile(draw, node)


@FUZZ
@given(ANY_REGISTERED, st.data())
def test_structurally_mutated_messages(value: Any, data: st.DataObject) -> None:
    raw = cbor2.loads(encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        raw = _mutate_tree(raw, data.draw)
    sharing = data.draw(st.booleans())  # shared references (tags 28/29) for repeated containers
    try:
        mutated = cbor2.dumps(raw, value_sharing=sharing)
    except Exception:
        assume(False)
    check_decode(mutated)


@settings(max_examples=12, deadline=None)
@given(ANY_REGISTERED)
def test_every_truncation_and_every_bit_flip(value: Any) -> None:
    encoded = encode(value)
    for i in range(min(len(encoded), 120)):
        with pytest.raises(DecodeError):
            decode(encoded[:i])
        for bit in range(8):
            check_decode(encoded[:i] + bytes([encoded[i] ^ (1 << bit)]) + encoded[i + 1 :])


# -- what decode() refuses, case by case ---------------------------------------------------------------------------


def _entry(*fields: Any) -> bytes:
    """An Entry on the wire with the given raw fields (term, index, type, data)."""
    from embedzk.consensus.types import Entry

    wire = core._BY_CLASS[Entry]
    return cbor2.dumps([wire.tag, wire.version, *fields])


def _refused(data: bytes, reason: str = "") -> str:
    with pytest.raises(DecodeError, match=reason or None) as info:
        decode(data)
    return str(info.value)


GOOD_ENTRY = (7, 8, 0, b"data")


def test_the_reference_entry_is_valid() -> None:
    from embedzk.consensus.types import Entry, EntryType

    assert decode(_entry(*GOOD_ENTRY)) == Entry(7, 8, EntryType.NORMAL, b"data")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ((True, 8, 0, b"d"), "'term' must be int, got bool"),
        ((7, False, 0, b"d"), "'index' must be int, got bool"),
        ((7.0, 8, 0, b"d"), "'term' must be int, got float"),
        (("7", 8, 0, b"d"), "'term' must be int"),
        ((None, 8, 0, b"d"), "'term' must be int"),
        ((7, 8, 0, "d"), "'data' must be bytes, got str"),
        ((7, 8, 0, [100]), "'data' must be bytes"),
        ((7, 8, True, b"d"), "'type'"),
        ((7, 8, 0.0, b"d"), "'type'"),
        ((7, 8, 99, b"d"), "'type'"),
        ((7, 8, "NORMAL", b"d"), "'type'"),
        ((7, 8, [0], b"d"), "'type'"),
        ((7, 8, 0), "has 4 fields, got 3"),
        ((7, 8, 0, b"d", b"extra"), "has 4 fields, got 5"),
    ],
)
def test_field_type_confusions_are_refused(fields: tuple[Any, ...], reason: str) -> None:
    _refused(_entry(*fields), reason)


def test_bool_and_int_are_told_apart_in_bool_fields() -> None:
    from embedzk.tree.txn import CreateOp

    wire = core._BY_CLASS[CreateOp]
    good = [wire.tag, wire.version, "/a", b"", False, False, False, None, False]
    assert decode(cbor2.dumps(good)) == CreateOp("/a")
    bad = list(good)
    bad[4] = 0
    _refused(cbor2.dumps(bad), "'ephemeral' must be bool, got int")
    bad = list(good)
    bad[7] = True  # ttl: int | None
    _refused(cbor2.dumps(bad), "ttl")


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        ([999, 1], "unknown message tag 999"),
        ([0, 1], "unknown message tag 0"),
        ([True, 1], "tag and version must be integers"),
        ([32.0, 1], "tag and version must be integers"),
        ([32, 2], "version 2 is not supported"),
        ([32, True], "tag and version must be integers"),
        (["Entry", 1], "tag and version must be integers"),
    ],
)
def test_wrong_tags_and_versions_are_refused(head: list[Any], reason: str) -> None:
    _refused(cbor2.dumps([*head, *GOOD_ENTRY]), reason)


@pytest.mark.parametrize("raw", [7, "x", b"x", None, [], [32], {"tag": 32}, 1.5, True])
def test_a_message_must_be_an_array_of_tag_version_fields(raw: Any) -> None:
    _refused(cbor2.dumps(raw), "a message is an array")


def test_a_field_holding_a_registered_type_accepts_only_the_allowed_ones() -> None:
    from embedzk.consensus.types import Entry
    from embedzk.tree.txn import CheckOp, CreateOp, MultiOp, Txn

    inner_multi = core._to_wire(MultiOp((CheckOp("/a"),)))
    multi_in_multi = core._to_wire(MultiOp((CreateOp("/a"),)))
    multi_in_multi[2] = [inner_multi]  # a multi may not hold a multi (SubOp leaves MultiOp out)
    _refused(cbor2.dumps(multi_in_multi), "MultiOp is not allowed here")
    txn = core._to_wire(Txn(1, 2, CreateOp("/a")))
    txn[4] = core._to_wire(Entry(1, 2))
    _refused(cbor2.dumps(txn), "Entry is not allowed here")
    txn[4] = [1, 1]  # a CreateOp missing every field
    _refused(cbor2.dumps(txn), "CreateOp has 7 fields, got 0")


def test_a_post_init_check_becomes_a_decode_error() -> None:
    from embedzk.consensus.types import ConfState

    wire = core._BY_CLASS[ConfState]
    _refused(cbor2.dumps([wire.tag, wire.version, ["a"], ["a"]]), "cannot be both voter and learner")


def test_error_messages_stay_short_whatever_the_value() -> None:
    message_text = _refused(_entry(7, 8, "x" * 1_000_000, b""), "is not a EntryType")
    assert len(message_text) < 300


# Tags cbor2 decodes itself (datetimes, bignums, decimals, bigfloats, shared and string references, rationals,
# regular expressions, MIME, UUIDs, sets, IP addresses, complex numbers, self-description) and tags it does not know.
EVERY_INTERESTING_TAG = sorted({*range(0, 300), 1004, 1040, 43000, 55799, 2**16, 2**32, 2**64 - 1})


def test_every_cbor_tag_is_refused_at_the_top_and_inside_a_field() -> None:
    for tag in EVERY_INTERESTING_TAG:
        for payload in (0, "2013-03-21T20:04:00Z", b"\x01" * 16, [1, 2]):
            _refused(cbor2.dumps(cbor2.CBORTag(tag, payload)), f"CBOR tag {tag} is not allowed")
            _refused(_entry(cbor2.CBORTag(tag, payload), 8, 0, b""), f"CBOR tag {tag} is not allowed")


def test_bignums_are_refused_even_where_an_int_is_expected() -> None:
    # Ints beyond 64 bits only exist as tag 2/3 bignums: refusing tags keeps every int within 64 bits.
    assert decode(_entry(2**64 - 1, 8, 0, b"")).term == 2**64 - 1
    assert decode(_entry(-(2**64), 8, 0, b"")).term == -(2**64)
    _refused(_entry(2**64, 8, 0, b""), "CBOR tag 2")
    _refused(_entry(-(2**64) - 1, 8, 0, b""), "CBOR tag 3")


def test_shared_references_are_refused() -> None:
    from embedzk.consensus.types import ConfState

    wire = core._BY_CLASS[ConfState]
    voters = ["a", "b"]
    # The same list twice, encoded once and referenced once: tags 28 (shareable) and 29 (reference).
    data = cbor2.dumps([wire.tag, wire.version, voters, voters], value_sharing=True)
    assert b"\xd8\x1c" in data
    _refused(data, "CBOR tag 28")
    _refused(bytes.fromhex("d81c81d81d00"), "CBOR tag 2[89]")  # a list that contains itself


def test_odd_cbor_corners_are_refused() -> None:
    _refused(_entry(7, 8, 0, cbor2.undefined), "'data' must be bytes")
    _refused(_entry(7, 8, 0, cbor2.CBORSimpleValue(99)), "'data' must be bytes")
    _refused(_entry(7, 8, 0, float("nan")), "'data' must be bytes")
    indefinite = cbor2.dumps([32, 1, *GOOD_ENTRY], indefinite_containers=True)
    assert indefinite[0] == 0x9F
    _refused(indefinite, "not valid CBOR")
    # [32, 1, 7, 0, 0, x] with x: indefinite-length bytes, then invalid UTF-8 in a text string
    _refused(bytes.fromhex("86 1820 01 07 00 00 5f 41 01 ff"), "not valid CBOR")
    _refused(bytes.fromhex("86 1820 01 07 00 00 62 61 ff"), "not valid CBOR")
    _refused(cbor2.dumps([32, 1, 7, 8, 0, {1: 2}]), "not valid CBOR")  # a map key that is not a string
    _refused(cbor2.dumps([32, 1, 7, 8, 0, {(1,): 2}]), "not valid CBOR")
    _refused(bytes.fromhex("86 1820 01 07 00 00 a2 6161 01 6161 02"), "not valid CBOR")  # a duplicate map key
    _refused(b"\x1c", "not valid CBOR")  # reserved additional information
    _refused(b"\xff", "not valid CBOR")  # a lone break


def test_bytes_after_the_message_are_refused() -> None:
    from embedzk.consensus.types import Entry

    good = _entry(*GOOD_ENTRY)
    # Two messages in one frame is the framing bug this catches; the rest are the shapes it could take.
    for trailing in (b"\x00", good, b"\x50", cbor2.dumps(os.urandom(16)), cbor2.dumps(b"")):
        _refused(good + trailing, "bytes after the end of the message")
    _refused(good + b"\xff")  # a stray break code: refused as such
    big = encode(Entry(1, 2, data=b"x" * 100_000))
    _refused(big + b"\x00", "bytes after the end of the message")


def test_a_frame_that_ends_early_is_refused_at_every_cut() -> None:
    from embedzk.tree.txn import CreateOp, MultiOp, Txn

    encoded = encode(Txn(1, 2, MultiOp((CreateOp("/a", b"x" * 30, ttl=5), CreateOp("/b")))))
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            decode(encoded[:cut])


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("9bffffffffffffffff"),  # an array of 2**64 - 1 items
        bytes.fromhex("9a7fffffff"),  # an array of 2**31 - 1 items
        bytes.fromhex("bbffffffffffffffff"),  # a map of 2**64 - 1 pairs
        bytes.fromhex("5bffffffffffffffff"),  # a byte string of 2**64 - 1 bytes
        bytes.fromhex("5b000000007fffffff") + b"x" * 100,
        bytes.fromhex("7bffffffffffffffff"),  # a text string of 2**64 - 1 bytes
        bytes.fromhex("8518200107005b00000001ffffffff") + b"x" * 10,  # a claim inside a valid-looking message
        bytes.fromhex("861820010700") + bytes.fromhex("9affffffff") + b"\x00" * 1000,
        b"\x81" * 1_000_000 + b"\x00",  # a million nested arrays
        b"\xa1\x61\x61" * 100_000 + b"\x00",  # a hundred thousand nested maps
        b"\xd8\x1c" * 100_000 + b"\x00",  # a hundred thousand nested tags
        b"\x9f" * 100_000,  # nested indefinite arrays
    ],
    ids=lambda d: d[:12].hex(),
)
def test_hostile_lengths_and_nesting_fail_fast_and_small(data: bytes) -> None:
    before = _peak_rss_bytes()
    started = time.perf_counter()
    _refused(data)
    assert time.perf_counter() - started < 1.0
    assert _peak_rss_bytes() - before < 64 * 1024 * 1024


def test_nesting_is_bounded_by_max_depth() -> None:
    def nested(depth: int) -> bytes:
        return b"\x83\x18\x20\x01" + b"\x81" * (depth - 1) + b"\x00"  # [32, 1, [[...[0]...]]]: depth levels

    _refused(nested(core.MAX_DEPTH), "fields")  # deep enough to pass the CBOR layer, refused by the converters
    _refused(nested(core.MAX_DEPTH + 1), "nesting depth")


# -- the frame checks ---------------------------------------------------------------------------------------------


def test_the_size_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedzk.consensus.types import Entry

    encoded = encode(Entry(1, 2, data=b"x" * 100))
    assert decode(encoded, max_size=len(encoded)) == Entry(1, 2, data=b"x" * 100)

    def must_not_run(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("decoded a frame over the size limit")

    monkeypatch.setattr(core.cbor2, "loads", must_not_run)
    with pytest.raises(DecodeError, match=f"frame of {len(encoded)} bytes exceeds the limit of {len(encoded) - 1}"):
        decode(encoded, max_size=len(encoded) - 1)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(memoryview(b"\x00" * 10), max_size=9)
    assert DEFAULT_MAX_SIZE == 64 * 1024 * 1024


@pytest.mark.parametrize("data", [None, "text", 7, [1, 2], bytearray(), b""])
def test_what_is_not_a_frame_is_refused(data: Any) -> None:
    with pytest.raises(DecodeError, match="expected bytes|empty frame"):
        decode(data)


def test_decode_plain_applies_the_same_rules() -> None:
    assert core.decode_plain(cbor2.dumps([1, "a", b"b", None, {"k": [True]}])) == [1, "a", b"b", None, {"k": [True]}]
    assert core.decode_plain(b"\x81" * core.MAX_DEPTH + b"\x00") is not None
    for bad in (
        cbor2.dumps(cbor2.CBORTag(1, 0)),
        cbor2.dumps([1]) + b"\x00",
        b"\x81" * (core.MAX_DEPTH + 1) + b"\x00",
        cbor2.dumps({1: 2}),
        b"",
    ):
        with pytest.raises(DecodeError):
            core.decode_plain(bad)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        core.decode_plain(b"\x00\x00", max_size=1)


# -- the registry, and field kinds no current wire type uses ------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Leaf:
    name: str
    weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class Kitchen:
    """Every kind of field the codec supports, in one scratch type."""

    colour: Colour
    leaf: Leaf | None
    leaves: list[Leaf]
    pair: tuple[int, str]
    tags: frozenset[str]
    scores: dict[str, int]
    blobs: dict[bytes, bytes]
    maybe: int | str | None
    anything: Any
    ratio: float


@pytest.fixture
def scratch_types() -> Iterator[None]:
    """Register Leaf and Kitchen for one test, and leave the registry as it was."""
    by_tag, by_class = dict(core._BY_TAG), dict(core._BY_CLASS)
    message(65001)(Leaf)
    message(65002, version=3)(Kitchen)
    yield
    core._BY_TAG.clear()
    core._BY_TAG.update(by_tag)
    core._BY_CLASS.clear()
    core._BY_CLASS.update(by_class)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_field_kind_round_trips(scratch_types: None, data: st.DataObject) -> None:
    value = data.draw(strategy_for(Kitchen))
    decoded = decode(encode(value), expect=Kitchen)
    assert_identical(decoded, value)


def test_field_kinds_check_their_contents(scratch_types: None) -> None:
    good = Kitchen(Colour.RED, Leaf("a", 1.5), [Leaf("b")], (1, "x"), frozenset({"t"}), {"s": 1}, {b"k": b"v"},
                   None, {"free": [1, "form"]}, 2.0)  # fmt: skip
    raw = core._to_wire(good)
    assert decode(cbor2.dumps(raw)) == good
    as_int_ratio = list(raw)
    as_int_ratio[11] = 2  # an int where a float is expected is widened, as JSON and CBOR readers do
    assert_identical(decode(cbor2.dumps(as_int_ratio)).ratio, 2.0)
    cases = [
        (2, 0, "'colour'"),
        (3, [65001, 1, 5, 0.0], "'name' must be str"),
        (4, [[65002, 3]], "Kitchen is not allowed here"),
        (5, [1, "x", 3], "'pair' must be an array of 2"),
        (5, ["x", 1], "'pair' must be int"),
        (6, [b"t"], "'tags' must be str"),
        (7, {"s": "1"}, "'scores' must be int"),
        (8, {b"k": "v"}, "'blobs' must be bytes"),
        (9, 1.5, "'maybe' matches none of"),
        (9, True, "'maybe' matches none of"),
        (10, [cbor2.undefined], "'anything' holds a UndefinedType"),
        (11, "2.0", "'ratio' must be float"),
        (11, True, "'ratio' must be float"),
    ]
    for index, raw_field, reason in cases:
        bad = list(raw)
        bad[index] = raw_field
        _refused(cbor2.dumps(bad), reason)


def test_registration_rules(scratch_types: None) -> None:
    @dataclasses.dataclass
    class Other:
        x: int

    with pytest.raises(ValueError, match="taken by Leaf"):
        message(65001)(Other)
    with pytest.raises(ValueError, match="out of range"):
        message(0)(Other)
    with pytest.raises(ValueError, match="out of range"):
        message(2**16)(Other)
    with pytest.raises(TypeError, match="must be a dataclass"):
        message(65003)(int)

    @dataclasses.dataclass
    class Derived:
        x: int
        y: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="not __init__ parameters"):
        message(65004)(Derived)

    @dataclasses.dataclass
    class IntKeys:
        table: dict[int, int]

    message(65005)(IntKeys)
    with pytest.raises(TypeError, match="map keys must be str or bytes"):
        encode(IntKeys({1: 2}))
    assert 65001 in registered_types() and 65002 in registered_types()


def test_scratch_types_do_not_outlive_their_test() -> None:
    assert not {65001, 65002, 65005} & set(registered_types())


# -- speed --------------------------------------------------------------------------------------------------------


def typical_messages() -> dict[str, Any]:
    """The messages the log and the network carry most: a create of 100 bytes, and the entry that holds it."""
    from embedzk.consensus.types import Entry
    from embedzk.tree.txn import CreateOp, Txn

    txn = Txn(session_id=0x1234_5678_9ABC, time_ms=1_700_000_000_000, op=CreateOp("/app/config/item-42", b"x" * 100))
    return {"Txn(CreateOp, 100 B)": txn, "Entry(Txn)": Entry(term=7, index=123_456, data=encode(txn))}


@pytest.mark.bench
def test_encode_decode_speed() -> None:
    for name, value in typical_messages().items():
        encoded = encode(value)
        n = 20_000
        enc = min(timeit.repeat(lambda: encode(value), number=n, repeat=5)) / n * 1e6
        dec = min(timeit.repeat(lambda: decode(encoded), number=n, repeat=5)) / n * 1e6
        print(f"\n{name}: {len(encoded)} bytes, encode {enc:.2f} us, decode {dec:.2f} us")
        # Generous bounds: they catch an accidental slow path (a scan, a re-resolve per call), not noise.
        assert enc < 50 and dec < 50


# -- bundles: several messages to one recipient in one frame ------------------------------------------------------

@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            strategy_for(SessionPing) | strategy_for(Forward) | strategy_for(Message),
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=2000),
)
@settings(max_examples=150, deadline=None)
def test_pack_keeps_each_recipients_messages_in_order_within_the_limit(
    messages: list[tuple[str, Any]], limit: int
) -> None:
    frames = pack(messages, limit=limit)
    received: dict[str, list[Any]] = {}
    for to, frame in frames:
        value = decode(frame)
        if isinstance(value, Bundle):
            assert len(value.messages) > 1  # a lone message goes as it is, whatever its size
            assert len(frame) <= limit + 16  # the messages' bytes within the limit, plus the bundle's own head
            received.setdefault(to, []).extend(value.messages)
        else:
            received.setdefault(to, []).append(value)
    expected: dict[str, list[Any]] = {}
    for to, msg in messages:
        expected.setdefault(to, []).append(msg)
    assert received == expected
    assert len(frames) <= len(messages)


def test_a_bundle_encoded_by_splicing_is_the_bundle_encoded_whole() -> None:
    inner = (SessionPing((1, 2)), Forward(3, 4, 5, 6, SetDataOp("/a", b"x", -1)))
    assert encode_spliced(Bundle, [encode(m) for m in inner]) == encode(Bundle(inner))
    many = tuple(SessionPing((i,)) for i in range(300))  # past the one-byte array length
    assert decode(encode_spliced(Bundle, [encode(m) for m in many])) == Bundle(many)


def test_a_bundle_cannot_hold_a_bundle() -> None:
    nested = encode_spliced(Bundle, [encode(Bundle((SessionPing((1,)), SessionPing((2,)))))])
    with pytest.raises(DecodeError, match="not allowed here"):
        decode(nested)
