"""The constant fan-in ("condensed") block layout and its matmuls (after SRigL, Lasby et al. 2023).

A weight W (n_out × n_in) is cut into b × b blocks: R = n_out / b block-rows, C = n_in / b block-columns.
In the constant fan-in layout **every block-row keeps exactly k active blocks** (k = round(d · C), at least
1). It is stored condensed:

- ``indices`` (R × k, int64): ``indices[r, j]`` is the block-column of the j-th active block of row r
  (distinct within a row, in any order);
- ``values`` (R × b × k·b): ``values[r, o, j·b + i] = W[r·b + o, indices[r, j]·b + i]``, i.e. block-row r
  with its inactive blocks dropped and its active ones side by side.

Write X (T × n_in) for the inputs of T tokens, X_r = [X[:, c₁·b:(c₁+1)·b] … X[:, c_k·b:(c_k+1)·b]]
(T × k·b, c_j = indices[r, j]) for the columns block-row r reads, V_r = values[r] (b × k·b) and
Y_r = Y[:, r·b:(r+1)·b]. The three products of a linear layer are then one gather and one dense matmul
per block-row:

- forward:        Y_r = X_r V_rᵀ                                  (T × b)
- input gradient: dX[:, c_j block] += (dY_r V_r)[:, j block]      (a scatter-add of the T × k·b product)
- weight gradient: dV_r = dY_rᵀ X_r                               (b × k·b: active blocks only)

Each costs 2·T·b·k·b flops per block-row, i.e. d × the dense 2·T·n_out·n_in, plus moving the T × k·b
gathered (or scattered) columns; the gather is redone in the backward rather than saved. The loop runs
over block-rows (``rows_per_step`` at a time) so the gathered columns stay in cache; `benchmarks/
sparse_kernels.py` measures it against dense and torch's BSR kernels.

`condensed_linear` is differentiable (`CondensedLinearFn`: dX and the condensed dV), `CondensedLinear` is
the module and `condense_linears` swaps a model's linears for it; `condense` / `to_dense` convert to and
from a dense weight; `fan_in_prune_regrow` prunes and regrows per block-row, which keeps the fan-in
constant (`SparsityConfig(layout="constant_fan_in")` makes the controller do it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from growkit.errors import GrowkitError


# -- conversions --------------------------------------------------------------------------------------
def fan_in(n_blocks_in: int, density: float) -> int:
    """k = round(d · C) active blocks per block-row (half up), clipped to [1, C]."""
    return min(n_blocks_in, max(1, math.floor(density * n_blocks_in + 0.5)))


def random_indices(rows: int, cols: int, k: int, generator: torch.Generator) -> Tensor:
    """``indices`` (rows × k) of a uniformly random constant fan-in pattern: k distinct columns per row."""
    if not 1 <= k <= cols:
        raise GrowkitError(f"a constant fan-in layout needs 1 ≤ k ≤ {cols} active blocks per row, got k = {k}")
    return torch.rand(rows, cols, generator=generator).argsort(dim=1)[:, :k].sort(dim=1).values


def indices_to_mask(indices: Tensor, n_blocks_in: int) -> Tensor:
    """The block mask (R × C bool) of a condensed pattern: B[r, indices[r, j]] = True."""
    mask = torch.zeros(indices.shape[0], n_blocks_in, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


def mask_to_indices(block_mask: Tensor) -> Tensor:
    """``indices`` (R × k, ascending per row) of a block mask with the same count k in every row, or a
    `GrowkitError` when the rows' counts differ."""
    counts = block_mask.sum(dim=1)
    if block_mask.ndim != 2 or block_mask.shape[0] == 0 or not bool((counts == counts[0]).all()) or counts[0] == 0:
        raise GrowkitError(f"this block mask does not have a constant fan-in (active blocks per row: "
                           f"{sorted(set(counts.tolist()))[:5]}): every block-row needs the same number ≥ 1")
    k = int(counts[0])
    return torch.sort(block_mask.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :k].sort(dim=1).values


def _check_tiles(shape: tuple[int, ...], block: int) -> tuple[int, int]:
    if len(shape) != 2 or shape[0] % block or shape[1] % block:
        raise GrowkitError(f"a weight of shape {tuple(shape)} is not tiled by {block}×{block} blocks: both sides "
                           f"must be multiples of the block")
    return shape[0] // block, shape[1] // block


