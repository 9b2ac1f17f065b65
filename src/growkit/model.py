"""`growkit.Transformer`: the one reference model that every growth and sparsity operator edits.

Read it top to bottom: norms, rotary positions, attention, MLP, block, model. Plain PyTorch, with
``F.scaled_dot_product_attention`` for attention. Three families (see `TransformerConfig`):

    gpt2   h = x + attn(LN(x));  h = h + mlp(LN(h))         learned positions, GELU MLP, causal
    bert   h = LN(x + attn(x));  h = LN(h + mlp(h))         learned positions + token types, MLM head
    llama  h = x + attn(RMS(x)); h = h + swiglu(RMS(h))     RoPE on q, k; grouped-query attention

Growth masks (MSG, "masked" growth) are optional buffers, None on a plain model and created by
`growkit.grow`: ``width_mask`` (d_model, on the model: embeddings, every norm, every residual branch),
per block ``layer_gate`` (a scalar: the block computes ``g·block(x) + (1−g)·x``), per attention
``head_mask`` (n_heads × d_head_v, on the head outputs) and ``qk_mask`` (d_head, on the queries), per MLP
``ffn_mask`` (d_ff, on the hidden units). A mask is 1 on old units and c ∈ [0, 1] on new ones; at
c = 0 the new units contribute exactly nothing, whatever their weights.

Embedding pooling (CompoundGrow's input-length operator; ``model.seq_pool = k``, default 1: off): the
blocks run on a k× shorter sequence. The embeddings x (B, T, d) are shifted right by k − 1 (zeros in
front) and averaged over windows of k, so window j holds x[jk−k+1 … jk]; the blocks turn it into h_j,
which sees only x[≤ jk]; the output at position t is h_⌊t/k⌋ + x_t (repeated back to length T, with the
position's own embedding added, as in hourglass transformers). Position t thus reads only x[≤ t]: a
causal model stays causal. ``k = 1`` is the plain model, exactly; lowering k as training goes on is the
input-length growth (un-pooling). Learned positions are added before pooling; RoPE rotates the pooled
sequence by its own positions 0 … ⌈T/k⌉−1.

Parameter names are the contract the growth operators, checkpoints and HF adapters rely on:
``tok_emb, pos_emb, type_emb, emb_norm, blocks.{i}.{attn_norm, attn.{q,k,v,o}_proj, mlp_norm,
mlp.{gate, up, down}}, final_norm, mlm_dense, mlm_norm, lm_head, pooler``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from growkit import flops as _flops
from growkit.config import TransformerConfig
from growkit.errors import GrowkitError

_ACT = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "relu": F.relu,
}


MASK_NAMES = ("width_mask", "layer_gate", "head_mask", "qk_mask", "ffn_mask")


class Norm(nn.Module):
    """LayerNorm (weight and bias) or RMSNorm (weight only) over the last dimension.

    With a width mask m the statistics are mask-weighted and the output is masked:
    μ = Σmᵢxᵢ/Σmᵢ, σ² = Σmᵢ(xᵢ−μ)²/Σmᵢ (RMSNorm: σ² = Σmᵢxᵢ²/Σmᵢ), y = m ⊙ ((x−μ)/√(σ²+ε)·g + b).
    Where m is 0 on new channels this is exactly the old norm on the old channels (and 0 on the new);
    at m = 1 it is the plain norm.
    """

    def __init__(self, dim: int, kind: str, eps: float) -> None:
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if kind == "layernorm" else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            if self.kind == "layernorm":
                return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
            return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)
        m = mask.to(x.dtype)
        total = m.sum()
        if self.kind == "layernorm":
            x = x - (x * m).sum(-1, keepdim=True) / total
        y = x * torch.rsqrt((m * x * x).sum(-1, keepdim=True) / total + self.eps) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y * m


def rope_tables(seq_len: int, d_head: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin of shape (seq_len, d_head) for the rotate-half convention of Llama / HF.

    Channel pair (j, j + d_head/2) of position p is rotated by angle p · theta^(−2j/d_head).
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (B, H, T, d) queries or keys by position: x·cos + rotate_half(x)·sin."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections and grouped-query K/V.

    q: n_heads × d_head, k: n_kv_heads × d_head, v: n_kv_heads × d_head_v; query head h reads
    key/value head h // (n_heads / n_kv_heads). Scores are scaled by 1/√d_head.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, b = cfg.d_model, cfg.bias
        self.q_proj = nn.Linear(d, cfg.q_width, bias=b)
        self.k_proj = nn.Linear(d, cfg.kv_width, bias=b)
        self.v_proj = nn.Linear(d, cfg.v_width, bias=b)
        self.o_proj = nn.Linear(cfg.o_width, d, bias=b)
        self.register_buffer("head_mask", None)  # (n_heads, d_head_v) on head outputs, masked growth only
        self.register_buffer("qk_mask", None)  # (d_head,) on query channels, masked growth only

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        cfg = self.cfg
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, cfg.n_heads, cfg.d_head).transpose(1, 2)
        if self.qk_mask is not None:
            q = q * self.qk_mask.to(q.dtype)
        k = self.k_proj(x).view(B, T, cfg.n_kv_heads, cfg.d_head).transpose(1, 2)
        v = self.v_proj(x).view(B, T, cfg.n_kv_heads, cfg.d_head_v).transpose(1, 2)
        if rope is not None:
            cos, sin = rope[0][:T], rope[1][:T]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v,
            is_causal=cfg.causal,
            dropout_p=cfg.dropout if self.training else 0.0,
            enable_gqa=cfg.n_kv_heads != cfg.n_heads,
        )
        if self.head_mask is not None:
            y = y * self.head_mask.to(y.dtype)[:, None, :]
        return self.o_proj(y.transpose(1, 2).reshape(B, T, cfg.o_width))


class MLP(nn.Module):
    """``down(act(up(x)))``, or SwiGLU ``down(act(gate(x)) ⊙ up(x))`` for llama."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.act = _ACT[cfg.activation]
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias) if cfg.gated_mlp else None
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.register_buffer("ffn_mask", None)  # (d_ff,) on hidden units, masked growth only

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        if self.ffn_mask is not None:
            h = h * self.ffn_mask.to(h.dtype)
        return self.down(h)


