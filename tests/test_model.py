"""`growkit.Transformer`: shapes, gradients, causality, float64 reference checks, init, sizes.

Sizes are tiny and odd (d_model 20, d_ff 37, vocab 51, 2–6 heads) so that code assuming
``d_ff = 4·d_model`` or ``d_head · n_heads = d_model`` fails here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

import growkit as gk
from growkit.config import ARCHS, TransformerConfig
from growkit.model import Attention, apply_rope, rope_tables

V, S = 51, 16  # vocab size, max_seq_len
BASE: dict[str, Any] = {"n_layers": 2, "d_model": 20, "n_heads": 2, "d_ff": 37, "vocab_size": V, "max_seq_len": S}

# name -> config overrides; covers every arch, GQA, d_head_v != d_head, q_width != d_model, tied and untied
CASES: dict[str, dict[str, Any]] = {
    "gpt2": {"arch": "gpt2"},
    "gpt2-untied-3heads": {"arch": "gpt2", "n_heads": 3, "d_head": 6, "d_head_v": 7, "tie_embeddings": False},
    "gpt2-relu": {"arch": "gpt2", "activation": "relu"},
    "bert": {"arch": "bert", "pooler": True},
    "bert-untied-dv": {"arch": "bert", "d_head_v": 7, "tie_embeddings": False, "type_vocab_size": 3},
    "llama-gqa": {"arch": "llama", "n_heads": 6, "n_kv_heads": 2, "d_head": 4},
    "llama-gqa-untied-dv": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2, "d_head": 6, "d_head_v": 5,
                            "tie_embeddings": False},
    "llama-mqa": {"arch": "llama", "n_heads": 3, "n_kv_heads": 1, "d_head": 8, "d_head_v": 3},
    "llama-mha": {"arch": "llama", "n_heads": 2, "tie_embeddings": False},
}
CAUSAL = [k for k, v in CASES.items() if v["arch"] != "bert"]


def make_cfg(case: str, **kw: Any) -> TransformerConfig:
    """The config of a named case, with extra overrides."""
    return TransformerConfig(**{**BASE, **CASES[case], **kw})


def make(case: str, seed: int = 0, **kw: Any) -> gk.Transformer:
    """A seeded model of a named case in eval mode."""
    return gk.Transformer(make_cfg(case, **kw), seed=seed).eval()


def tokens(b: int, t: int, seed: int = 0) -> Tensor:
    """Random token ids (b, t)."""
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def scramble(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter O(1)-effect random values (norm gains near 1, nonzero biases), so each
    component visibly changes the output and a wrong formula cannot hide under a small init."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
        if p.ndim >= 2:
            p.copy_(noise * 1.5 / math.sqrt(p.shape[-1]))
        elif name.endswith("weight"):
            p.copy_(1 + 0.3 * noise)
        else:
            p.copy_(0.3 * noise)
    return model


# -- forward / backward ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_forward_shapes_and_loss(case: str) -> None:
    model = make(case)
    x = tokens(3, 11)
    logits, loss = model(x)
    assert logits.shape == (3, 11, V)
    assert loss is None
    logits2, loss = model(x, tokens(3, 11, seed=1))
    assert torch.equal(logits, logits2)
    assert loss is not None and loss.ndim == 0 and torch.isfinite(loss)
    # a fresh model predicts near-uniformly
    assert abs(loss.item() - math.log(V)) < 0.5
    assert model.hidden_states(x).shape == (3, 11, 20)


@pytest.mark.parametrize("case", CASES)
def test_gradients_reach_every_parameter(case: str) -> None:
    model = make(case).train()
    cfg = model.cfg
    x, y = tokens(2, S), tokens(2, S, seed=1)  # full length: every position row gets a gradient
    tt = torch.randint(0, cfg.type_vocab_size, x.shape, generator=torch.Generator().manual_seed(2))
    if cfg.arch == "bert":
        tt[:, : cfg.type_vocab_size] = torch.arange(cfg.type_vocab_size)  # every type row is used
        _, loss = model(x, y, token_type_ids=tt)
        if cfg.pooler:
            loss = loss + model.pool(model.hidden_states(x, tt)).sum()
    else:
        _, loss = model(x, y)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("case", ["gpt2", "bert", "llama-gqa"])
def test_ignore_index(case: str) -> None:
    model = make(case)
    x, y = tokens(2, 9), tokens(2, 9, seed=1)
    keep = torch.rand(2, 9, generator=torch.Generator().manual_seed(3)) < 0.4
    keep[0, 0] = True
    y_masked = torch.where(keep, y, torch.full_like(y, -100))
    logits, loss = model(x, y_masked)
    want = F.cross_entropy(logits[keep], y[keep])
    torch.testing.assert_close(loss, want)
    _, full = model(x, y)
    assert not torch.allclose(loss, full)
    # what stands at an ignored position does not matter, for the loss or for its gradient
    _, loss_other = model(x, torch.where(keep, y, torch.full_like(y, -100)))
    torch.testing.assert_close(loss_other, loss)


def test_ignore_index_gradient_is_zero_at_ignored_positions() -> None:
    model = make("gpt2").double()
    x, y = tokens(1, 8), tokens(1, 8, seed=1)
    y[0, 4:] = -100
    logits, _ = model(x)
    logits = logits.detach().requires_grad_(True)
    F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100).backward()
    assert logits.grad is not None and logits.grad[0, 4:].abs().max() == 0
    # the model's own loss is the same function
    _, loss = model(x, y)
    want = F.cross_entropy(logits.detach()[0, :4], y[0, :4])
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-12)
    assert loss.dtype == torch.float64  # the loss is not downcast


def test_loss_upcasts_half_precision_logits() -> None:
    model = make("gpt2").to(torch.bfloat16)
    x = tokens(2, 5)
    _, loss = model(x, x)
    assert loss is not None and loss.dtype == torch.float32


def test_dropout_only_in_training() -> None:
    model = make("gpt2", dropout=0.3)
    x = tokens(2, 8)
    torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
    model.train()
    torch.manual_seed(0)
    a = model(x)[0]
    b = model(x)[0]
    assert not torch.allclose(a, b)


# -- causality --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_causality(case: str) -> None:
    model = scramble(make(case).double())
    x = tokens(2, 12)
    t = 6
    x2 = x.clone()
    x2[:, t] = (x2[:, t] + 7) % V
    a, b = model(x)[0], model(x2)[0]
    if model.cfg.causal:
        torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-12)
        assert (a[:, t:] - b[:, t:]).abs().amax(-1).min() > 1e-6  # every later position sees it
    else:
        assert (a[:, :t] - b[:, :t]).abs().amax(-1).min() > 1e-6  # bert: earlier positions see it too


# -- float64 reference ------------------------------------------------------------------------------
def ref_norm(x: Tensor, kind: str, w: Tensor, b: Tensor | None, eps: float) -> Tensor:
    """LayerNorm (biased variance) or RMSNorm, written from the formulas."""
    if kind == "layernorm":
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * w + b
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * w


def ref_act(x: Tensor, name: str) -> Tensor:
    """Activations from their formulas."""
    if name == "gelu":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if name == "silu":
        return x / (1 + torch.exp(-x))
    assert name == "relu"
    return x.clamp_min(0)


def ref_rope(x: Tensor, theta: float) -> Tensor:
    """Rotary embedding of (B, H, T, d) as complex rotation: channel pair (j, j + d/2) is the complex
    number x_j + i·x_{j+d/2}, multiplied by exp(i · p · theta^(−2j/d)) at position p."""
    d, t = x.shape[-1], x.shape[-2]
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :])
    freq = theta ** (-torch.arange(d // 2, dtype=torch.float64) * 2 / d)
    rot = torch.polar(torch.ones(t, d // 2, dtype=torch.float64), torch.arange(t, dtype=torch.float64)[:, None] * freq)
    z = z * rot
    return torch.cat([z.real, z.imag], dim=-1)


def ref_attention(
    x: Tensor, p: dict[str, Tensor], pre: str, cfg: TransformerConfig, rope: bool
) -> Tensor:
    """softmax(Q Kᵀ / √d_head) V per query head, head h reading K/V head h // (n_heads / n_kv_heads)."""
    b_, t, _ = x.shape

    def lin(name: str, inp: Tensor) -> Tensor:
        bias = p.get(f"{pre}{name}.bias")
        out = inp @ p[f"{pre}{name}.weight"].T
        return out + bias if bias is not None else out

    q = lin("q_proj", x).view(b_, t, cfg.n_heads, cfg.d_head).transpose(1, 2)
    k = lin("k_proj", x).view(b_, t, cfg.n_kv_heads, cfg.d_head).transpose(1, 2)
    v = lin("v_proj", x).view(b_, t, cfg.n_kv_heads, cfg.d_head_v).transpose(1, 2)
    if rope:
        q, k = ref_rope(q, cfg.rope_theta), ref_rope(k, cfg.rope_theta)
    group = cfg.n_heads // cfg.n_kv_heads
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)
    if cfg.causal:
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v
    return lin("o_proj", y.transpose(1, 2).reshape(b_, t, cfg.o_width))


