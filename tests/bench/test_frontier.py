"""The envelope math of `growkit.bench.frontier`: the lower hull, envelope costs and bounded ratios."""

from __future__ import annotations

import itertools
import math

import pytest

from growkit.bench.frontier import Match, Point, envelope_cost, frontier_cost, lower_hull, pareto, ratio


def _p(flops: float, loss: float) -> Point:
    return Point(flops, flops / 1e11, loss)


def test_lower_hull_drops_points_above_the_chord_and_dominated_ones() -> None:
    # in log2 FLOPs: x = 0, 1, 2, 3, 4; (2, 3.6) sits above the chord (1, 3.5)→(3, 3.0) (which has 3.25 at x=2)
    pts = [_p(1e12, 4.0), _p(2e12, 3.5), _p(4e12, 3.6), _p(8e12, 3.0), _p(16e12, 2.9), _p(16e12, 3.3),
           _p(32e12, 2.95)]
    hull = lower_hull(pts)
    assert [p.flops for p in hull] == [1e12, 2e12, 8e12, 16e12]
    # convex: slopes (loss per log FLOP) increase from point to point
    slopes = [(b.loss - a.loss) / math.log(b.flops / a.flops) for a, b in itertools.pairwise(hull)]
    assert slopes == sorted(slopes)


def test_lower_hull_keeps_a_point_just_below_the_chord() -> None:
    pts = [_p(1e12, 4.0), _p(2e12, 3.4999), _p(4e12, 3.0)]
    assert len(lower_hull(pts)) == 3
    pts = [_p(1e12, 4.0), _p(2e12, 3.5), _p(4e12, 3.0)]  # exactly on the chord: not needed
    assert [p.flops for p in lower_hull(pts)] == [1e12, 4e12]


def test_envelope_cost_interpolates_on_the_hull_in_log_flops() -> None:
    pts = [_p(1e12, 4.0), _p(4e12, 3.6), _p(8e12, 3.0)]  # (4e12, 3.6) is above the chord 4.0→3.0
    m = envelope_cost(pts, 3.5)  # halfway between 1e12 and 8e12 in loss → geometric mean of the FLOPs
    assert m.bound is None
    assert m.flops == pytest.approx(math.sqrt(1e12 * 8e12))
    assert m.time_s == pytest.approx(math.sqrt(10.0 * 80.0))
    assert envelope_cost(pts, 2.0) == Match(8e12, 80.0, "above")
    assert envelope_cost(pts, 5.0) == Match(1e12, 10.0, "below")


@pytest.mark.parametrize(("base", "own", "expect"), [
    (None, None, None), ("above", None, "lower"), (None, "below", "lower"), ("above", "below", "lower"),
    ("below", None, "upper"), (None, "above", "upper"), ("below", "above", "upper"),
])
def test_ratio_combines_bounds(base: str | None, own: str | None, expect: str | None) -> None:
    s = ratio(Match(6e12, 60.0, base), Match(2e12, 30.0, own))
    assert s is not None
    assert (s.flops, s.wallclock, s.bound) == (pytest.approx(3.0), pytest.approx(2.0), expect)


@pytest.mark.parametrize(("base", "own"), [("above", "above"), ("below", "below")])
def test_ratio_with_bounds_pointing_both_ways_is_no_figure(base: str, own: str) -> None:
    assert ratio(Match(6e12, 60.0, base), Match(2e12, 30.0, own)) is None


def test_runs_within_one_percent_of_flops_are_one_budget() -> None:
    # iso-FLOP runs of two sizes a few steps apart: the worse one is not a frontier point, so a loss between
    # the two is a bound (the frontier's cheapest point already beats it), not an interpolation
    pts = [Point(2.5001e11, 1.0, 2.33), Point(2.5023e11, 1.0, 2.11), Point(5e11, 2.0, 1.94)]
    assert [p.loss for p in pareto(pts)] == [2.11, 1.94]
    assert [p.loss for p in lower_hull(pts)] == [2.11, 1.94]
    m = frontier_cost(pts, 2.13)
    assert m.bound == "below" and m.flops == 2.5023e11
    # 2 % apart: two budgets
    assert len(pareto([Point(1e12, 1.0, 2.0), Point(1.02e12, 1.0, 1.9)])) == 2
