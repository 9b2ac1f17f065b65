"""End to end: the MICRO preset of ``benchmarks/sparse_pareto.py`` (real training runs of a few steps), its
outputs, the frontier built by the shared code, and the reuse of finished runs."""

from __future__ import annotations

import json
import math
import runpy
import sys
from pathlib import Path

import pytest

from growkit.bench.frontier import Point, lower_hull
from growkit.bench.sparse_pareto import HEADLINE, MICRO, PLOT_FILE, RESULTS_FILE, format_tables, last_line, run_pareto


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    out = tmp_path_factory.mktemp("bench") / "pareto"
    lines: list[str] = []
    return out, run_pareto(out, "micro", log=lines.append), lines


def test_outputs(micro: tuple[Path, dict, list[str]]) -> None:
    out, data, lines = micro
    for name in (RESULTS_FILE, PLOT_FILE):
        assert (out / name).is_file() and (out / name).stat().st_size > 10_000, name
    saved = json.loads((out / RESULTS_FILE).read_text())
    assert saved[HEADLINE] == json.loads(json.dumps(data[HEADLINE]))
    assert lines[-1] == last_line(data) and lines[-1].startswith(f"{HEADLINE}: ")
    assert format_tables(saved) in "\n".join(lines)  # the README's tables come from the JSON alone
    runs = [r for r in saved["runs"] if r["seed"] == 0]
    dense = [r for r in runs if r["kind"] == "dense"]
    # ≥ 3 widths, each at ≥ 3 LRs, every run finite and fully decayed with wsd-d2z
    assert len({r["width"] for r in dense}) == 3
    for w, d in saved["dense"].items():
        assert len(d["lr_sweep"]) >= 3 and d["lr"] == min(d["lr_sweep"], key=lambda t: t[1])[0], w
    assert all(math.isfinite(r["final_val_loss"]) and r["lr_shape"] == "wsd-d2z" for r in saved["runs"])


def test_dense_frontier_is_the_lower_hull_of_every_dense_run(micro: tuple[Path, dict, list[str]]) -> None:
    _, data, _ = micro
    pts = [Point(r["flops"], r["train_time_s"], r["final_val_loss"]) for r in data["runs"]
           if r["kind"] == "dense" and r["seed"] == 0]
    assert [Point(**p) for p in data["dense_frontier"]] == lower_hull(pts)


def test_sparse_sweep_and_pairs(micro: tuple[Path, dict, list[str]]) -> None:
    _, data, _ = micro
    r = data["sparse_lr_rule"]
    assert set(data["sparse"]) == {"static-b1", "dynamic-b1", "static-b16", "dynamic-b16"}
    for name, sw in data["sparse"].items():
        ms = [m for m, _ in sw["tried"]]
        assert len(ms) >= 3 and min(ms) == pytest.approx(1.0) and any(m == pytest.approx(r) for m in ms), name
        assert sw["rule_on_every_param"] is not None
        best = min([v for _, v in sw["tried"]] + [sw["rule_on_every_param"]])
        chosen = [x for x in data["runs"] if x["seed"] == 0 and x["name"].startswith(f"{name}-")
                  and x["final_val_loss"] == best]
        assert chosen, name  # the chosen LR is the lowest loss of the sweep
    blocks = [(p["block"], p["dynamic"]) for p in data["pairs"]]
    assert blocks == [(1, "dynamic-b1"), (1, "dynamic-b1-gradient"), (16, "dynamic-b16"), (16, "dynamic-b16-gradient")]
    for p in data["pairs"]:
        assert p["flops_rel_diff"] <= 0.01 and p["delta"] == pytest.approx(p["loss_dynamic"] - p["loss_static"])
    h = data[HEADLINE]
    assert h["seeds"] == MICRO.seeds and len(h["per_seed"]) == MICRO.seeds
    assert h["status"] in ("interpolated", "upper bound", "not reached")
    seeds = {x["seed"] for x in data["runs"] if x["name"] == data["best_dynamic"] or
             x["name"].startswith(data["best_dynamic"] + "-1x")}
    assert seeds == set(range(MICRO.seeds))


def test_finished_runs_are_reused(micro: tuple[Path, dict, list[str]], monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A second call (through ``benchmarks/sparse_pareto.py --preset micro``) trains nothing."""
    out, data, _ = micro
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "sparse_pareto.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--preset", "micro", "--out", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.strip().splitlines()[-1] == last_line(data)
    again = json.loads((out / RESULTS_FILE).read_text())
    assert again["reused_runs"] == len(again["runs"]) == len(data["runs"])
    assert again[HEADLINE] == json.loads(json.dumps(data[HEADLINE]))
