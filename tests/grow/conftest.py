"""Shared helpers of the growth tests: tiny odd-sized models of every arch, garbage-filling of new
weights, and the standard preservation checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import growkit as gk
from growkit.record import GrowthRecord

ARCHS = ("gpt2", "bert", "llama")
TOL64 = 1e-10


def tiny_config(arch: str, **overrides: object) -> gk.TransformerConfig:
    """d_model 20, d_ff 37, 2 heads (llama: 4 query heads on 2 KV heads), vocab 51, 3 layers."""
    base: dict[str, object] = dict(arch=arch, n_layers=3, d_model=20, d_ff=37, n_heads=2, vocab_size=51,
                                   max_seq_len=16)
    if arch == "llama":
        base.update(n_heads=4, n_kv_heads=2, d_head=6)
    base.update(overrides)
    return gk.TransformerConfig(**base)


def tiny_model(arch: str, seed: int = 0, **overrides: object) -> gk.Transformer:
    """A float64 model whose norms and biases are randomised too (a fresh init has gains 1 and biases 0,
    which would hide bugs that mishandle them)."""
    model = gk.Transformer(tiny_config(arch, **overrides), seed=seed).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if name.endswith("norm.weight") else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def tokens(model: gk.Transformer, batch: int = 3, seq: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, model.cfg.vocab_size, (batch, min(seq, model.cfg.max_seq_len)),
                         generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def fill_new_entries(model: gk.Transformer, record: GrowthRecord, value: float = 42.0,
                     keep_zeros: bool = True) -> int:
    """Overwrite every new entry of every parameter with ``value`` (garbage); with ``keep_zeros`` the
    entries a method deliberately set to exactly 0 (zero's constrained side) are left alone. Returns
    how many entries were overwritten."""
    count = 0
    for name, p in model.named_parameters():
        new = record.new_entries(name, p.shape)
        if keep_zeros:
            new = new & (p != 0)
        p[new] = value
        count += int(new.sum())
    return count


def garbage_preserves(old: gk.Transformer, new: gk.Transformer, record: GrowthRecord, keep_zeros: bool) -> float:
    """check_preserved after filling the unconstrained new weights with garbage (42)."""
    fill_new_entries(new, record, keep_zeros=keep_zeros)
    return gk.check_preserved(old, new, tokens(old))


def live_gradients(model: gk.Transformer, record: GrowthRecord) -> dict[str, float]:
    """Gradient norm over the new entries of each parameter that has new entries, on a real batch."""
    model = model.train()
    x = tokens(model, seed=5)
    model.zero_grad()
    _, loss = model(x, x)
    loss.backward()
    out = {}
    for name, p in model.named_parameters():
        new = record.new_entries(name, p.shape)
        if new.any():
            out[name] = float(p.grad[new].norm()) if p.grad is not None else 0.0
    return out


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
