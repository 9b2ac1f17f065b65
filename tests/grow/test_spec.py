"""GrowthSpec checks made before any operator runs."""

from __future__ import annotations

import pytest
import torch

import growkit as gk
from tests.grow.conftest import live_gradients, tiny_model

UNIT_GROWTHS = {"d_ff": 45, "d_model": 40, "n_heads": 8, "d_head": 12, "d_head_v": 13, "n_layers": 4}


@pytest.mark.parametrize("method", ["zero", "masked"])
@pytest.mark.parametrize("dim", list(UNIT_GROWTHS))
def test_std_zero_is_refused_where_it_makes_dead_units(dim: str, method: str) -> None:
    old = tiny_model("llama")
    with pytest.raises(gk.GrowkitError, match=f"std = 0 with method '{method}' for {dim} makes dead units"):
        gk.grow(old, gk.GrowthSpec(**{dim: UNIT_GROWTHS[dim]}, method=method, std=0.0))


def test_std_zero_pads_with_copy_and_positions() -> None:
    old = tiny_model("gpt2")
    gk.grow(old, gk.GrowthSpec(d_ff=45, method="copy", std=0.0))
    gk.grow(old, gk.GrowthSpec(max_seq_len=32, method="zero", std=0.0))  # position rows are not units


def test_the_refused_case_really_is_dead() -> None:
    """What the refusal prevents: with both sides of a zero unit 0, its gradient is exactly 0."""
    old = tiny_model("gpt2")
    new, record = gk.grow(old, gk.GrowthSpec(d_ff=45, method="zero"))
    with torch.no_grad():
        for block in new.blocks:  # what std = 0 would have drawn for the random side
            block.mlp.up.weight[37:] = 0.0
            block.mlp.up.bias[37:] = 0.0
    grads = live_gradients(new, record)
    assert all(g == 0 for n, g in grads.items() if "mlp" in n), grads
