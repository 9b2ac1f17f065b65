"""Real 2-process runs (torchrun, gloo, CPU) with a growth event in the middle, against one process.

One torchrun launch (`dist_worker.py`) runs every 2-process scenario; the tests below read what it
left and compare with single-process runs made here: DDP equals one process, FSDP2 matches DDP, a
preempted 2-process run resumes on 2 and on 1 process with the same losses, and sparsity masks (RigL
prune-and-regrow, a growth in between) are identical on both ranks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.train.dist_worker import SCENARIOS, TINY, run_config

import growkit
from growkit import GrowkitError, RunConfig, train
from growkit.train.checkpoint import read_checkpoint
from growkit.train.distributed import Parallel, check_divides, setup

WORKER = Path(__file__).with_name("dist_worker.py")
TOL = 1e-5
TINY_TOML_OVERRIDES = [o for o in TINY if not o.startswith("train.max_steps")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env() -> dict[str, str]:
    """The environment, with this checkout's growkit (and tests/) importable."""
    src = str(Path(growkit.__file__).resolve().parents[1])
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, root, os.environ.get("PYTHONPATH", "")])}


def torchrun_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", *args]


def torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node=2 ARGS``; fails the test if a process fails."""
    proc = subprocess.run(torchrun_command(*args), env=torchrun_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def max_gap(a: list[float], b: list[float], what: str) -> float:
    """Largest |a_i − b_i|, printed (``pytest -s`` shows the figures the README quotes)."""
    assert len(a) == len(b), what
    gap = max(abs(x - y) for x, y in zip(a, b, strict=True))
    print(f"\nmax |Δ train loss| {what}: {gap:.1e} over {len(a)} steps")
    return gap


def losses(run_dir: Path, key: str = "train_loss", name: str = "train.jsonl") -> list[float]:
    return [json.loads(line)[key] for line in (run_dir / name).read_text().splitlines()]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """Single-process references on one thread, like each torchrun worker (OMP_NUM_THREADS=1): on shared
    cores a multi-threaded run here costs several times more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    torchrun(str(WORKER), str(out))
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DDP scenario's run on one process."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    train(run_config(run_dir, *SCENARIOS["ddp"]))
    return run_dir


def test_ddp_equals_one_process(runs: Path, single: Path) -> None:
    ddp, one = losses(runs / "ddp"), losses(single)
    assert len(ddp) == len(one) == 8
    assert max_gap(ddp, one, "2-process DDP vs 1 process") <= TOL
    assert losses(runs / "ddp", "val_loss", "metrics.jsonl") == pytest.approx(
        losses(single, "val_loss", "metrics.jsonl"), abs=TOL, rel=0)
    events = losses(runs / "ddp", "params_after", "events.jsonl")
    assert events == losses(single, "params_after", "events.jsonl") and len(events) == 1  # the growth happened
    assert losses(runs / "ddp", "tokens") == losses(single, "tokens")  # global batch: same tokens per step


def test_fsdp2_matches_ddp_and_writes_the_same_checkpoint_format(runs: Path) -> None:
    assert max_gap(losses(runs / "fsdp"), losses(runs / "ddp"), "2-process FSDP2 vs 2-process DDP") <= TOL
    fsdp, ddp = read_checkpoint(runs / "fsdp"), read_checkpoint(runs / "ddp")
    assert fsdp.step == ddp.step == 8 and fsdp.state["model_config"] == ddp.state["model_config"]
    for file in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(str(fsdp.path / file)), load_file(str(ddp.path / file))
        assert a.keys() == b.keys(), file
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3), (file, k)


def test_preempted_run_resumes_on_two_processes_with_the_same_losses(runs: Path) -> None:
    assert losses(runs / "part") == losses(runs / "ddp")  # stopped at step 5 (mid-ramp), resumed: exact
    assert read_checkpoint(runs / "part-for-1proc").step == 5


def test_two_process_checkpoint_resumes_on_one_process(runs: Path, single: Path) -> None:
    run_dir = runs / "part-for-1proc"
    train(run_config(run_dir, *SCENARIOS["ddp"]), resume=True)
    assert max_gap(losses(run_dir), losses(single), "2 processes to step 5, then 1, vs 1 process") <= TOL
    assert losses(run_dir)[:5] == losses(runs / "ddp")[:5]  # the 2-process part, kept


