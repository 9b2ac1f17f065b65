"""`SparsityController`: dynamic always-sparse training by prune-and-regrow (Dietrich et al. 2021).

    ctl = growkit.sparsify(model, growkit.SparsityConfig(density=0.1, block=16, total_steps=T), optimizer=opt)
    for t in range(1, T + 1):
        loss.backward(); opt.step(); opt.zero_grad()
        ctl.step(t)            # t = optimizer steps done so far

What the controller keeps true, and how (W a sparse weight, M its element mask, B its block mask,
M[i, j] = B[i // b, j // b]):

- **Weights**: W ⊙ (1 − M) = 0. Applied at `sparsify` and re-applied by every `step`.
- **Gradients**: a tensor hook replaces ∂L/∂W by M ⊙ ∂L/∂W before it is accumulated into ``.grad``, so
  gradient clipping and the optimizer only ever see active gradients. (Training runs masked dense: the
  forward is the dense matmul with the zeros; see `benchmarks/sparse_kernels.py` for why.)
- **Optimizer state**: every per-entry state tensor of W (AdamW's ``exp_avg``, ``exp_avg_sq``) is zeroed
  where M = 0 at every `step`. With zero moments and a zero gradient AdamW's update of an inactive entry
  is 0/(0 + ε) = 0, and decoupled weight decay keeps 0 at 0, so nothing leaks between steps either.
- **Count**: tensor l keeps exactly ``target[l]`` active blocks (b² × that many active weights).

An update at step t with pr(t) = pr_max · ½(1 + cos(π t / T)), per tensor with k active blocks:

1. prune n = round(pr(t) · k) active blocks with the smallest L1 norm Σ|W| over the block, among those
   not in their grace period (a block that became active at step b₀ is protected while t − b₀ ≤ grace);
2. regrow n blocks among the inactive ones — uniformly at random, or (``regrow="gradient"``, RigL) those
   with the largest L1 norm of the dense gradient of step t's batch — preferring blocks that were
   inactive before this update over those just pruned;
3. regrown weights start at 0 with zero moments (they were inactive, so both already are).

With ``layout="constant_fan_in"`` (`growkit.sparse.layout`) every block-row of a tensor holds the same number
k of active blocks: the initial pattern draws k per row; an update prunes n = round(pr(t) · active blocks
of the tensor), spread over the rows (⌊n/R⌋ each, one more in n mod R random rows; fewer in a row with
fewer prunable blocks), each row by its smallest L1 norms, and regrows as many in the same row; and a growth tops every
row up to the grown tensor's k, so the count per row never differs between rows.

With ``grow_density="dense"`` a grown tensor may hold more than its target; each update then regrows
only n − min(excess, n) blocks, so the count falls back to the target over the following updates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from growkit.errors import GrowkitError
from growkit.record import GrowthRecord, TensorMap
from growkit.sparse.config import SparsityConfig
from growkit.sparse.layout import fan_in, fan_in_prune_regrow, indices_to_mask, per_row_counts, random_indices
from growkit.sparse.masks import (
    block_counts,
    block_grid,
    block_reduce,
    erk_densities,
    expand,
    projection,
    random_block_mask,
    sparse_targets,
)

NEVER = -(2**62)
"""``born`` of blocks active since the start: never in a grace period."""


class SparsityController:
    """Owns the block masks of a model's sparse weights and moves them (see the module docstring).

    Build it with `sparsify`. Attributes: ``cfg``, ``model``, ``optimizer``, ``block_masks`` (name →
    bool block grid), ``born`` (name → int64 block grid: the step each block last became active),
    ``targets`` (name → active blocks to keep), ``last_step`` (the last step passed to `step`).
    """

    def __init__(self, model: nn.Module, cfg: SparsityConfig, optimizer: torch.optim.Optimizer | None = None,
                 state: Mapping[str, Tensor] | None = None) -> None:
        if not isinstance(cfg, SparsityConfig):
            raise GrowkitError(f"sparsify() takes a growkit.SparsityConfig, got {type(cfg).__name__}")
        if not cfg.static and cfg.total_steps is None:
            raise GrowkitError("SparsityConfig.total_steps is required for dynamic sparsity (the prune schedule "
                               "pr(t) runs over it): set total_steps, or static=True")
        self.cfg = cfg
        self.model = model
        self.optimizer = optimizer
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.last_step = 0
        self.block_masks: dict[str, Tensor] = {}
        self.born: dict[str, Tensor] = {}
        self.targets: dict[str, int] = {}
        self._masks: dict[str, Tensor] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._grad_sum: dict[str, Tensor] = {}
        self._capture = False
        self._warned = False
        self._cache: dict[str, float] | None = None
        params = self._params()
        if not params:
            raise GrowkitError("the model has no sparse targets (blocks.{i}.attn.{q,k,v,o}_proj.weight, "
                               "blocks.{i}.mlp.{gate,up,down}.weight): sparsify a growkit.Transformer")
        grids = {n: block_grid(n, p.shape, cfg.block) for n, p in params.items()}
        if state is not None:
            self.load_state_dict(state)
        else:
            dens = self._tensor_densities(params)
            counts = self._counts({n: g[0] * g[1] for n, g in grids.items()}, dens, at_least=1)
            for name, p in params.items():
                mask = self._initial_mask(grids[name], counts[name], dens[name])
                self.block_masks[name] = mask.to(p.device)
                self.born[name] = torch.full(grids[name], NEVER, dtype=torch.int64, device=p.device)
                self.targets[name] = int(mask.sum())
            self._refresh()
            self.apply()
        self._register_hooks()
        self._arm_capture()

    # -- views ---------------------------------------------------------------------------------
    @property
    def masks(self) -> dict[str, Tensor]:
        """Element masks by parameter name: bool tensors shaped like the weights, True = active.
        The controller's own tensors: read them, do not edit them."""
        return dict(self._masks)

    def densities(self) -> dict[str, float]:
        """Fraction of active weights per sparse parameter."""
        return {n: self.block_masks[n].sum().item() / self.block_masks[n].numel() for n in self.block_masks}

    def projection_densities(self) -> dict[str, float]:
        """Fraction of active weights per projection over all layers (``"attn.q_proj"``, ``"mlp.up"`` …):
        the ``density`` argument of `growkit.flops.training_flops_per_token`."""
        if self._cache is None:
            active: dict[str, float] = {}
            total: dict[str, float] = {}
            for n, bm in self.block_masks.items():
                key = projection(n)
                active[key] = active.get(key, 0.0) + bm.sum().item()
                total[key] = total.get(key, 0.0) + bm.numel()
            self._cache = {k: active[k] / total[k] for k in active}
        return dict(self._cache)

    def density(self) -> float:
        """Fraction of active weights over all sparse parameters."""
        b2 = self.cfg.block**2
        active = sum(bm.sum().item() for bm in self.block_masks.values()) * b2
        return active / sum(self._masks[n].numel() for n in self._masks)

    def lr_factor(self) -> float:
        """The sparse learning-rate rule's factor η(s)/η_dense = exp(1.969 s² + 0.2905 s) (1 when off)."""
        return self.cfg.lr_factor()

    # -- the per-step work ---------------------------------------------------------------------
    @torch.no_grad()
    def step(self, global_step: int) -> bool:
        """Call after each optimizer step with the number of optimizer steps done (1, 2, …). Updates the
        masks when ``global_step`` is an update step, then zeroes inactive weights and their optimizer
        state. Returns whether the masks were updated."""
        self.last_step = int(global_step)
        updated = self.cfg.is_update_step(self.last_step)
        if updated:
            self._update(self.last_step)
            self._refresh()
        self.apply()
        self._arm_capture()
        return updated

    def skip(self, global_step: int) -> None:
        """Call instead of `step` after an optimizer step that was skipped (a non-finite loss or gradient,
        `growkit.train.numerics`): the step is counted, but no prune-and-regrow runs even when
        ``global_step`` is an update step (its scores would be non-finite gradients), the masks and the
        generator stay as they are, and the gradients captured for it are dropped (the capture is re-armed
        for the next step). The weights were not updated, so nothing needs re-masking."""
        self.last_step = int(global_step)
        self._arm_capture()

    @torch.no_grad()
    def apply(self) -> None:
        """W ← M ⊙ W, and every optimizer state tensor shaped like W likewise."""
        params = self._params()
        for name, mask in self._masks.items():
            p = params[name]
            p.masked_fill_(~mask, 0.0)
            if self.optimizer is not None:
                for value in self.optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value.masked_fill_(~mask, 0.0)

    def _update(self, t: int) -> None:
        frac = self.cfg.prune_fraction(t)
        params = self._params()
        b = self.cfg.block
        gradient = self.cfg.regrow == "gradient"
        if gradient and not self._grad_sum and not self._warned:
            warnings.warn("regrow='gradient' but no gradient was captured for this update (call step() with "
                          "consecutive step numbers after each backward): regrowing at random", stacklevel=3)
            self._warned = True
        for name, p in params.items():
            bm = self.block_masks[name]
            k = int(bm.sum())
            protected = (t - self.born[name]) <= self.cfg.grace
            prunable = bm & ~protected
            n_prune = min(math.floor(frac * k + 0.5), int(prunable.sum()))
            excess = max(0, k - self.targets[name])
            n_regrow = n_prune - min(excess, n_prune)
            noise = torch.rand(bm.shape, generator=self.generator).to(bm.device)  # drawn every time: same stream
            if n_prune == 0:
                continue
            weight_l1 = block_reduce(p.detach().abs().float(), b)
            if self.cfg.layout == "constant_fan_in":
                n_rows = per_row_counts(math.floor(frac * k + 0.5), bm.shape[0], self.generator).to(bm.device)
                new, _, grown = fan_in_prune_regrow(bm, weight_l1, n_rows, self._regrow_score(name, noise), prunable)
                self.block_masks[name] = new
                self.born[name] = torch.where(grown, t, self.born[name])
                continue
            order = torch.argsort(torch.where(prunable, weight_l1, math.inf).flatten(), stable=True)
            pruned = torch.zeros(bm.numel(), dtype=torch.bool, device=bm.device)
            pruned[order[:n_prune]] = True
            pruned = pruned.view(bm.shape)
            kept = bm & ~pruned
            score = self._regrow_score(name, noise)
            score = score / (score.max() + 1e-30) * 0.5 if score is not noise else noise * 0.5  # in [0, 0.5]
            # blocks inactive before the update first (score + 1), then those just pruned; never active ones
            key = torch.where(kept, -1.0, score + (~bm).float())
            grown = torch.zeros(bm.numel(), dtype=torch.bool, device=bm.device)
            grown[torch.argsort(key.flatten(), descending=True, stable=True)[:n_regrow]] = True
            grown = grown.view(bm.shape)
            self.block_masks[name] = kept | grown
            self.born[name] = torch.where(grown, t, self.born[name])

    def _regrow_score(self, name: str, noise: Tensor) -> Tensor:
        """Regrowth priority of each block (≥ 0): the L1 norm of the captured dense gradient (RigL) or noise."""
        if self.cfg.regrow == "gradient" and name in self._grad_sum:
            return block_reduce(self._grad_sum[name].abs().float(), self.cfg.block)
        return noise

    def _initial_mask(self, grid: tuple[int, int], count: int, density: float) -> Tensor:
        """``count`` blocks at random; constant fan-in: k = round(d · cols) at random in every row."""
        if self.cfg.layout == "constant_fan_in":
            return indices_to_mask(random_indices(grid[0], grid[1], fan_in(grid[1], density), self.generator), grid[1])
        return random_block_mask(grid, count, self.generator)

    # -- gradients -------------------------------------------------------------------------------
    def _register_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = [p.register_hook(self._hook(name)) for name, p in self._params().items()]

    def _hook(self, name: str) -> Callable[[Tensor], Tensor]:
        def mask_grad(grad: Tensor) -> Tensor:
            if self._capture:
                acc = self._grad_sum.get(name)
                self._grad_sum[name] = grad.detach().clone() if acc is None else acc.add_(grad.detach())
            return torch.where(self._masks[name], grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
        return mask_grad

    def captured_gradients(self) -> dict[str, Tensor]:
        """The dense gradients captured for the next RigL update (empty unless one is due), by name: the
        controller's own tensors, which a data-parallel trainer averages over processes in place so every
        process regrows the same blocks."""
        return self._grad_sum

    def _arm_capture(self) -> None:
        """Keep the dense gradients of the next backward iff the next step updates with RigL."""
        self._grad_sum = {}
        self._capture = self.cfg.regrow == "gradient" and self.cfg.is_update_step(self.last_step + 1)

    def remove(self) -> None:
        """Detach from the model: remove the gradient hooks (the weights stay as they are)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # -- growth --------------------------------------------------------------------------------
    @torch.no_grad()
    def on_grow(self, new_model: nn.Module, record: GrowthRecord,
                optimizer: torch.optim.Optimizer | None = None) -> None:
        """Move to the grown model (call after `growkit.carry_optimizer_state`, with the carried optimizer).

        Old entries keep their masks through the record's index maps (a layer copied by ``stack`` takes
        its source's mask; ``split`` duplicates take their unit's). A block of the grown weight holding any
        old entry is an old block: active iff one of its old entries was. The other, new blocks of tensor l
        get round(d_l × new blocks) active blocks at random (``grow_density="same"``; for ERK, d_l of the
        grown shapes) or all of them (``"dense"``), and a grace period from the current step. Inactive new
        weights and their optimizer state are zeroed: the new entries a growth would keep function-
        preserving (zero outgoing weights, masked outputs) stay so."""
        b = self.cfg.block
        old_masks, old_born = self.block_masks, self.born
        self.model, self.optimizer = new_model, optimizer
        params = self._params()
        grids = {n: block_grid(n, p.shape, b) for n, p in params.items()}
        old_blocks: dict[str, Tensor] = {}
        active_old: dict[str, Tensor] = {}
        born: dict[str, Tensor] = {}
        for name, p in params.items():
            tmap = record[name] if name in record else TensorMap.fresh(p.ndim)
            src = tmap.source if tmap.source in old_masks else None
            if src is None:
                old_blocks[name] = torch.zeros(grids[name], dtype=torch.bool, device=p.device)
                active_old[name] = old_blocks[name].clone()
                born[name] = torch.full(grids[name], self.last_step, dtype=torch.int64, device=p.device)
                continue
            is_old = tmap.old_mask(p.shape).to(p.device)
            old_blocks[name] = block_reduce(is_old, b, "any")
            active_old[name] = block_reduce(_carry(tmap, expand(old_masks[src], b), False), b, "any")
            carried_born = block_reduce(_carry(tmap, expand(old_born[src], b), NEVER), b, "amax")
            born[name] = torch.where(old_blocks[name], carried_born, self.last_step)
        dens = self._tensor_densities(params)
        new_totals = {n: int((~old_blocks[n]).sum()) for n in params}
        counts = self._counts(new_totals, dens, at_least=0)
        self.block_masks, self.born, self.targets = {}, {}, {}
        for name, p in params.items():
            new_region = ~old_blocks[name]
            count = counts[name]
            if count == 0 and not active_old[name].any() and new_totals[name]:
                count = 1  # a fresh tensor keeps at least one block
            self.targets[name] = int(active_old[name].sum()) + count
            if self.cfg.layout == "constant_fan_in":
                self.block_masks[name] = self._top_up_rows(active_old[name], new_region, dens[name])
                self.targets[name] = int(self.block_masks[name].sum())
            else:
                take = new_totals[name] if self.cfg.grow_density == "dense" else count
                added = random_block_mask(grids[name], take, self.generator, allowed=new_region).to(p.device)
                self.block_masks[name] = active_old[name] | (added & new_region)
            self.born[name] = born[name]
        self._refresh()
        self.apply()
        self._register_hooks()
        self._arm_capture()

    def _top_up_rows(self, active: Tensor, new_region: Tensor, density: float) -> Tensor:
        """Constant fan-in after a growth: every row of the grown block grid gets k = max(round(d · cols),
        the most active blocks any row kept) active blocks; the missing ones are drawn at random in the
        row, new blocks before old inactive ones."""
        rows, cols = active.shape
        k = max(fan_in(cols, density), int(active.sum(dim=1).max()))
        key = torch.rand(rows, cols, generator=self.generator).to(active.device) + new_region.float()
        key = torch.where(active, math.inf, key)
        rank = key.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
        return active | (rank < k)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Everything a resume needs, as tensors: per parameter ``mask.{name}`` (bool block grid),
        ``born.{name}``, ``target.{name}``; and ``step``, ``block`` and the generator state."""
        out: dict[str, Tensor] = {"step": torch.tensor(self.last_step, dtype=torch.int64),
                                  "block": torch.tensor(self.cfg.block, dtype=torch.int64),
                                  "generator": self.generator.get_state()}
        for name, bm in self.block_masks.items():
            out[f"mask.{name}"] = bm.cpu()
            out[f"born.{name}"] = self.born[name].cpu()
            out[f"target.{name}"] = torch.tensor(self.targets[name], dtype=torch.int64)
        return out

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore `state_dict`'s masks onto the current model (and zero its inactive weights)."""
        block = state.get("block")
        if block is None or int(block) != self.cfg.block:
            raise GrowkitError(f"these sparsity masks were saved with block {None if block is None else int(block)}, "
                               f"the config says block {self.cfg.block}: resume with the same sparsity.block")
        params = self._params()
        saved = {k.removeprefix("mask.") for k in state if k.startswith("mask.")}
        if saved != set(params):
            raise GrowkitError(f"the saved sparsity masks are for other parameters (missing "
                               f"{sorted(set(params) - saved)[:3]}, unexpected {sorted(saved - set(params))[:3]}): "
                               f"load them into the model they were saved with")
        for name, p in params.items():
            grid = block_grid(name, p.shape, self.cfg.block)
            mask = state[f"mask.{name}"]
            if tuple(mask.shape) != grid:
                raise GrowkitError(f"saved mask of {name} has block grid {tuple(mask.shape)}, the weight needs "
                                   f"{grid}: load the masks into the model they were saved with")
            self.block_masks[name] = mask.to(device=p.device, dtype=torch.bool).clone()
            self.born[name] = state[f"born.{name}"].to(device=p.device, dtype=torch.int64).clone()
            self.targets[name] = int(state[f"target.{name}"])
        self.generator.set_state(state["generator"].clone())
        self.last_step = int(state["step"])
        self._refresh()
        self.apply()
        self._arm_capture()

    # -- helpers -------------------------------------------------------------------------------
    def _params(self) -> dict[str, nn.Parameter]:
        return sparse_targets(self.model)

    def _refresh(self) -> None:
        self._masks = {n: expand(bm, self.cfg.block) for n, bm in self.block_masks.items()}
        self._cache = None

    def _tensor_densities(self, params: Mapping[str, Tensor]) -> dict[str, float]:
        if self.cfg.distribution == "erk":
            return erk_densities({n: (p.shape[0], p.shape[1]) for n, p in params.items()}, self.cfg.density)
        return dict.fromkeys(params, self.cfg.density)

    def _counts(self, totals: Mapping[str, int], dens: Mapping[str, float], at_least: int) -> dict[str, int]:
        """uniform: round(d × blocks) per tensor; ERK: `block_counts` (the total budget exact)."""
        if self.cfg.distribution == "erk":
            return block_counts(totals, dens, at_least)
        return {n: min(t, max(at_least, math.floor(dens[n] * t + 0.5))) for n, t in totals.items()}

    def __repr__(self) -> str:
        return (f"SparsityController(tensors={len(self.block_masks)}, density={self.density():.4f}, "
                f"block={self.cfg.block}, last_step={self.last_step})")


def sparsify(model: nn.Module, cfg: SparsityConfig, optimizer: torch.optim.Optimizer | None = None,
             state: Mapping[str, Tensor] | None = None) -> SparsityController:
    """Make ``model``'s block weights sparse: a random pattern at the configured density (or ``state``,
    a `SparsityController.state_dict`, to resume), inactive weights and their optimizer state zeroed,
    gradient hooks installed. Call ``controller.step(t)`` after each optimizer step."""
    return SparsityController(model, cfg, optimizer, state)


def _carry(tmap: TensorMap, old: Tensor, fill: bool | int) -> Tensor:
    """The old tensor's values at the positions the grown tensor copied them to; ``fill`` elsewhere (the
    record's index maps only: no value scaling, for masks and step counts)."""
    out = old
    for axis, ix in enumerate(tmap.index):
        if ix is not None:
            out = out.index_select(axis, ix.clamp(min=0).to(out.device))
    return torch.where(tmap.old_mask(out.shape).to(out.device), out, torch.full_like(out, fill))
