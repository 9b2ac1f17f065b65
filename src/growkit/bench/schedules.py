"""The growth schedules of ``growkit bench speedup``, as plain Python data.

A `Schedule` is a start model (a ``[model]`` table), optional ``[data]`` / ``[train]`` overrides and a list
of ``[[growth]]`` stage tables that trigger with ``at_fraction`` — so one schedule scales with whatever
token budget it is run at, and every run's LR schedule decays fully at its own budget ("No Train No Gain",
Kaddour et al. 2023). Everything else of a run (data, seed, batch, optimizer, LR schedule, evaluation)
comes from the `Preset` and is the same for every run, so all runs see the same data in the same order.

Schedules (target shape ``L`` layers × ``d`` wide, ``h`` heads, FFN ``f``):

- ``scratch``: the target model from scratch (the frontier runs are this schedule at 25/50/75/100 %).
- ``small``: a smaller model (L/2 × d/2) from scratch, trained for as many FLOPs as `MAIN` spends at the
  same budget: does growing beat simply training a smaller model?
- ``msg``: MSG (Yao et al. 2024): masked, function-preserving, staged FFN → depth → width (+heads, FFN)
  with mask ramps.
- ``late``: MSG grown late: the ``small`` model trained for most of the budget, then every dimension
  (depth, width, heads, FFN) grown at once, masked and ramped, at 80 %: at a budget far below compute-
  optimal the small model learns more per FLOP, and the grown model keeps what it learned.
- ``zero``: Gesmundo & Maile (2023): new units zero on one side; heads + FFN, then depth + FFN (width
  stays: zero-padded LayerNorm width cannot preserve a gpt2 model's function).
- ``compound``: CompoundGrow (Gu et al. 2021): short inputs first, then depth (stacked) + FFN + full
  input length in one compound stage, with an LR re-warm.
- ``stack``: G_stack-style ×2 depth (Du et al. 2024): a half-depth, full-width model stacked once.
- ``split``: width doubling by splitting (Net2Net / HyperCloning): d_model, heads and FFN ×2.
- ``copy``: copy-and-pad (Zhang 2021 workflow): train a small model, grow every dimension with
  ``copy``, continue.

`schedule_toml` renders one as a ready-made ``growkit train`` config, and ``python -m
growkit.bench.schedules configs/`` writes them all as ``configs/gpt-<name>.toml`` (`CONFIG_SCHEDULES`);
``tests/bench`` checks that the shipped files are exactly what this module renders for the `FULL` preset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from growkit.io import atomic_write_text

#: The schedule whose FLOPs the ``small`` baseline matches, and whose start model it relates to.
MAIN = "msg"
#: Every schedule, in table order.
NAMES = ("scratch", "small", "msg", "late", "zero", "compound", "stack", "split", "copy")
#: Not growth schedules: reported, but not candidates for the ``best_speedup_*`` lines.
BASELINES = ("scratch", "small")
#: Schedules shipped as ready-made ``configs/gpt-<name>.toml`` (``small`` needs the benchmark's FLOP match).
CONFIG_SCHEDULES = ("scratch", "msg", "late", "zero", "compound", "stack", "split", "copy")


@dataclass(frozen=True)
class Preset:
    """Sizes and budgets of one benchmark: the target model, the full token budget and the run settings."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    d_ff: int
    seq_len: int
    tokens: int
    """The full token budget: the 100 % frontier run trains the target model on this many tokens."""
    batch_size: int
    lr: float
    warmup_steps: int
    ramp_steps: int
    """Mask ramp length (optimizer steps) of masked stages."""
    eval_batches: int
    evals_per_run: int
    """Evaluations after step 0 in each run (at evenly spaced steps, the last at the end)."""
    frontier: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    budgets: tuple[float, ...] = (1.0, 1.5)
    """Default budgets (fractions of ``tokens``) of every non-scratch schedule."""
    schedules: tuple[str, ...] = NAMES
    """Schedules run when ``--schedules`` is not given."""
    budget_overrides: dict[str, tuple[float, ...]] = field(default_factory=dict)
    dtype: str = "auto"
    """``train.dtype`` of every run: ``auto`` is bf16 autocast only where it is native and faster
    (`growkit.train.hardware`); the resolved dtype is recorded with each run."""
    seed: int = 0
    arch: str = "gpt2"
    """Model family of every schedule (``gpt2`` or ``llama``; the envelope benchmark uses ``llama``)."""
    tokenizer: str = "bpe"
    min_lr: float | None = None
    """``train.min_lr`` (None: lr / 10, the trainer's default)."""
    threads: int | None = None
    """Torch CPU threads for every run (None: the cores this process may use, `hardware.default_threads`);
    the same for all runs, because results depend on the thread count (one thread is faster for tiny
    models, whose steps are too small to split)."""

    @property
    def target(self) -> dict[str, Any]:
        """The target model's ``[model]`` table."""
        return _model(self.n_layers, self.d_model, self.n_heads, self.d_ff, arch=self.arch)

    def budgets_of(self, name: str) -> tuple[float, ...]:
        """Budgets (fractions of the full token budget) at which schedule ``name`` is run."""
        if name == "scratch":
            return self.frontier
        return self.budget_overrides.get(name, self.budgets)


