"""The registry of wire types, and encode/decode over cbor2.

A registered value is encoded as a CBOR array ``[tag, version, field1, field2, ...]`` in the dataclass's field
order; a nested registered value is encoded the same way, so that a field may hold one of several registered
types. Enums travel as their values. Decoding rebuilds the dataclass through a converter generated once per type
from its type hints, which checks every field's type on the way.

What the decoder accepts is deliberately narrower than CBOR: we only ever emit definite-length arrays, maps with
text or byte-string keys, and the plain major types, so anything else (semantic tags, indefinite lengths, duplicate
map keys, trailing bytes after the message, nesting deeper than :data:`MAX_DEPTH`) is refused before any converter
runs. Most of cbor2's decoding surface (shared references that build cycles or exponential DAGs, string
references, bignums and bigfloats, datetimes, regular expressions, MIME messages) is thereby out of reach of
untrusted bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import itertools
import operator
import os
import reprlib
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import cbor2

from embedzk.errors import DecodeError

#: The largest frame decode() accepts unless told otherwise: bounds what untrusted bytes can make us allocate.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

#: The deepest nesting of CBOR containers decode() accepts. Our messages nest a few levels (an append message
#: holds entries, a transaction holds a multi holding operations); the bound keeps the converters' recursion, which
#: follows the nesting, far from Python's recursion limit.
MAX_DEPTH = 100

T = TypeVar("T")

_Converter = Callable[[Any], Any]
_Encoder = Callable[[Any], Any]

# A signature set is the product of each field's possible raw types; past this size checking field by field is as
# fast, so a type with more combinations simply has no fast path.
_MAX_SIGNATURES = 64

# Error messages quote offending values; an attacker's value may be megabytes long, the message must not be.
_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = 6
_repr.maxdict = 6
_repr.maxlevel = 2


def _short(value: Any) -> str:
    try:
        return _repr.repr(value)
    except Exception:  # a repr that fails must not turn a DecodeError into something else
        return f"<{type(value).__name__}>"


@dataclasses.dataclass(slots=True)
class _WireType:
    cls: type
    tag: int
    version: int
    field_names: tuple[str, ...]
    resolved: bool = False
    #: One converter per field: checks the raw CBOR value and returns the field's value (DecodeError otherwise).
    converters: tuple[_Converter, ...] = ()
    #: The raw-type tuples that let decoding skip the per-field checks of plain fields; None: no fast path.
    signatures: frozenset[tuple[type, ...]] | None = None
    #: (index, converter) for the fields a matching signature has not fully checked.
    post_converters: tuple[tuple[int, _Converter], ...] = ()
    #: Builds ``[tag, version, fields...]`` from a value.
    encode_fields: Callable[[Any], list[Any]] | None = None


_BY_TAG: dict[int, _WireType] = {}
_BY_CLASS: dict[type, _WireType] = {}


def message(tag: int, version: int = 1) -> Callable[[type[T]], type[T]]:
    """Register a dataclass as a wire type with ``tag`` and format ``version``.

    Raises ValueError if the tag is taken by another class: tags are the wire format and never move.
    """

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} must be a dataclass to be a wire type")
        if not 0 < tag < 2**16:
            raise ValueError(f"wire tag {tag} of {cls.__name__} is out of range")
        known = _BY_TAG.get(tag)
        if known is not None and known.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"wire tag {tag} is taken by {known.cls.__name__}, cannot give it to {cls.__name__}")
        fields = dataclasses.fields(cls)
        not_in_init = [f.name for f in fields if not f.init]
        if not_in_init:
            # Decoding passes every field to __init__, in order.
            raise TypeError(f"{cls.__name__}: fields {not_in_init} are not __init__ parameters")
        wire = _WireType(cls=cls, tag=tag, version=version, field_names=tuple(f.name for f in fields))
        _BY_TAG[tag] = wire
        _BY_CLASS[cls] = wire
        return cls

    return register


def registered_types() -> dict[int, type]:
    """Every registered wire type, by tag."""
    return {tag: wire.cls for tag, wire in _BY_TAG.items()}


def encode(value: Any) -> bytes:
    """Encode a registered value (or a plain CBOR-able value) to bytes."""
    return cbor2.dumps(_to_wire(value))


def encode_spliced(cls: type, encoded_items: list[bytes]) -> bytes:
    """Encode a ``cls`` whose one field is a sequence of registered values, from those values already encoded.

    The same bytes as ``encode(cls(tuple(decode(b) for b in encoded_items)))``, without decoding or re-encoding
    the items: CBOR items concatenate, so the array's head is written and the items follow as they are. The items
    must each be one whole CBOR item (what :func:`encode` returns).
    """
    wire = _BY_CLASS.get(cls)
    if wire is None or len(wire.field_names) != 1:
        raise TypeError(f"{cls.__name__} is not a registered type with one field")
    head = _array_head(3) + cbor2.dumps(wire.tag) + cbor2.dumps(wire.version) + _array_head(len(encoded_items))
    return b"".join((head, *encoded_items))


def _array_head(length: int) -> bytes:
    """The head of a definite-length CBOR array (major type 4) of ``length`` items (RFC 8949, 3.1)."""
    if length < 24:
        return bytes((0x80 | length,))
    if length < 1 << 8:
        return bytes((0x98, length))
    if length < 1 << 16:
        return b"\x99" + length.to_bytes(2, "big")
    if length < 1 << 32:
        return b"\x9a" + length.to_bytes(4, "big")
    return b"\x9b" + length.to_bytes(8, "big")


def decode(
    data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE, expect: type[T] | None = None
) -> Any:
    """Decode bytes made by :func:`encode`.

    ``expect`` names the type the caller wants; anything else is a DecodeError. Whatever the bytes, the only
    exception raised is DecodeError, whose message gives the reason. The size limit is checked before a byte is
    decoded.
    """
    raw = _load(_checked_frame(data, max_size))
    try:
        value = _from_wire_registered(raw, None)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("message nested too deeply") from None
    except Exception as exc:
        raise DecodeError(f"malformed message: {type(exc).__name__}: {_short(exc)}") from None
    if expect is not None and not isinstance(value, expect):
        raise DecodeError(f"expected a {expect.__name__}, got {type(value).__name__}")
    return value


def decode_plain(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE) -> Any:
    """Decode CBOR that is not a registered message (a batch of records inside a message's ``bytes`` field).

    The same narrowed CBOR as :func:`decode`: no tags, no indefinite lengths, no duplicate or non-string map keys,
    nothing after the first item, at most :data:`MAX_DEPTH` levels. The result is built from int, str, bytes,
    bool, None, float, list and dict, except that CBOR simple values come back as cbor2's ``undefined`` and
    ``CBORSimpleValue``: the caller checks the shape it expects. Raises only DecodeError.
    """
    return _load(_checked_frame(data, max_size))


# ---------------------------------------------------------------------------------------------------------------
# CBOR, narrowed


def _checked_frame(data: Any, max_size: int) -> bytes | bytearray | memoryview:
    """The frame, once it is known to be bytes of an acceptable size: checked before a byte is decoded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > max_size:
        raise DecodeError(f"frame of {size} bytes exceeds the limit of {max_size}")
    if size == 0:
        raise DecodeError("empty frame")
    return data


class _TagRefused(Exception):
    def __init__(self, tag: int) -> None:
        super().__init__(tag)
        self.tag = tag


def _refuse_tag(tag: int) -> Callable[..., NoReturn]:
    def refuse(*_args: Any) -> NoReturn:
        raise _TagRefused(tag)

    return refuse


class _RefuseEveryTag(dict):  # type: ignore[type-arg]
    """A semantic-decoder table that has a refusal for every tag number.

    cbor2 decodes some tags itself (0-5, 25, 28-30, 35-37, 256, 258, 260-261, 55799 ...) and looks each tag up
    in this table before its own. An empty dict whose ``__missing__`` answers every lookup keeps us safe from tags
    a later cbor2 learns, and a dict (not any Mapping) is what cbor2 takes without a costly check per call;
    ``tag_hook`` backs this up for the tags cbor2 does not know.
    """

    def __missing__(self, tag: int) -> Callable[..., NoReturn]:
        return _refuse_tag(tag)


def _tag_hook(tag: cbor2.CBORTag, *_args: Any) -> NoReturn:
    raise _TagRefused(tag.tag)


_DECODER_OPTIONS: dict[str, Any] = {
    "tag_hook": _tag_hook,
    "semantic_decoders": _RefuseEveryTag(),
    "max_depth": MAX_DEPTH + 1,  # + 1: the array _load wraps the frame in
    "allow_indefinite": False,
    "allow_duplicate_keys": False,
    # Map keys (and set elements) other than text and byte strings are refused: no hash-flooding through
    # crafted keys, and a map field must have str or bytes keys anyway (see _converter_for).
    "strict_hashable_types": True,
}

_missing = set(_DECODER_OPTIONS) - set(inspect.signature(cbor2.loads).parameters)
if _missing:  # pragma: no cover - depends on the installed cbor2
    raise ImportError(
        f"embedzk needs cbor2>=6.1 to decode untrusted bytes safely; this cbor2 lacks {sorted(_missing)}"
    )


# cbor2.loads stops after the first item and says nothing of what follows it, and the file-based decoder that
# could tell costs a microsecond more per call. So _load decodes ``[frame, SENTINEL]``: the frame was exactly one
# item if and only if the second element is this process's random sentinel, which no sender can know to forge.
_SENTINEL = os.urandom(16)
_SENTINEL_CBOR = cbor2.dumps(_SENTINEL)
_PAIR = b"\x82"  # a definite array of two items


def _load(data: bytes | bytearray | memoryview) -> Any:
    """CBOR bytes to plain values, refusing anything our encoder never produces."""
    try:
        pair = cbor2.loads(_PAIR + data + _SENTINEL_CBOR, **_DECODER_OPTIONS)
    except cbor2.CBORDecodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, _TagRefused):
            raise DecodeError(f"CBOR tag {cause.tag} is not allowed: no embedzk message carries tags") from None
        raise DecodeError(f"not valid CBOR: {_short(str(exc))}") from None
    except _TagRefused as exc:  # in case a cbor2 version lets the hook's exception through unwrapped
        raise DecodeError(f"CBOR tag {exc.tag} is not allowed: no embedzk message carries tags") from None
    except RecursionError:
        raise DecodeError("CBOR nested too deeply") from None
    except MemoryError:
        raise DecodeError("CBOR asks for more memory than allowed") from None
    except Exception as exc:  # cbor2 raises many types on garbage; every one of them means the same to us
        raise DecodeError(f"not valid CBOR: {type(exc).__name__}: {_short(str(exc))}") from None
    if pair[1] != _SENTINEL:
        # A frame is one message: more after it means the framing or the storage is broken.
        raise DecodeError("bytes after the end of the message")
    return pair[0]


