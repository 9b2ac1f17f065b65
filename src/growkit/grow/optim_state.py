"""Carry AdamW state across a growth: ``new_opt = carry_optimizer_state(old_opt, new_model, record)``.

The rule: **moments follow their weights.** For every parameter of the grown model the record says
which old entries it holds (`GrowthRecord`); those entries keep their moments, multiplied the way
their weights were: ``exp_avg · s`` and ``exp_avg_sq · s²`` for a weight scaled by ``s`` (``split``
divides a unit's outgoing weights by its k copies → moments /k and /k²; ``zero`` multiplies queries by
√(k̂/k)). Each tensor keeps its old step count, so the bias corrections of old entries are unchanged.

New entries (and tensors that did not exist, such as a fresh layer) need a policy, because AdamW keeps
one step count per tensor: with ``exp_avg = exp_avg_sq = 0`` under an old step count t, the first
update of a new entry is ``(1−β₁)g / √((1−β₂)g²) ≈ 0.1/√0.001 ≈ 3.2`` times lr at β₂ = 0.999 — about 3×
the size of a normal, sign-like Adam step. growkit's policy (**seed**): a new entry starts with
``exp_avg = 0`` and ``exp_avg_sq`` = the mean ``exp_avg_sq`` of the old entries of the same tensor
(for a fresh tensor: of the old tensors with the same role, e.g. every layer's ``attn.q_proj.weight``).
Its first update is then about ``(1−β₁)·g/√v̄ ≲ 0.1·lr`` when the new gradient is typical of the old
ones, and grows to a normal size as ``exp_avg`` fills in — a built-in warmup for new weights, never a
kick. `tests/grow/test_optim_state.py` measures both policies.

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
        if not torch.is_tensor(value) or value.shape != old[sources[0]][0].shape:
            out[key] = value.clone() if torch.is_tensor(value) else value  # step counts and scalars
            continue
        second_moment = key != "exp_avg"
        seed = torch.stack([s[key].float().mean() for s in src_states]).mean().item() if second_moment else 0.0
        if tmap.source is None:
            out[key] = torch.full_like(p, seed)
        else:
            out[key] = tmap.gather(value, fill=seed, power=2 if second_moment else 1).to(p.dtype).contiguous()
    return out
