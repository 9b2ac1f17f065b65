"""Function-preserving growth: ``new_model, record = grow(model, GrowthSpec(...))``.

The old model is left untouched. Dimensions are grown one after the other (each step preserves the
function, so their composition does) on a `GrowthState` — the config plus a flat dict of tensors —
and a fresh `Transformer` of the new config is built around the result. The `GrowthRecord` says, for
every tensor of the new model, where each old entry went.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from growkit.errors import GrowkitError
from growkit.grow.depth import grow_n_layers
from growkit.grow.ffn import grow_d_ff
from growkit.grow.head_dim import grow_d_head, grow_d_head_v
from growkit.grow.heads import grow_n_heads
from growkit.grow.length import grow_max_seq_len
from growkit.grow.masks import fold_masks, mask_level, ramp_masks
from growkit.grow.optim_state import carry_optimizer_state
from growkit.grow.spec import APPLICABLE, DIMENSIONS, METHODS, STRICT, GrowthSpec, check_applicable, check_std
from growkit.grow.state import GrowthState
from growkit.grow.verify import check_preserved
from growkit.grow.width import grow_d_model
from growkit.model import Transformer
from growkit.record import GrowthRecord

Operator = Callable[[GrowthState, int, int, str], None]
#: dimension → operator(state, old_size, new_size, method). n_heads' operator also grows n_kv_heads (the
#: GQA grouping depends on both), reading the target from ``state.spec``.
OPERATORS: dict[str, Operator] = {
    "d_ff": grow_d_ff,
    "n_heads": grow_n_heads,
    "d_head": grow_d_head,
    "d_head_v": grow_d_head_v,
    "d_model": grow_d_model,
    "n_layers": grow_n_layers,
    "max_seq_len": grow_max_seq_len,
}

__all__ = ["APPLICABLE", "DIMENSIONS", "METHODS", "STRICT", "GrowthRecord", "GrowthSpec", "carry_optimizer_state",
           "check_preserved",
           "fold_masks", "grow", "mask_level", "ramp_masks"]


def grow(model: Transformer, spec: GrowthSpec | dict[str, Any]) -> tuple[Transformer, GrowthRecord]:
    """Grow ``model`` to the sizes of ``spec``; returns the new model and its `GrowthRecord`."""
    if isinstance(spec, dict):
        spec = GrowthSpec.from_dict(spec)
    if not isinstance(model, Transformer):
        raise GrowkitError(f"grow() takes a growkit.Transformer, got {type(model).__name__}: convert Hugging Face "
                           f"models with growkit.adapters.from_hf first")
    cfg = model.cfg
    changes = spec.changes(cfg)
    for dim in changes:
        check_applicable(dim, spec.method_for(dim))
        check_std(dim, spec.method_for(dim), spec.std if spec.std is not None else cfg.init_std)
    level = mask_level(model)
    if level is not None and level < 1.0:
        raise GrowkitError(f"the model still has growth masks at c = {level:g} from an earlier masked growth: ramp "
                           f"them to 1 and fold them (gk.ramp_masks(model, 1.0); gk.fold_masks(model)) first")
    param = next(model.parameters())
    tensors = {n: t.detach() for n, t in model.state_dict(keep_vars=True).items()}
    if cfg.tie_embeddings:
        tensors.pop("lm_head.weight")
    old_storage = {t.untyped_storage().data_ptr() for t in tensors.values()}
    state = GrowthState(cfg, tensors, spec)
    state.record.old_param_names = {id(p): n for n, p in model.named_parameters()}
    if "n_kv_heads" in changes:
        changes.setdefault("n_heads", (cfg.n_heads, cfg.n_heads))
    for dim in DIMENSIONS:
        if dim in changes and dim in OPERATORS:
            OPERATORS[dim](state, *changes[dim], spec.method_for(dim))
    new = _build(state, model.training, old_storage)
    new.seq_pool = model.seq_pool  # embedding pooling is part of the function being preserved
    return new.to(device=param.device), state.record


def _build(state: GrowthState, training: bool, old_storage: set[int]) -> Transformer:
    """A Transformer of ``state.cfg`` holding exactly ``state.tensors`` (never sharing the old storage)."""
    state.cfg.validate()
    with torch.device("meta"):
        model = Transformer(state.cfg)
    # tensors no operator rewrote are copied, so training the new model leaves the old one alone
    tensors = {n: t.clone() if t.untyped_storage().data_ptr() in old_storage else t
               for n, t in state.tensors.items()}
    model.attach_masks(tensors)
    if state.cfg.tie_embeddings:
        tensors["lm_head.weight"] = tensors["tok_emb.weight"]
    model.load_state_dict(tensors, strict=True, assign=True)
    if state.cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    model.reset_buffers()
    return model.train(training)