# ---------------------------------------------------------------------------------------------------------------
# encoding


def _to_wire(value: Any) -> Any:
    wire = _BY_CLASS.get(type(value))
    if wire is not None:
        if not wire.resolved:
            _resolve(wire)
        return wire.encode_fields(value)  # type: ignore[misc]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        return [_to_wire(v) for v in sorted(value)]
    return value


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _encoder_for(hint: Any) -> _Encoder | None:
    """How a field's value becomes CBOR; None when it goes as it is."""
    if _plain_types(hint) is not None:
        return None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_value
    return _to_wire


def _fields_encoder(wire: _WireType, encoders: tuple[_Encoder | None, ...]) -> Callable[[Any], list[Any]]:
    head = [wire.tag, wire.version]
    names = wire.field_names
    if not names:
        return lambda value: list(head)
    if len(names) == 1:
        name = names[0]
        getter: Callable[[Any], tuple[Any, ...]] = lambda value: (getattr(value, name),)  # noqa: E731
    else:
        getter = operator.attrgetter(*names)
    # Most fields go as they are: fetch them all at once and convert only those that need it.
    post = tuple((i + 2, enc) for i, enc in enumerate(encoders) if enc is not None)

    def encode_fields(value: Any) -> list[Any]:
        out = [*head, *getter(value)]
        for i, enc in post:
            out[i] = enc(out[i])
        return out

    return encode_fields


