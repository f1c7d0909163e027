"""Storage of one replica's log, hard state and snapshot: LevelDB for real use, memory for tests and the simulator.

:class:`Storage` is the interface (see :mod:`embedzk.persist.base` for the contract; its read side,
:class:`~embedzk.consensus.storage.LogStorage`, belongs to the consensus core); :class:`MemoryStorage` and
:class:`LevelDBStorage` implement it. ``LevelDBStorage`` is imported on first use, so that what only needs memory
storage never loads plyvel.
"""

from __future__ import annotations

from typing import Any

from embedzk.persist.base import CompactedError, SnapshotPart, Storage, UnavailableError
from embedzk.persist.memory import MemoryStorage

__all__ = ["CompactedError", "LevelDBStorage", "MemoryStorage", "SnapshotPart", "Storage", "UnavailableError"]


def __getattr__(name: str) -> Any:
    if name == "LevelDBStorage":
        from embedzk.persist.leveldb import LevelDBStorage

        return LevelDBStorage
    raise AttributeError(f"module 'embedzk.persist' has no attribute {name!r}")