def ref_forward(model: gk.Transformer, x: Tensor, tt: Tensor | None = None) -> Tensor:
    """Logits of ``model`` recomputed from its state_dict with plain formulas (no growkit code)."""
    cfg = model.cfg
    p = {k: v.detach() for k, v in model.state_dict().items()}
    eps = cfg.norm_eps

    def lin(name: str, inp: Tensor) -> Tensor:
        out = inp @ p[f"{name}.weight"].T
        return out + p[f"{name}.bias"] if f"{name}.bias" in p else out

    def norm(name: str, inp: Tensor) -> Tensor:
        return ref_norm(inp, cfg.norm, p[f"{name}.weight"], p.get(f"{name}.bias"), eps)

    def mlp(pre: str, inp: Tensor) -> Tensor:
        if cfg.gated_mlp:
            return lin(f"{pre}down", ref_act(lin(f"{pre}gate", inp), cfg.activation) * lin(f"{pre}up", inp))
        return lin(f"{pre}down", ref_act(lin(f"{pre}up", inp), cfg.activation))

    t = x.shape[1]
    h = p["tok_emb.weight"][x]
    if cfg.arch != "llama":
        h = h + p["pos_emb.weight"][:t]
    if cfg.arch == "bert":
        h = h + p["type_emb.weight"][tt if tt is not None else torch.zeros_like(x)]
        h = norm("emb_norm", h)
    for i in range(cfg.n_layers):
        pre = f"blocks.{i}."
        if cfg.arch == "bert":  # post-LN
            h = norm(f"{pre}attn_norm", h + ref_attention(h, p, f"{pre}attn.", cfg, rope=False))
            h = norm(f"{pre}mlp_norm", h + mlp(f"{pre}mlp.", h))
        else:  # pre-LN / pre-RMSNorm
            h = h + ref_attention(norm(f"{pre}attn_norm", h), p, f"{pre}attn.", cfg, rope=cfg.arch == "llama")
            h = h + mlp(f"{pre}mlp.", norm(f"{pre}mlp_norm", h))
    if cfg.arch == "bert":  # MLM transform
        return lin("lm_head", norm("mlm_norm", ref_act(lin("mlm_dense", h), cfg.activation)))
    return lin("lm_head", norm("final_norm", h))


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_reference_float64(case: str) -> None:
    model = scramble(make(case).double())
    cfg = model.cfg
    x = tokens(2, 13)
    tt = torch.randint(0, cfg.type_vocab_size, x.shape) if cfg.arch == "bert" else None
    got = model(x, token_type_ids=tt)[0]
    want = ref_forward(model, x, tt)
    assert want.std() > 0.3  # the check is not vacuous
    # RoPE tables are stored in float32 (rounded, ~1e-8); everything else agrees to float64 precision
    tol = 1e-6 if cfg.positions == "rope" else 1e-10
    torch.testing.assert_close(got, want, rtol=0, atol=tol)