# ---------------------------------------------------------------------------------------------------------------
# decoding


def _from_wire_registered(raw: Any, allowed: tuple[type, ...] | None) -> Any:
    if type(raw) is not list or len(raw) < 2:
        raise DecodeError("a message is an array [tag, version, fields...]")
    tag, version = raw[0], raw[1]
    if type(tag) is not int or type(version) is not int:
        raise DecodeError("tag and version must be integers")
    wire = _BY_TAG.get(tag)
    if wire is None:
        raise DecodeError(f"unknown message tag {tag}")
    if allowed is not None and wire.cls not in allowed:
        raise DecodeError(f"a {wire.cls.__name__} is not allowed here")
    if version != wire.version:
        raise DecodeError(f"{wire.cls.__name__} version {version} is not supported (this build speaks {wire.version})")
    if not wire.resolved:
        _resolve(wire)
    fields = raw[2:]
    if len(fields) != len(wire.converters):
        raise DecodeError(f"{wire.cls.__name__} has {len(wire.converters)} fields, got {len(fields)}")
    try:
        signatures = wire.signatures
        if signatures is not None and tuple(map(type, fields)) in signatures:
            # Every plain field has exactly an allowed type already; only the others need converting.
            for i, conv in wire.post_converters:
                fields[i] = conv(fields[i])
            args = fields
        else:
            args = [conv(f) for conv, f in zip(wire.converters, fields)]
    except DecodeError as exc:
        raise DecodeError(f"{wire.cls.__name__}: {exc}") from None
    try:
        return wire.cls(*args)
    except DecodeError:
        raise
    except Exception as exc:  # a __post_init__ that validates says why
        raise DecodeError(f"{wire.cls.__name__}: {_short(str(exc))}") from None


