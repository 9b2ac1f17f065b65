"""HF model → from_hf → grow (strict methods) → to_hf computes what the HF model computed before growing;
greedy generation with the KV cache equals generation without it and the pre-growth model's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import growkit as gk
from growkit.adapters import from_hf, to_hf
from tests.adapters.conftest import TOL, hf_logits, max_diff, tiny_hf, tokens, transformers, type_ids

GROWTHS = [
    pytest.param("gpt2", dict(d_ff=64, n_layers=3, d_model=64, n_heads=8, method={"n_layers": "zero", "*": "split"}),
                 id="gpt2-split-zero"),
    pytest.param("gpt2", dict(d_ff=50, n_layers=4, method="zero", depth_placement="interleave"), id="gpt2-zero"),
    pytest.param("bert", dict(d_ff=50, d_model=64, n_heads=8, method={"d_ff": "zero", "*": "split"}),
                 id="bert-split-zero"),
    pytest.param("llama", dict(d_ff=48, n_layers=3, d_model=48, n_heads=6, n_kv_heads=3, method="zero"),
                 id="llama-zero"),
    pytest.param("llama", dict(d_ff=74, d_model=64, n_heads=8, n_kv_heads=4, n_layers=4,
                               method={"n_layers": "zero", "*": "split"}), id="llama-split"),
]


def _grow_export(hf: Any, spec: dict[str, Any]) -> tuple[Any, gk.Transformer]:
    big, _ = gk.grow(from_hf(hf), gk.GrowthSpec(**spec))
    return to_hf(big, base_config=hf.config, attn_implementation="eager"), big


@pytest.mark.parametrize("arch,spec", GROWTHS)
def test_grown_export_preserves_logits(arch: str, spec: dict[str, Any]) -> None:
    hf = tiny_hf(arch, seed=7)
    out, big = _grow_export(hf, spec)
    for dim, size in spec.items():
        if dim not in ("method", "depth_placement"):
            assert getattr(big.cfg, dim) == size
    ids = tokens(seed=2, length=17)
    tt = type_ids(length=17) if arch == "bert" else None
    assert max_diff(hf_logits(hf, ids, tt), hf_logits(out, ids, tt)) < TOL[arch]
    assert out.config.tie_word_embeddings == hf.config.tie_word_embeddings
    if arch == "gpt2":
        assert out.lm_head.weight is out.transformer.wte.weight  # split halves ln_f instead of untying
        assert out.config.n_inner == spec["d_ff"]
    if arch == "llama":
        assert [layer.self_attn.layer_idx for layer in out.model.layers] == list(range(big.cfg.n_layers))


def test_grown_export_saves_and_loads(tmp_path: Path) -> None:
    hf = tiny_hf("llama", seed=3, tie_word_embeddings=True)
    out, _ = _grow_export(hf, dict(d_ff=48, n_layers=3, d_model=48, n_heads=6, n_kv_heads=3, method="zero"))
    out.save_pretrained(tmp_path)
    loaded, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True,
                                                                 dtype=torch.float64, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = tokens(length=13)
    assert max_diff(hf_logits(hf, ids), hf_logits(loaded.eval(), ids)) < 1e-6


@torch.no_grad()
@pytest.mark.parametrize("tied", [True, False])
def test_generate_kv_cache_equals_no_cache(tied: bool) -> None:
    hf = tiny_hf("llama", seed=11, tie_word_embeddings=tied, eos_token_id=None, pad_token_id=0, bos_token_id=None)
    out, _ = _grow_export(hf, dict(d_ff=48, n_layers=4, d_model=48, n_heads=6, n_kv_heads=3, method="zero",
                                   depth_placement="interleave"))
    ids = tokens(seed=5, batch=1, length=7)
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    cached = out.generate(ids, use_cache=True, **kw)
    uncached = out.generate(ids, use_cache=False, **kw)
    before = hf.generate(ids, use_cache=True, **kw)
    assert cached.shape == (1, 19)
    assert torch.equal(cached, uncached) and torch.equal(cached, before)


def test_gpt2_generate_after_growth() -> None:
    hf = tiny_hf("gpt2", seed=12)
    out, _ = _grow_export(hf, dict(d_ff=64, n_layers=3, method="zero"))
    ids = tokens(seed=6, batch=1, length=5)
    kw = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        a, b = out.generate(ids, use_cache=True, **kw), out.generate(ids, use_cache=False, **kw)
        assert torch.equal(a, b) and torch.equal(a, hf.generate(ids, **kw))


def test_masked_growth_must_be_folded_before_export() -> None:
    hf = tiny_hf("llama", seed=1)
    big, _ = gk.grow(from_hf(hf), gk.GrowthSpec(d_ff=48, n_layers=3, method="masked"))
    with pytest.raises(gk.GrowkitError, match=r"growth masks .*fold"):
        to_hf(big)
    gk.ramp_masks(big, 1.0)
    gk.fold_masks(big)
    out = to_hf(big, attn_implementation="eager")
    ids = tokens()
    with torch.no_grad():
        assert max_diff(hf_logits(out, ids), big(ids)[0]) < 1e-6
