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

Which side is the *zero side* depends on the dimension: it is the side whose 0 keeps the function
(FFN and value channels: consumers; heads: o_proj columns; q/k channels: the q rows; d_model: the
producers, which must keep the new stream channels 0). `fresh_values` is the one table of what a new
unit's entries hold, by method and side; every operator asks it, and `expand_slot` is the one edit
of a tensor along a unit axis (copies, split's division and cancelling noise, fresh values).

Tensor axes are laid out as ``groups × units × width`` (e.g. ``q_proj`` rows are heads × d_head:
groups 1, width d_head; ``v_proj`` rows growing d_head_v are n_kv_heads groups × d_head_v units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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


Side = Literal["live", "zero"]


def fresh_values(state: GrowthState, method: str, side: Side) -> float | str:
    """What the new entries of a unit hold under ``method`` on ``side`` (``"random"``: N(0, std²)).

    ``zero`` and ``split`` put exactly 0 on the zero side (split's new units are copies, so this only
    fills entries that copy nothing) and random values on the live side; ``masked`` makes both sides
    random (the mask keeps the function); ``copy`` pads both sides with N(0, std²), zeros at std 0
    (`growkit.grow.spec.check_std` refuses std 0 for ``zero`` and ``masked``, where it makes dead units).
    """
    if method == "copy" and state.std == 0:
        return 0.0
    return 0.0 if side == "zero" and method in ("zero", "split") else "random"


def mask_value(method: str) -> float:
    """A growth mask's value on new units: 0 for ``masked`` (the unit is off until ramped), else 1."""
    return 0.0 if method == "masked" else 1.0


def per_copy(src: Tensor, old: int) -> Tensor:
    """Per new unit, 1/(number of copies of its source) — split divides the zero side by it — and 1 for a
    fresh unit (float64)."""
    counts = torch.bincount(src[src >= 0], minlength=old).to(torch.float64)
    return torch.where(src >= 0, 1.0 / counts[src.clamp(min=0)], torch.ones(len(src), dtype=torch.float64))


def expand_slot(state: GrowthState, slot: Slot, src: Tensor, old: int, fresh: float | str | Tensor,
                unit_scale: Tensor | None = None, noise: bool = False) -> None:
    """Grow one tensor along its unit axis: new unit j takes old unit ``src[j]``'s entries times
    ``unit_scale[j]`` (per unit), or ``fresh`` where ``src[j] = -1``; ``noise`` adds split's cancelling
    noise to pairs of copies. A tensor the model does not have (a bias of a bias-free llama) is skipped."""
    if slot.name not in state.tensors:
        return
    scale = _axis_vector(unit_scale, slot) if unit_scale is not None else None
    state.expand(slot.name, slot.axis, axis_index(src, old, slot), fresh, scale)
    if noise:
        _add_cancelling_noise(state, slot, src)


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
    zero_side: Literal["producers", "consumers"] = "consumers",
) -> Tensor:
    """Grow a unit dimension from ``old`` to ``new`` in every producer, consumer and mask tensor.

    Tensors named in a slot that the model does not have (e.g. biases of a bias-free llama) are
    skipped. ``masks`` are only written by ``masked`` growth (created as ones at the old size from
    ``mask_shape`` when absent, new units 0) and are widened with their existing values otherwise.
    ``zero_side``: which side ``zero`` sets to 0: the consumers, except for d_model, whose new stream
    channels must stay 0 (``split`` always divides the consumers). Returns the unit source index (new
    unit → old unit or -1).
    """
    src = unit_source(old, new, method)
    split = method == "split"
    producer_side, consumer_side = ("zero", "live") if zero_side == "producers" else ("live", "zero")
    for slot in producers:
        expand_slot(state, slot, src, old, fresh_values(state, method, producer_side))
    for slot in consumers:
        expand_slot(state, slot, src, old, fresh_values(state, method, consumer_side),
                    per_copy(src, old) if split else None, noise=split)
    for slot in masks:
        if method == "masked":
            state.mask(slot.name, (mask_shape or {})[slot.name])
        expand_slot(state, slot, src, old, mask_value(method))
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
