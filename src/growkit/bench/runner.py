"""The run machinery every iso-FLOP benchmark shares (`growkit.bench.envelope`, `growkit.bench.sparse_pareto`).

A `Req` names one run: a `growkit.bench.schedules.Schedule` trained for ``budget`` × C FLOPs (C: the
benchmark's budget unit, ``train.max_flops``), with the settings of a base `growkit.bench.schedules.Preset`
(its LR, seed), an optional ``[sparsity]`` table. A `Bench` turns requests into runs in ``out/runs/<key>``
and reuses a finished run whose config is identical (`growkit.bench.speedup.execute`), so an interrupted
benchmark goes on where it stopped; `Bench.run_many` trains ``jobs`` independent runs at a time, each in a
spawned process of its own with ``threads`` threads.

Every run's LR schedule decays fully at its own budget; its *shape* after warmup is one of `LR_SHAPES`
(`Bench.lr_shape`: the benchmark's choice, put under every run's own ``[train]`` overrides).

`sweep_lrs` is the LR rule: for each key, a value v is tried at centre/r, centre and centre·r (r = 2 unless
told); while the best is at an edge the sweep goes on in that direction, up to ``max_extend`` more values.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from growkit.bench.schedules import Preset, Schedule, run_dict
from growkit.bench.speedup import (
    RunResult,
    RunSpec,
    _finished,
    execute,
    plan_run,
    preset_threads,
    read_result,
)

#: The LR shapes a benchmark may use (``[train]`` overrides after warmup). ``d2z``: decay to zero.
LR_SHAPES: dict[str, dict[str, Any]] = {
    "cosine": {"decay": "cosine"},
    "cosine-d2z": {"decay": "cosine", "min_lr": 0.0},
    "linear-d2z": {"decay": "linear", "min_lr": 0.0},
    "wsd": {"decay": "wsd"},
    "wsd-d2z": {"decay": "wsd", "min_lr": 0.0},
}


def shape_of(train: dict[str, Any]) -> str:
    """The LR shape's name of a run's ``[train]`` table, as in `LR_SHAPES` (``-d2z``: decays to zero)."""
    return train.get("decay", "cosine") + ("-d2z" if train.get("min_lr") == 0.0 else "")


@dataclass
class Req:
    """One run to make: ``schedule`` with ``budget`` × C training FLOPs, the LR of ``preset``, ``seed``;
    ``sparsity``: the run's ``[sparsity]`` table (None: dense)."""

    name: str
    schedule: Schedule
    budget: float
    preset: Preset | None = None
    seed: int = 0
    sparsity: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.name}-s{self.seed}"


@dataclass
class Bench:
    """One benchmark's state: what every run shares, where it writes, what it has run, and how."""

    base: Preset
    """The run settings every run shares (`growkit.bench.schedules.run_dict`); its model is unused."""
    flops: float
    """C: the budget unit, in training FLOPs (a request's ``budget`` is a multiple of it)."""
    out: Path
    vocab_size: int
    train_tokens: int
    """Tokens in the corpus's training split (a run's epochs are its tokens / this)."""
    jobs: int = 1
    """Runs trained at once, each in its own process with ``threads`` threads."""
    evals_per_run: int = 4
    threads: int | None = None
    log: Callable[[str], None] = print
    results: dict[str, RunResult] = field(default_factory=dict)
    reused: int = 0
    remeasure: bool = False
    """Run again the finished runs whose cores were shared (`growkit.bench.speedup.execute`)."""
    lr_shape: str | None = None
    """The LR shape (`LR_SHAPES`) of every run once the benchmark has chosen it."""
    fresh: dict[str, float] = field(default_factory=dict)
    """Runs trained by this invocation in a worker process (`run_many`), with their seconds."""
    specs: dict[str, RunSpec] = field(default_factory=dict)
    """Every run planned so far, by key."""

    def spec(self, req: Req) -> RunSpec:
        """The run of ``req``: the schedule's own ``[train]`` overrides on top of the benchmark's LR shape
        (made once per key: planning replays the run's counters)."""
        if req.key in self.specs:
            return self.specs[req.key]
        pre = replace(req.preset or self.base, seed=req.seed)
        schedule = req.schedule
        if self.lr_shape is not None:
            schedule = replace(schedule, train={**LR_SHAPES[self.lr_shape], **schedule.train})
        run_dir = str(self.out / "runs" / req.key)
        cfg = run_dict(pre, schedule, req.budget, run_dir, max_flops=req.budget * self.flops)
        if req.sparsity is not None:
            cfg["sparsity"] = dict(req.sparsity)
        plan = plan_run(cfg, self.vocab_size)
        cfg["run"]["eval_every"] = max(1, math.ceil(plan.steps / self.evals_per_run))
        self.specs[req.key] = RunSpec(req.key, schedule.name, req.budget, cfg, plan, preset_threads(self.threads))
        return self.specs[req.key]

    def run(self, req: Req) -> RunResult:
        """Run (or reuse) ``req``."""
        if req.key in self.results:
            return self.results[req.key]
        spec = self.spec(req)
        t0 = time.perf_counter()
        reused = execute(spec, remeasure=self.remeasure) and req.key not in self.fresh
        r = read_result(spec, reused)
        pre = req.preset or self.base
        r.extra.update(lr=pre.lr, seed=req.seed, epochs=r.tokens / self.train_tokens, budget=req.budget,
                       growth=spec.config["growth"], lr_shape=shape_of(spec.config["train"]))
        if req.sparsity is not None:
            r.extra["sparsity"] = dict(req.sparsity)
        self.results[req.key] = r
        self.reused += reused
        secs = self.fresh.get(req.key, time.perf_counter() - t0)
        what = "reused" if reused else f"{secs:.0f} s"
        self.log(f"  {req.key}: {spec.plan.steps} steps, {r.tokens:,} tokens ({r.tokens / self.train_tokens:.2f} "
                 f"epochs), {r.end.flops:.3g} FLOPs, lr {pre.lr:.2e}, val loss {r.end.loss:.4f} ({what})")
        return r

    def run_many(self, reqs: Sequence[Req]) -> list[RunResult]:
        """Run (or reuse) every request; with ``jobs`` > 1 the unfinished ones train ``jobs`` at a time, each in
        a process of its own. A run that fails in a worker is run again here, where its error is raised."""
        if self.jobs > 1:
            unique = {r.key: r for r in reqs if r.key not in self.results}
            todo = [(k, self.spec(r)) for k, r in unique.items()]
            todo = [(k, sp) for k, sp in todo if not (_finished(sp) and not self.remeasure)]
            if len(todo) > 1:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(min(self.jobs, len(todo)), mp_context=ctx) as pool:
                    futures = {k: pool.submit(_timed_execute, sp, self.remeasure) for k, sp in todo}
                    for k, f in futures.items():
                        with contextlib.suppress(Exception):  # run again below, in this process, which raises it
                            self.fresh[k] = f.result()
        return [self.run(r) for r in reqs]


