"""The controller's invariants through real training steps, the prune-and-regrow rules (L1 pruning, random
and RigL regrowth, grace periods, pr(t)), ERK densities, checkpoints of the masks, and config errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

import growkit as gk
from growkit.flops import layer_matmul_params, training_flops_per_token
from growkit.sparse import SparsityConfig, block_counts, erk_densities, sparse_targets, sparsify
from tests.sparse.conftest import batch, block_l1, check_invariants, tiny_config, train


def adamw(model: torch.nn.Module) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)


@pytest.mark.parametrize(("arch", "block"), [("gpt2", 1), ("llama", 4), ("bert", 8), ("gpt2", 16)])
def test_invariants_and_prune_regrow_through_training(arch: str, block: int) -> None:
    """After every step: inactive weights, gradients and Adam moments exactly 0, masks constant within blocks,
    counts at target. At every update: pr(t)·k blocks pruned (those with the smallest L1 norms) and as many
    regrown (at 0, born now)."""
    cfg = tiny_config(arch)
    model = gk.Transformer(cfg, seed=0)
    opt = adamw(model)
    scfg = SparsityConfig(density=0.25, block=block, update_every=2, total_steps=8, grace_steps=0)
    ctl = sparsify(model, scfg, optimizer=opt)
    check_invariants(ctl)
    start = {n: m.clone() for n, m in ctl.block_masks.items()}
    updates: list[int] = []

    def on_update(t: int, before: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
        updates.append(t)
        for name, bm in ctl.block_masks.items():
            old = before[name]
            pruned, grown = old & ~bm, bm & ~old
            n = math.floor(scfg.prune_fraction(t) * int(old.sum()) + 0.5)
            assert int(pruned.sum()) == int(grown.sum()) == n, name
            if n:
                l1 = block_l1(weights[name], block)
                assert l1[pruned].max() <= l1[old & bm].min(), name
                assert (ctl.born[name][grown] == t).all()

    train(model, ctl, opt, range(1, 10), on_update)
    assert updates == [2, 4, 6]  # never at t >= T = 8
    assert any(not torch.equal(start[n], m) for n, m in ctl.block_masks.items())
    # targets: uniform round(d × blocks) per tensor; only the block weights are sparse
    params = dict(model.named_parameters())
    assert set(ctl.masks) == set(sparse_targets(model))
    assert len(ctl.masks) == cfg.n_layers * (7 if arch == "llama" else 6)
    for name in ctl.masks:
        n_blocks = params[name].numel() // block**2
        assert ctl.targets[name] == max(1, math.floor(0.25 * n_blocks + 0.5))
    assert (model.tok_emb.weight != 0).all() and (model.lm_head.weight != 0).all()


def test_static_sparsity_never_moves() -> None:
    model = gk.Transformer(tiny_config("llama"), seed=1)
    opt = adamw(model)
    ctl = sparsify(model, SparsityConfig(density=0.1, block=4, static=True), optimizer=opt)  # no total_steps needed
    start = {n: m.clone() for n, m in ctl.masks.items()}
    train(model, ctl, opt, range(1, 6))
    assert all(torch.equal(start[n], m) for n, m in ctl.masks.items())
    assert ctl.density() == pytest.approx(0.1, abs=0.02)


def test_prune_schedule_and_update_steps() -> None:
    cfg = SparsityConfig(pr_max=0.5, total_steps=100, update_every=10)
    assert cfg.prune_fraction(0) == 0.5
    assert cfg.prune_fraction(25) == pytest.approx(0.25 * (1 + math.cos(math.pi / 4)))
    assert cfg.prune_fraction(50) == pytest.approx(0.25)
    assert cfg.prune_fraction(100) == cfg.prune_fraction(150) == 0.0
    assert [t for t in range(201) if cfg.is_update_step(t)] == list(range(10, 100, 10))
    spread = SparsityConfig(n_updates=4, total_steps=100)
    assert [t for t in range(201) if spread.is_update_step(t)] == [20, 40, 60, 80]
    assert spread.interval == 20 and spread.grace == 20
    assert SparsityConfig(total_steps=10, update_every=2, grace_steps=0).grace == 0
    assert not any(cfg.replace(static=True).is_update_step(t) for t in range(200))


def test_regrowth_prefers_blocks_that_were_inactive_and_keeps_count_at_high_density() -> None:
    """At density 0.8 there are fewer inactive blocks than pruned ones: the just-pruned fill the rest."""
    model = gk.Transformer(tiny_config("gpt2"), seed=2)
    opt = adamw(model)
    ctl = sparsify(model, SparsityConfig(density=0.8, block=4, update_every=1, total_steps=6, grace_steps=0,
                                         pr_max=0.5), optimizer=opt)

    filled = []

    def on_update(t: int, before: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
        for name, bm in ctl.block_masks.items():
            n = math.floor(ctl.cfg.prune_fraction(t) * int(before[name].sum()) + 0.5)
            fresh = int((~before[name]).sum())
            assert int((bm & ~before[name]).sum()) == min(n, fresh), name  # all fresh ones first
            filled.append(n > fresh)

    train(model, ctl, opt, range(1, 5), on_update)
    assert any(filled)  # some updates needed just-pruned blocks to keep the count


def test_rigl_regrows_the_blocks_with_the_largest_dense_gradient() -> None:
    cfg = tiny_config("gpt2")
    model = gk.Transformer(cfg, seed=3)
    opt = adamw(model)
    scfg = SparsityConfig(density=0.25, block=4, update_every=3, total_steps=10, regrow="gradient", grace_steps=0)
    ctl = sparsify(model, scfg, optimizer=opt)
    train(model, ctl, opt, range(1, 3))
    # the dense gradient of step 3's batch, from a hook-free copy of the model
    ref = gk.Transformer(cfg)
    ref.load_state_dict(model.state_dict())
    x, y = batch(cfg, 3)
    ref(x, y)[1].backward()
    dense = {n: p.grad for n, p in ref.named_parameters()}
    checked: list[str] = []

    def on_update(t: int, before: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
        for name, bm in ctl.block_masks.items():
            grown = bm & ~before[name]
            n = int(grown.sum())
            if not n:
                continue
            score = torch.where(~before[name], block_l1(dense[name], 4), -1.0)
            expected = torch.zeros_like(grown).flatten()
            expected[torch.topk(score.flatten(), n).indices] = True
            assert torch.equal(grown.flatten(), expected), name
            checked.append(name)

    train(model, ctl, opt, range(3, 4), on_update)
    assert len(checked) == len(ctl.block_masks)


def test_rigl_captures_gradients_from_the_first_step() -> None:
    model = gk.Transformer(tiny_config("llama"), seed=3)
    opt = adamw(model)
    ctl = sparsify(model, SparsityConfig(density=0.25, block=4, update_every=1, total_steps=4, regrow="gradient"),
                   optimizer=opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "no gradient was captured" would fail the test
        train(model, ctl, opt, range(1, 3))
    ctl.step(7)  # a step number the controller did not expect, and past T: nothing to update, no warning
    assert not ctl._capture


def test_grace_period_protects_new_blocks_from_the_next_update() -> None:
    model = gk.Transformer(tiny_config("gpt2"), seed=4)
    opt = adamw(model)
    ctl = sparsify(model, SparsityConfig(density=0.25, block=4, update_every=2, total_steps=20), optimizer=opt)
    assert ctl.cfg.grace == 2
    seen_protected = []

    def on_update(t: int, before: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
        for name, bm in ctl.block_masks.items():
            pruned = before[name] & ~bm
            assert ((t - ctl.born[name][pruned]) > 2).all(), name
            recent = before[name] & (ctl.born[name] == t - 2)
            assert bm[recent].all(), name  # regrown at the last update: still active
            seen_protected.append(int(recent.sum()))

    train(model, ctl, opt, range(1, 9), on_update)
    assert sum(seen_protected) > 0


def test_gradient_hook_with_accumulation_and_clipping() -> None:
    """Micro-batch gradients accumulate into .grad through the hook: inactive entries stay exactly 0."""
    cfg = tiny_config("bert")
    model = gk.Transformer(cfg, seed=5)
    ctl = sparsify(model, SparsityConfig(density=0.3, block=8, static=True))
    for micro in range(3):
        x, y = batch(cfg, micro)
        model(x, y)[1].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    params = dict(model.named_parameters())
    for name, mask in ctl.masks.items():
        assert (params[name].grad[~mask] == 0).all() and (params[name].grad[mask] != 0).any()
    ctl.remove()  # without hooks, dense gradients again
    model.zero_grad()
    model(*batch(cfg, 0))[1].backward()
    name, mask = next(iter(ctl.masks.items()))
    assert (params[name].grad[~mask] != 0).any()


# -- densities and FLOPs ----------------------------------------------------------------------------
def test_erk_densities_meet_the_budget() -> None:
    shapes = {"q": (32, 32), "k": (16, 32), "up": (64, 32), "down": (32, 64), "big": (512, 512)}
    sizes = {n: a * b for n, (a, b) in shapes.items()}
    for density in (0.05, 0.1, 0.5, 0.9):
        d = erk_densities(shapes, density)
        assert sum(d[n] * sizes[n] for n in d) == pytest.approx(density * sum(sizes.values()), rel=1e-12)
        assert all(0 < v <= 1 for v in d.values())
        free = [n for n in d if d[n] < 1]
        ratios = {n: d[n] / ((shapes[n][0] + shapes[n][1]) / sizes[n]) for n in free}
        assert max(ratios.values()) == pytest.approx(min(ratios.values()), rel=1e-12)  # one ε for all
    assert erk_densities(shapes, 0.9)["k"] == 1.0  # the smallest tensor is made dense and ε solved again
    assert erk_densities(shapes, 0.1)["big"] < 0.1 < erk_densities(shapes, 0.1)["k"]


def test_erk_block_counts_sum_to_the_budget_in_a_model() -> None:
    model = gk.Transformer(tiny_config("llama", n_layers=3, d_ff=96), seed=6)
    for block in (1, 4, 16):
        ctl = sparsify(model, SparsityConfig(density=0.2, distribution="erk", block=block, static=True))
        params = sparse_targets(model)
        total_blocks = sum(p.numel() for p in params.values()) // block**2
        budget = math.floor(0.2 * total_blocks + 0.5)
        if block < 16:  # the exact budget
            assert sum(ctl.targets.values()) == budget
            assert sum(int(m.sum()) for m in ctl.masks.values()) == budget * block**2
        else:  # 4–8 blocks per tensor: some would round to 0 and get the 1 block every tensor keeps
            assert min(ctl.targets.values()) == 1
            assert budget < sum(ctl.targets.values()) <= budget + len(params)
        dens = ctl.densities()
        assert dens["blocks.0.attn.k_proj.weight"] > dens["blocks.0.mlp.up.weight"]
        ctl.remove()
    # 3 × 1.5 blocks: the total is rounded half up (5), the extra blocks go to the first names on ties
    assert block_counts({"a": 3, "b": 3, "c": 3}, {"a": 0.5, "b": 0.5, "c": 0.5}) == {"a": 2, "b": 2, "c": 1}


def test_projection_densities_feed_the_flops_formula() -> None:
    cfg = tiny_config("llama")
    model = gk.Transformer(cfg, seed=7)
    ctl = sparsify(model, SparsityConfig(density=0.25, block=4, static=True))
    dens = ctl.projection_densities()
    assert set(dens) == set(layer_matmul_params(cfg)) and all(v == 0.25 for v in dens.values())
    assert training_flops_per_token(cfg, 16, dens) == pytest.approx(training_flops_per_token(cfg, 16, 0.25))
    erk = sparsify(gk.Transformer(cfg, seed=7), SparsityConfig(density=0.25, distribution="erk", static=True))
    per = layer_matmul_params(cfg)
    dens = erk.projection_densities()
    layers = cfg.n_layers * sum(per[k] * dens[k] for k in per)
    dense_layers = cfg.n_layers * sum(per.values())
    want = training_flops_per_token(cfg, 16) - 6 * (dense_layers - layers)
    assert training_flops_per_token(cfg, 16, dens) == pytest.approx(want, rel=1e-12)
    assert erk.density() == pytest.approx(0.25, abs=1e-3)


def test_sparse_lr_rule() -> None:
    assert SparsityConfig(density=0.1, sparse_lr_rule=True).lr_factor() == pytest.approx(
        math.exp(1.969 * 0.81 + 0.2905 * 0.9))
    assert SparsityConfig(density=0.1).lr_factor() == 1.0
    assert SparsityConfig(density=1.0, sparse_lr_rule=True).lr_factor() == 1.0


# -- checkpoints ----------------------------------------------------------------------------------
def test_state_dict_resumes_identically() -> None:
    """A controller rebuilt from state_dict on copies of the model and optimizer continues step for step."""
    cfg = tiny_config("gpt2")
    model = gk.Transformer(cfg, seed=8)
    opt = adamw(model)
    scfg = SparsityConfig(density=0.25, block=4, update_every=2, total_steps=12)
    ctl = sparsify(model, scfg, optimizer=opt)
    train(model, ctl, opt, range(1, 4))
    model2 = copy.deepcopy(model)
    opt2 = adamw(model2)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a plain state_dict shares the step tensors
    ctl2 = sparsify(model2, scfg, optimizer=opt2, state=ctl.state_dict())
    assert ctl2.last_step == 3 and ctl2.targets == ctl.targets
    train(model, ctl, opt, range(4, 9))
    train(model2, ctl2, opt2, range(4, 9))
    for name in ctl.masks:
        assert torch.equal(ctl.masks[name], ctl2.masks[name]) and torch.equal(ctl.born[name], ctl2.born[name])
    for (n, p), p2 in zip(model.named_parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, p2), n


def test_state_dict_of_another_model_or_block_is_refused() -> None:
    model = gk.Transformer(tiny_config("gpt2"), seed=9)
    state = sparsify(model, SparsityConfig(density=0.5, block=4, static=True)).state_dict()
    with pytest.raises(gk.GrowkitError, match="block 4, the config says block 8"):
        sparsify(model, SparsityConfig(density=0.5, block=8, static=True), state=state)
    with pytest.raises(gk.GrowkitError, match="other parameters"):
        sparsify(gk.Transformer(tiny_config("gpt2", n_layers=3)), SparsityConfig(block=4, static=True), state=state)
    with pytest.raises(gk.GrowkitError, match="block grid"):
        sparsify(gk.Transformer(tiny_config("gpt2", d_ff=96)), SparsityConfig(block=4, static=True), state=state)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"density": 0.0}, r"density must be in \(0, 1\]"),
    ({"density": 1.5}, r"density must be in \(0, 1\]"),
    ({"density": "0.1"}, "density must be a number"),
    ({"block": 3}, "block must be one of 1, 4, 8, 16, 32, 64"),
    ({"block": True}, "block must be one of"),
    ({"distribution": "normal"}, "distribution must be one of uniform, erk"),
    ({"regrow": "magnitude"}, "regrow must be one of random, gradient"),
    ({"grow_density": "half"}, "grow_density must be one of same, dense"),
    ({"update_every": 10, "n_updates": 5}, "set only one of them"),
    ({"update_every": 0}, "update_every must be at least 1"),
    ({"total_steps": 2.5}, "total_steps must be a whole number"),
    ({"grace_steps": -1}, "grace_steps must be at least 0"),
    ({"pr_max": 1.5}, r"pr_max must be in \[0, 1\]"),
    ({"static": "yes"}, "static must be true or false"),
])
def test_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(gk.GrowkitError, match=message):
        SparsityConfig(**kwargs)


def test_sparsify_errors() -> None:
    model = gk.Transformer(tiny_config("gpt2"), seed=0)
    with pytest.raises(gk.GrowkitError, match="total_steps is required"):
        sparsify(model, SparsityConfig(density=0.5))
    with pytest.raises(gk.GrowkitError, match=r"blocks.0.mlp.up.weight has shape \(40, 32\), which 16×16 blocks"):
        sparsify(gk.Transformer(tiny_config("gpt2", d_ff=40)), SparsityConfig(block=16, static=True))
    with pytest.raises(gk.GrowkitError, match="no sparse targets"):
        sparsify(torch.nn.Linear(4, 4), SparsityConfig(static=True))
    with pytest.raises(gk.GrowkitError, match=r"takes a growkit\.SparsityConfig"):
        sparsify(model, {"density": 0.5})  # type: ignore[arg-type]
    with pytest.raises(gk.GrowkitError, match=r"unknown key\(s\) in \[sparsity\]: densty"):
        SparsityConfig.from_dict({"densty": 0.1})
    assert SparsityConfig.from_dict({"density": 0.2, "block": 4}).block == 4


def test_skip_runs_no_prune_and_regrow_and_drops_the_captured_gradients() -> None:
    """A skipped (non-finite) step: masks, born steps and the generator stay; the NaN gradients captured for
    a due RigL update are dropped; the next step's update runs on finite gradients."""
    model = gk.Transformer(tiny_config("gpt2"), seed=5)
    opt = adamw(model)
    ctl = sparsify(model, SparsityConfig(density=0.25, block=8, update_every=1, total_steps=10, regrow="gradient",
                                         grace_steps=0), optimizer=opt)
    train(model, ctl, opt, range(1, 2))
    x, y = batch(model.cfg, 2)
    _, loss = model(x, y)
    (loss * float("nan")).backward()  # step 2's gradients are NaN: the trainer skips the optimizer step
    assert ctl._capture and all(torch.isnan(g).any() for g in ctl.captured_gradients().values())
    masks = {n: m.clone() for n, m in ctl.block_masks.items()}
    born = {n: b.clone() for n, b in ctl.born.items()}
    generator = ctl.generator.get_state().clone()
    opt.zero_grad(set_to_none=True)
    ctl.skip(2)
    assert ctl.last_step == 2 and ctl.captured_gradients() == {} and ctl._capture  # armed for step 3
    assert all(torch.equal(masks[n], m) for n, m in ctl.block_masks.items())
    assert all(torch.equal(born[n], b) for n, b in ctl.born.items())
    assert torch.equal(generator, ctl.generator.get_state())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "no gradient was captured" would fail the test
        train(model, ctl, opt, range(3, 4))  # checks the invariants (counts at target) after the update
    assert any(not torch.equal(masks[n], m) for n, m in ctl.block_masks.items())  # step 3 did update
    assert all(torch.isfinite(g).all() for g in ctl._grad_sum.values())
