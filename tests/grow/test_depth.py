"""n_layers growth, every method, every arch: gated (masked) and zero-output (zero) layers preserve
logits with garbage new weights at every placement; stack / interpolate copy the right layers."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import growkit as gk
from growkit.grow.depth import interpolate_sources, placement_indices, stack_sources
from tests.grow.conftest import (
    TOL64,
    assert_fold_keeps_logits,
    assert_masked_units_live,
    assert_ramp_and_fold,
    assert_zero_units_come_alive,
    fill_new_entries,
    garbage_preserves,
    tiny_model,
    tokens,
)

PLACEMENTS: list[str | list[int]] = ["top", "bottom", "interleave", "middle", [0, 3]]


def _old_positions(placement: str | list[int], old: int, new: int) -> list[int]:
    fresh = set(placement_indices(placement, old, new))
    return [j for j in range(new) if j not in fresh]


def _assert_same_block(a: torch.nn.Module, b: torch.nn.Module) -> None:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for name in pa:
        assert torch.equal(pa[name], pb[name]), name


def test_placement_and_source_orders() -> None:
    """The documented orders (the grown model's new-layer indices / the old layer each layer copies)."""
    assert placement_indices("top", 3, 5) == [3, 4]
    assert placement_indices("bottom", 3, 5) == [0, 1]
    assert placement_indices("interleave", 3, 6) == [1, 3, 5]  # old,new,old,new,old,new
    assert placement_indices("interleave", 4, 6) == [2, 5]  # old,old,new,old,old,new
    assert placement_indices("interleave", 2, 6) == [1, 2, 4, 5]
    assert placement_indices("middle", 3, 5) == [1, 2]  # old,new,new,old,old
    assert placement_indices([4, 0], 3, 5) == [0, 4]
    assert stack_sources(3, 6) == [0, 1, 2, 0, 1, 2]
    assert stack_sources(3, 5) == [0, 1, 2, 1, 2]  # the partial copy is of the TOP layers
    assert stack_sources(3, 7) == [0, 1, 2, 0, 1, 2, 2]
    assert interpolate_sources(3, 6) == [0, 0, 1, 1, 2, 2]
    assert interpolate_sources(3, 5) == [0, 1, 1, 2, 2]  # extra repeats go to the upper layers
    assert interpolate_sources(2, 7) == [0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("placement", PLACEMENTS, ids=str)
def test_masked_is_exact_with_garbage_at_every_placement(arch: str, placement: str | list[int]) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=5, method="masked", depth_placement=placement))
    assert new.cfg.n_layers == 5 and len(new.blocks) == 5
    fresh = placement_indices(placement, 3, 5)
    for j, block in enumerate(new.blocks):
        if j in fresh:
            assert block.layer_gate is not None and block.layer_gate.ndim == 0 and float(block.layer_gate) == 0
        else:
            assert block.layer_gate is None
    for i, j in enumerate(_old_positions(placement, 3, 5)):
        _assert_same_block(old.blocks[i], new.blocks[j])  # old layers keep their order
    assert garbage_preserves(old, new, record, keep_zeros=False) < TOL64


def test_masked_is_exact_in_float32(arch: str) -> None:
    old = tiny_model(arch).float().eval()
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=6, method="masked", depth_placement="interleave"))
    assert fill_new_entries(new, record, keep_zeros=False) > 0
    x = tokens(old)
    with torch.no_grad():
        err = float((old(x)[0] - new.eval()(x)[0]).abs().max())
    assert new.blocks[1].attn.q_proj.weight.dtype == torch.float32
    assert err < 1e-5


def test_masked_ramp_and_fold(arch: str) -> None:
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(n_layers=5, method="masked", depth_placement="middle"))
    gk.ramp_masks(new, 0.5)
    assert float(new.blocks[1].layer_gate) == 0.5  # a fresh layer's gate (the helper ramps to this same c)
    assert_ramp_and_fold(old, new, tokens(old), c=0.5, exact=True)
    assert all(b.layer_gate is None for b in new.blocks)


