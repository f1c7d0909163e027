"""The registry of wire types, and encode/decode over cbor2.

A registered value is encoded as a CBOR array ``[tag, version, field1, field2, ...]`` in the dataclass's field
order; a nested registered value is encoded the same way, so that a field may hold one of several registered
types. Enums travel as their values. Decoding rebuilds the dataclass through a converter generated once per type
from its type hints, which checks every field's type on the way.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import cbor2

from embedzk.errors import DecodeError

#: The largest frame decode() accepts unless told otherwise: bounds what untrusted bytes can make us allocate.
DEFAULT_MAX_SIZE = 64 * 1024 * 1024

T = TypeVar("T")

_Converter = Callable[[Any], Any]


@dataclasses.dataclass(slots=True)
class _WireType:
    cls: type
    tag: int
    version: int
    field_names: tuple[str, ...]
    converters: tuple[_Converter, ...] = ()
    encoders: tuple[Callable[[Any], Any], ...] = ()
    resolved: bool = False


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
        names = tuple(f.name for f in dataclasses.fields(cls))
        wire = _WireType(cls=cls, tag=tag, version=version, field_names=names)
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


def decode(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE, expect: type[T] | None = None) -> Any:
    """Decode bytes made by :func:`encode`.

    ``expect`` names the type the caller wants; anything else is a DecodeError. Whatever the bytes, the only
    exception raised is DecodeError, whose message gives the reason.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise DecodeError(f"frame of {len(data)} bytes exceeds the limit of {max_size}")
    if len(data) == 0:
        raise DecodeError("empty frame")
    try:
        raw = cbor2.loads(bytes(data))
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("CBOR nested too deeply") from None
    except MemoryError:
        raise DecodeError("CBOR asks for more memory than allowed") from None
    except Exception as exc:  # cbor2 raises many types on garbage; every one of them means the same to us
        raise DecodeError(f"not valid CBOR: {type(exc).__name__}: {exc}") from None
    try:
        value = _from_wire_any(raw)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("message nested too deeply") from None
    except Exception as exc:
        raise DecodeError(f"malformed message: {type(exc).__name__}: {exc}") from None
    if expect is not None and not isinstance(value, expect):
        raise DecodeError(f"expected a {expect.__name__}, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# encoding


def _to_wire(value: Any) -> Any:
    wire = _BY_CLASS.get(type(value))
    if wire is not None:
        if not wire.resolved:
            _resolve(wire)
        out = [wire.tag, wire.version]
        for name, enc in zip(wire.field_names, wire.encoders):
            out.append(enc(getattr(value, name)))
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        return [_to_wire(v) for v in sorted(value)]
    return value


def _identity(value: Any) -> Any:
    return value


def _encoder_for(hint: Any) -> Callable[[Any], Any]:
    if hint in (int, str, bytes, bool, float, type(None)):
        return _identity
    return _to_wire


# ---------------------------------------------------------------------------------------------------------------
# decoding


def _from_wire_any(raw: Any) -> Any:
    if not isinstance(raw, list) or len(raw) < 2:
        raise DecodeError("a message is an array [tag, version, fields...]")
    return _from_wire_registered(raw, None)


def _from_wire_registered(raw: Any, allowed: tuple[type, ...] | None) -> Any:
    if not isinstance(raw, list) or len(raw) < 2:
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
        args = [conv(f) for conv, f in zip(wire.converters, fields)]
    except DecodeError as exc:
        raise DecodeError(f"{wire.cls.__name__}: {exc}") from None
    try:
        return wire.cls(*args)
    except DecodeError:
        raise
    except Exception as exc:  # a __post_init__ that validates says why
        raise DecodeError(f"{wire.cls.__name__}: {exc}") from None


def _resolve(wire: _WireType) -> None:
    module = sys.modules.get(wire.cls.__module__)
    hints = typing.get_type_hints(wire.cls, vars(module) if module else None)
    wire.converters = tuple(_converter_for(hints[name], name) for name in wire.field_names)
    wire.encoders = tuple(_encoder_for(hints[name]) for name in wire.field_names)
    wire.resolved = True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _scalar(expected: type, name: str) -> _Converter:
    def convert(value: Any) -> Any:
        if type(value) is not expected:
            raise DecodeError(f"field {name!r} must be {expected.__name__}, got {type(value).__name__}")
        return value

    return convert


def _converter_for(hint: Any, name: str) -> _Converter:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _identity
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
    if hint in (int, str, bool):
        return _scalar(hint, name)
    if hint is bytes:

        def convert_bytes(value: Any) -> bytes:
            if type(value) is not bytes:
                raise DecodeError(f"field {name!r} must be bytes, got {type(value).__name__}")
            return value

        return convert_bytes
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_cls = hint

        def convert_enum(value: Any) -> Any:
            if type(value) not in (int, str):
                raise DecodeError(f"field {name!r} must be a {enum_cls.__name__} value")
            try:
                return enum_cls(value)
            except ValueError:
                raise DecodeError(f"field {name!r}: {value!r} is not a {enum_cls.__name__}") from None

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
                return tuple(item(v) for v in value)

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
            return [item(v) for v in value]

        return convert_list
    if origin in (frozenset, set):
        item = _converter_for(args[0], name)

        def convert_set(value: Any) -> frozenset[Any]:
            if type(value) is not list:
                raise DecodeError(f"field {name!r} must be an array")
            return frozenset(item(v) for v in value)

        return convert_set
    if origin is dict:
        key_conv = _converter_for(args[0], name)
        val_conv = _converter_for(args[1], name)

        def convert_dict(value: Any) -> dict[Any, Any]:
            if type(value) is not dict:
                raise DecodeError(f"field {name!r} must be a map")
            return {key_conv(k): val_conv(v) for k, v in value.items()}

        return convert_dict
    raise TypeError(f"field {name!r}: type {hint!r} cannot be a wire field")
