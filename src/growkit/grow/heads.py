"""Grow the number of attention heads n_heads and key/value heads n_kv_heads (not implemented yet)."""

from __future__ import annotations

from growkit.errors import GrowkitError
from growkit.grow.state import GrowthState


def grow_n_heads(state: GrowthState, old: int, new: int, method: str) -> None:
    """n_heads old → new (maybe equal) and n_kv_heads → ``state.spec.n_kv_heads`` (if set)."""
    raise GrowkitError("growing n_heads is not implemented yet")
