"""Carry optimizer state across a growth: ``new_opt = carry_optimizer_state(old_opt, new_model, record)``.

The rule: **moments follow their gradients**, not their weights. For every parameter of the grown
model the record says which old entries it holds and, per axis, the factor ``r`` their gradients are
multiplied by (`growkit.record`: r = 1/(copies · s) for an entry held by ``copies`` symmetric copies,
each the old weight times s). A moment is an average of gradients (first moments: of g, second: of
g²), so a carried entry keeps ``exp_avg · r``, ``exp_avg_sq · r²`` (and Adam's amsgrad
``max_exp_avg_sq · r²``, SGD's ``momentum_buffer · r``). Then the next Adam step m̂/(√v̂ + eps) of a
carried entry is the one the old model would have taken on the same batch: ``split`` producer copies
(∇/k) get m/k, v/k², the consumers divided by k keep m, v unchanged; ``zero``'s queries ×√(d̂/d) get
gradients ×√(d/d̂), so m×√(d/d̂), v×d/d̂. (Scaling moments like the weights — m·s, v·s² — gets these
backwards: after a split of d_ff ×2 ``down``'s steps stay ≈2× too large and ``up``'s ≈½ for hundreds
of steps.) Each tensor keeps its old step count, so the bias corrections of old entries are unchanged.

New entries (and tensors that did not exist, such as a fresh layer) need a policy, because AdamW keeps
one step count per tensor: with ``exp_avg = exp_avg_sq = 0`` under an old step count t, the first
update of a new entry is ``(1−β₁)g / √((1−β₂)g²) ≈ 0.1/√0.001 ≈ 3.2`` times lr at β₂ = 0.999 — about 3×
the size of a normal, sign-like Adam step — and the kick grows with t (β₂ᵗ → 0 removes the bias
correction that would otherwise help): ≈450× the old steps' median after 1000 steps. growkit's policy
(**seed**): a new entry starts with first moments 0 and second moments = the mean of the carried
second moments of the old entries of the same tensor (for a fresh tensor: of the old tensors with the
same role, e.g. every layer's ``attn.q_proj.weight``). Its first update is then about
``(1−β₁)·g/√v̄ ≲ 0.1·lr`` when the new gradient is typical of the old ones, and grows to a normal size
as ``exp_avg`` fills in — a built-in warmup for new weights, never a kick. SGD's momentum buffer is a
first moment: new entries 0. `tests/grow/test_optim_state.py` measures both policies.

Supported: `torch.optim.AdamW`, `torch.optim.Adam` (amsgrad too) and `torch.optim.SGD` (with or without
momentum). Any other optimizer (or a state entry these do not have) is refused: its state could mean
anything, and a wrong carry silently mis-sizes every step after the growth.

Parameter groups (weight decay, lr scale) follow the source parameter; fresh tensors join the group of
their role. The optimizer class and its defaults are kept.
"""

from __future__ import annotations

import inspect
import re

import torch
from torch import Tensor, nn

from growkit.errors import GrowkitError
from growkit.record import GrowthRecord, TensorMap

_LAYER = re.compile(r"^blocks\.\d+\.")


def role(name: str) -> str:
    """A parameter's name without its layer index: ``blocks.3.attn.q_proj.weight`` → ``attn.q_proj.weight``."""
    return _LAYER.sub("", name)


