"""Block masks: which weights are sparse, how a block mask tiles a weight, and how densities are set.

A weight W of shape (n_out, n_in) with block b is cut into (n_out/b) × (n_in/b) tiles of b × b; a
*block mask* B has one bool per tile and the element mask is M[i, j] = B[i // b, j // b]. Both sides
must be multiples of b (a `GrowkitError` otherwise: padding would make the edge tiles smaller, and the
number of active weights would no longer be b² × active blocks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from growkit.errors import GrowkitError

#: The sparse targets: every linear weight inside the transformer blocks. Embeddings, the LM head, the
#: MLM transform and the pooler stay dense.
TARGET = re.compile(r"^blocks\.\d+\.(attn\.(q|k|v|o)_proj|mlp\.(gate|up|down))\.weight$")
_LAYER = re.compile(r"^blocks\.\d+\.")


def sparse_targets(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that are trained sparse, by name (in model order)."""
    return {n: p for n, p in model.named_parameters() if TARGET.match(n)}


def projection(name: str) -> str:
    """``blocks.3.attn.q_proj.weight`` → ``attn.q_proj`` (the key of `growkit.flops.layer_matmul_params`)."""
    return _LAYER.sub("", name).removesuffix(".weight")


def block_grid(name: str, shape: torch.Size | tuple[int, ...], block: int) -> tuple[int, int]:
    """(rows, cols) of the block grid of a 2-D weight, or a `GrowkitError` when b does not divide it."""
    if len(shape) != 2:
        raise GrowkitError(f"{name} has shape {tuple(shape)}: only 2-D weights can be block-sparse")
    rows, cols = shape
    if rows % block or cols % block:
        raise GrowkitError(f"{name} has shape {tuple(shape)}, which {block}×{block} blocks do not tile: use a "
                           f"sparsity.block that divides both sides (1, 4, 8, 16, 32, 64) or model sizes that are "
                           f"multiples of {block}")
    return rows // block, cols // block


def expand(block_mask: Tensor, block: int) -> Tensor:
    """Element mask M[i, j] = B[i // b, j // b] of a block mask B."""
    if block == 1:
        return block_mask.clone()
    r, c = block_mask.shape
    return block_mask[:, None, :, None].expand(r, block, c, block).reshape(r * block, c * block)


def block_reduce(x: Tensor, block: int, op: str = "sum") -> Tensor:
    """Per-block ``sum`` (L1 norm of a non-negative x), ``any`` or ``amax`` of a 2-D tensor."""
    r, c = x.shape[0] // block, x.shape[1] // block
    tiles = x.reshape(r, block, c, block)
    if op == "sum":
        return tiles.sum(dim=(1, 3))
    if op == "any":
        return tiles.any(dim=3).any(dim=1)
    return tiles.amax(dim=(1, 3))


def erk_densities(shapes: Mapping[str, tuple[int, int]], density: float) -> dict[str, float]:
    """Erdős–Rényi(-Kernel) densities: d_l = min(1, ε · (n_in + n_out) / (n_in · n_out)), with ε solved so
    that the parameter budget is the uniform one, Σ_l d_l·N_l = density · Σ_l N_l (N_l = n_in · n_out).

    Tensors whose raw density would exceed 1 are made dense and ε is solved again for the rest (as in
    RigL's implementation)."""
    sizes = {n: s[0] * s[1] for n, s in shapes.items()}
    raw = {n: (s[0] + s[1]) / (s[0] * s[1]) for n, s in shapes.items()}
    budget = density * sum(sizes.values())
    dense: set[str] = set()
    while True:
        rest = [n for n in shapes if n not in dense]
        if not rest:
            return dict.fromkeys(shapes, 1.0)
        eps = (budget - sum(sizes[n] for n in dense)) / sum(raw[n] * sizes[n] for n in rest)
        over = [n for n in rest if eps * raw[n] > 1.0]
        if not over:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.add(max(over, key=lambda n: raw[n]))


def block_counts(totals: Mapping[str, int], densities: Mapping[str, float], at_least: int = 1) -> dict[str, int]:
    """Active blocks per tensor out of ``totals[l]`` blocks: d_l × totals_l, rounded so that the sum is
    round(Σ_l d_l × totals_l) exactly (half up; the largest remainders get the extra blocks), then clipped to
    [``at_least``, totals_l] (one block at least, so no layer is cut off entirely; the total may then
    exceed the budget by up to one block per tensor). Used for ERK, whose total budget is the contract;
    uniform densities round each tensor on its own."""
    want = {n: densities[n] * totals[n] for n in totals}
    counts = {n: min(totals[n], int(want[n])) for n in totals}
    missing = math.floor(sum(want.values()) + 0.5) - sum(counts.values())
    for n in sorted(totals, key=lambda n: (-(want[n] - int(want[n])), n)):
        if missing <= 0:
            break
        if counts[n] < totals[n]:
            counts[n] += 1
            missing -= 1
    return {n: min(totals[n], max(at_least, c)) for n, c in counts.items()}


def random_block_mask(grid: tuple[int, int], count: int, generator: torch.Generator,
                      allowed: Tensor | None = None) -> Tensor:
    """A block mask with exactly ``count`` True entries at uniformly random positions (among ``allowed``)."""
    scores = torch.rand(grid, generator=generator)
    if allowed is not None:
        scores = torch.where(allowed.cpu(), scores, torch.full_like(scores, -1.0))
    out = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
    out[torch.argsort(scores.flatten(), descending=True, stable=True)[:count]] = True
    return out.view(grid)
