"""A shared counter (kazoo's Counter): atomic changes through a versioned set, retried on conflict."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from embedzk.errors import (
    BadVersionError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
)
from embedzk.recipes._common import UNKNOWN_OUTCOME, normalize_path, retry, sync

if TYPE_CHECKING:
    from embedzk.peer import Peer

Number = int | float


class Counter:
    """A shared int or float counter whose changes are atomic (kazoo's Counter).

    Usage::

        counter = peer.Counter("/stats/jobs-done")
        counter += 1                        # atomic: read, then set with the version read, retried on conflict
        counter -= 2
        counter.value                       # from the local replica (peer.sync() first for the latest)
        counter.pre_value, counter.post_value   # the value before and after this instance's last change

        seconds = peer.Counter("/stats/seconds", default=0.0)   # a float counter

    The value is stored as ``repr(value)`` in ASCII (kazoo's format), or as a big-endian int32 with
    ``support_curator=True`` (Curator's SharedCount). A change whose outcome is unknown (ConnectionLossError) is
    checked after a ``sync()``: if the counter still has the version it was read at, the change is simply made
    again; if it moved on and the result cannot be told apart from another client's change, ConnectionLossError
    is raised rather than risk counting twice.
    """

    def __init__(self, peer: Peer, path: str, default: Number = 0, support_curator: bool = False) -> None:
        if support_curator and not isinstance(default, int):
            raise TypeError("when support_curator is enabled the default type must be an int")
        self.peer = peer
        self.path = normalize_path(path)
        self.default = default
        self.default_type = type(default)
        self.support_curator = support_curator
        #: The value before this instance's last change (None before any).
        self.pre_value: Number | None = None
        #: The value after this instance's last change (None before any).
        self.post_value: Number | None = None
        self._ensured = False

    def _ensure_node(self) -> None:
        if not self._ensured:
            try:
                retry(self.peer, lambda: self.peer.create(self.path, b"", makepath=True))
            except NodeExistsError:
                pass
            self._ensured = True

    def _decode(self, data: bytes) -> Number:
        if data == b"":
            return self.default
        try:
            if self.support_curator:
                return int(struct.unpack(">i", data)[0])
            return self.default_type(data.decode("ascii"))
        except (ValueError, UnicodeDecodeError, struct.error):
            kind = "a big-endian int32, support_curator" if self.support_curator else f"{self.default_type.__name__} in ASCII"
            shown = data if len(data) <= 40 else data[:40] + b"..."
            raise ValueError(f"counter {self.path} holds {shown!r}, not a counter value ({kind} expected)") from None

    def _encode(self, value: Number) -> bytes:
        if self.support_curator:
            return struct.pack(">i", value)
        return repr(value).encode("ascii")

    def _read(self) -> tuple[Number, int]:
        self._ensure_node()
        while True:
            try:
                data, stat = self.peer.get(self.path)
                return self._decode(data), stat.version
            except NoNodeError:
                self._ensured = False
                self._ensure_node()

    @property
    def value(self) -> Number:
        """The counter's value in the local replica."""
        return self._read()[0]

    def _change(self, delta: Number) -> Counter:
        if not isinstance(delta, self.default_type):
            raise TypeError("invalid type for value change")
        peer = self.peer
        while True:
            pre, version = self._read()
            post = pre + delta
            data = self._encode(post)
            try:
                peer.set(self.path, data, version=version)
            except BadVersionError:
                sync(peer)  # our replica trailed, or another client changed it: read the latest, try again
                continue
            except NoNodeError:
                self._ensured = False
                continue
            except UNKNOWN_OUTCOME as exc:
                sync(peer)
                current, stat = peer.get(self.path)
                if stat.version == version:
                    continue  # not applied
                if stat.version == version + 1 and current != data:
                    continue  # another client's change won the version: ours was not applied
                raise ConnectionLossError(f"{self.path}: the change's outcome is unknown") from exc
            self.pre_value, self.post_value = pre, post
            return self

    def __add__(self, delta: Number) -> Counter:
        """Add ``delta`` atomically; returns the counter (so ``counter += 1`` works)."""
        return self._change(delta)

    def __sub__(self, delta: Number) -> Counter:
        """Subtract ``delta`` atomically; returns the counter."""
        return self._change(-delta)

    def __repr__(self) -> str:
        return f"<Counter {self.path}>"
