"""Grow a model of shapes only: the real growth operators on ``meta`` tensors, no weights in memory.

``grow_shapes(cfg, spec)`` runs `growkit.grow` on a meta-device `Transformer` of ``cfg`` and returns the
grown model (meta tensors: every parameter and mask buffer has its grown shape, no storage). A growth
schedule can so be checked whole before training (`growkit.train.grower`): every refusal an operator
would raise at the growth (ungroupable GQA, RoPE head width, zero-padded LayerNorm width, …) is raised
now, by the same code, at the cost of index bookkeeping only.

How: the operators compute their index maps and scales as small CPU tensors and apply them to the
weights. `ShapesOnly` (a ``TorchFunctionMode``) moves those CPU operands to ``meta`` whenever an op
also takes a meta tensor, and answers reads of a meta tensor's value (``float(t.std())``, used only for
the scale of new random weights) with 1.0, and skips random fills (new weights drawn on the CPU, then
moved to meta): values never decide shapes in `growkit.grow`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from growkit.config import TransformerConfig
from growkit.grow import grow
from growkit.grow.spec import GrowthSpec
from growkit.model import Transformer
from growkit.record import GrowthRecord

_META = torch.device("meta")
_VALUE_READS: set[Callable[..., Any]] = {torch.Tensor.item, torch.Tensor.__float__}
_RANDOM_FILLS: set[Callable[..., Any]] = {torch.Tensor.normal_, torch.Tensor.uniform_}


class ShapesOnly(TorchFunctionMode):
    """Within this mode, CPU tensors meeting meta tensors become meta; a meta tensor's value reads as 1.0."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _RANDOM_FILLS:  # new random weights: their values are never read here, skip the draw
            return args[0]
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if any(t.device.type == "meta" for t in tensors):
            if func in _VALUE_READS:
                return 1.0
            args, kwargs = tree_map(_to_meta, (args, kwargs))
        return func(*args, **kwargs)


def _to_meta(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.device.type != "meta" and x.dim() > 0:
        return x.to(_META)
    return x


def meta_model(cfg: TransformerConfig) -> Transformer:
    """A `Transformer` of ``cfg`` on the meta device (shapes only, built in microseconds)."""
    with torch.device("meta"):
        return Transformer(cfg)


def drop_masks(model: Transformer) -> None:
    """Remove a shapes-only model's growth masks (what `growkit.fold_masks` does at the end of a ramp)."""
    modules = dict(model.named_modules())
    for name in model.masks():
        owner, _, leaf = name.rpartition(".")
        setattr(modules[owner], leaf, None)


def grow_shapes(model: Transformer, spec: GrowthSpec) -> tuple[Transformer, GrowthRecord]:
    """`growkit.grow` of a meta-device ``model``: the grown model's shapes (and its record), no weights.
    Raises the same `GrowkitError` the real growth would."""
    with ShapesOnly():
        return grow(model, spec)
