"""The speedup math of `growkit.bench.speedup` on synthetic curves, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from growkit.bench.frontier import Point, frontier_cost, headline, pareto, speedup_at
from growkit.bench.speedup import RunResult, format_table, summarize

# FLOPs double from point to point, seconds are FLOPs / 1e11, losses 4.0, 3.5, 3.2, 3.0.
FRONTIER = [Point(1e12, 10.0, 4.0), Point(2e12, 20.0, 3.5), Point(4e12, 40.0, 3.2), Point(8e12, 80.0, 3.0)]
TARGET = FRONTIER[-1]


def test_pareto_drops_dominated_points_and_sorts() -> None:
    dominated = Point(3e12, 30.0, 3.6)  # more FLOPs than the 2e12 point, higher loss
    pts = pareto([FRONTIER[3], dominated, FRONTIER[0], FRONTIER[2], FRONTIER[1]])
    assert pts == FRONTIER


def test_frontier_interpolates_in_log_flops() -> None:
    # 3.35 is halfway between 3.5 (2e12) and 3.2 (4e12): the geometric mean, 2·√2·1e12.
    m = frontier_cost(FRONTIER, 3.35)
    assert m.bound is None
    assert m.flops == pytest.approx(2.8284271e12, rel=1e-6)
    assert m.time_s == pytest.approx(28.284271, rel=1e-6)
    # a quarter of the way from 3.2 (4e12) to 3.0 (8e12): 4e12 · 2^0.25
    assert frontier_cost(FRONTIER, 3.15).flops == pytest.approx(4.7568284e12, rel=1e-6)
    # exactly on a point
    assert frontier_cost(FRONTIER, 3.5).flops == pytest.approx(2e12)
    # a dominated point changes nothing
    assert frontier_cost([*FRONTIER, Point(3e12, 30.0, 3.6)], 3.35).flops == pytest.approx(2.8284271e12, rel=1e-6)


def test_frontier_never_extrapolates() -> None:
    better = frontier_cost(FRONTIER, 2.9)  # below the full run's loss: at least its FLOPs
    assert (better.flops, better.time_s, better.bound) == (8e12, 80.0, "above")
    worse = frontier_cost(FRONTIER, 4.2)  # above the smallest run's loss: at most its FLOPs
    assert (worse.flops, worse.time_s, worse.bound) == (1e12, 10.0, "below")


def test_speedup_at_a_budget() -> None:
    s = speedup_at(FRONTIER, Point(1e12, 20.0, 3.35))
    assert s.flops == pytest.approx(2.8284271, rel=1e-6)
    assert s.wallclock == pytest.approx(28.284271 / 20.0, rel=1e-6)
    assert s.bound is None
    lower = speedup_at(FRONTIER, Point(4e12, 40.0, 2.9))
    assert (lower.flops, lower.wallclock, lower.bound) == (2.0, 2.0, "lower")
    upper = speedup_at(FRONTIER, Point(5e11, 4.0, 4.5))
    assert (upper.flops, upper.wallclock, upper.bound) == (2.0, 2.5, "upper")


def test_headline_interpolates_between_the_schedules_budgets() -> None:
    # losses 3.2 at 2e12 and 2.9 at 4e12: the target 3.0 is 2/3 of the way → 2e12 · 2^(2/3)
    pts = [Point(4e12, 50.0, 2.9), Point(2e12, 30.0, 3.2)]  # any order
    h = headline(pts, TARGET, fractions=[1.5, 1.0])
    assert h.status == "interpolated"
    assert h.flops == pytest.approx(3.1748021e12, rel=1e-6)
    assert h.speedup_flops == pytest.approx(2.5198421, rel=1e-6)  # 8 / (2 · 2^(2/3))
    assert h.time_s == pytest.approx(42.171616, rel=1e-6)  # 30 · (5/3)^(2/3)
    assert h.speedup_wallclock == pytest.approx(1.8970110, rel=1e-6)
    assert h.fraction == pytest.approx(1.3103707, rel=1e-6)  # 1.5^(2/3)


def test_headline_not_reached_and_lower_bound() -> None:
    h = headline([Point(2e12, 30.0, 3.2), Point(4e12, 50.0, 3.05)], TARGET)
    assert h.status == "not reached"
    assert h.speedup_flops is None and h.speedup_wallclock is None and h.flops is None
    lb = headline([Point(2e12, 30.0, 2.95), Point(4e12, 50.0, 2.9)], TARGET, [1.0, 1.5])
    assert lb.status == "lower bound"
    assert lb.speedup_flops == pytest.approx(4.0)
    assert lb.speedup_wallclock == pytest.approx(80.0 / 30.0)
    assert lb.fraction == 1.0


def _result(name: str, schedule: str, frac: float, end: Point) -> RunResult:
    return RunResult(name, schedule, frac, [Point(0.0, 0.0, 9.0), end], params=1000, tokens=500, max_loss_jump=None)


def _frontier_results() -> list[RunResult]:
    return [_result(f"scratch-{round(f * 100):03d}", "scratch", f, p)
            for f, p in zip((0.25, 0.5, 0.75, 1.0), FRONTIER, strict=True)]


def test_summary_best_headline() -> None:
    results = [*_frontier_results(),
               _result("msg-100", "msg", 1.0, Point(2e12, 30.0, 3.2)),
               _result("msg-150", "msg", 1.5, Point(4e12, 50.0, 2.9)),
               _result("stack-100", "stack", 1.0, Point(3e12, 20.0, 3.1)),
               _result("stack-150", "stack", 1.5, Point(6e12, 25.0, 2.95)),
               # a baseline with a better headline is reported but is not a growth schedule's "best"
               _result("small-100", "small", 1.0, Point(1e12, 5.0, 2.8)),
               _result("small-150", "small", 1.5, Point(2e12, 8.0, 2.7))]
    s = summarize(results)
    assert s["best"]["basis"] == "headline"
    assert s["best"]["flops_schedule"] == "msg"
    assert s["best"]["flops"] == pytest.approx(2.5198421, rel=1e-6)
    # stack: 3.1 → 2.95 crosses 3.0 at 2/3: 3e12 · 2^(2/3); seconds 20 · 1.25^(2/3)
    assert s["best"]["wallclock_schedule"] == "stack"
    assert s["best"]["wallclock"] == pytest.approx(80.0 / (20.0 * 1.25 ** (2 / 3)), rel=1e-6)
    assert s["headlines"]["small"].status == "lower bound"
    table = format_table(results, s)
    assert "| msg | interpolated |" in table and "| small (baseline) | lower bound |" in table
    assert "tokens/param" in table and "| 0.500 |" in table  # 500 tokens / 1000 params


def test_summary_when_nothing_reaches_the_target() -> None:
    results = [*_frontier_results(),
               _result("msg-100", "msg", 1.0, Point(2e12, 30.0, 3.4)),   # frontier: 2e12 · 2^(1/3), 20 · 2^(1/3)
               _result("msg-150", "msg", 1.5, Point(4e12, 50.0, 3.1)),   # frontier: 4e12 · √2, 40 · √2
               _result("zero-100", "zero", 1.0, Point(3e12, 30.0, 3.6)),
               _result("zero-150", "zero", 1.5, Point(5e12, 20.0, 3.2))]  # frontier 4e12, 40 s
    s = summarize(results)
    assert all(h.status == "not reached" for h in s["headlines"].values())
    assert s["best"]["basis"].startswith("not reached")
    # at the largest budgets: msg 4√2/4 = 1.414 FLOPs, 40√2/50 = 1.131 wall; zero 0.8 FLOPs, 2.0 wall
    assert s["best"]["flops_schedule"] == "msg"
    assert s["best"]["flops"] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert s["best"]["wallclock_schedule"] == "zero"
    assert s["best"]["wallclock"] == pytest.approx(2.0, rel=1e-6)
    assert "no growth schedule reached the target loss" in format_table(results, s)
