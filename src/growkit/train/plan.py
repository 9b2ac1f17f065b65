"""Check a growth schedule whole, before step 0: every stage applied in order to the model's shapes.

``plan_schedule(cfg, stages)`` grows a meta-device model (`growkit.grow.shapes`: the real operators, no
weights) through every ``[[growth]]`` stage in turn and returns the config after each one. A stage the
model cannot take at that point — an ungroupable GQA head count, a RoPE head width the method cannot
keep, a method that does not apply to a dimension (``split`` of depth), a size that would shrink, a
stage that grows nothing, a training length beyond ``max_seq_len`` — is one `GrowkitError` naming the
stage, the sizes it would meet and the fix, raised when the schedule is built instead of days into the run.
"""

from __future__ import annotations

import torch

from growkit.config import TransformerConfig
from growkit.errors import GrowkitError
from growkit.grow.shapes import drop_masks, grow_shapes, meta_model
from growkit.train.growth import GrowthStage

_SIZES = ("n_layers", "d_model", "d_ff", "n_heads", "n_kv_heads", "d_head", "d_head_v", "max_seq_len")


def plan_schedule(cfg: TransformerConfig, stages: list[GrowthStage], seq_len: int | None = None
                  ) -> list[TransformerConfig]:
    """The model's config before the first stage and after each stage (``len(stages) + 1`` configs).

    ``seq_len``: the training length before any stage sets one (checked against ``max_seq_len``). (A
    sparse run's block size is checked against the planned shapes by `growkit.train.grower.Grower`.)"""
    configs = [cfg]
    with torch.random.fork_rng(devices=[]):  # building modules must not move the run's random stream
        model = meta_model(cfg)
        lengths = [("the training length (data.start_seq_len or data.seq_len)", seq_len)]
        _check_lengths(lengths, cfg.max_seq_len)
        for i, stage in enumerate(stages):
            where = f"[[growth]] stage {i + 1} (grow = {stage.grow})"
            try:
                spec = stage.spec()
                if spec.changes(model.cfg):
                    model, _ = grow_shapes(model, spec)
                    drop_masks(model)  # the ramp folds before the next stage
                elif not (stage.seq_len or stage.pool):
                    raise GrowkitError("it grows nothing: the model is already that size; drop the stage or "
                                       "give it larger sizes")
            except GrowkitError as e:
                raise GrowkitError(f"{where} cannot be applied to the model it meets ({_sizes(model.cfg)}): "
                                   f"{e}") from None
            lengths.append((f"[[growth]] stage {i + 1} seq_len", stage.seq_len))
            lengths.append((f"[[growth]] stage {i + 1} pool", stage.pool))
            _check_lengths(lengths, model.cfg.max_seq_len)
            configs.append(model.cfg)
    return configs


def _check_lengths(lengths: list[tuple[str, int | None]], max_len: int) -> None:
    """Every training length set so far must fit the model's max_seq_len at this point of the schedule."""
    for where, n in lengths:
        if n is not None and n > max_len:
            raise GrowkitError(f"{where} = {n} exceeds the model's max_seq_len {max_len}: raise model.max_seq_len "
                               f"or grow it (grow = {{ max_seq_len = {n} }}) before that stage")


def _sizes(cfg: TransformerConfig) -> str:
    return ", ".join(f"{k} {getattr(cfg, k)}" for k in _SIZES)
