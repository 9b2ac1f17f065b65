"""n_heads (+ n_kv_heads) growth, every method, every arch; the GQA regroupings of llama."""

from __future__ import annotations

import pytest
import torch

import growkit as gk
from growkit.grow.heads import gqa_layout
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

#: per arch, the head growths to test: gpt2/bert (2 heads) by +1 and ×2.5 (split makes 3 copies of head 0);
#: llama (4 query heads on 2 KV heads): (a) inside the groups, (b) in proportion, (c) regrouped with
#: duplicated KV heads (4/2 → 4/4 is GQA → MHA; 4/2 → 6/6 adds two fresh KV heads as well).
GROWTHS: dict[str, list[dict[str, int]]] = {
    "gpt2": [dict(n_heads=3), dict(n_heads=5)],
    "bert": [dict(n_heads=3), dict(n_heads=5)],
    "llama": [dict(n_heads=6), dict(n_heads=10), dict(n_heads=8, n_kv_heads=4), dict(n_heads=4, n_kv_heads=4),
              dict(n_heads=6, n_kv_heads=6), dict(n_heads=12, n_kv_heads=3)],
}


def _growths(arch: str) -> list[dict[str, int]]:
    return GROWTHS[arch]


@pytest.mark.parametrize("method", ["masked", "zero", "split"])
def test_strict_methods_preserve_with_garbage(arch: str, method: str) -> None:
    for sizes in _growths(arch):
        old = tiny_model(arch)
        new, record = gk.grow(old, gk.GrowthSpec(**sizes, method=method))
        kv = sizes.get("n_kv_heads", old.cfg.n_kv_heads if arch == "llama" else sizes["n_heads"])
        assert (new.cfg.n_heads, new.cfg.n_kv_heads) == (sizes["n_heads"], kv)
        attn = new.blocks[0].attn
        assert attn.q_proj.weight.shape[0] == sizes["n_heads"] * new.cfg.d_head
        assert attn.k_proj.weight.shape[0] == kv * new.cfg.d_head
        assert attn.o_proj.weight.shape[1] == sizes["n_heads"] * new.cfg.d_head_v
        assert_strictly_preserved(old, new, record, method, msg=sizes)


@pytest.mark.parametrize("method", ["masked", "zero", "split"])
def test_strict_methods_preserve_in_float32(arch: str, method: str) -> None:
    old = tiny_model(arch).float()
    new, _ = gk.grow(old, gk.GrowthSpec(**_growths(arch)[0], method=method))
    assert new.blocks[0].attn.q_proj.weight.dtype == torch.float32
    assert gk.check_preserved(old, new, tokens(old)) < 1e-5


def test_copy_is_approximate_and_reports_its_error(arch: str) -> None:
    old = tiny_model(arch)
    sizes = _growths(arch)[0]
    new, _ = gk.grow(old, gk.GrowthSpec(**sizes, method="copy"))
    assert gk.check_preserved(old, new, tokens(old)) > 1e-6
    padded, _ = gk.grow(old, gk.GrowthSpec(**sizes, method="copy", std=0.0))  # zero padding: exact
    assert gk.check_preserved(old, padded, tokens(old)) < TOL64


def test_old_model_untouched(arch: str) -> None:
    old = tiny_model(arch)
    before = {n: p.clone() for n, p in old.state_dict().items()}
    new, _ = gk.grow(old, gk.GrowthSpec(**_growths(arch)[-1], method="split"))
    with torch.no_grad():
        for p in new.parameters():
            p.add_(1.0)
    assert all(torch.equal(p, before[n]) for n, p in old.state_dict().items())
    assert old.blocks[0].attn.head_mask is None


# -- GQA layouts ---------------------------------------------------------------------------------------


