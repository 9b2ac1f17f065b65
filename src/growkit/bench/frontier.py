"""The one implementation of frontier, envelope, interpolation and bounds behind every growkit benchmark.

A *run* ends at a `Point` (training FLOPs, training seconds, final val loss). A set of runs that differ
only in budget (each with its LR fully decayed at its own budget) is a *frontier*; the *envelope* of
several frontiers is their lower convex hull in (log FLOPs, loss) — the best a practitioner could reach
at each compute by picking the model size (`lower_hull`).

The cost of reaching a loss ℓ from such a set of final points (`frontier_cost`) is interpolated linearly
in (loss, log FLOPs) between the two Pareto points that bracket ℓ (wall-clock in log-seconds at the same
position). Nothing is extrapolated: a loss below every point costs *at least* the best point
(``bound="above"``), a loss above every point *at most* the cheapest one (``bound="below"``).

A speedup is ``baseline cost / own cost`` at the same loss (`ratio`); the bounds of the two costs combine
into a bound of the ratio (``≥``, ``≤``) or, when they point in opposite directions, into no number.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from growkit.errors import GrowkitError


@dataclass(frozen=True)
class Point:
    """One run's end (or any evaluation): cumulative training FLOPs, training seconds, val loss."""

    flops: float
    time_s: float
    loss: float


@dataclass(frozen=True)
class Match:
    """What the frontier (or a schedule) needs to reach a loss. ``bound``: None when interpolated;
    ``"above"`` when the true cost is at least this (the loss is below every point), ``"below"`` when it
    is at most this (the loss is above every point)."""

    flops: float
    time_s: float
    bound: str | None = None


def _loglerp(a: float, b: float, alpha: float) -> float:
    a, b = max(a, 1e-12), max(b, 1e-12)
    return math.exp(math.log(a) + alpha * (math.log(b) - math.log(a)))


SAME_FLOPS = 0.01
"""Runs whose FLOPs differ by less than this fraction are one budget (iso-FLOP runs of different sizes land
a few steps apart): only the lowest loss among them is a frontier point, so that a loss between theirs is not
"interpolated" along a vertical segment of the frontier."""


def mean_point(points: Sequence[Point]) -> Point:
    """The mean of runs that differ only by seed: mean FLOPs, seconds and loss."""
    return Point(statistics.fmean(p.flops for p in points), statistics.fmean(p.time_s for p in points),
                 statistics.fmean(p.loss for p in points))


