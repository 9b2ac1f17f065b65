"""Growth schedules: the ``[[growth]]`` stages of a run and the mask ramp that follows a masked stage.

A stage, in TOML::

    [[growth]]
    at_step = 500                 # or at_tokens / at_flops / at_fraction (of the run's budget)
    grow = { d_ff = 512, n_layers = 4 }
    method = { n_layers = "masked", "*" = "masked" }
    ramp_steps = 100              # masked growth: c goes 0 → 1 over this many optimizer steps, then folds
    seq_len = 128                 # optional: train on sequences of this length from here on
    pool = 1                      # optional: embedding pooling factor from here on (1: off)
    lr = "continue"               # LR policy at the growth: continue | rewarm | rewind
    lr_warmup_steps = 50          # rewarm: steps to climb back to the scheduled LR
    lr_scale = 0.5                # optional: from here on the LR is the run's schedule × this
    new_lr_warmup_steps = 50      # the entries this growth added get their own LR warmup

Several dimensions in one stage grow together (CompoundGrow's compound growth); ``seq_len`` is the
input-length growth of CompoundGrow by data truncation (training sequences get longer; evaluation
always uses ``data.seq_len``, so losses compare across stages and runs); ``pool`` is its other operator,
embedding pooling: from this stage on the model runs its blocks on sequences pooled k× shorter
(``Transformer.seq_pool``; ``data.start_pool`` sets k before the first stage), and a later stage with a
smaller ``pool`` un-pools (the full length comes back, the blocks' cost per token grows k×).

LR policies: ``continue`` keeps the run's schedule; ``rewarm`` (CompoundGrow) multiplies it by a linear
ramp 0 → 1 over ``lr_warmup_steps`` after the growth; ``rewind`` (MSG-style) restarts warmup and decay
from the growth step over the rest of the budget. ``lr_scale`` sets a per-stage peak: from this
growth on, the LR (whatever the policy) is the run's schedule × ``lr_scale`` (until a later stage sets
another), so a small start model can train at a higher ``train.lr`` than the grown one.
Independently, ``new_lr_warmup_steps`` warms up only the entries the growth added (new units, new
layers): for that many steps their AdamW update is scaled by min(1, (t + 1)/W), t steps after the
growth, while old entries train at the scheduled LR — the "short warmup for new parameters only"
(AdamW has no per-entry LR, so the trainer scales the applied update of those entries, which for
AdamW, weight decay included, is the same thing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from growkit.config import check_keys, check_types
from growkit.errors import GrowkitError
from growkit.grow.spec import GrowthSpec

LR_POLICIES = ("continue", "rewarm", "rewind")


@dataclass
class GrowthStage:
    grow: dict[str, int] = field(default_factory=dict)
    at_step: int | None = None
    at_tokens: int | None = None
    at_flops: float | None = None
    at_fraction: float | None = None
    """Grow when this fraction of the run's budget is spent: the schedule scales with the budget."""
    method: str | dict[str, str] = "masked"
    ramp_steps: int = 0
    seq_len: int | None = None
    pool: int | None = None
    """Embedding pooling factor from this stage on (1: off; None: unchanged)."""
    lr: str = "continue"
    lr_warmup_steps: int = 0
    lr_scale: float | None = None
    """From this growth on, the LR is the run's schedule × lr_scale (None: keep the current scale)."""
    new_lr_warmup_steps: int = 0
    depth_placement: str | list[int] = "top"
    std: float | None = None
    seed: int = 0
    noise: float = 0.01

    @classmethod
    def from_dict(cls, d: dict[str, Any], index: int) -> GrowthStage:
        where = f"[[growth]] stage {index + 1}"
        if not isinstance(d, dict):
            raise GrowkitError(f"{where} must be a table (write it as [[growth]] with keys), got {d!r}")
        check_keys(d, (f.name for f in fields(cls)), where)
        check_types(d, cls, f"{where}: ")
        stage = cls(**d)
        if sum(x is not None for x in (stage.at_step, stage.at_tokens, stage.at_flops, stage.at_fraction)) != 1:
            raise GrowkitError(f"{where} needs exactly one of at_step, at_tokens, at_flops, at_fraction")
        if stage.at_fraction is not None and not 0.0 <= stage.at_fraction < 1.0:
            raise GrowkitError(f"{where}: at_fraction must be in [0, 1), got {stage.at_fraction}")
        if stage.pool is not None and stage.pool < 1:
            raise GrowkitError(f"{where}: pool must be a whole number >= 1 (1: no pooling), got {stage.pool}")
        if not isinstance(stage.grow, dict) or not (stage.grow or stage.seq_len or stage.pool):
            raise GrowkitError(f"{where} grows nothing: give grow = {{ d_model = 512, ... }} and/or seq_len = N "
                               f"and/or pool = K")
        if stage.lr not in LR_POLICIES:
            raise GrowkitError(f"{where}: lr must be one of {', '.join(LR_POLICIES)}, got {stage.lr!r}")
        if stage.lr_scale is not None and not (isinstance(stage.lr_scale, int | float) and 0 < stage.lr_scale < 1e3):
            raise GrowkitError(f"{where}: lr_scale must be a number > 0 (e.g. 0.5), got {stage.lr_scale!r}")
        if min(stage.ramp_steps, stage.lr_warmup_steps, stage.new_lr_warmup_steps) < 0:
            raise GrowkitError(f"{where}: ramp_steps, lr_warmup_steps and new_lr_warmup_steps must be >= 0")
        stage.spec()  # validates sizes' names and methods now, not at the growth
        return stage

    def spec(self) -> GrowthSpec:
        return GrowthSpec.from_dict({**self.grow, "method": self.method, "depth_placement": self.depth_placement,
                                     "std": self.std, "seed": self.seed, "noise": self.noise})

    def due(self, step: int, tokens: int, flops: float, progress: float) -> bool:
        return ((self.at_step is not None and step >= self.at_step)
                or (self.at_tokens is not None and tokens >= self.at_tokens)
                or (self.at_flops is not None and flops >= self.at_flops)
                or (self.at_fraction is not None and progress >= self.at_fraction))


def parse_stages(raw: list[dict[str, Any]]) -> list[GrowthStage]:
    return [GrowthStage.from_dict(d, i) for i, d in enumerate(raw)]


def ramp_value(step: int, ramp_start: int, ramp_steps: int) -> float:
    """Mask level c after ``step`` optimizer steps for a ramp that began at ``ramp_start``."""
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, (step - ramp_start) / ramp_steps)
