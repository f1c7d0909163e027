"""``python -m embedzk``: the command line of :mod:`embedzk.cli` (``python -m embedzk --help`` lists its commands)."""

from __future__ import annotations

import sys

from embedzk.cli import main

if __name__ == "__main__":
    sys.exit(main())
