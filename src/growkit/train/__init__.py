"""Training: run configs, the loop, LR schedule, checkpoints, metrics and plots."""

from growkit.train.config import DataConfig, RunConfig, RunSection, TrainConfig
from growkit.train.grower import Grower
from growkit.train.loop import Trainer, train

__all__ = ["DataConfig", "Grower", "RunConfig", "RunSection", "TrainConfig", "Trainer", "train"]
