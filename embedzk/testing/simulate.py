"""Run seeded simulations from the command line.

``python -m embedzk.testing.simulate --seed 1234`` replays one run (the command a failing test prints);
``python -m embedzk.testing.simulate --seeds 1000 --start 0`` runs a sweep and reports every failing seed;
``--profile crash-heavy`` runs the same seeds with crashes and stale replays only, almost three times as often;

Replicas log what they refuse (a corrupted frame, a message of an unexpected type); a sweep keeps only errors.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from embedzk.testing.simulator import PROFILES, SimConfig, Simulation, SimulationFailure


def run_seed(seed: int, summary: dict[str, int] | None = None, profile: str = "") -> str | None:
    """Run the simulation of ``seed`` (under ``profile``, see simulator.PROFILES); return None if it passed,
    else the failure report. ``summary``, if given, receives what the run did."""
    sim = Simulation(SimConfig.for_seed(seed, profile))
    try:
        sim.run()
    except SimulationFailure as exc:
        return str(exc)
    finally:
        if summary is not None:
            summary.update(sim.summary())
    return None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; exit status 1 if any seed failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="replay this one seed, with logging")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to sweep")
    parser.add_argument("--start", type=int, default=0, help="first seed of the sweep")
    parser.add_argument("--profile", default="", choices=["", *sorted(PROFILES)],
                        help="a named variation of the seeds' runs (crash-heavy: crashes and replays, three times as often)")
    args = parser.parse_args(argv)
    if args.seed is not None:
        config = SimConfig.for_seed(args.seed, args.profile)
        print(f"seed {args.seed}: {config}")
        logging.basicConfig(level=logging.WARNING)
        replay: dict[str, int] = {}
        problem = run_seed(args.seed, replay, args.profile)
        print(replay)
        print(problem or "ok")
        return 1 if problem else 0
    logging.getLogger("embedzk").setLevel(logging.ERROR)
    failed = 0
    totals: dict[str, int] = {}
    began = time.monotonic()
    for seed in range(args.start, args.start + args.seeds):
        summary: dict[str, int] = {}
        problem = run_seed(seed, summary, args.profile)
        for key, value in summary.items():
            totals[key] = totals.get(key, 0) + value
        if problem:
            failed += 1
            print(problem, flush=True)
        done = seed - args.start + 1
        if done % 500 == 0:
            print(f"progress: {done} seeds run, {failed} failed, {time.monotonic() - began:.0f}s", flush=True)
    elapsed = time.monotonic() - began
    print(f"totals: {totals}")
    print(f"{args.seeds - failed} passed, {failed} failed in {elapsed:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
