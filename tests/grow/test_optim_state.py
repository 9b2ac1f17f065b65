"""carry_optimizer_state: moments follow gradients; groups, settings and the supported optimizers."""

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


def test_split_scales_moments_like_gradients() -> None:
    """Split d_ff ×2: each copy of a unit gets half its gradient through the producers (``up``, copied),
    and the consumers (``down``, halved) keep theirs; moments follow (m·r, v·r²), not the weights.
    (New entries' moments and the kick they avoid: `tests/grow/test_optim_dynamics.py`.)"""
    old, opt = trained()
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=74, method="split"))  # every unit doubled
    new_opt = gk.carry_optimizer_state(opt, new, record)
    down_old = opt.state[old.blocks[0].mlp.down.weight]
    down_new = new_opt.state[new.blocks[0].mlp.down.weight]
    up_old, up_new = opt.state[old.blocks[0].mlp.up.weight], new_opt.state[new.blocks[0].mlp.up.weight]
    for j in (0, 37):  # unit 0 and its copy
        assert torch.equal(down_new["exp_avg"][:, j], down_old["exp_avg"][:, 0])
        assert torch.equal(down_new["exp_avg_sq"][:, j], down_old["exp_avg_sq"][:, 0])
        assert torch.allclose(up_new["exp_avg"][j], up_old["exp_avg"][0] / 2, rtol=1e-15, atol=0)
        assert torch.allclose(up_new["exp_avg_sq"][j], up_old["exp_avg_sq"][0] / 4, rtol=1e-15, atol=0)


def test_amsgrad_max_is_a_second_moment() -> None:
    old = tiny_model("llama")
    opt = torch.optim.Adam(old.parameters(), lr=1e-3, amsgrad=True)
    for step in range(3):
        x = tokens(old, seed=step)
        old(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    new, record = gk.grow(old, gk.GrowthSpec(d_head=12, method="zero"))  # queries ×√2: gradients /√2
    new_opt = gk.carry_optimizer_state(opt, new, record)
    q_old, q_new = opt.state[old.blocks[1].attn.q_proj.weight], new_opt.state[new.blocks[1].attn.q_proj.weight]
    rows = ~record.new_entries("blocks.1.attn.q_proj.weight", new.blocks[1].attn.q_proj.weight.shape)[:, 0]
    for key, factor in (("exp_avg", 2 ** -0.5), ("exp_avg_sq", 0.5), ("max_exp_avg_sq", 0.5)):
        assert torch.allclose(q_new[key][rows], q_old[key] * factor, rtol=1e-12, atol=0), key
    assert type(new_opt) is torch.optim.Adam and new_opt.defaults["amsgrad"]


def test_unknown_optimizer_is_refused_by_name() -> None:
    old = tiny_model("gpt2")
    opt = torch.optim.RMSprop(old.parameters(), lr=1e-3)
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=45))
    with pytest.raises(gk.GrowkitError, match=r"cannot carry the state of RMSprop.*torch\.optim\.AdamW"):
        gk.carry_optimizer_state(opt, new, record)


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
