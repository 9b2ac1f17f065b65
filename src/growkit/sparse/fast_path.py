"""The condensed matmuls in training: a sparse linear's products on its active blocks only, chosen per shape.

`growkit.sparse.layout` computes a constant fan-in weight's three products as a gather and a dense matmul
per block-row. Here that path runs *inside* a normal training run, with the dense weight (zeros off the
pattern) still the parameter: the optimizer, the `SparsityController`, checkpoints and growth see exactly
what masked dense training gives them. For a weight W with block mask B (constant fan-in, indices I):

- forward:   V = W at the blocks I (a gather), y = condensed(x, V, I) = x (W ⊙ B)ᵀ = x Wᵀ
  (W is already 0 off B: the controller re-masks it after every step);
- backward:  dx = dy (W ⊙ B) by the condensed input gradient, and dW = to_dense(dV, I): the gradient of the
  active blocks, 0 elsewhere — what the controller's gradient mask leaves of the dense dyᵀ x.

So a run takes the same steps on either path (to float rounding, tested). The indices follow the
controller's masks (re-read when a mask tensor changes: prune-and-regrow, growth). RigL (``regrow =
"gradient"``) needs the dense gradient of inactive blocks, which this path never forms, so it is refused.

`choose_paths` times both paths' forward + backward for each distinct (shape, fan-in) at the run's tokens
per step and keeps the faster (``kernel = "auto"``); `install` patches each sparse linear's ``forward``.
"""

from __future__ import annotations

import statistics
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from growkit.errors import GrowkitError
from growkit.sparse.config import KERNELS
from growkit.sparse.layout import (
    condense,
    condensed_forward,
    condensed_input_grad,
    condensed_weight_grad,
    mask_to_indices,
    to_dense,
)

PATHS = ("masked", "condensed")


class MaskedCondensedFn(torch.autograd.Function):
    """y = x Wᵀ (+ bias) on the active blocks ``indices`` of a dense, masked W; dW is dense, 0 off them."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, indices: Tensor, bias: Tensor | None, block: int  # type: ignore[override]
                ) -> Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        values = condense(weight.detach(), indices, block)
        y = condensed_forward(x2, values, indices)
        if bias is not None:
            y += bias
        ctx.save_for_backward(x2, values, indices)
        ctx.lead, ctx.block, ctx.has_bias = lead, block, bias is not None
        return y.view(*lead, y.shape[-1])

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x2, values, indices = ctx.saved_tensors
        dy = grad_out.reshape(-1, grad_out.shape[-1]).contiguous()
        dx = dw = dbias = None
        if ctx.needs_input_grad[0]:
            dx = condensed_input_grad(dy, values, indices, x2.shape[1]).view(*ctx.lead, x2.shape[1])
        if ctx.needs_input_grad[1]:
            dw = to_dense(condensed_weight_grad(x2, dy, indices, ctx.block), indices, x2.shape[1])
        if ctx.has_bias and ctx.needs_input_grad[3]:
            dbias = dy.sum(dim=0)
        return dx, dw, None, dbias, None


class _Indices:
    """A sparse weight's indices, re-derived when its mask tensor in ``masks`` is replaced or changed."""

    def __init__(self, masks: Mapping[str, Tensor], name: str) -> None:
        self.masks, self.name = masks, name
        self.mask: Tensor | None = None  # held, so that a new mask can never reuse its identity
        self.version = -1
        self.value: Tensor | None = None

    def get(self) -> Tensor:
        bm = self.masks[self.name]
        if bm is not self.mask or bm._version != self.version or self.value is None:
            self.value, self.mask, self.version = mask_to_indices(bm), bm, bm._version
        return self.value


def _condensed_forward(block: int, indices: _Indices) -> Callable[[nn.Linear, Tensor], Tensor]:
    def forward(self: nn.Linear, x: Tensor) -> Tensor:
        return MaskedCondensedFn.apply(x, self.weight, indices.get(), self.bias, block)

    return forward


def sparse_linears(model: nn.Module, masks: Mapping[str, Tensor]) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` of each masked weight (``masks``: parameter name → block mask), by weight name."""
    out = {}
    for name in masks:
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if not isinstance(module, nn.Linear):
            raise GrowkitError(f"{name} is not the weight of an nn.Linear ({type(module).__name__}): the condensed "
                               f"path runs linear layers only")
        out[name] = module
    return out


def install(model: nn.Module, masks: Mapping[str, Tensor], block: int, paths: Mapping[str, str]) -> None:
    """Make each sparse linear whose path (``paths``: weight name → ``"masked"`` / ``"condensed"``) is
    condensed compute with `MaskedCondensedFn`; the others run ``nn.Linear``'s own forward."""
    for name, module in sparse_linears(model, masks).items():
        if paths.get(name, "masked") == "condensed":
            module.forward = types.MethodType(_condensed_forward(block, _Indices(masks, name)), module)
        elif "forward" in module.__dict__:
            del module.forward


def _time_fwd_bwd(fn: Callable[[], Tensor], reps: int) -> float:
    times = []
    for _ in range(reps + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        fn().sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def choose_paths(model: nn.Module, masks: Mapping[str, Tensor], block: int, tokens: int, kernel: str,
                 dtype: torch.dtype = torch.float32, reps: int = 3) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The path of every sparse linear: ``kernel`` itself, or for ``"auto"`` the faster of the two on a
    random input of ``tokens`` rows, timed once per distinct (n_out, n_in, fan-in) — forward + backward,
    median of ``reps``. Returns (weight name → path, one record per shape measured)."""
    if kernel not in KERNELS:
        raise GrowkitError(f"sparsity.kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    linears = sparse_linears(model, masks)
    if kernel != "auto":
        return {n: kernel for n in linears}, []
    chosen: dict[tuple[int, int, int], str] = {}
    keys: dict[str, tuple[int, int, int]] = {}
    records = []
    gen = torch.Generator().manual_seed(0)
    for name, module in linears.items():
        n_out, n_in = module.weight.shape
        indices = mask_to_indices(masks[name])
        key = keys[name] = (n_out, n_in, indices.shape[1])
        if key in chosen:
            continue
        w = (torch.randn(n_out, n_in, generator=gen) * 0.02).to(dtype)
        w = (w * masks[name].repeat_interleave(block, 0).repeat_interleave(block, 1).to(w)).requires_grad_()
        x = torch.randn(tokens, n_in, generator=gen).to(dtype).requires_grad_()
        masked = _time_fwd_bwd(lambda w=w, x=x: F.linear(x, w), reps)
        condensed = _time_fwd_bwd(lambda w=w, x=x, i=indices: MaskedCondensedFn.apply(x, w, i, None, block), reps)
        chosen[key] = "condensed" if condensed < masked else "masked"
        records.append({"shape": [n_out, n_in], "fan_in": key[2], "tokens": tokens, "masked_ms": 1e3 * masked,
                        "condensed_ms": 1e3 * condensed, "path": chosen[key]})
    return {name: chosen[key] for name, key in keys.items()}, records
