"""Helpers of the sparsity tests: tiny models whose sizes blocks of 16 tile, and a plain training loop
that checks the controller's invariants after every step."""

from __future__ import annotations

from collections.abc import Callable

import torch

import growkit as gk
from growkit.sparse import SparsityController, expand
from growkit.sparse.masks import block_reduce


def tiny_config(arch: str = "gpt2", **overrides: object) -> gk.TransformerConfig:
    """d_model 32, d_ff 64 (multiples of 16), 2 heads (llama: 2 query heads on 1 KV head), 2 layers, vocab 37."""
    base: dict[str, object] = dict(arch=arch, n_layers=2, d_model=32, d_ff=64, n_heads=2, vocab_size=37,
                                   max_seq_len=16)
    if arch == "llama":
        base.update(n_kv_heads=1)
    base.update(overrides)
    return gk.TransformerConfig(**base)


def batch(cfg: gk.TransformerConfig, step: int, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randint(0, cfg.vocab_size, (size, cfg.max_seq_len), generator=gen)
    return x, torch.roll(x, -1, dims=1)


def check_invariants(ctl: SparsityController, exact_count: bool = True) -> None:
    """Inactive weights (and, with an optimizer, their Adam moments) exactly 0; masks constant within
    blocks; the active count of every tensor equal to its target (at least the target: ``exact_count=False``,
    for tensors grown dense that are being pruned back)."""
    params = dict(ctl.model.named_parameters())
    b = ctl.cfg.block
    for name, mask in ctl.masks.items():
        p = params[name]
        assert mask.shape == p.shape and mask.dtype == torch.bool
        assert (p.detach().masked_fill(mask, 0.0) == 0).all(), name  # (boolean indexing is slow on CPU)
        tiles = mask.reshape(mask.shape[0] // b, b, mask.shape[1] // b, b)
        assert torch.equal(tiles.all(dim=(1, 3)), tiles.any(dim=(1, 3))), f"{name}: mask not constant in blocks"
        assert torch.equal(expand(ctl.block_masks[name], b), mask)
        active = int(ctl.block_masks[name].sum())
        assert active == ctl.targets[name] if exact_count else active >= ctl.targets[name], name
        if ctl.optimizer is not None:
            for key, value in ctl.optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.shape == p.shape:
                    assert (value.masked_fill(mask, 0.0) == 0).all(), f"{name}.{key}"


def block_l1(w: torch.Tensor, b: int) -> torch.Tensor:
    return block_reduce(w.detach().abs(), b)


def train(model: gk.Transformer, ctl: SparsityController, optimizer: torch.optim.Optimizer, steps: range,
          on_update: Callable[[int, dict[str, torch.Tensor], dict[str, torch.Tensor]], None] | None = None,
          exact_count: bool = True) -> None:
    """Plain AdamW loop; checks the invariants after every step and that inactive gradients are 0 after every
    backward. ``on_update(t, block_masks_before, weights_it_pruned_by)`` is called after each mask update."""
    for t in steps:
        x, y = batch(model.cfg, t)
        _, loss = model(x, y)
        loss.backward()
        params = dict(model.named_parameters())
        for name, mask in ctl.masks.items():
            grad = params[name].grad
            assert grad is not None and (grad.masked_fill(mask, 0.0) == 0).all(), f"inactive {name}'s grad, step {t}"
        before = {n: m.clone() for n, m in ctl.block_masks.items()}
        optimizer.step()
        weights = {n: params[n].detach().clone() for n in ctl.block_masks}  # what the update prunes by
        optimizer.zero_grad(set_to_none=True)
        if ctl.step(t) and on_update is not None:
            on_update(t, before, weights)
        check_invariants(ctl, exact_count)
