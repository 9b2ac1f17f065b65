"""``growkit export``: any run's latest checkpoint as a save_pretrained folder (no base, the shipped BPE), and
the refusal of a checkpoint saved mid-ramp of a masked growth."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.adapters.conftest import transformers
from tests.train.test_hf_start import checkpoint_model

from growkit import GrowkitError, RunConfig, train
from growkit.data import load_tokenizer
from growkit.train.export import export_run
from growkit.train.loop import Trainer

TINY = ["model.arch='llama'", "model.n_layers=2", "model.d_model=32", "model.n_heads=4", "model.n_kv_heads=2",
        "model.d_ff=37", "data.seq_len=32", "train.batch_size=4", "train.warmup_steps=1", "run.eval_batches=1",
        "run.progress=false", "run.tensorboard=false", "run.plots=false"]


def test_export_a_plain_run_with_the_shipped_bpe(tmp_path: Path) -> None:
    train(RunConfig.default([*TINY, "train.max_steps=2", "run.eval_every=2", f"run.dir={tmp_path / 'run'}"]))
    r = export_run(tmp_path / "run", tmp_path / "out")
    assert r["hf_class"] == "LlamaForCausalLM" and r["tokenizer"] == "bpe" and r["max_abs_dlogits"] < 1e-5
    loaded, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids = torch.randint(0, 8192, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (loaded.eval()(ids).logits - checkpoint_model(tmp_path / "run")(ids)[0]).abs().max() < 1e-5
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    text = "Now is the winter of our discontent"
    assert tok(text)["input_ids"] == load_tokenizer("bpe").encode(text) and tok.eos_token == "<|endoftext|>"


def test_export_mid_ramp_refused(tmp_path: Path) -> None:
    cfg = RunConfig.default([*TINY, "train.max_steps=12", "run.eval_every=12", f"run.dir={tmp_path / 'run'}"])
    cfg.growth = [{"at_step": 1, "grow": {"d_ff": 64}, "method": "masked", "ramp_steps": 10}]
    Trainer(cfg).fit(stop_at_step=2)
    with pytest.raises(GrowkitError, match=r"during the mask ramp .* after the ramp ends \(step 11\)"):
        export_run(tmp_path / "run", tmp_path / "out")
    assert not (tmp_path / "out").exists()