def test_masked_new_layers_get_gradients_once_c_is_positive(arch: str) -> None:
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(n_layers=5, method="masked"))
    # a key bias only shifts every score of a query by the same amount: softmax ignores it (grad ≈ 0)
    grads = assert_masked_units_live(new, record, ignore=("k_proj.bias",))
    assert {n for n in grads if n.startswith("blocks.3.")} and {n for n in grads if n.startswith("blocks.4.")}


@pytest.mark.parametrize("placement", ["top", "interleave", [1, 4]], ids=str)
def test_zero_is_exact_with_garbage_for_pre_norm(arch: str, placement: str | list[int]) -> None:
    old = tiny_model(arch)
    spec = gk.GrowthSpec(n_layers=5, method="zero", depth_placement=placement)
    if arch == "bert":
        with pytest.raises(gk.GrowkitError, match=r"post-LN \(bert\).*LayerNorm\(x \+ 0\).*'masked'"):
            gk.grow(old, spec)
        return
    new, record = gk.grow(old, spec)
    for j in placement_indices(placement, 3, 5):
        block = new.blocks[j]
        assert block.layer_gate is None
        for lin in (block.attn.o_proj, block.mlp.down):
            assert not lin.weight.any() and (lin.bias is None or not lin.bias.any())
        assert block.attn.q_proj.weight.std() > 0 and block.mlp.up.weight.std() > 0
    assert garbage_preserves(old, new, record, keep_zeros=True) < TOL64


def test_zero_new_layers_come_alive(arch: str) -> None:
    """o_proj / down of the new layer get gradient at once; after one SGD step the rest of it does too."""
    if arch == "bert":
        pytest.skip("zero growth of depth is refused for post-LN bert")
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(n_layers=4, method="zero"))
    assert_zero_units_come_alive(new, record, zero_side=("o_proj.weight", "o_proj.bias", "down.weight", "down.bias"),
                                 rest_blocked=True, ignore=("k_proj.bias",))


def test_copy_is_approximate_and_reports_its_error(arch: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=5, method="copy", depth_placement="bottom"))
    assert all(b.layer_gate is None for b in new.blocks)
    assert record["blocks.0.attn.q_proj.weight"].source is None
    assert record["blocks.2.attn.q_proj.weight"].source == "blocks.0.attn.q_proj.weight"
    err = gk.check_preserved(old, new, tokens(old))
    assert math.isfinite(err) and err > 1e-6
    padded, _ = gk.grow(old, gk.GrowthSpec(n_layers=5, method="copy", std=0.0))  # zero matrices
    err0 = gk.check_preserved(old, padded, tokens(old))
    assert err0 < TOL64 if arch != "bert" else err0 > 1e-6  # post-LN still normalises x + 0


@pytest.mark.parametrize("n_new", [6, 7])  # ×2, and a remainder (3 → 5 is in the order test)
@pytest.mark.parametrize("method", ["stack", "interpolate"])
def test_stack_and_interpolate_copy_the_right_layers(arch: str, method: str, n_new: int) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=n_new, method=method))
    sources = stack_sources(3, n_new) if method == "stack" else interpolate_sources(3, n_new)
    assert len(new.blocks) == n_new
    for j, src in enumerate(sources):
        _assert_same_block(old.blocks[src], new.blocks[j])
        for name, _ in new.blocks[j].named_parameters():
            assert record[f"blocks.{j}.{name}"].source == f"blocks.{src}.{name}"
            assert record[f"blocks.{j}.{name}"].is_identity()
        assert new.blocks[j].layer_gate is None
    err = gk.check_preserved(old, new, tokens(old))
    assert math.isfinite(err) and err > 1e-6  # approximate: the function changes
    # distinct storage: training one copy leaves the other copies (and the old model) alone
    with torch.no_grad():
        new.blocks[-1].mlp.up.weight.add_(1.0)
    assert not torch.equal(new.blocks[-1].mlp.up.weight, old.blocks[sources[-1]].mlp.up.weight)
    assert all(not torch.equal(new.blocks[j].mlp.up.weight, new.blocks[-1].mlp.up.weight)
               for j, s in enumerate(sources[:-1]) if s == sources[-1])


