"""Grow the per-head widths d_head (queries/keys) and d_head_v (values) (not implemented yet)."""

from __future__ import annotations

from growkit.errors import GrowkitError
from growkit.grow.state import GrowthState


def grow_d_head(state: GrowthState, old: int, new: int, method: str) -> None:
    raise GrowkitError("growing d_head is not implemented yet")


def grow_d_head_v(state: GrowthState, old: int, new: int, method: str) -> None:
    raise GrowkitError("growing d_head_v is not implemented yet")