@pytest.mark.parametrize("case", ["gpt2-untied-3heads", "bert-untied-dv", "llama-gqa", "llama-mqa"])
def test_attention_matches_hand_written_softmax(case: str) -> None:
    cfg = make_cfg(case)
    attn = scramble(Attention(cfg).double()).eval()
    x = torch.randn(2, 9, cfg.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    p = {k: v.detach() for k, v in attn.state_dict().items()}
    torch.testing.assert_close(attn(x, None), ref_attention(x, p, "", cfg, rope=False), rtol=0, atol=1e-12)


def test_attention_gqa_heads_read_their_group() -> None:
    """Query head h uses K/V head h // group: zeroing K/V head 1's value weights changes only heads 3..5."""
    cfg = make_cfg("llama-gqa")  # 6 query heads, 2 kv heads
    attn = scramble(Attention(cfg).double()).eval()
    x = torch.randn(1, 5, cfg.d_model, dtype=torch.float64)
    seen: list[Tensor] = []
    attn.o_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))  # concatenated head outputs
    attn(x, None)
    with torch.no_grad():
        attn.v_proj.weight[cfg.d_head_v :] = 0  # second kv head's values
    attn(x, None)
    changed = (seen[0] - seen[1]).abs().amax(dim=(0, 1))  # per (head, channel)
    per_head = changed[: cfg.o_width].view(cfg.n_heads, cfg.d_head_v).amax(-1)
    assert torch.all(per_head[:3] == 0) and torch.all(per_head[3:] > 0)