def condense(weight: Tensor, indices: Tensor, block: int) -> Tensor:
    """``values`` (R × b × k·b) of ``weight`` (n_out × n_in) at the blocks named by ``indices`` (R × k)."""
    rows, cols = _check_tiles(tuple(weight.shape), block)
    if indices.shape[0] != rows:
        raise GrowkitError(f"indices have {indices.shape[0]} block-rows, the weight {rows}")
    k = indices.shape[1]
    tiles = weight.reshape(rows, block, cols, block)
    picked = tiles.gather(2, indices.to(weight.device)[:, None, :, None].expand(rows, block, k, block))
    return picked.reshape(rows, block, k * block).contiguous()


def to_dense(values: Tensor, indices: Tensor, n_in: int) -> Tensor:
    """The dense weight (n_out × n_in, zeros off the pattern) of a condensed one."""
    rows, block, _kb = values.shape
    k = indices.shape[1]
    cols = n_in // block
    out = values.new_zeros(rows, block, cols, block)
    out.scatter_(2, indices[:, None, :, None].expand(rows, block, k, block), values.reshape(rows, block, k, block))
    return out.reshape(rows * block, cols * block)


# -- prune and regrow ---------------------------------------------------------------------------------
def per_row_counts(total: int, rows: int, generator: torch.Generator) -> Tensor:
    """``total`` spread over ``rows``: ⌊total/R⌋ each, one more for total mod R rows drawn at random (so a
    small prune fraction of a small fan-in still moves blocks: the expected count per row is total/R)."""
    base, extra = divmod(total, rows)
    counts = torch.full((rows,), base, dtype=torch.int64)
    counts[torch.randperm(rows, generator=generator)[:extra]] += 1
    return counts


