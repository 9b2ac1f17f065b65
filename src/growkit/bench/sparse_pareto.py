"""Dense vs static sparse vs dynamic sparse pre-training at equal FLOPs, against a *tuned* dense frontier.

The experiment of Dietrich et al. (arXiv 2108.06277, Fig. 1 / Table 1) on the bundled corpus, with real
`growkit.train` runs and the run machinery of the envelope benchmark (`growkit.bench.runner`: iso-FLOP
budgets in units of C, every run's LR decayed at its own budget, finished runs reused, ``jobs`` at a time):

1. **Dense.** GPT-2 models (byte tokenizer, 32-wide heads, FFN 4×) of ``dense_widths`` (same depth). Each
   width's peak LR is swept at ``sweep_level`` × C (`runner.sweep_lrs`: ½×, 1×, 2× of
   ``lr_ref · (64 / width)^½``, extended past a winning edge up to ``max_extend`` values); with the winner,
   each width runs at every iso-FLOP level ``dense_levels`` × C. The **dense frontier** is the lower convex
   hull (`growkit.bench.frontier.lower_hull`) of *every* dense run, in (log FLOPs, loss).
2. **Sparse.** One wider model (``sparse_width``) whose block weights are at ``density`` (0.1: 90% sparse),
   static (its initial random pattern) and dynamic (prune-and-regrow, `growkit.sparse`), at blocks
   ``blocks``, each trained for ``sparse_level`` × C sparse-aware FLOPs. Embeddings, norms and the head are
   dense and train at the dense LR of that width (`runner.lr_at` of the tuned dense LRs). The *sparse
   weights'* LR multiplier m gets the same sweep effort as a dense width: m ∈ {1, √R, R}, R = exp(1.969 s² +
   0.2905 s) the sparse LR rule (6.40 at s = 0.9), extended by ×√R past a winning edge; plus one more
   candidate, the rule on *every* parameter (the rule's original form). Each (static/dynamic, block) takes
   its own winner.
3. **Dynamic settings** follow Dietrich et al.: prune fraction pr(t) = pr_max · ½(1 + cos(π t / T)) over
   the whole run (``pr_max`` 0.5), magnitude pruning, random regrowth, updates at a fixed number
   ``n_updates`` per run (so the interval scales with the run's length). ``knobs`` are dynamic variants that
   may make prune-and-regrow pay at these sizes (`KNOBS`: fewer updates, RigL's gradient regrowth, no grace
   period), each at its block's tuned dynamic LR.
4. **Dynamic vs static** per block at equal FLOPs (same model, density, budget; checked to 1%):
   Δloss = ℓ_dynamic − ℓ_static (< 0: dynamic is better), for the tuned dynamic run and every knob.
5. **Headline** ``dynamic_flops_to_dense_loss``: for a dynamic run ending at (F, ℓ), F / F_dense(ℓ), with
   F_dense(ℓ) the dense frontier's FLOPs at loss ℓ (`frontier.envelope_cost`: interpolated linearly in
   (loss, log FLOPs) between the two hull points that bracket ℓ). Never extrapolated: a loss below every
   dense point gives an upper bound ``≤ F / F_best``; above every dense point, "not reached" ``≥ F / F_min``.
   The headline is the smallest ratio over the dynamic runs; that run and the dense hull points that bracket
   its loss are run with ``seeds`` seeds, and the headline is the ratio of the seed means (± half the range
   of the per-seed ratios). With ``seed_pairs`` the static/dynamic pairs get the seeds too.

Every run uses the LR shape ``lr_shape`` (warmup-stable-decay to zero: the envelope benchmark's winner).
FLOPs are the trainer's sparse-aware training FLOPs (each block projection counts its active weights only;
attention, embeddings and the head count dense; `growkit.flops`), and a sparse run's budget is in them.

Output in ``out``: ``runs/<run>`` (reused when finished with the identical config), ``results.json``,
``loss_vs_flops.png``; the tables (`format_tables`) on stdout, whose last line is
``dynamic_flops_to_dense_loss: <value>``.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from growkit.bench import runner
from growkit.bench.figures import loss_vs_flops_axes, save
from growkit.bench.frontier import Point, envelope_cost, lower_hull, mean_point, spread
from growkit.bench.runner import LR_SHAPES, Bench, Req, lr_at
from growkit.bench.schedules import Preset, Schedule
from growkit.bench.speedup import RunResult, resolved_now
from growkit.errors import GrowkitError
from growkit.sparse.config import SparsityConfig

RESULTS_FILE = "results.json"
PLOT_FILE = "loss_vs_flops.png"
HEADLINE = "dynamic_flops_to_dense_loss"
HEAD_WIDTH = 32
"""Width of one attention head in every model (n_heads = width / 32, at least 1)."""
KINDS = ("static", "dynamic")
#: Dynamic variants (``[sparsity]`` overrides on top of the tuned dynamic run) that may make it pay.
KNOBS: dict[str, dict[str, Any]] = {
    "few-updates": {"n_updates": 3},
    "gradient": {"regrow": "gradient"},
    "no-grace": {"grace_steps": 0},
}


# -- the math ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ratio:
    """A run's FLOPs relative to the dense frontier at the run's loss.

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
    """``run.flops / F_dense(run.loss)`` on the lower hull of ``dense`` (module docstring); never extrapolates."""
    m = envelope_cost(dense, run.loss)
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


