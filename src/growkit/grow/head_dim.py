"""Grow the per-head widths: d_head (queries and keys) and d_head_v (values), in every layer.

d_head: d → d̂. Scores are s = q·k/√d = Σ_c q_c k_c /√d over the d channels of a head. Channels are
units whose two sides are a q row (n_heads groups × d channels) and a k row (n_kv_heads groups × d).
If the new channels add 0 to q·k, the scores become q·k/√d̂; multiplying the OLD q rows (and q
bias) by √(d̂/d) — Gesmundo & Maile's W_Q·√(d̂/d) — gives back q·k/√d exactly. This factor is
recorded as the scale of the q rows (for every method, so ``copy`` with std 0 is exact too).

- ``masked``: ``qk_mask`` (d̂,) multiplies q, 0 on new channels, so they add 0 whatever the weights.
- ``zero``: new q channels exactly 0 (weights and bias), new k channels random: q_c·k_c = 0, and the
  q side gets gradient ∝ k_c at once.
- ``split``: new channel c' duplicates s(c') (k rows copied; q rows copied and divided by the number
  of copies, with cancelling noise on pairs), so Σ over the copies of q_c'·k_c' = q_s·k_s.
- ``copy``: new channels N(0, std²): approximate.

RoPE (llama). Channel pair (j, j + d/2) is rotated at frequency θ^(−2j/d), so a new d̂ changes every
pair's frequency and the rotate-half pairing. It is exact only when d̂ = r·d: old pair j moves to pair
r·j (frequency θ^(−2rj/rd) = θ^(−2j/d), unchanged) and the new channels fill whole pairs in between,
so a zero (or masked) q pair stays zero after rotation. We place old pair j at ⌊j·d̂/d⌋ for any d̂ (the
closest frequency; exact for multiples). ``masked`` and ``zero`` need d̂ a multiple of d; ``split`` is
refused (a duplicate pair would rotate at a different frequency from its source); ``copy`` works at
any even d̂, approximately.

d_head_v: d_v → d̂_v. Value channels are units: producers are v rows (n_kv_heads groups × d_v),
consumers o_proj columns (n_heads groups × d_v); head_mask (n_heads × d_v) masks them on axis 1.
Attention mixes positions but not channels, so value channel c of head h feeds only o_proj column
(h, c): ``masked`` (head_mask new columns 0), ``zero`` (o_proj new columns 0, v rows random),
``split`` (v channels duplicated, o_proj columns divided) and ``copy`` behave as in
`growkit.grow.methods`. Neither width depends on d_model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from growkit.errors import GrowkitError
from growkit.grow.methods import Slot, expand_slot, expand_units, fresh_values, mask_value, per_copy, unit_source
from growkit.grow.state import GrowthState


def channel_source(old: int, new: int, method: str, rope: bool) -> Tensor:
    """New q/k channel → old channel it holds (or copies, for split), -1 for a fresh channel.

    Without RoPE new channels are appended to each head (split: cyclic copies, as `unit_source`).
    With RoPE old pair (j, j + d/2) goes to (j', j' + d̂/2), j' = ⌊j·d̂/d⌋ (same frequency when d | d̂).
    """
    if not rope:
        return unit_source(old, new, method)
    half, half_new = old // 2, new // 2
    src = torch.full((new,), -1, dtype=torch.long)
    j = torch.arange(half)
    placed = (j * new) // old
    src[placed] = j
    src[placed + half_new] = j + half
    return src


def _check_rope(old: int, new: int, method: str) -> None:
    if new % 2:
        raise GrowkitError(f"RoPE rotates pairs of channels: d_head must stay even, got {new}")
    works = (f"exact: method 'masked' or 'zero' with d_head a multiple of {old} ({2 * old}, {3 * old}, …), old "
             f"pairs keeping their frequencies; or grow n_heads instead; 'copy' grows to any even d_head "
             f"approximately")
    if method == "split":
        raise GrowkitError(f"q/k width growth under RoPE cannot be split: a duplicated channel pair would rotate "
                           f"at another frequency than its source, so its scores differ. {works}")
    if method in ("masked", "zero") and new % old:
        raise GrowkitError(f"q/k width growth under RoPE: d_head {old} → {new} changes the rotation frequency "
                           f"θ^(−2j/d_head) of the channel pairs, so method {method!r} cannot keep the "
                           f"function. {works}")


def grow_d_head(state: GrowthState, old: int, new: int, method: str) -> None:
    """d_head ``old → new``: new q/k channels per head, old q rows × √(new/old) (see the module docstring)."""
    cfg = state.cfg
    rope = cfg.positions == "rope"
    if rope:
        _check_rope(old, new, method)
    src = channel_source(old, new, method, rope)
    split = method == "split"
    copies = per_copy(src, old) if split else torch.ones(new, dtype=torch.float64)
    q_scale = torch.where(src >= 0, math.sqrt(new / old) * copies, 1.0)
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}.attn."
        for name in ("q_proj.weight", "q_proj.bias"):  # the zero side
            expand_slot(state, Slot(p + name, 0, cfg.n_heads, 1), src, old, fresh_values(state, method, "zero"),
                        q_scale, noise=split and name == "q_proj.weight")
        for name in ("k_proj.weight", "k_proj.bias"):
            expand_slot(state, Slot(p + name, 0, cfg.n_kv_heads, 1), src, old, fresh_values(state, method, "live"))
        if method == "masked":
            state.mask(p + "qk_mask", (old,))
        expand_slot(state, Slot(p + "qk_mask", 0), src, old, mask_value(method))
    state.cfg = cfg.replace(d_head=new)


def grow_d_head_v(state: GrowthState, old: int, new: int, method: str) -> None:
    """d_head_v ``old → new``: new value channels per head (v rows, o_proj columns, head_mask columns).

    A head_mask present for a non-masked method gets, on new columns, the value of its row (a head
    added masked in the same growth keeps all its channels masked).
    """
    cfg = state.cfg
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}.attn."
        producers = [Slot(p + "v_proj.weight", 0, cfg.n_kv_heads, 1), Slot(p + "v_proj.bias", 0, cfg.n_kv_heads, 1)]
        src = expand_units(state, method, old, new, producers, [Slot(p + "o_proj.weight", 1, cfg.n_heads, 1)])
        mask = p + "head_mask"
        if method == "masked":
            state.mask(mask, (cfg.n_heads, old))
            state.expand(mask, 1, src, 0.0)
        elif mask in state.tensors:
            row = state.tensors[mask].amin(dim=1, keepdim=True).expand(cfg.n_heads, new)
            state.expand(mask, 1, src, row)
    state.cfg = cfg.replace(d_head_v=new)
