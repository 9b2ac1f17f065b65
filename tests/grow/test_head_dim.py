"""d_head (query/key width, √ rescale, RoPE) and d_head_v (value width) growth, every method, every arch."""

from __future__ import annotations

import math

import pytest
import torch

import growkit as gk
from growkit.grow.head_dim import channel_source
from tests.grow.conftest import (
    TOL64,
    assert_copies_diverge,
    assert_fold_keeps_logits,
    assert_masked_units_live,
    assert_ramp_and_fold,
    assert_strictly_preserved,
    assert_zero_units_come_alive,
    garbage_preserves,
    tiny_model,
    tokens,
)

#: d_head growths per arch: gpt2/bert (d_head 10) by +3 and ×2.5 (split makes 3 copies); llama (d_head 6,
#: RoPE) only by whole multiples, the one exact case under RoPE.
D_HEAD = {"gpt2": [13, 25], "bert": [13, 25], "llama": [12, 18]}


def _strict(arch: str) -> list[str]:
    return ["masked", "zero"] if arch == "llama" else ["masked", "zero", "split"]


def test_d_head_strict_methods_preserve_with_garbage(arch: str) -> None:
    for method in _strict(arch):
        for size in D_HEAD[arch]:
            old = tiny_model(arch)
            new, record = gk.grow(old, gk.GrowthSpec(d_head=size, method=method))
            attn = new.blocks[2].attn
            assert new.cfg.d_head == size and new.cfg.d_head_v == old.cfg.d_head_v
            assert attn.q_proj.weight.shape[0] == new.cfg.n_heads * size
            assert attn.k_proj.weight.shape[0] == new.cfg.n_kv_heads * size
            assert_strictly_preserved(old, new, record, method, seq=16, msg=(method, size))


@pytest.mark.parametrize("dim", ["d_head", "d_head_v"])
def test_float32(arch: str, dim: str) -> None:
    old = tiny_model(arch).float()
    size = D_HEAD[arch][0] if dim == "d_head" else old.cfg.d_head_v + 3
    for method in _strict(arch) if dim == "d_head" else ["masked", "zero", "split"]:
        new, _ = gk.grow(old, gk.GrowthSpec(**{dim: size}, method=method))
        assert gk.check_preserved(old, new, tokens(old)) < 1e-5, method


def test_d_head_rescale_is_recorded() -> None:
    """Old q rows (and bias) × √(d̂/d); split also divides the q entries of each copy by the count."""
    old = tiny_model("gpt2")
    new, record = gk.grow(old, gk.GrowthSpec(d_head=13, method="zero"))
    q, qb, k = (record[f"blocks.0.attn.{n}"] for n in ("q_proj.weight", "q_proj.bias", "k_proj.weight"))
    factor = math.sqrt(13 / 10)
    old_rows = q.index[0] >= 0
    assert q.index[0].view(2, 13)[:, :10].tolist() == [list(range(10)), list(range(10, 20))]
    assert torch.allclose(q.scale[0][old_rows], torch.full((20,), factor, dtype=torch.float64))
    assert torch.equal(qb.scale[0], q.scale[0]) and k.scale[0] is None
    w = new.blocks[0].attn.q_proj.weight.view(2, 13, -1)
    assert torch.allclose(w[:, :10], old.blocks[0].attn.q_proj.weight.view(2, 10, -1) * factor)
    assert (w[:, 10:] == 0).all()  # zero: the q side of the new channels
    _, split = gk.grow(old, gk.GrowthSpec(d_head=25, method="split"))
    scale = split["blocks.0.attn.q_proj.weight"].scale[0].view(2, 25)
    assert scale[0, 0].item() == pytest.approx(math.sqrt(2.5) / 3)
    assert scale[0, 9].item() == pytest.approx(math.sqrt(2.5) / 2)


def test_rope_channel_placement_keeps_old_frequencies() -> None:
    """Old pair (j, j + d/2) goes to (j·d̂/d, j·d̂/d + d̂/2): θ^(−2j/d) = θ^(−2(rj)/(rd))."""
    assert channel_source(6, 12, "zero", rope=True).tolist() == [0, -1, 1, -1, 2, -1, 3, -1, 4, -1, 5, -1]
    assert channel_source(6, 8, "copy", rope=True).tolist() == [0, 1, 2, -1, 3, 4, 5, -1]
    old_cos, _ = gk.model.rope_tables(16, 6, 10000.0)
    new_cos, _ = gk.model.rope_tables(16, 12, 10000.0)
    src = channel_source(6, 12, "zero", rope=True)
    assert torch.equal(new_cos[:, src >= 0], old_cos[:, src[src >= 0]])


def test_rope_refusals_name_what_works() -> None:
    old = tiny_model("llama")
    for method in ("masked", "zero"):
        with pytest.raises(gk.GrowkitError, match=r"q/k width growth under RoPE: d_head 6 → 8 .* multiple of 6 "
                                                  r"\(12, 18, …\).*grow n_heads instead.*'copy'"):
            gk.grow(old, gk.GrowthSpec(d_head=8, method=method))
    with pytest.raises(gk.GrowkitError, match="q/k width growth under RoPE cannot be split"):
        gk.grow(old, gk.GrowthSpec(d_head=12, method="split"))
    with pytest.raises(gk.GrowkitError, match="must stay even"):
        gk.grow(old, gk.GrowthSpec(d_head=9, method="copy"))


