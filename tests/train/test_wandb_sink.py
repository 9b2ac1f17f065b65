"""``run.wandb``: a real offline Weights & Biases run mirrors the JSONL logs (the ``wandb`` extra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from growkit import GrowkitError, RunConfig
from growkit.train.loop import Trainer

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=40", "data.seq_len=32",
        "data.tokenizer=byte", "train.batch_size=4", "train.warmup_steps=2", "train.max_steps=8",
        "run.eval_every=4", "run.eval_batches=1", "run.log_every=2", "run.progress=false",
        "run.tensorboard=false", "run.plots=false"]


def test_offline_run_logs_evals_train_steps_and_growth(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    # a real `growkit train` process: W&B's service is per process, so nothing another test did to it counts
    config = tmp_path / "run.toml"
    config.write_text('[model]\narch = "gpt2"\nn_layers = 1\nd_model = 32\nn_heads = 2\nd_ff = 40\n'
                      '[[growth]]\nat_step = 4\ngrow = { d_ff = 64 }\nmethod = "masked"\nramp_steps = 2\n')
    run_dir = tmp_path / "run"
    sets = [x for kv in [*TINY, f"run.dir={run_dir}", "run.wandb=growkit-test"] for x in ("--set", kv)]
    env = {**os.environ, "WANDB_SILENT": "true"}
    env.pop("WANDB_DISABLED", None)
    proc = subprocess.run([sys.executable, "-m", "growkit", "train", "--config", str(config), *sets],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ident = json.loads((run_dir / "wandb_run.json").read_text())
    assert ident["project"] == "growkit-test"
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{ident['id']}"))
    assert len(offline) == 1
    keys = (b"eval/val_loss", b"train/train_loss", b"growth/params_after")
    records = offline[0] / f"run-{ident['id']}.wandb"  # the run's records, as W&B stores them
    deadline = time.monotonic() + 60  # W&B's service process may still be flushing after finish() on busy cores
    while not all(k in records.read_bytes() for k in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    data = records.read_bytes()
    for key in keys:
        assert key in data


def test_wandb_without_the_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb → ImportError
    cfg = RunConfig.default([*TINY, f"run.dir={tmp_path / 'run'}", "run.wandb=p"])
    with pytest.raises(GrowkitError, match=r"pip install 'growkit\[wandb\]'"):
        Trainer(cfg).fit()


def test_unknown_wandb_mode_is_refused() -> None:
    with pytest.raises(GrowkitError, match=r"run\.wandb_mode"):
        RunConfig.default([*TINY, "run.wandb=p", "run.wandb_mode=cloud"])