def test_layout_orders() -> None:
    q, kv = gqa_layout(4, 2, 6, 2, copy_q=False, copy_kv=False)  # (a): new heads inside each group
    assert q.tolist() == [0, 1, -1, 2, 3, -1] and kv.tolist() == [0, 1]
    q, kv = gqa_layout(4, 2, 8, 4, copy_q=False, copy_kv=False)  # (b): appended
    assert q.tolist() == [0, 1, 2, 3, -1, -1, -1, -1] and kv.tolist() == [0, 1, -1, -1]
    q, kv = gqa_layout(4, 2, 8, 4, copy_q=True, copy_kv=True)  # (b) split: fresh groups copy old groups
    assert q.tolist() == [0, 1, 2, 3, 0, 1, 2, 3] and kv.tolist() == [0, 1, 0, 1]
    q, kv = gqa_layout(4, 2, 4, 4, copy_q=False, copy_kv=False)  # (c) GQA → MHA: KV heads duplicated
    assert q.tolist() == [0, 1, 2, 3] and kv.tolist() == [0, 0, 1, 1]
    q, kv = gqa_layout(4, 2, 6, 6, copy_q=True, copy_kv=False)  # (c) + fresh KV heads
    assert q.tolist() == [0, 1, 2, 3, 0, 2] and kv.tolist() == [0, 0, 1, 1, 0, 1]
    q, kv = gqa_layout(2, 2, 5, 5, copy_q=True, copy_kv=True)  # gpt2/bert: Net2Net's cyclic copies
    assert q.tolist() == [0, 1, 0, 1, 0] and kv.tolist() == [0, 1, 0, 1, 0]


def _kv_of(cfg: gk.TransformerConfig, head: int) -> int:
    return head // (cfg.n_heads // cfg.n_kv_heads)


