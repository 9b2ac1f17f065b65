"""Per-layer speed of block-sparse (BSR) matmuls against dense ones, CPU fp32.

One linear layer, W of shape (n_out × n_in) = 3072 × 768 (BERT-base FFN) by default, ``--tokens`` rows of
input. For each block size b ∈ {4, 8, 16} and sparsity s ∈ {50, 75, 90, 95}% a random block mask with
exactly round((1 − s) · blocks) active blocks; timed per configuration:

- dense: the two matmuls masked-dense training does, forward y = x Wᵀ and input gradient dx = dy W;
- BSR: the same two products with `growkit.sparse.kernels` (``torch.mm`` of a ``to_sparse_bsr`` weight
  and its transpose, built once outside the timing; their one-off conversion cost is reported apart).

Rounds are interleaved in one process (dense then BSR, then BSR then dense, …, every configuration in each
round); each timing is the median of ``--inner`` calls, and a configuration's speedup is the median over
rounds of t_dense / t_bsr (> 1: BSR is faster). The headline ``bsr_speedup_90`` is b = 16, s = 90%
(goal ≥ 2). Outputs are checked against dense (max |Δ| printed).

    python benchmarks/sparse_kernels.py [--tokens 2048 --rounds 5 --inner 3 --threads N --quick]

Prints a table, writes JSON to ``--out`` and prints ``bsr_speedup_90: <value>`` last.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from growkit.sparse.kernels import bsr_forward, bsr_input_grad, to_bsr

BLOCKS = (4, 8, 16)
SPARSITIES = (0.5, 0.75, 0.9, 0.95)


def block_sparse_weight(n_out: int, n_in: int, block: int, sparsity: float, gen: torch.Generator) -> torch.Tensor:
    """A random weight with exactly round((1 − sparsity) · blocks) non-zero b × b blocks."""
    rows, cols = n_out // block, n_in // block
    active = round((1 - sparsity) * rows * cols)
    mask = torch.zeros(rows * cols, dtype=torch.bool)
    mask[torch.randperm(rows * cols, generator=gen)[:active]] = True
    mask = mask.view(rows, cols).repeat_interleave(block, 0).repeat_interleave(block, 1)
    return torch.randn(n_out, n_in, generator=gen) * mask


def timed(fn: Callable[[], Any], inner: int) -> float:
    """Median seconds of ``inner`` calls."""
    times = []
    for _ in range(inner):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-out", type=int, default=3072)
    ap.add_argument("--n-in", type=int, default=768)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="headline configuration only, 3 rounds")
    ap.add_argument("--out", default="benchmarks/results/sparse_kernels.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse BSR tensor support is in beta")
    configs = [(16, 0.9)] if args.quick else [(b, s) for b in BLOCKS for s in SPARSITIES]
    rounds = 3 if args.quick else args.rounds
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.tokens, args.n_in, generator=gen)
    dy = torch.randn(args.tokens, args.n_out, generator=gen)

    cases: dict[tuple[int, float], dict[str, Any]] = {}
    for block, sparsity in configs:
        w = block_sparse_weight(args.n_out, args.n_in, block, sparsity, gen)
        start = time.perf_counter()
        w_bsr, wt_bsr = to_bsr(w, block)
        convert = time.perf_counter() - start

        def dense(w: torch.Tensor = w) -> None:
            x @ w.t()
            dy @ w

        def bsr(w_bsr: torch.Tensor = w_bsr, wt_bsr: torch.Tensor = wt_bsr) -> None:
            bsr_forward(x, w_bsr)
            bsr_input_grad(dy, wt_bsr)

        err = max(float((bsr_forward(x, w_bsr) - x @ w.t()).abs().max()),
                  float((bsr_input_grad(dy, wt_bsr) - dy @ w).abs().max()))
        dense(), bsr()  # warm-up
        cases[(block, sparsity)] = {"dense": dense, "bsr": bsr, "t_dense": [], "t_bsr": [], "ratios": [],
                                    "convert_s": convert, "max_abs_err": err}

    for r in range(rounds):  # interleaved: every configuration in every round, the order alternating
        for case in cases.values():
            order = ("dense", "bsr") if r % 2 == 0 else ("bsr", "dense")
            t = {name: timed(case[name], args.inner) for name in order}
            case["t_dense"].append(t["dense"])
            case["t_bsr"].append(t["bsr"])
            case["ratios"].append(t["dense"] / t["bsr"])

    print(f"W {args.n_out}×{args.n_in}, {args.tokens} tokens, forward + input gradient, fp32, "
          f"{torch.get_num_threads()} threads, {rounds} interleaved rounds × {args.inner} calls")
    print(f"{'block':>5} {'sparsity':>8} {'dense ms':>9} {'BSR ms':>8} {'speedup':>8} {'to_bsr ms':>9} {'max|Δ|':>8}")
    rows = []
    for (block, sparsity), case in cases.items():
        row = {"block": block, "sparsity": sparsity, "dense_ms": 1e3 * statistics.median(case["t_dense"]),
               "bsr_ms": 1e3 * statistics.median(case["t_bsr"]), "speedup": statistics.median(case["ratios"]),
               "speedup_rounds": case["ratios"], "convert_ms": 1e3 * case["convert_s"],
               "max_abs_err": case["max_abs_err"]}
        rows.append(row)
        print(f"{block:>5} {sparsity:>8.0%} {row['dense_ms']:>9.2f} {row['bsr_ms']:>8.2f} {row['speedup']:>7.2f}× "
              f"{row['convert_ms']:>9.2f} {row['max_abs_err']:>8.1e}")
    headline = next(r["speedup"] for r in rows if r["block"] == 16 and r["sparsity"] == 0.9)
    out = {"benchmark": "sparse_kernels", "bsr_speedup_90": headline, "rows": rows,
           "shape": [args.n_out, args.n_in], "tokens": args.tokens, "rounds": rounds, "inner": args.inner,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or
           platform.machine(), "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    verdict = ("BSR is faster than dense here" if headline >= 1.0 else
               "BSR is slower than dense here: training keeps masked dense matmuls")
    print(f"headline (16×16 blocks, 90% sparsity): {headline:.2f}× — {verdict}")
    print(f"bsr_speedup_90: {headline:.3f}")


if __name__ == "__main__":
    main()
