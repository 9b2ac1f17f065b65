"""`growkit bench envelope`: the ladder, the LR rule's pieces, the follow schedule, speedups with bounds,
and the micro preset end to end (the real trainer, the real corpus)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from growkit.bench.envelope import (
    MICRO,
    PLOT_FILES,
    QUICK,
    RESULTS_FILE,
    VARIANTS,
    Bench,
    Size,
    _compute_for,
    follow_schedule,
    format_tables,
    half,
    last_lines,
    lr_at,
    lr_by_width,
    run_envelope,
    shape,
    speedup_of,
    with_lr_scales,
)
from growkit.bench.frontier import Match, Point
from growkit.bench.schedules import Schedule
from growkit.bench.speedup import RunResult
from growkit.errors import GrowkitError


def test_ladder_shapes_keep_head_width_16_and_swiglu_ffn() -> None:
    s = shape(4, 64)
    assert (s.n_heads, s.d_ff) == (4, 176)  # 8/3·64 = 170.7 → next multiple of 8
    assert shape(3, 48).d_ff == 128
    assert half(shape(4, 64)) == shape(2, 32)
    assert half(shape(3, 48)) == shape(1, 16)  # widths snap down to a multiple of the head width
    assert half(shape(1, 16)) == shape(1, 16)
    with pytest.raises(GrowkitError, match="not a multiple of the head width 16"):
        shape(2, 40)


def test_lr_at_interpolates_in_log_log_and_holds_at_the_ends() -> None:
    tuned = {32: 8e-3, 128: 2e-3}
    assert lr_at(tuned, 64) == pytest.approx(4e-3)  # halfway in log d → geometric mean
    assert lr_at(tuned, 16) == 8e-3
    assert lr_at(tuned, 256) == 2e-3
    assert lr_by_width([(16, 1e-2), (16, 4e-2), (32, 5e-3)]) == {16: pytest.approx(2e-2), 32: 5e-3}


def test_lr_scales_follow_the_tuned_lr_of_each_width() -> None:
    s = Schedule("x", "", shape(1, 16).model("llama"), [
        {"at_fraction": 0.2, "grow": {"d_ff": 64}}, {"at_fraction": 0.5, "grow": {"d_model": 64, "n_heads": 4}}])
    from growkit.bench.envelope import _base

    out, pre = with_lr_scales(s, {16: 1e-2, 64: 5e-3}, _base(MICRO))
    assert pre.lr == 1e-2
    assert "lr_scale" not in out.growth[0]
    assert out.growth[1]["lr_scale"] == pytest.approx(0.5)


def test_follow_schedule_grows_where_the_fitted_optimum_crosses_the_middle_of_two_sizes(tmp_path: Path) -> None:
    sizes = [Size(shape(1, 16), 1_000, 1e4), Size(shape(2, 32), 4_000, 3e4), Size(shape(3, 48), 16_000, 1e5)]
    bench = Bench(replace(MICRO, flops=1e9), tmp_path, 259, 10**6)
    n_opt = math.sqrt  # N*(c) = √c, so N* passes √(Na·Nb) at c = Na·Nb
    assert _compute_for(n_opt, 2_000.0, 1e9) == pytest.approx(4e6, rel=1e-6)
    s = follow_schedule(bench, sizes, sizes[-1], n_opt, budget=0.1)  # budget 1e8 FLOPs
    assert s.model["d_model"] == 16
    assert [st["at_fraction"] for st in s.growth] == pytest.approx([4e6 / 1e8, 6.4e7 / 1e8], rel=1e-3)
    assert [st["grow"]["d_model"] for st in s.growth] == [32, 48]
    assert all(st["method"] == "masked" for st in s.growth)
    # at a budget too small to reach the last crossing, that stage is dropped
    assert len(follow_schedule(bench, sizes, sizes[-1], n_opt, budget=0.064).growth) == 1


def _runs(*pts: tuple[float, float]) -> list[RunResult]:
    return [RunResult(f"r{i}", "x", 1.0, [Point(f, f / 1e9, loss)], 1, 1, None) for i, (f, loss) in enumerate(pts)]


def test_speedup_interpolates_between_own_budgets_and_bounds_outside() -> None:
    def baseline(loss: float) -> Match:
        return Match(8e12, 8000.0)

    s = speedup_of(_runs((1e12, 3.5), (4e12, 3.0)), baseline, 3.25)  # halfway: √(1e12·4e12) = 2e12
    assert (s["flops"], s["bound"]) == (pytest.approx(4.0), None)
    s = speedup_of(_runs((1e12, 3.1), (4e12, 3.0)), baseline, 3.2)  # the smallest budget already beats it
    assert (s["flops"], s["bound"]) == (pytest.approx(8.0), "lower")
    s = speedup_of(_runs((1e12, 3.5), (4e12, 3.3)), baseline, 3.2)  # never reached: at most baseline/largest
    assert (s["flops"], s["bound"]) == (pytest.approx(2.0), "upper")


def test_micro_end_to_end_writes_results_figures_and_reuses_runs(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = run_envelope(tmp_path, replace(MICRO, jobs=2))  # independent runs train two at a time
    lines = capsys.readouterr().out.strip().splitlines()
    assert [x.split(":")[0] for x in lines[-3:]] == ["envelope_speedup_flops", "envelope_speedup_wallclock",
                                                     "overtrained_speedup_flops"]
    assert lines[-3:] == last_lines(data)
    saved = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert saved["summary"] == json.loads(json.dumps(data["summary"]))
    assert {Path(x).name for x in saved["plots"]} <= set(PLOT_FILES) and len(saved["plots"]) >= 3
    assert all(Path(x).stat().st_size > 10_000 for x in saved["plots"])
    # the LR rule ran: ≥ 3 values per size, the winner is the lowest loss, the grid used it
    for size, sw in saved["lr_sweeps"].items():
        assert len(sw["tried"]) >= 3
        assert sw["best"] == min(sw["tried"], key=lambda t: t[1])[0]
        assert next(s for s in saved["ladder"] if s["shape"] == size)["lr"] == sw["best"]
    # the LR-shape rule ran: every shape on one size, the lowest loss won, and every run used it
    sw = saved["lr_shape_sweep"]
    assert sorted({n for n, _, _ in sw["tried"]}) == sorted(MICRO.lr_shapes)
    assert len(sw["tried"]) == len(MICRO.lr_shapes) * len(MICRO.shape_lr_factors)
    assert sw["best"] == saved["lr_shape"] == min(sw["tried"], key=lambda t: t[2])[0]
    own_shape = {r["lr_shape"] for r in saved["runs"] if not r["name"].startswith("shape-")
                 and not (r["schedule"] in VARIANTS and VARIANTS[r["schedule"]].train)}  # a variant's own LR shape
    assert own_shape == {sw["best"]}
    shape_runs = {r["name"]: r["final_val_loss"] for r in saved["runs"] if r["name"].startswith("shape-")}
    assert all(r["name"].startswith(f"shape-{r['lr_shape']}-") for r in saved["runs"] if r["name"] in shape_runs)
    assert sorted(shape_runs.values()) == sorted(v for _, _, v in sw["tried"])
    # every from-scratch run is on or above the envelope
    env = saved["envelope"]
    for r in saved["runs"]:
        if r["schedule"] == "scratch":
            assert r["final_val_loss"] >= min(p["loss"] for p in env if p["flops"] <= r["flops"] * 1.0001) - 1e-12
    assert saved["regimes"]["compute-optimal"]["target"]["seeds"] and len(
        saved["regimes"]["compute-optimal"]["target"]["seeds"]) == MICRO.seeds
    # every run is reused the second time, and the figures are the same
    again = run_envelope(tmp_path, MICRO, log=lambda _: None)
    assert again["reused_runs"] == len(again["runs"]) == len(data["runs"])
    assert again["summary"] == data["summary"]


def test_bad_arguments_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="unknown regime 'fast'"):
        run_envelope(tmp_path, MICRO, regime="fast")
    with pytest.raises(GrowkitError, match="unknown schedule"):
        run_envelope(tmp_path, MICRO, names=["grow-big"])


@pytest.mark.slow
def test_quick_preset_end_to_end_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    proc = subprocess.run([sys.executable, "-m", "growkit", "bench", "envelope", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-3:]
    assert last[0].startswith("envelope_speedup_flops: ")
    data = json.loads((out / RESULTS_FILE).read_text())
    assert data["preset"]["name"] == QUICK.name
    assert len(data["ladder"]) == len(QUICK.ladder)
    assert data["fit"] is not None


def test_best_schedule_prefers_reaching_the_target_then_the_lowest_loss() -> None:
    from growkit.bench.envelope import ScheduleResult, best_schedule

    def sr(name: str, flops: float | None, bound: str | None, final: float) -> ScheduleResult:
        r = ScheduleResult(name, "", {0: _runs((1e12, final + 0.1), (2e12, final))})
        r.speedups[0] = {"flops": flops, "wallclock": flops, "bound": bound}
        return r

    never = {"a": sr("a", 0.95, "upper", 1.90), "b": sr("b", 0.90, "upper", 1.85)}
    assert best_schedule(never) == "b"  # no schedule reaches it: the lowest final loss, not the largest bound
    both = {**never, "c": sr("c", 1.2, None, 1.80), "d": sr("d", 1.1, "lower", 1.70)}
    assert best_schedule(both) == "c"
    assert best_schedule({"target-wsd": sr("target-wsd", 3.0, None, 1.5), **never}) == "b"  # a control never wins


ROOT = Path(__file__).parents[2]
COMMITTED = ROOT / "docs" / "figures" / "envelope"


def test_readme_tables_are_the_committed_full_run() -> None:
    data = json.loads((COMMITTED / RESULTS_FILE).read_text())
    assert data["preset"]["name"] == "full"
    readme = (ROOT / "README.md").read_text()
    assert format_tables(data) in readme
    for line in last_lines(data):
        assert f"`{line}`" in readme
    for plot in data["plots"]:
        name = Path(plot).name
        assert (COMMITTED / name).stat().st_size > 10_000
        assert f"docs/figures/envelope/{name}" in readme