def test_sparse_masks_identical_on_both_ranks_and_losses_equal_one_process(runs: Path, tmp_path: Path) -> None:
    r0, r1 = (load_file(str(runs / f"sparse-rank{r}.safetensors")) for r in (0, 1))
    assert r0.keys() == r1.keys() and any(k.startswith("mask.blocks.1.") for k in r0)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # masks and weights: bitwise the same on both ranks
    state = read_checkpoint(runs / "sparse").extra()
    born = {int(b) for k, v in state.items() if k.startswith("sparsity.born.") for b in v.unique()}
    assert {2, 4, 6} <= born, born  # blocks regrown at steps 2 and 6, blocks added by the growth at step 4
    train(run_config(tmp_path / "one", *SCENARIOS["sparse"]))  # BERT: ranks hold unequal numbers of targets
    assert max_gap(losses(runs / "sparse"), losses(tmp_path / "one"), "sparse BERT, 2-process DDP vs 1 process") <= TOL


@pytest.mark.slow
def test_torchrun_module_entry_point(tmp_path: Path) -> None:
    """``torchrun -m growkit train --config F`` (what the README shows), FSDP2, growth, one report."""
    config = tmp_path / "run.toml"
    config.write_text('[model]\narch = "llama"\nn_layers = 2\nd_model = 32\nn_heads = 4\nn_kv_heads = 2\n'
                      'd_ff = 64\n[train]\nmax_steps = 6\nbatch_size = 4\nwarmup_steps = 1\n'
                      f'[run]\ndir = "{tmp_path / "run"}"\neval_every = 3\neval_batches = 2\nprogress = false\n'
                      'tensorboard = false\nplots = false\n[parallel]\nfsdp = true\n'
                      '[[growth]]\nat_step = 3\ngrow = { n_layers = 3 }\nmethod = "zero"\n')
    proc = torchrun("-m", "growkit", "train", "--config", str(config), "--set", "data.seq_len=32")
    assert proc.stdout.count("final val_loss") == 1, proc.stdout
    assert read_checkpoint(tmp_path / "run").state["model_config"]["n_layers"] == 3


@pytest.mark.slow
def test_sigkilled_run_resumes_with_the_same_losses(tmp_path: Path) -> None:
    """SIGKILL a 2-process run (torchrun and both workers) after its step-4 checkpoint, resume it with
    torchrun --resume: the losses equal a 1-process run of the same config."""
    steps = 40
    overrides = [*TINY_TOML_OVERRIDES, f"train.max_steps={steps}", "run.ckpt_every=2"]
    config = tmp_path / "run.toml"
    config.write_text('[[growth]]\nat_step = 4\ngrow = { d_model = 48, n_heads = 3, d_ff = 64 }\n'
                      'method = "masked"\nramp_steps = 2\n')
    run_dir = tmp_path / "run"
    args = ["-m", "growkit", "train", "--config", str(config), "--set", f"run.dir={run_dir}",
            *(a for o in overrides for a in ("--set", o))]
    proc = subprocess.Popen(torchrun_command(*args), env=torchrun_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run_dir / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 240
    while not (latest.exists() and json.loads(latest.read_text())["step"] >= 4):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(losses(run_dir)) < steps  # killed mid-run
    torchrun(*args, "--resume")
    one = tmp_path / "one"
    train(RunConfig.from_toml(config, [f"run.dir={one}", *overrides]))
    assert max_gap(losses(run_dir), losses(one), "SIGKILLed 2-process run resumed on 2, vs 1 process") <= TOL


# -- without processes -------------------------------------------------------------------------------
def test_one_process_is_the_plain_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    par = setup("cpu", fsdp=True)
    assert (par.world_size, par.rank, par.is_main, par.enabled) == (1, 0, True, False)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert par.wrap(model, opt, lambda m: opt) == (model, opt, model)  # type: ignore[arg-type]
    assert par.mean(3.5) == 3.5 and par.loss_weight(torch.tensor([1, -100]), -100) == 1.0


def test_bad_settings_are_clear_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="does not divide among 3 processes"):
        check_divides(3, 8)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(GrowkitError, match="MASTER_PORT is not set: start several processes with torchrun"):
        setup("cpu")
    with pytest.raises(GrowkitError, match="'nccl' needs CUDA"):
        setup("cpu", backend="nccl")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(GrowkitError, match="WORLD_SIZE='two' is not an integer"):
        setup("cpu")
    base = [f"run.dir={tmp_path}", "train.max_steps=2"]
    with pytest.raises(GrowkitError, match=r"parallel\.backend must be one of auto, gloo, nccl"):
        RunConfig.default([*base, "parallel.backend='mpi'"])
    with pytest.raises(GrowkitError, match=r"parallel\.fsdp must be bool"):
        RunConfig.default([*base, "parallel.fsdp=1"])
    with pytest.raises(GrowkitError, match=r"\[parallel\].*shards"):
        RunConfig.default([*base, "parallel.shards=2"])
    with pytest.raises(GrowkitError, match="does not combine with \\[sparsity\\]"):
        RunConfig.default([*base, "parallel.fsdp=true", "sparsity.density=0.5"])
    assert Parallel().is_main
