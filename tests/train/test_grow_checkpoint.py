"""Growing a saved checkpoint (model + AdamW state), and continuing training from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from growkit import GrowkitError, GrowthSpec, RunConfig, train
from growkit.train.checkpoint import read_checkpoint
from growkit.train.grow_checkpoint import grow_checkpoint
from growkit.train.loop import Trainer

TINY = ["model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_ff=48", "data.seq_len=32",
        "train.batch_size=8", "run.eval_batches=2", "run.progress=false", "run.plots=false",
        "run.tensorboard=false", "train.max_steps=6", "run.eval_every=6"]


def test_grow_then_resume_training(tmp_path: Path) -> None:
    small = tmp_path / "small"
    train(RunConfig.default([*TINY, f"run.dir={small}"]))
    out = tmp_path / "grown"
    result = grow_checkpoint(small, GrowthSpec(d_ff=80, n_layers=3, method="zero"), out)
    assert result["max_abs_dlogits"] < 1e-9
    ckpt = read_checkpoint(out)
    assert ckpt.state["model_config"]["d_ff"] == 80 and ckpt.step == 6
    assert ckpt.state["growths"][0]["spec"]["d_ff"] == 80
    big = RunConfig.default([*TINY, "model.d_ff=80", "model.n_layers=3", "train.max_steps=10",
                             f"run.dir={tmp_path / 'big'}"])
    trainer = Trainer(big, resume=out)
    assert trainer.state.step == 6 and trainer.optimizer.state  # moments were carried
    result = trainer.fit()
    assert trainer.state.step == 10 and result["val_loss"] < 9.0


def test_out_must_be_new(tmp_path: Path) -> None:
    train(RunConfig.default([*TINY, f"run.dir={tmp_path / 'r'}"]))
    (tmp_path / "exists").mkdir()
    with pytest.raises(GrowkitError, match="already exists"):
        grow_checkpoint(tmp_path / "r", GrowthSpec(d_ff=60), tmp_path / "exists")
