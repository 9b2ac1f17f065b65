"""`GrowthRecord`: for every tensor of a grown model, where each of its entries came from.

It sits below `grow` and `sparse` so that both the optimizer carry and the sparsity controller can
read it without knowing the operators. For a new tensor ``name`` the record holds a `TensorMap`:

- ``source``: the old tensor its entries were taken from (a layer copied by ``stack`` names another
  layer), or None for a tensor that did not exist before (a fresh layer, a new mask);
- ``index[a]`` (one per axis): a long tensor as long as the new axis, with the old index of each new
  position, or -1 where the entry is new; None means the axis is unchanged (identity). Heads may
  interleave, duplicates (``split``) repeat an old index;
- ``scale[a]``: a float tensor as long as the new axis, the factor the copied values were multiplied
  by along that axis (``split`` divides outgoing weights by the number of copies; ``zero`` rescales
  queries and RMSNorm gains by square roots), or None for 1;
- ``grad[a]``: the factor the copied entries' **gradients** are multiplied by along that axis, or None
  for 1. It is not the weight factor: a function-preserving growth embeds the old parameters θ as
  θ' = Aθ with f'(Aθ) = f(θ), so Aᵀ∇f' = ∇f. An old entry held by k symmetric copies, each the old
  value times s, then has, per copy, ``∇'= ∇/(k·s)``: a weight rescaled by s (``zero``'s √ factors)
  gets ∇/s; ``split``'s producer copies (s = 1) get ∇/k; its consumer copies (s = 1/k) get ∇ unchanged.
  Per axis, ``grad = 1/(copies · scale)``, composed over edits like ``scale``.

An entry ``w_new[i, j] = w_old[index[0][i], index[1][j]] · scale[0][i] · scale[1][j]`` when every index
is ≥ 0, and is new otherwise; its gradient is ``g_old[index[0][i], index[1][j]] · grad[0][i] · grad[1][j]``
wherever the copies are symmetric (every exact operator but one: GQA regrouping that duplicates a KV
head for disjoint subsets of its query heads, where the copies share the old gradient unevenly and
``grad`` = 1/k is their mean share).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class TensorMap:
    source: str | None
    index: list[Tensor | None]
    scale: list[Tensor | None]
    grad: list[Tensor | None] | None = None

    def __post_init__(self) -> None:
        if self.grad is None:
            self.grad = [None] * len(self.index)

    @classmethod
    def identity(cls, name: str, ndim: int) -> TensorMap:
        return cls(name, [None] * ndim, [None] * ndim)

    @classmethod
    def fresh(cls, ndim: int) -> TensorMap:
        return cls(None, [None] * ndim, [None] * ndim)

    def old_mask(self, shape: torch.Size) -> Tensor:
        """Bool tensor of ``shape``: True where the entry was copied from the old tensor."""
        if self.source is None:
            return torch.zeros(shape, dtype=torch.bool)
        out = torch.ones(shape, dtype=torch.bool)
        for axis, ix in enumerate(self.index):
            if ix is not None:
                view = [1] * len(shape)
                view[axis] = -1
                out = out & (ix >= 0).view(view)
        return out

    def gather(self, old: Tensor, fill: float = 0.0, power: int = 1, factors: str = "scale") -> Tensor:
        """Carry a tensor shaped like the old one to the new shape: copied entries are multiplied by
        ``f ** power`` where f is the weight factor (``factors="scale"``: a weight, a mask) or the
        gradient factor (``factors="grad"``: optimizer moments, first with power 1, second with 2);
        new entries are ``fill``."""
        if factors not in ("scale", "grad"):
            raise ValueError(f"factors must be 'scale' or 'grad', got {factors!r}")
        out = old
        for axis, ix in enumerate(self.index):
            if ix is not None:
                out = out.index_select(axis, ix.clamp(min=0))
        for axis, sc in enumerate(self.scale if factors == "scale" else self.grad):
            if sc is not None:
                view = [1] * out.ndim
                view[axis] = -1
                out = out * (sc.to(out.dtype) ** power).view(view)
        mask = self.old_mask(out.shape)
        return torch.where(mask, out, torch.full_like(out, fill))

    def is_identity(self) -> bool:
        return all(ix is None for ix in self.index) and all(sc is None for sc in self.scale) and \
            all(g is None for g in self.grad)


@dataclass
class GrowthRecord:
    """Maps of every tensor of the grown model (parameters and mask buffers), by its new name."""

    maps: dict[str, TensorMap] = field(default_factory=dict)
    old_param_names: dict[int, str] = field(default_factory=dict, repr=False)
    """``id(parameter) → name`` for the grown-from model, so an optimizer over it can be carried."""

    def __getitem__(self, name: str) -> TensorMap:
        return self.maps[name]

    def __contains__(self, name: str) -> bool:
        return name in self.maps

    def new_entries(self, name: str, shape: torch.Size) -> Tensor:
        """Bool tensor: True where the grown tensor ``name`` holds an entry that did not exist before."""
        return ~self.maps[name].old_mask(shape)
