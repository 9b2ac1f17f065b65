"""Grow the hidden width d_model → d̂_model (not implemented yet)."""

from __future__ import annotations

from growkit.errors import GrowkitError
from growkit.grow.state import GrowthState


def grow_d_model(state: GrowthState, old: int, new: int, method: str) -> None:
    raise GrowkitError("growing d_model is not implemented yet")
