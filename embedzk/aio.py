"""The asyncio face of a Peer: the same calls as coroutines, never blocking the event loop.

Writes and syncs await the peer's futures; plain reads answer from the local replica at once (microseconds), so
they are coroutines only for symmetry.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from embedzk.model import Stat

if TYPE_CHECKING:
    from embedzk.peer import Peer

T = TypeVar("T")


async def _await(future: Future[T]) -> T:
    return await asyncio.wrap_future(future)


class AsyncPeer:
    """``peer.aio``: coroutine versions of the Peer's calls (kazoo-style names)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def create(self, path: str, value: bytes = b"", **kwargs: Any) -> Any:
        """Peer.create, awaited."""
        return await _await(self.peer.create_async(path, value, **kwargs))

    async def get(self, path: str) -> tuple[bytes, Stat]:
        """Peer.get (local read)."""
        return self.peer.get(path)

    async def exists(self, path: str) -> Stat | None:
        """Peer.exists (local read)."""
        return self.peer.exists(path)

    async def get_children(self, path: str, include_data: bool = False) -> Any:
        """Peer.get_children (local read)."""
        return self.peer.get_children(path, include_data=include_data)

    async def set(self, path: str, value: bytes, version: int = -1) -> Stat:
        """Peer.set, awaited."""
        return await _await(self.peer.set_async(path, value, version))

    async def delete(self, path: str, version: int = -1) -> None:
        """Peer.delete, awaited."""
        await _await(self.peer.delete_async(path, version))

    async def ensure_path(self, path: str) -> None:
        """Peer.ensure_path, awaited."""
        await _await(self.peer.ensure_path_async(path))

    async def sync(self, path: str = "/") -> None:
        """Peer.sync, awaited."""
        await _await(self.peer.sync_async(path))

    async def commit(self, transaction: Any) -> list[Any]:
        """Commit a Transaction built with ``peer.transaction()``, awaited."""
        return await _await(transaction.commit_async())
