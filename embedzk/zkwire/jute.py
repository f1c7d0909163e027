"""Jute's binary encoding, as ZooKeeper's ``BinaryOutputArchive`` writes it and ``BinaryInputArchive`` reads it.

The primitives:

* ``int``: 4 bytes, big-endian, signed; ``long``: 8 bytes, big-endian, signed;
* ``boolean``: 1 byte, 1 for true and 0 for false (as Java's ``DataInput.readBoolean``, any non-zero byte reads as
  true);
* ``buffer``: an ``int`` length, then that many bytes; the length -1 stands for null;
* ``ustring``: as ``buffer``, the bytes being UTF-8; -1 stands for null;
* ``vector``: an ``int`` count, then that many elements; -1 stands for null;
* a record: its fields one after the other, nothing around them.

:class:`JuteReader` reads them from a packet held in memory. Whatever the bytes, it raises nothing but
:class:`~embedzk.errors.DecodeError`, whose message names the field being read and the offset in the packet: for a
truncated input, a negative length or count other than -1, a length over the reader's limit or past the end of the
input, or a string that is not UTF-8. It is stricter than ZooKeeper's reader in one respect: ZooKeeper reads a vector
count below -1 as an empty vector, this reader refuses it. And as lenient in another: Java's writer encodes each
UTF-16 unit of a string on its own, so a character outside the Basic Multilingual Plane arrives as two encoded
surrogates (CESU-8) rather than one 4-byte sequence; the reader accepts such a pair as the character it stands for.
A lone surrogate is refused. :class:`JuteWriter` always writes standard UTF-8, which every ZooKeeper reader accepts.

:class:`JuteType` describes how one field's type reads and writes; :class:`JuteRecord` is the base of the records
in :mod:`embedzk.zkwire.records`, which list their fields with these types in the order of ZooKeeper's
``zookeeper.jute``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final, Generic, Self, TypeAlias, TypeVar

from embedzk.errors import DecodeError

__all__ = [
    "BOOL",
    "BytesLike",
    "BUFFER",
    "INT",
    "INT_MAX",
    "INT_MIN",
    "JUTE_MAX_BUFFER",
    "LONG",
    "LONG_MAX",
    "LONG_MIN",
    "USTRING",
    "JuteReader",
    "JuteRecord",
    "JuteType",
    "JuteWriter",
    "RecordType",
    "VectorType",
    "record",
    "vector",
]

T = TypeVar("T")
R = TypeVar("R", bound="JuteRecord")

#: ZooKeeper's default ``jute.maxbuffer``: 0xfffff bytes, one byte short of 1 MiB. The longest packet a server
#: accepts, and so the longest buffer or string a packet can hold.
JUTE_MAX_BUFFER: Final = 0xFFFFF

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")

#: What a reader reads from, and a buffer field may be written from.
BytesLike: TypeAlias = bytes | bytearray | memoryview


class JuteReader:
    """Reads jute primitives from a packet in memory, front to back.

    ``max_length`` bounds the length of any one buffer or string (ZooKeeper's ``jute.maxbuffer``); a length past the
    end of the input is refused whatever the bound. Every method raises :class:`~embedzk.errors.DecodeError` and
    nothing else when the bytes do not hold what is asked for; ``what`` names the field in the message.
    """

    __slots__ = ("_data", "_end", "_pos", "max_length")

    def __init__(self, data: BytesLike, *, max_length: int = JUTE_MAX_BUFFER) -> None:
        self._data: bytes = data if isinstance(data, bytes) else bytes(data)
        self._pos = 0
        self._end = len(self._data)
        #: The longest buffer or string this reader accepts, in bytes.
        self.max_length = max_length

    @property
    def position(self) -> int:
        """The offset of the next byte to read."""
        return self._pos

    @property
    def remaining(self) -> int:
        """How many bytes are left to read."""
        return self._end - self._pos

    def _fail(self, what: str, problem: str, at: int | None = None) -> DecodeError:
        where = self._pos if at is None else at
        return DecodeError(f"{what}: {problem} at offset {where} of a {self._end}-byte input")

    def _truncated(self, what: str, needed: int) -> DecodeError:
        return self._fail(what, f"truncated input: {needed} bytes needed, {self.remaining} left")

    def read_int(self, what: str) -> int:
        """Read a jute ``int``: 4 bytes, big-endian, signed."""
        pos = self._pos
        if self._end - pos < 4:
            raise self._truncated(what, 4)
        self._pos = pos + 4
        value: int = _INT.unpack_from(self._data, pos)[0]
        return value

    def read_long(self, what: str) -> int:
        """Read a jute ``long``: 8 bytes, big-endian, signed."""
        pos = self._pos
        if self._end - pos < 8:
            raise self._truncated(what, 8)
        self._pos = pos + 8
        value: int = _LONG.unpack_from(self._data, pos)[0]
        return value

    def read_bool(self, what: str) -> bool:
        """Read a jute ``boolean``: 1 byte, true unless 0 (as Java's ``readBoolean``)."""
        pos = self._pos
        if pos >= self._end:
            raise self._truncated(what, 1)
        self._pos = pos + 1
        return self._data[pos] != 0

    def _read_length(self, what: str) -> int:
        """Read the length of a buffer or string: -1 (null), or a length that the input and the limit allow."""
        at = self._pos
        length = self.read_int(what)
        if length == -1:
            return -1
        if length < 0:
            raise self._fail(what, f"negative length {length}", at)
        if length > self.max_length:
            raise self._fail(what, f"length {length} is over the limit of {self.max_length} bytes", at)
        if length > self.remaining:
            raise self._fail(what, f"length {length} runs past the end of the input ({self.remaining} bytes left)", at)
        return length

    def read_buffer(self, what: str) -> bytes | None:
        """Read a jute ``buffer``: a length, then the bytes; None for the length -1."""
        length = self._read_length(what)
        if length == -1:
            return None
        pos = self._pos
        self._pos = pos + length
        return self._data[pos : pos + length]

    def read_ustring(self, what: str) -> str | None:
        """Read a jute ``ustring``: a length, then UTF-8; None for the length -1.

        Two encoded surrogates that form a pair, as Java's writer sends a character outside the Basic Multilingual
        Plane, read as that character; any other invalid UTF-8 is refused.
        """
        length = self._read_length(what)
        if length == -1:
            return None
        pos = self._pos
        raw = self._data[pos : pos + length]
        self._pos = pos + length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            try:
                # Java's CESU-8: surrogates encoded one by one. Let them through, then pair them up; a lone one fails.
                return raw.decode("utf-8", "surrogatepass").encode("utf-16-le", "surrogatepass").decode("utf-16-le")
            except UnicodeError:
                raise self._fail(what, f"invalid UTF-8 ({exc.reason}) at byte {exc.start} of the string", pos) from None

    def read_vector(self, what: str, element: JuteType[T]) -> tuple[T, ...] | None:
        """Read a jute ``vector``: a count, then that many elements of type ``element``; None for the count -1."""
        at = self._pos
        count = self.read_int(what)
        if count == -1:
            return None
        if count < 0:
            raise self._fail(what, f"negative count {count}", at)
        if count * element.min_size > self.remaining:
            raise self._fail(
                what,
                f"count {count} of elements of at least {element.min_size} bytes cannot fit in the "
                f"{self.remaining} bytes left",
                at,
            )
        read = element.read
        return tuple([read(self, f"{what}[{index}]") for index in range(count)])

    def expect_end(self, what: str) -> None:
        """Refuse bytes left over after ``what``, the last thing the input should hold."""
        if self._pos != self._end:
            raise self._fail(what, f"{self.remaining} unexpected bytes after the end")


def _check_range(value: int, low: int, high: int, kind: str, what: str) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{what}: a jute {kind} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what}: {value} does not fit a jute {kind} ({low} to {high})")


class JuteWriter:
    """Writes jute primitives into a growing buffer; :meth:`getvalue` returns the bytes written.

    A value that the wire cannot carry (an int out of range, a string with a lone surrogate, a wrong type) raises
    ``ValueError`` or ``TypeError`` naming the field: such a value is a bug of the caller, not of the peer.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        """The bytes written so far."""
        return bytes(self._buf)

    def __len__(self) -> int:
        """How many bytes were written so far."""
        return len(self._buf)

    def write_int(self, value: int, what: str) -> None:
        """Write a jute ``int``."""
        _check_range(value, INT_MIN, INT_MAX, "int", what)
        self._buf += _INT.pack(value)

    def write_long(self, value: int, what: str) -> None:
        """Write a jute ``long``."""
        _check_range(value, LONG_MIN, LONG_MAX, "long", what)
        self._buf += _LONG.pack(value)

    def write_bool(self, value: bool, what: str) -> None:
        """Write a jute ``boolean``: 1 or 0."""
        if not isinstance(value, bool):
            raise TypeError(f"{what}: a jute boolean must be a bool, not {type(value).__name__}")
        self._buf.append(1 if value else 0)

    def write_buffer(self, value: BytesLike | None, what: str) -> None:
        """Write a jute ``buffer``; None as the length -1."""
        if value is None:
            self._buf += _INT.pack(-1)
            return
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"{what}: a jute buffer must be bytes or None, not {type(value).__name__}")
        data = value if isinstance(value, bytes) else bytes(value)
        _check_range(len(data), 0, INT_MAX, "buffer length", what)
        self._buf += _INT.pack(len(data))
        self._buf += data

    def write_ustring(self, value: str | None, what: str) -> None:
        """Write a jute ``ustring`` as standard UTF-8; None as the length -1."""
        if value is None:
            self._buf += _INT.pack(-1)
            return
        if not isinstance(value, str):
            raise TypeError(f"{what}: a jute ustring must be a str or None, not {type(value).__name__}")
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what}: not encodable as UTF-8 ({exc.reason} at character {exc.start})") from None
        _check_range(len(data), 0, INT_MAX, "ustring length", what)
        self._buf += _INT.pack(len(data))
        self._buf += data

    def write_vector(self, value: Sequence[T] | None, what: str, element: JuteType[T]) -> None:
        """Write a jute ``vector`` of elements of type ``element``; None as the count -1."""
        if value is None:
            self._buf += _INT.pack(-1)
            return
        if isinstance(value, str | bytes | bytearray) or not isinstance(value, Sequence):
            raise TypeError(f"{what}: a jute vector must be a sequence or None, not {type(value).__name__}")
        _check_range(len(value), 0, INT_MAX, "vector count", what)
        self._buf += _INT.pack(len(value))
        write = element.write
        for index, item in enumerate(value):
            write(self, item, f"{what}[{index}]")


class JuteType(Generic[T]):
    """How one jute type reads and writes a field's value.

    ``name`` is the type as ``zookeeper.jute`` spells it; ``min_size`` is the fewest bytes a value of the type
    takes, which bounds how many elements a vector's count may claim.
    """

    __slots__ = ("_read", "_write", "min_size", "name")

    def __init__(
        self,
        name: str,
        min_size: int,
        read: Callable[[JuteReader, str], T],
        write: Callable[[JuteWriter, T, str], None],
    ) -> None:
        self.name = name
        self.min_size = min_size
        self._read = read
        self._write = write

    def read(self, reader: JuteReader, what: str) -> T:
        """Read one value; ``what`` names it in an error."""
        return self._read(reader, what)

    def write(self, writer: JuteWriter, value: T, what: str) -> None:
        """Write one value; ``what`` names it in an error."""
        self._write(writer, value, what)

    def __repr__(self) -> str:
        """The type as ``zookeeper.jute`` spells it."""
        return self.name


#: jute ``int``: a Python int from -2**31 to 2**31-1.
INT: Final[JuteType[int]] = JuteType("int", 4, JuteReader.read_int, JuteWriter.write_int)
#: jute ``long``: a Python int from -2**63 to 2**63-1.
LONG: Final[JuteType[int]] = JuteType("long", 8, JuteReader.read_long, JuteWriter.write_long)
#: jute ``boolean``: a Python bool.
BOOL: Final[JuteType[bool]] = JuteType("boolean", 1, JuteReader.read_bool, JuteWriter.write_bool)
#: jute ``buffer``: bytes, or None for null.
BUFFER: Final[JuteType[bytes | None]] = JuteType("buffer", 4, JuteReader.read_buffer, JuteWriter.write_buffer)
#: jute ``ustring``: a str, or None for null.
USTRING: Final[JuteType[str | None]] = JuteType("ustring", 4, JuteReader.read_ustring, JuteWriter.write_ustring)


class VectorType(JuteType[tuple[T, ...] | None]):
    """jute ``vector<element>``: a tuple of the element type's values, or None for null."""

    __slots__ = ("element",)

    def __init__(self, element: JuteType[T]) -> None:
        self.element = element
        super().__init__(f"vector<{element.name}>", 4, self._read_vector, self._write_vector)

    def _read_vector(self, reader: JuteReader, what: str) -> tuple[T, ...] | None:
        return reader.read_vector(what, self.element)

    def _write_vector(self, writer: JuteWriter, value: tuple[T, ...] | None, what: str) -> None:
        writer.write_vector(value, what, self.element)


def vector(element: JuteType[T]) -> VectorType[T]:
    """The jute type ``vector<element>``."""
    return VectorType(element)


class RecordType(JuteType[R]):
    """A record used as a field of another record (as ``Stat`` in ``GetDataResponse``): never null on the wire."""

    __slots__ = ("record_class",)

    def __init__(self, record_class: type[R]) -> None:
        self.record_class = record_class
        super().__init__(record_class.__name__, record_class.min_size(), self._read_record, self._write_record)

    def _read_record(self, reader: JuteReader, what: str) -> R:
        try:
            return self.record_class.read(reader)
        except DecodeError as exc:
            raise DecodeError(f"{what} -> {exc}") from None

    def _write_record(self, writer: JuteWriter, value: R, what: str) -> None:
        if not isinstance(value, self.record_class):
            raise TypeError(f"{what}: expected a {self.record_class.__name__}, not {type(value).__name__}")
        value.write(writer)


def record(record_class: type[R]) -> RecordType[R]:
    """The jute type of a field holding a ``record_class``."""
    return RecordType(record_class)


class JuteRecord:
    """Base of the jute records: the fields listed in ``_jute_fields``, written one after the other.

    A subclass is a frozen dataclass whose fields are, in order, those named in ``_jute_fields`` with their jute
    types. :meth:`write` and :meth:`read` do the rest; a record whose wire form is more than its fields in order
    (``ConnectRequest``'s optional trailer, ``MultiRequest``'s headed list) overrides both.
    """

    __slots__ = ()

    #: The record's fields in wire order: (attribute name, jute type).
    _jute_fields: ClassVar[tuple[tuple[str, JuteType[Any]], ...]] = ()
    #: (attribute name, jute type, name in error messages), derived from ``_jute_fields``.
    _jute_plan: ClassVar[tuple[tuple[str, JuteType[Any], str], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive the read/write plan of a subclass from its ``_jute_fields``."""
        super().__init_subclass__(**kwargs)
        cls._jute_plan = tuple((name, jtype, f"{cls.__name__}.{name}") for name, jtype in cls._jute_fields)

    @classmethod
    def min_size(cls) -> int:
        """The fewest bytes a record of this class takes on the wire."""
        return sum(jtype.min_size for _, jtype in cls._jute_fields)

    def write(self, writer: JuteWriter) -> None:
        """Write this record's fields in order."""
        for name, jtype, what in self._jute_plan:
            jtype.write(writer, getattr(self, name), what)

    @classmethod
    def read(cls, reader: JuteReader) -> Self:
        """Read a record of this class from where ``reader`` stands."""
        factory: Callable[..., Self] = cls
        return factory(*[jtype.read(reader, what) for _, jtype, what in cls._jute_plan])

    def encode(self) -> bytes:
        """This record's jute bytes."""
        writer = JuteWriter()
        self.write(writer)
        return writer.getvalue()

    @classmethod
    def decode(cls, data: BytesLike, *, max_length: int = JUTE_MAX_BUFFER) -> Self:
        """The record that ``data`` holds, all of it; :class:`~embedzk.errors.DecodeError` for anything else."""
        reader = JuteReader(data, max_length=max_length)
        value = cls.read(reader)
        reader.expect_end(cls.__name__)
        return value
