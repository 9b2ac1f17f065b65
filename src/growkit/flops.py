"""Training FLOPs per token, from a config — the convention of PaLM (Chowdhery et al. 2022, App. B)
and nanoGPT, generalised to separate query/key and value head widths:

    flops/token = 6 · N_matmul + 6 · n_layers · T · n_heads · (d_head + d_head_v)

- ``N_matmul`` counts the weights that take part in a matrix multiply for every token: the q, k, v and
  output projections, the MLP (two matrices, three for SwiGLU), the BERT MLM transform and the LM head
  (``d_model × vocab``, counted even when tied to the embedding, because it is a real matmul). Embedding
  look-ups, norms, biases and element-wise ops are not counted.
- The factor 6 is 2 (multiply + add) × 3 (forward, backward w.r.t. activations, backward w.r.t. weights).
- The attention term is Q·Kᵀ (2·T·d_head per head per token) plus A·V (2·T·d_head_v), times 3 for
  training. As in PaLM it is not halved for causal masking.

With embedding pooling by k (``Transformer.seq_pool``), the blocks process ⌈T/k⌉ positions per T
tokens: their matmuls cost 1/k per token and the attention term is that of length ⌈T/k⌉, over k; the
LM head (and MLM transform) still run on every token.

With sparsity, each weight matrix counts only its non-zero entries (``density``): the dense-equivalent
cost of a sparse matmul on hardware that skips zeros; the attention term stays dense.
"""

from __future__ import annotations

from collections.abc import Mapping

from growkit.config import TransformerConfig


def layer_matmul_params(cfg: TransformerConfig) -> dict[str, int]:
    """Weights of one layer that multiply every token, by projection name."""
    d = cfg.d_model
    sizes = {
        "attn.q_proj": d * cfg.q_width,
        "attn.k_proj": d * cfg.kv_width,
        "attn.v_proj": d * cfg.v_width,
        "attn.o_proj": cfg.o_width * d,
        "mlp.up": d * cfg.d_ff,
        "mlp.down": cfg.d_ff * d,
    }
    if cfg.gated_mlp:
        sizes["mlp.gate"] = d * cfg.d_ff
    return sizes


def matmul_params(cfg: TransformerConfig) -> int:
    """N_matmul: all layers, the MLM transform (bert) and the LM head."""
    head = cfg.d_model * cfg.vocab_size + (cfg.d_model**2 if cfg.arch == "bert" else 0)
    return cfg.n_layers * sum(layer_matmul_params(cfg).values()) + head


def attention_flops_per_token(cfg: TransformerConfig, seq_len: int) -> float:
    """Training FLOPs of the score and mixing matmuls, per token."""
    return 6.0 * cfg.n_layers * seq_len * cfg.n_heads * (cfg.d_head + cfg.d_head_v)


def training_flops_per_token(
    cfg: TransformerConfig, seq_len: int, density: float | Mapping[str, float] = 1.0, pool: int = 1
) -> float:
    """6·N_matmul + attention term. ``density``: one fraction for all layer weights, or a map from
    projection name (``"attn.q_proj"``, ``"mlp.up"`` …) to its fraction of non-zero weights. ``pool``:
    the embedding pooling factor k (layers and attention at ⌈T/k⌉ positions per T tokens)."""
    per_layer = layer_matmul_params(cfg)
    if isinstance(density, Mapping):
        dense_layer = sum(n * density.get(name, 1.0) for name, n in per_layer.items())
    else:
        dense_layer = density * sum(per_layer.values())
    head = matmul_params(cfg) - cfg.n_layers * sum(per_layer.values())
    pooled_len = -(-seq_len // pool)
    layers = cfg.n_layers * dense_layer * pooled_len / seq_len
    return 6.0 * (layers + head) + attention_flops_per_token(cfg, pooled_len) * pooled_len / seq_len
