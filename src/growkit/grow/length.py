"""Grow the input length max_seq_len L → L̂.

Learned positions (gpt2, bert): ``pos_emb.weight`` gains rows L … L̂−1. A sequence of length T ≤ L
reads only rows 0 … T−1 (``x = tok_emb + pos_emb[:T]``), so its outputs are unchanged whatever the new
rows hold, for every method but ``interpolate``:

- ``zero``: new rows 0;
- ``masked``, ``copy``: new rows N(0, std²) (``copy`` with std 0: zeros);
- ``tile`` (and ``split``, ``stack``, which mean the same here): old rows tiled, new row p = old row
  p mod L — positions past L start from the embeddings of the positions L earlier (a common
  initialisation for longer contexts); recorded as copies (index p mod L), each getting its own
  gradient (a position row is not a unit whose copies share one), not as new entries;
- ``interpolate`` (position interpolation): the L old rows are stretched over L̂ positions, row p̂ of the
  new table = the old table linearly interpolated at x = p̂·(L−1)/(L̂−1):
  ``E'[p̂] = (1−f)·E[⌊x⌋] + f·E[⌊x⌋+1]``, f = x − ⌊x⌋. The first and last rows are the old ones; every
  position's embedding moves, so old-length inputs change: approximate. Rows that land on an old row
  (f = 0) are recorded as its copies, the others (mixtures of two rows) as new entries.

RoPE (llama): nothing to copy — the rotation tables cos/sin(p·θ^(−2j/d_head)) are recomputed from the
config for every position, and those of positions < L are unchanged; only the config changes.
``interpolate`` would have to scale the rotation positions, which the model does not do: refused.
"""

from __future__ import annotations

import torch
from torch import Tensor

from growkit.errors import GrowkitError
from growkit.grow.methods import fresh_values
from growkit.grow.state import GrowthState, padded_index

TILED = ("tile", "split", "stack")


def grow_max_seq_len(state: GrowthState, old: int, new: int, method: str) -> None:
    """max_seq_len ``old → new``: new rows of ``pos_emb.weight`` (learned positions) and the config."""
    name = "pos_emb.weight"
    if method == "interpolate" and name not in state.tensors:
        raise GrowkitError(
            f"method 'interpolate' for max_seq_len stretches learned position embeddings, and this "
            f"{state.cfg.arch} model has rotary positions (RoPE position interpolation is not implemented): "
            f"use 'zero' (or any other method: with RoPE they all just extend the rotation tables)")
    if name in state.tensors:
        if method in TILED:
            state.expand(name, 0, torch.arange(new) % old, shared=False)
        elif method == "interpolate":
            index, rows = interpolated_rows(state.tensors[name], new)
            state.expand(name, 0, index, rows, shared=False)
        else:  # new rows are the zero side (zero: 0), or random
            state.expand(name, 0, padded_index(old, new), fresh_values(state, method, "zero"))
    state.cfg = state.cfg.replace(max_seq_len=new)


def interpolated_rows(table: Tensor, new: int) -> tuple[Tensor, Tensor]:
    """``(index, rows)``: the (L, d) ``table`` linearly interpolated at p̂·(L−1)/(L̂−1) for p̂ < ``new``,
    computed in float64; ``index[p̂]`` is the old row it equals (f = 0, exact in integers) or -1."""
    old = table.shape[0]
    p = torch.arange(new, dtype=torch.long)
    num, den = p * (old - 1), max(new - 1, 1)
    lo = torch.div(num, den, rounding_mode="floor")
    frac = ((num - lo * den).to(torch.float64) / den).unsqueeze(1)
    hi = (lo + 1).clamp(max=old - 1)
    t = table.to(torch.float64)
    rows = (1 - frac) * t[lo] + frac * t[hi]
    index = torch.where(num % den == 0, lo, -1)
    return index, rows.to(table.dtype)
