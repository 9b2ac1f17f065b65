"""carry_optimizer_state: moments follow weights; new entries' first updates are of normal size."""

from __future__ import annotations

import pytest
import torch

import growkit as gk
from growkit.train.config import TrainConfig
from growkit.train.loop import build_optimizer
from tests.grow.conftest import tiny_model, tokens


def trained(arch: str = "gpt2", steps: int = 30, beta2: float = 0.999) -> tuple[gk.Transformer, torch.optim.AdamW]:
    model = tiny_model(arch)
    opt = build_optimizer(model, TrainConfig(max_steps=1, lr=1e-3, beta2=beta2, weight_decay=0.0))
    for step in range(steps):
        x = tokens(model, seed=step)
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_old_entries_keep_their_moments() -> None:
    old, opt = trained()
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=45, method="zero"))
    new_opt = gk.carry_optimizer_state(opt, new, record)
    old_params = dict(old.named_parameters())
    for name, p in new.named_parameters():
        src = old_params[name]
        for key in ("exp_avg", "exp_avg_sq"):
            carried, before = new_opt.state[p][key], opt.state[src][key]
            keep = ~record.new_entries(name, p.shape)
            assert torch.equal(carried[keep], before.flatten()), (name, key)
        assert torch.equal(new_opt.state[p]["step"], opt.state[src]["step"])


def test_split_rescales_moments_like_weights() -> None:
    old, opt = trained()
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=74, method="split"))  # every unit doubled
    new_opt = gk.carry_optimizer_state(opt, new, record)
    down_old = opt.state[old.blocks[0].mlp.down.weight]
    down_new = new_opt.state[new.blocks[0].mlp.down.weight]
    for j in (0, 37):  # unit 0 and its copy
        assert torch.allclose(down_new["exp_avg"][:, j], down_old["exp_avg"][:, 0] / 2)
        assert torch.allclose(down_new["exp_avg_sq"][:, j], down_old["exp_avg_sq"][:, 0] / 4)
    up_old, up_new = opt.state[old.blocks[0].mlp.up.weight], new_opt.state[new.blocks[0].mlp.up.weight]
    assert torch.equal(up_new["exp_avg"][37], up_old["exp_avg"][0])  # producers are copied, not scaled


def first_update_ratio(policy: str) -> float:
    """Median |Δw|/lr of new entries over that of old entries, for the first step after growth."""
    old, opt = trained(steps=40)
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=60, method="masked"))
    gk.ramp_masks(new, 1.0)  # let the new units act, so that they get ordinary gradients
    new_opt = gk.carry_optimizer_state(opt, new, record)
    up = new.blocks[1].mlp.up.weight
    is_new = record.new_entries("blocks.1.mlp.up.weight", up.shape)
    if policy == "zeros":  # the naive carry: new entries' moments 0 under the old step count
        for key in ("exp_avg", "exp_avg_sq"):
            new_opt.state[up][key][is_new] = 0.0
    before = up.detach().clone()
    x = tokens(new, seed=99)
    new(x, x)[1].backward()
    new_opt.step()
    step = (up.detach() - before).abs() / 1e-3
    return float(step[is_new].median() / step[~is_new].median())


def test_first_update_of_new_entries_is_normal_size() -> None:
    seeded, naive = first_update_ratio("seed"), first_update_ratio("zeros")
    assert 0.01 < seeded < 1.5, seeded
    assert naive > 2 * seeded, (naive, seeded)  # the policy is what keeps it normal


def test_a_step_after_growth_lowers_the_loss() -> None:
    old, opt = trained(arch="llama")
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=50, method="zero"))
    new_opt = gk.carry_optimizer_state(opt, new, record)
    x = tokens(new, seed=123)
    loss0 = new(x, x)[1]
    loss0.backward()
    new_opt.step()
    assert new(x, x)[1] < loss0


def test_groups_follow_their_source_and_settings_are_kept() -> None:
    old, opt = trained()
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=45, method="masked"))
    new_opt = gk.carry_optimizer_state(opt, new, record)
    assert type(new_opt) is type(opt) and new_opt.defaults == opt.defaults
    for old_group, new_group in zip(opt.param_groups, new_opt.param_groups, strict=True):
        assert old_group["weight_decay"] == new_group["weight_decay"]
        assert len(old_group["params"]) == len(new_group["params"])


def test_optimizer_of_another_model_is_refused() -> None:
    old, _ = trained()
    _, other_opt = trained()
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=45))
    with pytest.raises(gk.GrowkitError, match="optimizer of the model that was grown"):
        gk.carry_optimizer_state(other_opt, new, record)


def test_fresh_optimizer_carries_nothing() -> None:
    old = tiny_model("gpt2")
    opt = build_optimizer(old, TrainConfig(max_steps=1))
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=45))
    new_opt = gk.carry_optimizer_state(opt, new, record)
    assert not new_opt.state and sum(len(g["params"]) for g in new_opt.param_groups) == len(list(new.parameters()))
