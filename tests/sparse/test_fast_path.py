"""`sparsity.kernel`: the condensed matmuls in a training run take the same steps as masked dense training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from growkit import GrowkitError, RunConfig, SparsityConfig
from growkit.sparse.fast_path import MaskedCondensedFn
from growkit.sparse.layout import fan_in, indices_to_mask, random_indices
from growkit.train.loop import Trainer

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=64", "data.seq_len=32",
        "train.batch_size=4", "train.warmup_steps=0", "train.lr=3e-3", "train.max_steps=8", "run.eval_every=4",
        "run.eval_batches=2", "run.progress=false", "run.tensorboard=false", "run.plots=false",
        "sparsity.density=0.25", "sparsity.block=8", "sparsity.layout='constant_fan_in'", "sparsity.update_every=2",
        "sparsity.grace_steps=0", "train.dtype='float32'", "train.threads=1"]


@pytest.mark.parametrize(("n_out", "n_in", "block"), [(48, 32, 8), (64, 96, 16), (24, 40, 4)])
def test_products_equal_masked_dense(n_out: int, n_in: int, block: int) -> None:
    gen = torch.Generator().manual_seed(0)
    idx = random_indices(n_out // block, n_in // block, fan_in(n_in // block, 0.3), gen)
    mask = indices_to_mask(idx, n_in // block).repeat_interleave(block, 0).repeat_interleave(block, 1)
    w = (torch.randn(n_out, n_in, generator=gen) * mask).requires_grad_()
    x = torch.randn(3, 5, n_in, generator=gen, requires_grad=True)
    b = torch.randn(n_out, generator=gen, requires_grad=True)
    dy = torch.randn(3, 5, n_out, generator=gen)
    ref = F.linear(x, w, b)
    ref_grads = torch.autograd.grad(ref, (x, w, b), dy)
    out = MaskedCondensedFn.apply(x, w, idx, b, block)
    grads = torch.autograd.grad(out, (x, w, b), dy)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], ref_grads[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], ref_grads[1] * mask, rtol=1e-5, atol=1e-5)  # dW: the active blocks only
    assert grads[1][~mask.bool()].abs().max() == 0
    torch.testing.assert_close(grads[2], ref_grads[2], rtol=1e-5, atol=1e-5)


def _run(tmp_path: Path, name: str, *more: str) -> Trainer:
    d = RunConfig.default([*TINY, f"run.dir={tmp_path / name}", *more]).to_dict()
    d["growth"] = [{"at_step": 4, "grow": {"n_layers": 2, "d_ff": 96}, "method": {"n_layers": "stack", "*": "masked"}}]
    t = Trainer(RunConfig.from_dict(d))
    t.fit()
    return t


def test_a_condensed_run_takes_the_steps_of_a_masked_run(tmp_path: Path) -> None:
    masked = _run(tmp_path, "masked")
    condensed = _run(tmp_path, "condensed", "sparsity.kernel='condensed'")
    assert condensed.sparse_paths == [{"path": "condensed", "layers": 12}]  # after growth: 2 × (q, k, v, o, up, down)
    linears = [n.rsplit(".", 1)[0] for n in condensed.sparsity.block_masks]
    assert all("forward" in condensed.model.get_submodule(n).__dict__ for n in linears)  # the grown model's too
    assert not any("forward" in masked.model.get_submodule(n).__dict__ for n in linears)
    # prune-and-regrow (updates at steps 2, 4, 6) and the growth at step 4 went the same way on both paths
    assert masked.model.cfg.n_layers == condensed.model.cfg.n_layers == 2
    for n, m in masked.sparsity.block_masks.items():
        assert torch.equal(m, condensed.sparsity.block_masks[n]), n
    for (n, a), (_, b) in zip(masked.model.named_parameters(), condensed.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=n)
    ev_m, ev_c = masked.evaluate(), condensed.evaluate()
    assert ev_c["val_loss"] == pytest.approx(ev_m["val_loss"], abs=1e-5)


def test_auto_measures_each_shape_and_logs_its_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = _run(tmp_path, "auto", "sparsity.kernel='auto'", "run.progress=true")
    shapes = {tuple(r["shape"]) for r in t.sparse_paths}
    assert (96, 32) in shapes and (32, 96) in shapes  # the grown model's MLP shapes were measured too
    assert all(r["path"] in ("masked", "condensed") and r["masked_ms"] > 0 and r["condensed_ms"] > 0
               for r in t.sparse_paths)
    assert "sparse matmuls: shape" in capsys.readouterr().out


def test_bad_settings_are_refused() -> None:
    with pytest.raises(GrowkitError, match='needs layout = "constant_fan_in"'):
        SparsityConfig(kernel="condensed")
    with pytest.raises(GrowkitError, match="cannot regrow by gradient"):
        SparsityConfig(kernel="auto", layout="constant_fan_in", regrow="gradient")
    with pytest.raises(GrowkitError, match=r"sparsity\.kernel must be one of masked, condensed, auto"):
        SparsityConfig(kernel="bsr", layout="constant_fan_in")


def test_a_condensed_run_resumes_exactly(tmp_path: Path) -> None:
    def cfg(name: str) -> RunConfig:
        d = RunConfig.default([*TINY, f"run.dir={tmp_path / name}", "sparsity.kernel='condensed'",
                               "run.log_every=1"]).to_dict()
        d["growth"] = [{"at_step": 4, "grow": {"n_layers": 2, "d_ff": 96},
                        "method": {"n_layers": "stack", "*": "masked"}}]
        return RunConfig.from_dict(d)

    full = Trainer(cfg("full"))
    full.fit()
    Trainer(cfg("part")).fit(stop_at_step=6)  # preempted after the growth and two prune-and-regrow updates
    resumed = Trainer(cfg("part"), resume=True)
    resumed.fit()

    def losses(name: str) -> list[float]:
        return [json.loads(x)["train_loss"] for x in (tmp_path / name / "train.jsonl").read_text().splitlines()]

    assert losses("part") == losses("full") and len(losses("full")) == 8
    for n, m in full.sparsity.block_masks.items():
        assert torch.equal(m, resumed.sparsity.block_masks[n]), n
    assert all("forward" in resumed.model.get_submodule(n.rsplit(".", 1)[0]).__dict__
               for n in resumed.sparsity.block_masks)  # the resumed, grown model runs the condensed path too