def spread(values: Sequence[float]) -> float:
    """Half the range: the ± of a mean over a few seeds (0 for one)."""
    return (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def pareto(points: Sequence[Point]) -> list[Point]:
    """Points sorted by FLOPs, keeping only those with a lower loss than every cheaper point (runs within
    `SAME_FLOPS` of each other's FLOPs count as one budget: the lowest loss of them stands for it)."""
    ordered = sorted(points, key=lambda p: (p.flops, p.loss))
    best = [min((q for q in ordered if abs(q.flops - p.flops) <= SAME_FLOPS * p.flops), key=lambda q: q.loss)
            for p in ordered]
    out: list[Point] = []
    for p, b in zip(ordered, best, strict=True):
        if p is b and (not out or p.loss < out[-1].loss):
            out.append(p)
    return out


def lower_hull(points: Sequence[Point]) -> list[Point]:
    """The envelope: the lower convex hull of the Pareto points in (log FLOPs, loss), sorted by FLOPs.

    A point above the chord between two others is dropped: mixing the two sizes' budgets (or
    interpolating between them) does at least as well, so the hull is the best a practitioner choosing a
    size could do — never better than a run that was measured, and as good as each run on it."""
    hull: list[Point] = []
    for p in pareto(points):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            xa, xb, xp = math.log(a.flops), math.log(b.flops), math.log(p.flops)
            # b is on or above the chord a→p: not on the lower hull
            if (b.loss - a.loss) * (xp - xa) >= (p.loss - a.loss) * (xb - xa):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def frontier_cost(frontier: Sequence[Point], loss: float) -> Match:
    """FLOPs and seconds the from-scratch frontier needs to reach ``loss``.

    Linear in (loss, log FLOPs) between the two Pareto points whose losses bracket ``loss``; wall-clock
    is interpolated in log-seconds at the same position. Never extrapolates: a loss below the best point
    returns that point with ``bound="above"``, a loss above the cheapest point returns it with
    ``bound="below"``.
    """
    pts = pareto(frontier)
    if not pts:
        raise GrowkitError("the frontier has no points: run the from-scratch runs first")
    if loss < pts[-1].loss:
        return Match(pts[-1].flops, pts[-1].time_s, "above")
    if loss > pts[0].loss:
        return Match(pts[0].flops, pts[0].time_s, "below")
    for lo, hi in itertools.pairwise(pts):
        if hi.loss <= loss <= lo.loss:
            alpha = (lo.loss - loss) / (lo.loss - hi.loss)
            return Match(_loglerp(lo.flops, hi.flops, alpha), _loglerp(lo.time_s, hi.time_s, alpha))
    return Match(pts[0].flops, pts[0].time_s)  # a single point equal to the loss


def envelope_cost(runs: Sequence[Point], loss: float) -> Match:
    """`frontier_cost` on the `lower_hull` of ``runs``: what the best from-scratch size needs for ``loss``."""
    return frontier_cost(lower_hull(runs), loss)


@dataclass(frozen=True)
class Speedup:
    """Frontier cost / own cost, in FLOPs and wall-clock. ``bound``: None, ``"lower"`` (the true speedup
    is at least this) or ``"upper"`` (at most this)."""

    flops: float
    wallclock: float
    bound: str | None = None


def ratio(baseline: Match, own: Match) -> Speedup | None:
    """``baseline / own`` for two costs of the same loss, with their bounds combined.

    A baseline cost that is at least its value (``"above"``), or an own cost that is at most its value
    (``"below"``), makes the ratio a lower bound; the opposite ones an upper bound; one of each points
    both ways and gives no figure (None)."""
    sign = {"above": 1, "below": -1, None: 0}
    lower = (sign[baseline.bound] > 0) or (sign[own.bound] < 0)
    upper = (sign[baseline.bound] < 0) or (sign[own.bound] > 0)
    if lower and upper:
        return None
    bound = "lower" if lower else "upper" if upper else None
    return Speedup(baseline.flops / own.flops, baseline.time_s / max(own.time_s, 1e-12), bound)


def speedup_at(frontier: Sequence[Point], run: Point) -> Speedup:
    """Speedup of ``run`` against the frontier at the loss it reached."""
    m = frontier_cost(frontier, run.loss)
    bound = {"above": "lower", "below": "upper"}.get(m.bound or "")
    return Speedup(m.flops / run.flops, m.time_s / max(run.time_s, 1e-12), bound)


@dataclass(frozen=True)
class Headline:
    """A schedule's speedup where it matches the target loss.

    ``status``: ``"interpolated"`` (between two of its budgets), ``"lower bound"`` (its smallest budget
    already beats the target: at least this), or ``"not reached"`` (speedups are None)."""

    status: str
    flops: float | None = None
    time_s: float | None = None
    speedup_flops: float | None = None
    speedup_wallclock: float | None = None
    fraction: float | None = None
    """The interpolated budget (fraction of the full token budget), when known."""


def headline(points: Sequence[Point], target: Point, fractions: Sequence[float] | None = None) -> Headline:
    """Where a schedule, run at several budgets (``points``, one per budget), reaches ``target.loss``.

    ``target`` is the full from-scratch run's end. Interpolates the matching FLOPs (and seconds) in log
    scale between the first budget that reaches the loss and the one before it; no extrapolation.
    ``fractions`` (the budgets, same order as ``points``) gives the matched budget too.
    """
    order = sorted(range(len(points)), key=lambda i: points[i].flops)
    pts = [points[i] for i in order]
    fr = [fractions[i] for i in order] if fractions is not None else None
    for j, p in enumerate(pts):
        if p.loss > target.loss:
            continue
        if j == 0:
            return Headline("lower bound", p.flops, p.time_s, target.flops / p.flops,
                            target.time_s / max(p.time_s, 1e-12), fr[0] if fr else None)
        lo = pts[j - 1]
        alpha = (lo.loss - target.loss) / (lo.loss - p.loss)
        flops, secs = _loglerp(lo.flops, p.flops, alpha), _loglerp(lo.time_s, p.time_s, alpha)
        frac = _loglerp(fr[j - 1], fr[j], alpha) if fr else None
        return Headline("interpolated", flops, secs, target.flops / flops, target.time_s / secs, frac)
    return Headline("not reached")
