"""PNG plots of runs: loss against training FLOPs, tokens and wall-clock, runs overlaid.

For each run dir: validation loss (``metrics.jsonl``, points joined by a line) and training loss
(``train.jsonl``, a thin line of the same colour), each growth event (``events.jsonl``) as a dashed
vertical line labelled with what grew, and the end of its mask ramp (the stage's ``ramp_steps`` in
``config.json``) as a dotted one. FLOPs and tokens are on log axes that start at the first logged point
(the step-0 evaluation at 0 FLOPs is left out there, so the first segment is not a flat line from the
axis edge). A run without evaluations yet is shown with what it has; a torn last line (a killed writer)
is skipped by `read_jsonl`.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from growkit.errors import GrowkitError
from growkit.train.metrics import EVENTS_FILE, METRICS_FILE, TRAIN_LOG_FILE, read_jsonl

AXES = {"flops": ("training FLOPs", "val_loss_vs_flops.png", True),
        "tokens": ("training tokens", "val_loss_vs_tokens.png", True),
        "time_s": ("wall-clock (s)", "val_loss_vs_time.png", False)}


@dataclass
class RunLog:
    """What one run dir has logged, as lists of records."""

    name: str
    evals: list[dict[str, Any]]
    train: list[dict[str, Any]]
    events: list[dict[str, Any]]
    ramps: dict[int, int] = field(default_factory=dict)
    """Mask ramp length (steps) per growth stage number (1-based, as in the events)."""

    def at_step(self, step: int, key: str) -> float | None:
        """``key`` (flops, tokens, time_s) at optimizer step ``step``, linear between logged records."""
        pts = sorted({r["step"]: r[key] for r in self.train + self.evals if key in r}.items())
        if not pts:
            return None
        steps = [s for s, _ in pts]
        i = bisect.bisect_left(steps, step)
        if i < len(pts) and steps[i] == step:
            return float(pts[i][1])
        if i == 0 or i == len(pts):
            return None  # outside what was logged: not drawn
        (s0, v0), (s1, v1) = pts[i - 1], pts[i]
        return v0 + (v1 - v0) * (step - s0) / (s1 - s0)


def read_run(run_dir: Path) -> RunLog:
    """The logs of one run dir (``metrics.jsonl`` is required)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise GrowkitError(f"{run_dir} has no {METRICS_FILE}: pass run directories written by `growkit train`")
    train = read_jsonl(run_dir / TRAIN_LOG_FILE) if (run_dir / TRAIN_LOG_FILE).is_file() else []
    events = read_jsonl(run_dir / EVENTS_FILE) if (run_dir / EVENTS_FILE).is_file() else []
    ramps: dict[int, int] = {}
    cfg = run_dir / "config.json"
    if cfg.is_file():
        try:
            stages = json.loads(cfg.read_text()).get("growth", [])
            ramps = {i + 1: int(s.get("ramp_steps", 0)) for i, s in enumerate(stages) if s.get("ramp_steps")}
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            ramps = {}
    return RunLog(run_dir.name or str(run_dir), [r for r in read_jsonl(path) if r.get("val_loss") is not None],
                  [r for r in train if r.get("train_loss") is not None],
                  [e for e in events if e.get("event") == "growth"], ramps)


def growth_label(event: dict[str, Any]) -> str:
    """What a growth event changed, short: ``d_model 128, n_layers 4`` (and ``seq 128``)."""
    parts = [f"{k} {v}" for k, v in (event.get("grow") or {}).items()]
    if event.get("seq_len") is not None and not parts:
        parts.append(f"seq {event['seq_len']}")
    return ", ".join(parts) or f"stage {event.get('stage')}"


def plot_runs(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Write one PNG per x-axis (FLOPs, tokens, wall-clock) into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [read_run(Path(d)) for d in run_dirs]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, (_, filename, _) in AXES.items():
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
        draw(ax, runs, key)
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def draw(ax: Any, runs: list[RunLog], key: str) -> None:
    """Draw ``runs`` against x-axis ``key`` (one of `AXES`) on matplotlib axes ``ax``."""
    import matplotlib.pyplot as plt

    label, _, log = AXES[key]
    for i, run in enumerate(runs):
        color = plt.get_cmap("tab10")(i % 10)
        ev = [r for r in run.evals if key in r and (r[key] > 0 or not log)]
        tr = [r for r in run.train if key in r and (r[key] > 0 or not log)]
        if tr:
            ax.plot([r[key] for r in tr], [r["train_loss"] for r in tr], color=color, lw=0.8, alpha=0.45,
                    label=f"{run.name} (train)")
        if ev:
            ax.plot([r[key] for r in ev], [r["val_loss"] for r in ev], marker=".", color=color, lw=1.6,
                    label=f"{run.name} (val)")
        for e in run.events:
            x = e.get(key)
            if x is None or (log and x <= 0):
                continue
            ax.axvline(x, color=color, ls="--", lw=0.9, alpha=0.8)
            ax.annotate(growth_label(e), (x, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=6, color=color)
            ramp = run.ramps.get(int(e.get("stage", 0)), 0)
            end = run.at_step(int(e["step"]) + ramp, key) if ramp else None
            if end is not None and (end > 0 or not log):
                ax.axvline(end, color=color, ls=":", lw=0.9, alpha=0.8)
    ax.set_xlabel(label)
    ax.set_ylabel("loss (nats/token)")
    if log:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3, which="both")
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7)
    ax.set_title("dashed: growth (what grew); dotted: end of its mask ramp", fontsize=8)
