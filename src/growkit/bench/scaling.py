"""The loss law of a model ladder: L(N, D) = E + A / N^α + B / D^β, fitted as Hoffmann et al. (2022) do
in their approach 3, and the compute-optimal size it implies.

``N`` is the non-embedding parameter count and ``D`` the training tokens of a run with its LR fully decayed
at D. The fit minimises the Huber loss (δ = 10⁻³) of the log residuals

    r = LSE(a − α·log N, b − β·log D, e) − log L,     A = eᵃ, B = eᵇ, E = eᵉ

with L-BFGS, started from the best points of a grid over (a, b, e, α, β), so it finds the same minimum
whatever the scale of the losses. `compute_optimal` then minimises L(N, C / f(N)) over N for a budget C,
where f(N) is the training FLOPs per token of the ladder's model of size N (`flops_per_token_curve`):
N*(C), D*(C) = C / f(N*) and tokens per parameter D*/N*.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from growkit.errors import GrowkitError

#: Hoffmann et al.'s grid of starting points.
_GRID = {"a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
         "e": (-1.0, -0.5, 0.0, 0.5, 1.0), "alpha": (0.0, 0.5, 1.0, 1.5, 2.0), "beta": (0.0, 0.5, 1.0, 1.5, 2.0)}
HUBER_DELTA = 1e-3


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def predict(self, n: float, d: float) -> float:
        return self.E + self.A / n ** self.alpha + self.B / d ** self.beta

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Fit:
    """A fitted law, its objective and, per run, (N, D, measured loss, predicted loss)."""

    law: LossLaw
    objective: float
    points: list[tuple[float, float, float, float]]

    @property
    def residuals(self) -> list[float]:
        """Relative residuals (predicted − measured) / measured, one per run."""
        return [(pred - loss) / loss for _, _, loss, pred in self.points]

    def to_dict(self) -> dict[str, object]:
        res = self.residuals
        return {"law": self.law.to_dict(), "objective": self.objective,
                "rms_relative_residual": math.sqrt(sum(r * r for r in res) / len(res)),
                "max_abs_relative_residual": max(abs(r) for r in res),
                "runs": [{"N": n, "D": d, "loss": loss, "predicted": pred} for n, d, loss, pred in self.points]}


def fit_loss_law(runs: Sequence[tuple[float, float, float]], starts: int = 16, max_iter: int = 400) -> Fit:
    """Fit L(N, D) to ``runs``, each ``(N non-embedding params, D tokens, final loss)``; see the module doc.

    Needs at least 5 runs over at least 2 sizes and 2 token counts (5 parameters)."""
    import torch

    if len(runs) < 5 or len({r[0] for r in runs}) < 2 or len({r[1] for r in runs}) < 2:
        raise GrowkitError(f"the L(N, D) fit needs >= 5 runs over >= 2 sizes and >= 2 token counts, got "
                           f"{len(runs)}: run more of the ladder first")
    if any(min(r) <= 0 for r in runs):
        raise GrowkitError("the L(N, D) fit needs positive N, D and losses")
    t = torch.tensor(runs, dtype=torch.float64)
    log_n, log_d, log_l = t[:, 0].log(), t[:, 1].log(), t[:, 2].log()

    def objective(p: torch.Tensor) -> torch.Tensor:  # p: (..., 5) = a, b, e, alpha, beta
        a, b, e, al, be = (p[..., i : i + 1] for i in range(5))
        pred = torch.logsumexp(torch.stack([a - al * log_n, b - be * log_d, e.expand_as(a - al * log_n)]), 0)
        return torch.nn.functional.huber_loss(pred, log_l.expand_as(pred), delta=HUBER_DELTA,
                                              reduction="none").sum(-1)

    grid = torch.tensor(list(itertools.product(*_GRID.values())), dtype=torch.float64)
    with torch.no_grad():
        order = objective(grid).argsort()[:starts]
    best: tuple[float, torch.Tensor] | None = None
    for start in grid[order]:
        p = start.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([p], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
                                line_search_fn="strong_wolfe")

        def closure(p: torch.Tensor = p, opt: torch.optim.LBFGS = opt) -> torch.Tensor:
            opt.zero_grad()
            loss = objective(p)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            val = float(objective(p))
        if math.isfinite(val) and (best is None or val < best[0]):
            best = (val, p.detach().clone())
    if best is None:
        raise GrowkitError("the L(N, D) fit did not converge from any start: are the losses finite?")
    a, b, e, al, be = (float(x) for x in best[1])
    law = LossLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=al, beta=be)
    return Fit(law, best[0], [(n, d, loss, law.predict(n, d)) for n, d, loss in runs])


def flops_per_token_curve(sizes: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """f(N): training FLOPs per token of the ladder's model with N non-embedding parameters, from
    ``(N, FLOPs per token)`` of the ladder's sizes — piecewise linear in log-log, continued with the end
    segments' slopes (FLOPs per token are ≈ 6N plus attention and embedding terms, so close to a power)."""
    pts = sorted(sizes)
    if len(pts) < 2:
        raise GrowkitError("flops_per_token_curve needs >= 2 sizes")
    xs = [math.log(n) for n, _ in pts]
    ys = [math.log(f) for _, f in pts]

    def f(n: float) -> float:
        x = math.log(n)
        i = 0 if x <= xs[1] else len(xs) - 2 if x >= xs[-2] else max(j for j in range(len(xs) - 1) if xs[j] <= x)
        slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
        return math.exp(ys[i] + slope * (x - xs[i]))

    return f


@dataclass(frozen=True)
class Optimum:
    """The compute-optimal point of a law at budget C."""

    flops: float
    params: float
    tokens: float
    loss: float

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


def compute_optimal(law: LossLaw, flops: float, flops_per_token: Callable[[float], float],
                    n_range: tuple[float, float] = (1e3, 1e10)) -> Optimum:
    """N*(C), D*(C): the size minimising L(N, C / f(N)) (golden-section search in log N after a grid)."""
    lo, hi = (math.log(x) for x in n_range)

    def loss(x: float) -> float:
        n = math.exp(x)
        return law.predict(n, flops / flops_per_token(n))

    grid = [lo + (hi - lo) * i / 400 for i in range(401)]
    k = min(range(len(grid)), key=lambda i: loss(grid[i]))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        c, d = b - g * (b - a), a + g * (b - a)
        if loss(c) < loss(d):
            b = d
        else:
            a = c
    x = (a + b) / 2
    n = math.exp(x)
    return Optimum(flops, n, flops / flops_per_token(n), loss(x))
