"""Non-finite steps: skipped with a warning and an event, weights untouched; K in a row stop the run
cleanly with its last checkpoint good; all processes of a distributed run agree on the skip."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import torch

from growkit import GrowkitError, GrowkitWarning, RunConfig
from growkit.train.checkpoint import read_checkpoint
from growkit.train.loop import Trainer
from growkit.train.numerics import nonfinite_step

TINY = ["model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ff=24", "data.tokenizer='byte'",
        "data.seq_len=16", "train.batch_size=2", "train.warmup_steps=2", "run.eval_batches=1", "run.progress=false",
        "run.tensorboard=false", "run.plots=false", "run.log_every=1"]


def trainer(run_dir: Path, *more: str) -> Trainer:
    return Trainer(RunConfig.default([*TINY, f"run.dir={run_dir}", *more]))


def poison(t: Trainer, steps: set[int]) -> None:
    """Make the loss NaN (and so every gradient) while the trainer runs the given (1-based) steps."""
    def hook(module: torch.nn.Module, args: Any, out: tuple) -> tuple:
        if module.training and t.state.step + 1 in steps:
            return out[0], out[1] * float("nan")
        return out
    t.model.register_forward_hook(hook)


def weights(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.model.state_dict().items()}


def test_a_nonfinite_step_is_skipped_and_logged(tmp_path: Path) -> None:
    t = trainer(tmp_path, "train.max_steps=6", "run.eval_every=6")
    poison(t, {3, 4})
    t.train_step()
    t.train_step()
    before, moments = weights(t), {k: v["exp_avg"].clone() for k, v in t.optimizer.state.items()}
    with pytest.warns(GrowkitWarning, match="step 3: non-finite loss nan .*skipped \\(1 in a row, at most 5\\)"):
        assert math.isnan(t.train_step())
    with pytest.warns(GrowkitWarning, match="step 4: .*2 in a row"):
        t.train_step()
    after = weights(t)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the weights did not move
    assert all(torch.equal(moments[p], s["exp_avg"]) for p, s in t.optimizer.state.items())  # nor the moments
    assert t.state.step == 4 and t.state.skipped_steps == 2 and t.state.nonfinite_in_a_row == 2
    assert math.isfinite(t.train_step()) and t.state.nonfinite_in_a_row == 0  # a good step resets the count
    assert not all(torch.equal(after[k], v) for k, v in weights(t).items())
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(e["event"], e["skipped_step"], e["in_a_row"]) for e in events] == [
        ("nonfinite_step", 3, 1), ("nonfinite_step", 4, 2)]


def test_k_in_a_row_stop_the_run_with_its_checkpoint_intact(tmp_path: Path) -> None:
    t = trainer(tmp_path, "train.max_steps=20", "run.eval_every=100", "run.ckpt_every=2",
                "train.max_nonfinite_steps=3")
    poison(t, set(range(5, 100)))
    with pytest.warns(GrowkitWarning), pytest.raises(GrowkitError, match=r"training diverged: 3 steps in a row up to "
                                                                         r"step 7 .*train.max_nonfinite_steps"):
        t.fit()
    ckpt = read_checkpoint(tmp_path)  # the newest checkpoint verifies and holds finite weights
    assert ckpt.step == 6 and ckpt.state["skipped_steps"] == 2
    fresh = trainer(tmp_path / "other", "train.max_steps=20")
    ckpt.load_model(fresh.model)
    assert all(torch.isfinite(v).all() for v in fresh.model.state_dict().values())
    # the skipped steps 5 and 6 did not change what step 4 had written
    good = trainer(tmp_path / "good", "train.max_steps=20", "run.eval_every=100", "run.ckpt_every=2")
    good.fit(stop_at_step=4)
    assert all(torch.equal(v, fresh.model.state_dict()[k]) for k, v in good.model.state_dict().items())


def _agree(rank: int, init: str, out: Any) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        local = [(1.0, torch.tensor(2.0)), (float("nan"), torch.tensor(2.0))]  # only rank 1 sees a NaN loss
        loss, norm = local[rank]
        out.put((rank, nonfinite_step(loss, norm), nonfinite_step(1.0, torch.tensor(1.0 + rank))))
    finally:
        dist.destroy_process_group()


def test_all_processes_agree_on_a_skip(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_agree, args=(r, f"file://{tmp_path / 'store'}", out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=5) for _ in procs) == [(0, True, False), (1, True, False)]


def test_local_decision() -> None:
    assert not nonfinite_step(1.0, torch.tensor(3.0))
    assert nonfinite_step(float("inf"), 3.0) and nonfinite_step(1.0, torch.tensor(float("nan")))
