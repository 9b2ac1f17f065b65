"""Grow the number of layers n_layers → n̂_layers (not implemented yet)."""

from __future__ import annotations

from growkit.errors import GrowkitError
from growkit.grow.state import GrowthState


def grow_n_layers(state: GrowthState, old: int, new: int, method: str) -> None:
    raise GrowkitError("growing n_layers is not implemented yet")
