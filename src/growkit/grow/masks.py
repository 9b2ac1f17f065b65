"""Move and remove MSG growth masks.

A mask entry is 1 for an old unit and c for a new one. `ramp_masks(model, c)` sets every entry that is
below 1 to ``c`` (so call it with a non-decreasing schedule, c ∈ [0, 1]; the trainer's growth schedule
does this once per optimizer step). `fold_masks(model)` at c = 1 deletes the mask buffers: a mask of
ones multiplies by 1, a mask-weighted norm with all-ones weights is the plain norm, and a layer gate of
1 is the plain block, so the folded model computes exactly the same function and costs nothing extra.
"""

from __future__ import annotations

import torch
from torch import nn

from growkit.errors import GrowkitError


def _masks(model: nn.Module) -> dict[str, torch.Tensor]:
    if not hasattr(model, "masks"):
        raise GrowkitError(f"expected a growkit.Transformer, got {type(model).__name__}")
    return model.masks()


@torch.no_grad()
def ramp_masks(model: nn.Module, c: float) -> None:
    """Set every growth mask's new entries (those below 1) to ``c``."""
    if not 0.0 <= float(c) <= 1.0:
        raise GrowkitError(f"mask value c must be in [0, 1], got {c}")
    for mask in _masks(model).values():
        mask[mask < 1] = float(c)


@torch.no_grad()
def fold_masks(model: nn.Module) -> None:
    """Remove all growth masks; they must all be 1 (ramp to c = 1 first)."""
    masks = _masks(model)
    for name, mask in masks.items():
        if bool((mask != 1).any()):
            raise GrowkitError(f"cannot fold {name}: its new entries are at {float(mask.min()):g}, not 1; ramp "
                               f"them first with gk.ramp_masks(model, 1.0)")
    modules = dict(model.named_modules())
    for name in masks:
        owner, _, leaf = name.rpartition(".")
        setattr(modules[owner], leaf, None)


def mask_level(model: nn.Module) -> float | None:
    """The current c of the new entries (the smallest mask value), or None when no masks are present."""
    masks = _masks(model)
    return min(float(m.min()) for m in masks.values()) if masks else None
