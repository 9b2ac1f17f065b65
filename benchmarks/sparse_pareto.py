"""Dense vs static vs dynamic sparse pre-training at 90% sparsity, against a tuned dense frontier.

    python benchmarks/sparse_pareto.py [--quick | --preset NAME] [--out DIR] [--jobs N]

Real `growkit.train` runs on the bundled corpus: dense GPT-2 models of several widths, each at several
iso-FLOP budgets with an LR swept per width (the dense frontier is the lower hull of every dense run), and a
wider model at density 0.1 (static and dynamic prune-and-regrow, blocks 1 and 16) whose sparse weights' LR
multiplier gets the same sweep (the sparse LR rule is one candidate). Every run's LR (warmup-stable-decay to
zero) decays fully at its own budget. Definitions in `growkit.bench.sparse_pareto`.

Prints the tables, writes ``results.json`` and ``loss_vs_flops.png`` to ``--out`` (finished runs there with
the identical config are reused: an interrupted run continues), and prints
``dynamic_flops_to_dense_loss: <value>`` last.
"""

from __future__ import annotations

import argparse

from growkit.bench.sparse_pareto import PRESETS, run_pareto


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small version (< 5 min)")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="a preset by name (overrides --quick)")
    ap.add_argument("--out", help="output folder (default: runs/bench-sparse-pareto[-PRESET])")
    ap.add_argument("--jobs", type=int, help="runs trained at once, one process each (the preset's otherwise)")
    args = ap.parse_args()
    preset = args.preset or ("quick" if args.quick else "full")
    out = args.out or ("runs/bench-sparse-pareto" + ("" if preset == "full" else f"-{preset}"))
    run_pareto(out, preset, **({} if args.jobs is None else {"jobs": args.jobs}))


if __name__ == "__main__":
    main()
