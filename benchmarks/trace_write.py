"""Where one write's time goes: a timeline across the three processes of a cluster.

    python benchmarks/trace_write.py [--writes 300]

Starts three peers in three processes (tcp on loopback, LevelDB with sync, default settings), makes ``--writes``
sequential ``set`` calls from a follower, and prints the median latency and the timeline of the last write:
every frame received and sent, every storage append (synced or not) in each process, on the machine's clock, in
µs from the call. Each process records these by wrapping its own loop's transport and storage, so the timeline
costs a few µs per step that a normal run does not pay; it shows where time goes, not the exact figure.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from embedzk.testing import free_ports  # noqa: E402


def _describe(frame: bytes) -> str:
    from embedzk.codec import decode
    from embedzk.replica.messages import Bundle

    try:
        msg = decode(frame)
    except Exception as exc:  # a malformed frame is worth seeing too
        return f"undecodable ({exc})"
    inner = msg.messages if isinstance(msg, Bundle) else (msg,)
    names = []
    for m in inner:
        kind = getattr(m, "type", None)
        names.append(type(m).__name__ + (f":{kind.name}" if kind is not None else ""))
    return ("Bundle[" + ", ".join(names) + "]") if isinstance(msg, Bundle) else names[0]


def _worker(pid: str, addresses: dict[str, str], data_dir: str, results: Any, commands: Any) -> None:
    from embedzk import Peer

    events: list[tuple[float, str]] = []
    peer = Peer(pid, bind=addresses[pid], peers={k: v for k, v in addresses.items() if k != pid}, data_dir=data_dir)
    peer.start(timeout=60)
    loop = peer._loop  # the tracing wraps the loop's own transport and storage: internals, on purpose
    assert loop is not None
    transport, storage = loop.transport, loop.storage
    receive, send, append = transport.receive, transport.send, storage.append

    def traced_receive(timeout: float) -> Any:
        frames = receive(timeout)
        now = time.time()
        events.extend((now, f"received from {frm}: {_describe(frame)}") for frm, frame in frames)
        return frames

    def traced_send(to: str, frame: bytes) -> bool:
        events.append((time.time(), f"sends to {to}: {_describe(frame)}"))
        return send(to, frame)

    def traced_append(entries: Any, hard_state: Any = None, sync: bool = True) -> None:
        began = time.time()
        append(entries, hard_state, sync=sync)
        events.append((began, f"append of {len(entries)} entries{' + fsync' if sync else ''} begins"))
        events.append((time.time(), "append done"))

    transport.receive, transport.send, storage.append = traced_receive, traced_send, traced_append  # type: ignore
    results.put((pid, "started", None))
    while True:
        command = commands.get()
        if command[0] == "stop":
            break
        if command[0] == "leader":
            results.put((pid, "leader", peer.leader))
        elif command[0] == "writes":
            peer.ensure_path("/trace")
            if peer.exists("/trace/x") is None:
                peer.create("/trace/x", b"")
            calls = []
            for _ in range(command[1]):
                events.clear()
                began = time.time()
                peer.set("/trace/x", b"v" * 100)
                calls.append((time.time() - began, began))
            results.put((pid, "writes", calls))
        elif command[0] == "events":
            results.put((pid, "events", list(events)))
    peer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    ids = ["a", "b", "c"]
    addresses = {pid: f"tcp://127.0.0.1:{port}" for pid, port in zip(ids, free_ports(3))}
    results: Any = mp.Queue()
    commands = {pid: mp.Queue() for pid in ids}
    with tempfile.TemporaryDirectory(prefix="embedzk-trace-") as root:
        procs = [
            mp.Process(target=_worker, args=(pid, addresses, os.path.join(root, pid), results, commands[pid]))
            for pid in ids
        ]
        for proc in procs:
            proc.start()
        try:
            for _ in ids:
                results.get(timeout=90)
            time.sleep(1.0)
            commands["a"].put(("leader",))
            leader = results.get(timeout=30)[2]
            client = next(pid for pid in ids if pid != leader)
            # The timeline of the last write only: each process keeps the events since that write began (the
            # client clears its own; the others' are trimmed to it below).
            commands[client].put(("writes", args.writes))
            calls = results.get(timeout=600)[2]
            latencies = sorted(c[0] for c in calls)
            print(f"leader {leader}, client {client}: {args.writes} sequential sets, p50 "
                  f"{latencies[len(latencies) // 2] * 1e3:.3f} ms, p90 {latencies[int(len(latencies) * 0.9)] * 1e3:.3f} ms")
            last_latency, began = calls[-1]
            for pid in ids:
                commands[pid].put(("events",))
            timeline = []
            for _ in ids:
                pid, _kind, events = results.get(timeout=30)
                timeline += [(t, pid, what) for t, what in events if began <= t <= began + last_latency]
            print(f"\nthe last write ({last_latency * 1e3:.3f} ms), µs from the call:")
            for t, pid, what in sorted(timeline):
                print(f"{(t - began) * 1e6:9.1f}  {pid}{' (leader)' if pid == leader else ' (client)' if pid == client else ''}  {what}")
        finally:
            for pid in ids:
                commands[pid].put(("stop",))
            for proc in procs:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()


if __name__ == "__main__":
    main()