# -- RoPE ------------------------------------------------------------------------------------------
def test_rope_tables_match_formula() -> None:
    cos, sin = rope_tables(12, 8, 500.0)
    assert cos.shape == sin.shape == (12, 8)
    p = torch.arange(12, dtype=torch.float64)[:, None]
    j = torch.arange(4, dtype=torch.float64)
    angles = p * 500.0 ** (-2 * j / 8)
    torch.testing.assert_close(cos.double(), torch.cat([angles.cos()] * 2, -1), rtol=0, atol=1e-7)
    torch.testing.assert_close(sin.double(), torch.cat([angles.sin()] * 2, -1), rtol=0, atol=1e-7)


@pytest.mark.parametrize(("d", "theta"), [(2, 10000.0), (6, 10000.0), (12, 37.0)])
def test_rope_matches_complex_rotation(d: int, theta: float) -> None:
    x = torch.randn(2, 3, 10, d, dtype=torch.float64)
    cos, sin = rope_tables(10, d, theta)
    torch.testing.assert_close(apply_rope(x, cos.double(), sin.double()), ref_rope(x, theta), rtol=0, atol=1e-6)
    # position 0 is the identity; rotations keep norms
    torch.testing.assert_close(apply_rope(x, cos, sin)[..., 0, :], x[..., 0, :])
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def test_rope_scores_depend_only_on_relative_position() -> None:
    d, t = 8, 14
    cos, sin = rope_tables(t, d, 10000.0)
    q = torch.randn(d, dtype=torch.float64).expand(1, 1, t, d)
    k = torch.randn(d, dtype=torch.float64).expand(1, 1, t, d)
    s = (apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2))[0, 0]  # s[m, n] = q_m · k_n
    for m in range(t - 1):
        for n in range(t - 1):
            assert abs(s[m, n] - s[m + 1, n + 1]) < 1e-5
    assert abs(s[3, 1] - s[1, 3]) > 1e-3  # but not symmetric: the sign of m − n matters


def test_rope_keeps_input_dtype() -> None:
    cos, sin = rope_tables(4, 6, 10000.0)
    assert apply_rope(torch.randn(1, 1, 4, 6, dtype=torch.bfloat16), cos, sin).dtype == torch.bfloat16


# -- norms, MLP, block ordering ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_norm_matches_formula(kind: str) -> None:
    from growkit.model import Norm

    norm = scramble(Norm(13, kind, eps=0.3).double())  # a large eps: it must sit inside the square root
    x = torch.randn(4, 5, 13, dtype=torch.float64) * 2 + 1
    want = ref_norm(x, kind, norm.weight.detach(), None if norm.bias is None else norm.bias.detach(), 0.3)
    torch.testing.assert_close(norm(x), want, rtol=0, atol=1e-12)
    assert (norm.bias is None) == (kind == "rmsnorm")


@pytest.mark.parametrize("case", ["gpt2", "bert", "gpt2-relu", "llama-gqa"])
def test_mlp_matches_formula(case: str) -> None:
    from growkit.model import MLP

    cfg = make_cfg(case)
    mlp = scramble(MLP(cfg).double())
    x = torch.randn(3, 7, cfg.d_model, dtype=torch.float64)
    w = {k: v.detach() for k, v in mlp.state_dict().items()}
    b = (lambda n: w[f"{n}.bias"]) if cfg.bias else (lambda n: 0.0)
    up = x @ w["up.weight"].T + b("up")
    if cfg.gated_mlp:  # SwiGLU: down(silu(gate x) ⊙ up x)
        gate = x @ w["gate.weight"].T + b("gate")
        hidden = gate * torch.sigmoid(gate) * up
    else:
        hidden = ref_act(up, cfg.activation)
    torch.testing.assert_close(mlp(x), hidden @ w["down.weight"].T + b("down"), rtol=0, atol=1e-12)
    assert (mlp.gate is not None) == cfg.gated_mlp