def fan_in_prune_regrow(block_mask: Tensor, weight_l1: Tensor, n: int | Tensor, regrow_score: Tensor,
                        prunable: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One prune-and-regrow update that keeps every row's count: in each block-row r prune the n_r =
    min(n[r], prunable active blocks in the row) active blocks with the smallest ``weight_l1`` (among
    ``prunable``), then regrow n_r blocks of the same row with the largest ``regrow_score`` (random noise
    for random regrowth, a gradient norm for RigL), preferring blocks inactive before the update over
    those just pruned. ``n``: one count for every row, or one per row (`per_row_counts`). All other
    arguments are R × C; returns (new mask, pruned, grown)."""
    if prunable is None:
        prunable = block_mask
    prunable = prunable & block_mask
    n_r = torch.clamp(prunable.sum(dim=1), max=torch.as_tensor(n, device=block_mask.device))  # (R,)
    rank_prune = torch.where(prunable, weight_l1.float(), math.inf).argsort(dim=1, stable=True).argsort(dim=1)
    pruned = rank_prune < n_r[:, None]
    kept = block_mask & ~pruned
    score = regrow_score.float()
    score = (score - score.amin()) / (score.amax() - score.amin() + 1e-30) * 0.5     # in [0, 0.5]
    key = torch.where(kept, -1.0, score + (~block_mask).float())                   # inactive-before first
    rank_grow = key.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    grown = rank_grow < n_r[:, None]
    return kept | grown, pruned, grown


def condensed_prune_regrow(values: Tensor, indices: Tensor, n_in: int, n: int, generator: torch.Generator,
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """`fan_in_prune_regrow` on a condensed weight, pruning by the blocks' L1 norms and regrowing at random.
    Kept blocks stay in their slots; the slots of pruned blocks take the regrown ones, with zero values.
    Returns (values, indices, regrown slots as an R × k bool): zero optimizer moments at those slots."""
    rows, block, kb = values.shape
    k = indices.shape[1]
    cols = n_in // block
    mask = indices_to_mask(indices, cols)
    l1 = torch.zeros(rows, cols, device=values.device)
    l1.scatter_(1, indices, values.detach().abs().float().reshape(rows, block, k, block).sum(dim=(1, 3)))
    noise = torch.rand(rows, cols, generator=generator).to(values.device)
    _, pruned, grown = fan_in_prune_regrow(mask, l1, n, noise)
    slot_pruned = pruned.gather(1, indices)                                         # R × k
    # the regrown columns of each row, in ascending order, go to that row's pruned slots in slot order
    grown_cols = torch.sort(grown.to(torch.int8), dim=1, descending=True, stable=True).indices
    order = torch.sort(slot_pruned.to(torch.int8), dim=1, descending=True, stable=True).indices  # pruned slots first
    n_r = slot_pruned.sum(dim=1)
    new_indices = indices.clone()
    take = torch.arange(k, device=indices.device)[None, :] < n_r[:, None]
    new_indices.scatter_(1, order, torch.where(take, grown_cols[:, :k], new_indices.gather(1, order)))
    new_values = values.detach().clone().reshape(rows, block, k, block)
    new_values.masked_fill_(slot_pruned[:, None, :, None], 0.0)
    return new_values.reshape(rows, block, kb), new_indices, slot_pruned


# -- the matmuls --------------------------------------------------------------------------------------
def rows_per_step(block: int) -> int:
    """Block-rows per loop step: one for b ≥ 16 (measured fastest), enough for 16 output rows below."""
    return max(1, 16 // block)


def _steps(rows: int, block: int) -> list[tuple[int, int]]:
    step = rows_per_step(block)
    return [(r, min(rows, r + step)) for r in range(0, rows, step)]


def _gather(x: Tensor, indices: Tensor, r0: int, r1: int, block: int) -> Tensor:
    """X_r for block-rows r0…r1−1 as (r1−r0) × T × k·b (a view when one row)."""
    tokens = x.shape[0]
    cols = x.shape[1] // block
    k = indices.shape[1]
    g = torch.index_select(x.view(tokens, cols, block), 1, indices[r0:r1].flatten())
    return g.view(tokens, r1 - r0, k * block).transpose(0, 1)


def condensed_forward(x: Tensor, values: Tensor, indices: Tensor) -> Tensor:
    """Y = X Wᵀ for a 2-D contiguous X (T × n_in): Y_r = X_r V_rᵀ per block-row."""
    rows, block, _ = values.shape
    y = x.new_empty(x.shape[0], rows * block)
    for r0, r1 in _steps(rows, block):
        g = _gather(x, indices, r0, r1, block)
        if r1 - r0 == 1:
            torch.mm(g[0], values[r0].t(), out=y[:, r0 * block:r1 * block])
        else:
            y[:, r0 * block:r1 * block] = torch.bmm(g, values[r0:r1].transpose(1, 2)).transpose(0, 1).reshape(
                x.shape[0], (r1 - r0) * block)
    return y


def condensed_input_grad(grad_out: Tensor, values: Tensor, indices: Tensor, n_in: int) -> Tensor:
    """dX = dY W (T × n_in): per block-row the T × k·b product dY_r V_r, scatter-added at its columns."""
    rows, block, _kb = values.shape
    tokens = grad_out.shape[0]
    k = indices.shape[1]
    dx = grad_out.new_zeros(tokens, n_in // block, block)
    dy = grad_out.view(tokens, rows, block)
    for r0, r1 in _steps(rows, block):
        if r1 - r0 == 1:
            p = torch.mm(grad_out[:, r0 * block:r1 * block], values[r0])
        else:
            p = torch.bmm(dy[:, r0:r1].transpose(0, 1), values[r0:r1]).transpose(0, 1)
        dx.index_add_(1, indices[r0:r1].flatten(), p.reshape(tokens, (r1 - r0) * k, block))
    return dx.view(tokens, n_in)


def condensed_weight_grad(x: Tensor, grad_out: Tensor, indices: Tensor, block: int) -> Tensor:
    """dV (R × b × k·b): dV_r = dY_rᵀ X_r, the gradient of the active blocks only."""
    rows = grad_out.shape[1] // block
    k = indices.shape[1]
    dv = x.new_empty(rows, block, k * block)
    dy = grad_out.view(grad_out.shape[0], rows, block)
    for r0, r1 in _steps(rows, block):
        g = _gather(x, indices, r0, r1, block)
        if r1 - r0 == 1:
            torch.mm(grad_out[:, r0 * block:r1 * block].t(), g[0], out=dv[r0])
        else:
            torch.bmm(dy[:, r0:r1].permute(1, 2, 0), g, out=dv[r0:r1])
    return dv


class CondensedLinearFn(torch.autograd.Function):
    """y = x Wᵀ (+ bias) with W in the condensed layout; backward returns dx, dvalues (and dbias)."""

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, indices: Tensor, bias: Tensor | None = None) -> Tensor:  # type: ignore[override]
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        y = condensed_forward(x2, values, indices)
        if bias is not None:
            y += bias
        ctx.save_for_backward(x2, values, indices)
        ctx.lead, ctx.has_bias = lead, bias is not None
        return y.view(*lead, y.shape[-1])

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x2, values, indices = ctx.saved_tensors
        dy = grad_out.reshape(-1, grad_out.shape[-1]).contiguous()
        dx = dvalues = dbias = None
        if ctx.needs_input_grad[0]:
            dx = condensed_input_grad(dy, values, indices, x2.shape[1]).view(*ctx.lead, x2.shape[1])
        if ctx.needs_input_grad[1]:
            dvalues = condensed_weight_grad(x2, dy, indices, values.shape[1])
        if ctx.has_bias and ctx.needs_input_grad[3]:
            dbias = dy.sum(dim=0)
        return dx, dvalues, None, dbias


def condensed_linear(x: Tensor, values: Tensor, indices: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x Wᵀ + bias for x (…, n_in), W (n_out × n_in) in the condensed layout (``values``, ``indices``)."""
    rows, block, kb = values.shape
    if indices.shape != (rows, kb // block) or indices.dtype != torch.int64:
        raise GrowkitError(f"indices must be int64 of shape ({rows}, {kb // block}) for values of shape "
                           f"{tuple(values.shape)}, got {indices.dtype} {tuple(indices.shape)}")
    if x.shape[-1] % block:
        raise GrowkitError(f"the input width {x.shape[-1]} is not a multiple of the block {block}")
    if x.dtype != values.dtype:
        raise GrowkitError(f"condensed_linear needs the input and the weight in one dtype, got {x.dtype} and "
                           f"{values.dtype}")
    return CondensedLinearFn.apply(x, values, indices, bias)


# -- a module -----------------------------------------------------------------------------------------
class CondensedLinear(nn.Module):
    """``nn.Linear``'s drop-in with its weight in the constant fan-in layout: y = x Wᵀ + bias, where W is
    ``values`` (a parameter, R × b × k·b: only the active blocks are trained) at ``indices`` (a buffer)."""

    def __init__(self, values: Tensor, indices: Tensor, in_features: int, bias: Tensor | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, values.shape[0] * values.shape[1]
        self.values = nn.Parameter(values)
        self.register_buffer("indices", indices)
        self.bias = None if bias is None else nn.Parameter(bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, block_mask: Tensor, block: int) -> CondensedLinear:
        """The layer ``linear`` restricted to ``block_mask`` (R × C, a constant count per row)."""
        idx = mask_to_indices(block_mask).to(linear.weight.device)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(condense(linear.weight.detach(), idx, block), idx, linear.in_features, bias)

    def forward(self, x: Tensor) -> Tensor:
        return condensed_linear(x, self.values, self.indices, self.bias)

    def dense_weight(self) -> Tensor:
        """W (out_features × in_features) with zeros off the pattern."""
        return to_dense(self.values.detach(), self.indices, self.in_features)

    def extra_repr(self) -> str:
        b = self.values.shape[1]
        return (f"in_features={self.in_features}, out_features={self.out_features}, block={b}, "
                f"fan_in={self.indices.shape[1]} blocks, bias={self.bias is not None}")


def condense_linears(model: nn.Module, block_masks: Mapping[str, Tensor], block: int) -> nn.Module:
    """Replace, in place, each ``nn.Linear`` whose weight is named in ``block_masks`` (``"….weight"`` →
    block mask with a constant count per row, e.g. a ``layout="constant_fan_in"`` controller's
    ``block_masks``) by its `CondensedLinear`. Returns ``model``. The optimizer must be built afterwards
    (the parameters are new)."""
    for name, mask in block_masks.items():
        path = name.removesuffix(".weight")
        parent_name, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if not isinstance(linear, nn.Linear):
            raise GrowkitError(f"{path} is a {type(linear).__name__}, not an nn.Linear: only linear layers condense")
        setattr(parent, child, CondensedLinear.from_linear(linear, mask, block))
    return model
