"""from_hf / to_hf are exact both ways on tiny random models: logits in float64, weights bit for bit, configs
field by field, save_pretrained → from_pretrained with no missing or unexpected keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from growkit.adapters import from_hf, to_hf
from tests.adapters.conftest import (
    TOL,
    gk_logits,
    hf_logits,
    max_diff,
    rope_theta,
    tiny_gk,
    tiny_hf,
    tokens,
    transformers,
    type_ids,
)

ARCHS = ("gpt2", "bert", "llama")


def _types(arch: str) -> torch.Tensor | None:
    return type_ids() if arch == "bert" else None


@pytest.mark.parametrize("arch", ARCHS)
def test_from_hf_logits_equal(arch: str) -> None:
    hf = tiny_hf(arch)
    model = from_hf(hf)
    assert model.cfg.arch == arch and not model.training
    assert next(model.parameters()).dtype == torch.float64
    ids, tt = tokens(), _types(arch)
    assert max_diff(hf_logits(hf, ids, tt), gk_logits(model, ids, tt)) < TOL[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_to_hf_logits_equal(arch: str) -> None:
    model = tiny_gk(arch)
    hf = to_hf(model, attn_implementation="eager")
    assert type(hf).__name__ == {"gpt2": "GPT2LMHeadModel", "bert": "BertForMaskedLM",
                                 "llama": "LlamaForCausalLM"}[arch]
    assert not hf.training and next(hf.parameters()).dtype == torch.float64
    ids, tt = tokens(seed=3), _types(arch)
    assert max_diff(hf_logits(hf, ids, tt), gk_logits(model, ids, tt)) < TOL[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trips_are_bitwise(arch: str) -> None:
    hf = tiny_hf(arch, seed=4)
    back = to_hf(from_hf(hf), attn_implementation="eager")
    a, b = hf.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    model = tiny_gk(arch, seed=5)
    again = from_hf(to_hf(model))
    assert again.cfg == model.cfg
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("arch", ARCHS)
def test_no_shared_storage(arch: str) -> None:
    hf = tiny_hf(arch)
    model = from_hf(hf)
    hf_ptrs = {p.untyped_storage().data_ptr() for p in hf.parameters()}
    assert not hf_ptrs & {p.untyped_storage().data_ptr() for p in model.parameters()}
    out = to_hf(model)
    assert not {p.untyped_storage().data_ptr() for p in out.parameters()} & {
        p.untyped_storage().data_ptr() for p in model.parameters()}


def test_gpt2_config_fields_explicit() -> None:
    model = tiny_gk("gpt2", d_ff=53, activation="gelu", norm_eps=1e-6, dropout=0.05, init_std=0.03)
    c = to_hf(model).config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_inner, c.n_positions, c.vocab_size) == (2, 32, 4, 53, 40, 99)
    assert c.activation_function == "gelu" and c.layer_norm_epsilon == 1e-6 and c.initializer_range == 0.03
    assert c.resid_pdrop == c.embd_pdrop == c.attn_pdrop == 0.05
    assert c.tie_word_embeddings is True and c.scale_attn_weights is True
    assert c.bos_token_id is None  # 50256 is outside this vocabulary
    cfg = from_hf(tiny_hf("gpt2", n_inner=None, activation_function="gelu_pytorch_tanh")).cfg
    assert cfg.d_ff == 4 * 32 and cfg.activation == "gelu_tanh" and cfg.norm_eps == 1e-5


@pytest.mark.parametrize("act", ["gelu_new", "gelu_pytorch_tanh", "gelu", "relu"])
def test_gpt2_activations(act: str) -> None:
    hf = tiny_hf("gpt2", activation_function=act)
    model = from_hf(hf)
    ids = tokens()
    assert max_diff(hf_logits(hf, ids), gk_logits(model, ids)) < 1e-10
    # the base config's spelling of the same function is kept
    assert to_hf(model, base_config=hf.config).config.activation_function == act


def test_gpt2_untied() -> None:
    hf = tiny_hf("gpt2", tie_word_embeddings=False)
    assert hf.lm_head.weight is not hf.transformer.wte.weight
    model = from_hf(hf)
    assert model.cfg.tie_embeddings is False
    ids = tokens()
    assert max_diff(hf_logits(hf, ids), gk_logits(model, ids)) < 1e-10
    out = to_hf(model, attn_implementation="eager")
    assert out.lm_head.weight is not out.transformer.wte.weight
    assert max_diff(hf_logits(out, ids), gk_logits(model, ids)) < 1e-10


@pytest.mark.parametrize("tied", [True, False])
def test_llama_tied_and_untied(tied: bool) -> None:
    hf = tiny_hf("llama", tie_word_embeddings=tied, num_attention_heads=6, num_key_value_heads=2, hidden_size=36,
                 head_dim=10, rms_norm_eps=3e-6, rope_parameters={"rope_type": "default", "rope_theta": 777.0})
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) is tied
    model = from_hf(hf)
    cfg = model.cfg
    assert (cfg.tie_embeddings, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_head_v) == (tied, 6, 2, 10, 10)
    assert (cfg.rope_theta, cfg.norm_eps, cfg.bias) == (777.0, 3e-6, False)
    ids = tokens(length=23)
    assert max_diff(hf_logits(hf, ids), gk_logits(model, ids)) < 1e-6
    out = to_hf(model, attn_implementation="eager")
    assert (out.lm_head.weight is out.model.embed_tokens.weight) is tied
    c = out.config
    assert (c.head_dim, c.num_key_value_heads, c.rms_norm_eps, c.tie_word_embeddings) == (10, 2, 3e-6, tied)
    assert rope_theta(c) == 777.0
    assert max_diff(hf_logits(out, ids), gk_logits(model, ids)) < 1e-6


def test_llama_with_biases() -> None:
    hf = tiny_hf("llama", attention_bias=True, mlp_bias=True)
    model = from_hf(hf)
    assert model.cfg.bias is True
    ids = tokens()
    assert max_diff(hf_logits(hf, ids), gk_logits(model, ids)) < 1e-6
    c = to_hf(model).config
    assert c.attention_bias is True and c.mlp_bias is True


def test_bert_untied_mlm_head() -> None:
    hf = tiny_hf("bert", tie_word_embeddings=False)
    model = from_hf(hf)
    assert model.cfg.tie_embeddings is False
    ids, tt = tokens(), type_ids()
    assert max_diff(hf_logits(hf, ids, tt), gk_logits(model, ids, tt)) < 1e-10
    out = to_hf(model, attn_implementation="eager")
    assert max_diff(hf_logits(out, ids, tt), gk_logits(model, ids, tt)) < 1e-10


@torch.no_grad()
def test_bert_model_with_pooler() -> None:
    hf = tiny_hf("bert", cls="BertModel")
    model = from_hf(hf)
    assert model.cfg.pooler is True
    ids, tt = tokens(), type_ids()
    out = hf(input_ids=ids, token_type_ids=tt)
    h = model.hidden_states(ids, tt)
    assert max_diff(out.last_hidden_state, h) < 1e-10
    assert max_diff(out.pooler_output, model.pool(h)) < 1e-10
    back = to_hf(model, attn_implementation="eager")  # a pooler: BertModel by default
    assert type(back).__name__ == "BertModel" and back.pooler is not None
    assert back.state_dict().keys() == hf.state_dict().keys()
    assert max_diff(back(input_ids=ids, token_type_ids=tt).pooler_output, out.pooler_output) < 1e-10
    # and as an MLM model, the pooler left out with a warning
    with pytest.warns(UserWarning, match="pooler"):
        mlm = to_hf(model, "BertForMaskedLM")
    assert type(mlm).__name__ == "BertForMaskedLM"


def test_bert_model_without_pooler() -> None:
    hf = transformers.BertModel(tiny_hf("bert").config, add_pooling_layer=False).to(torch.float64).eval()
    model = from_hf(hf)
    assert model.cfg.pooler is False
    back = to_hf(model, "BertModel")
    assert back.pooler is None and back.state_dict().keys() == hf.state_dict().keys()


@pytest.mark.parametrize("arch,cls", [("gpt2", "GPT2LMHeadModel"), ("bert", "BertForMaskedLM"), ("bert", "BertModel"),
                                      ("llama", "LlamaForCausalLM")])
def test_save_pretrained_loads_cleanly(tmp_path: Path, arch: str, cls: str) -> None:
    model = tiny_gk(arch, pooler=cls == "BertModel") if arch == "bert" else tiny_gk(arch)
    hf = to_hf(model, cls)
    hf.save_pretrained(tmp_path)
    loaded, info = getattr(transformers, cls).from_pretrained(tmp_path, output_loading_info=True,
                                                              dtype=torch.float64, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, tt = tokens(), _types(arch)
    if cls == "BertModel":
        with torch.no_grad():
            ref = model.hidden_states(ids, tt)
            assert max_diff(loaded(input_ids=ids, token_type_ids=tt).last_hidden_state, ref) < 1e-10
    else:
        assert max_diff(hf_logits(loaded.eval(), ids, tt), gk_logits(model, ids, tt)) < TOL[arch]


def test_keeps_train_mode_and_dtype() -> None:
    hf = tiny_hf("gpt2").float().train()
    model = from_hf(hf)
    assert model.training and next(model.parameters()).dtype == torch.float32
    out = to_hf(model)
    assert out.training and next(out.parameters()).dtype == torch.float32


def test_global_rng_untouched() -> None:
    model, hf = tiny_gk("llama"), tiny_hf("bert", cls="BertModel")
    state = torch.get_rng_state()
    to_hf(model)
    from_hf(hf)  # a BertModel: the growkit MLM head is initialised with its own seed
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("tied", [True, False])
def test_llama_exact_without_hf_float32_islands(llama_float64: None, tied: bool) -> None:
    """The Llama tolerance (1e-6) is transformers' float32 RMSNorm / softmax / RoPE angles: lift them to
    float64 and both directions agree to float64 rounding."""
    hf = tiny_hf("llama", tie_word_embeddings=tied)
    model = from_hf(hf)
    ids = tokens(length=37)
    assert max_diff(hf_logits(hf, ids), gk_logits(model, ids)) < 1e-12
    other = tiny_gk("llama", seed=9, tie_embeddings=tied)
    out = to_hf(other, attn_implementation="eager")
    assert max_diff(hf_logits(out, ids), gk_logits(other, ids)) < 1e-12
