"""Growth schedules in real (tiny) runs: growth events, mask ramps, input-length growth, LR policies,
and resume in the middle of a ramp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from growkit import GrowkitError, RunConfig, train
from growkit.train.config import TrainConfig
from growkit.train.loop import Trainer
from growkit.train.schedule import learning_rate, scheduled_lr

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=40", "data.seq_len=32",
        "train.batch_size=8", "train.warmup_steps=2", "train.lr=3e-3", "run.eval_batches=2", "run.log_every=1",
        "run.progress=false", "run.tensorboard=false", "run.plots=false"]
MSG_STAGE = {"at_step": 3, "grow": {"d_ff": 64, "n_layers": 2}, "method": "masked", "ramp_steps": 4}


def config(run_dir: Path, stages: list[dict], *more: str) -> RunConfig:
    d = RunConfig.default([*TINY, f"run.dir={run_dir}", *more]).to_dict()
    d["growth"] = stages
    return RunConfig.from_dict(d)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_masked_stage_grows_preserves_ramps_and_folds(tmp_path: Path) -> None:
    trainer = Trainer(config(tmp_path, [MSG_STAGE], "train.max_steps=10", "run.eval_every=5"))
    flops_small = trainer.flops_per_token
    trainer.fit()
    (event,) = lines(tmp_path / "events.jsonl")
    assert event["step"] == 3 and event["params_after"] > event["params_before"]
    assert abs(event["loss_jump"]) < 1e-5  # masked growth at c = 0 is exact (fp32 rounding only)
    assert trainer.model.cfg.d_ff == 64 and trainer.model.cfg.n_layers == 2
    assert not trainer.model.masks()  # ramp finished at step 7, masks folded
    assert trainer.flops_per_token > flops_small
    steps = lines(tmp_path / "train.jsonl")
    assert len(steps) == 10 and all(r["train_loss"] > 0 for r in steps)


def test_resume_in_the_middle_of_a_ramp_equals_uninterrupted(tmp_path: Path) -> None:
    common = ["train.max_steps=10", "run.eval_every=5", "model.dropout=0.1"]
    train(config(tmp_path / "full", [MSG_STAGE], *common))
    part = config(tmp_path / "part", [MSG_STAGE], *common)
    Trainer(part).fit(stop_at_step=5)  # growth at 3, ramp 3 → 7: stopped with c = 0.5
    resumed = Trainer(part, resume=True)
    assert resumed.model.masks() and resumed.model.cfg.d_ff == 64  # the grown model, mid-ramp masks restored
    resumed.fit()
    full = [r["train_loss"] for r in lines(tmp_path / "full" / "train.jsonl")]
    assert [r["train_loss"] for r in lines(tmp_path / "part" / "train.jsonl")] == full
    def no_time(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in records]

    assert no_time(lines(tmp_path / "part" / "events.jsonl")) == no_time(lines(tmp_path / "full" / "events.jsonl"))


def test_input_length_growth_and_zero_growth_with_rewarm(tmp_path: Path) -> None:
    stages = [{"at_step": 2, "seq_len": 32, "grow": {"d_ff": 48}, "method": "zero", "lr": "rewarm",
               "lr_warmup_steps": 2}]
    trainer = Trainer(config(tmp_path, stages, "data.start_seq_len=16", "train.max_steps=5", "run.eval_every=5",
                             "train.decay='constant'"))
    assert trainer.seq_len == 16
    trainer.fit()
    assert trainer.seq_len == 32
    tokens = [r["tokens"] for r in lines(tmp_path / "train.jsonl")]
    assert tokens == [128, 256, 512, 768, 1024]  # 8 sequences of 16, then of 32 tokens
    lrs = [r["lr"] for r in lines(tmp_path / "train.jsonl")]
    assert lrs[2:] == pytest.approx([1.5e-3, 3e-3, 3e-3])  # halfway back up the step after the growth
    (event,) = lines(tmp_path / "events.jsonl")
    assert event["seq_len"] == 32 and abs(event["loss_jump"]) < 1e-5


def test_at_fraction_scales_with_the_budget(tmp_path: Path) -> None:
    stage = {"at_fraction": 0.5, "grow": {"d_ff": 48}, "method": "zero"}
    for steps in (4, 8):
        Trainer(config(tmp_path / str(steps), [stage], f"train.max_steps={steps}", "run.eval_every=100")).fit()
        (event,) = lines(tmp_path / str(steps) / "events.jsonl")
        assert event["step"] == steps // 2


def test_new_entries_get_their_own_lr_warmup_and_resume_exactly(tmp_path: Path) -> None:
    stage = {"at_step": 2, "grow": {"d_ff": 64}, "method": "zero", "new_lr_warmup_steps": 4}
    common = ["train.max_steps=8", "run.eval_every=4", "train.decay='constant'"]
    trainer = Trainer(config(tmp_path / "a", [stage], *common))
    trainer.fit(stop_at_step=3)  # growth at 2; step index 2 done with factor 1/4
    up = trainer.model.blocks[0].mlp.up.weight
    mask = trainer.grower.new_entries["blocks.0.mlp.up.weight"]
    assert mask[40:].all() and not mask[:40].any()
    before = up.detach().clone()
    trainer.train_step()  # factor 2/4 on new rows
    reference = Trainer(config(tmp_path / "b", [stage], *common))
    reference.fit(stop_at_step=3)
    ref_up = reference.model.blocks[0].mlp.up.weight
    ref_before = ref_up.detach().clone()
    reference.grower.new_entries = {}  # the same step without the warmup: full updates
    reference.train_step()
    step, full = (up - before)[40:], (ref_up - ref_before)[40:]
    assert torch.allclose(step, full / 2, rtol=1e-3, atol=1e-8)  # new rows move half as far (fp32 weights)
    assert torch.allclose((up - before)[:40], (ref_up - ref_before)[:40])  # old rows: unchanged LR
    resumed = Trainer(config(tmp_path / "a", [stage], *common), resume=True)  # resumes at step 3
    assert set(resumed.grower.new_entries) == set(trainer.grower.new_entries)
    assert resumed.grower.state.new_warmup_start == 2


def test_lr_scale_sets_the_peak_from_its_stage_on_and_resumes(tmp_path: Path) -> None:
    stages = [{"at_step": 2, "grow": {"d_ff": 48}, "method": "zero", "lr_scale": 0.5},
              {"at_step": 4, "grow": {"d_ff": 64}, "method": "zero"}]  # no lr_scale: the last one holds
    common = ["train.max_steps=6", "run.eval_every=3", "train.decay='constant'"]
    train(config(tmp_path / "full", stages, *common))
    assert [r["lr"] for r in lines(tmp_path / "full" / "train.jsonl")] == pytest.approx(
        [1.5e-3, 3e-3, 1.5e-3, 1.5e-3, 1.5e-3, 1.5e-3])  # warmup 2 steps at 3e-3, then × 0.5
    part = config(tmp_path / "part", stages, *common)
    Trainer(part).fit(stop_at_step=3)
    Trainer(part, resume=True).fit()
    assert lines(tmp_path / "part" / "train.jsonl") == [
        {**r, "time_s": q["time_s"], "tokens_per_s": q["tokens_per_s"]}
        for r, q in zip(lines(tmp_path / "full" / "train.jsonl"), lines(tmp_path / "part" / "train.jsonl"),
                        strict=True)]


def test_lr_policies() -> None:
    cfg = TrainConfig(max_steps=100, lr=1.0, min_lr=0.0, warmup_steps=10)
    assert scheduled_lr(cfg, 50, 0.5) == learning_rate(cfg, 50, 0.5)
    assert scheduled_lr(cfg, 50, 0.5, "rewarm", anchor_step=50, warmup_steps=5) == pytest.approx(
        learning_rate(cfg, 50, 0.5) / 5)
    # rewind: the schedule restarts at the growth (warmup again, then decay over the rest of the budget)
    assert scheduled_lr(cfg, 50, 0.5, "rewind", anchor_step=50, anchor_frac=0.5) == pytest.approx(0.1)
    assert scheduled_lr(cfg, 60, 0.6, "rewind", anchor_step=50, anchor_frac=0.5) == pytest.approx(
        learning_rate(cfg, 10, 0.2))


@pytest.mark.parametrize(("stage", "phrase"), [
    ({"grow": {"d_ff": 64}}, "exactly one of at_step"),
    ({"at_fraction": 1.5, "grow": {"d_ff": 64}}, "at_fraction must be in [0, 1)"),
    ({"at_step": 2, "grow": {"d_ff": 64}, "lr_scale": 0}, "lr_scale must be a number > 0"),
    ({"at_step": 2, "grow": {"d_ff": 64}, "lr_scale": "half"}, "lr_scale must be a finite number"),
    ({"at_step": 2, "grow": {"d_ff": 64}, "bogus": 1}, "unknown key(s) in [[growth]] stage 1: bogus"),
    ({"at_step": 2}, "grows nothing"),
    ({"at_step": 2, "grow": {"d_ff": 64}, "lr": "fast"}, "lr must be one of"),
    ({"at_step": 2, "grow": {"d_ff": 64}, "method": "magic"}, "unknown growth method 'magic'"),
])
def test_stage_errors(tmp_path: Path, stage: dict, phrase: str) -> None:
    with pytest.raises(GrowkitError) as e:
        config(tmp_path, [stage], "train.max_steps=4")
    assert phrase in str(e.value)


def test_training_length_beyond_max_seq_len_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="exceeds the model's max_seq_len 32"):
        Trainer(config(tmp_path, [{"at_step": 2, "seq_len": 64}], "train.max_steps=4"))


def test_embedding_pooling_then_unpooling_resumes_exactly(tmp_path: Path) -> None:
    """CompoundGrow's embedding pooling: data.start_pool = 4, a stage un-pools to 1 together with a zero
    growth; FLOPs per token rise at the un-pooling; a resumed run has the saved factor."""
    stages = [{"at_step": 3, "pool": 1, "grow": {"d_ff": 48}, "method": "zero"}]
    common = ["data.start_pool=4", "train.max_steps=6", "run.eval_every=3", "run.ckpt_every=2"]
    full = Trainer(config(tmp_path / "full", stages, *common))
    assert full.model.seq_pool == 4
    pooled_flops = full.flops_per_token
    full.fit()
    assert full.model.seq_pool == 1 and full.flops_per_token > pooled_flops  # the blocks: 4× the positions
    (event,) = lines(tmp_path / "full" / "events.jsonl")
    assert event["pool"] == 1
    part = config(tmp_path / "part", stages, *common)
    Trainer(part).fit(stop_at_step=2)
    resumed = Trainer(part, resume=True)
    assert resumed.model.seq_pool == 4
    resumed.fit()
    losses = [r["train_loss"] for r in lines(tmp_path / "full" / "train.jsonl")]
    assert [r["train_loss"] for r in lines(tmp_path / "part" / "train.jsonl")] == losses


def test_a_pool_stage_of_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="pool must be a whole number >= 1"):
        config(tmp_path, [{"at_step": 2, "pool": 0}], "train.max_steps=4").stages()
