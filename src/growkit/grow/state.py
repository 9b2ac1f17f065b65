"""`GrowthState`: the model being grown, as a config plus a flat dict of tensors, and the few edits
every operator is made of (expand an axis, scale an axis, add a tensor, rename a tensor).

Each edit updates the tensor AND its `TensorMap` in the record, so operators never do bookkeeping by
hand and a composed growth (several dimensions in one call) records composed maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from growkit.config import TransformerConfig
from growkit.grow.spec import GrowthSpec
from growkit.record import GrowthRecord, TensorMap


@dataclass
class GrowthState:
    cfg: TransformerConfig
    tensors: dict[str, Tensor]
    spec: GrowthSpec
    record: GrowthRecord = field(default_factory=GrowthRecord)
    gen: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        for name, t in self.tensors.items():
            self.record.maps.setdefault(name, TensorMap.identity(name, t.ndim))
        self.gen.manual_seed(self.spec.seed)

    @property
    def std(self) -> float:
        return self.spec.std if self.spec.std is not None else self.cfg.init_std

    # -- new values ----------------------------------------------------------------------------
    def random(self, shape: tuple[int, ...] | torch.Size, like: Tensor, std: float | None = None) -> Tensor:
        """N(0, std²) values for new weights, from the growth's own seeded generator."""
        out = torch.empty(shape, dtype=torch.float32)
        out.normal_(0.0, self.std if std is None else std, generator=self.gen)
        return out.to(dtype=like.dtype, device=like.device)

    # -- edits ---------------------------------------------------------------------------------
    def expand(self, name: str, axis: int, index: Tensor, new_values: Tensor | float | str = 0.0,
               scale: Tensor | None = None, shared: bool = True) -> Tensor:
        """Rebuild axis ``axis`` of tensor ``name``: position i takes old slice ``index[i]`` (times
        ``scale[i]``) where ``index[i] >= 0``, and ``new_values`` where it is -1.

        ``new_values``: a number (every new entry), ``"random"`` (N(0, std²)), or a full tensor of the
        NEW shape whose entries are used at the new positions. ``shared``: repeated old positions are
        copies that share the old slice's gradient (a duplicated unit: recorded gradient factor
        1/(copies·scale)); False for copies that each get their own gradient, such as position rows
        (factor 1/scale).
        """
        old = self.tensors[name]
        index = index.to(torch.long)
        out = old.index_select(axis, index.clamp(min=0))
        view = [1] * old.ndim
        view[axis] = -1
        if scale is not None:
            out = out * scale.to(out.dtype).view(view)
        is_new = (index < 0).view(view).expand_as(out)
        if isinstance(new_values, str):
            assert new_values == "random", new_values
            new_values = self.random(out.shape, out)
        fill = new_values if isinstance(new_values, Tensor) else torch.full_like(out, float(new_values))
        self.tensors[name] = torch.where(is_new, fill.to(out.dtype), out)
        self._compose(name, axis, index, scale, shared)
        return self.tensors[name]

    def scale_axis(self, name: str, axis: int, factor: Tensor | float) -> Tensor:
        """Multiply tensor ``name`` along ``axis`` by ``factor`` (a number or a vector); recorded."""
        t = self.tensors[name]
        if not isinstance(factor, Tensor):
            factor = torch.full((t.shape[axis],), float(factor), dtype=torch.float64)
        view = [1] * t.ndim
        view[axis] = -1
        self.tensors[name] = t * factor.to(t.dtype).view(view)
        identity = torch.arange(t.shape[axis])
        self._compose(name, axis, identity, factor)
        return self.tensors[name]

    def add(self, name: str, tensor: Tensor) -> None:
        """A tensor that did not exist before (a fresh layer's weight, a mask)."""
        self.tensors[name] = tensor
        self.record.maps[name] = TensorMap.fresh(tensor.ndim)

    def rename_all(self, mapping: dict[str, str]) -> None:
        """Rename tensors at once (``{old_name: new_name}``), e.g. to renumber layers."""
        tensors = {mapping.get(n, n): t for n, t in self.tensors.items()}
        maps = {mapping.get(n, n): m for n, m in self.record.maps.items()}
        self.tensors, self.record.maps = tensors, maps

    def copy_tensor(self, src: str, dst: str) -> None:
        """``dst`` becomes a copy of ``src`` whose entries come from wherever ``src``'s came from."""
        self.tensors[dst] = self.tensors[src].clone()
        m = self.record.maps[src]
        self.record.maps[dst] = TensorMap(m.source, list(m.index), list(m.scale), list(m.grad))

    def remove(self, name: str) -> None:
        del self.tensors[name]
        del self.record.maps[name]

    # -- masks ---------------------------------------------------------------------------------
    def mask(self, name: str, size: tuple[int, ...]) -> Tensor:
        """The mask tensor ``name``, created as ones of ``size`` (all units old) if absent."""
        if name not in self.tensors:
            self.add(name, torch.ones(size, dtype=torch.float32))
        return self.tensors[name]

    def _compose(self, name: str, axis: int, index: Tensor, scale: Tensor | None, shared: bool = True) -> None:
        """Compose this edit of ``axis`` with the map so far: index through index, weight factors
        multiplied, and gradient factors multiplied by this edit's 1/(copies · scale) (see
        `growkit.record`: an old slice held by k copies, each times s, gets gradient ∇/(k·s))."""
        m = self.record.maps[name]
        keep = index >= 0
        safe = index.clamp(min=0)
        ones = torch.ones(len(index), dtype=torch.float64)
        b = scale.to(torch.float64) if scale is not None else ones
        copies = torch.bincount(index[keep], minlength=int(safe.max()) + 1 if len(index) else 0).to(torch.float64)
        if not shared:
            copies = torch.ones_like(copies)
        grad = torch.where(keep, 1.0 / (copies[safe] * b), ones)
        m.index[axis] = index if m.index[axis] is None else torch.where(keep, m.index[axis][safe], -1)
        m.scale[axis] = _compose_factor(m.scale[axis], None if scale is None else b, keep, safe)
        m.grad[axis] = _compose_factor(m.grad[axis], None if bool((grad == 1).all()) else grad, keep, safe)


def _compose_factor(prev: Tensor | None, this: Tensor | None, keep: Tensor, safe: Tensor) -> Tensor | None:
    """Per-position factor after an edit: the previous factor of the source position times this edit's
    (1 on new positions); None when both are None (all ones)."""
    if prev is None and this is None:
        return None
    a = prev[safe].to(torch.float64) if prev is not None else torch.ones(len(safe), dtype=torch.float64)
    b = this if this is not None else torch.ones(len(safe), dtype=torch.float64)
    return torch.where(keep, a * b, torch.ones_like(b))


def block_index(old_units: int, new_units: int, width: int) -> Tensor:
    """Index for an axis made of ``units`` contiguous blocks of ``width`` (e.g. heads × d_head) when
    units are appended: old blocks keep their entries, new blocks are -1."""
    ix = torch.arange(new_units * width)
    return torch.where(ix < old_units * width, ix, -1)


def padded_index(old: int, new: int) -> Tensor:
    """``[0, 1, …, old−1, −1, …, −1]`` of length ``new``: old entries first, new ones appended."""
    return block_index(old, new, 1)