@pytest.mark.parametrize("case", ["gpt2", "bert", "llama-gqa"])
def test_block_norm_ordering(case: str) -> None:
    """bert: h = LN(x + attn(x)); LN(h + mlp(h)).  gpt2/llama: h = x + attn(N(x)); h + mlp(N(h))."""
    model = scramble(make(case).double())
    block = model.blocks[0]
    rope = (model.rope_cos, model.rope_sin) if model.cfg.positions == "rope" else None
    x = torch.randn(2, 6, 20, dtype=torch.float64)
    if case == "bert":
        h = block.attn_norm(x + block.attn(x, rope))
        want = block.mlp_norm(h + block.mlp(h))
    else:
        h = x + block.attn(block.attn_norm(x), rope)
        want = h + block.mlp(block.mlp_norm(h))
    torch.testing.assert_close(block(x, rope), want, rtol=0, atol=1e-12)


def test_post_ln_output_is_normalised() -> None:
    model = make("bert").double()  # unit gains, zero biases at init
    block = model.blocks[0]
    out = block(torch.randn(2, 6, 20, dtype=torch.float64) * 3, None)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 6, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 6, dtype=torch.float64), rtol=0, atol=1e-6)


# -- bert specifics -----------------------------------------------------------------------------------
def test_bert_token_types() -> None:
    model = scramble(make("bert").double())
    x = tokens(2, 7)
    default = model(x)[0]
    torch.testing.assert_close(default, model(x, token_type_ids=torch.zeros_like(x))[0], rtol=0, atol=0)
    assert not torch.allclose(default, model(x, token_type_ids=torch.ones_like(x))[0])


def test_bert_pooler() -> None:
    model = scramble(make("bert").double())
    hidden = model.hidden_states(tokens(3, 5))
    pooled = model.pool(hidden)
    assert pooled.shape == (3, 20)
    want = torch.tanh(hidden[:, 0] @ model.pooler.weight.T + model.pooler.bias)
    torch.testing.assert_close(pooled, want, rtol=0, atol=1e-12)


# -- forward-time errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["gpt2", "bert", "llama-gqa"])
def test_sequence_longer_than_max_seq_len(case: str) -> None:
    model = make(case)
    model(tokens(1, S))  # exactly max_seq_len is fine
    with pytest.raises(gk.GrowkitError, match=f"sequence length {S + 1} exceeds max_seq_len {S}"):
        model(tokens(1, S + 1))


@pytest.mark.parametrize("case", ["gpt2", "llama-gqa"])
def test_token_type_ids_rejected_without_bert(case: str) -> None:
    x = tokens(1, 4)
    with pytest.raises(gk.GrowkitError, match="token_type_ids are a BERT input"):
        make(case)(x, token_type_ids=torch.zeros_like(x))


