"""How new units get their weights: the one unit-expansion every width-like dimension is made of.

A *unit* is what a dimension counts: a hidden FFN neuron, a head, a value channel, a residual
channel. Growing a dimension from n to n̂ units touches two kinds of tensors:

- *producers* compute the unit (FFN: rows of ``up``/``gate`` and their biases);
- *consumers* read it (FFN: columns of ``down``).

Per method, for units appended at positions n … n̂−1:

- ``masked`` (MSG): producers and consumers random; the unit's mask entry is 0, so at c = 0 the unit's
  output is multiplied by 0 and the function is unchanged whatever the weights.
- ``zero`` (Gesmundo & Maile): producers random, consumers exactly 0: the unit is computed but read
  with zero weight, so the output is unchanged, and the consumers' gradient (∝ the unit's activation)
  is non-zero, so the unit comes alive. Never both sides zero (a saddle).
- ``copy`` (copy-and-pad, Zhang 2021): both sides N(0, std²) (``std = 0`` pads with zeros):
  approximate.
- ``split`` (Net2Net / bert2BERT FPI): new unit j duplicates old unit s(j) = (j − n) mod n; producers
  copy s(j)'s weights, consumers of every copy of s are divided by its number of copies k(s), so
  Σ copies = the old contribution. Noise ±ε is added to pairs of copies' consumer weights, cancelling
  in the sum, to break symmetry.

Tensor axes are laid out as ``groups × units × width`` (e.g. ``q_proj`` rows are heads × d_head:
groups 1, width d_head; ``v_proj`` rows growing d_head_v are n_kv_heads groups × d_head_v units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from growkit.grow.state import GrowthState


@dataclass(frozen=True)
class Slot:
    """Where units live in one tensor: ``name``'s axis ``axis`` is groups × units × width."""

    name: str
    axis: int
    groups: int = 1
    width: int = 1


def unit_source(old: int, new: int, method: str) -> Tensor:
    """New unit → old unit it copies (split), or -1 for a fresh unit (other methods)."""
    extra = torch.arange(new - old)
    src = extra % old if method == "split" else torch.full_like(extra, -1)
    return torch.cat([torch.arange(old), src])


def axis_index(unit_src: Tensor, old_units: int, slot: Slot) -> Tensor:
    """Expand a unit index to the tensor axis (groups × units × width, flattened)."""
    new_units = len(unit_src)
    g = torch.arange(slot.groups).view(-1, 1, 1)
    w = torch.arange(slot.width).view(1, 1, -1)
    u = unit_src.view(1, -1, 1)
    flat = (g * old_units + u) * slot.width + w
    return torch.where(u >= 0, flat, -1).expand(slot.groups, new_units, slot.width).reshape(-1)


def _axis_vector(per_unit: Tensor, slot: Slot) -> Tensor:
    return per_unit.view(1, -1, 1).expand(slot.groups, -1, slot.width).reshape(-1)


def expand_units(
    state: GrowthState,
    method: str,
    old: int,
    new: int,
    producers: list[Slot],
    consumers: list[Slot],
    masks: list[Slot] = (),
    mask_shape: dict[str, tuple[int, ...]] | None = None,
) -> Tensor:
    """Grow a unit dimension from ``old`` to ``new`` in every producer, consumer and mask tensor.

    Tensors named in a slot that the model does not have (e.g. biases of a bias-free llama) are
    skipped. ``masks`` are only written by ``masked`` growth (created as ones at the old size from
    ``mask_shape`` when absent, new units 0) and are widened with their existing values otherwise.
    Returns the unit source index (new unit → old unit or -1).
    """
    src = unit_source(old, new, method)
    counts = torch.bincount(src[src >= 0], minlength=old).to(torch.float64)
    consumer_scale = torch.where(src >= 0, 1.0 / counts[src.clamp(min=0)], torch.ones(len(src), dtype=torch.float64))
    pad: float | str = 0.0 if method == "copy" and state.std == 0 else "random"
    fresh_producer, fresh_consumer = pad, {"masked": "random", "zero": 0.0, "split": 0.0, "copy": pad}[method]
    for slot in producers:
        if slot.name in state.tensors:
            state.expand(slot.name, slot.axis, axis_index(src, old, slot), fresh_producer)
    for slot in consumers:
        if slot.name in state.tensors:
            scale = _axis_vector(consumer_scale, slot) if method == "split" else None
            state.expand(slot.name, slot.axis, axis_index(src, old, slot), fresh_consumer, scale)
            if method == "split":
                _add_cancelling_noise(state, slot, src)
    for slot in masks:
        if method == "masked":
            state.mask(slot.name, (mask_shape or {})[slot.name])
        if slot.name in state.tensors:
            state.expand(slot.name, slot.axis, axis_index(src, old, slot), 0.0 if method == "masked" else 1.0)
    return src


def _add_cancelling_noise(state: GrowthState, slot: Slot, src: Tensor) -> None:
    """Add +r to one copy and −r to another, for pairs of copies of the same old unit (r ~ noise·std)."""
    pairs = []
    for unit in range(int(src.max()) + 1):
        copies = (src == unit).nonzero().flatten().tolist()
        pairs += [(copies[i], copies[i + 1]) for i in range(0, len(copies) - 1, 2)]
    if not pairs or state.spec.noise == 0:
        return
    t = state.tensors[slot.name]
    moved = t.movedim(slot.axis, 0).unflatten(0, (slot.groups, len(src), slot.width))
    a = torch.tensor([p[0] for p in pairs])
    b = torch.tensor([p[1] for p in pairs])
    r = state.random(moved[:, a].shape, moved, std=state.spec.noise * float(t.std()) if t.numel() > 1 else 0.0)
    moved = moved.clone()
    moved[:, a] += r
    moved[:, b] -= r
    state.tensors[slot.name] = moved.flatten(0, 2).movedim(0, slot.axis).contiguous()
