"""Dense vs static sparse vs dynamic sparse pre-training at 90% sparsity: final val loss vs training FLOPs.

    python benchmarks/sparse_pareto.py [--quick] [--out DIR] [--no-lr-rule] [--update-every N]

Real `growkit.train` runs on the bundled corpus: dense GPT-2 models of three widths, and a wider model at
density 0.1 (static and dynamic prune-and-regrow, blocks 1 and 16) whose sparse-aware FLOPs are comparable to
the middle dense model's. Same data order and token budget for every run, each LR schedule fully decayed at
its end. The definitions (``dynamic_flops_to_dense_loss``: FLOPs of the best dynamic run / dense FLOPs at the
same loss, interpolated in log-FLOPs, never extrapolated) are in `growkit.bench.sparse_pareto`.

Prints a table, writes ``results.json`` and ``loss_vs_flops.png`` to ``--out`` (finished runs there with the
identical config are reused: an interrupted run continues), and prints ``dynamic_flops_to_dense_loss: <value>``
last. ``--quick``: a smaller version (2 layers, context 64; ≤ 10 min on 2 quiet cores).
"""

from __future__ import annotations

import argparse

from growkit.bench.sparse_pareto import PRESETS, run_pareto


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small version (≤ 10 min)")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="a preset by name (overrides --quick)")
    ap.add_argument("--out", help="output folder (default: runs/bench-sparse-pareto[-quick])")
    ap.add_argument("--no-lr-rule", action="store_true", help="sparse runs use the dense LR (no sparse LR rule)")
    ap.add_argument("--update-every", type=int, help="steps between prune-and-regrow updates (preset's otherwise)")
    args = ap.parse_args()
    preset = args.preset or ("quick" if args.quick else "full")
    out = args.out or ("runs/bench-sparse-pareto" + ("" if preset == "full" else f"-{preset}"))
    overrides: dict[str, object] = {}
    if args.no_lr_rule:
        overrides["sparse_lr_rule"] = False
    if args.update_every is not None:
        overrides["update_every"] = args.update_every
    run_pareto(out, preset, **overrides)


if __name__ == "__main__":
    main()