#: The full benchmark: a 4-layer × 256 GPT-2 (8k BPE, context 128) on the bundled Shakespeare corpus.
#: Measured on an earlier machine's 2 CPU cores, with bf16 autocast (fast there) and 2 threads: ~85-115 GFLOP/s
#: for this model when the cores were free (float32 on a CPU without native bf16 is slower: README), so
#: the 100 % run (1.85e13 FLOPs) takes ~3-3.6 min and the default selection (frontier + small, msg,
#: compound, stack at 50/75/100/150 %; ≈14× the 100 % run's FLOPs) ~50 min. Schedules run at 50 % and
#: 75 % too because at this budget (0.1 tokens per parameter) they beat the full from-scratch loss already
#: at 100 %: the smaller budgets locate where they match it (the headline), instead of a lower bound.
#: LR 2e-3: 1e-3, 2e-3 and 4e-3 gave 5.858, 5.860 and 5.910 at 25 % of an earlier 640k budget.
FULL = Preset(name="full", n_layers=4, d_model=256, n_heads=4, d_ff=1024, seq_len=128, tokens=560_000,
              batch_size=16, lr=2e-3, warmup_steps=15, ramp_steps=20, eval_batches=8, evals_per_run=4,
              budgets=(0.5, 0.75, 1.0, 1.5), schedules=("scratch", "small", "msg", "late", "compound", "stack"),
              budget_overrides={"late": (0.5, 0.75, 1.0), "compound": (0.75, 1.0, 1.5), "stack": (1.0, 1.5)})
#: ``--quick``: the same pipeline on a tiny model and budget (all schedules; a smoke test, < 5 min).
QUICK = Preset(name="quick", n_layers=2, d_model=64, n_heads=2, d_ff=256, seq_len=64, tokens=48_000,
               batch_size=16, lr=3e-3, warmup_steps=5, ramp_steps=5, eval_batches=4, evals_per_run=3, threads=1)
#: For tests: a micro model and budget, a few seconds per run.
MICRO = Preset(name="micro", n_layers=2, d_model=32, n_heads=2, d_ff=128, seq_len=32, tokens=8_192,
               batch_size=8, lr=3e-3, warmup_steps=2, ramp_steps=2, eval_batches=2, evals_per_run=2,
               schedules=("scratch", "small", "msg"), threads=1)
PRESETS = {p.name: p for p in (FULL, QUICK, MICRO)}


@dataclass(frozen=True)
class Schedule:
    """One schedule: start model, ``[[growth]]`` stages (``at_fraction`` triggers) and run overrides."""

    name: str
    title: str
    model: dict[str, Any]
    growth: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    match_flops_of: str | None = None
    """Train for as many FLOPs as that schedule spends at the same budget (``train.max_flops``)."""


def _model(n_layers: int, d_model: int, n_heads: int, d_ff: int, d_head: int | None = None,
         arch: str = "gpt2") -> dict[str, Any]:
    model: dict[str, Any] = {"arch": arch, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads,
                             "d_ff": d_ff}
    if d_head is not None and d_head != d_model // n_heads:
        model["d_head"] = d_head
    return model


