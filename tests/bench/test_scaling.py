"""The L(N, D) fit of `growkit.bench.scaling` recovers known parameters, and its compute optimum is right."""

from __future__ import annotations

import math

import pytest

from growkit.bench.scaling import LossLaw, compute_optimal, fit_loss_law, flops_per_token_curve
from growkit.errors import GrowkitError

TRUE = LossLaw(E=1.1, A=30.0, B=400.0, alpha=0.35, beta=0.4)


def _ladder(law: LossLaw, noise: float = 0.0) -> list[tuple[float, float, float]]:
    """5 sizes × 4 token counts, like the envelope benchmark's ladder; multiplicative noise, deterministic."""
    runs = []
    for i, n in enumerate((2.5e4, 8e4, 2e5, 5.5e5, 1.2e6)):
        for j, d in enumerate((2e6, 4e6, 8e6, 1.6e7)):
            wiggle = noise * math.sin(7.0 * i + 3.0 * j + 1.0)
            runs.append((n, d, law.predict(n, d) * (1 + wiggle)))
    return runs


def test_fit_recovers_known_parameters() -> None:
    fit = fit_loss_law(_ladder(TRUE), starts=8)
    got = fit.law
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(got, name) == pytest.approx(getattr(TRUE, name), rel=1e-3), name
    assert max(abs(r) for r in fit.residuals) < 1e-6


def test_fit_with_noise_stays_close_and_reports_residuals() -> None:
    fit = fit_loss_law(_ladder(TRUE, noise=0.003), starts=8)
    d = fit.to_dict()
    assert 0.001 < d["rms_relative_residual"] < 0.004
    assert len(d["runs"]) == 20
    # the fitted law predicts the compute optimum of the true one to within a few percent
    f = flops_per_token_curve([(n, 6 * n + 4e4) for n in (2.5e4, 1.2e6)])
    true_opt, fit_opt = compute_optimal(TRUE, 4e12, f), compute_optimal(fit.law, 4e12, f)
    assert fit_opt.loss == pytest.approx(true_opt.loss, rel=0.01)


def test_compute_optimal_matches_the_closed_form() -> None:
    # with f(N) = 6N the optimum of E + A/N^a + B/D^b at C is N* = G (C/6)^(b/(a+b)), G = (aA/(bB))^(1/(a+b))
    law, c = LossLaw(E=1.0, A=400.0, B=410.0, alpha=0.34, beta=0.28), 1e15
    opt = compute_optimal(law, c, lambda n: 6 * n)
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    assert opt.params == pytest.approx(g * (c / 6) ** (law.beta / (law.alpha + law.beta)), rel=1e-6)
    assert opt.tokens == pytest.approx(c / (6 * opt.params))
    assert opt.tokens_per_param == pytest.approx(opt.tokens / opt.params)


def test_flops_per_token_curve_is_exact_on_a_power_and_continues_the_ends() -> None:
    f = flops_per_token_curve([(1e4, 6e4), (1e5, 6e5), (1e6, 6e6)])
    for n in (3e3, 1e4, 3.3e4, 7e5, 5e6):
        assert f(n) == pytest.approx(6 * n)
    with pytest.raises(GrowkitError, match=">= 2 sizes"):
        flops_per_token_curve([(1e4, 6e4)])


def test_fit_refuses_too_few_runs() -> None:
    with pytest.raises(GrowkitError, match=">= 5 runs"):
        fit_loss_law([(1e4, 1e6, 3.0)] * 4)