@pytest.mark.parametrize("method", ["masked", "zero", "split", "copy"])
def test_gqa_inside_groups_keeps_old_heads_on_their_kv_head(method: str) -> None:
    """(a) 4q/2kv → 6q/2kv: old head h moves to (h // 2)·3 + h % 2 and still reads KV head h // 2."""
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(n_heads=6, method=method))
    d = old.cfg.d_head
    q_ix = record["blocks.1.attn.q_proj.weight"].index[0]
    o_ix = record["blocks.1.attn.o_proj.weight"].index[1]
    for h in range(4):
        pos = (h // 2) * 3 + h % 2
        assert q_ix[pos * d:(pos + 1) * d].tolist() == list(range(h * d, (h + 1) * d))
        assert o_ix[pos * d:(pos + 1) * d].tolist() == list(range(h * d, (h + 1) * d))
        assert _kv_of(new.cfg, pos) == _kv_of(old.cfg, h)
    for pos, src in ((2, 0), (5, 2)):  # the new heads, one at the end of each group (split: copy its first head)
        expected = list(range(src * d, (src + 1) * d)) if method == "split" else [-1] * d
        assert q_ix[pos * d:(pos + 1) * d].tolist() == expected
    assert record["blocks.1.attn.k_proj.weight"].is_identity()
    assert record["blocks.1.attn.v_proj.weight"].is_identity()
    assert torch.equal(new.blocks[1].attn.k_proj.weight, old.blocks[1].attn.k_proj.weight)
    if method == "masked":
        assert new.blocks[1].attn.head_mask[:, 0].tolist() == [1, 1, 0, 1, 1, 0]


def test_gqa_in_proportion_appends_groups() -> None:
    """(b) 4q/2kv → 8q/4kv: old heads keep their index and KV head; new heads read the new KV heads."""
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(n_heads=8, n_kv_heads=4, method="masked"))
    d = old.cfg.d_head
    q_ix = record["blocks.0.attn.q_proj.weight"].index[0]
    k_ix = record["blocks.0.attn.k_proj.weight"].index[0]
    assert q_ix.tolist() == [*range(4 * d), *[-1] * 4 * d]
    assert k_ix.tolist() == [*range(2 * d), *[-1] * 2 * d]
    assert all(_kv_of(new.cfg, h) == _kv_of(old.cfg, h) for h in range(4))
    assert {_kv_of(new.cfg, h) for h in range(4, 8)} == {2, 3}
    assert new.blocks[0].attn.head_mask[:, 0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_gqa_split_in_proportion_copies_whole_groups() -> None:
    old = tiny_model("llama")
    new, _ = gk.grow(old, gk.GrowthSpec(n_heads=8, n_kv_heads=4, method="split"))
    a, d = new.blocks[0].attn, old.cfg.d_head
    assert torch.equal(a.q_proj.weight[4 * d:], a.q_proj.weight[:4 * d])
    assert torch.equal(a.k_proj.weight[2 * d:], a.k_proj.weight[:2 * d])
    assert torch.equal(a.v_proj.weight[2 * d:], a.v_proj.weight[:2 * d])
    halves = a.o_proj.weight[:, :4 * d] + a.o_proj.weight[:, 4 * d:]  # noise cancels in pairs of copies
    assert torch.allclose(halves, old.blocks[0].attn.o_proj.weight, atol=1e-14, rtol=0)


def test_gqa_to_more_kv_heads_duplicates_kv_exactly() -> None:
    """(c) 4q/2kv → 4q/4kv (multi-head attention): KV heads copied, nothing new, exact for every method."""
    old = tiny_model("llama")
    for method in ("masked", "zero", "split", "copy"):
        new, record = gk.grow(old, gk.GrowthSpec(n_kv_heads=4, method=method))
        assert (new.cfg.n_heads, new.cfg.n_kv_heads) == (4, 4)
        d = old.cfg.d_head
        k = record["blocks.2.attn.k_proj.weight"].index[0]
        assert k.tolist() == [*range(d), *range(d), *range(d, 2 * d), *range(d, 2 * d)]
        assert not any(record.new_entries(n, p.shape).any() for n, p in new.named_parameters())
        assert gk.check_preserved(old, new, tokens(old)) < TOL64
        assert new.blocks[0].attn.head_mask is None


@pytest.mark.parametrize(("kw", "sizes", "match"), [
    ({}, dict(n_heads=5), r"ungroupable GQA: .*n_heads \(5\) must be a multiple of n_kv_heads \(2\).*"
                          r"n_kv_heads in \[5\] with n_heads=5, or n_heads in \[6, 8, 10, 12\] with n_kv_heads=2"),
    ({}, dict(n_kv_heads=3), r"ungroupable GQA: .* n_heads in \[6, 9, 12, 15\] with n_kv_heads=3"),
    (dict(n_heads=8), dict(n_heads=9, n_kv_heads=3),
     r"ungroupable GQA: cannot grow 8 query heads on 2 KV heads to 9 on 3: .*need 2 KV heads each: 4 > 3.*"
     r"n_kv_heads in \[9\] with n_heads=9"),
])
def test_ungroupable_gqa_is_refused_naming_sizes_that_work(kw: dict, sizes: dict, match: str) -> None:
    with pytest.raises(gk.GrowkitError, match=match):
        gk.grow(tiny_model("llama", **kw), gk.GrowthSpec(**sizes))


def test_other_refusals() -> None:
    with pytest.raises(gk.GrowkitError, match=r"split n_heads makes new query heads copies.*not 'masked'"):
        gk.grow(tiny_model("llama"), gk.GrowthSpec(n_heads=8, n_kv_heads=4,
                                                   method={"n_heads": "split", "n_kv_heads": "masked"}))
    with pytest.raises(gk.GrowkitError, match="arch 'gpt2' has no grouped-query attention"):
        gk.grow(tiny_model("gpt2"), gk.GrowthSpec(n_heads=3, n_kv_heads=2))
    with pytest.raises(gk.GrowkitError, match="cannot grow n_kv_heads 2 → 1"):
        gk.grow(tiny_model("llama"), gk.GrowthSpec(n_kv_heads=1))


def test_kv_method_of_its_own() -> None:
    """Fresh KV heads follow n_kv_heads' method: split copies them, while new query heads stay masked."""
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(n_heads=8, n_kv_heads=4, method={"n_heads": "masked",
                                                                               "n_kv_heads": "split"}))
    assert record["blocks.0.attn.k_proj.weight"].index[0].tolist() == [*range(12), *range(12)]
    assert garbage_preserves(old, new, record, keep_zeros=False) < TOL64


# -- masks, liveness, divergence -------------------------------------------------------------------------


