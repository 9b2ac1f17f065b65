"""Run logs: ``metrics.jsonl`` (one record per evaluation), ``train.jsonl`` (one per ``log_every``
steps), ``events.jsonl`` (one per growth stage), and TensorBoard events when the ``tensorboard`` package is installed.

Every record carries ``step``, ``tokens``, ``flops`` (cumulative training FLOPs) and ``time_s``
(cumulative wall-clock of the run, across resumes), so runs of different sizes compare on any axis.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from growkit.train.wandb_sink import WandbSink

from growkit.errors import GrowkitWarning

METRICS_FILE = "metrics.jsonl"
TRAIN_LOG_FILE = "train.jsonl"
EVENTS_FILE = "events.jsonl"


class MetricsLogger:
    """Appends JSON lines (flushed per record, so a crash loses nothing written) and mirrors scalars
    to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, enabled: bool = True,
                 wandb: WandbSink | None = None) -> None:
        """``enabled=False`` (the ranks other than 0 of a multi-process run): a logger that writes nothing.
        ``wandb``: also log every record to this W&B run (`growkit.train.wandb_sink`)."""
        self.run_dir = run_dir
        self._wandb = wandb if enabled else None
        names = (METRICS_FILE, TRAIN_LOG_FILE, EVENTS_FILE) if enabled else ()
        self._files = {name: open(run_dir / name, "a") for name in names}  # noqa: SIM115
        self._tb = None
        if tensorboard and enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL only
                pass
            else:
                self._tb = SummaryWriter(str(run_dir / "tensorboard"))

    def log_eval(self, record: dict[str, Any]) -> None:
        self._write(METRICS_FILE, record, "eval")

    def log_train(self, record: dict[str, Any]) -> None:
        self._write(TRAIN_LOG_FILE, record, "train")

    def log_event(self, record: dict[str, Any]) -> None:
        """A growth event (sizes, probe loss before/after) in ``events.jsonl``."""
        self._write(EVENTS_FILE, record, "growth")

    def _write(self, name: str, record: dict[str, Any], prefix: str) -> None:
        f = self._files.get(name)
        if f is None:
            return
        f.write(json.dumps(record) + "\n")
        f.flush()
        if self._wandb is not None:
            self._wandb.log(prefix, record)
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and k != "step" and math.isfinite(v):
                    self._tb.add_scalar(f"{prefix}/{k}", v, record["step"])

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        if self._wandb is not None:
            self._wandb.close()
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: Path, warn: bool = True) -> list[dict[str, Any]]:
    """Records of a JSONL file. A line that is not a JSON object — a torn last line, written by a process
    killed mid-write — is skipped, with a `GrowkitWarning` naming it when ``warn`` (a resume, which drops
    it anyway, reads quietly)."""
    records = []
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif warn and line.strip():
            what = "its last line is torn (the writer was killed mid-line)" if i == len(lines) - 1 else \
                f"line {i + 1} is not a JSON record"
            warnings.warn(f"{path}: {what}; skipped it", GrowkitWarning, stacklevel=2)
    return records
