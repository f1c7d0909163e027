"""Storage of one replica's log, hard state and snapshot: LevelDB for real use, memory for tests and the simulator.

:class:`Storage` is the interface (see :mod:`embedzk.persist.base` for the contract); :class:`MemoryStorage` and
:class:`LevelDBStorage` implement it.
"""

# The consensus package first: its log module needs persist.base, and persist.base needs consensus.types, so entering
# through here must not leave persist.base half-built when the consensus package's __init__ reaches for it.
import embedzk.consensus  # noqa: F401  (imported for its side effect on the import order)
from embedzk.persist.base import CompactedError, SnapshotPart, Storage, UnavailableError
from embedzk.persist.leveldb import LevelDBStorage
from embedzk.persist.memory import MemoryStorage

__all__ = ["CompactedError", "LevelDBStorage", "MemoryStorage", "SnapshotPart", "Storage", "UnavailableError"]