def rule_factor(density: float) -> float:
    """The sparse LR rule's R at ``density`` (`SparsityConfig.rule_factor`)."""
    return SparsityConfig(density=density).rule_factor()


def bracket(hull: Sequence[Point], loss: float) -> list[Point]:
    """The hull points `envelope_cost` uses for ``loss``: the two that bracket it, or the bounding one."""
    if loss <= hull[-1].loss:
        return [hull[-1]]
    if loss >= hull[0].loss:
        return [hull[0]]
    return next([a, b] for a, b in itertools.pairwise(hull) if b.loss <= loss <= a.loss)


# -- the preset ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParetoPreset:
    """Sizes, budgets and settings of one version of the benchmark."""

    name: str
    n_layers: int
    dense_widths: tuple[int, ...]
    sparse_width: int
    flops: float
    """C: the budget unit, in (sparse-aware) training FLOPs."""
    dense_levels: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    sparse_level: float = 0.25
    sweep_level: float = 0.25
    """The level (× C) of the dense LR sweeps."""
    seq_len: int = 128
    batch_size: int = 16
    lr_ref: float = 4e-3
    """Centre of the dense LR sweep at width 64 (× (64 / width)^½ for other widths)."""
    max_extend: int = 1
    warmup_steps: int = 20
    eval_batches: int = 8
    evals_per_run: int = 4
    min_steps: int = 40
    """A dense cell with fewer optimizer steps than this is skipped (too short to mean anything)."""
    density: float = 0.1
    blocks: tuple[int, ...] = (1, 16)
    n_updates: int = 8
    pr_max: float = 0.5
    knobs: tuple[str, ...] = ("few-updates", "gradient")
    all_params_candidate: bool = True
    """Also try the sparse LR rule on every parameter (its original form) in each sparse LR sweep."""
    seeds: int = 2
    seed_pairs: bool = True
    lr_shape: str = "wsd-d2z"
    dtype: str = "auto"
    threads: int | None = 1
    jobs: int = 1


#: 2 layers, context 64: dense 32/64/128 wide, sparse 128 wide, jobs = 2 — the quick preset at 5× its budget
#: (C = 4e12), one LR extension and two dynamic knobs more. Sized from the quick preset's measured 2.5 min:
#: ≈ 18 min on 2 cores here. (A 3-layer version with dense widths to 256 at C = 4.5e12 gave the widest models
#: 37–140 optimizer steps: too short to mean anything, so it was stopped.)
FULL = ParetoPreset(name="full", n_layers=2, dense_widths=(32, 64, 128), sparse_width=128, flops=4e12,
                    dense_levels=(0.0625, 0.125, 0.25, 0.5), sparse_level=0.125, sweep_level=0.125,
                    seq_len=64, batch_size=16, warmup_steps=20, jobs=2)
