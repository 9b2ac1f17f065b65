"""Grow the input length max_seq_len L → L̂.

Learned positions (gpt2, bert): ``pos_emb.weight`` gains rows L … L̂−1. A sequence of length T ≤ L
reads only rows 0 … T−1 (``x = tok_emb + pos_emb[:T]``), so its outputs are unchanged whatever the new
rows hold, for every method:

- ``zero``: new rows 0;
- ``masked``, ``copy``: new rows N(0, std²) (``copy`` with std 0: zeros);
- ``split``, ``stack``, ``interpolate``: old rows tiled, new row p = old row p mod L — positions past
  L start from the embeddings of the positions L earlier (a common initialisation for longer
  contexts); recorded as copies (index p mod L), not as new entries.

RoPE (llama): nothing to copy — the rotation tables cos/sin(p·θ^(−2j/d_head)) are recomputed from the
config for every position, and those of positions < L are unchanged; only the config changes.
"""

from __future__ import annotations

import torch

from growkit.grow.state import GrowthState, padded_index

TILED = ("split", "stack", "interpolate")


def grow_max_seq_len(state: GrowthState, old: int, new: int, method: str) -> None:
    """max_seq_len ``old → new``: new rows of ``pos_emb.weight`` (learned positions) and the config."""
    name = "pos_emb.weight"
    if name in state.tensors:
        if method in TILED:
            state.expand(name, 0, torch.arange(new) % old, shared=False)
        else:
            fresh: float | str = 0.0 if method == "zero" or (method == "copy" and state.std == 0) else "random"
            state.expand(name, 0, padded_index(old, new), fresh)
    state.cfg = state.cfg.replace(max_seq_len=new)
