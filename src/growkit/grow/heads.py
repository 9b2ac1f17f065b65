"""Grow the number of attention heads n_heads → n̂ and of key/value heads n_kv_heads → m̂ (GQA) together.

The math. With n query heads on m KV heads (group size g = n/m), attention is

    attn(x) = Σ_h O_h · softmax(q_h(x) k_κ(h)(x)ᵀ / √d_head) · v_κ(h)(x),    κ(h) = ⌊h / g⌋,

where q_h, k_κ, v_κ are blocks of rows of ``q_proj`` (width d_head), ``k_proj`` (d_head) and ``v_proj``
(d_head_v), and O_h is a block of columns of ``o_proj`` (d_head_v). A head is a unit whose producers
are its q rows (and the K/V rows of the KV head it reads) and whose consumer is its o_proj block. The
function is preserved when every old head keeps its q rows, reads a KV head whose K/V rows equal those
of its old KV head, and every new head's contribution O_h·(…) is zero:

- ``masked``: new heads' outputs are multiplied by ``head_mask`` rows (n_heads × d_head_v) set to 0,
  whatever their q/k/v/o weights. With GQA the OUTPUTS are masked, never K/V (old heads may share
  a KV head), so new KV heads can be random.
- ``zero``: new heads' o_proj columns are exactly 0, their q (and new K/V) rows random.
- ``split``: new head j duplicates old head s(j) (q rows, and a KV head equal to s(j)'s); the o_proj
  blocks of all c(s) copies of s are divided by c(s) (Σ copies = the old O_s·…), plus noise ±ε on
  pairs of copies that cancels in the sum.
- ``copy``: new entries N(0, std²) (``std = 0``: zeros, then exact): approximate.

Grouping (the part that needs care). Query head h must read a copy of its old KV head κ(h). With
ĝ = n̂/m̂ the new group size, old group k (g heads) needs c = ⌈g/ĝ⌉ new KV heads, all copies of old
KV head k, so the layout exists iff m̂ is a divisor of n̂ and m·c ≤ m̂ (else "ungroupable GQA"). New
order of KV heads: for each old k, [k, c−1 copies of k], then the m̂ − m·c fresh KV heads. New order
of query heads, per new KV head: its ĝ query heads; the c·ĝ slots of old group k hold
[old heads of k (in order)…, new heads…]. So old head h moves to

    σ(h) = ⌊h/g⌋·c·ĝ + h mod g,

and reads new KV head ⌊σ(h)/ĝ⌋ = ⌊h/g⌋·c + ⌊(h mod g)/ĝ⌋, a copy of old KV head ⌊h/g⌋. Cases:

- (a) m̂ = m, n̂ grows (ĝ > g, c = 1): new heads go INSIDE each group, after its old heads: query
  rows, o_proj columns and head_mask rows are permuted (the record's index maps interleave);
  K/V are untouched.
- (b) ĝ = g, m̂ > m (e.g. 4q/2kv → 8q/4kv, and every gpt2/bert growth, where g = ĝ = 1): everything
  is appended; fresh KV heads (random, or copies for ``split``) serve only new query heads.
- (c) anything else with m·c ≤ m̂, e.g. 4q/2kv → 4q/4kv (ĝ < g, c = 2): old KV heads are duplicated
  exactly (entries recorded as copies, never as new) so that the smaller groups still read their own
  K/V; this is how a GQA model is converted to more KV heads (up to plain multi-head attention).

With ``split`` a fresh KV head f (f = 0, 1, …) copies old KV head f mod m and its ĝ query heads copy
the heads of that old group cyclically; new heads inside an old group copy that group's heads cyclically.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from growkit.errors import GrowkitError
from growkit.grow.methods import Slot, expand_slot, fresh_values, mask_value, per_copy
from growkit.grow.state import GrowthState


def _ungroupable(n: int, m: int, n_new: int, m_new: int) -> str | None:
    """Why n query heads on m KV heads cannot be regrouped exactly as n_new on m_new (None: they can)."""
    if m_new < m or n_new < n:
        return "sizes only grow"
    if n_new % m_new:
        return f"n_heads ({n_new}) must be a multiple of n_kv_heads ({m_new})"
    g, g_new = n // m, n_new // m_new
    c = math.ceil(g / g_new)
    if m * c > m_new:
        return (f"each old group of {g} query heads must keep reading copies of its own KV head, so with groups "
                f"of {g_new} the {m} old groups need {c} KV heads each: {m * c} > {m_new}")
    return None


def check_groupable(n: int, m: int, n_new: int, m_new: int) -> None:
    """Raise a GrowkitError ("ungroupable GQA") naming sizes that work, unless the regrouping is exact."""
    why = _ungroupable(n, m, n_new, m_new)
    if why is None:
        return
    kv_ok = [k for k in range(m, n_new + 1) if (n_new, k) != (n, m) and _ungroupable(n, m, n_new, k) is None]
    heads_ok = [h for h in range(max(n, m_new), n_new + 16 * m_new * max(1, n // m) + 1)
                if (h, m_new) != (n, m) and _ungroupable(n, m, h, m_new) is None][:4]
    raise GrowkitError(
        f"ungroupable GQA: cannot grow {n} query heads on {m} KV heads to {n_new} on {m_new}: {why}. Sizes that "
        f"work: n_kv_heads in {kv_ok} with n_heads={n_new}, or n_heads in {heads_ok} with n_kv_heads={m_new}")


def gqa_layout(n: int, m: int, n_new: int, m_new: int, copy_q: bool, copy_kv: bool) -> tuple[Tensor, Tensor]:
    """Sources of the grown heads: ``(q_src, kv_src)``, new query head → old query head and new KV head →
    old KV head, -1 for a fresh one (see the module docstring for the order).

    KV heads that old query heads read are always copies. ``copy_q`` (split) makes every new query
    head a copy of an old head of the KV group its KV head copies; ``copy_kv`` makes fresh KV heads
    copies of old ones (forced by ``copy_q``, whose copies need their KV head).
    """
    check_groupable(n, m, n_new, m_new)
    g, g_new = n // m, n_new // m_new
    c = math.ceil(g / g_new)
    copy_kv = copy_kv or copy_q
    q_src = torch.full((n_new,), -1, dtype=torch.long)
    kv_src = torch.full((m_new,), -1, dtype=torch.long)
    for k in range(m):
        kv_src[k * c:(k + 1) * c] = k
        base = k * c * g_new
        for slot in range(c * g_new):
            if slot < g:
                q_src[base + slot] = k * g + slot
            elif copy_q:
                q_src[base + slot] = k * g + (slot - g) % g
    for f in range(m_new - m * c):
        kv = m * c + f
        if copy_kv:
            kv_src[kv] = f % m
        if copy_q:
            for slot in range(g_new):
                q_src[kv * g_new + slot] = (f % m) * g + slot % g
    return q_src, kv_src


def _is_identity(src: Tensor, units: int) -> bool:
    return len(src) == units and bool((src == torch.arange(units)).all())


def _kv_target(state: GrowthState, new: int) -> int:
    """n̂_kv: ``spec.n_kv_heads`` (None: unchanged) for llama; always n̂_heads for gpt2/bert (no GQA)."""
    cfg, target = state.cfg, state.spec.n_kv_heads
    if cfg.arch != "llama":
        if target is not None and target != new:
            raise GrowkitError(f"arch {cfg.arch!r} has no grouped-query attention: its K/V heads follow n_heads "
                               f"({new}); leave n_kv_heads unset or set it equal to n_heads")
        return new
    return cfg.n_kv_heads if target is None else target


def grow_n_heads(state: GrowthState, old: int, new: int, method: str) -> None:
    """n_heads ``old → new`` (maybe equal) and n_kv_heads → ``state.spec.n_kv_heads`` in every layer.

    ``method`` makes the new query heads (and their o_proj columns and head_mask rows); the method
    of ``n_kv_heads`` makes fresh KV heads (``split``: copies; else random, or zeros for ``copy``
    with std 0); KV heads that old query heads read are exact copies whatever the method.
    """
    cfg = state.cfg
    kv_old, kv_new = cfg.n_kv_heads, _kv_target(state, new)
    kv_method = state.spec.method_for("n_kv_heads") if cfg.arch == "llama" else method
    check_groupable(old, kv_old, new, kv_new)
    fresh_kv = kv_new - kv_old * math.ceil((old // kv_old) / (new // kv_new))
    if method == "split" and fresh_kv and kv_method != "split":
        raise GrowkitError(f"split n_heads makes new query heads copies of old ones, so their {fresh_kv} new KV "
                           f"heads must be copies too: use method 'split' for n_kv_heads as well (the default "
                           f"when n_kv_heads has no method of its own), not {kv_method!r}")
    q_src, kv_src = gqa_layout(old, kv_old, new, kv_new, copy_q=method == "split", copy_kv=kv_method == "split")
    q_fresh, kv_fresh = fresh_values(state, method, "live"), fresh_values(state, kv_method, "live")
    split = method == "split"
    dh, dv = cfg.d_head, cfg.d_head_v
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}.attn."
        edits = [("q_proj", q_src, old, dh, q_fresh), ("k_proj", kv_src, kv_old, dh, kv_fresh),
                 ("v_proj", kv_src, kv_old, dv, kv_fresh)]
        for proj, src, units, width, fresh in edits:
            if not _is_identity(src, units):
                for name in (f"{proj}.weight", f"{proj}.bias"):
                    expand_slot(state, Slot(p + name, 0, 1, width), src, units, fresh)
        if _is_identity(q_src, old):
            continue  # only KV heads were duplicated (4q/2kv → 4q/4kv): queries, outputs, masks unchanged
        # o_proj columns: the zero side (split: divided by the copies, with cancelling noise)
        expand_slot(state, Slot(p + "o_proj.weight", 1, 1, dv), q_src, old, fresh_values(state, method, "zero"),
                    per_copy(q_src, old) if split else None, noise=split)
        if method == "masked" and new > old:
            state.mask(p + "head_mask", (old, dv))
        expand_slot(state, Slot(p + "head_mask", 0), q_src, old, mask_value(method))
    state.cfg = cfg.replace(n_heads=new, n_kv_heads=kv_new)
