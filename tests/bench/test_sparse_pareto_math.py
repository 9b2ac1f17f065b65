"""The math, the run plan and the input checks of ``benchmarks/sparse_pareto.py`` (no training)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from growkit.bench.frontier import Point, envelope_cost, lower_hull
from growkit.bench.runner import Bench
from growkit.bench.sparse_pareto import (
    FULL,
    MICRO,
    QUICK,
    Ratio,
    SparseLR,
    base_preset,
    best_ratio,
    bracket,
    dense_req,
    flops_to_dense_loss,
    pair,
    rule_factor,
    run_pareto,
    sparse_req,
)
from growkit.errors import GrowkitError

# the third point is dominated; the fourth lies above the chord of its neighbours (off the hull)
DENSE = [Point(1e9, 0.0, 3.0), Point(1e10, 0.0, 2.0), Point(2e10, 0.0, 2.2), Point(4e9, 0.0, 2.9)]


def test_ratio_is_the_shared_envelope_cost() -> None:
    """The dense frontier is `frontier.lower_hull`, its cost `frontier.envelope_cost`: one implementation."""
    assert lower_hull(DENSE) == [DENSE[0], DENSE[1]]
    for loss in (2.5, 2.1, 1.5, 3.5):
        m = envelope_cost(DENSE, loss)
        r = flops_to_dense_loss(DENSE, Point(2e9, 0.0, loss))
        assert r.dense_flops == m.flops and r.value == pytest.approx(2e9 / m.flops)


def test_interpolates_in_log_flops() -> None:
    r = flops_to_dense_loss(DENSE, Point(2e9, 0.0, 2.5))  # halfway in loss: the geometric mean of the FLOPs
    assert r.status == "interpolated"
    assert r.dense_flops == pytest.approx(math.sqrt(1e9 * 1e10))
    assert str(r) == f"{r.value:.3f}"


def test_bounds_outside_the_frontier_never_extrapolate() -> None:
    r = flops_to_dense_loss(DENSE, Point(3e9, 0.0, 1.5))
    assert (r.status, r.dense_flops, r.value) == ("upper bound", 1e10, pytest.approx(0.3))
    assert str(r) == "≤0.300"
    r = flops_to_dense_loss(DENSE, Point(3e9, 0.0, 3.5))
    assert (r.status, r.dense_flops, r.value) == ("not reached", 1e9, pytest.approx(3.0))
    assert str(r) == "not reached (≥3.000)"


def test_bracket_names_the_points_that_decide_a_ratio() -> None:
    hull = lower_hull(DENSE)
    assert bracket(hull, 2.5) == hull
    assert bracket(hull, 1.5) == [hull[-1]] and bracket(hull, 3.5) == [hull[0]]


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
def test_runs_share_everything_but_model_lr_and_sparsity(preset, tmp_path: Path) -> None:
    bench = Bench(base_preset(preset), preset.flops, tmp_path, 259, 10**6, lr_shape=preset.lr_shape)
    r = rule_factor(preset.density)
    assert r == pytest.approx(6.40, abs=0.01)
    dense = bench.spec(dense_req(bench, preset, preset.dense_widths[0], preset.sparse_level, 1e-3)).config
    runs = {"rule": SparseLR(1e-3, r), "scaled": SparseLR(1e-3, math.sqrt(r)), "every": SparseLR(1e-3, r, True),
            "plain": SparseLR(1e-3, 1.0)}
    cfgs = {(n, kind, b): bench.spec(sparse_req(bench, preset, kind, b, slr)).config
            for n, slr in runs.items() for kind in ("static", "dynamic") for b in preset.blocks}
    for (n, kind, b), c in cfgs.items():
        assert c["data"] == dense["data"] and c["data"]["tokenizer"] == "byte"
        assert {k: v for k, v in c["train"].items() if k != "max_flops"} == \
            {k: v for k, v in dense["train"].items() if k != "max_flops"}
        assert c["train"]["decay"] == "wsd" and c["train"]["min_lr"] == 0.0  # wsd-d2z for every run
        s = c["sparsity"]
        assert (s["density"], s["block"], s["static"]) == (0.1, b, kind == "static")
        assert ("n_updates" in s) == (kind == "dynamic")
        rule = (s.get("sparse_lr_rule", False), s.get("lr_rule_scope"), s.get("sparse_lr_scale", 1.0))
        assert rule == {"rule": (True, "sparse", 1.0), "every": (True, "all", 1.0), "plain": (False, None, 1.0),
                        "scaled": (False, None, pytest.approx(math.sqrt(r)))}[n]
    # static and dynamic at one block: the same budget and FLOPs per step
    for b in preset.blocks:
        st = bench.spec(sparse_req(bench, preset, "static", b, runs["rule"]))
        dy = bench.spec(sparse_req(bench, preset, "dynamic", b, runs["rule"]))
        assert st.plan == dy.plan and st.config["train"]["max_flops"] == preset.sparse_level * preset.flops


def test_bad_input_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match=r"unknown preset field.*update_evry"):
        run_pareto(tmp_path, "micro", update_evry=5)
    with pytest.raises(GrowkitError, match=r"unknown preset 'huge'"):
        run_pareto(tmp_path, "huge")
    with pytest.raises(GrowkitError, match=r"unknown knob\(s\) faster"):
        run_pareto(tmp_path, "micro", knobs=("faster",))
    with pytest.raises(GrowkitError, match=r"≥ 3 widths and ≥ 3 levels"):
        run_pareto(tmp_path, replace(MICRO, dense_widths=(16, 32)))
    with pytest.raises(GrowkitError, match=r"block 16 does not tile the sparse width 40"):
        run_pareto(tmp_path, "micro", sparse_width=40)
    with pytest.raises(GrowkitError, match=r"unknown LR shape 'flat'"):
        run_pareto(tmp_path, "micro", lr_shape="flat")
    assert not any(tmp_path.iterdir())  # nothing was run


ROOT = Path(__file__).parents[2]
COMMITTED = ROOT / "docs" / "figures" / "sparse_pareto" / "results.json"


def test_readme_sparse_tables_are_the_committed_full_run() -> None:
    import json

    from growkit.bench.sparse_pareto import format_tables, last_line

    data = json.loads(COMMITTED.read_text())
    assert data["preset"]["name"] == "full"
    readme = (ROOT / "README.md").read_text()
    assert format_tables(data) in readme
    assert f"`{last_line(data)}`" in readme
    assert (COMMITTED.parent / "loss_vs_flops.png").stat().st_size > 10_000