def carry_optimizer_state(
    old_optimizer: torch.optim.Optimizer, new_model: nn.Module, record: GrowthRecord
) -> torch.optim.Optimizer:
    """A new optimizer of the same class and settings over ``new_model``'s parameters, whose state is
    the old optimizer's carried through ``record`` (see the module docstring for the policy)."""
    _check_supported(old_optimizer)
    if not record.old_param_names:
        raise GrowkitError("this GrowthRecord has no old parameter names: pass the record returned by gk.grow")
    old = _old_params_by_name(old_optimizer, record)
    by_role: dict[str, list[str]] = {}
    for name in old:
        by_role.setdefault(role(name), []).append(name)
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": []} for g in old_optimizer.param_groups]
    states: dict[Tensor, dict[str, Tensor]] = {}
    for name, p in new_model.named_parameters():
        tmap = record[name] if name in record else TensorMap.fresh(p.ndim)
        sources = [tmap.source] if tmap.source in old else by_role.get(role(name), [])
        if not sources:
            raise GrowkitError(f"cannot place {name} in an optimizer group: no old parameter has its role; "
                               f"build a new optimizer for this model instead")
        groups[old[sources[0]][1]]["params"].append(p)
        state = _carried_state(old_optimizer, old, sources, tmap, p)
        if state:
            states[p] = state
    new_optimizer = same_kind(old_optimizer, groups)
    for p, state in states.items():
        new_optimizer.state[p] = state
    return new_optimizer


def same_kind(optimizer: torch.optim.Optimizer, groups: list[dict]) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s class and defaults over ``groups`` (no state)."""
    cls = type(optimizer)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(groups, **{k: v for k, v in optimizer.defaults.items() if k in accepted})


SUPPORTED = (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD)
FIRST_MOMENTS = ("exp_avg", "momentum_buffer")
SECOND_MOMENTS = ("exp_avg_sq", "max_exp_avg_sq")
SCALARS = ("step",)


def _check_supported(optimizer: torch.optim.Optimizer) -> None:
    if not isinstance(optimizer, SUPPORTED):
        names = ", ".join(f"torch.optim.{c.__name__}" for c in SUPPORTED)
        raise GrowkitError(f"carry_optimizer_state cannot carry the state of {type(optimizer).__name__}: it knows "
                           f"what the moments of {names} mean; build a new optimizer for the grown model instead")
    for state in optimizer.state.values():
        unknown = sorted(set(state) - set(FIRST_MOMENTS + SECOND_MOMENTS + SCALARS))
        if unknown:
            raise GrowkitError(f"carry_optimizer_state: {type(optimizer).__name__} holds state {unknown} that growkit "
                               f"does not know how to carry (known: {FIRST_MOMENTS + SECOND_MOMENTS + SCALARS}); "
                               f"build a new optimizer for the grown model instead")


def _old_params_by_name(optimizer: torch.optim.Optimizer, record: GrowthRecord) -> dict[str, tuple[Tensor, int]]:
    out = {}
    for gi, group in enumerate(optimizer.param_groups):
        for p in group["params"]:
            name = record.old_param_names.get(id(p))
            if name is None:
                raise GrowkitError("the optimizer holds a parameter the grown model did not come from: pass the "
                                   "optimizer of the model that was grown")
            out[name] = (p, gi)
    return out


@torch.no_grad()
def _carried_state(optimizer: torch.optim.Optimizer, old: dict[str, tuple[Tensor, int]], sources: list[str],
                   tmap: TensorMap, p: Tensor) -> dict[str, Tensor]:
    src_states = [optimizer.state.get(old[s][0]) for s in sources]
    src_states = [s for s in src_states if s]
    if not src_states:
        return {}  # the old optimizer never stepped: nothing to carry
    first = src_states[0]
    out: dict[str, Tensor] = {}
    for key, value in first.items():
        if key in SCALARS or value is None:
            out[key] = value.clone() if torch.is_tensor(value) else value  # step counts; SGD without momentum
            continue
        power = 2 if key in SECOND_MOMENTS else 1
        if tmap.source is None:  # a fresh tensor: second moments seeded with the mean of its role's
            seed = torch.stack([s[key].float().mean() for s in src_states]).mean().item() if power == 2 else 0.0
            out[key] = torch.full_like(p, seed)
            continue
        carried = tmap.gather(value, power=power, factors="grad")
        is_old = tmap.old_mask(carried.shape)
        seed = carried[is_old].float().mean().item() if power == 2 and is_old.any() else 0.0
        out[key] = torch.where(is_old, carried, torch.full_like(carried, seed)).to(p.dtype).contiguous()
    return out
