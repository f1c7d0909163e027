"""What the examples share: free loopback ports, and starting this same script as worker processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from embedzk.testing import free_ports


def say(line: str) -> None:
    """Print one line in one write, flushed at once.

    ``print`` writes the text and its newline separately: two threads of a worker (a watch callback and the main
    thread), or two workers sharing the terminal, could run their lines together.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def cluster_addresses(n: int) -> dict[str, str]:
    """Ids w0..w{n-1} and a tcp address on loopback for each."""
    return {f"w{i}": f"tcp://127.0.0.1:{port}" for i, port in enumerate(free_ports(n))}


def spawn(script: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``python script args...`` as a worker process sharing our terminal."""
    return subprocess.Popen([sys.executable, script, *args])


def stop_all(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """Wait for the workers; kill (by pid) whatever is still running after ``timeout`` seconds."""
    for p in processes:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
