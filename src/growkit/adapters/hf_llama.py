"""Llama (``LlamaForCausalLM``) ↔ growkit ``arch="llama"``.

Pre-RMSNorm blocks, RoPE in the rotate-half convention on q and k, SwiGLU MLP
(``gate_proj``/``up_proj``/``down_proj`` → ``mlp.gate``/``mlp.up``/``mlp.down``), grouped-query attention,
tied or untied LM head. Weights are plain renames. transformers computes RMSNorm, softmax and RoPE in
float32 even in a float64 model, so the two agree to ~1e-6, not to float64 rounding.

Config mapping (both ways; every field written explicitly on the way out):

    num_hidden_layers ↔ n_layers   hidden_size ↔ d_model   num_attention_heads ↔ n_heads
    num_key_value_heads ↔ n_kv_heads   head_dim ↔ d_head (= d_head_v)   intermediate_size ↔ d_ff
    max_position_embeddings ↔ max_seq_len   vocab_size   rms_norm_eps ↔ norm_eps
    rope_theta (transformers 5: rope_parameters["rope_theta"]) ↔ rope_theta   hidden_act ↔ activation
    attention_bias = mlp_bias ↔ bias   attention_dropout ↔ dropout   initializer_range ↔ init_std
    tie_word_embeddings ↔ tie_embeddings (read from the model's actual tie)

Refused: RoPE scaling other than the default (linear, dynamic, yarn, llama3, ...), attention_bias ≠
mlp_bias (growkit has one ``bias`` switch); on the way out a value width ≠ query width (transformers'
Llama has one ``head_dim``) and a hidden size that is not a multiple of the head count (transformers
validates it).
"""

from __future__ import annotations

from typing import Any

from growkit.adapters._common import (
    Link,
    activation_from_hf,
    activation_to_hf,
    linear,
    norm,
    rename,
    token_id,
    transformers_major,
    transformers_module,
)
from growkit.config import TransformerConfig
from growkit.errors import GrowkitError

CLASSES = ("LlamaForCausalLM",)
MODEL_TYPE = "llama"


def _rope(c: Any) -> tuple[float, str]:
    """(theta, rope type) of a LlamaConfig in transformers 4 (rope_theta, rope_scaling) or 5 (rope_parameters)."""
    params = getattr(c, "rope_parameters", None)
    if isinstance(params, dict):
        kind = params.get("rope_type", params.get("type", "default"))
        return float(params.get("rope_theta", getattr(c, "rope_theta", 10000.0))), kind
    scaling = getattr(c, "rope_scaling", None) or {}
    return float(c.rope_theta), scaling.get("rope_type", scaling.get("type", "default"))


def config_from_hf(hf_model: Any) -> TransformerConfig:
    """The growkit config of a ``LlamaForCausalLM``."""
    c = hf_model.config
    theta, kind = _rope(c)
    if kind != "default":
        raise GrowkitError(f"LlamaForCausalLM with RoPE scaling {kind!r}: growkit computes plain RoPE "
                           f"(rope_type 'default') only")
    if bool(c.attention_bias) != bool(getattr(c, "mlp_bias", False)):
        raise GrowkitError(f"LlamaForCausalLM with attention_bias={c.attention_bias} but mlp_bias="
                           f"{getattr(c, 'mlp_bias', False)}: growkit has one bias switch for all projections")
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    tied = hf_model.get_output_embeddings().weight is hf_model.get_input_embeddings().weight
    return TransformerConfig(
        arch="llama", n_layers=c.num_hidden_layers, d_model=c.hidden_size, n_heads=c.num_attention_heads,
        n_kv_heads=c.num_key_value_heads or c.num_attention_heads, d_head=head_dim, d_head_v=head_dim,
        d_ff=c.intermediate_size, vocab_size=c.vocab_size, max_seq_len=c.max_position_embeddings,
        norm_eps=float(c.rms_norm_eps), dropout=float(c.attention_dropout or 0.0), tie_embeddings=tied,
        activation=activation_from_hf(c.hidden_act, "hidden_act", "LlamaForCausalLM"), rope_theta=theta,
        bias=bool(c.attention_bias), init_std=float(c.initializer_range))


def config_to_hf(cfg: TransformerConfig, class_name: str, base: dict[str, Any]) -> Any:
    """A ``LlamaConfig`` with every structural field set from ``cfg`` (the rest from ``base``)."""
    if cfg.d_head_v != cfg.d_head:
        raise GrowkitError(f"LlamaForCausalLM has one head_dim for queries, keys and values; this model has "
                           f"d_head={cfg.d_head}, d_head_v={cfg.d_head_v}: grow d_head_v and d_head together")
    if cfg.d_model % cfg.n_heads:
        raise GrowkitError(f"transformers' LlamaConfig requires hidden_size ({cfg.d_model}) to be a multiple of "
                           f"num_attention_heads ({cfg.n_heads}): pick d_model or n_heads so that it is")
    fields: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.d_head, hidden_act=activation_to_hf(cfg.activation, "gelu_pytorch_tanh", base, "hidden_act"),
        max_position_embeddings=cfg.max_seq_len, initializer_range=cfg.init_std, rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings, attention_bias=cfg.bias, mlp_bias=cfg.bias,
        attention_dropout=cfg.dropout, pretraining_tp=1,
        bos_token_id=token_id(base, "bos_token_id", 1, cfg.vocab_size),
        eos_token_id=token_id(base, "eos_token_id", 2, cfg.vocab_size))
    if transformers_major() >= 5:
        fields["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    else:
        fields.update(rope_theta=cfg.rope_theta, rope_scaling=None)
    return transformers_module().LlamaConfig.from_dict({**base, **fields})


def links(cfg: TransformerConfig, class_name: str) -> list[Link]:
    """growkit ↔ ``LlamaForCausalLM`` parameters (all plain renames)."""
    out = [rename("tok_emb.weight", "model.embed_tokens.weight")]
    for i in range(cfg.n_layers):
        g, h = f"blocks.{i}", f"model.layers.{i}"
        out += norm(f"{g}.attn_norm", f"{h}.input_layernorm", layernorm=False)
        for p in "qkvo":
            out += linear(f"{g}.attn.{p}_proj", f"{h}.self_attn.{p}_proj", bias=cfg.bias)
        out += norm(f"{g}.mlp_norm", f"{h}.post_attention_layernorm", layernorm=False)
        for gk, hf in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            out += linear(f"{g}.mlp.{gk}", f"{h}.mlp.{hf}", bias=cfg.bias)
    out += norm("final_norm", "model.norm", layernorm=False)
    if not cfg.tie_embeddings:
        out.append(rename("lm_head.weight", "lm_head.weight"))
    return out
