"""d_model growth, every method, every arch (tied and untied heads): strict methods preserve logits with
garbage in every unconstrained new weight; zero and split refuse what their math cannot keep."""

from __future__ import annotations

import math

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
    fill_new_entries,
    garbage_preserves,
    tiny_model,
    tokens,
)

# 20 → 23: +3 (odd, uneven); 40: ×2; 60: ×3 (split makes three copies of every channel)
SIZES = (23, 40, 60)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("new_d", SIZES)
def test_masked_preserves_with_garbage(arch: str, new_d: int, tie: bool) -> None:
    old = tiny_model(arch, tie_embeddings=tie)
    new, record = gk.grow(old, gk.GrowthSpec(d_model=new_d, method="masked"))
    assert new.cfg.d_model == new_d and new.tok_emb.weight.shape == (51, new_d)
    assert new.width_mask.tolist() == [1.0] * 20 + [0.0] * (new_d - 20)
    assert (new.lm_head.weight is new.tok_emb.weight) == tie
    assert fill_new_entries(new, record, keep_zeros=False) > 0
    assert gk.check_preserved(old, new, tokens(old)) < TOL64


def test_masked_preserves_in_float32(arch: str) -> None:
    old = tiny_model(arch).float().eval()
    new, record = gk.grow(old, gk.GrowthSpec(d_model=23, method="masked"))
    fill_new_entries(new, record, keep_zeros=False)
    x = tokens(old)
    with torch.no_grad():
        assert (old(x)[0] - new.eval()(x)[0]).abs().max() < 1e-5


def test_masked_bert_token_types_and_pooler() -> None:
    """Token types and the pooler's old output channels are exact too (its new outputs are no logits)."""
    old = tiny_model("bert", pooler=True)
    new, record = gk.grow(old, gk.GrowthSpec(d_model=23, method="masked"))
    fill_new_entries(new, record, keep_zeros=False)
    x = tokens(old)
    types = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1))
    assert gk.check_preserved(old, new, x, token_type_ids=types) < TOL64
    with torch.no_grad():
        pooled_old = old.pool(old.hidden_states(x, types))
        pooled_new = new.pool(new.hidden_states(x, types))
    assert (pooled_new[:, :20] - pooled_old).abs().max() < TOL64


def test_masked_ramp_and_fold(arch: str) -> None:
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(d_model=23, method="masked"))
    assert_ramp_and_fold(old, new, tokens(old))  # the mask-weighted norms at m = 1 are F.layer_norm / F.rms_norm
    assert new.width_mask is None


def test_masked_new_channels_get_gradients_once_c_is_positive(arch: str) -> None:
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(d_model=23, method="masked"))
    assert_masked_units_live(new, record)


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_zero_refused_for_layernorm(arch: str) -> None:
    with pytest.raises(gk.GrowkitError, match=r"zero-padded LayerNorm width cannot preserve the function.*use "
                                              r"masked or split"):
        gk.grow(tiny_model(arch), gk.GrowthSpec(d_model=40, method="zero"))


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("new_d", SIZES)
def test_zero_llama_preserves_with_garbage_in_the_random_side(new_d: int, tie: bool) -> None:
    old = tiny_model("llama", tie_embeddings=tie)
    new, record = gk.grow(old, gk.GrowthSpec(d_model=new_d, method="zero"))
    assert new.cfg.norm_eps == pytest.approx(1e-5 * 20 / new_d, rel=1e-15)
    assert new.width_mask is None
    # the stream's writers are zero on the new channels; the readers are random
    assert not new.tok_emb.weight[:, 20:].any() and not new.blocks[0].mlp.down.weight[20:].any()
    assert new.blocks[0].attn.q_proj.weight[:, 20:].abs().min() > 0
    if not tie:
        assert new.lm_head.weight[:, 20:].abs().min() > 0
    assert garbage_preserves(old, new, record, keep_zeros=True) < TOL64