def test_d_head_copy_is_approximate(arch: str) -> None:
    old = tiny_model(arch)
    size = 8 if arch == "llama" else 13  # under RoPE copy works at any even size (approximately)
    new, _ = gk.grow(old, gk.GrowthSpec(d_head=size, method="copy"))
    assert gk.check_preserved(old, new, tokens(old)) > 1e-8
    if arch != "llama":  # with zero padding the √ rescale makes copy exact (not under RoPE at 6 → 8)
        padded, _ = gk.grow(old, gk.GrowthSpec(d_head=size, method="copy", std=0.0))
        assert gk.check_preserved(old, padded, tokens(old)) < TOL64


def test_d_head_masked_ramp_fold_and_liveness(arch: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(d_head=D_HEAD[arch][0], method="masked"))
    assert new.blocks[0].attn.qk_mask.tolist().count(0.0) == D_HEAD[arch][0] - old.cfg.d_head
    assert_masked_units_live(new, record, c=0.1)
    assert_ramp_and_fold(old, new, tokens(old), c=0.1, tol=1e-9)


def test_d_head_zero_comes_alive(arch: str) -> None:
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(d_head=D_HEAD[arch][0], method="zero"))
    assert_zero_units_come_alive(new, record, zero_side=("q_proj.weight", "q_proj.bias"))


def test_d_head_split_copies_diverge() -> None:
    new, _ = gk.grow(tiny_model("gpt2"), gk.GrowthSpec(d_head=13, method="split"))
    assert_copies_diverge(new, new.blocks[0].attn.k_proj.weight, 10, 0)  # channel 10 of head 0 copies channel 0


def test_d_head_rope_twice_with_longer_sequences() -> None:
    old = tiny_model("llama")
    first, _ = gk.grow(old, gk.GrowthSpec(d_head=12, method="masked"))
    gk.ramp_masks(first, 1.0)
    gk.fold_masks(first)
    second, record = gk.grow(first, gk.GrowthSpec(d_head=24, method="zero"))
    fill = garbage_preserves(first, second, record, keep_zeros=True)
    assert fill < TOL64
    assert gk.check_preserved(first, second, tokens(first, seq=16)) < TOL64


# -- d_head_v --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [3, 9])  # +3 and, from d_head_v 6 or 10, more than ×2
def test_d_head_v_strict_methods_preserve_with_garbage(arch: str, extra: int) -> None:
    for method in ("masked", "zero", "split"):
        old = tiny_model(arch)
        size = old.cfg.d_head_v + extra
        new, record = gk.grow(old, gk.GrowthSpec(d_head_v=size, method=method))
        attn = new.blocks[1].attn
        assert new.cfg.d_head_v == size and new.cfg.d_head == old.cfg.d_head
        assert attn.v_proj.weight.shape[0] == new.cfg.n_kv_heads * size
        assert attn.o_proj.weight.shape[1] == new.cfg.n_heads * size
        assert_strictly_preserved(old, new, record, method, msg=method)


def test_d_head_v_copy_is_approximate(arch: str) -> None:
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(d_head_v=old.cfg.d_head_v + 2, method="copy"))
    assert gk.check_preserved(old, new, tokens(old)) > 1e-6


def test_d_head_v_with_gqa_record_maps() -> None:
    """llama 4 query heads on 2 KV heads: v rows are 2 groups × d_v, o_proj columns 4 groups × d_v."""
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(d_head_v=8, method="masked"))
    v = record["blocks.0.attn.v_proj.weight"].index[0].view(2, 8)
    o = record["blocks.0.attn.o_proj.weight"].index[1].view(4, 8)
    assert v.tolist() == [[*range(6), -1, -1], [*range(6, 12), -1, -1]]
    assert o.tolist() == [[*range(h * 6, h * 6 + 6), -1, -1] for h in range(4)]
    mask = new.blocks[0].attn.head_mask
    assert mask.shape == (4, 8) and mask[:, 6:].eq(0).all() and mask[:, :6].eq(1).all()


def test_d_head_v_masked_ramp_fold_and_liveness(arch: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(d_head_v=old.cfg.d_head_v + 3, method="masked"))
    assert_masked_units_live(new, record, c=0.2)
    assert_fold_keeps_logits(new, tokens(old))


def test_d_head_v_zero_comes_alive_and_split_diverges(arch: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(d_head_v=old.cfg.d_head_v + 3, method="zero"))
    assert_zero_units_come_alive(new, record, zero_side=("o_proj.weight",))
    split, _ = gk.grow(old, gk.GrowthSpec(d_head_v=old.cfg.d_head_v + 3, method="split"))
    assert_copies_diverge(split, split.blocks[0].attn.v_proj.weight, old.cfg.d_head_v, 0)


def test_head_widths_together_and_with_heads(arch: str) -> None:
    old = tiny_model(arch)
    d_head = D_HEAD[arch][0]
    n_heads = 6 if arch == "llama" else 3
    new, record = gk.grow(old, gk.GrowthSpec(n_heads=n_heads, d_head=d_head, d_head_v=old.cfg.d_head_v + 1,
                                             method="zero"))
    assert (new.cfg.n_heads, new.cfg.d_head, new.cfg.d_head_v) == (n_heads, d_head, old.cfg.d_head_v + 1)
    assert garbage_preserves(old, new, record, keep_zeros=True) < TOL64
