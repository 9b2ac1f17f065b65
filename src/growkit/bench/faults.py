"""Fault injection: kill a real training run with SIGKILL, resume it, and demand bit-identical results.

Each trial trains the same tiny progressive run (`run_overrides`: a GPT on the bundled Shakespeare,
byte-level, CPU, float32, one thread, dropout on; two growth stages: a masked FFN stage and a compound
masked depth + width + input-length stage, each with a mask ramp) in a child process, kills it one or
more times — at a deterministic kill point (``GROWKIT_FAULT=STEP:PHASE``, `growkit.train.faults`),
or from outside at a random wall-clock moment — and resumes it with ``resume=True`` after each kill,
as ``growkit train --resume`` would. Some trials also damage the newest checkpoint after the kill, so
the resume must fall back to the one before. A run killed before its first checkpoint is started over
(there is nothing to resume), as a user would.

At the end the trial's final checkpoint must equal the reference (one uninterrupted run) bit for bit —
weights and masks (``model.safetensors``) and AdamW moments (``optimizer.safetensors``), compared
tensor by tensor as raw bytes — and so must its final train loss, its whole train-loss curve and its
final validation loss, every evaluation, and the growth events (sizes, probe losses before and after),
each logged exactly once.

Children come from a ``forkserver`` that has imported growkit and never run a torch op: each start
costs milliseconds, not a Python + torch import, and the child is a clean single-threaded process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from growkit.errors import GrowkitError
from growkit.train.faults import ENV
from growkit.train.metrics import read_jsonl

#: Checkpoints at every 3rd step; growth stages at steps 8 (d_ff, ramp 8 → 14) and 18 (compound: depth,
#: width, heads, input length 16 → 32; ramp 18 → 26, new entries warmed up for 4 steps); 40 steps.
MAX_STEPS = 40
CKPT_EVERY = 3


def run_overrides(run_dir: Path) -> list[str]:
    """``--set`` overrides of the trials' run (on top of `RunConfig.default`)."""
    return [
        "model.arch='gpt2'", "model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ff=32",
        "model.dropout=0.1", "data.tokenizer='byte'", "data.seq_len=32", "data.start_seq_len=16",
        f"train.max_steps={MAX_STEPS}", "train.batch_size=4", "train.micro_batch_size=2", "train.lr=3e-3",
        "train.warmup_steps=4", "run.eval_every=10", "run.eval_batches=2", "run.log_every=1",
        f"run.ckpt_every={CKPT_EVERY}", "run.keep_checkpoints=2", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", f"run.dir='{run_dir}'",
    ]


GROWTH = [
    {"at_step": 8, "grow": {"d_ff": 48}, "method": "masked", "ramp_steps": 6},
    {"at_step": 18, "grow": {"n_layers": 2, "d_model": 24, "n_heads": 3, "d_ff": 64}, "seq_len": 32,
     "method": "masked", "ramp_steps": 8, "new_lr_warmup_steps": 4},
]


@dataclass(frozen=True)
class Kill:
    """One kill: at a deterministic point (``fault`` = ``"STEP:PHASE"``) or from outside after ``after_s``
    seconds of the child's life (``after_s`` as a fraction of the reference run's duration)."""

    fault: str | None = None
    after: float | None = None

    def describe(self) -> str:
        return self.fault if self.fault else f"SIGKILL@{self.after:.2f}T"


@dataclass(frozen=True)
class SecondWriter:
    """A second training process on the same run dir while one trains (`growkit.train.runlock`): started
    when the first has logged step ``at_step``, or together with it (``at_step=None``: two processes race
    for the dir; either may win). The one that does not hold the lock must exit with status 2 and a
    message naming the holder, and the run dir must end up holding one run's files."""

    at_step: int | None = None
    resume: bool = True
    """The second process resumes (``--resume``) rather than starting a new run in the dir."""

    def describe(self) -> str:
        how = "--resume" if self.resume else "new run"
        return f"2 writers together ({how})" if self.at_step is None else f"2nd writer@{self.at_step} ({how})"


@dataclass(frozen=True)
class Trial:
    name: str
    kills: tuple[Kill, ...]
    damage: str | None = None
    """After the last kill, damage the newest checkpoint: ``"flip"`` a byte of its weights or
    ``"truncate"`` its optimizer file; the resume must fall back to the checkpoint before it."""
    second: SecondWriter | None = None
    """After the kills (if any), the run is finished by two processes at once instead of one."""