def _resolve(wire: _WireType) -> None:
    module = sys.modules.get(wire.cls.__module__)
    hints = typing.get_type_hints(wire.cls, vars(module) if module else None)
    field_hints = [hints[name] for name in wire.field_names]
    converters = tuple(_converter_for(hint, name) for hint, name in zip(field_hints, wire.field_names))
    wire.encode_fields = _fields_encoder(wire, tuple(_encoder_for(hint) for hint in field_hints))
    raw_types = [_raw_types(hint) for hint in field_hints]
    signatures = None
    if all(t is not None for t in raw_types):
        combinations = 1
        for t in raw_types:
            combinations *= len(t)  # type: ignore[arg-type]
        if combinations <= _MAX_SIGNATURES:
            signatures = frozenset(itertools.product(*raw_types))  # type: ignore[arg-type]
    wire.post_converters = tuple(
        (i, conv) for i, (hint, conv) in enumerate(zip(field_hints, converters)) if _plain_types(hint) is None
    )
    wire.signatures = signatures
    wire.converters = converters
    wire.resolved = True  # last: another thread seeing True must find everything above in place


_PLAIN = (int, str, bytes, bool, type(None))


def _plain_types(hint: Any) -> tuple[type, ...] | None:
    """The exact raw types of a field that decodes to its raw value unchanged (``int``, ``str | None`` ...)."""
    if hint in _PLAIN:
        return (hint,)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if all(a in _PLAIN for a in args):
            return tuple(args)
    return None


def _raw_types(hint: Any) -> tuple[type, ...] | None:
    """The raw types a field's CBOR value may have, when they are few and known; None otherwise."""
    plain = _plain_types(hint)
    if plain is not None:
        return plain
    origin = typing.get_origin(hint)
    if hint is float:
        return (float, int)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return tuple(dict.fromkeys(type(m.value) for m in hint if type(m.value) in (int, str)))
    if isinstance(hint, type) and hint in _BY_CLASS or origin in (tuple, list, frozenset, set):
        return (list,)
    if origin is dict:
        return (dict,)
    if origin in (typing.Union, types.UnionType):
        # The union's converter checks which member it is; the signature only needs every raw type it may see.
        members = [_raw_types(a) for a in typing.get_args(hint)]
        if all(m is not None for m in members):
            return tuple(dict.fromkeys(t for m in members for t in m))  # type: ignore[union-attr]
    return None


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _scalar(expected: type, name: str) -> _Converter:
    def convert(value: Any) -> Any:
        if type(value) is not expected:
            raise DecodeError(f"field {name!r} must be {expected.__name__}, got {type(value).__name__}")
        return value

    return convert


