"""Growing a saved checkpoint (model + AdamW state), and continuing training from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


SPARSE = ["sparsity.density=0.25", "sparsity.block=8", "sparsity.update_every=2", "train.lr=3e-3"]


def test_sparsity_masks_follow_the_growth_and_the_resume(tmp_path: Path) -> None:
    """`growkit grow --from` a sparse run: its masks are carried (not re-drawn at random on resume)."""
    small = tmp_path / "small"
    train(RunConfig.default([*TINY, *SPARSE, f"run.dir={small}"]))
    before = {k: v for k, v in read_checkpoint(small).extra().items() if k.startswith("sparsity.mask.")}
    result = grow_checkpoint(small, GrowthSpec(d_ff=80, n_layers=3, method="zero"), tmp_path / "grown")
    assert result["max_abs_dlogits"] < 1e-9  # measured on the grown model with its masks applied
    ckpt = read_checkpoint(tmp_path / "grown")
    after = {k.removeprefix("sparsity."): v for k, v in ckpt.extra().items() if k.startswith("sparsity.")}
    names = {k.removeprefix("mask.") for k in after if k.startswith("mask.")}
    assert {n.split(".")[1] for n in names} == {"0", "1", "2"}  # every layer of the grown model, new ones too
    for layer in (0, 1):  # d_model did not change: the attention masks of the old layers are the same
        key = f"sparsity.mask.blocks.{layer}.attn.q_proj.weight"
        assert torch.equal(after[key.removeprefix("sparsity.")], before[key])
    up = after["mask.blocks.0.mlp.up.weight"]  # 80 × 32 now: 10 × 4 blocks, the old 6 rows of blocks kept
    assert up.shape == (10, 4)
    assert 0 < up.sum() < up.numel()
    big = RunConfig.default([*TINY, *SPARSE, "model.d_ff=80", "model.n_layers=3", "train.max_steps=10",
                             f"run.dir={tmp_path / 'big'}"])
    trainer = Trainer(big, resume=tmp_path / "grown")
    assert trainer.sparsity is not None
    for name, mask in trainer.sparsity.block_masks.items():
        assert torch.equal(mask.cpu(), after[f"mask.{name}"]), name
    trainer.fit()
    for name, mask in trainer.sparsity.masks.items():
        p = dict(trainer.model.named_parameters())[name]
        assert not p.detach()[~mask].any(), name
