"""``growkit bench speedup``: how much compute growth saves, measured as "No Train No Gain" asks.

Every run has its own LR schedule, fully decayed at its own budget (Kaddour et al. 2023): a run is never
cut short to read off a "first reach" point. The runs:

- the **frontier**: the target model from scratch at 25/50/75/100 % of the full token budget;
- each selected **schedule** (`growkit.bench.schedules`) at two or more budgets;
- the ``small`` baseline: a smaller model from scratch at the FLOPs of `schedules.MAIN` at each budget.

All runs share the data, its order (batches are pure functions of the step and seed), the optimizer,
the LR shape and the evaluation batches.

Speedup of a run that reaches loss ``ℓ`` with ``F`` FLOPs in ``T`` seconds:
``F_frontier(ℓ) / F`` (and ``T_frontier(ℓ) / T``), where ``F_frontier(ℓ)`` interpolates the frontier's
final points linearly in (loss, log FLOPs) — and wall-clock at the same position between the same two
points. Dominated frontier points (more FLOPs, no lower loss) are dropped first. Outside the frontier
nothing is extrapolated: a run better than the full from-scratch run gets a lower bound (``≥``), one worse
than the smallest frontier run an upper bound (``≤``).

The **headline** of a schedule is its speedup at the budget where it matches the full from-scratch run's
final loss, interpolated in log-FLOPs (and log-seconds) between the schedule's own budgets; if its
largest budget does not reach that loss it is "not reached"; if its smallest budget already beats it,
the headline is a lower bound.

Wall-clock is training time: each run's ``time_s`` minus the time its evaluations took (measured here),
so evaluation frequency does not bias it. All runs run one after another in this process, with the same
thread count; on a shared machine wall-clock ratios are noisier than FLOP ratios.

Output in ``--out``: one run dir per run (reused when finished, so an interrupted benchmark continues),
``results.json``, ``loss_vs_flops.png``, ``loss_vs_time.png``; a table on stdout whose last two lines
are ``best_speedup_wallclock: <x>`` and ``best_speedup_flops: <x>`` (best headline over the growth
schedules; if none reaches the target loss, the best speedup measured at a schedule's largest budget).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from growkit.bench.figures import save
from growkit.bench.frontier import (  # noqa: F401  (re-exported: the math used to live here)
    Headline,
    Match,
    Point,
    Speedup,
    frontier_cost,
    headline,
    pareto,
    speedup_at,
)
from growkit.bench.schedules import BASELINES, NAMES, PRESETS, Preset, Schedule, run_dict, schedules
from growkit.errors import GrowkitError

if TYPE_CHECKING:
    from growkit.train.hardware import Resolved

BENCH_FILE = "bench.json"
RESULTS_FILE = "results.json"
PLOT_FILES = ("loss_vs_flops.png", "loss_vs_time.png")
#: A run whose process got less than this share of its threads' CPU time had its cores shared with other
#: processes: its wall-clock is flagged (``*`` in the table) and ``remeasure`` runs it again.
CONTENDED = 0.8


# -- planning: steps, FLOPs and sizes of a run without running it -----------------------------------------
@dataclass(frozen=True)
class Plan:
    """What a run will do: optimizer steps, tokens, training FLOPs, final parameter count."""

    steps: int
    tokens: int
    flops: float
    params: int


def plan_run(cfg: dict[str, Any], vocab_size: int) -> Plan:
    """Replays the trainer's counters (growth at ``at_fraction``/step/token/FLOP triggers, input length,
    FLOPs per token at the current size — sparse-aware at the configured density when the run has a
    ``[sparsity]`` table) for a run config dict, without training."""
    import growkit as gk
    from growkit.train import RunConfig
    from growkit.train.schedule import progress

    rc = RunConfig.from_dict(cfg)
    scfg = rc.sparsity_config()
    density = scfg.density if scfg is not None else None
    mcfg = rc.model_config(vocab_size)
    surrogate = gk.Transformer(gk.TransformerConfig.from_dict({**mcfg.to_dict(), "vocab_size": 8}))
    seq = rc.data.start_seq_len or rc.data.seq_len
    stages, done = rc.stages(), 0
    step = tokens = 0
    flops = 0.0

    per_token = _fpt(surrogate.cfg, vocab_size, seq, density)
    while progress(rc.train, step, tokens, flops) < 1.0:
        while done < len(stages) and stages[done].due(step, tokens, flops, progress(rc.train, step, tokens, flops)):
            spec = stages[done].spec()
            if spec.changes(surrogate.cfg):
                surrogate, _ = gk.grow(surrogate, spec)
                if surrogate.masks():  # ramps change no sizes: fold at once
                    gk.ramp_masks(surrogate, 1.0)
                    gk.fold_masks(surrogate)
            seq = stages[done].seq_len or seq
            per_token = _fpt(surrogate.cfg, vocab_size, seq, density)
            done += 1
        per_step = rc.train.batch_size * seq
        step, tokens, flops = step + 1, tokens + per_step, flops + per_token * per_step
    final = gk.TransformerConfig.from_dict({**surrogate.cfg.to_dict(), "vocab_size": vocab_size})
    return Plan(step, tokens, flops, _num_params(final))


def _fpt(cfg: Any, vocab_size: int, seq_len: int, density: float | None = None) -> float:
    from growkit.config import TransformerConfig
    from growkit.flops import training_flops_per_token

    full = TransformerConfig.from_dict({**cfg.to_dict(), "vocab_size": vocab_size})
    return training_flops_per_token(full, seq_len) if density is None else \
        training_flops_per_token(full, seq_len, density)


def _num_params(cfg: Any) -> int:
    import torch

    import growkit as gk

    with torch.device("meta"):
        return gk.Transformer(cfg).num_params()


# -- running -------------------------------------------------------------------------------------------
@dataclass
class RunSpec:
    """One run of the benchmark."""

    name: str
    schedule: str
    fraction: float
    config: dict[str, Any]
    plan: Plan
    threads: int = 2
    """Torch CPU threads the run trains with (part of what makes it reproducible; resolved, never None)."""


@dataclass
class RunResult:
    """One finished run, read back from its run dir."""

    name: str
    schedule: str
    fraction: float
    curve: list[Point]
    params: int
    tokens: int
    max_loss_jump: float | None
    reused: bool = False
    speedup: Speedup | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> Point:
        return self.curve[-1]

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


def plan_runs(preset: Preset, names: Sequence[str], out: Path, vocab_size: int) -> list[RunSpec]:
    """The benchmark's runs: the frontier first (largest first), then each schedule's budgets."""
    all_schedules = schedules(preset)
    specs: list[RunSpec] = []
    ordered = ["scratch"] + [n for n in NAMES if n in names and n != "scratch"]
    for name in ordered:
        s = all_schedules[name]
        fractions = sorted(preset.budgets_of(name), reverse=(name == "scratch"))
        for frac in fractions:
            specs.append(_spec(preset, s, frac, out, vocab_size, all_schedules))
    return specs


def _spec(preset: Preset, s: Schedule, frac: float, out: Path, vocab_size: int,
          all_schedules: dict[str, Schedule]) -> RunSpec:
    run_name = f"{s.name}-{round(frac * 100):03d}"
    run_dir = str(out / run_name)
    max_flops = None
    if s.match_flops_of:
        other = all_schedules[s.match_flops_of]
        max_flops = plan_run(run_dict(preset, other, frac, run_dir), vocab_size).flops
    cfg = run_dict(preset, s, frac, run_dir, max_flops=max_flops)
    plan = plan_run(cfg, vocab_size)
    cfg["run"]["eval_every"] = max(1, math.ceil(plan.steps / preset.evals_per_run))
    return RunSpec(run_name, s.name, frac, cfg, plan, preset_threads(preset.threads))


def preset_threads(threads: int | None) -> int:
    """A preset's thread count, ``None`` resolved to the cores this process may use."""
    from growkit.train.hardware import default_threads

    return threads or default_threads()


