"""Real (small) runs on the bundled corpus: loss falls, resume is exact, run dirs are protected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from growkit import GrowkitError, RunConfig, train
from growkit.train.loop import Trainer

TINY = ["model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_ff=48", "data.seq_len=32",
        "train.batch_size=8", "train.warmup_steps=5", "train.lr=3e-3", "run.eval_batches=4",
        "run.progress=false", "run.tensorboard=false", "run.plots=false"]


def tiny(run_dir: Path, *more: str) -> RunConfig:
    return RunConfig.default([*TINY, f"run.dir={run_dir}", *more])


def records(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def test_loss_falls_on_shakespeare(tmp_path: Path) -> None:
    result = train(tiny(tmp_path, "train.max_steps=60", "run.eval_every=20"))
    evals = records(tmp_path)
    assert [r["step"] for r in evals] == [0, 20, 40, 60]
    assert evals[0]["val_loss"] == pytest.approx(9.01, abs=0.1)  # ln(8192): a uniform guess over the BPE vocab
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.5, evals
    assert result["val_loss"] == evals[-1]["val_loss"]
    # counters: tokens, FLOPs and wall-clock grow with every record
    assert [r["tokens"] for r in evals] == [0, 20 * 8 * 32, 40 * 8 * 32, 60 * 8 * 32]
    assert evals[2]["flops"] == pytest.approx(2 * evals[1]["flops"])
    assert 0 < evals[1]["time_s"] < evals[2]["time_s"] < evals[3]["time_s"]
    assert all(r["val_bpb"] > 0 for r in evals)


@pytest.mark.parametrize("arch_overrides", [
    ["model.arch='gpt2'", "model.dropout=0.1"],  # dropout draws from the RNG that the checkpoint restores
    ["model.arch='bert'", "train.micro_batch_size=4"],  # MLM masking + gradient accumulation
])
def test_resume_equals_uninterrupted(tmp_path: Path, arch_overrides: list[str]) -> None:
    common = ["train.max_steps=12", "run.eval_every=3", "run.log_every=1", *arch_overrides]
    full = tmp_path / "full"
    train(tiny(full, *common))
    part = tmp_path / "part"
    Trainer(tiny(part, *common)).fit(stop_at_step=5)  # preempted at step 5: checkpoint, then gone
    train(tiny(part, *common), resume=True)
    losses_full = [r["train_loss"] for r in records(full, "train.jsonl")]
    losses_part = [r["train_loss"] for r in records(part, "train.jsonl")]
    assert len(losses_full) == 12 and losses_part == losses_full
    assert [r["val_loss"] for r in records(part)] == [r["val_loss"] for r in records(full)]


def test_resume_drops_records_written_after_the_checkpoint(tmp_path: Path) -> None:
    common = ["train.max_steps=6", "run.eval_every=2", "run.log_every=1"]
    Trainer(tiny(tmp_path, *common)).fit(stop_at_step=4)
    with open(tmp_path / "train.jsonl", "a") as f:  # as if the process died after logging step 5
        f.write(json.dumps({"step": 5, "train_loss": 0.0}) + "\n")
    train(tiny(tmp_path, *common), resume=True)
    steps = [r["step"] for r in records(tmp_path, "train.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    train(tiny(tmp_path, "train.max_steps=2", "run.eval_every=2"))
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(GrowkitError, match="already holds a run: pass --resume"):
        train(tiny(tmp_path, "train.max_steps=2", "run.eval_every=2"))
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_resume_without_checkpoint_and_with_other_model(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="nothing to resume"):
        Trainer(tiny(tmp_path / "empty", "train.max_steps=2"), resume=True)
    train(tiny(tmp_path / "r", "train.max_steps=2", "run.eval_every=2"))
    with pytest.raises(GrowkitError, match="different model"):
        Trainer(tiny(tmp_path / "r", "train.max_steps=4", "model.d_ff=64"), resume=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_run_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(GrowkitError, match="not writable"):
        Trainer(tiny(locked / "run", "train.max_steps=2"))


def test_run_dir_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(GrowkitError, match="not writable"):
        Trainer(tiny(tmp_path / "file" / "run", "train.max_steps=2"))


def test_missing_data_path(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="does not exist"):
        Trainer(tiny(tmp_path / "r", "train.max_steps=2", f"data.path='{tmp_path / 'nope.txt'}'"))


def test_user_text_and_byte_tokenizer_llama(tmp_path: Path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    cfg = tiny(tmp_path / "r", "train.max_steps=60", "run.eval_every=60", "train.lr=1e-2", f"data.path='{text}'",
               "data.tokenizer='byte'", "model.arch='llama'", "model.n_heads=4", "model.n_kv_heads=2")
    result = train(cfg)
    assert result["val_loss"] < 3.0  # far below ln(259) = 5.56 on this repetitive text


def test_bf16_autocast_trains(tmp_path: Path) -> None:
    trainer = Trainer(tiny(tmp_path, "train.max_steps=8", "run.eval_every=8", "train.dtype='bfloat16'"))
    first = trainer.train_step()
    trainer.fit()
    assert trainer.model.tok_emb.weight.dtype == torch.float32  # weights and moments stay fp32
    assert trainer.evaluate()["val_loss"] < first


def test_budget_in_tokens_and_flops(tmp_path: Path) -> None:
    trainer = Trainer(tiny(tmp_path / "t", "train.max_tokens=2560", "run.eval_every=5"))  # 10 steps of 256
    assert trainer.estimated_total_steps() == 10
    trainer.fit()
    assert trainer.state.step == 10
    fpt = trainer.flops_per_token * 256
    trainer = Trainer(tiny(tmp_path / "f", f"train.max_flops={fpt * 3.5}", "run.eval_every=5"))
    trainer.fit()
    assert trainer.state.step == 4


def test_tokens_per_step_and_weight_decay_groups(tmp_path: Path) -> None:
    trainer = Trainer(tiny(tmp_path, "train.max_steps=1"))
    decayed = {id(p) for p in trainer.optimizer.param_groups[0]["params"]}
    for name, p in trainer.model.named_parameters():
        should_decay = p.ndim == 2 and not name.endswith("_emb.weight")
        assert (id(p) in decayed) == should_decay, name
    assert trainer.tokens_per_step == 8 * 32
    assert torch.is_grad_enabled()
