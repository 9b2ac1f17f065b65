"""Every ready-made progressive config in ``configs/`` runs end to end, shrunk to a few steps: its growth
stages fire in order (``at_fraction`` scales with the budget), the model ends at the target shape, the
loss falls, and strict stages are exact at the moment of growth. The copy-and-pad schedule restarts
below a fresh target model's loss (the Zhang 2021 transfer workflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from growkit import RunConfig
from growkit.bench.schedules import CONFIG_SCHEDULES
from growkit.data import load_tokenizer, prepare_data
from growkit.model import Transformer
from growkit.train.loop import Trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STEPS = 12
SHRINK = ["train.batch_size=2", f"train.max_tokens={2 * 128 * STEPS}", "train.warmup_steps=2", "run.eval_batches=2",
          "run.progress=false", "run.plots=false", "run.tensorboard=false", "train.dtype='float32'"]
STRICT = ("masked", "zero", "split")


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _methods(stage: dict) -> set[str]:
    method = stage.get("method", "masked")
    return set(method.values()) if isinstance(method, dict) else {method}


@pytest.fixture(scope="module")
def target_loss() -> float:
    """A fresh target model's loss on the probe batch (the first validation batch)."""
    cfg = RunConfig.from_toml(CONFIGS / "gpt-scratch.toml", SHRINK)
    tok = load_tokenizer(cfg.data.tokenizer)
    data = prepare_data(tok, cfg.data.path, cfg.data.cache_dir, cfg.data.val_fraction)
    x, y = data.causal_batches("val", 2, cfg.data.seq_len, cfg.train.seed + 1).eval_batches(1)[0]
    model = Transformer(cfg.model_config(tok.vocab_size), seed=cfg.train.seed).eval()
    with torch.no_grad():
        return float(model(x, y)[1])


@pytest.mark.parametrize("name", CONFIG_SCHEDULES)
def test_config_runs_to_the_target(name: str, tmp_path: Path, target_loss: float) -> None:
    path = CONFIGS / f"gpt-{name}.toml"
    d = RunConfig.from_toml(path, [*SHRINK, f"run.dir={tmp_path}", "run.eval_every=6"]).to_dict()
    for stage in d["growth"]:  # ramps short enough to fold within the shrunk run
        stage["ramp_steps"] = min(stage.get("ramp_steps", 0), 1)
    trainer = Trainer(RunConfig.from_dict(d))
    result = trainer.fit()
    target = RunConfig.from_toml(CONFIGS / "gpt-scratch.toml").model
    assert {k: getattr(trainer.model.cfg, k) for k in target if k != "arch"} == \
        {k: v for k, v in target.items() if k != "arch"}, f"{name} does not end at the target shape"
    assert not trainer.model.masks()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["tokens"] >= d["train"]["max_tokens"] and result["val_loss"] < metrics[0]["val_loss"] - 0.3
    stages = json.loads((tmp_path / "config.json").read_text())["growth"]
    events = _events(tmp_path)
    assert [e["stage"] for e in events] == list(range(1, len(stages) + 1))
    assert [e["step"] for e in events] == sorted(e["step"] for e in events)
    for stage, event in zip(stages, events, strict=True):
        if stage["grow"] and _methods(stage) <= set(STRICT):
            assert abs(event["loss_jump"]) < 1e-4, (name, event)
    if name == "copy":
        (event,) = events
        assert event["probe_loss_after"] < target_loss - 0.3, (event, target_loss)