@dataclass(frozen=True)
class Shape:
    """A model's sizes: layers, width, attention heads, FFN width (and the head width, when not d / heads)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_ff: int
    d_head: int | None = None

    def model(self, arch: str) -> dict[str, Any]:
        """The ``[model]`` table of this shape."""
        return _model(self.n_layers, self.d_model, self.n_heads, self.d_ff, self.d_head, arch=arch)

    def grow(self) -> dict[str, int]:
        """The ``grow`` table that grows any smaller model to this shape."""
        return {"n_layers": self.n_layers, "d_model": self.d_model, "n_heads": self.n_heads, "d_ff": self.d_ff}


def seed_schedules(target: Shape, small: Shape, ramp: int, seq_len: int, arch: str) -> list[Schedule]:
    """The seed systems' growth schedules into ``target``, each starting from (parts of) ``small``.

    ``small`` is the half-size model (about half the layers and the width, the heads that keep its head
    width); ``ramp`` the mask ramp length in optimizer steps; ``seq_len`` the full input length."""
    L, d, h, f, r = target.n_layers, target.d_model, target.n_heads, target.d_ff, ramp
    Ls, ds, hs, fs = small.n_layers, small.d_model, small.n_heads, small.d_ff
    dh = target.d_head or d // h
    return [
        Schedule("msg", "MSG: masked FFN → depth → width (+heads, FFN), ramped",
                 Shape(Ls, ds, hs, max(fs // 2, 1), small.d_head).model(arch), [
            {"at_fraction": 0.1, "grow": {"d_ff": fs}, "method": "masked", "ramp_steps": r},
            {"at_fraction": 0.25, "grow": {"n_layers": L}, "method": "masked", "ramp_steps": r},
            {"at_fraction": 0.45, "grow": {"d_model": d, "n_heads": h, "d_ff": f}, "method": "masked",
             "ramp_steps": r},
        ]),
        Schedule("late", "MSG late: the small model, every dimension grown at once at 80 %", small.model(arch), [
            {"at_fraction": 0.8, "grow": target.grow(), "method": "masked", "ramp_steps": r},
        ]),
        Schedule("zero", "Gesmundo-Maile zero: heads + FFN, then depth + FFN",
                 Shape(Ls, d, hs, max(f // 4, 1), dh).model(arch), [
            {"at_fraction": 0.2, "grow": {"n_heads": h, "d_ff": f // 2}, "method": "zero"},
            {"at_fraction": 0.4, "grow": {"n_layers": L, "d_ff": f}, "method": "zero"},
        ]),
        Schedule("compound", "CompoundGrow: short inputs, then depth (stack) + FFN + length together",
                 Shape(Ls, d, h, f // 2, target.d_head).model(arch), [
            {"at_fraction": 0.2, "grow": {}, "seq_len": seq_len // 2},
            {"at_fraction": 0.4, "grow": {"n_layers": L, "d_ff": f}, "method": {"n_layers": "stack", "*": "masked"},
             "ramp_steps": r, "seq_len": seq_len, "lr": "rewarm", "lr_warmup_steps": r},
        ], data={"start_seq_len": seq_len // 4}),
        Schedule("stack", "G_stack: half depth, full width, stacked ×2",
                 Shape(Ls, d, h, f, target.d_head).model(arch), [
            {"at_fraction": 0.25, "grow": {"n_layers": L}, "method": "stack"},
        ]),
        Schedule("split", "width ×2 by splitting (HyperCloning)", Shape(L, ds, hs, fs, small.d_head).model(arch), [
            {"at_fraction": 0.3, "grow": {"d_model": d, "n_heads": h, "d_ff": f}, "method": "split"},
        ]),
        Schedule("copy", "copy-and-pad: small model, every dimension grown with copy", small.model(arch), [
            {"at_fraction": 0.3, "grow": target.grow(), "method": "copy"},
        ]),
    ]


def schedules(p: Preset) -> dict[str, Schedule]:
    """Every schedule for preset ``p`` (growth targets are ``p``'s target shape), by name."""
    L, d, h, f = p.n_layers, p.d_model, p.n_heads, p.d_ff
    small = Shape(L // 2, d // 2, h // 2, f // 2)
    out = [
        Schedule("scratch", "target model from scratch", p.target),
        Schedule("small", f"{L // 2}L×{d // 2} from scratch at {MAIN}'s FLOPs", small.model(p.arch),
                 match_flops_of=MAIN),
        *seed_schedules(Shape(L, d, h, f), small, p.ramp_steps, p.seq_len, p.arch),
    ]
    return {s.name: s for s in out}


def run_dict(p: Preset, s: Schedule, fraction: float, run_dir: str, max_flops: float | None = None,
             eval_every: int = 1_000_000) -> dict[str, Any]:
    """The full ``RunConfig`` dict of schedule ``s`` at ``fraction`` of ``p``'s token budget.

    ``max_flops`` replaces the token budget (the ``small`` baseline); ``eval_every`` is set by the caller
    once the run's number of steps is known (`growkit.bench.speedup.plan_run`)."""
    train: dict[str, Any] = {"batch_size": p.batch_size, "lr": p.lr, "warmup_steps": p.warmup_steps,
                             "decay": "cosine", "dtype": p.dtype, "seed": p.seed, "device": "auto"}
    if p.threads is not None:
        train["threads"] = p.threads
    if p.min_lr is not None:
        train["min_lr"] = p.min_lr
    if max_flops is not None:
        train["max_flops"] = float(max_flops)
    else:
        train["max_tokens"] = round(fraction * p.tokens)
    train.update(s.train)
    return {
        "model": dict(s.model),
        "data": {"tokenizer": p.tokenizer, "seq_len": p.seq_len, **s.data},
        "train": train,
        "run": {"dir": run_dir, "eval_every": eval_every, "eval_batches": p.eval_batches, "log_every": 10,
                "ckpt_every": 1_000_000_000, "keep_checkpoints": 1, "progress": False, "tensorboard": False,
                "plots": False},
        "growth": json.loads(json.dumps(s.growth)),
    }


def schedule_toml(name: str, p: Preset = FULL, fraction: float = 1.0) -> str:
    """Schedule ``name`` of preset ``p`` at ``fraction`` of its budget as a ``growkit train`` TOML config.

    The ``small`` baseline is written with the token budget (its FLOP match needs the benchmark's plan)."""
    s = schedules(p)[name]
    d = run_dict(p, s, fraction, f"runs/gpt-{name}")
    d["train"].pop("device")  # "auto", the default: a user's run picks its device
    # checkpoints, plots and the progress bar at their defaults (the benchmark turns them off)
    d["run"] = {"dir": d["run"]["dir"], "eval_every": 50, "eval_batches": p.eval_batches}
    lines = [f"# growkit bench speedup schedule {name!r}: {s.title}.",
             f"# Preset {p.name!r}: {fraction:g} × {p.tokens:,} tokens; written by "
             f"`python -m growkit.bench.schedules configs` (a test keeps it equal to growkit/bench/schedules.py)."]
    for section in ("model", "data", "train", "run"):
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in d[section].items()]
    for stage in d["growth"]:
        lines += ["", "[[growth]]"] + [f"{k} = {_toml_value(v)}" for k, v in stage.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        key = lambda k: k if k.replace("_", "").isalnum() else json.dumps(k)  # noqa: E731
        return "{ " + ", ".join(f"{key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def write_configs(directory: str | Path, p: Preset = FULL) -> list[Path]:
    """Write every schedule of `CONFIG_SCHEDULES` as ``directory/gpt-<name>.toml``; returns the paths."""
    out = []
    for name in CONFIG_SCHEDULES:
        path = Path(directory) / f"gpt-{name}.toml"
        atomic_write_text(path, schedule_toml(name, p))
        out.append(path)
    return out


if __name__ == "__main__":
    import sys

    for written in write_configs(sys.argv[1] if len(sys.argv) > 1 else "configs"):
        print(f"wrote {written}")
