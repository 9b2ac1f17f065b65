"""``growkit bench envelope``: growth against the best from-scratch model of *any* size at each compute.

The benchmark, in the order it runs (every run with its own LR schedule, fully decayed at its own budget):

1. **The ladder.** Llama-style models (RMSNorm, SwiGLU, RoPE; head width 16, FFN ≈ 8/3·d) with the byte
   tokenizer, so that non-embedding parameters dominate. Each size runs at the *iso-FLOP levels*
   ``C·levels`` (C/8, C/4, C/2, C by default) — skipped where that needs more than ``max_epochs`` passes
   over the bundled corpus's training split, or fewer than ``min_steps`` optimizer steps.
2. **The LR rule.** First the LR *shape* (after warmup): each of ``lr_shapes`` (`LR_SHAPES`: cosine to lr/10,
   cosine / linear to zero, warmup-stable-decay to lr/10 or to zero) trains the middle ladder size at its
   sweep level at ½×, 1× and 2× the centre LR; the shape of the lowest final loss wins, and every run of the
   benchmark — from scratch and growth alike — uses that shape. Then each size's peak LR is swept at its
   *sweep level* (its largest feasible level up to ``sweep_level`` × C, where steps are many enough for the
   optimum to be stable): 3 values, ½×, 1× and 2× the centre ``lr_ref · (64 / d_model)^½``; when the best is
   at an edge the sweep goes on in that direction (up to ``max_extend`` more values). The winner is that
   size's LR at every level, and the LR of growth schedules at that size (`lr_at`, log-log in d_model
   between tuned sizes): growth gets no more tuning.
3. **The envelope**: the lower convex hull, in (log FLOPs, loss), of every from-scratch run
   (`growkit.bench.frontier.lower_hull`), and the **L(N, D) fit** to the tuned runs
   (`growkit.bench.scaling`), with N*(C), D*(C) and the residuals.
4. **Targets.** *compute-optimal*: the ladder size with the lowest loss at C, run with ``seeds`` seeds
   (and the runner-up too, so the table shows whether seed spread could swap them). *over-trained*: the
   largest ladder size trained at C with at least ``overtrain_factor`` × the fitted compute-optimal tokens
   per parameter; its baseline is its own frontier (its runs at every level), not the envelope.
5. **Schedules.** The seed systems' schedules into each target (`growkit.bench.schedules.seed_schedules`)
   and ``follow``: the model kept near the fitted compute-optimal size N*(c) for the compute c spent so
   far, grown (masked, ramped) through the ladder's sizes as c passes the geometric middle of two sizes.
   Each runs at ``schedule_budgets`` × C; when its smallest budget already reaches the target's loss, at
   ``extra_budget`` × C too, so the match is interpolated instead of a bound.
6. **Speedups.** For each schedule, the FLOPs (and training seconds) it needs to reach the target's mean
   loss at C, interpolated between its own budgets (`frontier_cost`), against what the baseline needs
   for the same loss (the envelope, or the target's own frontier); bounds (≥, ≤) where a loss lies outside
   the runs, never an extrapolation. The ``seeded_schedules`` best schedules of each regime on seed 0 run
   with ``seeds`` seeds; the best of them on the mean over seeds is the regime's headline (mean and spread;
   a bound when a seed's figure is one).

With ``jobs`` > 1 the runs of each step that do not depend on each other train that many at a time, each
in its own process with ``threads`` threads (`Bench.run_many`).

The output folder holds one run dir per run (a finished run is reused, so an interrupted benchmark goes on
where it stopped), ``results.json``, the figures, and the table on stdout, whose last three lines are
``envelope_speedup_flops``, ``envelope_speedup_wallclock`` (best schedule, compute-optimal regime) and
``overtrained_speedup_flops``.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from growkit.bench import runner
from growkit.bench.figures import loss_vs_flops_axes, save
from growkit.bench.frontier import (
    Match,
    Point,
    envelope_cost,
    frontier_cost,
    lower_hull,
    mean_point,
    ratio,
    spread,
)
from growkit.bench.runner import LR_SHAPES, Req, lr_at, lr_by_width
from growkit.bench.scaling import Fit, compute_optimal, fit_loss_law, flops_per_token_curve
from growkit.bench.schedules import Preset, Schedule, Shape, run_dict, seed_schedules
from growkit.bench.speedup import RunResult, _fmt_speedup, preset_threads, resolved_now
from growkit.errors import GrowkitError

RESULTS_FILE = "results.json"
PLOT_FILES = ("envelope.png", "envelope_overtrained.png", "speedups.png", "loss_law.png")
REGIMES = ("compute-optimal", "over-trained")
SEED_SCHEDULES = ("follow", "msg", "late", "zero", "compound", "stack", "split", "copy")
@dataclass(frozen=True)
class Variant:
    """A variant of a schedule: its ``base`` schedule with the first growth moved to ``at`` (a fraction of
    the run), ``train`` overrides (the LR shape), and ``stage`` overrides on every growth stage."""

    base: str
    at: float | None = None
    train: dict[str, Any] = field(default_factory=dict)
    stage: dict[str, Any] = field(default_factory=dict)


#: Variants tried on top of the seed schedules. ``wsd`` is warmup-stable-decay (constant LR, linear decay over
#: the last 20 %): growth in the stable phase; under a WSD shape chosen by the sweep they are their base itself
#: and are skipped.
VARIANTS: dict[str, Variant] = {
    "late50": Variant("late", 0.5),
    "stack10": Variant("stack", 0.1),
    "stack50": Variant("stack", 0.5),
    "stack-masked": Variant("stack", stage={"method": "masked", "ramp_steps": 30}),
    "stack-rewarm": Variant("stack", stage={"lr": "rewarm", "lr_warmup_steps": 30}),
    "stack-wsd": Variant("stack", train={"decay": "wsd"}),
    "follow-wsd": Variant("follow", train={"decay": "wsd"}),
    "target-wsd": Variant("target", train={"decay": "wsd"}),
}
#: Not growth: the target from scratch under another LR shape, so a variant's gain can be told from the LR's.
CONTROLS = ("target-wsd",)
SCHEDULES = SEED_SCHEDULES + tuple(VARIANTS)
HEAD_WIDTH = 16


@dataclass(frozen=True)
class EnvelopePreset:
    """Sizes, budgets and settings of one envelope benchmark."""

    name: str
    ladder: tuple[tuple[int, int], ...]
    """``(n_layers, d_model)`` of each ladder size, smallest first."""
    flops: float
    """C: the full budget, in training FLOPs."""
    levels: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    schedule_budgets: tuple[float, ...] = (0.5, 1.0)
    extra_budget: float = 0.25
    seq_len: int = 128
    batch_size: int = 32
    warmup_steps: int = 30
    ramp_steps: int = 30
    eval_batches: int = 16
    evals_per_run: int = 4
    lr_ref: float = 4e-3
    """Centre of the LR sweep at d_model 64 (scaled by (64 / d_model)^½ for other widths)."""
    lr_shapes: tuple[str, ...] = tuple(LR_SHAPES)
    """The LR shapes swept (`LR_SHAPES`); a single one is used without a sweep."""
    shape_lr_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    """The LRs (× the centre LR) each LR shape is tried at."""
    sweep_level: float = 0.5
    """The level (× C) the LR and LR-shape sweeps run at: each size's largest feasible level up to it."""
    max_extend: int = 2
    max_epochs: float = 4.0
    min_steps: int = 40
    seeds: int = 2
    seeded_schedules: int = 1
    """How many schedules of each regime — the best on seed 0 — run all ``seeds`` seeds; the regime's best
    schedule is the best of them on the mean over seeds (fewer lucky seed-0 winners)."""
    overtrain_factor: float = 4.0
    schedules: tuple[str, ...] = SCHEDULES
    overtrained_schedules: tuple[str, ...] = SCHEDULES
    """The schedules also run in the over-trained regime (a subset: its target is small, so several seed
    schedules grow the same dimensions, and its runs are slow per FLOP)."""
    threads: int | None = None
    jobs: int = 1
    """Runs trained at once, each in its own process with ``threads`` threads (2 on a 2-core machine with
    ``threads = 1``: every run still has a core of its own)."""


