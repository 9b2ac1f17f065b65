"""Growing a sparse model: old masks follow the record, new blocks get the configured density (or all of
them), a grace period, zeroed weights and moments; the grown sparse model computes the same function
(strict methods) and keeps training with every invariant."""

from __future__ import annotations

import math

import pytest
import torch

import growkit as gk
from growkit.sparse import SparsityConfig, sparsify
from growkit.sparse.masks import block_reduce
from tests.sparse.conftest import batch, check_invariants, tiny_config, train

B = 8


def grown_sparse(arch: str, spec: gk.GrowthSpec, **sparsity: object):
    cfg = tiny_config(arch)
    model = gk.Transformer(cfg, seed=11)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scfg = SparsityConfig(**{"density": 0.25, "block": B, "update_every": 2, "total_steps": 30, **sparsity})
    ctl = sparsify(model, scfg, optimizer=opt)
    train(model, ctl, opt, range(1, 4))
    old_masks = {n: m.clone() for n, m in ctl.masks.items()}
    big, record = gk.grow(model, spec)
    new_opt = gk.carry_optimizer_state(opt, big, record)
    ctl.on_grow(big, record, new_opt)
    return model, big, record, new_opt, ctl, old_masks


SPECS = {
    "stack": gk.GrowthSpec(d_ff=96, d_model=48, n_heads=3, n_layers=3, method={"n_layers": "stack", "*": "masked"}),
    "masked": gk.GrowthSpec(d_ff=96, d_model=48, n_layers=4, method="masked"),
    "zero": gk.GrowthSpec(d_ff=80, n_layers=3, method="zero"),
}


@pytest.mark.parametrize(("arch", "how", "grow_density"), [
    ("gpt2", "stack", "same"), ("llama", "masked", "same"), ("gpt2", "masked", "dense"), ("llama", "zero", "same"),
])
def test_growth_keeps_old_masks_and_allocates_new_blocks(arch: str, how: str, grow_density: str) -> None:
    model, big, record, opt, ctl, old_masks = grown_sparse(arch, SPECS[how], grow_density=grow_density)
    params = dict(big.named_parameters())
    assert set(ctl.masks) == {n for n in params if n.startswith("blocks.") and n.endswith(("proj.weight", "gate.weight",
                                                                                         "up.weight", "down.weight"))}
    fresh_tensors = 0
    for name, mask in ctl.masks.items():
        tmap = record[name]
        is_old = tmap.old_mask(mask.shape)
        if tmap.source is not None:  # old entries (also those copied from another layer) keep their masks
            carried = tmap.gather(old_masks[tmap.source].double(), fill=-1.0)
            assert torch.equal(mask[is_old], carried[is_old] == 1.0), name
        else:
            fresh_tensors += 1
        new_blocks = ~block_reduce(is_old, B, "any")
        n_new = int(new_blocks.sum())
        active_new = int((ctl.block_masks[name] & new_blocks).sum())
        want_new = max(math.floor(0.25 * n_new + 0.5), 1 if tmap.source is None else 0)
        assert active_new == (n_new if grow_density == "dense" else want_new), name
        assert ctl.targets[name] == int((ctl.block_masks[name] & ~new_blocks).sum()) + want_new, name
        assert (ctl.born[name][new_blocks] == 3).all()  # grace from the growth step
    assert fresh_tensors == (0 if how == "stack" else len(ctl.masks) - len(old_masks))
    check_invariants(ctl, exact_count=grow_density == "same")
    # strict growth of a sparse model is still strict: zeroing the inactive new weights keeps the function
    tokens = batch(model.cfg, 0)[0]
    if how != "stack":
        assert gk.check_preserved(model, big, tokens) < 1e-5
    # ... and training goes on with every invariant; "dense" tensors are pruned back towards their targets
    if big.masks():
        gk.ramp_masks(big, 0.5)
    excess = [sum(int(m.sum()) - ctl.targets[n] for n, m in ctl.block_masks.items())]

    def on_update(t: int, before: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
        excess.append(sum(int(m.sum()) - ctl.targets[n] for n, m in ctl.block_masks.items()))

    train(big, ctl, opt, range(4, 11), on_update, exact_count=grow_density == "same")
    if grow_density == "dense":
        assert excess[0] > 0 and excess == sorted(excess, reverse=True) and excess[-1] < excess[0]
    else:
        assert set(excess) == {0}


def test_growth_with_erk_and_non_aligned_old_entries() -> None:
    """split duplicates units: the duplicates carry their unit's mask; ERK densities of the grown shapes."""
    model, big, record, opt, ctl, old_masks = grown_sparse(
        "gpt2", gk.GrowthSpec(d_ff=128, method="split"), distribution="erk")
    for name, mask in ctl.masks.items():
        tmap = record[name]
        carried = tmap.gather(old_masks[tmap.source].double(), fill=-1.0)
        old = tmap.old_mask(mask.shape)
        assert torch.equal(mask[old], carried[old] > 0), name  # split scales the copies: any value > 0
    check_invariants(ctl)
    assert gk.check_preserved(model, big, batch(model.cfg, 0)[0]) < 1e-5
    train(big, ctl, opt, range(4, 7))


def test_growth_to_sizes_blocks_do_not_tile_is_refused() -> None:
    cfg = tiny_config("gpt2")
    model = gk.Transformer(cfg, seed=0)
    ctl = sparsify(model, SparsityConfig(density=0.5, block=16, static=True))
    big, record = gk.grow(model, gk.GrowthSpec(d_ff=72))
    with pytest.raises(gk.GrowkitError, match=r"mlp.up.weight has shape \(72, 32\), which 16×16 blocks do not"):
        ctl.on_grow(big, record)
