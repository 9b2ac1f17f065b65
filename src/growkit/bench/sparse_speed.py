"""Tables of the sparse speed benchmarks (`benchmarks/sparse_kernels.py`, `benchmarks/sparse_train_speed.py`),
made from their JSON alone so that the README's tables can be checked against the committed results."""

from __future__ import annotations

import statistics
from typing import Any

SHAPES = ("3072x768", "768x3072")
DTYPES = ("fp32", "bf16")


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return f"{row['shape'][0]}x{row['shape'][1]}", row["dtype"]


def format_kernels(data: dict[str, Any]) -> str:
    """Fwd + bwd speedup (dense time / sparse time: forward, input and weight gradient) of every layout, per
    shape and dtype, with each layout's density per shape; then the headline."""
    rows = {(r["layout"], *_key(r)): r for r in data["rows"]}
    layouts = list(dict.fromkeys(r["layout"] for r in data["rows"]))
    cols = [(s, d) for d in DTYPES for s in SHAPES]
    out = ["| layout | prune-and-regrow | density (" + " / ".join(s.replace("x", "×") for s in SHAPES) + ") | "
           + " | ".join(f"{s.replace('x', '×')} {d}" for s, d in cols) + " |",
           "|---|---|---|" + "---|" * len(cols)]
    for name in layouts:
        dens = [rows[(name, s, "fp32")]["density"] if (name, s, "fp32") in rows else None for s in SHAPES]
        cells = []
        for s, d in cols:
            r = rows.get((name, s, d))
            cells.append("unsupported" if r is None else f"{r['speedup_fwd_bwd']:.2f}×")
        regrow = "yes" if any(r["prune_regrow"] for k, r in rows.items() if k[0] == name) else "no"
        out.append(f"| {name} | {regrow} | " + " / ".join("—" if x is None else f"{x:.3f}" for x in dens) + " | "
                   + " | ".join(cells) + " |")
    h = data["headline"]
    dens = " / ".join(f"{x:.3f}" for x in h["densities"])
    out += ["", f"Headline: {h['layout']} on both shapes ({h['dtype']}, densities {dens}): {h['dense_ms']:.0f} ms "
                f"dense, {h['sparse_ms']:.0f} ms sparse for fwd + bwd of the pair — `sparse_linear_speedup_90: "
                f"{h['speedup_fwd_bwd']:.3f}`."]
    return "\n".join(out)


def format_steps(runs: list[dict[str, Any]]) -> str:
    """One row per `sparse_train_speed` run: block, density, step times (medians over rounds) of the dense
    model, the condensed model (`CondensedLinear`: only active weights are parameters) and `growkit train`'s
    condensed path (`growkit.sparse.fast_path`: dense masked parameters, condensed matmuls), and each one's
    speedup (the median over rounds of dense / it)."""
    out = ["| block | density of the sparse layers | dense step | condensed model | speedup | `growkit train`, "
           "kernel = condensed | speedup |", "|---|---|---|---|---|---|---|"]
    for d in runs:
        dense, sparse = statistics.median(d["dense_ms"]), statistics.median(d["sparse_ms"])
        trainer = statistics.median(d["trainer_ms"])
        out.append(f"| {d['block']}×{d['block']} | {d['density']:.3f} | {dense:.0f} ms | {sparse:.0f} ms "
                   f"| {d['sparse_step_speedup_90']:.2f}× | {trainer:.0f} ms | {d['trainer_step_speedup']:.2f}× |")
    return "\n".join(out)
