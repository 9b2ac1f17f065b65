"""The math and the run plan of ``benchmarks/sparse_pareto.py`` on synthetic points (no training)."""

from __future__ import annotations

import math

import pytest

from growkit.bench.frontier import Point
from growkit.bench.sparse_pareto import (
    FULL,
    QUICK,
    Ratio,
    best_ratio,
    flops_to_dense_loss,
    pair,
    run_config,
    run_pareto,
    sparse_flops,
    variants,
)
from growkit.errors import GrowkitError

DENSE = [Point(1e9, 0.0, 3.0), Point(1e10, 0.0, 2.0), Point(2e10, 0.0, 2.2)]  # the last is dominated


def test_interpolates_in_log_flops() -> None:
    r = flops_to_dense_loss(DENSE, Point(2e9, 0.0, 2.5))  # halfway in loss: the geometric mean of the FLOPs
    assert r.status == "interpolated"
    assert r.dense_flops == pytest.approx(math.sqrt(1e9 * 1e10))
    assert r.value == pytest.approx(2e9 / math.sqrt(1e19))
    assert str(r) == f"{r.value:.3f}"


def test_dominated_dense_point_is_ignored() -> None:
    # 2.1 lies between the dominated point (2e10, 2.2) and (1e10, 2.0) in loss, but only 1e9 → 1e10 counts
    r = flops_to_dense_loss(DENSE, Point(1e9, 0.0, 2.1))
    assert r.dense_flops == pytest.approx(10 ** (9 + 0.9))


def test_better_than_every_dense_run_is_an_upper_bound() -> None:
    r = flops_to_dense_loss(DENSE, Point(3e9, 0.0, 1.5))
    assert (r.status, r.dense_flops, r.value) == ("upper bound", 1e10, pytest.approx(0.3))
    assert str(r) == "≤0.300"


def test_worse_than_every_dense_run_is_not_reached() -> None:
    r = flops_to_dense_loss(DENSE, Point(3e9, 0.0, 3.5))
    assert (r.status, r.dense_flops, r.value) == ("not reached", 1e9, pytest.approx(3.0))
    assert str(r) == "not reached (≥3.000)"


def test_best_prefers_a_reached_ratio() -> None:
    ratios = {"dynamic-b1": Ratio(0.8, "interpolated", 1.0), "dynamic-b16": Ratio(0.5, "not reached", 1.0),
              "dynamic-b4": Ratio(0.9, "upper bound", 1.0)}
    assert best_ratio(ratios)[0] == "dynamic-b1"
    with pytest.raises(GrowkitError, match="no dynamic"):
        best_ratio({})


def test_pair_needs_equal_flops() -> None:
    p = pair(16, Point(1e9, 0.0, 2.5), Point(1e9, 0.0, 2.4))
    assert p.delta == pytest.approx(-0.1)
    with pytest.raises(GrowkitError, match="block 16 differ in FLOPs"):
        pair(16, Point(1e9, 0.0, 2.5), Point(1.2e9, 0.0, 2.4))


@pytest.mark.parametrize("preset", [QUICK, FULL], ids=lambda p: p.name)
def test_runs_share_everything_but_model_and_sparsity(preset) -> None:
    cfgs = {v.name: run_config(preset, v, f"runs/{v.name}") for v in variants(preset)}
    assert sorted(cfgs) == sorted(["dense-" + str(w) for w in preset.dense_widths]
                                  + ["static-b1", "dynamic-b1", "static-b16", "dynamic-b16"])
    ref = cfgs["dense-" + str(preset.dense_widths[0])]
    for name, c in cfgs.items():
        assert c["train"] == ref["train"] and c["data"] == ref["data"], name
        assert c["train"]["max_tokens"] == preset.tokens
        assert c["data"]["tokenizer"] == "byte"
        if name.startswith("dense"):
            assert "sparsity" not in c
        else:
            s = c["sparsity"]
            assert s["density"] == 0.1 and s["static"] == name.startswith("static") and s["sparse_lr_rule"]
            assert s["block"] == int(name.rsplit("b", 1)[1])


@pytest.mark.parametrize("preset", [QUICK, FULL], ids=lambda p: p.name)
def test_sparse_flops_lie_inside_the_dense_range(preset) -> None:
    """The sparse model is the larger one, but its sparse-aware FLOPs are within the dense models' range."""
    fl = {v.name: sparse_flops(run_config(preset, v, "r"), 256) for v in variants(preset)}
    dense = sorted(f for n, f in fl.items() if n.startswith("dense"))
    for n in ("static-b1", "dynamic-b1", "static-b16", "dynamic-b16"):
        assert dense[0] < fl[n] < dense[-1], n
    assert fl["static-b1"] == fl["dynamic-b1"]


def test_unknown_override_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(GrowkitError, match=r"unknown preset field.*update_evry"):
        run_pareto(tmp_path, "micro", update_evry=5)
    assert not any(tmp_path.iterdir())  # nothing was run