#: The full benchmark: 5 sizes from 2L×16 to 4L×64 (6.7k → 201k non-embedding parameters, 30×) at C = 2e12,
#: one thread per run, two runs at a time (tiny models gain little from a second thread; with one run per core
#: every run's wall-clock is measured alike). 3 seeds for the targets and each regime's best schedule: at these
#: sizes two seeds of the same run differ by up to 0.02 in final loss, ~10 % in FLOPs to a given loss.
FULL = EnvelopePreset(name="full", ladder=((2, 16), (2, 32), (3, 32), (3, 48), (4, 64)), flops=2e12,
                      batch_size=16, threads=1, jobs=2, seeds=3, seeded_schedules=3,
                      overtrained_schedules=("msg", "late", "zero", "compound", "stack", "split", "copy", "stack10",
                                             "stack50", "stack-masked", "stack-rewarm"))
#: ``--quick``: the same pipeline on 4 tiny sizes and a small budget (< 10 minutes).
QUICK = EnvelopePreset(name="quick", ladder=((2, 16), (2, 32), (3, 48)), flops=1.2e11, seq_len=64,
                       batch_size=16, warmup_steps=5, ramp_steps=5, eval_batches=4, evals_per_run=2, min_steps=12,
                       max_extend=1, schedules=("follow", "msg", "late", "stack"), threads=1,
                       lr_shapes=("cosine", "wsd-d2z"), shape_lr_factors=(1.0,), sweep_level=0.25)
#: For tests: a few seconds per run.
MICRO = EnvelopePreset(name="micro", ladder=((1, 16), (2, 32)), flops=3e9, levels=(0.5, 1.0),
                       schedule_budgets=(0.5, 1.0), extra_budget=0.25, seq_len=32, batch_size=8, warmup_steps=2,
                       ramp_steps=2, eval_batches=2, evals_per_run=1, min_steps=6, max_extend=1, seeds=2,
                       overtrain_factor=0.0, schedules=("follow", "late", "stack-wsd", "target-wsd"), threads=1,
                       lr_shapes=("cosine", "wsd-d2z"), shape_lr_factors=(1.0, 2.0))
PRESETS = {p.name: p for p in (FULL, QUICK, MICRO)}


