"""Per-layer speed of sparse linear layouts against dense, on this CPU: forward, input and weight gradient.

One linear layer W (n_out × n_in), 3072 × 768 and 768 × 3072 (a GPT/BERT-base MLP), ``--tokens`` rows of
input, density 0.1 (90% sparse), fp32 and bf16. For each layout a random pattern at that density; timed
separately, each the median of ``--inner`` calls:

- dense: forward y = x Wᵀ, input gradient dx = dy W, weight gradient dW = dyᵀ x (what masked-dense
  training runs);
- ``fanin-b{b}``: the constant fan-in (condensed) layout of `growkit.sparse.layout` with b × b blocks
  (k = round(0.1 · n_in / b) blocks per block-row, so the density is k·b/n_in, stated per row): gather +
  matmul per block-row for all three products (dW of the active blocks only);
- ``bsr-b{b}``: torch's BSR × dense (`growkit.sparse.kernels`, forward and input gradient; the weight
  gradient has no BSR kernel, so it is the dense dyᵀ x, as a BSR-trained layer would run it);
- ``csr-b1``: torch's CSR × dense (MKL) for unstructured sparsity, the same way.

Rounds are interleaved in one process (every case in every round, dense and sparse in alternating order);
a case's speedup is the median over rounds of t_dense / t_sparse (> 1: sparse is faster), for each product
and for their sum (fwd + bwd). Every layout's three products are checked against the masked dense ones
first (max |Δ| relative to max |dense| in the JSON). Layouts torch cannot run in a dtype are recorded as
unsupported.

The headline ``sparse_linear_speedup_90`` is fwd + bwd of an MLP's two layers (3072 × 768 and 768 × 3072,
fp32) with the fastest layout that prune-and-regrow keeps (the constant fan-in ones:
``SparsityConfig(layout="constant_fan_in")``) at a density of at least the one asked (5 % rounding allowed):
Σ dense time / Σ sparse time over both shapes, one layout for both. (At b ≥ 32 a 768-wide input has 24 or
12 blocks per row, so density 0.1 rounds to 0.083: those rows are in the table, not in the headline.)

    python benchmarks/sparse_kernels.py [--threads 1 --rounds 5 --inner 3 --quick --out FILE]

``--quick`` (< 30 s): both shapes, fp32, dense vs ``fanin-b16`` only, 3 rounds. Prints a table, writes JSON to
``--out`` and prints ``sparse_linear_speedup_90: <value>`` last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from growkit.sparse.kernels import bsr_forward, bsr_input_grad, to_bsr
from growkit.sparse.layout import (
    condensed_forward,
    condensed_input_grad,
    condensed_weight_grad,
    fan_in,
    random_indices,
    to_dense,
)
from growkit.sparse.masks import expand
from growkit.train.hardware import cpu_info

SHAPES = ((3072, 768), (768, 3072))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
FANIN_BLOCKS = (1, 4, 8, 16, 32, 64)
BSR_BLOCKS = (16, 32)
OPS = ("fwd", "dx", "dw")

Products = dict[str, Callable[[], torch.Tensor]]


@dataclass
class Case:
    shape: tuple[int, int]
    dtype: str
    layout: str
    density: float
    dense: Products
    sparse: Products
    prune_regrow: bool
    rel_err: float = 0.0
    times: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {"dense": {}, "sparse": {}})


def cpu_model() -> str:
    """The CPU's model name (`growkit.train.hardware.cpu_info`)."""
    return cpu_info().model


def cpu_features() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags.split(":", 1)[1].split() if f.startswith(("avx512f", "avx512_bf16", "amx")))


def timed(fn: Callable[[], Any], inner: int) -> float:
    """Median seconds of ``inner`` calls."""
    times = []
    for _ in range(inner):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dense_products(x: torch.Tensor, dy: torch.Tensor, w: torch.Tensor) -> Products:
    return {"fwd": lambda: x @ w.t(), "dx": lambda: dy @ w, "dw": lambda: dy.t() @ x}


def fanin_case(x: torch.Tensor, dy: torch.Tensor, block: int, density: float,
               gen: torch.Generator) -> tuple[torch.Tensor, Products, Products, Products]:
    """(the dense weight, the timed products, the same as dense tensors, the masked dense references): dW
    timed condensed (active blocks only), checked expanded to the dense shape."""
    n_in, n_out = x.shape[1], dy.shape[1]
    rows, cols = n_out // block, n_in // block
    idx = random_indices(rows, cols, fan_in(cols, density), gen)
    values = torch.randn(rows, block, idx.shape[1] * block, generator=gen).to(x.dtype)
    timed_products: Products = {"fwd": lambda: condensed_forward(x, values, idx),
                                "dx": lambda: condensed_input_grad(dy, values, idx, n_in),
                                "dw": lambda: condensed_weight_grad(x, dy, idx, block)}
    check = dict(timed_products, dw=lambda: to_dense(condensed_weight_grad(x, dy, idx, block), idx, n_in))
    w = to_dense(values, idx, n_in)
    reference = dict(dense_products(x, dy, w), dw=lambda: (dy.t() @ x) * (w != 0))  # dW of the active weights
    return w, timed_products, check, reference