def test_stack_copies_the_masks_of_a_masked_d_ff_growth(arch: str) -> None:
    """Stacked copies of a block carry its ffn_mask too: growing d_ff (masked, garbage in the new units)
    next to a stack is exactly the stack alone."""
    old = tiny_model(arch)
    stacked, _ = gk.grow(old, gk.GrowthSpec(n_layers=6, method="stack"))
    both, record = gk.grow(old, gk.GrowthSpec(n_layers=6, d_ff=45, method={"depth": "stack", "*": "masked"}))
    assert all(b.mlp.ffn_mask is not None and b.mlp.ffn_mask.shape == (45,) for b in both.blocks)
    assert garbage_preserves(stacked, both, record, keep_zeros=False) < TOL64


def test_composed_with_d_ff_growth(arch: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=5, d_ff=45, method="masked", depth_placement="interleave"))
    assert new.cfg.d_ff == 45 and new.cfg.n_layers == 5
    for j, block in enumerate(new.blocks):
        assert block.mlp.up.weight.shape[0] == 45 and block.mlp.ffn_mask.shape == (45,)
        if j in placement_indices("interleave", 3, 5):  # fresh: the whole block is gated, its units open
            assert bool((block.mlp.ffn_mask == 1).all()) and float(block.layer_gate) == 0
        else:
            assert int((block.mlp.ffn_mask == 0).sum()) == 8
    assert garbage_preserves(old, new, record, keep_zeros=False) < TOL64
    assert_fold_keeps_logits(new, tokens(old), exact=True)


def test_composed_with_width_and_heads_growth(arch: str) -> None:
    """Fresh blocks take the shapes the earlier dimensions left (d_model, heads) and carry all-ones head
    masks; the model-level width mask is untouched by depth."""
    old = tiny_model(arch)
    heads = 6 if arch == "llama" else 3
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=5, d_model=26, n_heads=heads, method="masked"))
    assert new.width_mask.shape == (26,) and int((new.width_mask == 0).sum()) == 6
    for block in new.blocks[3:]:
        assert block.attn.q_proj.weight.shape[1] == 26 and bool((block.attn.head_mask == 1).all())
    assert garbage_preserves(old, new, record, keep_zeros=False) < TOL64


def test_growth_twice_with_fold_between(arch: str) -> None:
    old = tiny_model(arch)
    mid, record = gk.grow(old, gk.GrowthSpec(n_layers=5, method="masked", depth_placement="interleave"))
    # garbage on a copy: folded garbage layers would blow the residual stream up to ~1e7, where float64
    # rounding of the second growth alone reaches 1e-8
    assert garbage_preserves(old, copy.deepcopy(mid), record, keep_zeros=False) < TOL64
    with pytest.raises(gk.GrowkitError, match="fold them"):
        gk.grow(mid, gk.GrowthSpec(n_layers=8))
    gk.ramp_masks(mid, 1.0)
    gk.fold_masks(mid)
    big, record = gk.grow(mid, gk.GrowthSpec(n_layers=8, d_ff=41, method="masked", depth_placement="bottom"))
    assert big.cfg.n_layers == 8 and sum(b.layer_gate is not None for b in big.blocks) == 3
    assert garbage_preserves(mid, big, record, keep_zeros=False) < TOL64


@pytest.mark.parametrize("method", ["masked", "zero", "copy"])
def test_record_of_fresh_layers(arch: str, method: str) -> None:
    if method == "zero" and arch == "bert":
        pytest.skip("zero growth of depth is refused for post-LN bert")
    old = tiny_model(arch)
    placement = "interleave"
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=6, method=method, depth_placement=placement))
    for name, _ in new.named_parameters():
        assert name in record, name
    for name, _ in new.named_buffers():
        if name.endswith("layer_gate"):
            assert record[name].source is None
    fresh = placement_indices(placement, 3, 6)
    positions = _old_positions(placement, 3, 6)
    for name, _ in new.named_parameters():
        if not name.startswith("blocks."):
            assert record[name].source == name and record[name].is_identity()
            continue
        layer, rest = name.split(".", 2)[1:]
        if int(layer) in fresh:
            assert record[name].source is None
            assert bool(record.new_entries(name, new.get_parameter(name).shape).all())
        else:
            assert record[name].source == f"blocks.{positions.index(int(layer))}.{rest}"
            assert record[name].is_identity()


