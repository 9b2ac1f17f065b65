"""Grow the number of layers n_layers → n̂_layers.

A layer is a block ``blocks.{i}.*`` (its parameters and the mask buffers that live in it:
``attn.head_mask``, ``attn.qk_mask``, ``mlp.ffn_mask``, ``layer_gate``). The model-level
``width_mask`` is not per layer and is left alone. Old blocks are renumbered with
`GrowthState.rename_all`, so their record ``source`` stays their old name (the optimizer carry and the
sparsity controller follow them); new blocks are either *fresh* (``masked``, ``zero``, ``copy``: record
source None) or *copies* of old blocks (``stack``, ``interpolate``: record source the copied old block).

Fresh blocks take the shapes of the old blocks as they are at this point of the growth (``grow`` grows
d_ff, heads, head widths and d_model first) and the model's own init: every matrix N(0, std²) with
``std = state.std`` (``spec.std``, else the config's ``init_std``), the residual projections
``attn.o_proj.weight`` and ``mlp.down.weight`` scaled by 1/√(2·n̂_layers) — the NEW depth, as
`Transformer.init_weights` would for a model built at that depth —, biases 0, norm gains 1.

Methods, for L old and k = n̂ − L new layers:

- ``masked`` (MSG): fresh blocks with a scalar ``layer_gate`` g = 0. A gated block computes
  ``g·block(x) + (1−g)·x``, which at g = 0 is ``0·block(x) + 1·x = x`` exactly, whatever the block's
  weights and whatever the arch (post-LN bert included, since the gate bypasses the block's LayerNorms
  too). Masks inside blocks (``ffn_mask``, ``head_mask``, ``qk_mask``, e.g. from a masked d_ff growth in
  the same spec) are created on the fresh blocks with the old blocks' shapes and all ones: the whole
  fresh block is gated, so masking some of its units as well would only slow its ramp. `ramp_masks`
  moves g to c; at c = 1 `fold_masks` removes the gate and the block is a plain block.
- ``zero`` (Gesmundo & Maile, layer expansion): fresh blocks whose residual-branch outputs are zero:
  ``attn.o_proj`` and ``mlp.down`` weights AND biases are 0, every other tensor has the init above.
  A pre-norm block (gpt2, llama) computes ``h = x + o_proj(attn(N(x))) = x + 0`` and
  ``h + down(mlp(N(h))) = x + 0``: exactly x. o_proj and down get gradient at once (∂L/∂W_o = δ·yᵀ with
  y the random attention output, likewise for down), the rest of the block once they are non-zero.
  A post-LN (bert) block computes ``LN(x + 0)``, which is not x: refused with a `GrowkitError`.
- ``copy`` (copy-and-pad): the fresh blocks of the init above with no gate: approximate, the error is
  what `check_preserved` reports. With ``std = 0`` the branch outputs are 0, exact for pre-norm archs.
- ``stack`` (StackBERT / G_stack): the grown stack is the old stack repeated: layer j copies old layer
  ``j mod L`` for the first ⌊n̂/L⌋·L layers, and a remainder of q = n̂ mod L layers copies the TOP q old
  layers (``L−q … L−1``), so the grown model always ends with a copy of the old top layer, whose output
  the head was trained on. E.g. 3 → 6: [0,1,2,0,1,2]; 3 → 5: [0,1,2,1,2]; 3 → 7: [0,1,2,0,1,2,2].
  Layers 0 … L−1 are the old layers themselves. Not function-preserving.
- ``interpolate`` (MIDAS / CompoundGrow): every old layer is repeated in place, old layer i
  ``⌊(i+1)·n̂/L⌋ − ⌊i·n̂/L⌋`` times (evenly spread; the extra repeats of a non-multiple go to the upper
  layers): 3 → 6: [0,0,1,1,2,2]; 3 → 5: [0,1,1,2,2]. The first copy of each old layer is the old layer
  (renumbered), the others are copies. Not function-preserving.

``depth_placement`` (``masked``, ``zero``, ``copy``) says where the k new layers go; old layers keep
their order in the remaining positions:

- ``"top"``: after the old layers (indices L … n̂−1);
- ``"bottom"``: before them (indices 0 … k−1);
- ``"interleave"``: after old layer i come ``⌊(i+1)·k/L⌋ − ⌊i·k/L⌋`` new layers, i.e. the old stack is
  cut into k nearly equal groups and one new layer follows each group (3 → 6: old,new,old,new,old,new;
  4 → 6: old,old,new,old,old,new; 2 → 6: old,new,new,old,new,new);
- ``"middle"``: as one block after the lower ⌊L/2⌋ old layers (3 → 5: old,new,new,old,old);
- a list of the new layers' indices in the grown model (k distinct indices in 0 … n̂−1).

``stack`` and ``interpolate`` define the order of their layers themselves, so they refuse any
placement but the default ``"top"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from growkit.errors import GrowkitError
from growkit.grow.spec import DEPTH_PLACEMENTS
from growkit.grow.state import GrowthState

#: Per-block mask buffers other than the layer gate (shapes follow the old blocks).
BLOCK_MASKS = ("attn.head_mask", "attn.qk_mask", "mlp.ffn_mask")
#: The residual-branch output projections: zeroed by ``zero``, init std scaled by 1/√(2·n_layers).
RESIDUAL_OUTPUTS = ("attn.o_proj", "mlp.down")
FRESH_METHODS = ("masked", "zero", "copy")
COPY_METHODS = ("stack", "interpolate")


def grow_n_layers(state: GrowthState, old: int, new: int, method: str) -> None:
    """Grow n_layers ``old`` → ``new`` with ``method`` (see the module docstring for the math)."""
    if new < old:
        raise GrowkitError(f"cannot grow n_layers {old} → {new}: sizes only grow (leave n_layers unset to keep {old})")
    if new == old:
        return
    placement = state.spec.depth_placement
    if method in COPY_METHODS:
        if placement != "top":
            raise GrowkitError(
                f"depth_placement={placement!r} does not apply to method {method!r}: {method} sets the order of the "
                f"layers itself; leave depth_placement at 'top', or use masked, zero or copy to place new layers")
        sources = stack_sources(old, new) if method == "stack" else interpolate_sources(old, new)
        _copy_layers(state, old, sources)
    elif method in FRESH_METHODS:
        if method == "zero" and state.cfg.arch == "bert":
            raise GrowkitError(
                "method 'zero' cannot grow n_layers of a post-LN (bert) model: a block with zero o_proj and down "
                "still computes LayerNorm(x + 0) ≠ x, so it is not the identity; use method 'masked' (exact: the "
                "new layers are gated off) or 'stack' / 'interpolate' (approximate)")
        new_positions = placement_indices(placement, old, new)
        _insert_fresh_layers(state, old, new, new_positions, method)
    else:
        raise GrowkitError(f"method {method!r} does not apply to n_layers: use one of "
                           f"{', '.join(FRESH_METHODS + COPY_METHODS)}")
    state.cfg = state.cfg.replace(n_layers=new)


# -- where the new layers go -----------------------------------------------------------------------
def placement_indices(placement: str | Sequence[int], old: int, new: int) -> list[int]:
    """The sorted indices, in the grown model of ``new`` layers, of the ``new − old`` new layers."""
    k = new - old
    if isinstance(placement, str):
        if placement == "top":
            return list(range(old, new))
        if placement == "bottom":
            return list(range(k))
        if placement == "middle":
            return list(range(old // 2, old // 2 + k))
        if placement == "interleave":
            out, pos = [], 0
            for i in range(old):
                pos += 1  # old layer i
                after = (i + 1) * k // old - i * k // old
                out += range(pos, pos + after)
                pos += after
            return out
        raise GrowkitError(f"unknown depth_placement {placement!r}: use one of {', '.join(DEPTH_PLACEMENTS)}, or a "
                           f"list of the new layers' indices in the grown model")
    if not isinstance(placement, Sequence) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in placement):
        raise GrowkitError(f"depth_placement must be one of {', '.join(DEPTH_PLACEMENTS)} or a list of whole numbers "
                           f"(the new layers' indices in the grown model), got {placement!r}")
    indices = list(placement)
    if len(indices) != k:
        raise GrowkitError(f"depth_placement lists {len(indices)} indices, but growing n_layers {old} → {new} adds "
                           f"{k} layers: give exactly {k} indices of new layers in the grown model")
    if len(set(indices)) != k:
        raise GrowkitError(f"depth_placement {indices} repeats an index: give each of the {k} new layers its own index")
    bad = [i for i in indices if not 0 <= i < new]
    if bad:
        raise GrowkitError(f"depth_placement indices {bad} are out of range for a grown model of {new} layers: use "
                           f"indices in 0 … {new - 1}")
    return sorted(indices)


def stack_sources(old: int, new: int) -> list[int]:
    """Old layer copied by each layer of the grown stack: the old stack repeated, then the top
    ``new mod old`` old layers (3 → 5: [0, 1, 2, 1, 2])."""
    full, rest = divmod(new, old)
    return list(range(old)) * full + list(range(old - rest, old))


def interpolate_sources(old: int, new: int) -> list[int]:
    """Old layer copied by each layer of the grown stack: each old layer repeated in place, the repeats
    spread evenly, extras to the upper layers (3 → 6: [0, 0, 1, 1, 2, 2]; 3 → 5: [0, 1, 1, 2, 2])."""
    return [i for i in range(old) for _ in range((i + 1) * new // old - i * new // old)]


# -- the edits -------------------------------------------------------------------------------------
def _layer_tensors(state: GrowthState, layer: int) -> list[str]:
    """The suffixes (``attn.q_proj.weight`` …) of the tensors of block ``layer``."""
    prefix = f"blocks.{layer}."
    return [n[len(prefix):] for n in state.tensors if n.startswith(prefix)]


def _renumber(state: GrowthState, old: int, positions: list[int]) -> None:
    """Move old block i to index ``positions[i]`` (all at once, so no name is overwritten)."""
    mapping = {f"blocks.{i}.{s}": f"blocks.{positions[i]}.{s}"
               for i in range(old) for s in _layer_tensors(state, i) if positions[i] != i}
    if mapping:
        state.rename_all(mapping)


def _copy_layers(state: GrowthState, old: int, sources: list[int]) -> None:
    """``stack`` / ``interpolate``: grown layer j becomes a copy of old layer ``sources[j]``; the first
    layer taking an old layer is that layer itself (renumbered), the others are `copy_tensor` copies
    (their record source is the old layer's tensor)."""
    first = {src: sources.index(src) for src in range(old)}
    _renumber(state, old, [first[i] for i in range(old)])
    for j, src in enumerate(sources):
        if first[src] != j:
            for s in _layer_tensors(state, first[src]):
                state.copy_tensor(f"blocks.{first[src]}.{s}", f"blocks.{j}.{s}")


def _insert_fresh_layers(state: GrowthState, old: int, new: int, new_positions: list[int], method: str) -> None:
    """``masked`` / ``zero`` / ``copy``: renumber the old layers around ``new_positions`` and add a
    fresh block at each of them."""
    template = _fresh_template(state, old)
    fresh = set(new_positions)
    positions = [j for j in range(new) if j not in fresh]
    _renumber(state, old, positions)
    for j in new_positions:
        _add_fresh_block(state, j, template, new, method)


def _fresh_template(state: GrowthState, old: int) -> dict[str, Tensor]:
    """One tensor per block suffix (the union over old blocks, since masks may differ per block),
    giving the shape, dtype and device of a fresh block's tensor. The layer gate is left out: each
    method decides whether a fresh block has one."""
    template: dict[str, Tensor] = {}
    for i in range(old):
        for s in _layer_tensors(state, i):
            if s != "layer_gate":
                template.setdefault(s, state.tensors[f"blocks.{i}.{s}"])
    return template


def _add_fresh_block(state: GrowthState, layer: int, template: dict[str, Tensor], n_layers: int,
                     method: str) -> None:
    """Add block ``layer`` with the model's init (see the module docstring) and, per method, zero
    residual outputs (``zero``) or a closed layer gate (``masked``)."""
    std = state.std
    for s, like in template.items():
        name = f"blocks.{layer}.{s}"
        module, _, leaf = s.rpartition(".")
        if s in BLOCK_MASKS:
            value = torch.ones_like(like)  # the whole block is gated (masked) or fresh anyway
        elif method == "zero" and module in RESIDUAL_OUTPUTS:
            value = torch.zeros_like(like)  # weights AND biases: the branch outputs exactly 0
        elif like.ndim >= 2:
            scale = 1 / math.sqrt(2 * n_layers) if module in RESIDUAL_OUTPUTS else 1.0
            value = state.random(like.shape, like, std=std * scale) if std * scale > 0 else torch.zeros_like(like)
        elif leaf == "weight":  # norm gains
            value = torch.ones_like(like)
        else:  # biases (linear and norm)
            value = torch.zeros_like(like)
        state.add(name, value)
    if method == "masked":
        device = next(iter(template.values())).device
        state.add(f"blocks.{layer}.layer_gate", torch.zeros((), dtype=torch.float32, device=device))
