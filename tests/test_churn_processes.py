"""A fleet replaced worker by worker: real processes with seeds, SIGKILLed one at a time and replaced by new ones
(new id, new port, fresh data directory) until no original remains, with a writer running throughout.

At the end every acknowledged write is on every survivor, the survivors agree, exactly ``voters`` voters remain, all
alive, and no dead worker is still a member. ``EMBEDZK_CHURN_ROUNDS=N`` runs N rounds instead of five (one per
original worker).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedzk.testing import free_ports
from tests._worker_protocol import WorkerError
from tests.peer_process import PeerProcess

ROUNDS = int(os.environ.get("EMBEDZK_CHURN_ROUNDS", "5"))
VOTERS = 3
MEMBER_TIMEOUT = 2.0

pytestmark = pytest.mark.timeout(120 + 40 * ROUNDS)


class _Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.workers: dict[str, PeerProcess] = {}
        self.dead: list[str] = []
        self.spawned: list[PeerProcess] = []
        self.count = 0

    def spawn(self, seeds: list[str], bind: str | None = None) -> PeerProcess:
        self.count += 1
        pid = f"w{self.count}"
        address = bind or f"tcp://127.0.0.1:{free_ports(1)[0]}"
        proc = PeerProcess(
            {
                "id": pid,
                "bind": address,
                "seeds": seeds,
                "voters": VOTERS,
                "member_timeout": MEMBER_TIMEOUT,
                "data_dir": str(self.root / pid),
                "session_timeout": 2.0,
                "start_timeout": 60,
            }
        )
        self.workers[pid] = proc
        self.spawned.append(proc)
        return proc

    def alive(self) -> list[PeerProcess]:
        return [p for p in list(self.workers.values()) if p.alive]

    def leader(self, timeout: float = 30.0) -> PeerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.alive():
                try:
                    if proc.call("is_leader", timeout=10):
                        return proc
                except (WorkerError, TimeoutError):
                    pass
            time.sleep(0.1)
        raise AssertionError("no leader")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[_Fleet]:
    f = _Fleet(tmp_path)
    try:
        yield f
    finally:
        for proc in f.spawned:
            proc.kill()


def _settled(fleet: _Fleet) -> dict[str, Any] | None:
    """The leader's members() once the membership is what the autopilot aims at, else None."""
    try:
        members = fleet.leader().call("members", timeout=10)
    except (WorkerError, TimeoutError, AssertionError):
        return None
    alive = {p.id for p in fleet.alive()}
    voters = [m for m in members.values() if m["voter"]]
    if set(members) != alive or len(voters) != VOTERS or not all(m["reachable"] for m in voters):
        return None
    return members


def _wait_settled(fleet: _Fleet, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = _settled(fleet)
        if members is not None:
            return members
        time.sleep(0.2)
    raise AssertionError(f"the membership did not settle within {timeout}s (alive: {[p.id for p in fleet.alive()]})")


def test_every_original_worker_is_replaced_while_writes_go_on(fleet: _Fleet) -> None:
    seeds = [f"tcp://127.0.0.1:{port}" for port in free_ports(VOTERS)]
    originals = [fleet.spawn(seeds, bind=seed) for seed in seeds]
    originals += [fleet.spawn(seeds) for _ in range(5 - VOTERS)]
    for proc in originals:
        proc.wait_started(60)
    _wait_settled(fleet, 30)

    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()
    rng = random.Random(7)

    def write() -> None:
        n = 0
        while not stop.is_set():
            alive = fleet.alive()
            if not alive:
                time.sleep(0.05)
                continue
            n += 1
            path, value = f"/churn/w{n}", f"v{n}".encode()
            try:
                rng.choice(alive).call("create", path, value, makepath=True, timeout=15)
            except (WorkerError, TimeoutError):
                continue  # unknown outcome (the worker died, or the leader moved): not counted either way
            acknowledged[path] = value

    writer = threading.Thread(target=write, name="churn-writer", daemon=True)
    writer.start()
    try:
        for round_ in range(ROUNDS):
            victims = [p for p in originals if p.alive] or fleet.alive()
            victim = victims[0]
            victim.kill()
            fleet.dead.append(victim.id)
            # The new worker's seeds are members it can reach (in a deployment, stable names: see docs/cluster.md).
            newcomer = fleet.spawn([p.config["bind"] for p in fleet.alive()])
            newcomer.wait_started(60)
            _wait_settled(fleet, 10 * MEMBER_TIMEOUT + 20)
            assert len(acknowledged) > round_, "writes stalled during churn"
    finally:
        stop.set()
        writer.join(30)

    members = _wait_settled(fleet, 30)
    survivors = fleet.alive()
    assert not {p.id for p in originals} & set(members) or ROUNDS < len(originals)
    assert not set(fleet.dead) & set(members), f"dead workers still members: {set(fleet.dead) & set(members)}"
    assert sum(m["voter"] for m in members.values()) == VOTERS
    for proc in survivors:
        proc.call("sync", timeout=30)
        for path, value in acknowledged.items():
            assert proc.call("get", path, timeout=30)[0] == value, f"{path} lost on {proc.id}"
    assert len({proc.call("stats")["digest"] for proc in survivors}) == 1
    assert len(acknowledged) > 10 * ROUNDS