def test_masked_ramp_and_fold(arch: str) -> None:
    old = tiny_model(arch)
    new, _ = gk.grow(old, gk.GrowthSpec(**_growths(arch)[0], method="masked"))
    assert_ramp_and_fold(old, new, tokens(old))


def test_masked_new_heads_get_gradients_once_c_is_positive(arch: str) -> None:
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(**_growths(arch)[-1], method="masked"))
    assert_masked_units_live(new, record)


def test_zero_new_heads_come_alive(arch: str) -> None:
    new, record = gk.grow(tiny_model(arch), gk.GrowthSpec(**_growths(arch)[-1], method="zero"))
    assert_zero_units_come_alive(new, record, zero_side=("o_proj.weight",))


def test_split_copies_diverge_after_a_step(arch: str) -> None:
    old = tiny_model(arch)
    sizes = _growths(arch)[0]
    new, record = gk.grow(old, gk.GrowthSpec(**sizes, method="split"))
    d = new.cfg.d_head
    src = record["blocks.0.attn.q_proj.weight"].index[0].view(-1, d)[:, 0] // d
    copy = int((src == 0).nonzero()[1])  # the first copy of old head 0
    assert_copies_diverge(new, new.blocks[0].attn.q_proj.weight, slice(copy * d, (copy + 1) * d), slice(0, d))


def test_split_record_scales_o_proj_by_copies() -> None:
    _, record = gk.grow(tiny_model("gpt2"), gk.GrowthSpec(n_heads=5, method="split"))
    o = record["blocks.0.attn.o_proj.weight"]
    d = 10
    assert o.index[1].view(5, d)[:, 0].tolist() == [0, d, 0, d, 0]
    assert o.scale[1].view(5, d)[:, 0].tolist() == pytest.approx([1 / 3, 1 / 2, 1 / 3, 1 / 2, 1 / 3])


# -- composed and repeated growth ------------------------------------------------------------------------


def test_composed_heads_value_width_and_ffn_in_one_call(arch: str) -> None:
    old = tiny_model(arch)
    sizes = dict(_growths(arch)[0], d_head_v=old.cfg.d_head_v + 3, d_ff=45)
    new, record = gk.grow(old, gk.GrowthSpec(**sizes, method="masked"))
    cfg = new.cfg
    assert (cfg.n_heads, cfg.d_head_v, cfg.d_ff) == (sizes["n_heads"], sizes["d_head_v"], 45)
    assert new.blocks[0].attn.head_mask.shape == (cfg.n_heads, cfg.d_head_v)
    x = tokens(old)
    assert garbage_preserves(old, new, record, keep_zeros=False) < TOL64
    assert_fold_keeps_logits(new, x)


def test_composed_value_width_keeps_new_heads_masked() -> None:
    """n_heads masked then d_head_v zero in one call: a new head's new value channels stay masked too."""
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(n_heads=6, d_head_v=8, method={"n_heads": "masked",
                                                                            "d_head_v": "zero"}))
    mask = new.blocks[0].attn.head_mask
    assert mask.shape == (6, 8) and mask[[2, 5]].eq(0).all() and mask[[0, 1, 3, 4]].eq(1).all()
    assert garbage_preserves(old, new, record, keep_zeros=True) < TOL64


def test_growing_twice(arch: str) -> None:
    old = tiny_model(arch)
    first, _ = gk.grow(old, gk.GrowthSpec(**_growths(arch)[0], method="masked"))
    gk.ramp_masks(first, 1.0)
    gk.fold_masks(first)
    n = first.cfg.n_heads
    kv = first.cfg.n_kv_heads
    second, record = gk.grow(first, gk.GrowthSpec(n_heads=2 * n, n_kv_heads=2 * kv, method="zero"))
    assert (second.cfg.n_heads, second.cfg.n_kv_heads) == (2 * n, 2 * kv)
    assert garbage_preserves(first, second, record, keep_zeros=True) < TOL64
    third, _ = gk.grow(second, gk.GrowthSpec(n_heads=2 * n + 2 * kv, method="split"))  # one more head per group
    assert gk.check_preserved(first, third, tokens(first)) < TOL64