#: ``--quick``: 2 layers, context 64: dense 32/64/128, sparse 128 (≈ 2.5 min estimated with jobs = 2).
QUICK = ParetoPreset(name="quick", n_layers=2, dense_widths=(32, 64, 128), sparse_width=128, flops=8e11,
                     dense_levels=(0.0625, 0.125, 0.25, 0.5), sparse_level=0.125, sweep_level=0.125,
                     seq_len=64, batch_size=16, warmup_steps=10, eval_batches=4, evals_per_run=3, min_steps=30,
                     max_extend=0, knobs=("few-updates",), jobs=2)
#: For tests: seconds per run.
MICRO = ParetoPreset(name="micro", n_layers=1, dense_widths=(16, 32, 48), sparse_width=64, flops=5e8,
                     dense_levels=(0.25, 0.5, 1.0), sparse_level=0.5, sweep_level=0.5, seq_len=16, batch_size=4,
                     warmup_steps=2, eval_batches=1, evals_per_run=1, min_steps=4, max_extend=0, n_updates=2,
                     knobs=("gradient",), seed_pairs=False)
PRESETS = {p.name: p for p in (FULL, QUICK, MICRO)}


def check(p: ParetoPreset) -> ParetoPreset:
    """``p``, or a `GrowkitError` naming what is wrong with it."""
    if len(p.dense_widths) < 3 or len(p.dense_levels) < 3:
        raise GrowkitError(f"preset {p.name!r}: the dense frontier needs ≥ 3 widths and ≥ 3 levels, got widths "
                           f"{p.dense_widths} and levels {p.dense_levels}")
    if p.sweep_level not in p.dense_levels:
        raise GrowkitError(f"preset {p.name!r}: sweep_level {p.sweep_level:g} is not one of the dense levels "
                           f"{p.dense_levels}")
    if not 0.0 < p.density < 1.0:
        raise GrowkitError(f"preset {p.name!r}: density must be in (0, 1), got {p.density}")
    for b in p.blocks:
        if p.sparse_width % b:
            raise GrowkitError(f"preset {p.name!r}: block {b} does not tile the sparse width {p.sparse_width}")
    unknown = [k for k in p.knobs if k not in KNOBS]
    if unknown:
        raise GrowkitError(f"unknown knob(s) {', '.join(unknown)}: choose from {', '.join(KNOBS)}")
    if p.lr_shape not in LR_SHAPES:
        raise GrowkitError(f"unknown LR shape {p.lr_shape!r}: choose from {', '.join(LR_SHAPES)}")
    if p.seeds < 1 or p.jobs < 1:
        raise GrowkitError(f"preset {p.name!r}: seeds and jobs must be at least 1")
    return p


