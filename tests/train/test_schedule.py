"""LR schedule: warmup, then cosine / linear / constant / wsd over the run's progress."""

from __future__ import annotations

import math

import pytest

from growkit.train.config import TrainConfig
from growkit.train.schedule import learning_rate, progress


def test_warmup_is_linear_from_lr_over_warmup() -> None:
    cfg = TrainConfig(max_steps=100, lr=1e-3, warmup_steps=10)
    assert [learning_rate(cfg, s, s / 100) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])


@pytest.mark.parametrize(("decay", "mid"), [("cosine", 5.5e-4), ("linear", 5.5e-4), ("constant", 1e-3)])
def test_decay_shapes(decay: str, mid: float) -> None:
    cfg = TrainConfig(max_steps=100, lr=1e-3, warmup_steps=0, decay=decay)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50, 0.5) == pytest.approx(mid)
    assert learning_rate(cfg, 100, 1.0) == pytest.approx(1e-3 if decay == "constant" else 1e-4)


def test_cosine_quarter_point_and_min_lr() -> None:
    cfg = TrainConfig(max_steps=100, lr=1.0, min_lr=0.0, warmup_steps=0)
    assert learning_rate(cfg, 25, 0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_progress_is_the_largest_fraction_of_the_budgets_set() -> None:
    cfg = TrainConfig(max_steps=100, max_tokens=1000, max_flops=None)
    assert progress(cfg, step=10, tokens=500, flops=1e30) == 0.5
    assert progress(TrainConfig(max_flops=1e6), step=10**9, tokens=0, flops=2.5e5) == 0.25


def test_wsd_is_stable_then_linear_to_min_lr_over_the_decay_fraction() -> None:
    cfg = TrainConfig(max_steps=100, lr=1e-3, warmup_steps=0, decay="wsd", decay_fraction=0.2)
    assert [learning_rate(cfg, s, s / 100) for s in (0, 50, 80, 90, 100)] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 5.5e-4, 1e-4])


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_wsd_decay_fraction_out_of_range_is_refused(fraction: float) -> None:
    from growkit.errors import GrowkitError
    from growkit.train import RunConfig

    with pytest.raises(GrowkitError, match=r"train.decay_fraction must be in \(0, 1\]"):
        RunConfig.from_dict({"train": {"decay": "wsd", "decay_fraction": fraction, "max_steps": 10}})
