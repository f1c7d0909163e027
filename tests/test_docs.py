"""The examples of docs/recipes.md and docs/peer.md run as written.

docs/recipes.md: every Python block after the first, in order, in one namespace (the first is the three-process
form, which tests/test_recipes_processes.py covers). docs/peer.md: every Python block, in order, in one namespace,
but those that say ``# not run as a test: <why>`` (they need other processes or real addresses).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from embedzk import EventType, KeeperState, Peer, WatchedEvent

DOCS = Path(__file__).resolve().parent.parent / "docs"
RECIPES = DOCS / "recipes.md"
PEER = DOCS / "peer.md"
#: A block holding this comment is not run; the comment says why.
NOT_RUN = "# not run as a test:"
_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, dedented (a block inside a list item is indented)."""
    return [textwrap.dedent(match.group(2)) for match in _BLOCK.finditer(text)]


@pytest.mark.timeout(120)
def test_every_recipe_example_runs_as_written() -> None:
    blocks = python_blocks(RECIPES.read_text())
    assert len(blocks) >= 15, "a block was lost: the pattern no longer matches the document"
    namespace: dict[str, object] = {"__name__": "recipes_md"}
    try:
        for number, block in enumerate(blocks[1:], start=2):
            try:
                exec(compile(block, f"docs/recipes.md, block {number}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"docs/recipes.md block {number} failed: {exc!r}\n{block}") from exc
    finally:
        cluster = namespace.get("cluster")
        stop = getattr(cluster, "stop", None)
        if stop is not None:
            stop()


@pytest.mark.timeout(120)
def test_every_peer_example_runs_as_written() -> None:
    blocks = python_blocks(PEER.read_text())
    assert len(blocks) >= 4, "a block was lost: the pattern no longer matches the document"
    skipped = [number for number, block in enumerate(blocks, start=1) if NOT_RUN in block]
    # Only the first block (three members over tcp, in three processes) may be left out: the others run here.
    assert skipped == [1], f"blocks {skipped} of docs/peer.md are not run"
    namespace: dict[str, Any] = {"__name__": "peer_md"}
    # The blocks after the first use what it defines: `Peer`, and `peer`, for which a solo peer holding what the
    # first block writes stands in.
    stand_in = Peer("solo")
    try:
        stand_in.start(timeout=30)
        stand_in.ensure_path("/app")
        stand_in.create("/app/config", b"v1")
        namespace.update(Peer=Peer, peer=stand_in)
        for number, block in enumerate(blocks, start=1):
            if number in skipped:
                continue
            try:
                code = compile(
                    block, f"docs/peer.md, block {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
                )
                if code.co_flags & inspect.CO_COROUTINE:
                    asyncio.run(_run_async_block(code, block, namespace))
                else:
                    exec(code, namespace)
            except Exception as exc:
                raise AssertionError(f"docs/peer.md block {number} failed: {exc!r}\n{block}") from exc
        assert callable(namespace["reload"]) and callable(namespace["membership"])  # the decorators return them
        assert namespace["zk"].peer.state is KeeperState.LOST  # stopped by `async with`
        assert namespace["cluster"].peers == []  # stopped by `with`
    finally:
        zk = namespace.get("zk")
        if zk is not None:
            zk.peer.stop()
        cluster = namespace.get("cluster")
        if cluster is not None:
            cluster.stop()
        stand_in.stop()


#: ``async for NAME in PEER.events("PATH", ...)``: a block that iterates over a persistent watch until cancelled.
_EVENTS_LOOP = re.compile(r"async for (\w+) in (\w+)\.events\(\"([^\"]+)\"")


async def _run_async_block(code: Any, block: str, namespace: dict[str, Any], timeout: float = 30.0) -> None:
    """Run a block with top-level awaits as a task, in ``namespace``.

    A block that ends in an endless ``async for event in zk.events(path)`` runs until it has received an event of
    ``path`` (this function creates children under ``path`` through the block's own peer until one arrives), and
    is then cancelled, which runs its ``async with`` exits; any other block must end by itself.
    """
    task: asyncio.Future[Any] = asyncio.ensure_future(eval(code, namespace))  # noqa: S307 - the docs' own code
    loop = _EVENTS_LOOP.search(block)
    deadline = time.monotonic() + timeout
    try:
        if loop is None:
            await asyncio.wait_for(task, timeout)
            return
        name, peer_name, path = loop.groups()
        # The iterator registers its watch when the iteration starts: until then a child makes no event for it.
        made: list[str] = []
        while not _heard_of(namespace.get(name), made):
            assert not task.done(), f"the block ended before its loop received anything: {task.result()!r}"
            assert time.monotonic() < deadline, f"no event of {path} reached `{name}` within {timeout}s"
            zk = namespace.get(peer_name)
            if zk is not None and zk.peer.connected:
                made.append(await zk.create(f"{path}/made-by-the-test-", b"", sequence=True))
            await asyncio.wait({task}, timeout=0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, max(1.0, deadline - time.monotonic()))
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=10.0)


def _heard_of(event: Any, made: list[str]) -> bool:
    """Whether ``event`` is the CREATED event of a node the test made."""
    return isinstance(event, WatchedEvent) and event.type is EventType.CREATED and event.path in made
