"""Grow the input length max_seq_len (not implemented yet)."""

from __future__ import annotations

from growkit.errors import GrowkitError
from growkit.grow.state import GrowthState


def grow_max_seq_len(state: GrowthState, old: int, new: int, method: str) -> None:
    raise GrowkitError("growing max_seq_len is not implemented yet")
