"""Grow a saved checkpoint: ``growkit grow --from CKPT --to d_model=512 --method zero --out CKPT2``.

The model is grown with `growkit.grow`, its AdamW state carried with `carry_optimizer_state`, and the
result written as a checkpoint of the same format, so a run can continue from it
(``growkit train --config BIG.toml --resume-from CKPT2``, with BIG.toml describing the grown model).

A sparse run's masks (``sparsity.*`` in ``trainer.safetensors``) follow the `GrowthRecord` through the
sparsity controller's ``on_grow``, exactly as in a growth stage of a run: old entries keep their masks,
new ones are allocated at the run's ``[sparsity]`` density, and inactive weights and moments are zeroed.
The grown masks are written back as the trainer writes them, so a resume continues with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from growkit.config import TransformerConfig
from growkit.errors import GrowkitError
from growkit.grow import GrowthSpec, carry_optimizer_state, check_preserved, grow
from growkit.model import Transformer
from growkit.sparse import SparsityController
from growkit.train.checkpoint import read_checkpoint, write_checkpoint
from growkit.train.config import RunConfig, TrainConfig
from growkit.train.loop import build_optimizer
from growkit.train.runlock import RunLock


def grow_checkpoint(source: Path, spec: GrowthSpec, out: Path, force_unlock: bool = False) -> dict[str, Any]:
    """Grow the checkpoint at ``source`` (a checkpoint dir or a run dir) into a new checkpoint ``out``.

    ``out`` is locked while it is written (`growkit.train.runlock`, beside it: it is renamed into place
    whole); ``source`` is only read and takes no lock. Returns the old and new configs and the max
    |Δlogits| of the growth on a fixed random batch.
    """
    with RunLock(out, beside=True, force=force_unlock):
        return _grow_checkpoint(source, spec, out)


def _grow_checkpoint(source: Path, spec: GrowthSpec, out: Path) -> dict[str, Any]:
    if out.exists():
        raise GrowkitError(f"{out} already exists: choose a new --out (nothing was overwritten)")
    ckpt = read_checkpoint(source)
    cfg = TransformerConfig.from_dict(ckpt.state["model_config"], where="checkpoint model_config")
    model = Transformer(cfg)
    ckpt.load_model(model)
    run_cfg = ckpt.state.get("run_config")
    train_cfg = RunConfig.from_dict(run_cfg).train if run_cfg else TrainConfig(max_steps=1)
    optimizer = build_optimizer(model, train_cfg)
    ckpt.load_optimizer(optimizer, model)
    sparsity = _sparsity(ckpt.extra(), run_cfg, model, optimizer)
    new, record = grow(model, spec)
    new_optimizer = carry_optimizer_state(optimizer, new, record)
    extra: dict[str, torch.Tensor] = {}
    if sparsity is not None:  # before the check: the grown model is compared as it will train, masked
        sparsity.on_grow(new, record, new_optimizer)
        sparsity.remove()
        extra = {f"{SPARSITY}{k}": v for k, v in sparsity.state_dict().items()}
    tokens = torch.randint(0, cfg.vocab_size, (2, min(cfg.max_seq_len, 64)), generator=torch.Generator().manual_seed(0))
    err = check_preserved(model, new, tokens)
    growths = [*ckpt.state.get("growths", []), {"step": ckpt.step, "spec": spec.to_dict(), "max_abs_dlogits": err}]
    state = {**ckpt.state, "model_config": new.cfg.to_dict(), "growths": growths}
    state.pop("format_version", None)
    torch.set_rng_state(ckpt.rng_state())
    write_checkpoint(out, new, new_optimizer, state, extra=extra)
    return {"old": cfg.to_dict(), "new": new.cfg.to_dict(), "max_abs_dlogits": err,
            "params": (model.num_params(), new.num_params())}


SPARSITY = "sparsity."
"""Prefix of the sparsity controller's tensors in a checkpoint's ``trainer.safetensors`` (as `Trainer.save`)."""


def _sparsity(extra: dict[str, torch.Tensor], run_cfg: dict[str, Any] | None, model: Transformer,
              optimizer: torch.optim.Optimizer) -> SparsityController | None:
    """The checkpoint's sparsity controller, restored onto ``model`` (None for a dense checkpoint)."""
    saved = {k.removeprefix(SPARSITY): v for k, v in extra.items() if k.startswith(SPARSITY)}
    if not saved:
        return None
    scfg = RunConfig.from_dict(run_cfg).sparsity_config() if run_cfg else None
    if scfg is None:
        raise GrowkitError("the checkpoint holds sparsity masks but no [sparsity] settings in its run_config, so "
                           "the new weights' density is unknown: grow a checkpoint written by growkit train")
    # only the masks are carried here, no prune-and-regrow: the update schedule (total_steps) is not needed
    return SparsityController(model, scfg.replace(static=True), optimizer, state=saved)
