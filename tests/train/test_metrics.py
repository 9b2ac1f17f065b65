"""Run logs against a kill mid-line: a torn last JSONL line is skipped with a warning by the readers
(`growkit plot`, the benchmarks), dropped by a resume, and every complete record is kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from growkit import GrowkitWarning, RunConfig
from growkit.cli import main
from growkit.train.loop import Trainer
from growkit.train.metrics import read_jsonl

TINY = ["model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ff=24", "data.tokenizer='byte'",
        "data.seq_len=16", "train.batch_size=2", "run.eval_batches=1", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", "run.log_every=1", "train.max_steps=6", "run.eval_every=2"]


def tear(path: Path, record: dict) -> None:
    """Append the first half of a record with no newline, as a process SIGKILLed inside write() leaves it."""
    text = json.dumps(record)
    with open(path, "a") as f:
        f.write(text[: len(text) // 2])


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "val_loss": 5.0}\n{"step": 2, "val_loss": 4.0}\n')
    assert [r["step"] for r in read_jsonl(path)] == [0, 2]
    tear(path, {"step": 4, "val_loss": 3.0})
    with pytest.warns(GrowkitWarning, match="metrics.jsonl: its last line is torn .*; skipped it"):
        assert [r["step"] for r in read_jsonl(path)] == [0, 2]
    path.write_text('{"step": 0}\n[1, 2]\n{"step": 2}\n')  # not a record, in the middle: named by line
    with pytest.warns(GrowkitWarning, match="line 2 is not a JSON record"):
        assert [r["step"] for r in read_jsonl(path)] == [0, 2]


def test_growkit_plot_skips_a_torn_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": s, "flops": 1e6 * (s + 1), "time_s": 0.1 * s, "val_loss": 5.0 - 0.1 * s} for s in range(4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tear(run / "metrics.jsonl", {**records[-1], "step": 4})
    assert main(["plot", str(run)]) == 0
    err = capsys.readouterr().err
    assert "growkit: warning: " in err and "its last line is torn" in err
    assert (run / "plots" / "val_loss_vs_flops.png").read_bytes()[:4] == b"\x89PNG"


def test_a_torn_line_is_dropped_on_resume(tmp_path: Path) -> None:
    cfg = RunConfig.default([*TINY, f"run.dir='{tmp_path}'"])
    Trainer(cfg).fit(stop_at_step=4)
    full = tmp_path.parent / f"{tmp_path.name}-full"
    Trainer(RunConfig.default([*TINY, f"run.dir='{full}'"])).fit()
    for name in ("metrics.jsonl", "train.jsonl", "events.jsonl"):  # killed mid-line after the checkpoint
        tear(tmp_path / name, {"step": 5, "event": "growth", "train_loss": 1.0, "val_loss": 1.0})
    Trainer(cfg, resume=True).fit()
    for name in ("metrics.jsonl", "train.jsonl"):
        lines = (tmp_path / name).read_text().splitlines()
        records = [json.loads(line) for line in lines]  # every line is a whole record again
        assert records[-1]["step"] == 6
        assert [r["step"] for r in records] == [r["step"] for r in read_jsonl(full / name)]
        assert [r.get("train_loss") for r in records] == [r.get("train_loss") for r in read_jsonl(full / name)]
    assert (tmp_path / "events.jsonl").read_text() == ""