def test_zero_record_scales_rmsnorm_gains() -> None:
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(d_model=23, method="zero"))
    for name in ("final_norm.weight", "blocks.1.attn_norm.weight", "blocks.2.mlp_norm.weight"):
        m = record[name]
        assert m.index[0].tolist() == [*range(20), -1, -1, -1]
        assert torch.allclose(m.scale[0][:20], torch.full((20,), math.sqrt(20 / 23), dtype=torch.float64))
        w = dict(new.named_parameters())[name]
        assert torch.equal(m.gather(dict(old.named_parameters())[name].detach(), fill=1.0), w.detach())
        assert w[20:].tolist() == [1.0, 1.0, 1.0]


def test_zero_new_channels_come_alive() -> None:
    """The zero side (the stream's writers) gets gradient at once; the readers see x_new = 0, so theirs is
    exactly 0 until one step has made the new channels non-zero; then every new entry learns."""
    new, record = gk.grow(tiny_model("llama", tie_embeddings=False), gk.GrowthSpec(d_model=23, method="zero"))
    writers = assert_zero_units_come_alive(new, record, zero_side=("o_proj.weight", "down.weight", "tok_emb.weight"),
                                           rest_blocked=True)
    assert len(writers) == 7, writers


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("new_d", [40, 60])
def test_split_preserves_for_multiples(arch: str, new_d: int, tie: bool) -> None:
    old = tiny_model(arch, tie_embeddings=tie, pooler=arch == "bert")
    new, record = gk.grow(old, gk.GrowthSpec(d_model=new_d, method="split"))
    assert (new.lm_head.weight is new.tok_emb.weight) == tie
    assert not any(record.new_entries(n, p.shape).any() for n, p in new.named_parameters())  # all copies
    x = tokens(old)
    assert gk.check_preserved(old, new, x) < TOL64
    if arch == "bert":  # the pooler's outputs are duplicated, each copy exact
        with torch.no_grad():
            pooled = old.pool(old.hidden_states(x))
            pooled_new = new.pool(new.hidden_states(x))
        for c in range(new_d // 20):
            assert (pooled_new[:, 20 * c:20 * (c + 1)] - pooled).abs().max() < TOL64


def test_split_refused_when_uneven(arch: str) -> None:
    with pytest.raises(gk.GrowkitError, match=r"split growth of d_model 20 → 23 .* multiple of 20 \(40, 60, 80, "
                                              r"…\); use one of those, or method 'masked'"):
        gk.grow(tiny_model(arch), gk.GrowthSpec(d_model=23, method="split"))


def test_split_duplicates_diverge_after_a_step(arch: str) -> None:
    new, _ = gk.grow(tiny_model(arch), gk.GrowthSpec(d_model=40, method="split"))
    assert_copies_diverge(new, new.blocks[0].attn.o_proj.weight, 20, 0)  # channel 20 is a copy of channel 0


@pytest.mark.parametrize("tie", [True, False])
def test_split_record_maps_copies_and_scales(arch: str, tie: bool) -> None:
    old = tiny_model(arch, tie_embeddings=tie)
    new, record = gk.grow(old, gk.GrowthSpec(d_model=60, method="split", noise=0.0))
    copies = [*range(20)] * 3
    emb, q = record["tok_emb.weight"], record["blocks.0.attn.q_proj.weight"]
    assert emb.index[1].tolist() == copies and emb.scale[1] is None and emb.index[0] is None
    assert q.index[1].tolist() == copies and torch.allclose(q.scale[1], torch.full((60,), 1 / 3, dtype=torch.float64))
    head_norm = "mlm_norm" if arch == "bert" else "final_norm"
    norm = record[f"{head_norm}.weight"]
    assert norm.index[0].tolist() == copies
    if tie:  # the tied head is not divided: the norm that feeds it is
        assert torch.allclose(norm.scale[0], torch.full((60,), 1 / 3, dtype=torch.float64))
        assert "lm_head.weight" not in record.maps
    else:
        assert norm.scale[0] is None
        assert torch.allclose(record["lm_head.weight"].scale[1], torch.full((60,), 1 / 3, dtype=torch.float64))
    # without noise, every tensor is exactly the record's gather of the old one
    old_params = dict(old.named_parameters())
    for name, p in new.named_parameters():
        if name == "lm_head.weight" and tie:
            continue
        assert torch.allclose(record[name].gather(old_params[name].detach()), p.detach(), atol=1e-15), name


def test_copy_is_approximate_and_reports_its_error(arch: str) -> None:
    """copy pads without any rescaling, so even zero padding is not exact: the zero channels shift every
    LayerNorm's mean and variance, and every RMSNorm's rms by √(20/23) (zero growth rescales; copy does not)."""
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(d_model=23, method="copy"))
    assert gk.check_preserved(old, new, tokens(old)) > 1e-3
    padded, _ = gk.grow(old, gk.GrowthSpec(d_model=23, method="copy", std=0.0))
    assert not padded.tok_emb.weight[:, 20:].any() and not padded.blocks[0].attn.q_proj.weight[:, 20:].any()
    assert gk.check_preserved(old, padded, tokens(old)) > 1e-3


