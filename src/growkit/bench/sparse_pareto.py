"""Dense vs static sparse vs dynamic sparse pre-training: final val loss against training FLOPs.

The experiment of Dietrich et al. (arXiv 2108.06277, Fig. 1 / Table 1) on the bundled corpus, with real
`growkit.train` runs:

- **dense**: GPT-2 models of three widths (same depth, 32-wide heads, FFN 4×) from scratch;
- **static** and **dynamic** sparse: one larger model (``sparse_width``) whose block weights are at
  ``density`` (0.1: 90 % sparse), so that its sparse-aware training FLOPs are comparable to the middle
  dense model's — the paper's "sparse model of a bigger hidden size". Static keeps its initial random
  pattern; dynamic prunes and regrows (`growkit.sparse`) every ``update_every`` steps. Each at block 1
  (unstructured) and 16 (16×16 tiles).

Every run has the same data in the same order (batches are pure functions of the step and seed), the same
token budget, the same optimizer and LR shape, each with its own cosine schedule fully decayed at the end
of its budget. Sparse runs use the sparse LR rule η(s) = η_dense · exp(1.969 s² + 0.2905 s) (``--no-lr-rule``
turns it off). The byte tokenizer is used so that the embedding and LM head — dense in every model — do not
dominate the FLOPs of these small models (with the 8k BPE vocabulary the sparse model's dense LM head alone
costs more than the whole middle dense model). FLOPs are the trainer's sparse-aware training FLOPs (each
block projection counts its active weights only; attention, embeddings and the head count dense; see
`growkit.flops`), as logged in ``metrics.jsonl``.

**Headline** ``dynamic_flops_to_dense_loss``: for a sparse run ending at (F, ℓ), ``F / F_dense(ℓ)``, where
``F_dense(ℓ)`` interpolates the dense models' final points (Pareto-filtered: a dense point with more FLOPs
and no lower loss is dropped) linearly in (loss, log FLOPs) — `growkit.bench.frontier.frontier_cost`. Below
1: the sparse run reaches that loss with fewer FLOPs than dense training. Never extrapolated: a loss below
every dense point gives an upper bound ``≤ F / F_largest`` (dense would need more than its largest run); a
loss above every dense point is "not reached", with the lower bound ``≥ F / F_smallest``. The headline is
the smallest ratio over the dynamic runs (the paper's goal: ≤ 0.5).

**Dynamic vs static at equal FLOPs**: per block size, the two runs share model, density and budget, so
their FLOPs are equal (checked); reported as Δloss = ℓ_dynamic − ℓ_static (< 0: dynamic is better).

Output in ``--out``: one run dir per run (a finished run with the identical config is reused, so an
interrupted benchmark continues), ``results.json``, ``loss_vs_flops.png``; a table on stdout whose last
line is ``dynamic_flops_to_dense_loss: <value>``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from growkit.bench.frontier import Point, frontier_cost
from growkit.bench.schedules import Preset as SpeedupPreset
from growkit.bench.schedules import Schedule, run_dict
from growkit.bench.speedup import (
    RunResult,
    RunSpec,
    execute,
    plan_run,
    preset_threads,
    read_result,
    resolved_now,
)
from growkit.errors import GrowkitError

RESULTS_FILE = "results.json"
PLOT_FILE = "loss_vs_flops.png"
HEADLINE = "dynamic_flops_to_dense_loss"
HEAD_WIDTH = 32
"""Width of one attention head in every model (n_heads = width / 32)."""


# -- the math ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ratio:
    """A run's FLOPs relative to dense training at the run's loss.

    ``status``: ``"interpolated"`` (``value`` is the ratio), ``"upper bound"`` (the loss is below every dense
    point: the ratio is at most ``value``) or ``"not reached"`` (the loss is above every dense point: the ratio
    is at least ``value``). ``dense_flops``: the dense FLOPs used (interpolated, or the bounding dense run's)."""

    value: float
    status: str
    dense_flops: float

    def __str__(self) -> str:
        if self.status == "upper bound":
            return f"≤{self.value:.3f}"
        if self.status == "not reached":
            return f"not reached (≥{self.value:.3f})"
        return f"{self.value:.3f}"


def flops_to_dense_loss(dense: Sequence[Point], run: Point) -> Ratio:
    """``run.flops / F_dense(run.loss)`` (see the module docstring); never extrapolates."""
    m = frontier_cost(dense, run.loss)
    status = {None: "interpolated", "above": "upper bound", "below": "not reached"}[m.bound]
    return Ratio(run.flops / m.flops, status, m.flops)


def best_ratio(ratios: dict[str, Ratio]) -> tuple[str, Ratio]:
    """The run with the smallest ratio (reached ones before "not reached" ones)."""
    if not ratios:
        raise GrowkitError("no dynamic sparse runs: the headline needs at least one")
    name = min(ratios, key=lambda n: (ratios[n].status == "not reached", ratios[n].value))
    return name, ratios[name]


@dataclass(frozen=True)
class Pair:
    """Dynamic vs static sparse at one block size (same model, density, budget: equal FLOPs)."""

    block: int
    flops_static: float
    flops_dynamic: float
    loss_static: float
    loss_dynamic: float

    @property
    def delta(self) -> float:
        """ℓ_dynamic − ℓ_static: below 0, dynamic is better at equal FLOPs."""
        return self.loss_dynamic - self.loss_static

    @property
    def flops_rel_diff(self) -> float:
        return abs(self.flops_dynamic - self.flops_static) / max(self.flops_static, 1e-30)


def pair(block: int, static: Point, dynamic: Point, tol: float = 0.01) -> Pair:
    """The equal-FLOPs comparison; a `GrowkitError` when the FLOPs differ by more than ``tol``."""
    p = Pair(block, static.flops, dynamic.flops, static.loss, dynamic.loss)
    if p.flops_rel_diff > tol:
        raise GrowkitError(f"static and dynamic sparse runs at block {block} differ in FLOPs by "
                           f"{p.flops_rel_diff:.1%}: they are not an equal-FLOPs pair (same model and density?)")
    return p


# -- the runs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParetoPreset:
    """Sizes and budget of one version of the benchmark."""

    name: str
    n_layers: int
    dense_widths: tuple[int, ...]
    sparse_width: int
    seq_len: int
    steps: int
    """Optimizer steps of every run (the token budget is steps × batch_size × seq_len)."""
    batch_size: int
    lr: float
    warmup_steps: int
    update_every: int
    eval_batches: int
    evals_per_run: int
    density: float = 0.1
    blocks: tuple[int, ...] = (1, 16)
    sparse_lr_rule: bool = True
    dtype: str = "auto"
    seed: int = 0
    threads: int | None = None
    """None: the cores this process may use (`growkit.train.hardware.default_threads`)."""

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    def speedup_preset(self) -> SpeedupPreset:
        """The run settings in `growkit.bench.schedules.Preset` form, for its `run_dict`."""
        w = self.sparse_width
        return SpeedupPreset(name=f"pareto-{self.name}", n_layers=self.n_layers, d_model=w, n_heads=w // HEAD_WIDTH,
                             d_ff=4 * w, seq_len=self.seq_len, tokens=self.tokens, batch_size=self.batch_size,
                             lr=self.lr, warmup_steps=self.warmup_steps, ramp_steps=0,
                             eval_batches=self.eval_batches, evals_per_run=self.evals_per_run, dtype=self.dtype,
                             seed=self.seed, threads=self.threads)


#: 4 layers, context 128: dense 128/256/384 wide, sparse 384 wide (0.1 × 384² ≈ 0.9 × 128²). ~0.9M tokens.
FULL = ParetoPreset(name="full", n_layers=4, dense_widths=(128, 256, 384), sparse_width=384, seq_len=128,
                    steps=450, batch_size=16, lr=2e-3, warmup_steps=30, update_every=25, eval_batches=8,
                    evals_per_run=4)
#: ``--quick``: 2 layers, context 64: dense 64/128/256, sparse 192 (0.1 × 192² ≈ 0.9 × 64²). ~0.4M tokens,
#: one thread. (Dense 32 wide, 2.518, was dropped: the sparse runs beat dense 128, so the range had to go up.)
QUICK = ParetoPreset(name="quick", n_layers=2, dense_widths=(64, 128, 256), sparse_width=192, seq_len=64,
                     steps=400, batch_size=16, lr=3e-3, warmup_steps=20, update_every=20, eval_batches=8,
                     evals_per_run=4, threads=1)
#: For tests: seconds in all.
MICRO = ParetoPreset(name="micro", n_layers=1, dense_widths=(16, 32, 48), sparse_width=64, seq_len=16, steps=12,
                     batch_size=4, lr=3e-3, warmup_steps=2, update_every=4, eval_batches=1, evals_per_run=1,
                     threads=1)
PRESETS = {p.name: p for p in (FULL, QUICK, MICRO)}


def _model(width: int, n_layers: int) -> dict[str, Any]:
    return {"arch": "gpt2", "n_layers": n_layers, "d_model": width, "n_heads": max(1, width // HEAD_WIDTH),
            "d_ff": 4 * width}


@dataclass(frozen=True)
class Variant:
    """One run of the benchmark: ``kind`` is dense, static or dynamic; ``block`` None for dense."""

    name: str
    kind: str
    width: int
    block: int | None = None


def variants(p: ParetoPreset) -> list[Variant]:
    """Dense runs (smallest first), then static and dynamic sparse per block size."""
    out = [Variant(f"dense-{w}", "dense", w) for w in sorted(p.dense_widths)]
    for b in p.blocks:
        out += [Variant(f"{kind}-b{b}", kind, p.sparse_width, b) for kind in ("static", "dynamic")]
    return out


def run_config(p: ParetoPreset, v: Variant, run_dir: str) -> dict[str, Any]:
    """The full ``RunConfig`` dict of variant ``v`` (`growkit.bench.schedules.run_dict` plus ``[sparsity]``)."""
    sched = Schedule(v.name, v.name, _model(v.width, p.n_layers), data={"tokenizer": "byte"})
    cfg = run_dict(p.speedup_preset(), sched, 1.0, run_dir)
    cfg["run"]["eval_every"] = max(1, math.ceil(p.steps / p.evals_per_run))
    if v.kind != "dense":
        cfg["sparsity"] = {"density": p.density, "block": v.block, "static": v.kind == "static",
                           "sparse_lr_rule": p.sparse_lr_rule, "seed": p.seed}
        if v.kind == "dynamic":  # static runs do not depend on it: they stay reusable when it changes
            cfg["sparsity"]["update_every"] = p.update_every
    return cfg


def sparse_flops(cfg: dict[str, Any], vocab_size: int) -> float:
    """Planned sparse-aware training FLOPs of a run config (exact: masks keep their counts)."""
    from growkit.flops import training_flops_per_token
    from growkit.train import RunConfig

    mcfg = RunConfig.from_dict(cfg).model_config(vocab_size)
    density = cfg.get("sparsity", {}).get("density", 1.0)
    tokens = cfg["train"]["max_tokens"]
    return training_flops_per_token(mcfg, cfg["data"]["seq_len"], density) * tokens


def plan(p: ParetoPreset, out: Path, vocab_size: int) -> list[tuple[Variant, RunSpec]]:
    specs = []
    for v in variants(p):
        cfg = run_config(p, v, str(out / v.name))
        pl = plan_run(cfg, vocab_size)
        pl = replace(pl, flops=sparse_flops(cfg, vocab_size))
        specs.append((v, RunSpec(v.name, v.kind, 1.0, cfg, pl, preset_threads(p.threads))))
    return specs


# -- reporting -----------------------------------------------------------------------------------------
def summarize(runs: Sequence[tuple[Variant, RunResult]]) -> dict[str, Any]:
    """Ratios to dense per sparse run, the headline and the static/dynamic pairs."""
    dense = [r.end for v, r in runs if v.kind == "dense"]
    if not dense:
        raise GrowkitError("no dense runs: the dense frontier is needed for any ratio")
    ratios = {v.name: flops_to_dense_loss(dense, r.end) for v, r in runs if v.kind != "dense"}
    dynamic = {n: x for n, x in ratios.items() if n.startswith("dynamic")}
    best_name, best = best_ratio(dynamic)
    ends = {v.name: r.end for v, r in runs}
    blocks = sorted({v.block for v, _ in runs if v.block is not None})
    pairs = [pair(b, ends[f"static-b{b}"], ends[f"dynamic-b{b}"]) for b in blocks
             if f"static-b{b}" in ends and f"dynamic-b{b}" in ends]
    return {"dense_frontier": [asdict(pt) for pt in dense], "ratios": ratios, "best": best_name,
            "headline": best, "pairs": pairs}


def format_table(p: ParetoPreset, runs: Sequence[tuple[Variant, RunResult]], summary: dict[str, Any]) -> str:
    rows = ["| run | model | block | density | val loss | FLOPs (sparse-aware) | dense-equiv. FLOPs | "
            "FLOPs / dense at equal loss | params |",
            "|---|---|---|---|---|---|---|---|---|"]
    for v, r in runs:
        ratio = summary["ratios"].get(v.name)
        dens = 1.0 if v.kind == "dense" else p.density
        rows.append(f"| {v.name} | {p.n_layers}L×{v.width} | {v.block or '—'} | {dens:g} | {r.end.loss:.4f} | "
                    f"{r.end.flops:.3g} | {r.extra.get('flops_dense') or r.end.flops:.3g} | "
                    f"{'—' if ratio is None else ratio} | {r.params:,} |")
    rows += ["", "dynamic vs static sparse at equal FLOPs (Δ = dynamic − static; < 0: dynamic better)",
             "| block | FLOPs | static loss | dynamic loss | Δ loss |", "|---|---|---|---|---|"]
    for pr in summary["pairs"]:
        rows.append(f"| {pr.block} | {pr.flops_dynamic:.3g} | {pr.loss_static:.4f} | {pr.loss_dynamic:.4f} | "
                    f"{pr.delta:+.4f} |")
    rows.append(f"\nbest dynamic run: {summary['best']} ({summary['headline'].status})")
    return "\n".join(rows)


def plot(p: ParetoPreset, runs: Sequence[tuple[Variant, RunResult]], path: Path) -> Path:
    """Final val loss vs training FLOPs (log x): the dense frontier, and each sparse run's eval curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"static": "tab:blue", "dynamic": "tab:red"}
    marks = {1: "o", 4: "v", 8: "^", 16: "D"}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    dense = sorted(((v, r) for v, r in runs if v.kind == "dense"), key=lambda x: x[1].end.flops)
    for v, r in dense:
        pts = [pt for pt in r.curve if pt.flops > 0]
        ax.plot([pt.flops for pt in pts], [pt.loss for pt in pts], color="gray", lw=0.8, ls=":")
        ax.annotate(f"{p.n_layers}L×{v.width}", (r.end.flops, r.end.loss), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    ax.plot([r.end.flops for _, r in dense], [r.end.loss for _, r in dense], "s-", color="black", ms=7, lw=2,
            label="dense (final points)", zorder=5)
    for v, r in runs:
        if v.kind == "dense":
            continue
        pts = [pt for pt in r.curve if pt.flops > 0]
        ax.plot([pt.flops for pt in pts], [pt.loss for pt in pts], color=colors[v.kind], lw=0.8, alpha=0.5,
                ls="-" if v.block == 1 else "--")
        ax.plot(r.end.flops, r.end.loss, marks.get(v.block or 1, "o"), color=colors[v.kind], ms=7, zorder=6,
                label=f"{v.kind} sparse, {p.n_layers}L×{v.width}, block {v.block}, density {p.density:g}")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (sparse-aware)")
    ax.set_ylabel("validation loss (nats/byte)")
    ends = [r.end.loss for _, r in runs]
    ax.set_ylim(min(ends) - 0.1, max(ends) + 0.5)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(f"growkit sparse pareto ({p.name}): {p.tokens:,} tokens per run, each LR fully decayed",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_pareto(out: str | Path, preset: str | ParetoPreset = "full", log: Callable[[str], None] = print,
               **overrides: Any) -> dict[str, Any]:
    """Run (or reuse) every run in ``out``, write results.json and the plot, print the table; returns the
    results dict. ``overrides``: `ParetoPreset` fields to change (e.g. ``update_every=100``)."""
    import json

    from growkit.data import load_tokenizer
    from growkit.train.hardware import machine

    p = PRESETS[preset] if isinstance(preset, str) else preset
    unknown = sorted(set(overrides) - {f.name for f in fields(ParetoPreset)})
    if unknown:
        raise GrowkitError(f"unknown preset field(s) {', '.join(unknown)}: choose from "
                           f"{', '.join(f.name for f in fields(ParetoPreset))}")
    p = replace(p, **overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = load_tokenizer("byte").vocab_size
    specs = plan(p, out, vocab)
    dense_fl = [s.plan.flops for v, s in specs if v.kind == "dense"]
    log(f"growkit sparse pareto: preset {p.name!r} — {p.n_layers}-layer GPT-2, byte tokenizer, context "
        f"{p.seq_len}, {p.tokens:,} tokens ({p.steps} steps) per run; dense widths "
        f"{', '.join(map(str, sorted(p.dense_widths)))} ({min(dense_fl):.3g}–{max(dense_fl):.3g} FLOPs), "
        f"sparse width {p.sparse_width} at density {p.density:g} "
        f"({next(s.plan.flops for v, s in specs if v.kind != 'dense'):.3g} FLOPs), blocks "
        f"{', '.join(map(str, p.blocks))}, update every {p.update_every} steps, sparse LR rule "
        f"{'on' if p.sparse_lr_rule else 'off'}, "
        f"{resolved_now(specs[0][1].config, specs[0][1].threads).summary()}; out: {out}")
    started = time.perf_counter()
    runs: list[tuple[Variant, RunResult]] = []
    for i, (v, spec) in enumerate(specs, 1):
        t0 = time.perf_counter()
        reused = execute(spec)
        r = read_result(spec, reused)
        r.extra["flops_dense"] = _final_dense_flops(Path(spec.config["run"]["dir"]))
        runs.append((v, r))
        log(f"[{i}/{len(specs)}] {v.name}: {r.tokens:,} tokens, {r.end.flops:.3g} FLOPs, val loss "
            f"{r.end.loss:.4f} ({'reused' if reused else f'{time.perf_counter() - t0:.0f} s'})")
    summary = summarize(runs)
    table = format_table(p, runs, summary)
    png = plot(p, runs, out / PLOT_FILE)
    head: Ratio = summary["headline"]
    data = {
        "benchmark": "growkit sparse pareto",
        "preset": asdict(p),
        "definition": "ratio = sparse run FLOPs / dense FLOPs at the run's final val loss (dense final points, "
                      "Pareto-filtered, interpolated linearly in (loss, log FLOPs); no extrapolation)",
        "runs": [{"name": v.name, "kind": v.kind, "width": v.width, "block": v.block,
                  "density": 1.0 if v.kind == "dense" else p.density, "final_val_loss": r.end.loss,
                  "flops": r.end.flops, "params": r.params, "tokens": r.tokens, "reused": r.reused,
                  "ratio_to_dense": asdict(summary["ratios"][v.name]) if v.name in summary["ratios"] else None,
                  **r.extra, "curve": [asdict(pt) for pt in r.curve]} for v, r in runs],
        "dense_frontier": summary["dense_frontier"],
        "pairs": [{**asdict(pr), "delta": pr.delta} for pr in summary["pairs"]],
        "best_dynamic": summary["best"],
        HEADLINE: {**asdict(head), "text": str(head)},
        "benchmark_wall_s": time.perf_counter() - started,
        "hardware": machine(),
        "plot": str(png),
    }
    (out / RESULTS_FILE).write_text(json.dumps(data, indent=1))
    log("")
    log(table)
    log("")
    log(f"plot: {png}")
    log(f"results: {out / RESULTS_FILE}")
    log(f"{HEADLINE}: {head}")
    return data


def _final_dense_flops(run_dir: Path) -> float | None:
    """The dense-equivalent FLOPs the trainer logged with the last evaluation (None for a dense run)."""
    from growkit.train.metrics import METRICS_FILE, read_jsonl

    evals = [r for r in read_jsonl(run_dir / METRICS_FILE) if "val_loss" in r]
    return evals[-1].get("flops_dense") if evals else None
