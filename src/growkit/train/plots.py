"""PNG plots of runs: validation loss against training FLOPs and against wall-clock, runs overlaid.

Reads each run's ``metrics.jsonl``; a run without evaluations yet is skipped with a note in the legend.
"""

from __future__ import annotations

from pathlib import Path

from growkit.errors import GrowkitError
from growkit.train.metrics import METRICS_FILE, read_jsonl

AXES = {"flops": ("training FLOPs", "val_loss_vs_flops.png"), "time_s": ("wall-clock (s)", "val_loss_vs_time.png")}


def plot_runs(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Write one PNG per x-axis (FLOPs, wall-clock) into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for d in map(Path, run_dirs):
        path = d / METRICS_FILE
        if not path.is_file():
            raise GrowkitError(f"{d} has no {METRICS_FILE}: pass run directories written by `growkit train`")
        runs[d.name if d.name else str(d)] = [r for r in read_jsonl(path) if "val_loss" in r]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, (label, filename) in AXES.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for name, records in runs.items():
            ax.plot([r[key] for r in records], [r["val_loss"] for r in records], marker=".", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss (nats/token)")
        if key == "flops":
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