@pytest.mark.parametrize(("arch", "method"), [(a, m) for a in ("gpt2", "bert", "llama") for m in ("masked", "split")]
                         + [("llama", "zero")])  # zero d_model growth is refused for LayerNorm archs
def test_composed_with_d_ff_growth(arch: str, method: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(d_model=40, d_ff=74, method=method))
    assert new.cfg.d_model == 40 and new.cfg.d_ff == 74
    assert new.blocks[1].mlp.up.weight.shape == (74, 40) and new.blocks[1].mlp.down.weight.shape == (40, 74)
    if method == "masked":
        assert new.blocks[1].mlp.ffn_mask.shape == (74,) and new.width_mask.shape == (40,)
    assert_strictly_preserved(old, new, record, method)


def _masked_ramped_to_one(arch: str) -> tuple[gk.Transformer, gk.Transformer]:
    """The tiny model, and it grown masked 20 → 23 with its new channels ramped to c = 1 (not folded)."""
    old = tiny_model(arch)
    mid, _ = gk.grow(old, gk.GrowthSpec(d_model=23, method="masked"))
    gk.ramp_masks(mid, 1.0)
    return old, mid


def test_growing_twice(arch: str) -> None:
    """masked 20 → 23, ramp to 1; grow again before folding (the mask of ones is widened), and after folding."""
    old, mid = _masked_ramped_to_one(arch)
    again, rec = gk.grow(mid, gk.GrowthSpec(d_model=29, method="masked"))
    assert again.width_mask.tolist() == [1.0] * 23 + [0.0] * 6
    assert garbage_preserves(mid, again, rec, keep_zeros=False) < TOL64
    gk.fold_masks(mid)
    method = "zero" if arch == "llama" else "split"
    final, rec = gk.grow(mid, gk.GrowthSpec(d_model=46, method=method))
    assert final.width_mask is None
    assert gk.check_preserved(mid, final, tokens(old)) < TOL64
    if arch == "llama":  # the eps rescale composes: 1e-5 · 20/23 · 23/46
        final2, _ = gk.grow(final, gk.GrowthSpec(d_model=50, method="zero"))
        assert final2.cfg.norm_eps == pytest.approx(1e-5 * 23 / 46 * 46 / 50, rel=1e-14)
        assert gk.check_preserved(mid, final2, tokens(old)) < TOL64


def test_split_with_unfolded_mask_of_ones(arch: str) -> None:
    old, mid = _masked_ramped_to_one(arch)
    new, _ = gk.grow(mid, gk.GrowthSpec(d_model=46, method="split"))
    assert new.width_mask.tolist() == [1.0] * 46
    assert gk.check_preserved(mid, new, tokens(old)) < TOL64


@pytest.mark.parametrize("method", ["masked", "split", "copy"])
def test_old_model_untouched_and_tie_kept(arch: str, method: str) -> None:
    old = tiny_model(arch)
    before = {n: p.clone() for n, p in old.state_dict().items()}
    new, _ = gk.grow(old, gk.GrowthSpec(d_model=40, method=method))
    assert new.lm_head.weight is new.tok_emb.weight
    with torch.no_grad():
        for p in new.parameters():
            p.add_(1.0)
    for n, p in old.state_dict().items():
        assert torch.equal(p, before[n]), n
    assert old.cfg.d_model == 20 and old.width_mask is None
    assert old.lm_head.weight is old.tok_emb.weight