@functools.lru_cache(maxsize=8)
def _vocab_size(tokenizer: str) -> int:
    from growkit.data import load_tokenizer

    return load_tokenizer(tokenizer).vocab_size


def resolved_now(cfg: dict[str, Any], threads: int | None = None) -> Resolved:
    """What run config ``cfg`` (``train.dtype/device``, possibly ``auto``) resolves to on this machine now
    with ``threads`` (no warning): compared with a finished run's record before it is reused."""
    from growkit.train import RunConfig
    from growkit.train.hardware import resolve_run

    rc = RunConfig.from_dict(cfg)
    return resolve_run(rc, rc.model_config(_vocab_size(rc.data.tokenizer)), warn=False, threads=threads)


def _normalized(cfg: dict[str, Any]) -> dict[str, Any]:
    from growkit.train import RunConfig

    return json.loads(json.dumps(RunConfig.from_dict(cfg).to_dict()))


def _identity(normalized: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: the whole config except where its dir is (so ``--out`` may be
    given relative or absolute, or the folder moved)."""
    return {**normalized, "run": {k: v for k, v in normalized.get("run", {}).items() if k != "dir"}}


def _finished(spec: RunSpec) -> bool:
    """The run dir holds this exact run, finished (its last evaluation at the end of its budget)."""
    from growkit.train.config import RunConfig
    from growkit.train.metrics import METRICS_FILE, read_jsonl
    from growkit.train.schedule import progress

    run_dir = Path(spec.config["run"]["dir"])
    bench, metrics = run_dir / BENCH_FILE, run_dir / METRICS_FILE
    if not (bench.is_file() and metrics.is_file()):
        return False
    try:
        info = json.loads(bench.read_text())
    except json.JSONDecodeError:
        return False
    stored = info.get("config")
    try:  # normalized again by today's RunConfig: a key growkit added since (at its default) is no difference
        same = isinstance(stored, dict) and _identity(_normalized(stored)) == _identity(_normalized(spec.config))
    except GrowkitError:  # a config this version no longer reads is not the same run
        same = False
    if not same or info.get("threads") != spec.threads:
        return False
    if (info.get("resolved") or {}).get("identity") != resolved_now(spec.config, spec.threads).identity():
        return False  # another dtype, device, thread count or CPU: a bf16 run is not a float32 run
    evals = [r for r in read_jsonl(metrics) if "val_loss" in r]
    if not evals or len(info.get("eval_seconds", [])) < len(evals):
        return False
    last = evals[-1]
    return progress(RunConfig.from_dict(spec.config).train, last["step"], last["tokens"], last["flops"]) >= 1.0


def execute(spec: RunSpec, keep_checkpoints: bool = False, remeasure: bool = False) -> bool:
    """Run ``spec`` unless its run dir already holds it finished; returns True when it was reused.

    An unfinished or different run in the dir is removed and run again from the start (a clean
    wall-clock), with the trainer's output in ``RUN_DIR/bench.log``. ``remeasure``: a finished run whose
    cores were shared (CPU share below `CONTENDED`) is run again and the faster of the two timings kept —
    its losses are the same, bit for bit."""
    run_dir = Path(spec.config["run"]["dir"])
    if _finished(spec):
        if not (remeasure and _bench_info(run_dir).get("cpu_share", 1.0) < CONTENDED):
            return True
        prev = run_dir.with_name(run_dir.name + ".prev")
        shutil.rmtree(prev, ignore_errors=True)
        run_dir.rename(prev)
        _train(spec, keep_checkpoints)
        if _train_seconds(prev) < _train_seconds(run_dir):  # keep the faster measurement
            shutil.rmtree(run_dir)
            prev.rename(run_dir)
        else:
            shutil.rmtree(prev)
        return False
    _train(spec, keep_checkpoints)
    return False


def _bench_info(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / BENCH_FILE).read_text())


def _train_seconds(run_dir: Path) -> float:
    from growkit.train.metrics import METRICS_FILE, read_jsonl

    evals = [r for r in read_jsonl(run_dir / METRICS_FILE) if "val_loss" in r]
    return _curve(evals, _bench_info(run_dir)["eval_seconds"])[-1].time_s


def _curve(evals: list[dict[str, Any]], eval_seconds: list[float]) -> list[Point]:
    """Eval records as points, with training seconds: ``time_s`` minus the evaluations before."""
    spent = 0.0
    curve = []
    for r, secs in zip(evals, eval_seconds, strict=False):
        curve.append(Point(float(r["flops"]), max(float(r["time_s"]) - spent, 0.0), float(r["val_loss"])))
        spent += secs
    return curve


def _train(spec: RunSpec, keep_checkpoints: bool) -> None:
    """Train ``spec`` from the start in a fresh run dir; write ``bench.json`` next to its metrics."""
    import torch

    from growkit.train import RunConfig, Trainer

    run_dir = Path(spec.config["run"]["dir"])
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)

    class _BenchTrainer(Trainer):
        """Times its own evaluations, so they can be taken out of the run's wall-clock."""

        eval_seconds: list[float]

        def evaluate(self) -> dict[str, float | None]:
            t0 = time.perf_counter()
            out = super().evaluate()
            self.eval_seconds.append(time.perf_counter() - t0)
            return out

    cfg = RunConfig.from_dict(spec.config)
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        with open(run_dir / "bench.log", "w") as log, contextlib.redirect_stdout(log):
            trainer = _BenchTrainer(cfg)
            trainer.eval_seconds = []
            t0, cpu0 = time.perf_counter(), time.process_time()
            trainer.fit()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        torch.set_num_threads(threads)
    # CPU seconds per wall second per thread: well below 1 means other processes took the cores
    cpu_share = cpu / max(wall * spec.threads, 1e-9)
    info = {"config": _normalized(spec.config), "eval_seconds": trainer.eval_seconds, "wall_s": wall,
            "cpu_share": cpu_share, "threads": spec.threads,
            "resolved": {**trainer.resolved.to_dict(), "identity": trainer.resolved.identity()},
            "params": trainer.model.num_params(), "final_model": trainer.model_cfg.to_dict()}
    (run_dir / BENCH_FILE).write_text(json.dumps(info, indent=1))
    if not keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def warm_up(preset: Preset, steps: int = 4) -> None:
    """A few throwaway training steps of the target model, so the first timed run does not pay for
    one-time start-up costs (kernel selection, allocator growth, page faults)."""
    import tempfile

    import torch

    from growkit.train import RunConfig, Trainer

    with tempfile.TemporaryDirectory(prefix="growkit-bench-warmup-") as tmp:
        cfg = run_dict(preset, schedules(preset)["scratch"], 1.0, str(Path(tmp) / "run"))
        cfg["train"]["max_tokens"] = steps * preset.batch_size * preset.seq_len
        threads = torch.get_num_threads()
        torch.set_num_threads(preset_threads(preset.threads))
        try:
            with open(Path(tmp) / "log", "w") as log, contextlib.redirect_stdout(log):
                trainer = Trainer(RunConfig.from_dict(cfg))
                for _ in range(steps):
                    trainer.train_step()
        finally:
            torch.set_num_threads(threads)


def read_result(spec: RunSpec, reused: bool = False) -> RunResult:
    """A finished run's eval curve (training seconds: ``time_s`` minus earlier evaluations), size and
    largest growth loss jump."""
    from growkit.train.metrics import EVENTS_FILE, METRICS_FILE, read_jsonl

    run_dir = Path(spec.config["run"]["dir"])
    info = _bench_info(run_dir)
    evals = [r for r in read_jsonl(run_dir / METRICS_FILE) if "val_loss" in r]
    curve = _curve(evals, info["eval_seconds"])
    events = read_jsonl(run_dir / EVENTS_FILE) if (run_dir / EVENTS_FILE).is_file() else []
    jumps = [float(e["loss_jump"]) for e in events if "loss_jump" in e]
    return RunResult(spec.name, spec.schedule, spec.fraction, curve, int(info["params"]), int(evals[-1]["tokens"]),
                     max(jumps) if jumps else None, reused,
                     extra={"wall_s": info.get("wall_s"), "eval_s": sum(info["eval_seconds"]),
                            "cpu_share": info.get("cpu_share"), "resolved": info.get("resolved"),
                            "steps": evals[-1]["step"], "final_model": info.get("final_model")})


# -- reporting -----------------------------------------------------------------------------------------
def _fmt_speedup(x: float | None, bound: str | None = None) -> str:
    if x is None:
        return "—"
    return {"lower": "≥", "upper": "≤"}.get(bound or "", "") + f"{x:.2f}"


def summarize(results: list[RunResult]) -> dict[str, Any]:
    """Speedups per run, headlines per schedule and the best over growth schedules."""
    frontier_runs = sorted((r for r in results if r.schedule == "scratch"), key=lambda r: r.fraction)
    if not frontier_runs:
        raise GrowkitError("no from-scratch runs: the frontier is needed for any speedup")
    frontier = [r.end for r in frontier_runs]
    target = frontier_runs[-1].end
    for r in results:
        r.speedup = speedup_at(frontier, r.end)
    headlines: dict[str, Headline] = {}
    for name in dict.fromkeys(r.schedule for r in results):
        if name == "scratch":
            continue
        runs = sorted((r for r in results if r.schedule == name), key=lambda r: r.fraction)
        headlines[name] = headline([r.end for r in runs], target, [r.fraction for r in runs])
    growth = [n for n in headlines if n not in BASELINES] or list(headlines)
    reached = [n for n in growth if headlines[n].status != "not reached"]
    best: dict[str, Any]
    if reached:
        bw = max(reached, key=lambda n: headlines[n].speedup_wallclock or 0.0)
        bf = max(reached, key=lambda n: headlines[n].speedup_flops or 0.0)
        best = {"basis": "headline", "wallclock": headlines[bw].speedup_wallclock, "wallclock_schedule": bw,
                "flops": headlines[bf].speedup_flops, "flops_schedule": bf}
    elif growth:
        last = {n: max((r for r in results if r.schedule == n), key=lambda r: r.fraction) for n in growth}
        bw = max(growth, key=lambda n: last[n].speedup.wallclock)  # type: ignore[union-attr]
        bf = max(growth, key=lambda n: last[n].speedup.flops)  # type: ignore[union-attr]
        best = {"basis": "not reached: best speedup at a schedule's largest budget",
                "wallclock": last[bw].speedup.wallclock, "wallclock_schedule": bw,  # type: ignore[union-attr]
                "flops": last[bf].speedup.flops, "flops_schedule": bf}  # type: ignore[union-attr]
    else:
        best = {"basis": "no schedule besides scratch", "wallclock": float("nan"), "flops": float("nan")}
    return {"frontier": [asdict(p) for p in frontier], "target": asdict(target), "headlines": headlines,
            "best": best}


def format_table(results: list[RunResult], summary: dict[str, Any]) -> str:
    """The per-run table and the per-schedule headline table, as Markdown."""
    rows = ["| run | schedule | budget | val loss | FLOPs | train s | speedup FLOPs | speedup wall | "
            "max loss jump | tokens/param |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r.speedup
        jump = "—" if r.max_loss_jump is None else f"{r.max_loss_jump:+.3f}"
        star = "*" if (r.extra.get("cpu_share") or 1.0) < CONTENDED else ""
        rows.append(f"| {r.name} | {r.schedule} | {r.fraction:.0%} | {r.end.loss:.4f} | {r.end.flops:.3g} | "
                    f"{r.end.time_s:.0f}{star} | {_fmt_speedup(s.flops if s else None, s.bound if s else None)} | "
                    f"{_fmt_speedup(s.wallclock if s else None, s.bound if s else None)} | {jump} | "
                    f"{r.tokens_per_param:.3f} |")
    if any((r.extra.get("cpu_share") or 1.0) < CONTENDED for r in results):
        rows.append(f"\n\\* the cores were shared with other processes during this run (CPU share < {CONTENDED}): "
                    f"its wall-clock, and every wall-clock speedup that uses it, is off; `--remeasure` runs it again")
    t = summary["target"]
    rows += ["", f"headline: speedup where each schedule matches the full from-scratch loss {t['loss']:.4f} "
                 f"({t['flops']:.3g} FLOPs, {t['time_s']:.0f} s)",
             "| schedule | status | matched at budget | FLOPs | train s | speedup FLOPs | speedup wall |",
             "|---|---|---|---|---|---|---|"]
    for name, h in summary["headlines"].items():
        lb = "lower" if h.status == "lower bound" else None
        frac = "—" if h.fraction is None else (("≤" if lb else "") + f"{h.fraction:.0%}")
        fl = "—" if h.flops is None else f"{h.flops:.3g}"
        ts = "—" if h.time_s is None else f"{h.time_s:.0f}"
        note = " (baseline)" if name in BASELINES else ""
        rows.append(f"| {name}{note} | {h.status} | {frac} | {fl} | {ts} | {_fmt_speedup(h.speedup_flops, lb)} | "
                    f"{_fmt_speedup(h.speedup_wallclock, lb)} |")
    b = summary["best"]
    if b["basis"] != "headline":
        rows.append(f"\nno growth schedule reached the target loss: best_speedup_* below is {b['basis']}")
    return "\n".join(rows)


def plot(results: list[RunResult], summary: dict[str, Any], out: Path) -> list[Path]:
    """Loss vs FLOPs and loss vs training seconds: every run's eval curve, frontier ends highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.schedule for r in results))
    colors = {n: ("black" if n == "scratch" else plt.get_cmap("tab10")(i % 10)) for i, n in enumerate(names)}
    frontier = sorted((r for r in results if r.schedule == "scratch"), key=lambda r: r.fraction)
    written = []
    for key, label, filename in (("flops", "training FLOPs", PLOT_FILES[0]),
                                 ("time_s", "training wall-clock (s, evaluation excluded)", PLOT_FILES[1])):
        fig, ax = plt.subplots(figsize=(8, 5.2))
        labelled: set[str] = set()
        for r in results:
            pts = [p for p in r.curve if getattr(p, key) > 0]
            alpha = 0.35 + 0.65 * min(1.0, r.fraction / max(x.fraction for x in results if x.schedule == r.schedule))
            ax.plot([getattr(p, key) for p in pts], [p.loss for p in pts], color=colors[r.schedule], alpha=alpha,
                    lw=1.0, ls="--" if r.schedule == "scratch" else "-",
                    label=None if r.schedule in labelled else r.schedule)
            labelled.add(r.schedule)
            if r.schedule != "scratch":
                ax.plot(getattr(r.end, key), r.end.loss, "o", color=colors[r.schedule], ms=5)
        ax.plot([getattr(r.end, key) for r in frontier], [r.end.loss for r in frontier], "s-", color="black",
                ms=8, lw=2, label="from-scratch frontier (final points)", zorder=5)
        ax.axhline(summary["target"]["loss"], color="gray", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss (nats/token)")
        ends = [r.end.loss for r in results]
        ax.set_ylim(min(ends) - 0.1, max(ends) + 0.6)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_title("growkit bench speedup: each run's LR fully decayed at its own budget", fontsize=9)
        written.append(save(fig, out / filename))
    return written


def run_speedup(out: str | Path, preset: str | Preset = "full", names: Sequence[str] | None = None,
                log: Callable[[str], None] = print, keep_checkpoints: bool = False,
                remeasure: bool = False) -> dict[str, Any]:
    """Run (or reuse) every run of the benchmark in ``out``, then write results.json and the plots and
    print the table. Returns the results dict (as written to results.json).

    ``remeasure``: run again the finished runs whose cores were shared (see `execute`)."""
    from growkit.data import load_tokenizer
    from growkit.train.hardware import machine

    p = PRESETS[preset] if isinstance(preset, str) else preset
    names = list(names) if names else list(p.schedules)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise GrowkitError(f"unknown schedule(s) {', '.join(unknown)}: choose from {', '.join(NAMES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = load_tokenizer("bpe").vocab_size
    specs = plan_runs(p, names, out, vocab)
    total_flops = sum(s.plan.flops for s in specs)
    log(f"growkit bench speedup: preset {p.name!r} — target gpt2 {p.n_layers}L × {p.d_model} (d_ff {p.d_ff}, "
        f"{p.n_heads} heads), context {p.seq_len}, full budget {p.tokens:,} tokens; {len(specs)} runs, "
        f"{total_flops:.3g} training FLOPs planned, {specs[0].threads} CPU thread(s), "
        f"{resolved_now(specs[0].config, specs[0].threads).summary()}; out: {out}")
    results: list[RunResult] = []
    started = time.perf_counter()
    if not all(_finished(s) for s in specs) or remeasure:
        warm_up(p)
    for i, spec in enumerate(specs, 1):
        t0 = time.perf_counter()
        reused = execute(spec, keep_checkpoints, remeasure)
        r = read_result(spec, reused)
        results.append(r)
        what = "reused" if reused else f"{time.perf_counter() - t0:.0f} s"
        share = r.extra.get("cpu_share")
        if share is not None:
            what += f", CPU share {share:.2f}" + (" — cores shared: wall-clock slow" if share < CONTENDED else "")
        log(f"[{i}/{len(specs)}] {spec.name}: {spec.plan.steps} steps, {r.tokens:,} tokens, "
            f"{r.end.flops:.3g} FLOPs, val loss {r.end.loss:.4f}, train {r.end.time_s:.0f} s ({what})")
    summary = summarize(results)
    table = format_table(results, summary)
    plots = plot(results, summary, out)
    best = summary["best"]
    data = {
        "benchmark": "growkit bench speedup",
        "preset": asdict(p),
        "schedules": {n: asdict(schedules(p)[n]) for n in names if n in schedules(p)},
        "frontier": summary["frontier"],
        "target": summary["target"],
        "runs": [{"name": r.name, "schedule": r.schedule, "budget_fraction": r.fraction,
                  "final_val_loss": r.end.loss, "flops": r.end.flops, "train_time_s": r.end.time_s,
                  "tokens": r.tokens, "params": r.params, "tokens_per_param": r.tokens_per_param,
                  "speedup_flops": r.speedup.flops if r.speedup else None,
                  "speedup_wallclock": r.speedup.wallclock if r.speedup else None,
                  "speedup_bound": r.speedup.bound if r.speedup else None,
                  "max_loss_jump": r.max_loss_jump, "reused": r.reused, **r.extra,
                  "curve": [asdict(pt) for pt in r.curve]} for r in results],
        "headlines": {n: asdict(h) for n, h in summary["headlines"].items()},
        "best": best,
        "benchmark_wall_s": time.perf_counter() - started,
        "hardware": machine(),
        "plots": [str(x) for x in plots],
    }
    (out / RESULTS_FILE).write_text(json.dumps(data, indent=1))
    log("")
    log(table)
    log("")
    for x in plots:
        log(f"plot: {x}")
    log(f"results: {out / RESULTS_FILE}")
    log(f"best_speedup_wallclock: {best['wallclock']:.3f}")
    log(f"best_speedup_flops: {best['flops']:.3f}")
    return data
