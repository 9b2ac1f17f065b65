"""Every dimension at once, and a property test over random shapes and targets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import growkit as gk
from tests.grow.conftest import TOL64, garbage_preserves, tiny_model, tokens


def all_dims(model: gk.Transformer, factor: int = 2) -> dict[str, int]:
    c = model.cfg
    sizes = {"n_layers": c.n_layers + 2, "d_model": c.d_model * factor, "d_ff": c.d_ff * factor,
             "n_heads": c.n_heads * factor, "d_head": c.d_head * factor, "d_head_v": c.d_head_v * factor,
             "max_seq_len": c.max_seq_len * factor}
    if c.arch == "llama":
        sizes["n_kv_heads"] = c.n_kv_heads * factor
    return sizes


def test_masked_grows_every_dimension_at_once_exactly(arch: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(**all_dims(old), method="masked"))
    for dim, size in all_dims(old).items():
        assert getattr(new.cfg, dim) == size, dim
    gk.ramp_masks(new, 1.0)  # with the grown (not garbage) weights: folding at c = 1 keeps the function
    logits = new(tokens(old))[0]
    gk.fold_masks(new)
    assert not new.masks() and torch.allclose(new(tokens(old))[0], logits, atol=1e-12, rtol=0)
    garbage, record = gk.grow(old, gk.GrowthSpec(**all_dims(old), method="masked"))
    assert garbage_preserves(old, garbage, record, keep_zeros=False) < TOL64


@pytest.mark.parametrize("arch", ["gpt2", "bert", "llama"])
def test_split_grows_every_width_at_once_exactly(arch: str) -> None:
    old = tiny_model(arch)
    sizes = {k: v for k, v in all_dims(old).items() if k != "n_layers"}
    if arch == "llama":
        sizes.pop("d_head")  # split cannot grow q/k width under RoPE (refused; see the matrix)
    new, _ = gk.grow(old, gk.GrowthSpec(**sizes, method="split"))
    assert gk.check_preserved(old, new, tokens(old)) < TOL64


def test_zero_grows_every_dimension_of_llama_exactly() -> None:
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(**all_dims(old), method="zero"))
    assert garbage_preserves(old, new, record, keep_zeros=True) < TOL64


def test_mixed_methods_and_growing_twice(arch: str) -> None:
    old = tiny_model(arch)
    mid, _ = gk.grow(old, gk.GrowthSpec(n_layers=4, d_ff=50, n_heads=2 * old.cfg.n_heads,
                                        n_kv_heads=2 * old.cfg.n_kv_heads if arch == "llama" else None,
                                        method={"depth": "masked", "d_ff": "split", "*": "masked"}))
    assert gk.check_preserved(old, mid, tokens(old)) < TOL64
    gk.ramp_masks(mid, 1.0)  # new units fully on: mid now computes a new function, which the second growth keeps
    gk.fold_masks(mid)
    depth = "masked" if arch == "bert" else "zero"  # zero-init layers are not the identity in post-LN
    new, _ = gk.grow(mid, gk.GrowthSpec(d_model=2 * old.cfg.d_model, n_layers=6, d_ff=60,
                                        method={"depth": depth, "d_model": "split", "*": "split"}))
    assert gk.check_preserved(mid, new, tokens(old)) < TOL64


@settings(max_examples=25, deadline=None)
@given(
    arch=st.sampled_from(["gpt2", "bert", "llama"]),
    d_head=st.sampled_from([2, 4, 6]),
    n_kv=st.integers(1, 2),
    group=st.integers(1, 3),
    d_ff=st.integers(1, 13),
    layers=st.integers(1, 3),
    grow_by=st.fixed_dictionaries({
        "n_layers": st.integers(0, 2), "d_model": st.integers(0, 5), "d_ff": st.integers(0, 7),
        "group": st.integers(0, 1), "d_head_v": st.integers(0, 3)}),
)
def test_masked_growth_preserves_any_shape(arch: str, d_head: int, n_kv: int, group: int, d_ff: int, layers: int,
                                           grow_by: dict[str, int]) -> None:
    n_heads = n_kv * group if arch == "llama" else n_kv
    kv = n_kv if arch == "llama" else None
    d_model = n_heads * d_head + 1  # odd widths: nothing assumes d_model = n_heads · d_head
    old = tiny_model(arch, n_layers=layers, d_model=d_model, d_ff=d_ff, n_heads=n_heads, n_kv_heads=kv,
                     d_head=d_head)
    new_heads = n_heads + grow_by["group"] * (n_kv if arch == "llama" else 1)
    spec = gk.GrowthSpec(n_layers=layers + grow_by["n_layers"], d_model=d_model + grow_by["d_model"],
                         d_ff=d_ff + grow_by["d_ff"], n_heads=new_heads,
                         d_head_v=old.cfg.d_head_v + grow_by["d_head_v"], method="masked")
    new, record = gk.grow(old, spec)
    assert new.num_params() >= old.num_params()
    assert garbage_preserves(old, new, record, keep_zeros=False) < 1e-9
