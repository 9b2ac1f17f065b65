"""The `growkit` console script, run as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXED = ["--config", str(Path(__file__).parents[1] / "configs" / "gpt-tiny.toml")]
TINY = ["--set", "model.n_layers=1", "--set", "model.d_model=32", "--set", "model.n_heads=2",
        "--set", "data.seq_len=32", "--set", "train.batch_size=4", "--set", "run.eval_batches=2",
        "--set", "run.progress=false"]


def growkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("growkit") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "growkit.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, env=os.environ.copy(), timeout=300)


def test_train_with_config_and_overrides_then_plot(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[model]\narch = "gpt2"\nn_layers = 2\nd_model = 64\nn_heads = 2\n'
                      '[train]\nmax_steps = 1000\nbatch_size = 8\n[run]\ndir = "runs/ignored"\neval_every = 5\n')
    run_dir = tmp_path / "run"
    out = growkit("train", "--config", str(config), *TINY, "--set", "train.max_steps=10",
                  "--set", f"run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals] == [0, 5, 10]  # one record per eval, the first before training
    assert json.loads((run_dir / "config.json").read_text())["model"]["n_layers"] == 1
    assert (run_dir / "checkpoints" / "latest.json").exists()
    assert (run_dir / "plots" / "val_loss_vs_flops.png").read_bytes()[:4] == b"\x89PNG"

    other = tmp_path / "other"
    assert growkit("train", *FIXED, *TINY, "--set", "train.max_steps=5", "--set", f"run.dir={other}").returncode == 0
    plots = tmp_path / "plots"
    out = growkit("plot", str(run_dir), str(other), "--out", str(plots))
    assert out.returncode == 0, out.stderr
    for name in ("val_loss_vs_flops.png", "val_loss_vs_time.png"):
        assert (plots / name).stat().st_size > 5000


def test_main_job_without_config_grows_in_three_stages(tmp_path: Path) -> None:
    out = growkit("train", "--set", "train.max_steps=12", "--set", "train.batch_size=2", "--set", "data.seq_len=32",
                  "--set", "run.eval_batches=1", "--set", "run.progress=false", "--set", f"run.dir={tmp_path}",
                  "--set", "run.plots=false")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == [2, 3, 6]  # at_fraction 0.1, 0.25, 0.45 of 12 steps
    # masked growth is exact at c = 0 (fp32); the later stages come before the 30-step ramps end in this short
    # run, so each first completes the running ramp (c jumps to 1) and their jumps are not zero
    assert abs(events[0]["loss_jump"]) < 1e-4
    assert json.loads((tmp_path / "config.json").read_text())["growth"][2]["grow"]["d_model"] == 128


def test_resume_continues_a_run(tmp_path: Path) -> None:
    run = ["train", *FIXED, *TINY, "--set", f"run.dir={tmp_path}", "--set", "run.eval_every=3",
           "--set", "run.plots=false"]
    assert growkit(*run, "--set", "train.max_steps=3").returncode == 0
    out = growkit(*run, "--set", "train.max_steps=6", "--resume")
    assert out.returncode == 0, out.stderr
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 3, 6]


def test_grow_a_checkpoint_and_print_the_matrix(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert growkit("train", *FIXED, *TINY, "--set", "train.max_steps=2", "--set", f"run.dir={run}").returncode == 0
    out = growkit("grow", "--from", str(run), "--to", "d_ff=600", "--to", "n_layers=2", "--method", "zero",
                  "--out", str(tmp_path / "grown"))
    assert out.returncode == 0, out.stderr
    assert "d_ff: 512 → 600" in out.stdout and "n_layers: 1 → 2" in out.stdout
    err = float(out.stdout.split("max |Δlogits| (float64): ")[1].split()[0])
    assert err < 1e-9
    matrix = growkit("grow", "--matrix")
    assert matrix.returncode == 0 and "| d_ff | split | preserved | preserved | preserved |" in matrix.stdout


@pytest.mark.parametrize(("args", "phrase"), [
    (["train", "--set", "train.bogus=1"], "unknown key(s) in [train]: bogus"),
    (["train", "--set", "model.n_heads=3", "--set", "model.n_kv_heads=2", "--set", "model.arch='llama'"],
     "must be a multiple of n_kv_heads"),
    (["train", "--config", "missing.toml"], "does not exist"),
    (["train", "--set", "data.path='/no/such/corpus'"], "does not exist"),
    (["train", "--resume", "--set", "run.dir=empty"], "nothing to resume"),
    (["plot", "not-a-run"], "has no metrics.jsonl"),
    (["grow", "--from", "nowhere", "--to", "d_ff=10", "--out", "x"], "no checkpoint in nowhere"),
    (["grow", "--to", "d_ff"], "needs --from CKPT"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], phrase: str) -> None:
    out = growkit(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("growkit: error:") and phrase in lines[0], out.stderr
