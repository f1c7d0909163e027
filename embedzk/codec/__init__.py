"""CBOR encoding of everything embedzk writes to the network or to disk.

Every value that crosses a process boundary is an instance of a dataclass registered here with
:func:`message`, which gives it a wire tag and a format version. :func:`encode` turns such a value into
bytes; :func:`decode` turns bytes back into a value and checks every field against the dataclass's type
hints, so that code behind the codec only ever sees well-formed values. Whatever the bytes, :func:`decode`
raises nothing but :class:`~embedzk.errors.DecodeError`, with a reason.

Tag ranges: 1-31 tree transactions, 32-63 consensus, 64-95 replica, 96-127 transport and peer, 128-159
persisted records.
"""

from embedzk.codec.core import (
    DEFAULT_MAX_SIZE,
    decode,
    encode,
    encode_spliced,
    message,
    registered_types,
)
from embedzk.errors import DecodeError

__all__ = ["DEFAULT_MAX_SIZE", "DecodeError", "decode", "encode", "encode_spliced", "message", "registered_types"]