# -- the runs ------------------------------------------------------------------------------------------
def model(width: int, n_layers: int) -> dict[str, Any]:
    return {"arch": "gpt2", "n_layers": n_layers, "d_model": width, "n_heads": max(1, width // HEAD_WIDTH),
            "d_ff": 4 * width}


def base_preset(p: ParetoPreset) -> Preset:
    """The run settings every run shares, as a `growkit.bench.schedules.Preset` (its model is unused)."""
    return Preset(name=f"pareto-{p.name}", n_layers=p.n_layers, d_model=HEAD_WIDTH, n_heads=1, d_ff=4 * HEAD_WIDTH,
                  seq_len=p.seq_len, tokens=0, batch_size=p.batch_size, lr=p.lr_ref, warmup_steps=p.warmup_steps,
                  ramp_steps=0, eval_batches=p.eval_batches, evals_per_run=p.evals_per_run, dtype=p.dtype,
                  arch="gpt2", tokenizer="byte", threads=p.threads)


def _c(level: float) -> str:
    return f"c{round(level * 10000):05d}"


def dense_req(bench: Bench, p: ParetoPreset, width: int, level: float, lr: float, seed: int = 0) -> Req:
    s = Schedule("dense", f"{p.n_layers}L×{width} dense", model(width, p.n_layers))
    return Req(f"dense-{p.n_layers}x{width}-{_c(level)}-lr{lr:.2e}", s, level, replace(bench.base, lr=lr), seed)


@dataclass(frozen=True)
class SparseLR:
    """The LR of a sparse run: ``lr`` for its dense parameters, ``mult`` × that for its sparse weights; with
    ``every``, the rule (``mult`` = R) on every parameter instead."""

    lr: float
    mult: float
    every: bool = False

    def tag(self) -> str:
        return f"lr{self.lr:.2e}-m{self.mult:.3g}" + ("-all" if self.every else "")


def sparsity_table(p: ParetoPreset, kind: str, block: int, slr: SparseLR, knob: str | None, seed: int
                   ) -> dict[str, Any]:
    """The ``[sparsity]`` table of a sparse run (the rule exactly when ``mult`` is R: bit-identical)."""
    r = rule_factor(p.density)
    t: dict[str, Any] = {"density": p.density, "block": block, "static": kind == "static", "seed": seed,
                         "pr_max": p.pr_max}
    if slr.every:
        t.update(sparse_lr_rule=True, lr_rule_scope="all")
    elif math.isclose(slr.mult, r, rel_tol=1e-9):
        t.update(sparse_lr_rule=True, lr_rule_scope="sparse")
    elif slr.mult != 1.0:
        t["sparse_lr_scale"] = slr.mult
    if kind == "dynamic":
        t["n_updates"] = p.n_updates
        t.update(KNOBS[knob] if knob else {})
    return t


def sparse_req(bench: Bench, p: ParetoPreset, kind: str, block: int, slr: SparseLR, knob: str | None = None,
               seed: int = 0) -> Req:
    name = f"{kind}-b{block}" + (f"-{knob}" if knob else "")
    s = Schedule(name, f"{p.n_layers}L×{p.sparse_width} {kind} sparse, block {block}", model(p.sparse_width,
                                                                                              p.n_layers))
    return Req(f"{name}-{p.n_layers}x{p.sparse_width}-{_c(p.sparse_level)}-{slr.tag()}", s, p.sparse_level,
               replace(bench.base, lr=slr.lr), seed, sparsity_table(p, kind, block, slr, knob, seed))


def dense_levels(bench: Bench, p: ParetoPreset, width: int) -> list[float]:
    """The levels at which ``width`` runs at least ``min_steps`` optimizer steps (the sweep level always)."""
    out = []
    for lv in sorted(p.dense_levels):
        steps = bench.spec(dense_req(bench, p, width, lv, p.lr_ref)).plan.steps
        if steps >= p.min_steps or lv == p.sweep_level:
            out.append(lv)
    return out


# -- the benchmark -------------------------------------------------------------------------------------
def run_pareto(out: str | Path, preset: str | ParetoPreset = "full", log: Callable[[str], None] = print,
               **overrides: Any) -> dict[str, Any]:
    """Run (or reuse) every run in ``out``, write results.json and the figure, print the tables; returns the
    results dict. ``overrides``: `ParetoPreset` fields to change (e.g. ``jobs=2``)."""
    import json

    from growkit.data import load_tokenizer, prepare_data
    from growkit.train.hardware import machine

    if isinstance(preset, str) and preset not in PRESETS:
        raise GrowkitError(f"unknown preset {preset!r}: choose from {', '.join(PRESETS)}")
    p = PRESETS[preset] if isinstance(preset, str) else preset
    unknown = sorted(set(overrides) - {f.name for f in fields(ParetoPreset)})
    if unknown:
        raise GrowkitError(f"unknown preset field(s) {', '.join(unknown)}: choose from "
                           f"{', '.join(f.name for f in fields(ParetoPreset))}")
    p = check(replace(p, **overrides))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer("byte")
    train_tokens = prepare_data(tok, None, None, 0.05).n_tokens("train")
    bench = Bench(base_preset(p), p.flops, out, tok.vocab_size, train_tokens, jobs=p.jobs,
                  evals_per_run=p.evals_per_run, threads=p.threads, log=log, lr_shape=p.lr_shape)
    started = time.perf_counter()
    probe = bench.spec(dense_req(bench, p, p.dense_widths[0], p.sweep_level, p.lr_ref))
    log(f"growkit sparse pareto: preset {p.name!r}, C = {p.flops:.3g} FLOPs, {p.n_layers}-layer GPT-2, byte "
        f"tokenizer, context {p.seq_len}; dense widths {', '.join(map(str, p.dense_widths))} at "
        f"{', '.join(f'{x:g}' for x in p.dense_levels)} C; sparse width {p.sparse_width} at density {p.density:g}, "
        f"blocks {', '.join(map(str, p.blocks))}, {p.sparse_level:g} C; LR shape {p.lr_shape}; jobs {p.jobs}, "
        f"{resolved_now(probe.config, probe.threads).summary()}; out: {out}")

    # 1. dense: LR sweep per width, then every level with the winner; the hull of every dense run
    log(f"dense LR sweep (each width at {p.sweep_level:g} C):")
    widths = sorted(p.dense_widths)
    made: dict[str, Req] = {}

    def dreq(w: int, lv: float, lr: float) -> Req:
        q = made[f"{dense_req(bench, p, w, lv, lr).key}"] = dense_req(bench, p, w, lv, lr)
        return q

    swept = runner.sweep_lrs(bench, lambda w, lr: dreq(w, p.sweep_level, lr),
                             {w: p.lr_ref * (64 / w) ** 0.5 for w in widths}, p.max_extend)
    tuned = {w: best for w, (best, _) in swept.items()}
    levels = {w: dense_levels(bench, p, w) for w in widths}
    log("dense iso-FLOP grid:")
    cells = {(w, lv): dreq(w, lv, tuned[w]) for w in widths for lv in levels[w]}
    bench.run_many(list(cells.values()))
    dense_runs = {k: r for k, r in bench.results.items() if r.schedule == "dense"}
    hull = lower_hull([r.end for r in dense_runs.values()])

    # 2. sparse: the sparse weights' LR multiplier swept per (kind, block)
    r_rule = rule_factor(p.density)
    base_lr = lr_at(tuned, p.sparse_width)
    keys = [(kind, b) for b in p.blocks for kind in KINDS]
    log(f"sparse LR sweep (sparse weights' LR multiplier; dense parameters at {base_lr:.2e}; rule R = {r_rule:.3f}):")
    sweeps = runner.sweep_lrs(bench, lambda k, m: sparse_req(bench, p, k[0], k[1], SparseLR(base_lr, m)),
                              dict.fromkeys(keys, math.sqrt(r_rule)), p.max_extend, step=math.sqrt(r_rule))
    every = {}
    if p.all_params_candidate:
        reqs = [sparse_req(bench, p, kind, b, SparseLR(base_lr, r_rule, every=True)) for kind, b in keys]
        every = {k: r.end.loss for k, r in zip(keys, bench.run_many(reqs), strict=True)}
    chosen: dict[tuple[str, int], SparseLR] = {}
    for k in keys:
        m, tried = sweeps[k]
        loss = dict(tried)[m]
        chosen[k] = SparseLR(base_lr, r_rule, True) if k in every and every[k] < loss else SparseLR(base_lr, m)

    # 3. knobs on the tuned dynamic runs
    log("dynamic knobs:")
    knob_reqs = {(b, kn): sparse_req(bench, p, "dynamic", b, chosen[("dynamic", b)], kn)
                 for b in p.blocks for kn in p.knobs}
    bench.run_many(list(knob_reqs.values()))

    # 4. the headline at seed 0, then the seeds of the runs that decide it
    def dyn_variants() -> dict[str, Req]:
        out_ = {f"dynamic-b{b}": sparse_req(bench, p, "dynamic", b, chosen[("dynamic", b)]) for b in p.blocks}
        out_.update({f"dynamic-b{b}-{kn}": q for (b, kn), q in knob_reqs.items()})
        return out_

    dyn = dyn_variants()
    tuned_sparse = {f"{kind}-b{b}": sparse_req(bench, p, kind, b, chosen[(kind, b)]) for kind, b in keys}
    ratios0 = {n: flops_to_dense_loss(hull, bench.run(q).end) for n, q in {**tuned_sparse, **dyn}.items()}
    best, _ = best_ratio({n: x for n, x in ratios0.items() if n in dyn})
    by_point = {r.end: k for k, r in dense_runs.items()}
    deciding = [by_point[pt] for pt in bracket(hull, bench.run(dyn[best]).end.loss)]
    seeds = range(p.seeds)
    log(f"seeds of the headline's runs ({best} and dense {', '.join(deciding)}):")
    dense_reqs = [made[k] for k in deciding]
    more = [replace(dyn[best], seed=s, sparsity={**dyn[best].sparsity, "seed": s}) for s in seeds[1:]]
    more += [replace(q, seed=s) for q in dense_reqs for s in seeds[1:]]
    if p.seed_pairs:
        for kind, b in keys:
            q = sparse_req(bench, p, kind, b, chosen[(kind, b)])
            more += [replace(q, seed=s, sparsity={**q.sparsity, "seed": s}) for s in seeds[1:]]
    bench.run_many(more)

    def seeded(q: Req) -> list[RunResult]:
        return [bench.run(replace(q, seed=s, sparsity=None if q.sparsity is None else {**q.sparsity, "seed": s}))
                for s in seeds]

    per_seed = []
    for s in seeds:
        pts = [seeded(made[by_point[pt]])[s].end if by_point[pt] in deciding else pt for pt in hull]
        per_seed.append(flops_to_dense_loss(pts, seeded(dyn[best])[s].end))
    mean_hull = [mean_point([r.end for r in seeded(made[by_point[pt]])]) if by_point[pt] in deciding else pt
                 for pt in hull]
    head = flops_to_dense_loss(mean_hull, mean_point([r.end for r in seeded(dyn[best])]))

    # 5. pairs
    pairs = []
    for b in p.blocks:
        static = sparse_req(bench, p, "static", b, chosen[("static", b)])
        for name in [f"dynamic-b{b}"] + [f"dynamic-b{b}-{kn}" for kn in p.knobs]:
            n = p.seeds if p.seed_pairs and name == f"dynamic-b{b}" else 1
            st = [bench.run(replace(static, seed=s, sparsity={**static.sparsity, "seed": s})) for s in range(n)]
            dy = [bench.run(replace(dyn[name], seed=s, sparsity={**dyn[name].sparsity, "seed": s})) for s in range(n)]
            prs = [pair(b, a.end, c.end) for a, c in zip(st, dy, strict=True)]
            pairs.append({"block": b, "dynamic": name, "seeds": n, "flops": prs[0].flops_dynamic,
                          "loss_static": statistics.fmean(x.loss_static for x in prs),
                          "loss_dynamic": statistics.fmean(x.loss_dynamic for x in prs),
                          "delta": statistics.fmean(x.delta for x in prs),
                          "delta_spread": spread([x.delta for x in prs]),
                          "flops_rel_diff": max(x.flops_rel_diff for x in prs)})

    data = _results(p, bench, tuned, swept, levels, hull, sweeps, every, chosen, ratios0, best, deciding, per_seed,
                    head, mean_hull, pairs, r_rule, base_lr, machine(), time.perf_counter() - started)
    data["plot"] = str(plot(data, out / PLOT_FILE))
    (out / RESULTS_FILE).write_text(json.dumps(data, indent=1))
    log("")
    log(format_tables(data))
    log("")
    log(f"plot: {data['plot']}")
    log(f"results: {out / RESULTS_FILE}")
    log(last_line(data))
    return data


def _results(p: ParetoPreset, bench: Bench, tuned: dict[int, float], swept: dict[int, Any],
             levels: dict[int, list[float]], hull: list[Point], sweeps: dict[tuple[str, int], Any],
             every: dict[tuple[str, int], float], chosen: dict[tuple[str, int], SparseLR], ratios0: dict[str, Ratio],
             best: str, deciding: list[str], per_seed: list[Ratio], head: Ratio, mean_hull: list[Point],
             pairs: list[dict[str, Any]], r_rule: float, base_lr: float, hardware: dict[str, Any],
             wall: float) -> dict[str, Any]:
    def row(key: str, r: RunResult) -> dict[str, Any]:
        sp = r.extra.get("sparsity")
        return {"key": key, "name": key.rsplit("-s", 1)[0], "kind": "dense" if sp is None else
                ("static" if sp["static"] else "dynamic"), "block": None if sp is None else sp["block"],
                "width": int(key.split("x", 1)[1].split("-")[0]), "budget": r.extra["budget"], "seed": r.extra["seed"],
                "lr": r.extra["lr"], "lr_shape": r.extra["lr_shape"], "sparsity": sp, "final_val_loss": r.end.loss,
                "flops": r.end.flops, "train_time_s": r.end.time_s, "tokens": r.tokens, "params": r.params,
                "reused": r.reused, "resolved": r.extra.get("resolved"), "curve": [asdict(pt) for pt in r.curve]}

    return {
        "benchmark": "growkit sparse pareto",
        "preset": asdict(p),
        "definition": "ratio = sparse run FLOPs / dense-frontier FLOPs at the run's final val loss (the lower hull "
                      "of every dense run, interpolated linearly in (loss, log FLOPs); bounds outside, never "
                      "extrapolated)",
        "dense": {str(w): {"lr": tuned[w], "lr_sweep": swept[w][1], "levels": levels[w]} for w in tuned},
        "dense_frontier": [asdict(pt) for pt in hull],
        "sparse_lr_rule": r_rule,
        "sparse_base_lr": base_lr,
        "sparse": {f"{k}-b{b}": {"tried": sweeps[(k, b)][1], "rule_on_every_param": every.get((k, b)),
                                 "chosen": asdict(chosen[(k, b)])} for k, b in sweeps},
        "ratios": {n: {**asdict(x), "text": str(x)} for n, x in ratios0.items()},
        "best_dynamic": best,
        "deciding_dense_runs": deciding,
        "pairs": pairs,
        HEADLINE: {**asdict(head), "text": str(head), "seeds": p.seeds,
                   "spread": spread([x.value for x in per_seed]),
                   "per_seed": [{**asdict(x), "text": str(x)} for x in per_seed],
                   "dense_frontier_seed_mean": [asdict(pt) for pt in mean_hull]},
        "runs": [row(k, r) for k, r in bench.results.items()],
        "reused_runs": bench.reused,
        "benchmark_wall_s": wall,
        "hardware": hardware,
    }


# -- reporting -----------------------------------------------------------------------------------------
def last_line(data: dict[str, Any]) -> str:
    h = data[HEADLINE]
    spread = f" ± {h['spread']:.3f}" if h["seeds"] > 1 and h["status"] == "interpolated" else ""
    return f"{HEADLINE}: {h['text']}{spread}"


def format_tables(data: dict[str, Any]) -> str:
    """The dense frontier, the sparse LR sweeps and runs, dynamic − static, and the headline, as Markdown."""
    p = data["preset"]
    runs = [r for r in data["runs"] if r["seed"] == 0]
    rows = [f"Dense ({p['n_layers']} layers; LR swept at {p['sweep_level']:g} C, C = {p['flops']:.3g} FLOPs; "
            f"LR shape {p['lr_shape']}):", "",
            "| width | LRs tried (val loss) | tuned LR | val loss at each level (× C) |", "|---|---|---|---|"]
    for w, d in data["dense"].items():
        cells = {r["budget"]: r["final_val_loss"] for r in runs
                 if r["kind"] == "dense" and r["width"] == int(w) and r["lr"] == d["lr"]}
        rows.append(f"| {w} | {', '.join(f'{lr:.2e} ({v:.4f})' for lr, v in d['lr_sweep'])} | {d['lr']:.2e} | "
                    f"{', '.join(f'{lv:g}: {cells[lv]:.4f}' for lv in sorted(cells))} |")
    rows += ["", "dense frontier (lower hull of every dense run): "
             + ", ".join(f"{pt['flops']:.3g} FLOPs → {pt['loss']:.4f}" for pt in data["dense_frontier"])]
    rows += ["", f"Sparse ({p['n_layers']}L×{p['sparse_width']}, density {p['density']:g}, {p['sparse_level']:g} C; "
                 f"dense parameters at {data['sparse_base_lr']:.2e}; the sparse weights' LR × m, rule R = "
                 f"{data['sparse_lr_rule']:.3f}):", "",
             "| run | m tried (val loss) | R on every parameter | chosen | val loss | FLOPs | FLOPs / dense at "
             "equal loss |", "|---|---|---|---|---|---|---|"]
    ends = {r["name"]: r for r in runs}
    for name, sw in data["sparse"].items():
        ch = sw["chosen"]
        run = next(r for r in runs if r["kind"] != "dense" and r["name"].startswith(f"{name}-{p['n_layers']}x")
                   and r["name"].endswith(_tag(ch)))
        ratio = data["ratios"].get(name, {}).get("text", "—")
        every = "—" if sw["rule_on_every_param"] is None else f"{sw['rule_on_every_param']:.4f}"
        what = "R on all" if ch["every"] else f"m = {ch['mult']:.3g}"
        rows.append(f"| {name} | {', '.join(f'{m:.3g} ({v:.4f})' for m, v in sw['tried'])} | {every} | "
                    f"{what} | {run['final_val_loss']:.4f} | "
                    f"{run['flops']:.3g} | {ratio} |")
    for name, x in data["ratios"].items():
        if name not in data["sparse"]:
            r = next(v for k, v in ends.items() if k.startswith(f"{name}-"))
            rows.append(f"| {name} | — | — | as {name.split('-', 2)[0]}-{name.split('-', 2)[1]} | "
                        f"{r['final_val_loss']:.4f} | {r['flops']:.3g} | {x['text']} |")
    rows += ["", "Dynamic − static at equal FLOPs (< 0: dynamic better):", "",
             "| block | dynamic run | seeds | static loss | dynamic loss | Δ loss |", "|---|---|---|---|---|---|"]
    for pr in data["pairs"]:
        spread = f" ± {pr['delta_spread']:.4f}" if pr["seeds"] > 1 else ""
        rows.append(f"| {pr['block']} | {pr['dynamic']} | {pr['seeds']} | {pr['loss_static']:.4f} | "
                    f"{pr['loss_dynamic']:.4f} | {pr['delta']:+.4f}{spread} |")
    h = data[HEADLINE]
    rows += ["", f"Headline: {data['best_dynamic']} against the dense frontier, {h['seeds']} seed(s) of it and of the "
                 f"dense runs {', '.join(data['deciding_dense_runs'])}: per seed "
                 f"{', '.join(x['text'] for x in h['per_seed'])}; `{last_line(data)}`"]
    return "\n".join(rows)


def _tag(chosen: dict[str, Any]) -> str:
    return SparseLR(**chosen).tag()


def plot(data: dict[str, Any], path: Path) -> Path:
    """Val loss vs training FLOPs (log x): every dense run, the dense hull, the sparse runs' eval curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2))
    runs = [r for r in data["runs"] if r["seed"] == 0]
    for r in runs:
        if r["kind"] == "dense":
            ax.plot(r["flops"], r["final_val_loss"], ".", color="0.6", ms=5)
    hull = data["dense_frontier"]
    ax.plot([pt["flops"] for pt in hull], [pt["loss"] for pt in hull], "s-", color="black", lw=2, ms=5,
            label="dense frontier (lower hull of every dense run)", zorder=5)
    colors = {"static": "tab:blue", "dynamic": "tab:red"}
    marks = {1: "o", 4: "v", 8: "^", 16: "D"}
    shown = {f"{k}-b{b}" for k in KINDS for b in data["preset"]["blocks"]} | set(data["ratios"])
    for name, sw in data["sparse"].items():
        kind, b = name.split("-b")
        r = next(x for x in runs if x["name"].startswith(f"{name}-") and x["name"].endswith(_tag(sw["chosen"])))
        pts = [pt for pt in r["curve"] if pt["flops"] > 0]
        ax.plot([pt["flops"] for pt in pts], [pt["loss"] for pt in pts], color=colors[kind], lw=0.8, alpha=0.5,
                ls="-" if b == "1" else "--")
        ax.plot(r["flops"], r["final_val_loss"], marks.get(int(b), "o"), color=colors[kind], ms=7, zorder=6,
                label=f"{kind} sparse, block {b}")
    for name in sorted(shown - set(data["sparse"])):
        r = next((x for x in runs if x["name"].startswith(f"{name}-")), None)
        if r is not None:
            ax.plot(r["flops"], r["final_val_loss"], "x", color="tab:orange", ms=7, zorder=6)
            ax.annotate(name.split("-", 2)[-1], (r["flops"], r["final_val_loss"]), textcoords="offset points",
                        xytext=(4, -8), fontsize=6)
    loss_vs_flops_axes(ax, min(r["final_val_loss"] for r in runs), 0.05, 1.0, "training FLOPs (sparse-aware)")
    ax.set_title(f"growkit sparse pareto ({data['preset']['name']}): final points of fully decayed runs; "
                 f"x: dynamic knobs", fontsize=9)
    return save(fig, path)
