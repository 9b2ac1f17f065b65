"""Tiny randomly initialised Hugging Face models (HF tester sizes: hidden 32, intermediate 37, vocab 99) and
the checks the adapter tests share. Nothing is downloaded: every model is built from a config."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import growkit as gk

transformers = pytest.importorskip("transformers")

VOCAB = 99
TOL = {"gpt2": 1e-10, "bert": 1e-10, "llama": 1e-6}


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.1) -> torch.nn.Module:
    """Every parameter random (norm gains around 1, biases nonzero) so no mapping error can hide behind
    HF's ones-and-zeros initialisation. Tied parameters are drawn once."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            is_gain = p.ndim == 1 and name.endswith("weight")
            p.copy_(1 + std * noise if is_gain else std * noise)
    return module


def hf_config(arch: str, **overrides: Any) -> Any:
    """A tiny HF config of the family (odd sizes: hidden 32, intermediate 37, vocab 99, 2 layers)."""
    if arch == "gpt2":
        kw = dict(vocab_size=VOCAB, n_positions=40, n_embd=32, n_layer=2, n_head=4, n_inner=37,
                  bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, activation_function="gelu_new")
        return transformers.GPT2Config(**{**kw, **overrides})
    if arch == "bert":
        kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                  max_position_embeddings=40, type_vocab_size=3, layer_norm_eps=1e-12)
        return transformers.BertConfig(**{**kw, **overrides})
    kw = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=37, max_position_embeddings=40, rms_norm_eps=1e-6, tie_word_embeddings=False,
              rope_parameters={"rope_type": "default", "rope_theta": 5000.0})
    kw.update(overrides)
    if transformers.__version__.startswith("4."):  # transformers 4: rope_theta and rope_scaling
        rope = dict(kw.pop("rope_parameters"))
        kw["rope_theta"] = rope.pop("rope_theta")
        if rope["rope_type"] != "default":
            kw["rope_scaling"] = rope
    return transformers.LlamaConfig(**kw)


def rope_theta(config: Any) -> float:
    """RoPE theta of a LlamaConfig in transformers 4 or 5."""
    params = getattr(config, "rope_parameters", None)
    return params["rope_theta"] if isinstance(params, dict) else config.rope_theta


HF_CLASS = {"gpt2": "GPT2LMHeadModel", "bert": "BertForMaskedLM", "llama": "LlamaForCausalLM"}


def tiny_hf(arch: str, cls: str | None = None, seed: int = 0, **overrides: Any) -> Any:
    """A tiny HF model, all parameters random, float64, eager attention, eval mode."""
    klass = getattr(transformers, cls or HF_CLASS[arch])
    model = klass(hf_config(arch, **overrides)).to(torch.float64)
    model.set_attn_implementation("eager")
    return randomize_(model, seed).eval()


def tiny_gk(arch: str, seed: int = 0, **overrides: Any) -> gk.Transformer:
    """A tiny growkit model, all parameters random, float64, eval mode."""
    kw: dict[str, Any] = dict(arch=arch, n_layers=2, d_model=32, n_heads=4, d_ff=37, vocab_size=VOCAB, max_seq_len=40)
    if arch == "llama":
        kw.update(n_kv_heads=2, rope_theta=5000.0, norm_eps=1e-6)
    if arch == "bert":
        kw.update(type_vocab_size=3)
    kw.update(overrides)
    model = gk.Transformer(gk.TransformerConfig(**kw), seed=seed).to(torch.float64)
    return randomize_(model, seed + 1).eval()


def tokens(seed: int = 0, batch: int = 2, length: int = 11, vocab: int = VOCAB) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def type_ids(seed: int = 1, batch: int = 2, length: int = 11) -> torch.Tensor:
    return torch.randint(0, 3, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_logits(hf: Any, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    return hf(input_ids=ids, **kw).logits


@torch.no_grad()
def gk_logits(model: gk.Transformer, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    return model(ids, token_type_ids=token_type_ids)[0]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.fixture
def llama_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers' Llama with its float32 islands lifted to the input dtype, to show that the ~1e-6 gap is
    theirs, not the adapter's: RMSNorm and the eager softmax in float64, and RoPE angles in float64 with
    cos/sin rounded to float32 — exactly growkit's own tables (`growkit.model.rope_tables`)."""
    from transformers.models.llama import modeling_llama as ml

    def rms_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rope_forward(self: Any, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        inv_freq = 1.0 / rope_theta(c) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().float().to(x.dtype), emb.sin().float().to(x.dtype)

    def eager(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
              scaling: float, dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        key, value = ml.repeat_kv(key, module.num_key_value_groups), ml.repeat_kv(value, module.num_key_value_groups)
        weights = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            weights = weights + attention_mask
        weights = torch.softmax(weights, dim=-1)
        return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights

    monkeypatch.setattr(ml.LlamaRMSNorm, "forward", rms_forward)
    monkeypatch.setattr(ml.LlamaRotaryEmbedding, "forward", rope_forward)
    monkeypatch.setattr(ml, "eager_attention_forward", eager)
