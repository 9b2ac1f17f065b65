"""``run.wandb``: a real offline Weights & Biases run mirrors the JSONL logs (the ``wandb`` extra)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from growkit import GrowkitError, RunConfig
from growkit.train.loop import Trainer

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=40", "data.seq_len=32",
        "data.tokenizer=byte", "train.batch_size=4", "train.warmup_steps=2", "train.max_steps=8",
        "run.eval_every=4", "run.eval_batches=1", "run.log_every=2", "run.progress=false",
        "run.tensorboard=false", "run.plots=false"]


def test_offline_run_logs_evals_train_steps_and_growth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    d = RunConfig.default([*TINY, f"run.dir={tmp_path / 'run'}", "run.wandb=growkit-test"]).to_dict()
    d["growth"] = [{"at_step": 4, "grow": {"d_ff": 64}, "method": "masked", "ramp_steps": 2}]
    Trainer(RunConfig.from_dict(d)).fit()
    run_dir = tmp_path / "run"
    ident = json.loads((run_dir / "wandb_run.json").read_text())
    assert ident["project"] == "growkit-test"
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{ident['id']}"))
    assert len(offline) == 1
    data = (offline[0] / f"run-{ident['id']}.wandb").read_bytes()  # the run's records, as W&B stores them
    for key in (b"eval/val_loss", b"train/train_loss", b"growth/params_after"):
        assert key in data


def test_wandb_without_the_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb → ImportError
    cfg = RunConfig.default([*TINY, f"run.dir={tmp_path / 'run'}", "run.wandb=p"])
    with pytest.raises(GrowkitError, match=r"pip install 'growkit\[wandb\]'"):
        Trainer(cfg).fit()


def test_unknown_wandb_mode_is_refused() -> None:
    with pytest.raises(GrowkitError, match=r"run\.wandb_mode"):
        RunConfig.default([*TINY, "run.wandb=p", "run.wandb_mode=cloud"])