def deterministic_trials() -> list[Trial]:
    """Kill points in every phase: growth events, ramps, checkpoint writes, plain steps."""
    k = Kill
    return [
        Trial("growth-1", (k("8:mid_growth"),)),
        Trial("growth-2", (k("18:mid_growth"),)),
        Trial("growth-both", (k("8:mid_growth"), k("18:mid_growth"))),
        Trial("ramp-1", (k("10:mid_ramp"),)),
        Trial("ramp-2", (k("21:mid_ramp"),)),
        Trial("ramp-2-twice", (k("19:mid_ramp"), k("25:mid_ramp"))),
        Trial("ckpt-first", (k("3:mid_checkpoint"),)),
        Trial("ckpt-mid-ramp", (k("21:mid_checkpoint"),)),
        Trial("ckpt-last", (k("40:mid_checkpoint"),)),
        Trial("ckpt-before-latest", (k("12:before_latest"),)),
        Trial("before-first-step", (k("0:before_step"),)),
        Trial("before-growth-2", (k("18:before_step"),)),
        Trial("after-optimizer", (k("17:after_optimizer"),)),
        Trial("three-kills", (k("5:after_optimizer"), k("14:mid_ramp"), k("30:mid_checkpoint"))),
        Trial("damaged-flip", (k("22:before_step"),), damage="flip"),
        Trial("damaged-truncate", (k("12:mid_ramp"),), damage="truncate"),
    ]


def second_writer_trials() -> list[Trial]:
    """A second process writing to the run dir during a run: before the first checkpoint (as a new run), mid
    ramp and at the second growth (as a resume), two started together (new runs, and resumes after a kill)."""
    w = SecondWriter
    return [
        Trial("writer-new-early", (), second=w(at_step=2, resume=False)),
        Trial("writer-resume-ramp", (), second=w(at_step=10)),
        Trial("writer-resume-growth", (), second=w(at_step=18)),
        Trial("writers-together", (), second=w(at_step=None, resume=False)),
        Trial("writers-after-kill", (Kill("12:mid_ramp"),), second=w(at_step=None)),
    ]


def wallclock_trials(n: int, seed: int = 0) -> list[Trial]:
    """Kills from outside at random moments (fractions of the reference run's duration), 1–2 per trial."""
    rng = random.Random(seed)
    return [Trial(f"random-{i + 1}", tuple(Kill(after=round(rng.uniform(0.15, 0.9), 3))
                                            for _ in range(1 + i % 2)))
            for i in range(n)]


def ci_trial() -> Trial:
    """The short version for the default test suite: three kills (growth, ramp, checkpoint write)."""
    return Trial("ci", (Kill("8:mid_growth"), Kill("20:mid_ramp"), Kill("24:mid_checkpoint")))


# -- one training process ----------------------------------------------------------------------
def _child(run_dir: str, resume: bool, fault: str | None, log: str) -> None:
    """A training process: its own log file, one thread, the kill point in its environment."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if fault:
        os.environ[ENV] = fault
    else:
        os.environ.pop(ENV, None)
    try:
        import threading

        import torch
        from tqdm.auto import tqdm

        from growkit.train.config import RunConfig
        from growkit.train.loop import Trainer

        torch.set_num_threads(1)
        tqdm.set_lock(threading.RLock())  # not tqdm's default multiprocessing lock, which a SIGKILL would leak
        cfg = RunConfig.default(run_overrides(Path(run_dir)))
        cfg.growth = [dict(s) for s in GROWTH]
        cfg.validate()
        Trainer(cfg, resume=resume).fit()
    except GrowkitError as e:  # as the CLI: one line, status 2 (a second writer refused by the run lock)
        print(f"growkit: error: {e}", flush=True)
        os._exit(2)
    except BaseException:  # the parent reads the log; the exit code says it failed
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _noop() -> None:
    pass


@dataclass
class Launcher:
    """Starts training processes from a forkserver (see the module docstring)."""

    ctx: Any = field(default_factory=lambda: multiprocessing.get_context("forkserver"))

    def __post_init__(self) -> None:
        # torch._dynamo: imported lazily by the first optimizer (seconds), once here instead of in every child
        self.ctx.set_forkserver_preload(["torch._dynamo", "growkit.train.loop", "growkit.bench.faults"])
        warm = self.ctx.Process(target=_noop)  # start the server now, so no launch is timed with its imports
        warm.start()
        warm.join()

    def start(self, run_dir: Path, resume: bool, fault: str | None = None, log: str = "") -> Any:
        """Start a training process on ``run_dir`` (the directory as it is); its output goes to
        ``RUN.log`` (``RUN.LOG.log`` with ``log``)."""
        name = f"{run_dir.name}.{log}.log" if log else f"{run_dir.name}.log"
        p = self.ctx.Process(target=_child, args=(str(run_dir), resume, fault, str(run_dir.parent / name)))
        p.start()
        return p

    def launch(self, run_dir: Path, fault: str | None = None, kill_after_s: float | None = None) -> tuple[int, float]:
        """Run (or resume) the training at ``run_dir`` until it ends or is killed; (exit code, seconds)."""
        resume = _prepare(run_dir)
        start = time.perf_counter()
        p = self.start(run_dir, resume, fault)
        p.join(kill_after_s)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join()
        return p.exitcode, time.perf_counter() - start


def _prepare(run_dir: Path) -> bool:
    """Whether to resume: a run killed before its first checkpoint is started over (nothing to resume)."""
    resume = _has_checkpoint(run_dir)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return resume


def _has_checkpoint(run_dir: Path) -> bool:
    root = run_dir / "checkpoints"
    return root.is_dir() and any(p.name.startswith("step_") for p in root.iterdir())


# -- comparing with the reference ------------------------------------------------------------------
def fingerprint(run_dir: Path) -> dict[str, Any]:
    """What must be bit-identical: final tensors (as raw bytes), final losses, the train-loss curve."""
    final = run_dir / "checkpoints" / f"step_{MAX_STEPS:08d}"
    tensors = {}
    for name in ("model.safetensors", "optimizer.safetensors"):
        for key, value in load_file(str(final / name)).items():
            tensors[f"{name}:{key}"] = (value.dtype.str, value.shape, np.ascontiguousarray(value).tobytes())
    train, evals, events = (read_jsonl(run_dir / name) for name in ("train.jsonl", "metrics.jsonl", "events.jsonl"))
    curve = [(r["step"], r["train_loss"]) for r in train]
    return {"tensors": tensors, "curve": curve, "final_train_loss": curve[-1][1] if curve else None,
            "final_val_loss": evals[-1]["val_loss"] if evals else None,
            "evals": [(r["step"], r["val_loss"]) for r in evals],
            "events": [{k: v for k, v in e.items() if k != "time_s"} for e in events]}


def compare(ref: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Differences between two fingerprints (empty: bit-identical)."""
    out = []
    if ref["tensors"].keys() != got["tensors"].keys():
        out.append(f"tensor names differ: {sorted(ref['tensors'].keys() ^ got['tensors'].keys())[:3]}")
    differ = [k for k in ref["tensors"].keys() & got["tensors"].keys() if ref["tensors"][k] != got["tensors"][k]]
    if differ:
        out.append(f"{len(differ)} tensors differ, e.g. {sorted(differ)[:3]}")
    for key in ("final_train_loss", "final_val_loss", "curve", "evals", "events"):
        if ref[key] != got[key]:
            out.append(f"{key} differs")
    return out