class Block(nn.Module):
    """One transformer layer: pre-norm residual (gpt2, llama) or post-norm residual (bert).

    ``width`` is the model's width mask (or None): norms are mask-weighted and, in pre-norm blocks,
    each branch's output is masked before it joins the residual stream, so new channels stay 0.
    A block added by masked growth has a ``layer_gate`` g and computes g·block(x) + (1−g)·x.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.post_norm = cfg.arch == "bert"
        self.attn_norm = Norm(cfg.d_model, cfg.norm, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = Norm(cfg.d_model, cfg.norm, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("layer_gate", None)  # scalar, only on blocks added by masked growth

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, width: Tensor | None = None) -> Tensor:
        y = self._residual(x, rope, width)
        if self.layer_gate is None:
            return y
        g = self.layer_gate.to(x.dtype)
        return g * y + (1 - g) * x

    def _residual(self, x: Tensor, rope: tuple[Tensor, Tensor] | None, width: Tensor | None) -> Tensor:
        if self.post_norm:
            x = self.attn_norm(x + self.drop(self.attn(x, rope)), width)
            return self.mlp_norm(x + self.drop(self.mlp(x)), width)
        if width is None:
            x = x + self.drop(self.attn(self.attn_norm(x), rope))
            return x + self.drop(self.mlp(self.mlp_norm(x)))
        m = width.to(x.dtype)
        x = x + m * self.drop(self.attn(self.attn_norm(x, width), rope))
        return x + m * self.drop(self.mlp(self.mlp_norm(x, width)))


def pool_sequence(x: Tensor, k: int) -> Tensor:
    """(B, T, d) → (B, ⌈T/k⌉, d): window j is the mean of x[jk−k+1 … jk] (zeros before position 0),
    so it holds no position after jk."""
    B, T, d = x.shape
    n = -(-T // k)
    shifted = F.pad(x, (0, 0, k - 1, 0))[:, : n * k]
    return shifted.reshape(B, n, k, d).mean(dim=2)


class Transformer(nn.Module):
    """The reference model: ``model(tokens, targets=None, token_type_ids=None) -> (logits, loss)``.

    ``loss`` is the mean cross-entropy over positions whose target is not -100 (the MLM convention
    for unmasked positions), or None without targets. For causal archs ``targets`` are the inputs
    shifted by one (the data pipeline does the shift). With ``seed`` the initialisation is
    deterministic and leaves the global RNG untouched.
    """

    def __init__(self, cfg: TransformerConfig, seed: int | None = None) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        # nn.Linear / nn.Embedding draw their default init from the global RNG; with a seed that draw is
        # undone (init_weights overwrites every value with its own generator).
        cpu_rng = torch.get_rng_state() if seed is not None else None
        d = cfg.d_model
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, d) if cfg.positions == "learned" else None
        self.type_emb = nn.Embedding(cfg.type_vocab_size, d) if cfg.arch == "bert" else None
        self.emb_norm = Norm(d, cfg.norm, cfg.norm_eps) if cfg.arch == "bert" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = Norm(d, cfg.norm, cfg.norm_eps) if cfg.arch != "bert" else None
        self.mlm_dense = nn.Linear(d, d) if cfg.arch == "bert" else None
        self.mlm_norm = Norm(d, cfg.norm, cfg.norm_eps) if cfg.arch == "bert" else None
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=cfg.arch == "bert")
        self.pooler = nn.Linear(d, d) if cfg.pooler else None
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self._seq_pool = 1
        self.register_buffer("width_mask", None)  # (d_model,), masked growth of d_model only
        self.register_buffer("rope_cos", None, persistent=False)
        self.register_buffer("rope_sin", None, persistent=False)
        self.reset_buffers()
        self.init_weights(seed)
        if cpu_rng is not None:
            torch.set_rng_state(cpu_rng)

    # -- initialisation --------------------------------------------------------------------------
    def reset_buffers(self) -> None:
        """(Re)compute the derived, non-persistent buffers: the RoPE tables (on the weights' device)."""
        if self.cfg.positions == "rope":
            device = self.tok_emb.weight.device
            cos, sin = rope_tables(self.cfg.max_seq_len, self.cfg.d_head, self.cfg.rope_theta)
            self.rope_cos, self.rope_sin = cos.to(device), sin.to(device)

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """GPT-2 init: N(0, init_std) for matrices and embeddings, residual outputs (o_proj, down)
        scaled by 1/√(2·n_layers), zero biases, unit norm gains."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                scale = 1 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("o_proj.weight", "down.weight")) else 1
                p.copy_(torch.randn(p.shape, generator=gen) * (std * scale))
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()

    # -- forward -------------------------------------------------------------------------------
    def hidden_states(self, tokens: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Final hidden states (B, T, d_model), before the LM head."""
        cfg = self.cfg
        if tokens.ndim != 2:
            raise GrowkitError(f"tokens must have shape (batch, seq_len), got {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > cfg.max_seq_len:
            raise GrowkitError(
                f"sequence length {T} exceeds max_seq_len {cfg.max_seq_len}: shorten the input or grow "
                f"max_seq_len (gk.grow(model, gk.GrowthSpec(max_seq_len={T})))")
        x = self.tok_emb(tokens)
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[:T]
        if self.type_emb is not None:
            x = x + (self.type_emb(token_type_ids) if token_type_ids is not None else self.type_emb.weight[0])
        elif token_type_ids is not None:
            raise GrowkitError(f"token_type_ids are a BERT input; arch {cfg.arch!r} has no token types")
        width = self.width_mask
        if self.emb_norm is not None:
            x = self.emb_norm(x, width)
        elif width is not None:
            x = x * width.to(x.dtype)
        x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if self.rope_cos is not None else None
        k, embedded = self._seq_pool, x
        if k > 1:
            x = pool_sequence(x, k)
        for block in self.blocks:
            x = block(x, rope, width)
        if k > 1:
            x = x.repeat_interleave(k, dim=1)[:, :T] + embedded
        if self.final_norm is not None:
            x = self.final_norm(x, width)
        return x

    def forward(
        self, tokens: Tensor, targets: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        h = self.hidden_states(tokens, token_type_ids)
        if self.mlm_dense is not None:
            h = self.mlm_norm(_ACT[self.cfg.activation](self.mlm_dense(h)), self.width_mask)
        logits = self.lm_head(h)
        if targets is None:
            return logits, None
        # upcast half-precision logits for the loss, but never downcast float64
        wide = logits.to(torch.promote_types(logits.dtype, torch.float32))
        loss = F.cross_entropy(wide.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    def pool(self, hidden: Tensor) -> Tensor:
        """BERT pooler: tanh(W·h[CLS] + b) of the first position (requires ``pooler=True``)."""
        if self.pooler is None:
            raise GrowkitError("this model has no pooler: build it with TransformerConfig(pooler=True)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    @property
    def seq_pool(self) -> int:
        """Embedding pooling factor k (1: off): the blocks see ⌈T/k⌉ positions (see the module doc)."""
        return self._seq_pool

    @seq_pool.setter
    def seq_pool(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.cfg.max_seq_len:
            raise GrowkitError(f"seq_pool must be a whole number from 1 (no pooling) to max_seq_len "
                               f"{self.cfg.max_seq_len}, got {k!r}")
        self._seq_pool = k

    # -- growth masks --------------------------------------------------------------------------
    def masks(self) -> dict[str, Tensor]:
        """The growth masks present, by buffer name (empty on a plain model)."""
        return {n: b for n, b in self.named_buffers() if n.rsplit(".", 1)[-1] in MASK_NAMES}

    def attach_masks(self, tensors: dict[str, Tensor]) -> None:
        """Create the mask buffers named in ``tensors`` (e.g. a checkpoint's keys) with their values."""
        modules = dict(self.named_modules())
        for name, value in tensors.items():
            owner, _, leaf = name.rpartition(".")
            if leaf not in MASK_NAMES:
                continue
            if owner not in modules or leaf not in modules[owner]._buffers:
                raise GrowkitError(f"{name} is not a mask slot of this model: the checkpoint is of another model")
            setattr(modules[owner], leaf, value.detach().clone())

    # -- sizes ---------------------------------------------------------------------------------
    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (tied weights counted once); optionally without embedding tables."""
        params = dict(self.named_parameters())
        if exclude_embeddings:
            params = {n: p for n, p in params.items() if not n.endswith("_emb.weight")}
        return sum(p.numel() for p in params.values())

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token at this size (see `growkit.flops.training_flops_per_token`)."""
        return _flops.training_flops_per_token(self.cfg, seq_len or self.cfg.max_seq_len, pool=self.seq_pool)