def _timed_execute(spec: RunSpec, remeasure: bool) -> float:
    """`execute` in a worker process; returns its seconds."""
    t0 = time.perf_counter()
    execute(spec, remeasure=remeasure)
    return time.perf_counter() - t0


K = TypeVar("K", bound=Hashable)


def sweep_lrs(bench: Bench, make: Callable[[K, float], Req], centres: dict[K, float], max_extend: int,
              step: float = 2.0) -> dict[K, tuple[float, list[tuple[float, float]]]]:
    """The LR rule (module doc) for every key at once: ``make(key, value)`` is the run of ``value``; returns,
    per key, the winning value and every (value, loss) tried, sorted by value."""
    tried: dict[K, dict[float, float]] = {k: {} for k in centres}
    nxt = {k: [c / step, c, c * step] for k, c in centres.items()}
    for _ in range(max_extend + 1):
        reqs = {(k, v): make(k, v) for k, vs in nxt.items() for v in vs}
        for (k, v), r in zip(reqs, bench.run_many(list(reqs.values())), strict=True):
            tried[k][v] = r.end.loss
        nxt = {}
        for k, t in tried.items():
            best = min(t, key=lambda v: t[v])
            if best == min(t) and len(t) < 3 + max_extend:
                nxt[k] = [best / step]
            elif best == max(t) and len(t) < 3 + max_extend:
                nxt[k] = [best * step]
        if not nxt:
            break
    return {k: (min(t, key=lambda v: t[v]), sorted(t.items())) for k, t in tried.items()}


def lr_by_width(pairs: Sequence[tuple[int, float]]) -> dict[int, float]:
    """Tuned LR per width: the geometric mean over the sizes of that width (depths differ)."""
    widths: dict[int, list[float]] = {}
    for d, lr in pairs:
        widths.setdefault(d, []).append(lr)
    return {d: v[0] if len(v) == 1 else math.exp(statistics.fmean(math.log(x) for x in v)) for d, v in widths.items()}


def lr_at(tuned: dict[int, float], d_model: int) -> float:
    """The tuned LR at width ``d_model``: log-log interpolation between tuned widths, held at the ends."""
    ds = sorted(tuned)
    if d_model <= ds[0]:
        return tuned[ds[0]]
    if d_model >= ds[-1]:
        return tuned[ds[-1]]
    lo = max(d for d in ds if d <= d_model)
    hi = min(d for d in ds if d >= d_model)
    if lo == hi:
        return tuned[lo]
    a = math.log(d_model / lo) / math.log(hi / lo)
    return math.exp(math.log(tuned[lo]) + a * (math.log(tuned[hi]) - math.log(tuned[lo])))
