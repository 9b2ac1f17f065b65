"""Weights & Biases logging for ``growkit train`` (``run.wandb = "PROJECT"``; the ``wandb`` extra).

Every record that goes to the JSONL logs (evaluations, training steps, growth events) is also logged to
a W&B run, under ``eval/``, ``train/`` and ``growth/``, at its optimizer step. ``run.wandb_mode`` is
``offline`` by default: the run is written under ``RUN_DIR/wandb`` and needs no account or network
(``wandb sync RUN_DIR/wandb/offline-run-*`` uploads it later); ``online`` logs live. A resumed run logs to
the same W&B run: its id is kept in ``RUN_DIR/wandb_run.json``.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from typing import Any

from growkit.errors import GrowkitError
from growkit.io import atomic_write_text

ID_FILE = "wandb_run.json"


class WandbSink:
    """One W&B run mirroring a growkit run's logs."""

    def __init__(self, project: str, run_dir: Path, config: dict[str, Any], mode: str = "offline") -> None:
        try:
            import wandb
        except ImportError as e:
            raise GrowkitError("run.wandb is set but the wandb package is not installed: "
                               "pip install 'growkit[wandb]' (or unset run.wandb)") from e
        id_path = run_dir / ID_FILE
        run_id = json.loads(id_path.read_text())["id"] if id_path.is_file() else secrets.token_hex(4)
        if not id_path.is_file():
            atomic_write_text(id_path, json.dumps({"id": run_id, "project": project}))
        self.run = wandb.init(project=project, dir=str(run_dir), config=config, mode=mode, id=run_id,
                              name=run_dir.name, resume="allow", settings=wandb.Settings(silent=True))

    def log(self, prefix: str, record: dict[str, Any]) -> None:
        """The numbers of ``record`` as ``prefix/key`` at its step (non-finite values left out)."""
        data = {f"{prefix}/{k}": v for k, v in record.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "step" and math.isfinite(v)}
        self.run.log(data, step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()
