"""Bad input: one clear GrowkitError naming the alternative."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import growkit as gk
from growkit.adapters import from_hf, to_hf
from tests.adapters.conftest import hf_config, tiny_gk, tiny_hf, transformers


def test_unsupported_class_names_the_supported_ones() -> None:
    for model in (transformers.GPT2Model(hf_config("gpt2")), transformers.LlamaModel(hf_config("llama"))):
        with pytest.raises(gk.GrowkitError, match=r"no growkit adapter for .*GPT2LMHeadModel.*LlamaForCausalLM"):
            from_hf(model)
    with pytest.raises(gk.GrowkitError, match="no growkit adapter for Linear"):
        from_hf(torch.nn.Linear(2, 2))


def test_subclass_of_a_supported_class_converts() -> None:
    class MyLlama(transformers.LlamaForCausalLM):
        pass

    model = from_hf(MyLlama(hf_config("llama")))
    assert model.cfg.arch == "llama"
    assert type(to_hf(model, MyLlama)) is MyLlama


@pytest.mark.parametrize("arch,overrides,match", [
    ("gpt2", dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
    ("gpt2", dict(scale_attn_weights=False), "unscaled"),
    ("gpt2", dict(activation_function="gelu_fast"), r"gelu_fast.*no exact growkit activation"),
    ("bert", dict(is_decoder=True), "decoder"),
    ("llama", dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}), "RoPE scaling 'linear'"),
    ("llama", dict(attention_bias=True, mlp_bias=False), "one bias switch"),
])
def test_config_growkit_cannot_represent(arch: str, overrides: dict, match: str) -> None:
    with pytest.raises(gk.GrowkitError, match=match):
        from_hf(tiny_hf(arch, **overrides))


def test_quantized_weights_refused() -> None:
    hf = tiny_hf("gpt2")
    hf.transformer.ln_f.weight = torch.nn.Parameter(torch.ones(32, dtype=torch.int8), requires_grad=False)
    with pytest.raises(gk.GrowkitError, match="quantized"):
        from_hf(hf)


def test_export_with_masks_refused() -> None:
    big, _ = gk.grow(tiny_gk("gpt2"), gk.GrowthSpec(n_layers=3, method="masked"))
    with pytest.raises(gk.GrowkitError, match=r"gk.ramp_masks\(model, 1.0\); gk.fold_masks\(model\)"):
        to_hf(big)


def test_export_of_a_pooled_model_refused() -> None:
    model = tiny_gk("llama")
    model.seq_pool = 2
    with pytest.raises(gk.GrowkitError, match=r"pools its embeddings by 2.*set model.seq_pool = 1"):
        to_hf(model)


def test_export_gpt2_bert_need_square_heads() -> None:
    big, _ = gk.grow(tiny_gk("gpt2"), gk.GrowthSpec(d_model=64, method="split"))  # n_heads still 4, d_head 8
    with pytest.raises(gk.GrowkitError, match=r"grow n_heads together with d_model"):
        to_hf(big)
    big, _ = gk.grow(tiny_gk("bert"), gk.GrowthSpec(d_head_v=16, method="zero"))
    with pytest.raises(gk.GrowkitError, match="head width"):
        to_hf(big)


def test_export_llama_value_width_and_divisibility() -> None:
    big, _ = gk.grow(tiny_gk("llama"), gk.GrowthSpec(d_head_v=16, method="zero"))
    with pytest.raises(gk.GrowkitError, match="one head_dim"):
        to_hf(big)
    big, _ = gk.grow(tiny_gk("llama"), gk.GrowthSpec(n_heads=6, n_kv_heads=3, method="zero"))  # 6 · 8 ≠ 32
    with pytest.raises(gk.GrowkitError, match=r"multiple of\s+num_attention_heads"):
        to_hf(big)


def test_export_class_must_fit_the_arch() -> None:
    with pytest.raises(gk.GrowkitError, match="exports as LlamaForCausalLM, not GPT2LMHeadModel"):
        to_hf(tiny_gk("llama"), "GPT2LMHeadModel")
    with pytest.raises(gk.GrowkitError, match=r"takes a growkit\.Transformer"):
        to_hf(tiny_hf("gpt2"))
    with pytest.raises(gk.GrowkitError, match="'bert' config"):
        to_hf(tiny_gk("gpt2"), base_config=hf_config("bert"))


def test_grow_on_an_hf_model_points_to_from_hf() -> None:
    with pytest.raises(gk.GrowkitError, match="from_hf"):
        gk.grow(tiny_hf("gpt2"), gk.GrowthSpec(d_ff=64))


def test_head_dim_growth_on_rope_names_the_alternatives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from growkit.cli import main

    hf = tiny_hf("llama")  # d_head 8
    with pytest.raises(gk.GrowkitError, match=r"q/k width growth under RoPE: d_head 8 → 12 .*multiple of 8 "
                                              r"\(16, 24, …\).*grow n_heads instead"):
        gk.grow(from_hf(hf), gk.GrowthSpec(d_head=12, method="zero"))
    with pytest.raises(gk.GrowkitError, match=r"under RoPE cannot be split.*grow n_heads instead"):
        gk.grow(from_hf(hf), gk.GrowthSpec(d_head=16, method="split"))
    hf.save_pretrained(tmp_path / "small")
    assert main(["grow", "--hf", str(tmp_path / "small"), "--to", "d_head=12", "--method", "zero",
                 "--out", str(tmp_path / "o")]) == 2
    assert "grow n_heads instead" in capsys.readouterr().err and not (tmp_path / "o").exists()
