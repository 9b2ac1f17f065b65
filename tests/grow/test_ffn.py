"""d_ff growth, every method, every arch: strict methods preserve logits with garbage new weights."""

from __future__ import annotations

import pytest
import torch

import growkit as gk
from tests.grow.conftest import (
    TOL64,
    assert_copies_diverge,
    assert_masked_units_live,
    assert_ramp_and_fold,
    assert_strictly_preserved,
    assert_zero_units_come_alive,
    tiny_model,
    tokens,
)


@pytest.mark.parametrize("new_ff", [40, 80])  # +3 (odd) and more than ×2 (split makes 3 copies of some units)
@pytest.mark.parametrize("method", ["masked", "zero", "split"])
def test_strict_methods_preserve_with_garbage(arch: str, method: str, new_ff: int) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=new_ff, method=method))
    assert new.cfg.d_ff == new_ff and all(b.mlp.up.weight.shape[0] == new_ff for b in new.blocks)
    assert_strictly_preserved(old, new, record, method)


def test_copy_is_approximate_and_reports_its_error(arch: str) -> None:
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(d_ff=50, method="copy"))
    assert gk.check_preserved(old, new, tokens(old)) > 1e-6
    padded, _ = gk.grow(old, gk.GrowthSpec(d_ff=50, method="copy", std=0.0))  # pad with zeros: exact
    assert gk.check_preserved(old, padded, tokens(old)) < TOL64


def test_old_model_untouched_and_storage_not_shared(arch: str) -> None:
    old = tiny_model(arch)
    before = {n: p.clone() for n, p in old.state_dict().items()}
    new, _ = gk.grow(old, gk.GrowthSpec(d_ff=45))
    with torch.no_grad():
        for p in new.parameters():
            p.add_(1.0)
    for n, p in old.state_dict().items():
        assert torch.equal(p, before[n]), n
    assert old.cfg.d_ff == 37


def test_masked_ramp_and_fold(arch: str) -> None:
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(d_ff=45, method="masked"))
    assert_ramp_and_fold(old, new, tokens(old))


def test_masked_new_units_get_gradients_once_c_is_positive(arch: str) -> None:
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(d_ff=45, method="masked"))
    assert_masked_units_live(new, record)


def test_zero_new_units_come_alive(arch: str) -> None:
    """The zero side (down's new columns) gets gradient at once; after one step the random side does too."""
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(d_ff=45, method="zero"))
    assert_zero_units_come_alive(new, record, zero_side=("down.weight",))


def test_split_duplicates_diverge_after_a_step(arch: str) -> None:
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(d_ff=45, method="split"))
    assert_copies_diverge(new, new.blocks[0].mlp.up.weight, 37, 0)  # unit 37 is a copy of unit 0


def test_record_maps_split_copies_and_scales() -> None:
    old = tiny_model("gpt2")
    _, record = gk.grow(old, gk.GrowthSpec(d_ff=80, method="split"))
    up, down = record["blocks.0.mlp.up.weight"], record["blocks.0.mlp.down.weight"]
    assert up.index[0].tolist() == [*range(37), *range(37), 0, 1, 2, 3, 4, 5]
    assert up.index[1] is None and up.scale[0] is None
    scale = down.scale[1]
    assert scale[0].item() == pytest.approx(1 / 3) and scale[10].item() == pytest.approx(1 / 2)


def test_shrinking_and_unknown_methods_are_refused() -> None:
    old = tiny_model("gpt2")
    with pytest.raises(gk.GrowkitError, match="cannot grow d_ff 37 → 30: sizes only grow"):
        gk.grow(old, gk.GrowthSpec(d_ff=30))
    with pytest.raises(gk.GrowkitError, match="unknown growth method 'magic'"):
        gk.GrowthSpec(d_ff=40, method="magic")
    with pytest.raises(gk.GrowkitError, match="does not apply to d_ff"):
        gk.grow(old, gk.GrowthSpec(d_ff=40, method="stack"))
