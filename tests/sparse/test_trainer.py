"""`[sparsity]` in real (tiny) `growkit.train` runs: masks survive checkpoint and resume (losses equal to the
uninterrupted run, through a growth stage and RigL updates), density and both FLOP counts are logged, the
sparse LR rule, total_steps from the budget, TOML errors.

Not here: masks identical on every rank under 2-process DDP — that test belongs to the distributed issue."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from growkit import GrowkitError, RunConfig, train
from growkit.flops import training_flops_per_token
from growkit.train.checkpoint import find_checkpoint, read_checkpoint
from growkit.train.loop import Trainer
from growkit.train.schedule import learning_rate

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=48", "data.seq_len=32",
        "train.batch_size=4", "train.warmup_steps=2", "train.lr=3e-3", "run.eval_batches=1", "run.log_every=1",
        "run.progress=false", "run.tensorboard=false", "run.plots=false", "sparsity.density=0.25",
        "sparsity.block=8"]
STAGE = {"at_step": 5, "grow": {"d_ff": 64, "n_layers": 2}, "method": "masked", "ramp_steps": 2}


def config(run_dir: Path, *more: str, stages: tuple[dict, ...] = ()) -> RunConfig:
    d = RunConfig.default([*TINY, f"run.dir={run_dir}", *more]).to_dict()
    d["growth"] = list(stages)
    return RunConfig.from_dict(d)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_masks_survive_checkpoint_and_resume_through_growth(tmp_path: Path) -> None:
    common = ["train.max_steps=10", "run.eval_every=3", "sparsity.update_every=2", "sparsity.regrow='gradient'"]
    full = Trainer(config(tmp_path / "full", *common, stages=(STAGE,)))
    full.fit()
    Trainer(config(tmp_path / "part", *common, stages=(STAGE,))).fit(stop_at_step=6)  # preempted after the growth
    ckpt = read_checkpoint(find_checkpoint(tmp_path / "part"))
    assert any(k.startswith("sparsity.mask.blocks.1.") for k in ckpt.extra())  # the grown model's masks
    resumed = Trainer(config(tmp_path / "part", *common, stages=(STAGE,)), resume=True)
    assert resumed.sparsity is not None and resumed.sparsity.last_step == 6
    resumed.fit()
    assert [r["train_loss"] for r in lines(tmp_path / "part" / "train.jsonl")] == \
        [r["train_loss"] for r in lines(tmp_path / "full" / "train.jsonl")]
    assert [r["val_loss"] for r in lines(tmp_path / "part" / "metrics.jsonl")] == \
        [r["val_loss"] for r in lines(tmp_path / "full" / "metrics.jsonl")]
    for name, mask in full.sparsity.masks.items():
        assert torch.equal(mask, resumed.sparsity.masks[name]), name
        assert (dict(resumed.model.named_parameters())[name].detach().masked_fill(mask, 0.0) == 0).all()
    assert full.sparsity.cfg.total_steps == 10  # from train.max_steps
    # logged: density, sparse FLOPs below the dense-equivalent ones; the growth event too
    records = lines(tmp_path / "full" / "train.jsonl")
    assert all(r["density"] == pytest.approx(0.25) for r in records)
    assert all(0 < r["flops"] < r["flops_dense"] for r in records)
    (event,) = lines(tmp_path / "full" / "events.jsonl")
    assert abs(event["loss_jump"]) < 1e-5 and event["density"] == pytest.approx(0.25)
    first = records[0]
    cfg0 = full.initial_model_cfg
    assert first["flops"] == pytest.approx(training_flops_per_token(cfg0, 32, 0.25) * 4 * 32)
    assert first["flops_dense"] == pytest.approx(training_flops_per_token(cfg0, 32) * 4 * 32)


def test_sparse_lr_rule_and_static_run(tmp_path: Path) -> None:
    train(config(tmp_path, "train.max_steps=4", "run.eval_every=4", "sparsity.static=true",
                 "sparsity.sparse_lr_rule=true", "train.decay='constant'"))
    factor = math.exp(1.969 * 0.75**2 + 0.2905 * 0.75)
    cfg = config(tmp_path / "x", "train.max_steps=4", "train.decay='constant'").train
    lrs = [r["lr"] for r in lines(tmp_path / "train.jsonl")]
    assert lrs == pytest.approx([learning_rate(cfg, s, s / 4) * factor for s in range(4)])


def test_total_steps_from_a_token_budget(tmp_path: Path) -> None:
    trainer = Trainer(config(tmp_path, "train.max_tokens=1280"))  # 1280 / (4 × 32) = 10 steps
    assert trainer.sparsity is not None and trainer.sparsity.cfg.total_steps == 10
    assert trainer.sparsity.density() == pytest.approx(0.25)


def test_sparsity_table_errors(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nmax_steps = 2\n[sparsity]\ndensity = 0.1\nblock = 12\n")
    with pytest.raises(GrowkitError, match=r"sparsity\.block must be one of 1, 4, 8, 16, 32, 64, got 12"):
        RunConfig.from_toml(toml)
    with pytest.raises(GrowkitError, match=r"unknown key\(s\) in \[sparsity\]: dense"):
        config(tmp_path, "train.max_steps=2", "sparsity.dense=true")
    with pytest.raises(GrowkitError, match=r"\[sparsity\] must be a table"):
        RunConfig.from_dict({"train": {"max_steps": 2}, "sparsity": 0.1})
    with pytest.raises(GrowkitError, match=r"which 16×16 blocks do not tile"):
        Trainer(config(tmp_path / "b16", "train.max_steps=2", "sparsity.block=16", "model.d_ff=40"))
    ok = RunConfig.from_toml(toml, ["sparsity.block=4"])
    assert ok.sparsity_config().block == 4 and RunConfig.default(["train.max_steps=2"]).sparsity_config() is None


def test_a_skipped_nonfinite_step_runs_no_prune_and_regrow(tmp_path: Path) -> None:
    from growkit import GrowkitWarning

    trainer = Trainer(config(tmp_path, "train.max_steps=6", "run.eval_every=6", "sparsity.update_every=1",
                             "sparsity.regrow='gradient'"))
    assert trainer.sparsity is not None
    trainer.train_step()

    def nan_loss(module: torch.nn.Module, args: object, out: tuple) -> tuple:
        return out[0], out[1] * float("nan")

    handle = trainer.model.register_forward_hook(nan_loss)
    masks = {n: m.clone() for n, m in trainer.sparsity.block_masks.items()}
    with pytest.warns(GrowkitWarning, match="step 2: non-finite"):
        trainer.train_step()  # an update step (update_every=1) with NaN gradients: skipped, no mask update
    handle.remove()
    assert trainer.state.skipped_steps == 1 and trainer.sparsity.last_step == 2
    assert all(torch.equal(masks[n], m) for n, m in trainer.sparsity.block_masks.items())
    trainer.train_step()  # a finite step: its RigL update runs
    assert any(not torch.equal(masks[n], m) for n, m in trainer.sparsity.block_masks.items())