def damage_newest(run_dir: Path, how: str) -> str:
    """Damage the checkpoint ``latest.json`` points at; returns its name."""
    root = run_dir / "checkpoints"
    newest = root / json.loads((root / "latest.json").read_text())["path"]
    if how == "flip":
        f = newest / "model.safetensors"
        data = bytearray(f.read_bytes())
        data[-5] ^= 0x10
        f.write_bytes(bytes(data))
    else:
        f = newest / "optimizer.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return newest.name


# -- trials --------------------------------------------------------------------------------------------
@dataclass
class TrialResult:
    name: str
    kills: list[str]
    kills_landed: int
    launches: int
    damaged: str | None
    fell_back: bool
    seconds: float
    problems: list[str]
    refused: int = 0
    """Second writers refused by the run lock (exit 2, the holder named)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def run_trial(trial: Trial, root: Path, launcher: Launcher, reference: dict[str, Any],
              ref_seconds: float) -> TrialResult:
    """Kill, resume (as often as the trial says), finish, compare with the reference."""
    run_dir = root / trial.name
    shutil.rmtree(run_dir, ignore_errors=True)
    for log in (f"{trial.name}.log", f"{trial.name}.second.log"):
        (root / log).unlink(missing_ok=True)
    start = time.perf_counter()
    problems: list[str] = []
    landed = launches = refused = 0
    finished = False
    for kill in trial.kills:
        delay = None if kill.after is None else kill.after * ref_seconds
        for _ in range(4):  # an outside kill that came too late: start the trial over with a shorter delay
            code, _ = launcher.launch(run_dir, fault=kill.fault, kill_after_s=delay)
            launches += 1
            if code != 0 or kill.after is None or landed:
                break
            shutil.rmtree(run_dir)
            delay = (delay or ref_seconds) / 2
        if code == -signal.SIGKILL:
            landed += 1
        elif code == 0:
            finished = True
            if kill.fault:  # the kill point was never reached
                problems.append(f"{kill.describe()}: the run ended without being killed")
            elif not landed:
                problems.append(f"{kill.describe()}: every outside kill came after the run had ended")
            break
        else:
            problems.append(f"{kill.describe()}: the run failed (exit code {code}), see {trial.name}.log")
            break
    damaged = damage_newest(run_dir, trial.damage) if trial.damage and not problems else None
    if not problems and not finished and trial.second is not None:
        found = two_writers(run_dir, trial.second, launcher)
        launches, refused = launches + 2, refused + (not found)
        problems += [f"{trial.second.describe()}: {p}" for p in found]
    elif not problems and not finished:
        code, _ = launcher.launch(run_dir)
        launches += 1
        if code != 0:
            problems.append(f"the final resume failed (exit code {code}), see {trial.name}.log")
    fell_back = bool(damaged) and (run_dir / "checkpoints" / f"corrupt-{damaged}").is_dir()
    if damaged and not fell_back:
        problems.append(f"the damaged {damaged} was not set aside as corrupt-{damaged}")
    if not problems:
        problems += compare(reference, fingerprint(run_dir))
    kills = [k.describe() for k in trial.kills] + ([trial.second.describe()] if trial.second else [])
    return TrialResult(trial.name, kills, landed, launches, damaged, fell_back, round(time.perf_counter() - start, 2),
                       problems, refused)


def two_writers(run_dir: Path, second: SecondWriter, launcher: Launcher, timeout_s: float = 600) -> list[str]:
    """Finish the run at ``run_dir`` with a second writer on it (see `SecondWriter`); returns the problems
    (empty: exactly one process ran, the other exited 2 naming it, and both locks files are gone)."""
    resume = _prepare(run_dir)
    logs = {"first": run_dir.parent / f"{run_dir.name}.log", "second": run_dir.parent / f"{run_dir.name}.second.log"}
    first = launcher.start(run_dir, resume)
    if second.at_step is not None:  # wait until the first has trained to at_step (or ended)
        while first.is_alive() and _last_step(run_dir) < second.at_step:
            time.sleep(0.005)
        if not first.is_alive():
            first.join()
            return [f"the first writer ended (exit code {first.exitcode}) before the second started"]
    other = launcher.start(run_dir, second.resume if second.at_step is not None else resume, log="second")
    for p in (first, other):
        p.join(timeout_s)
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join()
    codes = {"first": first.exitcode, "second": other.exitcode}
    if sorted(codes.values()) != [0, 2]:
        return [f"exit codes {codes} (want one 0 and one 2), see the logs"]
    winner, loser = ("first", "second") if codes["first"] == 0 else ("second", "first")
    pid = (first if winner == "first" else other).pid
    text = logs[loser].read_text(errors="replace") if logs[loser].exists() else ""
    problems = []
    if f"is in use by another growkit process (pid {pid} on host" not in text:
        problems.append(f"the {loser} writer was not refused by the lock naming pid {pid}: see {logs[loser].name}")
    left = [n for n in (".lock", ".lock.json") if (run_dir / n).exists()]
    if left:
        problems.append(f"lock files left behind: {left}")
    return problems


def _last_step(run_dir: Path) -> int:
    """The last step in train.jsonl (-1: none yet); a torn last line is ignored."""
    path = run_dir / "train.jsonl"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return -1
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return -1


def run_reference(root: Path, launcher: Launcher) -> tuple[dict[str, Any], float]:
    """The uninterrupted run: its fingerprint and its duration in seconds (for the outside kills)."""
    run_dir = root / "reference"
    shutil.rmtree(run_dir, ignore_errors=True)
    (root / "reference.log").unlink(missing_ok=True)
    code, seconds = launcher.launch(run_dir)
    if code != 0:
        raise RuntimeError(f"the reference run failed (exit code {code}): see {root / 'reference.log'}")
    return fingerprint(run_dir), seconds


def run_trials(trials: list[Trial], root: Path) -> tuple[list[TrialResult], float]:
    """The reference run, then every trial; returns the results and the reference's duration."""
    root.mkdir(parents=True, exist_ok=True)
    launcher = Launcher()
    reference, ref_seconds = run_reference(root, launcher)
    return [run_trial(t, root, launcher, reference, ref_seconds) for t in trials], ref_seconds


def table(results: list[TrialResult]) -> str:
    lines = [f"{'trial':<22} {'kills':<52} {'landed':>6} {'runs':>4} {'fallback':>8} {'s':>6}  result"]
    for r in results:
        kills = ", ".join(r.kills)
        fallback = "yes" if r.fell_back else ("-" if r.damaged is None else "NO")
        verdict = "bit-identical" if r.ok else "FAIL: " + "; ".join(r.problems)
        lines.append(f"{r.name:<22} {kills:<52} {r.kills_landed:>6} {r.launches:>4} {fallback:>8} "
                     f"{r.seconds:>6.1f}  {verdict}")
    return "\n".join(lines)


def to_json(results: list[TrialResult], ref_seconds: float) -> dict[str, Any]:
    return {"reference_seconds": round(ref_seconds, 2), "max_steps": MAX_STEPS, "growth": GROWTH,
            "trials": [{**asdict(r), "ok": r.ok} for r in results],
            "ok": sum(r.ok for r in results), "n": len(results)}
