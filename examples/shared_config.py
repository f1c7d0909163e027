"""Shared configuration with live reload, and the cluster's own leader, across three worker processes.

    python examples/shared_config.py

Three workers start a Peer each (tcp on loopback, LevelDB in a temporary directory). Every worker watches
/app/config with a DataWatch and reloads when it changes; whichever worker leads the cluster publishes three
versions of the configuration. Then everyone stops.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _workers import cluster_addresses, say, spawn, stop_all  # noqa: E402

from embedzk import Peer  # noqa: E402


def worker(me: str, addresses: dict[str, str], data_root: str) -> None:
    others = {pid: addr for pid, addr in addresses.items() if pid != me}
    seen_final = threading.Event()
    with Peer(me, bind=addresses[me], peers=others, data_dir=os.path.join(data_root, me)) as peer:
        say(f"[{me}] joined; leader is {peer.leader}")

        @peer.DataWatch("/app/config")
        def reload(data: bytes | None, stat: object, event: object = None) -> None:
            if data is None:
                return
            config = json.loads(data)
            say(f"[{me}] configuration reloaded: {config}")
            if config["version"] == 3:
                seen_final.set()

        if peer.is_leader:
            for version in (1, 2, 3):
                time.sleep(0.5)
                value = json.dumps({"version": version, "workers": 4 * version}).encode()
                if peer.exists("/app/config") is None:
                    peer.create("/app/config", value, makepath=True)
                else:
                    peer.set("/app/config", value)
                say(f"[{me}] (leader) published version {version}")
        if not seen_final.wait(15):
            say(f"[{me}] did not see the final configuration")
            sys.exit(1)
        # Stay until every worker has seen it, so the cluster keeps its majority meanwhile. Local reads only:
        # a sync() here could wait for a majority that the first workers to finish have already taken away.
        peer.create(f"/app/done/{me}", makepath=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(peer.get_children("/app/done")) == len(addresses):
                break
            time.sleep(0.05)
    say(f"[{me}] stopped")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
        return
    addresses = cluster_addresses(3)
    with tempfile.TemporaryDirectory(prefix="embedzk-example-") as data_root:
        workers = [spawn(__file__, ["--worker", pid, json.dumps(addresses), data_root]) for pid in addresses]
        stop_all(workers)
        failed = [p.returncode for p in workers if p.returncode]
    print("all workers saw every configuration" if not failed else f"workers failed: {failed}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
