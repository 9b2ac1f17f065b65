"""Shared helpers of the growth tests: tiny odd-sized models of every arch, garbage-filling of new
weights, the standard preservation checks, and the checks every dimension makes of its new units (masked
units learn once c > 0, zero units come alive, split copies diverge, ramp and fold)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


def assert_strictly_preserved(old: gk.Transformer, new: gk.Transformer, record: GrowthRecord, method: str,
                              seq: int = 11, msg: object = None) -> None:
    """A strict method keeps the logits: split (which has no new entries, every unit is a copy) on its own
    weights, masked and zero with garbage in every unconstrained new weight (zero keeps its zero side)."""
    if method == "split":
        assert gk.check_preserved(old, new, tokens(old, seq=seq)) < TOL64, msg
    else:
        assert garbage_preserves(old, new, record, keep_zeros=method == "zero") < TOL64, msg


def assert_masked_units_live(new: gk.Transformer, record: GrowthRecord, c: float = 0.1,
                             ignore: tuple[str, ...] = ()) -> dict[str, float]:
    """Masked new units get gradients once c > 0: ramp to ``c``; every parameter with new entries (but
    those whose name ends with one of ``ignore``) gets a non-zero gradient on them. Returns the gradients."""
    gk.ramp_masks(new, c)
    grads = live_gradients(new, record)
    assert grads and all(g > 0 for n, g in grads.items() if not n.endswith(ignore)), grads
    return grads


def assert_zero_units_come_alive(new: gk.Transformer, record: GrowthRecord, zero_side: tuple[str, ...],
                                 rest_blocked: bool = False, ignore: tuple[str, ...] = ()) -> list[str]:
    """Zero growth: the zero side (parameters whose name ends with one of ``zero_side``) gets gradient at
    once (with ``rest_blocked``, every other new entry gets exactly 0: it sits behind the zeros); after one
    SGD step every new entry does (but those of parameters ending with one of ``ignore``). Returns the
    names of the zero side."""
    grads = live_gradients(new, record)
    zero = [n for n in grads if n.endswith(zero_side)]
    assert zero and all(grads[n] > 0 for n in zero), grads
    if rest_blocked:
        assert all(g == 0 for n, g in grads.items() if n not in zero), grads
    torch.optim.SGD(new.parameters(), lr=0.1).step()
    grads = live_gradients(new, record)
    assert grads and all(g > 0 for n, g in grads.items() if not n.endswith(ignore)), grads
    return zero


def assert_copies_diverge(model: gk.Transformer, weight: torch.Tensor, copy: Any, source: Any) -> None:
    """Split: ``weight[copy]`` starts equal to ``weight[source]`` (an index or a slice) and differs from it
    after one AdamW step on a real batch."""
    assert torch.equal(weight[copy], weight[source])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = tokens(model, seed=3)
    model(x, x)[1].backward()
    opt.step()
    assert not torch.allclose(weight[copy], weight[source])


def assert_fold_keeps_logits(model: gk.Transformer, x: torch.Tensor, exact: bool = False) -> None:
    """Ramp every mask to 1 and fold: no mask is left and the logits stay (to 1e-12, or ``exact``ly)."""
    gk.ramp_masks(model, 1.0)
    logits = model(x)[0]
    gk.fold_masks(model)
    assert not model.masks()
    if exact:
        assert torch.equal(model(x)[0], logits)
    else:
        assert torch.allclose(model(x)[0], logits, atol=1e-12, rtol=0)


def assert_ramp_and_fold(old: gk.Transformer, new: gk.Transformer, x: torch.Tensor, c: float = 0.5,
                         tol: float = 1e-6, exact: bool = False) -> None:
    """Masked growth: at c the new units change the logits (by more than ``tol``) and the masks cannot be
    folded yet; at c = 1 they fold away keeping the logits."""
    gk.ramp_masks(new, c)
    assert gk.check_preserved(old, new, x) > tol  # the new units now take part
    with pytest.raises(gk.GrowkitError, match="ramp them first"):
        gk.fold_masks(new)
    assert_fold_keeps_logits(new, x, exact=exact)


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param