@pytest.mark.parametrize("method", ["masked", "stack"])
def test_optimizer_moments_follow_renumbered_and_copied_layers(method: str) -> None:
    old = tiny_model("gpt2")
    opt = torch.optim.AdamW(old.parameters(), lr=1e-3)
    x = tokens(old, seed=2)
    old(x, x)[1].backward()
    opt.step()
    placement = "interleave" if method == "masked" else "top"
    new, record = gk.grow(old, gk.GrowthSpec(n_layers=6, method=method, depth_placement=placement))
    new_opt = gk.carry_optimizer_state(opt, new, record)
    sources = stack_sources(3, 6) if method == "stack" else [0, None, 1, None, 2, None]
    for j, src in enumerate(sources):
        if src is not None:
            moved = new_opt.state[new.blocks[j].mlp.up.weight]["exp_avg"]
            assert torch.equal(moved, opt.state[old.blocks[src].mlp.up.weight]["exp_avg"]), j


@pytest.mark.parametrize("method", ["masked", "stack"])
def test_old_model_untouched_and_parameter_count(arch: str, method: str) -> None:
    old = tiny_model(arch)
    before = {n: p.clone() for n, p in old.state_dict().items()}
    new, _ = gk.grow(old, gk.GrowthSpec(n_layers=5, method=method))
    per_layer = sum(p.numel() for p in old.blocks[0].parameters())
    assert new.num_params() - old.num_params() == 2 * per_layer
    with torch.no_grad():
        for p in new.parameters():
            p.add_(1.0)
    for n, p in old.state_dict().items():
        assert torch.equal(p, before[n]), n
    assert old.cfg.n_layers == 3 and len(old.blocks) == 3 and not old.masks()


def test_fresh_layers_use_the_init_of_the_new_depth() -> None:
    """Fresh matrices are N(0, std²) with o_proj / down scaled by 1/√(2·n̂_layers); gains 1, biases 0."""
    old = gk.Transformer(gk.TransformerConfig(n_layers=2, d_model=64, n_heads=4, d_ff=256, vocab_size=50), seed=0)
    new, _ = gk.grow(old, gk.GrowthSpec(n_layers=8, method="copy", std=0.05))
    block = new.blocks[5]
    assert block.attn.q_proj.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert block.mlp.down.weight.std().item() == pytest.approx(0.05 / 4, rel=0.1)
    assert bool((block.attn_norm.weight == 1).all()) and not block.attn_norm.bias.any()
    assert not block.mlp.up.bias.any()


def test_errors() -> None:
    old = tiny_model("gpt2")
    with pytest.raises(gk.GrowkitError, match="cannot grow n_layers 3 → 2: sizes only grow"):
        gk.grow(old, gk.GrowthSpec(n_layers=2))
    bad = {
        "[4]": r"lists 1 indices, but growing n_layers 3 → 5 adds 2 layers: give exactly 2",
        "[1, 1]": r"repeats an index",
        "[0, 5]": r"indices \[5\] are out of range for a grown model of 5 layers: use indices in 0 … 4",
        "[-1, 2]": r"out of range",
        "[0.5, 2]": r"list of whole numbers",
        "'sideways'": r"unknown depth_placement 'sideways': use one of top, bottom, interleave, middle",
    }
    for placement, message in bad.items():
        with pytest.raises(gk.GrowkitError, match=message):
            gk.grow(old, gk.GrowthSpec(n_layers=5, depth_placement=eval(placement)))
    for method in ("stack", "interpolate"):
        with pytest.raises(gk.GrowkitError, match=f"depth_placement='middle' does not apply to method '{method}'"):
            gk.grow(old, gk.GrowthSpec(n_layers=5, method=method, depth_placement="middle"))
    with pytest.raises(gk.GrowkitError, match="'zero' cannot grow n_layers of a post-LN"):
        gk.grow(tiny_model("bert"), gk.GrowthSpec(n_layers=4, method="zero"))
    with pytest.raises(gk.GrowkitError, match="does not apply to n_layers"):
        gk.grow(old, gk.GrowthSpec(n_layers=5, method="split"))
