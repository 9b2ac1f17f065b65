"""GROWKIT_FAULT: parsing, and a kill point that really kills (in a child process); a disk that fills up
during a real run."""

from __future__ import annotations

import errno
import json
import multiprocessing
import signal
from pathlib import Path

import pytest

from growkit import GrowkitError, RunConfig, train
from growkit.train import faults
from growkit.train.loop import Trainer

TINY = ["model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ff=24", "data.tokenizer='byte'",
        "data.seq_len=16", "train.batch_size=2", "train.warmup_steps=2", "run.eval_batches=1", "run.progress=false",
        "run.tensorboard=false", "run.plots=false", "run.log_every=1"]


def test_parse_one_and_several() -> None:
    assert faults.parse_faults("12:mid_growth") == {(12, "mid_growth")}
    assert faults.parse_faults(" 3:before_step , 40:mid_checkpoint") == {(3, "before_step"), (40, "mid_checkpoint")}


@pytest.mark.parametrize("raw", ["12", "x:mid_growth", "12:mid-growth", "-1:before_step", "12:", ":mid_ramp",
                                 "12:mid_ramp,"])
def test_malformed_is_a_clear_error(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, raw)
    with pytest.raises(GrowkitError, match=r"GROWKIT_FAULT.*STEP:PHASE"):
        faults.fault_point("before_step", 0)


def test_unset_or_other_points_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.fault_point("mid_growth", 12)
    monkeypatch.setenv(faults.ENV, "12:mid_growth")
    faults.fault_point("mid_growth", 11)
    faults.fault_point("mid_ramp", 12)


def _reach(phase: str, step: int) -> None:
    faults.fault_point(phase, step)


def test_the_named_point_sends_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, "7:mid_ramp")
    ctx = multiprocessing.get_context("fork")
    for step, expected in ((7, -signal.SIGKILL), (6, 0)):
        p = ctx.Process(target=_reach, args=("mid_ramp", step))
        p.start()
        p.join(30)
        assert p.exitcode == expected


def test_disk_full_mid_run_keeps_the_run_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC at the second checkpoint of a real run: a clear error, the first checkpoint and the logs
    intact; once there is space again, --resume finishes the run as if nothing had happened."""
    from growkit.train import checkpoint

    common = ["train.max_steps=6", "run.eval_every=2", "run.ckpt_every=2"]
    train(RunConfig.default([*TINY, f"run.dir={tmp_path / 'full'}", *common]))
    cfg = RunConfig.default([*TINY, f"run.dir={tmp_path / 'run'}", *common])
    real, calls = checkpoint.save_file, []

    def fills_up(*args: object, **kw: object) -> None:
        calls.append(1)
        if len(calls) > 3:  # the first checkpoint's three save_file calls succeed
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kw)

    monkeypatch.setattr(checkpoint, "save_file", fills_up)
    with pytest.raises(GrowkitError, match=r"could not write checkpoint .*step_00000004 .*No space left on device.*"
                                           r"free some disk space.*--resume"):
        Trainer(cfg).fit()
    monkeypatch.setattr(checkpoint, "save_file", real)
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_00000002"]
    assert checkpoint.read_checkpoint(tmp_path / "run").step == 2
    train(cfg, resume=True)
    for name in ("train.jsonl", "metrics.jsonl"):
        def losses(d: Path, name: str = name) -> list:
            return [(r["step"], r.get("train_loss"), r.get("val_loss")) for r in map(json.loads, (d / name).open())]
        assert losses(tmp_path / "run") == losses(tmp_path / "full")


def test_cli_resume_falls_back_with_a_one_line_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from growkit.cli import main

    args = ["train", *(a for s in [*TINY, f"run.dir={tmp_path}", "train.max_steps=4", "run.eval_every=2"]
                       for a in ("--set", s))]
    assert main(args) == 0
    newest = tmp_path / "checkpoints" / "step_00000004" / "model.safetensors"
    data = newest.read_bytes()
    newest.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0  # step 2 → 4 again
    err = capsys.readouterr().err
    assert ("growkit: warning: checkpoint " in err and "model.safetensors does not match its checksum" in err
            and "kept for inspection as corrupt-step_00000004: falling back to" in err), err
    assert (tmp_path / "checkpoints" / "corrupt-step_00000004").is_dir()
    assert (tmp_path / "checkpoints" / "step_00000004").is_dir()