def _plain_data(name: str) -> _Converter:
    """For a field typed Any: plain CBOR data only, so no cbor2 oddity (undefined, simple values) gets through."""
    leaves = (int, str, bytes, bool, float, type(None))

    def convert(value: Any) -> Any:
        pending = [value]
        while pending:  # iterative: the nesting is bounded by MAX_DEPTH, but a stack costs nothing here
            item = pending.pop()
            kind = type(item)
            if kind is list:
                pending.extend(item)
            elif kind is dict:
                pending.extend(item.values())
            elif kind not in leaves:
                raise DecodeError(f"field {name!r} holds a {kind.__name__}, which is not plain data")
        return value

    return convert


def _converter_for(hint: Any, name: str) -> _Converter:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _plain_data(name)
    if hint is type(None):
        return _scalar(type(None), name)
    if hint is float:

        def convert_float(value: Any) -> float:
            if type(value) is float:
                return value
            if type(value) is int:
                return float(value)
            raise DecodeError(f"field {name!r} must be float, got {type(value).__name__}")

        return convert_float
    if hint in (int, str, bool, bytes):
        return _scalar(hint, name)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_cls = hint
        # A table instead of enum_cls(value): several times faster, and keyed by (type, value) so that True
        # cannot pass for 1, nor 1.0 for 1.
        members = {(type(m.value), m.value): m for m in enum_cls}

        def convert_enum(value: Any) -> Any:
            try:
                return members[(type(value), value)]
            except (KeyError, TypeError):  # TypeError: an unhashable value
                raise DecodeError(f"field {name!r}: {_short(value)} is not a {enum_cls.__name__}") from None

        return convert_enum
    if isinstance(hint, type) and hint in _BY_CLASS:
        allowed = (hint,)
        return lambda value: _from_wire_registered(value, allowed)
    if origin in (typing.Union, types.UnionType):
        if all(a in _BY_CLASS for a in args):
            allowed_union = tuple(args)
            return lambda value: _from_wire_registered(value, allowed_union)
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1 and len(args) == 2:
            inner = _converter_for(non_none[0], name)
            return lambda value: None if value is None else inner(value)
        inners = [(a, _converter_for(a, name)) for a in args]

        def convert_union(value: Any) -> Any:
            for _, conv in inners:
                try:
                    return conv(value)
                except DecodeError:
                    continue
            raise DecodeError(f"field {name!r} matches none of {[_type_name(a) for a in args]}")

        return convert_union
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter_for(args[0], name)

            def convert_tuple(value: Any) -> tuple[Any, ...]:
                if type(value) is not list:
                    raise DecodeError(f"field {name!r} must be an array")
                return tuple(map(item, value))

            return convert_tuple
        items = [_converter_for(a, name) for a in args]

        def convert_fixed_tuple(value: Any) -> tuple[Any, ...]:
            if type(value) is not list or len(value) != len(items):
                raise DecodeError(f"field {name!r} must be an array of {len(items)}")
            return tuple(conv(v) for conv, v in zip(items, value))

        return convert_fixed_tuple
    if origin is list:
        item = _converter_for(args[0], name)

        def convert_list(value: Any) -> list[Any]:
            if type(value) is not list:
                raise DecodeError(f"field {name!r} must be an array")
            return list(map(item, value))

        return convert_list
    if origin in (frozenset, set):
        item = _converter_for(args[0], name)

        def convert_set(value: Any) -> frozenset[Any]:
            if type(value) is not list:
                raise DecodeError(f"field {name!r} must be an array")
            return frozenset(map(item, value))

        return convert_set
    if origin is dict:
        if args[0] not in (str, bytes):
            # The decoder refuses other map keys (strict_hashable_types), so such a field could never decode.
            raise TypeError(f"field {name!r}: map keys must be str or bytes, not {_type_name(args[0])}")
        key_conv = _converter_for(args[0], name)
        val_conv = _converter_for(args[1], name)

        def convert_dict(value: Any) -> dict[Any, Any]:
            if type(value) is not dict:
                raise DecodeError(f"field {name!r} must be a map")
            return {key_conv(k): val_conv(v) for k, v in value.items()}

        return convert_dict
    raise TypeError(f"field {name!r}: type {hint!r} cannot be a wire field")
