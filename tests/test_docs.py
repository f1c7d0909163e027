"""The examples of docs/recipes.md run as written: every Python block after the first, in order, in one namespace
(the first is the three-process form, which tests/test_recipes_processes.py covers)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"
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