def test_tokens_must_be_2d() -> None:
    with pytest.raises(gk.GrowkitError, match=r"tokens must have shape \(batch, seq_len\)"):
        make("gpt2")(torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("case", ["gpt2", "bert-untied-dv"])
def test_pool_without_pooler(case: str) -> None:
    model = make(case)
    with pytest.raises(gk.GrowkitError, match="this model has no pooler"):
        model.pool(model.hidden_states(tokens(1, 3)))


# -- initialisation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["gpt2", "bert", "llama-gqa-untied-dv"])
def test_seeded_init_is_deterministic_and_leaves_global_rng(case: str) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = make(case, seed=3), make(case, seed=3)
    assert torch.equal(torch.get_rng_state(), state), "seeded init must not touch the global RNG"
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = make(case, seed=4)
    assert not torch.equal(c.tok_emb.weight, a.tok_emb.weight)


def test_unseeded_init_follows_global_rng() -> None:
    cfg = make_cfg("gpt2")
    torch.manual_seed(7)
    a = gk.Transformer(cfg)
    torch.manual_seed(7)
    b = gk.Transformer(cfg)
    assert torch.equal(a.blocks[1].mlp.up.weight, b.blocks[1].mlp.up.weight)


def test_init_statistics() -> None:
    cfg = TransformerConfig(arch="gpt2", n_layers=8, d_model=64, n_heads=4, d_ff=300, vocab_size=V, max_seq_len=S,
                            init_std=0.05)
    model = gk.Transformer(cfg, seed=0)
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            want = 0.05 / math.sqrt(16) if name.endswith(("o_proj.weight", "down.weight")) else 0.05
            assert abs(p.std().item() / want - 1) < 0.1, name
            assert abs(p.mean().item()) < want / 5, name
        elif name.endswith("weight"):
            assert torch.all(p == 1), name
        else:
            assert torch.all(p == 0), name


@pytest.mark.parametrize("case", CASES)
def test_tied_embeddings_share_storage(case: str) -> None:
    model = make(case)
    tied = model.cfg.tie_embeddings
    assert (model.lm_head.weight is model.tok_emb.weight) is tied
    assert (model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()) is tied
    names = dict(model.named_parameters())
    assert ("lm_head.weight" in names) is not tied
    if tied:
        with torch.no_grad():
            model.tok_emb.weight[5, 3] = 9.0
        assert model.lm_head.weight[5, 3] == 9.0


# -- sizes ------------------------------------------------------------------------------------------
def hand_count(cfg: TransformerConfig) -> tuple[int, int]:
    """(all parameters, embedding-table parameters), counted by hand from the architecture."""
    d, f, L = cfg.d_model, cfg.d_ff, cfg.n_layers
    bias = cfg.bias
    ln = 2 * d if cfg.norm == "layernorm" else d

    def linear(i: int, o: int, b: bool) -> int:
        return i * o + (o if b else 0)

    attn = (linear(d, cfg.q_width, bias) + linear(d, cfg.kv_width, bias) + linear(d, cfg.v_width, bias)
            + linear(cfg.o_width, d, bias))
    mlp = (3 if cfg.gated_mlp else 2) * d * f + ((2 if cfg.gated_mlp else 1) * f + d if bias else 0)
    layer = 2 * ln + attn + mlp
    emb = cfg.vocab_size * d
    if cfg.arch != "llama":
        emb += cfg.max_seq_len * d
    if cfg.arch == "bert":
        emb += cfg.type_vocab_size * d
    extra = 0 if cfg.arch == "bert" else ln  # final norm
    if cfg.arch == "bert":
        extra += ln + linear(d, d, True) + ln + cfg.vocab_size  # emb_norm, mlm_dense, mlm_norm, lm_head bias
        extra += linear(d, d, True) if cfg.pooler else 0
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * d
    return emb + L * layer + extra + head, emb


@pytest.mark.parametrize("case", CASES)
def test_num_params_matches_hand_count(case: str) -> None:
    model = make(case)
    total, emb = hand_count(model.cfg)
    assert model.num_params() == total
    assert model.num_params(exclude_embeddings=True) == total - emb
    assert total == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def test_num_params_gpt2_literal() -> None:
    """The gpt2 case spelled out: 51·20 + 16·20 tok/pos; per layer 2 LNs, 4 biased 20×20 linears,
    20→37→20 MLP with biases; final LN; tied head."""
    per_layer = 2 * 40 + 4 * (400 + 20) + (20 * 37 + 37) + (37 * 20 + 20)
    assert make("gpt2").num_params() == 51 * 20 + 16 * 20 + 2 * per_layer + 40 == 7974


def test_flops_per_token_method() -> None:
    from growkit.flops import training_flops_per_token

    model = make("llama-gqa")
    assert model.flops_per_token() == training_flops_per_token(model.cfg, S)
    assert model.flops_per_token(5) == training_flops_per_token(model.cfg, 5)


# -- property test -------------------------------------------------------------------------------------
@st.composite
def small_configs(draw: st.DrawFn) -> tuple[TransformerConfig, int, int]:
    """Any valid small config, plus a batch size and a sequence length."""
    arch = draw(st.sampled_from(ARCHS))
    n_heads = draw(st.integers(1, 4))
    n_kv = draw(st.sampled_from([k for k in range(1, n_heads + 1) if n_heads % k == 0])) if arch == "llama" else None
    d_head = draw(st.integers(1, 4)) * 2 if arch == "llama" else draw(st.integers(1, 7))
    cfg = TransformerConfig(
        arch=arch, n_layers=draw(st.integers(1, 2)), d_model=draw(st.integers(2, 23)), n_heads=n_heads,
        n_kv_heads=n_kv, d_head=d_head, d_head_v=draw(st.integers(1, 7)), d_ff=draw(st.integers(1, 41)),
        vocab_size=draw(st.integers(2, 60)), max_seq_len=draw(st.integers(1, 12)),
        tie_embeddings=draw(st.booleans()), activation=draw(st.sampled_from([None, "gelu", "relu", "silu"])),
    )
    return cfg, draw(st.integers(1, 3)), draw(st.integers(1, cfg.max_seq_len))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_configs())
def test_any_valid_config_trains(sample: tuple[TransformerConfig, int, int]) -> None:
    cfg, b, t = sample
    model = gk.Transformer(cfg, seed=1)
    x = torch.randint(0, cfg.vocab_size, (b, t))
    logits, loss = model(x, x)
    assert logits.shape == (b, t, cfg.vocab_size)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    assert model.num_params() == hand_count(cfg)[0]
