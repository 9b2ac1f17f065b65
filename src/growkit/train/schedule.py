"""Learning-rate schedule: linear warmup, then cosine or linear decay to ``min_lr``, constant, or
warmup-stable-decay (``wsd``: constant, then linear to ``min_lr`` over the last ``decay_fraction``).

The schedule is a pure function of the optimizer step and the run's *progress* — the largest of
step / max_steps, tokens / max_tokens and FLOPs / max_flops over the budgets that are set — so it
carries across a growth (the step and the counters go on; nothing is re-registered) and a resumed
run lands on exactly the same LR.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from growkit.train.config import TrainConfig


def progress(cfg: TrainConfig, step: int, tokens: int, flops: float) -> float:
    """Fraction of the run's budget spent, in [0, ∞): the run ends when it reaches 1."""
    fractions = [done / budget for done, budget in
                 ((step, cfg.max_steps), (tokens, cfg.max_tokens), (flops, cfg.max_flops)) if budget]
    return max(fractions)


def learning_rate(cfg: TrainConfig, step: int, frac: float) -> float:
    """LR for optimizer step ``step`` (0-based) at run progress ``frac``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    t = min(max(frac, 0.0), 1.0)
    if cfg.decay == "constant":
        return cfg.lr
    if cfg.decay == "linear":
        return cfg.lr + (min_lr - cfg.lr) * t
    if cfg.decay == "wsd":
        start = 1.0 - cfg.decay_fraction
        return cfg.lr if t <= start else cfg.lr + (min_lr - cfg.lr) * (t - start) / cfg.decay_fraction
    return min_lr + 0.5 * (cfg.lr - min_lr) * (1 + math.cos(math.pi * t))


def scheduled_lr(cfg: TrainConfig, step: int, frac: float, policy: str = "continue", anchor_step: int | None = None,
                 anchor_frac: float = 0.0, warmup_steps: int = 0) -> float:
    """`learning_rate` with the policy of the last growth (see `with_lr_policy`)."""
    return with_lr_policy(lambda s, f: learning_rate(cfg, s, f), step, frac, policy, anchor_step, anchor_frac,
                          warmup_steps)


def with_lr_policy(schedule: Callable[[int, float], float], step: int, frac: float, policy: str = "continue",
                   anchor_step: int | None = None, anchor_frac: float = 0.0, warmup_steps: int = 0) -> float:
    """The LR of ``schedule(step, progress)`` under the policy of the last growth (`growkit.train.growth`):

    - ``continue``: ``schedule`` unchanged;
    - ``rewarm``: ``schedule`` × min(1, (step − anchor + 1) / warmup_steps) after the growth;
    - ``rewind``: the whole schedule (warmup, then decay) restarts at the growth step and is stretched
      over the rest of the budget: ``schedule(step − anchor, (progress − p_anchor) / (1 − p_anchor))``.
    """
    if anchor_step is None or policy == "continue":
        return schedule(step, frac)
    if policy == "rewind":
        rest = max(1.0 - anchor_frac, 1e-12)
        return schedule(step - anchor_step, (frac - anchor_frac) / rest)
    lr = schedule(step, frac)
    return lr * min(1.0, (step - anchor_step + 1) / warmup_steps) if warmup_steps else lr
