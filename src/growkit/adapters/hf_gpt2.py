"""GPT-2 (``GPT2LMHeadModel``) ↔ growkit ``arch="gpt2"``.

GPT-2 stores its linear layers as ``Conv1D`` with weights of shape ``(in, out)`` — the transpose of
``nn.Linear`` — and fuses the query, key and value projections into one ``c_attn`` of width 3·d_model
(``[q | k | v]`` along the output axis). Both are undone here, so growkit sees plain ``q_proj``,
``k_proj``, ``v_proj``. GPT-2's head width is always ``n_embd / n_head``.

Config mapping (both ways; every field written explicitly on the way out):

    n_layer ↔ n_layers   n_embd ↔ d_model   n_head ↔ n_heads   n_inner ↔ d_ff (None on the way in: 4·n_embd)
    n_positions ↔ max_seq_len   vocab_size   layer_norm_epsilon ↔ norm_eps   initializer_range ↔ init_std
    activation_function ↔ activation (gelu_new / gelu_pytorch_tanh ↔ gelu_tanh)
    resid_pdrop ↔ dropout (embd_pdrop and attn_pdrop are written equal to it)
    tie_word_embeddings ↔ tie_embeddings (read from the model's actual tie)

Refused on the way in: cross-attention, ``scale_attn_weights=False``, ``scale_attn_by_inverse_layer_idx``.
"""

from __future__ import annotations

from typing import Any

from growkit.adapters._common import (
    Link,
    activation_from_hf,
    activation_to_hf,
    check_square_heads,
    linear,
    norm,
    rename,
    token_id,
    transformers_module,
)
from growkit.config import TransformerConfig
from growkit.errors import GrowkitError

CLASSES = ("GPT2LMHeadModel",)
MODEL_TYPE = "gpt2"


def config_from_hf(hf_model: Any) -> TransformerConfig:
    """The growkit config of a ``GPT2LMHeadModel``."""
    c = hf_model.config
    for field, bad, why in (("add_cross_attention", True, "cross-attention"),
                            ("scale_attn_weights", False, "unscaled attention scores"),
                            ("scale_attn_by_inverse_layer_idx", True, "scores scaled by 1/(layer index + 1)")):
        if getattr(c, field, not bad) == bad:
            raise GrowkitError(f"GPT2LMHeadModel with {field}={bad} ({why}) has no growkit equivalent")
    tied = hf_model.get_output_embeddings().weight is hf_model.get_input_embeddings().weight
    return TransformerConfig(
        arch="gpt2", n_layers=c.n_layer, d_model=c.n_embd, n_heads=c.n_head,
        d_ff=c.n_inner if c.n_inner is not None else 4 * c.n_embd,
        vocab_size=c.vocab_size, max_seq_len=c.n_positions, norm_eps=float(c.layer_norm_epsilon),
        dropout=float(c.resid_pdrop), tie_embeddings=tied,
        activation=activation_from_hf(c.activation_function, "activation_function", "GPT2LMHeadModel"),
        bias=True, init_std=float(c.initializer_range))


def config_to_hf(cfg: TransformerConfig, class_name: str, base: dict[str, Any]) -> Any:
    """A ``GPT2Config`` with every structural field set from ``cfg`` (the rest from ``base``)."""
    check_square_heads(cfg, "GPT2LMHeadModel")
    if not cfg.bias:
        raise GrowkitError("GPT2LMHeadModel always has biases: this gpt2 model has bias=False; keep it in growkit")
    fields = dict(
        vocab_size=cfg.vocab_size, n_positions=cfg.max_seq_len, n_embd=cfg.d_model, n_layer=cfg.n_layers,
        n_head=cfg.n_heads, n_inner=cfg.d_ff,
        activation_function=activation_to_hf(cfg.activation, "gelu_new", base, "activation_function"),
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        layer_norm_epsilon=cfg.norm_eps, initializer_range=cfg.init_std, scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False, add_cross_attention=False,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=token_id(base, "bos_token_id", 50256, cfg.vocab_size),
        eos_token_id=token_id(base, "eos_token_id", 50256, cfg.vocab_size))
    return transformers_module().GPT2Config.from_dict({**base, **fields})


def links(cfg: TransformerConfig, class_name: str) -> list[Link]:
    """growkit ↔ ``GPT2LMHeadModel`` parameters (Conv1D weights transposed, c_attn = [q | k | v])."""
    out = [rename("tok_emb.weight", "transformer.wte.weight"), rename("pos_emb.weight", "transformer.wpe.weight")]
    for i in range(cfg.n_layers):
        g, h = f"blocks.{i}", f"transformer.h.{i}"
        out += norm(f"{g}.attn_norm", f"{h}.ln_1", layernorm=True)
        qkv = tuple(f"{g}.attn.{p}_proj" for p in "qkv")
        out += [Link(tuple(f"{p}.weight" for p in qkv), f"{h}.attn.c_attn.weight", transpose=True),
                Link(tuple(f"{p}.bias" for p in qkv), f"{h}.attn.c_attn.bias")]
        out += linear(f"{g}.attn.o_proj", f"{h}.attn.c_proj", bias=True, transpose=True)
        out += norm(f"{g}.mlp_norm", f"{h}.ln_2", layernorm=True)
        out += linear(f"{g}.mlp.up", f"{h}.mlp.c_fc", bias=True, transpose=True)
        out += linear(f"{g}.mlp.down", f"{h}.mlp.c_proj", bias=True, transpose=True)
    out += norm("final_norm", "transformer.ln_f", layernorm=True)
    if not cfg.tie_embeddings:
        out.append(rename("lm_head.weight", "lm_head.weight"))
    return out
