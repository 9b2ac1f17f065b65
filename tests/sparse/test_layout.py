"""The constant fan-in (condensed) layout: its forward, input gradient and weight gradient against the
masked dense computation (fp32, 1e-5), conversions, and prune-and-regrow keeping the fan-in constant."""

from __future__ import annotations

import math

import pytest
import torch

import growkit as gk
from growkit.errors import GrowkitError
from growkit.sparse import SparsityConfig, SparsityController, sparsify
from growkit.sparse.layout import (
    CondensedLinear,
    condense,
    condense_linears,
    condensed_linear,
    condensed_prune_regrow,
    fan_in,
    fan_in_prune_regrow,
    indices_to_mask,
    mask_to_indices,
    random_indices,
    to_dense,
)
from growkit.sparse.masks import expand
from tests.sparse.conftest import check_invariants, tiny_config, train


def pattern(n_out: int, n_in: int, block: int, density: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random constant fan-in weight: (indices, values) with random values on the active blocks."""
    gen = torch.Generator().manual_seed(seed)
    rows, cols = n_out // block, n_in // block
    idx = random_indices(rows, cols, fan_in(cols, density), gen)
    values = torch.randn(rows, block, idx.shape[1] * block, generator=gen)
    return idx, values


@pytest.mark.parametrize(("n_out", "n_in", "block", "density", "lead"), [
    (24, 40, 8, 0.3, (2, 7)),     # odd token count, several block-rows per loop step
    (48, 80, 16, 0.25, (13,)),    # one block-row per step
    (35, 21, 1, 0.2, (3, 5)),     # unstructured constant fan-in, odd sizes
    (64, 96, 32, 0.5, (9,)),
    (12, 20, 4, 1.0, (5,)),       # dense as a pattern
])
def test_forward_and_gradients_equal_masked_dense(n_out: int, n_in: int, block: int, density: float,
                                                  lead: tuple[int, ...]) -> None:
    idx, values = pattern(n_out, n_in, block, density)
    dense = to_dense(values, idx, n_in)
    mask = expand(indices_to_mask(idx, n_in // block), block)
    assert torch.equal(dense != 0, mask)  # randn is never exactly 0
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(*lead, n_in, generator=gen)
    bias = torch.randn(n_out, generator=gen)
    dy = torch.randn(*lead, n_out, generator=gen)

    xs, vs, bs = (t.clone().requires_grad_(True) for t in (x, values, bias))
    y = condensed_linear(xs, vs, idx, bs)
    y.backward(dy)

    xd, wd, bd = (t.clone().requires_grad_(True) for t in (x, dense, bias))
    y_ref = torch.nn.functional.linear(xd, wd * mask, bd)
    y_ref.backward(dy)

    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xs.grad, xd.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bs.grad, bd.grad, atol=1e-5, rtol=1e-5)
    # dW of the active blocks, condensed the same way; the masked dense gradient is 0 elsewhere
    torch.testing.assert_close(vs.grad, condense(wd.grad * mask, idx, block), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(to_dense(vs.grad, idx, n_in), wd.grad * mask, atol=1e-5, rtol=1e-5)


def test_conversions_round_trip_and_constant_fan_in() -> None:
    idx, values = pattern(64, 96, 8, 0.3, seed=3)
    cols = 96 // 8
    mask = indices_to_mask(idx, cols)
    assert (mask.sum(dim=1) == fan_in(cols, 0.3)).all()
    assert torch.equal(mask_to_indices(mask), idx.sort(dim=1).values)
    dense = to_dense(values, idx, 96)
    assert torch.equal(condense(dense, idx, 8), values)
    assert fan_in(48, 0.1) == 5 and fan_in(24, 0.1) == 2 and fan_in(3, 0.01) == 1 and fan_in(4, 1.0) == 4


def test_bad_input_is_a_growkit_error() -> None:
    idx, values = pattern(16, 32, 8, 0.5)
    with pytest.raises(GrowkitError, match="constant fan-in"):
        mask_to_indices(torch.tensor([[True, False], [True, True]]))
    with pytest.raises(GrowkitError, match="one dtype"):
        condensed_linear(torch.randn(3, 32, dtype=torch.float64), values, idx)
    with pytest.raises(GrowkitError, match="int64"):
        condensed_linear(torch.randn(3, 32), values, idx[:, :1])
    with pytest.raises(GrowkitError, match="tiled"):
        condense(torch.randn(16, 30), idx, 8)


@pytest.mark.parametrize("block", [1, 4, 16])
def test_prune_and_regrow_keeps_constant_fan_in_and_zeros(block: int) -> None:
    n_out, n_in = 64, 128
    idx, values = pattern(n_out, n_in, block, 0.25, seed=5)
    cols = n_in // block
    k = idx.shape[1]
    gen = torch.Generator().manual_seed(7)
    for step in range(4):
        n = max(1, k // 2) if step < 3 else k  # the last one prunes every block of every row
        old_mask = indices_to_mask(idx, cols)
        l1 = torch.zeros(n_out // block, cols).scatter_(
            1, idx, values.abs().reshape(n_out // block, block, k, block).sum(dim=(1, 3)))
        new_values, new_idx, regrown = condensed_prune_regrow(values, idx, n_in, n, gen)
        new_mask = indices_to_mask(new_idx, cols)
        assert (new_mask.sum(dim=1) == k).all()                      # constant fan-in
        assert all(len(set(row.tolist())) == k for row in new_idx)   # distinct columns per row
        pruned, grown = old_mask & ~new_mask, new_mask & ~old_mask
        assert (pruned.sum(dim=1) == grown.sum(dim=1)).all() and (grown.sum(dim=1) <= n).all()
        if n < cols - k:                                             # enough room: exactly n per row moved
            assert (pruned.sum(dim=1) == n).all()
            # the pruned blocks are the smallest of their row
            for r in range(l1.shape[0]):
                if pruned[r].any() and (old_mask[r] & new_mask[r]).any():
                    assert l1[r][pruned[r]].max() <= l1[r][old_mask[r] & new_mask[r]].min()
        # regrown blocks start at exactly 0, kept blocks keep their values, inactive weights are 0
        dense_old, dense_new = to_dense(values, idx, n_in), to_dense(new_values, new_idx, n_in)
        keep = expand(old_mask & new_mask, block)
        assert torch.equal(dense_new[keep], dense_old[keep])
        assert (dense_new[~keep] == 0).all()
        assert int(regrown.sum()) == int(grown.sum())
        values = new_values + torch.randn(new_values.shape, generator=gen)  # "train" the active blocks
        idx = new_idx


def test_mask_level_update_respects_prunable() -> None:
    mask = torch.tensor([[True, True, False, False], [False, True, True, False]])
    l1 = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 5.0, 3.0, 0.0]])
    protected = torch.tensor([[True, False, False, False], [False, False, False, False]])
    score = torch.tensor([[0.0, 0.0, 0.9, 0.1], [0.2, 0.0, 0.0, 0.8]])
    new, pruned, grown = fan_in_prune_regrow(mask, l1, 1, score, prunable=mask & ~protected)
    assert pruned.tolist() == [[False, True, False, False], [False, False, True, False]]
    assert grown.tolist() == [[False, False, True, False], [False, False, False, True]]
    assert (new.sum(dim=1) == 2).all()


# -- the controller with layout = "constant_fan_in" ----------------------------------------------------
def row_counts(ctl: SparsityController) -> dict[str, set[int]]:
    return {n: set(bm.sum(dim=1).tolist()) for n, bm in ctl.block_masks.items()}


@pytest.mark.parametrize(("arch", "block", "regrow"), [("gpt2", 1, "random"), ("llama", 8, "gradient"),
                                                       ("gpt2", 16, "random")])
def test_controller_keeps_constant_fan_in_through_training_and_growth(arch: str, block: int, regrow: str) -> None:
    cfg = tiny_config(arch)
    model = gk.Transformer(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    scfg = SparsityConfig(density=0.25, block=block, layout="constant_fan_in", update_every=2, total_steps=12,
                          grace_steps=0, regrow=regrow)
    ctl = sparsify(model, scfg, optimizer=opt)
    start = {n: m.clone() for n, m in ctl.block_masks.items()}
    params = dict(model.named_parameters())
    for name, counts in row_counts(ctl).items():
        assert counts == {fan_in(params[name].shape[1] // block, 0.25)}, name
    moved: list[int] = []

    def on_update(t: int, before: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
        moved.append(sum(int((before[n] & ~m).sum()) for n, m in ctl.block_masks.items()))
        for name, bm in ctl.block_masks.items():
            assert torch.equal(bm.sum(dim=1), before[name].sum(dim=1)), name   # every row keeps its count
            rows, cols = bm.shape
            k = int(before[name][0].sum())
            n = math.floor(scfg.prune_fraction(t) * k * rows + 0.5)   # as many as the free layout moves
            per_row = (before[name] & ~bm).sum(dim=1)
            if k + (n + rows - 1) // rows <= cols:                      # room to regrow away from the pruned
                assert int(per_row.sum()) == n and int(per_row.max() - per_row.min()) <= 1, name

    train(model, ctl, opt, range(1, 7), on_update)
    assert moved and all(m > 0 for m in moved)
    assert any(not torch.equal(start[n], m) for n, m in ctl.block_masks.items())
    assert all(len(c) == 1 for c in row_counts(ctl).values())

    state = ctl.state_dict()  # resume: the same masks and targets
    again = sparsify(gk.Transformer(cfg, seed=0), scfg, state=state)
    assert all(torch.equal(again.block_masks[n], m) for n, m in ctl.block_masks.items())

    if block <= 16:  # growth (d_ff 64 → 96 and 2 → 3 layers): every row of every grown tensor keeps one count
        spec = gk.GrowthSpec(d_ff=96, n_layers=3, method={"n_layers": "stack", "*": "masked"})
        big, record = gk.grow(model, spec)
        new_opt = gk.carry_optimizer_state(opt, big, record)
        ctl.on_grow(big, record, new_opt)
        assert all(len(c) == 1 for c in row_counts(ctl).values()), row_counts(ctl)
        check_invariants(ctl)
        train(big, ctl, new_opt, range(7, 11))
        assert all(len(c) == 1 for c in row_counts(ctl).values())


def test_constant_fan_in_config_errors() -> None:
    with pytest.raises(GrowkitError, match="layout must be one of free, constant_fan_in"):
        SparsityConfig(layout="condensed")
    with pytest.raises(GrowkitError, match="not available with layout"):
        SparsityConfig(layout="constant_fan_in", grow_density="dense")


def test_condensed_model_equals_the_masked_dense_model() -> None:
    """`condense_linears` on a constant fan-in controller's masks: same logits and loss gradients (on the
    active weights; the rest of the model identical) as the masked dense model."""
    cfg = tiny_config("llama")
    dense = gk.Transformer(cfg, seed=2)
    ctl = sparsify(dense, SparsityConfig(density=0.5, block=8, layout="constant_fan_in", static=True))
    sparse = gk.Transformer(cfg, seed=2)
    sparse.load_state_dict(dense.state_dict())
    condense_linears(sparse, ctl.block_masks, 8)
    assert isinstance(sparse.blocks[0].attn.q_proj, CondensedLinear)
    x = torch.randint(0, cfg.vocab_size, (3, cfg.max_seq_len), generator=torch.Generator().manual_seed(0))
    _, loss_d = dense(x, x)
    _, loss_s = sparse(x, x)
    torch.testing.assert_close(loss_s, loss_d, atol=1e-5, rtol=1e-5)
    loss_d.backward()
    loss_s.backward()
    dense_params = dict(dense.named_parameters())
    for name, p in sparse.named_parameters():
        if name.endswith(".values"):
            module = sparse.get_submodule(name.removesuffix(".values"))
            w = name.replace(".values", ".weight")
            ref = condense(dense_params[w].grad, module.indices, 8)
            torch.testing.assert_close(p.grad, ref, atol=1e-5, rtol=1e-5)
            assert torch.equal(module.dense_weight(), dense_params[w].detach())
        else:
            torch.testing.assert_close(p.grad, dense_params[name].grad, atol=1e-5, rtol=1e-5)
