"""BERT (``BertForMaskedLM``, ``BertModel``) ↔ growkit ``arch="bert"``.

Post-LN blocks, learned positions and token types, embedding LayerNorm. ``BertForMaskedLM`` carries the
MLM head (``cls.predictions.transform.{dense, LayerNorm}`` → growkit ``mlm_dense`` / ``mlm_norm``, the
decoder → ``lm_head``, tied to the word embeddings unless ``tie_word_embeddings=False``, its bias
``cls.predictions.decoder.bias``, written to ``cls.predictions.bias`` as well) and no pooler;
``BertModel`` carries the pooler (growkit ``pooler``) and no MLM head. A growkit bert model always has an
MLM head: converted from a ``BertModel`` it gets a freshly initialised one (seeded, deterministic), which
an export to ``BertModel`` leaves out again.

Config mapping (both ways; every field written explicitly on the way out):

    num_hidden_layers ↔ n_layers   hidden_size ↔ d_model   num_attention_heads ↔ n_heads
    intermediate_size ↔ d_ff   max_position_embeddings ↔ max_seq_len   vocab_size   type_vocab_size
    layer_norm_eps ↔ norm_eps   initializer_range ↔ init_std   hidden_act ↔ activation
    hidden_dropout_prob ↔ dropout (attention_probs_dropout_prob is written equal to it)
    tie_word_embeddings ↔ tie_embeddings   a pooler ↔ pooler=True

Refused on the way in: decoders and cross-attention, relative position embeddings.
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

CLASSES = ("BertForMaskedLM", "BertModel")
MODEL_TYPE = "bert"


def _prefix(class_name: str) -> str:
    return "" if class_name == "BertModel" else "bert."


def config_from_hf(hf_model: Any) -> TransformerConfig:
    """The growkit config of a ``BertForMaskedLM`` or ``BertModel``."""
    c = hf_model.config
    name = type(hf_model).__name__
    if getattr(c, "is_decoder", False) or getattr(c, "add_cross_attention", False):
        raise GrowkitError(f"{name} configured as a decoder (is_decoder / add_cross_attention) has no growkit "
                           f"equivalent: growkit's bert is a bidirectional encoder")
    position = getattr(c, "position_embedding_type", "absolute")
    if position not in (None, "absolute"):
        raise GrowkitError(f"{name} with position_embedding_type={position!r}: growkit's bert has absolute "
                           f"learned positions only")
    base = getattr(hf_model, "bert", hf_model)
    out_emb = hf_model.get_output_embeddings() if hasattr(hf_model, "cls") else None
    tied = out_emb is None or out_emb.weight is hf_model.get_input_embeddings().weight
    return TransformerConfig(
        arch="bert", n_layers=c.num_hidden_layers, d_model=c.hidden_size, n_heads=c.num_attention_heads,
        d_ff=c.intermediate_size, vocab_size=c.vocab_size, max_seq_len=c.max_position_embeddings,
        norm_eps=float(c.layer_norm_eps), dropout=float(c.hidden_dropout_prob), tie_embeddings=tied,
        activation=activation_from_hf(c.hidden_act, "hidden_act", name), bias=True,
        type_vocab_size=c.type_vocab_size, pooler=getattr(base, "pooler", None) is not None,
        init_std=float(c.initializer_range))


def config_to_hf(cfg: TransformerConfig, class_name: str, base: dict[str, Any]) -> Any:
    """A ``BertConfig`` with every structural field set from ``cfg`` (the rest from ``base``)."""
    check_square_heads(cfg, class_name)
    if not cfg.bias:
        raise GrowkitError(f"{class_name} always has biases: this bert model has bias=False; keep it in growkit")
    fields = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, intermediate_size=cfg.d_ff,
        hidden_act=activation_to_hf(cfg.activation, "gelu_new", base, "hidden_act"),
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_seq_len, type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.init_std, layer_norm_eps=cfg.norm_eps, is_decoder=False, add_cross_attention=False,
        tie_word_embeddings=cfg.tie_embeddings, pad_token_id=token_id(base, "pad_token_id", 0, cfg.vocab_size))
    if transformers_module().__version__.startswith("4."):
        fields["position_embedding_type"] = "absolute"
    return transformers_module().BertConfig.from_dict({**base, **fields})


def build_kwargs(cfg: TransformerConfig, class_name: str) -> dict[str, Any]:
    """Constructor arguments beyond the config: ``BertModel`` gets a pooler iff the growkit model has one."""
    return {"add_pooling_layer": cfg.pooler} if class_name == "BertModel" else {}


def links(cfg: TransformerConfig, class_name: str) -> list[Link]:
    """growkit ↔ ``BertForMaskedLM`` / ``BertModel`` parameters (all plain renames)."""
    p = _prefix(class_name)
    out = [rename("tok_emb.weight", f"{p}embeddings.word_embeddings.weight"),
           rename("pos_emb.weight", f"{p}embeddings.position_embeddings.weight"),
           rename("type_emb.weight", f"{p}embeddings.token_type_embeddings.weight")]
    out += norm("emb_norm", f"{p}embeddings.LayerNorm", layernorm=True)
    for i in range(cfg.n_layers):
        g, h = f"blocks.{i}", f"{p}encoder.layer.{i}"
        out += linear(f"{g}.attn.q_proj", f"{h}.attention.self.query", bias=True)
        out += linear(f"{g}.attn.k_proj", f"{h}.attention.self.key", bias=True)
        out += linear(f"{g}.attn.v_proj", f"{h}.attention.self.value", bias=True)
        out += linear(f"{g}.attn.o_proj", f"{h}.attention.output.dense", bias=True)
        out += norm(f"{g}.attn_norm", f"{h}.attention.output.LayerNorm", layernorm=True)
        out += linear(f"{g}.mlp.up", f"{h}.intermediate.dense", bias=True)
        out += linear(f"{g}.mlp.down", f"{h}.output.dense", bias=True)
        out += norm(f"{g}.mlp_norm", f"{h}.output.LayerNorm", layernorm=True)
    if class_name == "BertModel":
        if cfg.pooler:
            out += linear("pooler", "pooler.dense", bias=True)
        return out
    out += linear("mlm_dense", "cls.predictions.transform.dense", bias=True)
    out += norm("mlm_norm", "cls.predictions.transform.LayerNorm", layernorm=True)
    out.append(rename("lm_head.bias", "cls.predictions.decoder.bias", also=("cls.predictions.bias",)))
    if not cfg.tie_embeddings:
        out.append(rename("lm_head.weight", "cls.predictions.decoder.weight"))
    return out