# -- the ladder ------------------------------------------------------------------------------------------
def shape(n_layers: int, d_model: int) -> Shape:
    """A ladder shape: heads of width 16, FFN width 8/3·d rounded up to a multiple of 8 (SwiGLU's ratio)."""
    if d_model % HEAD_WIDTH:
        raise GrowkitError(f"ladder width {d_model} is not a multiple of the head width {HEAD_WIDTH}")
    return Shape(n_layers, d_model, d_model // HEAD_WIDTH, 8 * math.ceil(8 * d_model / 3 / 8))


def half(s: Shape) -> Shape:
    """The start model of the seed schedules into ``s``: about half the layers and the width."""
    return shape(max(1, s.n_layers // 2), max(HEAD_WIDTH, s.d_model // 2 // HEAD_WIDTH * HEAD_WIDTH))


def label(s: Shape) -> str:
    return f"{s.n_layers}L×{s.d_model}"


@dataclass(frozen=True)
class Size:
    """A ladder size and what it costs: non-embedding parameters and training FLOPs per token."""

    shape: Shape
    params: int
    flops_per_token: float


def size_of(s: Shape, seq_len: int, vocab_size: int) -> Size:
    """The ladder size of shape ``s`` (built on the meta device: sizes only, no weights)."""
    import torch

    import growkit as gk

    with torch.device("meta"):
        model = gk.Transformer(gk.TransformerConfig.from_dict({**s.model("llama"), "vocab_size": vocab_size}))
    return Size(s, model.num_params(exclude_embeddings=True), model.flops_per_token(seq_len))


def _base(p: EnvelopePreset) -> Preset:
    """The run settings every run shares, as a `growkit.bench.schedules.Preset` (its model is unused)."""
    return Preset(name=f"envelope-{p.name}", n_layers=1, d_model=HEAD_WIDTH, n_heads=1, d_ff=8, seq_len=p.seq_len,
                  tokens=0, batch_size=p.batch_size, lr=p.lr_ref, warmup_steps=p.warmup_steps,
                  ramp_steps=p.ramp_steps, eval_batches=p.eval_batches, evals_per_run=p.evals_per_run,
                  arch="llama", tokenizer="byte", threads=p.threads)


def with_lr_scales(s: Schedule, tuned: dict[int, float], preset: Preset) -> tuple[Schedule, Preset]:
    """``s`` with the start model's tuned LR as the run's LR, and ``lr_scale`` on every stage that changes
    the width, so that from there the LR is the tuned LR of the new width."""
    d0 = s.model["d_model"]
    stages, d = [], d0
    for stage in s.growth:
        d = stage.get("grow", {}).get("d_model", d)
        stages.append({**stage, "lr_scale": lr_at(tuned, d) / lr_at(tuned, d0)} if d != d0 else dict(stage))
    return replace(s, growth=stages), replace(preset, lr=lr_at(tuned, d0))


# -- running ---------------------------------------------------------------------------------------------
class Bench(runner.Bench):
    """`growkit.bench.runner.Bench` for an `EnvelopePreset` (its budget unit C, jobs, threads, run settings),
    with the ladder's from-scratch runs."""

    def __init__(self, preset: EnvelopePreset, out: Path, vocab_size: int, train_tokens: int,
                 log: Callable[[str], None] = print, remeasure: bool = False) -> None:
        super().__init__(_base(preset), preset.flops, Path(out), vocab_size, train_tokens, jobs=preset.jobs,
                         evals_per_run=preset.evals_per_run, threads=preset.threads, log=log, remeasure=remeasure)
        self.preset = preset

    def scratch_req(self, size: Size, level: float, lr: float, seed: int = 0) -> Req:
        s = Schedule("scratch", f"{label(size.shape)} from scratch", size.shape.model("llama"))
        name = f"scratch-{size.shape.n_layers}x{size.shape.d_model}-c{round(level * 1000):04d}-lr{lr:.2e}"
        if self.lr_shape is not None:
            name += f"-{self.lr_shape}"
        return Req(name, s, level, replace(self.base, lr=lr), seed)

    def scratch(self, size: Size, level: float, lr: float, seed: int = 0) -> RunResult:
        return self.run(self.scratch_req(size, level, lr, seed))


def feasible_levels(p: EnvelopePreset, size: Size, train_tokens: int) -> list[float]:
    """The iso-FLOP levels this size can run: at most ``max_epochs`` passes, at least ``min_steps`` steps."""
    out = []
    for level in p.levels:
        tokens = level * p.flops / size.flops_per_token
        if tokens <= p.max_epochs * train_tokens and tokens >= p.min_steps * p.batch_size * p.seq_len:
            out.append(level)
    return out


def sweep_level(p: EnvelopePreset, levels: Sequence[float]) -> float:
    """The level a size's sweeps run at: its largest feasible level up to ``sweep_level`` (else its smallest)."""
    below = [lv for lv in levels if lv <= p.sweep_level]
    return max(below) if below else min(levels)


def centre_lr(p: EnvelopePreset, size: Size) -> float:
    """The centre of a size's LR sweep: ``lr_ref · (64 / d_model)^½``."""
    return p.lr_ref * (64 / size.shape.d_model) ** 0.5


def sweep_shape(bench: Bench, size: Size, level: float) -> tuple[str, list[tuple[str, float, float]]]:
    """The LR-shape rule: every shape of the preset on ``size`` at ``level``, each at ``shape_lr_factors`` ×
    the centre LR (a shape is not judged at an LR that suits another); the shape of the lowest final loss
    wins. Returns the winner and every (shape, lr, loss) tried."""
    p = bench.preset
    unknown = [n for n in p.lr_shapes if n not in LR_SHAPES]
    if unknown:
        raise GrowkitError(f"unknown LR shape(s) {', '.join(unknown)}: choose from {', '.join(LR_SHAPES)}")
    cells = [(name, centre_lr(p, size) * f) for name in p.lr_shapes for f in p.shape_lr_factors]
    reqs = [Req(f"shape-{name}-{size.shape.n_layers}x{size.shape.d_model}-c{round(level * 1000):04d}-lr{lr:.2e}",
                Schedule("scratch", f"{label(size.shape)} from scratch, LR shape {name}", size.shape.model("llama"),
                         train=dict(LR_SHAPES[name])), level, replace(bench.base, lr=lr))
            for name, lr in cells]
    tried = [(name, lr, r.end.loss) for (name, lr), r in zip(cells, bench.run_many(reqs), strict=True)]
    return min(tried, key=lambda t: t[2])[0], tried


def sweep_lrs(bench: Bench, at: dict[str, tuple[Size, float]]) -> dict[str, tuple[float, list[tuple[float, float]]]]:
    """The LR rule (module doc) for every size at once (``label: (size, level)``): returns, per size, the
    winner and every (lr, loss) tried."""
    p = bench.preset
    return runner.sweep_lrs(bench, lambda k, lr: bench.scratch_req(at[k][0], at[k][1], lr),
                            {k: centre_lr(p, s) for k, (s, _) in at.items()}, p.max_extend)


def _mean_point(runs: Sequence[RunResult]) -> Point:
    return mean_point([r.end for r in runs])


def without_noops(s: Schedule) -> Schedule:
    """``s`` without the stages that would grow nothing (a seed schedule's FFN or heads stage when the
    target is too small for it to differ from the start model); the schedule is otherwise unchanged."""
    current = dict(s.model)
    kept = []
    for stage in s.growth:
        grow = stage.get("grow", {})
        if any(current.get(k, v) != v for k, v in grow.items()) or "seq_len" in stage:
            kept.append(stage)
        current.update(grow)
    return replace(s, growth=kept)


def follow_schedule(bench: Bench, sizes: Sequence[Size], target: Size, law_opt: Callable[[float], float],
                    budget: float) -> Schedule:
    """``follow`` at ``budget`` × C: start at the smallest size, grow (masked, ramped) to the next ladder size
    once the compute spent passes c_k, where the fitted N*(c_k) is the geometric middle of the two sizes."""
    path = [s for s in sizes if s.params <= target.params]
    stages = []
    for a, b in itertools.pairwise(path):
        c = _compute_for(law_opt, math.sqrt(a.params * b.params), bench.preset.flops)
        frac = c / (budget * bench.preset.flops)
        if frac < 0.95:
            stages.append({"at_fraction": round(max(frac, 0.02), 4), "grow": b.shape.grow(), "method": "masked",
                           "ramp_steps": bench.preset.ramp_steps})
    return Schedule("follow", "follow N*(c): the fitted compute-optimal size for the compute spent so far",
                    path[0].shape.model("llama"), stages)


def _compute_for(n_opt: Callable[[float], float], params: float, c_max: float) -> float:
    """The compute c at which the fitted optimum N*(c) equals ``params`` (bisection in log c)."""
    lo, hi = math.log(c_max) - 20, math.log(c_max) + 10
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if n_opt(math.exp(mid)) < params else (lo, mid)
    return math.exp((lo + hi) / 2)


# -- analysis --------------------------------------------------------------------------------------------
@dataclass
class ScheduleResult:
    """One schedule in one regime: its runs per seed and its speedups against the regime's baseline."""

    name: str
    title: str
    runs: dict[int, list[RunResult]]
    """Per seed, the runs at each budget."""
    speedups: dict[int, dict[str, Any]] = field(default_factory=dict)

    def headline(self) -> dict[str, Any]:
        """Mean and spread over seeds of the FLOP and wall-clock speedups (bound when any seed is bound)."""
        per = [s for s in self.speedups.values() if s["flops"] is not None]
        if not per:
            return {"flops": None, "wallclock": None, "bound": "not reached", "seeds": len(self.speedups)}
        bounds = {s["bound"] for s in per if s["bound"]}
        return {"flops": statistics.fmean(s["flops"] for s in per), "flops_spread": spread([s["flops"] for s in per]),
                "wallclock": statistics.fmean(s["wallclock"] for s in per),
                "wallclock_spread": spread([s["wallclock"] for s in per]),
                "bound": next(iter(bounds)) if len(bounds) == 1 else ("mixed" if bounds else None),
                "seeds": len(self.speedups)}


def against_controls(results: dict[str, ScheduleResult]) -> dict[str, Any]:
    """Each control (the target from scratch under another LR shape) as the baseline of the variants that
    use the same LR shape: their speedup to the control's own loss at its largest budget, against the
    control's frontier — so a variant's gain is told apart from its LR shape's."""
    out: dict[str, Any] = {}
    for control in (n for n in results if n in CONTROLS):
        runs = results[control].runs[0]
        loss = max(runs, key=lambda r: r.end.flops).end.loss
        train = VARIANTS[control].train
        same = [n for n in results if n in VARIANTS and n not in CONTROLS and VARIANTS[n].train == train]

        def frontier(x: float, runs: list[RunResult] = runs) -> Match:
            return frontier_cost([r.end for r in runs], x)

        out[control] = {"loss": loss, "train": train,
                        "schedules": {n: speedup_of(results[n].runs[0], frontier, loss) for n in same}}
    return out


def ranked_schedules(results: dict[str, ScheduleResult]) -> list[str]:
    """The growth schedules (controls excluded), best first: those whose headline (the mean over the seeds
    run) reaches the target loss — an interpolated or lower-bound FLOP speedup — by that speedup, then the
    others by their mean final loss at the largest budget."""
    growth = {n: r for n, r in results.items() if n not in CONTROLS}
    heads = {n: r.headline() for n, r in growth.items()}
    reached = sorted((n for n, h in heads.items() if h["flops"] is not None and h["bound"] in (None, "lower")),
                     key=lambda n: -heads[n]["flops"])

    def final_loss(n: str) -> float:
        return statistics.fmean(max(runs, key=lambda r: r.end.flops).end.loss for runs in growth[n].runs.values())

    return reached + sorted((n for n in growth if n not in reached), key=final_loss)


def best_schedule(results: dict[str, ScheduleResult]) -> str | None:
    """The first of `ranked_schedules`, or None when there is no growth schedule."""
    ranked = ranked_schedules(results)
    return ranked[0] if ranked else None


def speedup_of(runs: Sequence[RunResult], baseline: Callable[[float], Match], loss: float) -> dict[str, Any]:
    """A schedule's runs (one per budget) against ``baseline`` (loss → cost) at ``loss``."""
    own = frontier_cost([r.end for r in runs], loss)
    s = ratio(baseline(loss), own)
    if s is None:
        return {"flops": None, "wallclock": None, "bound": "not reached" if own.bound == "above" else "unknown",
                "own_flops": own.flops, "own_time_s": own.time_s, "own_bound": own.bound}
    return {"flops": s.flops, "wallclock": s.wallclock, "bound": s.bound, "own_flops": own.flops,
            "own_time_s": own.time_s, "own_bound": own.bound}


def _fmt(x: float | None, bound: str | None = None, spread: float | None = None) -> str:
    if x is None:
        return "not reached" if bound == "not reached" else "—"
    return _fmt_speedup(x, bound) + (f" ± {spread:.2f}" if spread else "")


# -- the benchmark ---------------------------------------------------------------------------------------
def run_envelope(out: str | Path, preset: str | EnvelopePreset = "full", regime: str = "both",
                 names: Sequence[str] | None = None, log: Callable[[str], None] = print,
                 remeasure: bool = False) -> dict[str, Any]:
    """Run (or reuse) every run of the envelope benchmark in ``out``; write results.json and the figures,
    print the tables; returns the results dict. ``remeasure``: run again the finished runs whose cores were
    shared with other processes, keeping the faster timing (losses are bit-identical)."""
    from growkit.data import load_tokenizer, prepare_data
    from growkit.train.hardware import machine

    p = PRESETS[preset] if isinstance(preset, str) else preset
    if regime not in (*REGIMES, "both"):
        raise GrowkitError(f"unknown regime {regime!r}: choose compute-optimal, over-trained or both")
    names = list(names) if names else list(p.schedules)
    unknown = [n for n in names if n not in SCHEDULES]
    if unknown:
        raise GrowkitError(f"unknown schedule(s) {', '.join(unknown)}: choose from {', '.join(SCHEDULES)}")
    regimes = REGIMES if regime == "both" else (regime,)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer("byte")
    train_tokens = prepare_data(tok, None, None, 0.05).n_tokens("train")
    bench = Bench(p, out, tok.vocab_size, train_tokens, log, remeasure=remeasure)
    sizes = [size_of(shape(L, d), p.seq_len, tok.vocab_size) for L, d in p.ladder]
    started = time.perf_counter()
    threads = preset_threads(p.threads)
    probe = run_dict(bench.base, Schedule("probe", "", sizes[0].shape.model("llama")), 1.0, str(out / "probe"),
                     max_flops=p.flops)
    log(f"growkit bench envelope: preset {p.name!r}, C = {p.flops:.3g} FLOPs, llama byte-level ladder "
        f"{', '.join(f'{label(s.shape)} ({s.params:,})' for s in sizes)}; corpus train split {train_tokens:,} "
        f"tokens (≤ {p.max_epochs:g} epochs a run); {threads} thread(s), {resolved_now(probe, threads).summary()}")

    # 1-2: the LR shape, the LR sweep and the iso-FLOP grid
    levels = {label(s.shape): feasible_levels(p, s, train_tokens) for s in sizes}
    runnable = [s for s in sizes if levels[label(s.shape)]]
    for s in sizes:
        if not levels[label(s.shape)]:
            log(f"  {label(s.shape)}: no feasible level (over {p.max_epochs:g} epochs or under {p.min_steps} steps)")
    if len(runnable) < 2:
        raise GrowkitError("fewer than 2 ladder sizes can run at this budget: raise flops or max_epochs")
    shape_sweep: dict[str, Any] | None = None
    if len(p.lr_shapes) > 1:
        ref = runnable[len(runnable) // 2]
        lv = sweep_level(p, levels[label(ref.shape)])
        log(f"LR shape sweep ({label(ref.shape)} at {lv:g} C, lr {centre_lr(p, ref):.2e}):")
        chosen, tried_shapes = sweep_shape(bench, ref, lv)
        shape_sweep = {"size": label(ref.shape), "level": lv, "lr": centre_lr(p, ref), "tried": tried_shapes,
                       "best": chosen}
    else:
        chosen = p.lr_shapes[0]
    bench.lr_shape = chosen
    log(f"LR sweep (LR shape {chosen}; each size at its largest level up to {p.sweep_level:g} C):")
    at = {label(s.shape): (s, sweep_level(p, levels[label(s.shape)])) for s in runnable}
    swept = sweep_lrs(bench, at)
    tuned = {k: best for k, (best, _) in swept.items()}
    sweeps = {k: {"level": at[k][1], "tried": tried, "best": best} for k, (best, tried) in swept.items()}
    usable = runnable
    by_width = lr_by_width([(s.shape.d_model, tuned[label(s.shape)]) for s in usable])
    log("iso-FLOP grid:")
    cells = [(label(s.shape), lv, bench.scratch_req(s, lv, tuned[label(s.shape)]))
             for s in usable for lv in levels[label(s.shape)]]
    grid: dict[str, dict[float, RunResult]] = {k: {} for k in tuned}
    for (k, lv, _), r in zip(cells, bench.run_many([c[2] for c in cells]), strict=True):
        grid[k][lv] = r

    # 3: the L(N, D) fit and the compute-optimal size it predicts
    fit_runs = [(float(s.params), float(r.tokens), r.end.loss) for s in usable for r in grid[label(s.shape)].values()]
    fit: Fit | None = fit_loss_law(fit_runs) if len(fit_runs) >= 5 else None
    fpt = flops_per_token_curve([(s.params, s.flops_per_token) for s in sizes])
    optimum = compute_optimal(fit.law, p.flops, fpt) if fit else None
    n_opt = (lambda c: compute_optimal(fit.law, c, fpt).params) if fit else None

    # 4: targets
    at_c = {label(s.shape): s for s in usable if 1.0 in grid[label(s.shape)]}
    if not at_c:
        raise GrowkitError("no ladder size runs at the full budget C: raise max_epochs or add larger sizes")
    ranked = sorted(at_c, key=lambda k: grid[k][1.0].end.loss)
    log("seeds of the best and runner-up sizes at C:")
    seeded = [(k, bench.scratch_req(at_c[k], 1.0, tuned[k], seed)) for k in ranked[:2] for seed in range(p.seeds)]
    target_runs: dict[str, list[RunResult]] = {k: [] for k in ranked[:2]}
    for (k, _), r in zip(seeded, bench.run_many([q for _, q in seeded]), strict=True):
        target_runs[k].append(r)
    ranked[:2] = sorted(ranked[:2], key=lambda k: _mean_point(target_runs[k]).loss)
    co_target = at_c[ranked[0]]
    regimes_out: dict[str, Any] = {}
    all_scratch = [r for r in bench.results.values() if r.schedule == "scratch"]
    envelope = lower_hull([r.end for r in all_scratch])

    def envelope_baseline(loss: float) -> Match:
        return envelope_cost([r.end for r in all_scratch], loss)

    targets: dict[str, tuple[Size, Callable[[float], Match], list[RunResult]]] = {}
    if "compute-optimal" in regimes:
        targets["compute-optimal"] = (co_target, envelope_baseline, target_runs[ranked[0]])
    r_star = optimum.tokens_per_param if optimum else None
    if "over-trained" in regimes:
        need = p.overtrain_factor * (r_star or 0.0)
        ok = [k for k in at_c if grid[k][1.0].tokens / at_c[k].params >= need]
        ot_key = max(ok, key=lambda k: at_c[k].params) if ok else min(at_c, key=lambda k: at_c[k].params)
        ot = at_c[ot_key]
        runs = target_runs.get(ot_key) or bench.run_many([bench.scratch_req(ot, 1.0, tuned[ot_key], seed)
                                                          for seed in range(p.seeds)])

        def own_frontier(loss: float, key: str = ot_key, seeded: list[RunResult] = runs) -> Match:
            # every run of that size, its seeds at C included (as the envelope holds every seed)
            return frontier_cost([r.end for r in grid[key].values()] + [r.end for r in seeded], loss)

        targets["over-trained"] = (ot, own_frontier, runs)
        ot_check = {"required_tokens_per_param": need, "met": bool(ok),
                    "note": None if ok else f"no ladder size reaches {need:.0f} tokens/param at C: the smallest "
                                            f"one is used; add a smaller size or raise C"}

    # 5-6: schedules and speedups
    for reg, (target, baseline, truns) in targets.items():
        tpoint = _mean_point(truns)
        log(f"{reg}: target {label(target.shape)} ({target.params:,} params), loss {tpoint.loss:.4f} "
            f"± {spread([r.end.loss for r in truns]):.4f} at C ({truns[0].tokens / target.params:.0f} tokens/param)")
        results: dict[str, ScheduleResult] = {}
        todo = [n for n in names if not (n.startswith("follow") and (reg != "compute-optimal" or n_opt is None))
                and not (reg == REGIMES[1] and n not in p.overtrained_schedules)]
        plans = {n: _ScheduleRuns(bench, n, reg, target, usable, by_width, n_opt, tuned[label(target.shape)])
                 for n in todo}
        bench.run_many([q for sr in plans.values() for q in sr.reqs(0, sr.budgets)])
        bench.run_many([q for sr in plans.values() for q in sr.extra_reqs(0, tpoint.loss)])
        for name, plan in plans.items():
            sr = plan.result(0, tpoint.loss)
            if sr is not None:
                sr.speedups[0] = speedup_of(sr.runs[0], baseline, tpoint.loss)
                results[name] = sr
        top = ranked_schedules(results)[:p.seeded_schedules]
        if p.seeds > 1 and top:
            seeds = range(1, p.seeds)
            bench.run_many([q for n in top for seed in seeds for q in plans[n].reqs(seed, plans[n].budgets)])
            bench.run_many([q for n in top for seed in seeds for q in plans[n].extra_reqs(seed, tpoint.loss)])
            for n in top:
                for seed in seeds:
                    more = plans[n].result(seed, tpoint.loss)
                    assert more is not None
                    results[n].runs[seed] = more.runs[seed]
                    results[n].speedups[seed] = speedup_of(more.runs[seed], baseline, tpoint.loss)
        best = best_schedule({n: results[n] for n in top})
        regimes_out[reg] = {"target": {"shape": label(target.shape), "params": target.params,
                                       "loss": tpoint.loss, "loss_spread": spread([r.end.loss for r in truns]),
                                       "flops": tpoint.flops, "time_s": tpoint.time_s,
                                       "tokens_per_param": truns[0].tokens / target.params,
                                       "seeds": [r.end.loss for r in truns]},
                            "baseline": "envelope (lower hull of every from-scratch run)" if reg == REGIMES[0]
                            else f"{label(target.shape)}'s own frontier",
                            "baseline_cost": asdict(baseline(tpoint.loss)),
                            "schedules": results, "best": best}
        if reg == REGIMES[1]:
            regimes_out[reg]["over_training"] = ot_check
        regimes_out[reg]["controls"] = against_controls(results)

    data = _results(bench, p, sizes, usable, tuned, shape_sweep, sweeps, grid, levels, ranked, target_runs, envelope,
                    fit, optimum, regimes_out, machine(), time.perf_counter() - started)
    data["plots"] = [str(x) for x in plot(data, out)]
    import json

    (out / RESULTS_FILE).write_text(json.dumps(data, indent=1))
    log("")
    log(format_tables(data))
    log("")
    for x in data["plots"]:
        log(f"plot: {x}")
    log(f"results: {out / RESULTS_FILE}")
    for line in last_lines(data):
        log(line)
    return data


class _ScheduleRuns:
    """The runs of schedule ``name`` into ``target`` in one regime: its budgets (and the extra budget when its
    smallest budget already reaches the target's loss), per seed. Growth runs get the tuned LR of each width
    (`with_lr_scales`); a control (the target from scratch) gets the target's own tuned LR. A schedule that
    cannot grow this target is skipped, with the reason logged."""

    def __init__(self, bench: Bench, name: str, reg: str, target: Size, sizes: Sequence[Size],
                 tuned: dict[int, float], n_opt: Callable[[float], float] | None, target_lr: float) -> None:
        self.bench, self.name, self.target, self.sizes = bench, name, target, sizes
        self.tuned, self.n_opt, self.target_lr = tuned, n_opt, target_lr
        self.tag = "co" if reg == REGIMES[0] else "ot"
        self.budgets = sorted(bench.preset.schedule_budgets)
        self.skip: str | None = None
        shape = LR_SHAPES.get(bench.lr_shape or "", {})
        v = VARIANTS.get(name)
        if v is not None and v.at is None and not v.stage and {**shape, **v.train} == shape:
            self.skip = f"under the chosen LR shape {bench.lr_shape} it is {v.base} itself"
        elif not name.startswith(("follow", "target")) and half(target.shape) == target.shape:
            self.skip = f"the target {label(target.shape)} is the smallest shape growth starts from"
        else:
            try:
                for b in self.budgets:
                    bench.spec(self.req(b, 0))
            except GrowkitError as e:
                self.skip = str(e)
            built = self.build(self.budgets[-1])
            if not self.skip and not name.startswith("target") and not built.growth and not built.data:
                self.skip = f"it grows nothing into {label(target.shape)}: it would be the target from scratch"
        if self.skip:
            bench.log(f"  {name}: skipped — {self.skip}")

    def build(self, budget: float) -> Schedule:
        name = self.name
        if name in VARIANTS:
            v = VARIANTS[name]
            base, at, train, stage = v.base, v.at, v.train, v.stage
            if base == "target":
                s = Schedule(name, "the target from scratch (a control, not growth)", self.target.shape.model("llama"))
            else:
                s = self.build_base(base, budget)
                if at is not None:
                    s = replace(s, growth=[{**s.growth[0], "at_fraction": at}, *s.growth[1:]])
                s = replace(s, growth=[{**g, **stage} for g in s.growth])
            changes = ([f"growth at {at:.0%}"] if at is not None else []) + [
                f"{k} = {v}" for k, v in {**train, **stage}.items()]
            return replace(s, name=name, train={**s.train, **train}, title=f"{s.title} — {', '.join(changes)}")
        return self.build_base(name, budget)

    def build_base(self, name: str, budget: float) -> Schedule:
        p = self.bench.preset
        if name == "follow":
            assert self.n_opt is not None
            return follow_schedule(self.bench, self.sizes, self.target, self.n_opt, budget)
        found = {s.name: s for s in seed_schedules(self.target.shape, half(self.target.shape), p.ramp_steps,
                                                   p.seq_len, "llama")}
        return without_noops(found[name])

    def req(self, budget: float, seed: int) -> Req:
        s, pre = with_lr_scales(self.build(budget), self.tuned, self.bench.base)
        if self.name in CONTROLS:
            pre = replace(pre, lr=self.target_lr)
        return Req(f"{self.name}-{self.tag}{label(self.target.shape).replace('L×', 'x')}-c{round(budget * 1000):04d}",
                   s, budget, pre, seed)

    def reqs(self, seed: int, budgets: Sequence[float]) -> list[Req]:
        return [] if self.skip else [self.req(b, seed) for b in budgets]

    def extra_reqs(self, seed: int, target_loss: float) -> list[Req]:
        """The extra budget's run, when the smallest budget already reaches ``target_loss``."""
        p = self.bench.preset
        if self.skip or p.extra_budget >= self.budgets[0]:
            return []
        first = self.bench.run(self.req(self.budgets[0], seed))
        return [self.req(p.extra_budget, seed)] if first.end.loss <= target_loss else []

    def result(self, seed: int, target_loss: float) -> ScheduleResult | None:
        if self.skip:
            return None
        runs = self.bench.run_many(self.extra_reqs(seed, target_loss) + self.reqs(seed, self.budgets))
        return ScheduleResult(self.name, self.build(self.budgets[-1]).title, {seed: runs})


def _results(bench: Bench, p: EnvelopePreset, sizes: list[Size], usable: list[Size], tuned: dict[str, float],
             shape_sweep: dict[str, Any] | None, sweeps: dict[str, Any], grid: dict[str, dict[float, RunResult]],
             levels: dict[str, list[float]],
             ranked: list[str], target_runs: dict[str, list[RunResult]], envelope: list[Point], fit: Fit | None,
             optimum: Any, regimes: dict[str, Any], hardware: dict[str, Any], wall: float) -> dict[str, Any]:
    def run_row(r: RunResult) -> dict[str, Any]:
        return {"name": r.name, "schedule": r.schedule, "budget": r.extra["budget"], "final_val_loss": r.end.loss,
                "flops": r.end.flops, "train_time_s": r.end.time_s, "tokens": r.tokens, "params": r.params,
                "epochs": r.extra["epochs"], "lr": r.extra["lr"], "lr_shape": r.extra["lr_shape"],
                "seed": r.extra["seed"],
                "max_loss_jump": r.max_loss_jump, "reused": r.reused, "cpu_share": r.extra.get("cpu_share"),
                "final_model": r.extra.get("final_model"), "growth": r.extra.get("growth", []),
                "curve": [asdict(pt) for pt in r.curve]}

    reg_out = {}
    for reg, d in regimes.items():
        reg_out[reg] = {**{k: v for k, v in d.items() if k != "schedules"},
                        "schedules": {n: {"title": sr.title, "headline": sr.headline(),
                                          "per_seed": {str(k): v for k, v in sr.speedups.items()},
                                          "runs": {str(k): [r.name for r in v] for k, v in sr.runs.items()}}
                                      for n, sr in d["schedules"].items()}}
    best_co = reg_out.get(REGIMES[0], {}).get("best")
    best_ot = reg_out.get(REGIMES[1], {}).get("best")
    return {
        "benchmark": "growkit bench envelope",
        "preset": asdict(p),
        "ladder": [{"shape": label(s.shape), "n_layers": s.shape.n_layers, "d_model": s.shape.d_model,
                    "n_heads": s.shape.n_heads, "d_ff": s.shape.d_ff, "params_non_embedding": s.params,
                    "flops_per_token": s.flops_per_token, "levels": levels[label(s.shape)],
                    "lr": tuned.get(label(s.shape))} for s in sizes],
        "lr_shape": bench.lr_shape,
        "lr_shape_sweep": shape_sweep,
        "lr_sweeps": sweeps,
        "lr_rule": f"LR shape: each of {', '.join(p.lr_shapes)} on the middle ladder size at "
                   f"{', '.join(f'{x:g}' for x in p.shape_lr_factors)}× the centre LR, the lowest loss's shape "
                   f"serves every run; peak LR: sweep ½×, 1×, 2× of {p.lr_ref:g}·(64/d_model)^½ at each "
                   f"size's largest level up to {p.sweep_level:g} C, extended ≤{p.max_extend}× past a winning edge; "
                   f"the winner serves every level of that size",
        "grid": {k: {f"{lv:g}": v.name + f"-s{v.extra['seed']}" for lv, v in g.items()} for k, g in grid.items()},
        "compute_optimal_ranking_at_C": [{"shape": k, "losses": [r.end.loss for r in target_runs.get(k, [])]
                                          or [grid[k][1.0].end.loss]} for k in ranked],
        "envelope": [asdict(pt) for pt in envelope],
        "fit": fit.to_dict() if fit else None,
        "fitted_optimum_at_C": None if optimum is None else {
            "params": optimum.params, "tokens": optimum.tokens, "tokens_per_param": optimum.tokens_per_param,
            "loss": optimum.loss},
        "regimes": reg_out,
        "summary": {
            "envelope_speedup_flops": _headline_of(reg_out, REGIMES[0], best_co, "flops"),
            "envelope_speedup_wallclock": _headline_of(reg_out, REGIMES[0], best_co, "wallclock"),
            "overtrained_speedup_flops": _headline_of(reg_out, REGIMES[1], best_ot, "flops"),
            "overtrained_speedup_wallclock": _headline_of(reg_out, REGIMES[1], best_ot, "wallclock"),
            "best_compute_optimal": best_co, "best_over_trained": best_ot,
        },
        "train_tokens": bench.train_tokens,
        "resolved": next(iter(bench.results.values())).extra.get("resolved"),
        "runs": [run_row(r) for r in bench.results.values()],
        "reused_runs": bench.reused,
        "benchmark_wall_s": wall,
        "hardware": hardware,
    }


def _headline_of(reg_out: dict[str, Any], reg: str, best: str | None, key: str) -> dict[str, Any] | None:
    if reg not in reg_out:
        return None
    if best is None:
        return {"value": None, "spread": None, "bound": "not reached", "schedule": None}
    h = reg_out[reg]["schedules"][best]["headline"]
    return {"value": h[key], "spread": h.get(f"{key}_spread"), "bound": h["bound"], "schedule": best,
            "seeds": h["seeds"]}


# -- reporting -------------------------------------------------------------------------------------------
def format_tables(data: dict[str, Any]) -> str:
    """The ladder, the fit and, per regime, the speedup of every schedule, as Markdown."""
    rows = ["| size | non-emb params | FLOPs/token | tuned LR | levels run (× C) |", "|---|---|---|---|---|"]
    for s in data["ladder"]:
        lr = "—" if s["lr"] is None else f"{s['lr']:.2e}"
        rows.append(f"| {s['shape']} | {s['params_non_embedding']:,} | {s['flops_per_token']:.3g} | {lr} | "
                    f"{', '.join(f'{x:g}' for x in s['levels']) or '—'} |")
    sw = data.get("lr_shape_sweep")
    if sw:
        best = {}
        for name, lr, loss in sw["tried"]:
            if name not in best or loss < best[name][1]:
                best[name] = (lr, loss)
        rows += ["", f"LR shape (after warmup; d2z: decay to zero, else to lr/10), swept on {sw['size']} at "
                     f"{sw['level']:g} C, each at {len(sw['tried']) // len(best)} LRs around {sw['lr']:.2e} — best "
                     "loss per shape: "
                     + ", ".join(f"{'**' if n == sw['best'] else ''}{n} {v:.4f}{'**' if n == sw['best'] else ''} "
                                 f"(lr {lr:.2e})" for n, (lr, v) in best.items())
                     + f"; every run of the benchmark uses {sw['best']}"]
    fit = data.get("fit")
    if fit:
        law = fit["law"]
        opt = data["fitted_optimum_at_C"]
        rows += ["", f"L(N, D) = {law['E']:.3f} + {law['A']:.3g}/N^{law['alpha']:.3f} + "
                     f"{law['B']:.3g}/D^{law['beta']:.3f}"
                     f" — rms residual {fit['rms_relative_residual']:.2%}, max {fit['max_abs_relative_residual']:.2%};"
                     f" at C: N* = {opt['params']:,.0f}, D* = {opt['tokens']:,.0f} ({opt['tokens_per_param']:.0f} "
                     f"tokens/param)"]
    for reg, d in data["regimes"].items():
        t = d["target"]
        rows += ["", f"**{reg}** — target {t['shape']} ({t['params']:,} params, {t['tokens_per_param']:.0f} "
                     f"tokens/param), loss {t['loss']:.4f} ± {t['loss_spread']:.4f} at C; baseline: {d['baseline']}",
                 "",
                 "| schedule | seeds | speedup FLOPs | speedup wall-clock | FLOPs to target loss | val loss at "
                 "its budgets (seed 0) |",
                 "|---|---|---|---|---|---|"]
        for name, sr in d["schedules"].items():
            h = sr["headline"]
            own = sr["per_seed"]["0"]
            ends = {r["budget"]: r["final_val_loss"] for r in data["runs"] if r["name"] in sr["runs"]["0"]
                    and r["seed"] == 0}
            rows.append(f"| {name} | {h['seeds']} | {_fmt(h['flops'], h['bound'], h.get('flops_spread'))} | "
                        f"{_fmt(h['wallclock'], h['bound'], h.get('wallclock_spread'))} | "
                        f"{({'above': '≥', 'below': '≤'}.get(own['own_bound'] or '', ''))}{own['own_flops']:.3g} | "
                        f"{' / '.join(f'{ends[b]:.4f}' for b in sorted(ends))} |")
        rows += _control_rows(d)
    return "\n".join(rows)


def _control_rows(d: dict[str, Any]) -> list[str]:
    rows = []
    for control, c in d.get("controls", {}).items():
        rows += ["", f"against the control `{control}` (the target from scratch with "
                     f"{', '.join(f'{k} = {v}' for k, v in c['train'].items())}, loss "
                     f"{c['loss']:.4f} at C): variants with the same LR shape", "",
                 "| schedule | speedup FLOPs | speedup wall-clock |", "|---|---|---|"]
        for name, sp in c["schedules"].items():
            rows.append(f"| {name} | {_fmt(sp['flops'], sp['bound'])} | {_fmt(sp['wallclock'], sp['bound'])} |")
    return rows


def last_lines(data: dict[str, Any]) -> list[str]:
    """The benchmark's last three lines (``nan`` for a figure that could not be measured)."""
    s = data["summary"]

    def v(h: dict[str, Any] | None) -> str:
        if h is None or h["value"] is None:
            return "nan"
        mark = {"lower": "≥", "upper": "≤"}.get(h["bound"] or "", "")
        return f"{mark}{h['value']:.3f}"

    return [f"envelope_speedup_flops: {v(s['envelope_speedup_flops'])}",
            f"envelope_speedup_wallclock: {v(s['envelope_speedup_wallclock'])}",
            f"overtrained_speedup_flops: {v(s['overtrained_speedup_flops'])}"]


def plot(data: dict[str, Any], out: Path) -> list[Path]:
    """The envelope with each regime's schedule curves over it, speedups with their spread, the fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {r["name"] + f"-s{r['seed']}": r for r in data["runs"]}
    by_name = {r["name"]: r for r in data["runs"]}
    written = []
    env = data["envelope"]
    for reg, filename in zip(REGIMES, PLOT_FILES[:2], strict=True):
        if reg not in data["regimes"]:
            continue
        d = data["regimes"][reg]
        fig, ax = plt.subplots(figsize=(8, 5.2))
        for r in data["runs"]:
            if r["schedule"] == "scratch":
                ax.plot(r["flops"], r["final_val_loss"], ".", color="0.6", ms=5)
        ax.plot([p["flops"] for p in env], [p["loss"] for p in env], "-", color="black", lw=2,
                label="envelope: best from-scratch size at each compute")
        for i, (name, sr) in enumerate(d["schedules"].items()):
            color = plt.get_cmap("tab10")(i % 10)
            for rname in sr["runs"]["0"]:
                r = by_name.get(rname) or runs.get(rname)
                if r is None:
                    continue
                pts = [p for p in r["curve"] if p["flops"] > 0]
                ax.plot([p["flops"] for p in pts], [p["loss"] for p in pts], "-", color=color, alpha=0.6, lw=1,
                        label=name if rname == sr["runs"]["0"][-1] else None)
                ax.plot(r["flops"], r["final_val_loss"], "o", color=color, ms=4)
        ax.axhline(d["target"]["loss"], color="gray", ls=":", lw=1, label=f"target {d['target']['shape']} at C")
        loss_vs_flops_axes(ax, min(p["loss"] for p in env), 0.1, 1.2)
        ax.set_title(f"growkit bench envelope ({reg}): final points of fully decayed runs and eval curves", fontsize=9)
        written.append(save(fig, out / filename))
    fig, ax = plt.subplots(figsize=(10, 5))
    labels, xs = [], 0
    for j, (reg, d) in enumerate(data["regimes"].items()):
        for name, sr in d["schedules"].items():
            h = sr["headline"]
            if h["flops"] is not None:
                ax.bar(xs, h["flops"], yerr=h.get("flops_spread") or None, color=plt.get_cmap("tab10")(j),
                       capsize=3, hatch="//" if h["bound"] else None)
            labels.append(f"{name} ({'CO' if reg == REGIMES[0] else 'OT'}, {h['seeds']} seed{'s' * (h['seeds'] > 1)})")
            xs += 1
    ax.axhline(1.0, color="black", lw=1)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=55, ha="right")
    ax.set_ylabel("FLOP speedup to the target loss")
    ax.set_title("speedup against the envelope (CO) and the target's own frontier (OT); hatched: a bound; "
                 "bars: mean ± half the range over seeds", fontsize=9)
    fig.tight_layout()
    written.append(save(fig, out / PLOT_FILES[2]))
    if data["fit"]:
        from growkit.bench.scaling import LossLaw

        law = LossLaw(**data["fit"]["law"])
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, n in enumerate(sorted({r["N"] for r in data["fit"]["runs"]})):
            pts = sorted((r["D"], r["loss"]) for r in data["fit"]["runs"] if r["N"] == n)
            color = plt.get_cmap("viridis")(i / max(1, len(data["ladder"]) - 1))
            ax.plot([d for d, _ in pts], [v for _, v in pts], "o", color=color, label=f"N = {n:,.0f}")
            ds = [pts[0][0] * (pts[-1][0] / pts[0][0]) ** (k / 30) for k in range(31)]
            ax.plot(ds, [law.predict(n, d) for d in ds], "-", color=color, lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("training tokens D")
        ax.set_ylabel("validation loss")
        ax.legend(fontsize=7)
        ax.set_title("L(N, D) fit (lines) against the ladder's runs (points)", fontsize=9)
        written.append(save(fig, out / PLOT_FILES[3]))
    return written