def compressed_case(x: torch.Tensor, dy: torch.Tensor, w: torch.Tensor, block: int) -> Products:
    """torch BSR (block > 1) or CSR (block 1) forward and input gradient; dense weight gradient."""
    if block == 1:
        w_s, wt_s = w.to_sparse_csr(), w.t().contiguous().to_sparse_csr()
    else:
        w_s, wt_s = to_bsr(w, block)
    return {"fwd": lambda: bsr_forward(x, w_s), "dx": lambda: bsr_input_grad(dy, wt_s), "dw": lambda: dy.t() @ x}


def random_block_weight(n_out: int, n_in: int, block: int, density: float, gen: torch.Generator) -> torch.Tensor:
    rows, cols = n_out // block, n_in // block
    mask = torch.zeros(rows * cols, dtype=torch.bool)
    mask[torch.randperm(rows * cols, generator=gen)[:round(density * rows * cols)]] = True
    return torch.randn(n_out, n_in, generator=gen) * expand(mask.view(rows, cols), block)


def rel_err(products: Products, reference: Products) -> float:
    worst = 0.0
    for op in OPS:
        ref = reference[op]().double()
        worst = max(worst, float((products[op]().double() - ref).abs().max() / ref.abs().max()))
    return worst


def build_cases(args: argparse.Namespace, gen: torch.Generator) -> list[Case]:
    shapes = SHAPES
    dtypes = ["fp32"] if args.quick else list(DTYPES)
    fanin_blocks = (16,) if args.quick else FANIN_BLOCKS
    bsr_blocks = () if args.quick else (*BSR_BLOCKS, 1)
    cases = []
    for n_out, n_in in shapes:
        for dname in dtypes:
            dt = DTYPES[dname]
            x = torch.randn(args.tokens, n_in, generator=gen).to(dt)
            dy = torch.randn(args.tokens, n_out, generator=gen).to(dt)
            for b in fanin_blocks:
                if n_in % b or n_out % b:
                    continue
                w, prods, check, reference = fanin_case(x, dy, b, args.density, gen)
                case = Case((n_out, n_in), dname, f"fanin-b{b}", fan_in(n_in // b, args.density) * b / n_in,
                            dense_products(x, dy, w), prods, prune_regrow=True)
                case.rel_err = rel_err(check, reference)
                cases.append(case)
            for b in bsr_blocks:
                w = random_block_weight(n_out, n_in, b, args.density, gen).to(dt)
                name = "csr-b1" if b == 1 else f"bsr-b{b}"
                try:
                    prods = compressed_case(x, dy, w, b)
                    err = rel_err(prods, dense_products(x, dy, w))
                except (RuntimeError, NotImplementedError) as e:  # no kernel for this dtype
                    print(f"  {name} {dname}: unsupported ({str(e).splitlines()[0][:80]})")
                    continue
                case = Case((n_out, n_in), dname, name, args.density, dense_products(x, dy, w), prods,
                            prune_regrow=False, rel_err=err)
                cases.append(case)
    return cases


def run_rounds(cases: list[Case], rounds: int, inner: int) -> None:
    for case in cases:  # warm-up
        for prods in (case.dense, case.sparse):
            for op in OPS:
                prods[op]()
    for r in range(rounds):
        for case in cases:
            order = ("dense", "sparse") if r % 2 == 0 else ("sparse", "dense")
            for op in OPS:
                for side in order:
                    prods = case.dense if side == "dense" else case.sparse
                    case.times[side].setdefault(op, []).append(timed(prods[op], inner))


def summarise(case: Case) -> dict[str, Any]:
    td, ts = case.times["dense"], case.times["sparse"]
    n = len(td["fwd"])
    row: dict[str, Any] = {"shape": list(case.shape), "dtype": case.dtype, "layout": case.layout,
                           "density": case.density, "prune_regrow": case.prune_regrow, "max_rel_err": case.rel_err}
    for op in OPS:
        row[f"dense_{op}_ms"] = 1e3 * statistics.median(td[op])
        row[f"sparse_{op}_ms"] = 1e3 * statistics.median(ts[op])
        row[f"speedup_{op}"] = statistics.median(td[op][i] / ts[op][i] for i in range(n))
    totals = [sum(td[op][i] for op in OPS) / sum(ts[op][i] for op in OPS) for i in range(n)]
    row["speedup_fwd_bwd"] = statistics.median(totals)
    row["speedup_fwd_bwd_rounds"] = totals
    return row


def mlp_headline(rows: list[dict[str, Any]], density: float, dtype: str = "fp32") -> dict[str, Any]:
    """The fastest prune-and-regrow layout on both MLP shapes at ≥ 0.95 × ``density``: Σ dense / Σ sparse
    fwd + bwd milliseconds (each a median over rounds) over the two shapes."""
    by_layout: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["prune_regrow"] and r["dtype"] == dtype and r["density"] >= 0.95 * density:
            by_layout.setdefault(r["layout"], []).append(r)
    both = {k: v for k, v in by_layout.items() if len(v) == len(SHAPES)}
    if not both:
        raise SystemExit(f"no prune-and-regrow layout ran both shapes in {dtype} at density ≥ {0.95 * density:.3f}")

    def total(rs: list[dict[str, Any]], side: str) -> float:
        return sum(r[f"{side}_{op}_ms"] for r in rs for op in OPS)

    name = max(both, key=lambda k: total(both[k], "dense") / total(both[k], "sparse"))
    rs = both[name]
    return {"layout": name, "dtype": dtype, "shapes": [f"{r['shape'][0]}x{r['shape'][1]}" for r in rs],
            "densities": [r["density"] for r in rs], "dense_ms": total(rs, "dense"), "sparse_ms": total(rs, "sparse"),
            "speedup_fwd_bwd": total(rs, "dense") / total(rs, "sparse")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--quick", action="store_true", help="both shapes, fp32, dense vs fanin-b16, 3 rounds (< 30 s)")
    ap.add_argument("--out", default="benchmarks/results/sparse_kernels.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse (BSR|CSR) tensor support is in beta")
    gen = torch.Generator().manual_seed(0)
    cases = build_cases(args, gen)
    rounds = 3 if args.quick else args.rounds
    inner = 1 if args.quick else args.inner
    run_rounds(cases, rounds, inner)
    rows = [summarise(c) for c in cases]

    print(f"{args.tokens} tokens, density {args.density}, {torch.get_num_threads()} thread(s), {cpu_model()}, "
          f"{rounds} interleaved rounds × {inner} calls; times in ms (dense / sparse), speedup = dense / sparse")
    print(f"{'shape':>9} {'dtype':>5} {'layout':>10} {'dens':>5} {'fwd':>13} {'dx':>13} {'dW':>13} "
          f"{'fwd':>5} {'dx':>5} {'dW':>5} {'f+b':>5} {'relerr':>7}")
    for r in rows:
        times = " ".join(f"{r[f'dense_{op}_ms']:>6.1f}/{r[f'sparse_{op}_ms']:<6.1f}" for op in OPS)
        sp = " ".join(f"{r[f'speedup_{op}']:>5.2f}" for op in (*OPS, "fwd_bwd"))
        print(f"{r['shape'][0]:>4}×{r['shape'][1]:<4} {r['dtype']:>5} {r['layout']:>10} {r['density']:>5.3f} {times} "
              f"{sp} {r['max_rel_err']:>7.1e}")
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = f"{r['shape'][0]}x{r['shape'][1]}_{r['dtype']}"
        if r["prune_regrow"] and (key not in best or r["speedup_fwd_bwd"] > best[key]["speedup_fwd_bwd"]):
            best[key] = r
    for key, r in best.items():
        print(f"best prune-and-regrow layout, {key}: {r['layout']} (density {r['density']:.3f}) "
              f"{r['speedup_fwd_bwd']:.2f}× fwd+bwd")
    headline = mlp_headline(rows, args.density)
    out = {"benchmark": "sparse_kernels", "sparse_linear_speedup_90": headline["speedup_fwd_bwd"],
           "headline": headline,
           "best": {k: {"layout": r["layout"], "speedup_fwd_bwd": r["speedup_fwd_bwd"]} for k, r in best.items()},
           "rows": rows, "tokens": args.tokens, "target_density": args.density, "rounds": rounds, "inner": inner,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": cpu_model(),
           "cpu_features": cpu_features(), "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"headline: {headline['layout']} (densities {', '.join(f'{d:.3f}' for d in headline['densities'])}), "
          f"{' + '.join(headline['shapes'])} {headline['dtype']}, fwd + input grad + weight grad")
    print(f"sparse_linear_speedup_90: {headline['speedup_fwd_bwd']:.3f}")


if __name__ == "__main__":
    main()
