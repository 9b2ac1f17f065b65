"""Checkpoints: safetensors + JSON round trip, atomic latest pointer, pruning, corrupt files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from growkit import GrowkitError, Transformer, TransformerConfig
from growkit.train.checkpoint import read_checkpoint, save_checkpoint
from growkit.train.config import TrainConfig
from growkit.train.loop import build_optimizer

CFG = TransformerConfig(arch="llama", n_layers=2, d_model=20, n_heads=2, n_kv_heads=1, d_ff=37, vocab_size=51,
                        max_seq_len=16, tie_embeddings=True)


def trained(seed: int = 0) -> tuple[Transformer, torch.optim.AdamW]:
    model = Transformer(CFG, seed=seed)
    opt = build_optimizer(model, TrainConfig(max_steps=1))
    x = torch.randint(0, 51, (2, 9), generator=torch.Generator().manual_seed(seed))
    for _ in range(2):
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def save(run_dir: Path, model: Transformer, opt: torch.optim.Optimizer, step: int, keep: int = 2) -> Path:
    return save_checkpoint(run_dir, model, opt, {"step": step, "model_config": CFG.to_dict()}, keep=keep)


def test_round_trip_restores_weights_moments_and_rng(tmp_path: Path) -> None:
    model, opt = trained()
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    path = save(tmp_path, model, opt, step=2)
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.path == path and ckpt.step == 2 and ckpt.state["model_config"] == CFG.to_dict()

    fresh = Transformer(CFG, seed=99)
    fresh_opt = build_optimizer(fresh, TrainConfig(max_steps=1))
    ckpt.load_model(fresh)
    ckpt.load_optimizer(fresh_opt, fresh)
    for (n, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(a, b), n
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[a][key], fresh_opt.state[b][key]), (n, key)
    assert fresh.lm_head.weight is fresh.tok_emb.weight  # tying survives loading
    assert torch.equal(ckpt.rng_state(), rng)


def test_resumed_optimizer_steps_like_the_original(tmp_path: Path) -> None:
    model, opt = trained()
    save(tmp_path, model, opt, step=2)
    fresh = Transformer(CFG, seed=5)
    fresh_opt = build_optimizer(fresh, TrainConfig(max_steps=1))
    ckpt = read_checkpoint(tmp_path)
    ckpt.load_model(fresh)
    ckpt.load_optimizer(fresh_opt, fresh)
    x = torch.randint(0, 51, (2, 9), generator=torch.Generator().manual_seed(7))
    for m, o in ((model, opt), (fresh, fresh_opt)):
        m(x, x)[1].backward()
        o.step()
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_latest_pointer_and_pruning(tmp_path: Path) -> None:
    model, opt = trained()
    for step in (10, 20, 30):
        save(tmp_path, model, opt, step=step, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_00000020", "step_00000030"]
    assert read_checkpoint(tmp_path).step == 30
    assert read_checkpoint(tmp_path / "checkpoints" / "step_00000020").step == 20
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.safetensors", "state.json"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, victim: str) -> None:
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    data = (path / victim).read_bytes()
    (path / victim).write_bytes(data[: len(data) // 2])
    fresh = Transformer(CFG)
    with pytest.raises(GrowkitError, match="corrupt or incomplete"):
        ckpt = read_checkpoint(tmp_path)
        ckpt.load_model(fresh)
        ckpt.load_optimizer(build_optimizer(fresh, TrainConfig(max_steps=1)), fresh)


def test_missing_file_and_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="no checkpoint"):
        read_checkpoint(tmp_path)
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    (path / "rng.safetensors").unlink()
    with pytest.raises(GrowkitError, match=r"missing rng\.safetensors"):
        read_checkpoint(tmp_path)


def test_checkpoint_of_another_shape_is_refused(tmp_path: Path) -> None:
    model, opt = trained()
    save(tmp_path, model, opt, step=1)
    other = Transformer(CFG.replace(n_layers=3))
    with pytest.raises(GrowkitError, match="does not match the model"):
        read_checkpoint(tmp_path).load_model(other)


def test_checkpoints_are_never_unpickled(tmp_path: Path) -> None:
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
