"""Fault injection: SIGKILL a real progressive training run at growth events, mid-ramp, mid-checkpoint
and at random moments, and start a second writer on its run dir; resume it each time; its final weights,
optimizer moments and losses must be bit-identical to one uninterrupted run, and every second writer must
be refused (exit 2, the holder named) (see `growkit.bench.faults` for the run and the checks).

    python benchmarks/fault_injection.py [--random 4] [--seed 0] [--work runs/fault-injection]

Prints one row per trial, writes the results as JSON (``--out``), and ends with ``fault_trials_ok: K/N``.
Exit status 1 when a trial fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from growkit.bench.faults import (
    deterministic_trials,
    run_trials,
    second_writer_trials,
    table,
    to_json,
    wallclock_trials,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=4, help="trials killed from outside at random moments")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    parser.add_argument("--work", default="runs/fault-injection", help="folder of the trials' run dirs and logs")
    parser.add_argument("--out", default="benchmarks/results/fault_injection.json")
    args = parser.parse_args()

    trials = deterministic_trials() + second_writer_trials() + wallclock_trials(args.random, args.seed)
    start = time.perf_counter()
    results, ref_seconds = run_trials(trials, Path(args.work))
    elapsed = time.perf_counter() - start
    print(table(results))
    ok = sum(r.ok for r in results)
    kills = sum(r.kills_landed for r in results)
    refused = sum(r.refused for r in results)
    print(f"{len(results)} trials, {kills} kills, {refused} second writers refused, reference run "
          f"{ref_seconds:.1f} s, all trials {elapsed:.0f} s (logs and run dirs in {args.work})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {**to_json(results, ref_seconds), "kills": kills, "refused": refused, "seconds": round(elapsed, 1)}
    out.write_text(json.dumps(summary, indent=2))
    print(f"fault_trials_ok: {ok}/{len(results)}")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
