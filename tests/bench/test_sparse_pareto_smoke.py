"""End to end: the MICRO preset of ``benchmarks/sparse_pareto.py`` (real training runs of a few steps), its
outputs and its reuse of finished runs."""

from __future__ import annotations

import json
import math
import re
import runpy
import sys
from pathlib import Path

import pytest

from growkit.bench.sparse_pareto import HEADLINE, PLOT_FILE, RESULTS_FILE, run_pareto


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    out = tmp_path_factory.mktemp("bench") / "pareto"
    lines: list[str] = []
    return out, run_pareto(out, "micro", log=lines.append), lines


def test_outputs(micro: tuple[Path, dict, list[str]]) -> None:
    out, data, lines = micro
    for name in (RESULTS_FILE, PLOT_FILE):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert json.loads((out / RESULTS_FILE).read_text())[HEADLINE] == data[HEADLINE]
    assert re.fullmatch(rf"{HEADLINE}: (≤|not reached \(≥)?\d+\.\d{{3}}\)?", lines[-1]), lines[-1]
    assert lines[-1] == f"{HEADLINE}: {data[HEADLINE]['text']}"
    runs = {r["name"]: r for r in data["runs"]}
    assert set(runs) == {"dense-16", "dense-32", "dense-48", "static-b1", "dynamic-b1", "static-b16", "dynamic-b16"}
    assert len({r["tokens"] for r in runs.values()}) == 1  # one token budget
    for name, r in runs.items():
        assert math.isfinite(r["final_val_loss"]), name
        if r["kind"] != "dense":  # the trainer's sparse-aware FLOPs: well below the dense equivalent
            assert r["flops"] < 0.5 * r["flops_dense"], name
            assert r["ratio_to_dense"]["status"] in ("interpolated", "upper bound", "not reached")


def test_finished_runs_are_reused(micro: tuple[Path, dict, list[str]]) -> None:
    out, data, _ = micro
    again = run_pareto(out, "micro", log=lambda _: None)
    assert all(r["reused"] for r in again["runs"])
    assert again[HEADLINE] == data[HEADLINE]
    # resolved precision and machine recorded (tests see a CPU without native bf16: auto is float32)
    assert data["hardware"]["cpu_capability"] and data["preset"]["dtype"] == "auto"
    assert {r["resolved"]["dtype"] for r in data["runs"]} == {"float32"}
    assert {r["resolved"]["threads"] for r in data["runs"]} == {1}


def test_script_prints_the_headline_last(micro: tuple[Path, dict, list[str]], monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/sparse_pareto.py --preset micro --out DIR`` (every run reused from the fixture's DIR)."""
    out, data, _ = micro
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "sparse_pareto.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--preset", "micro", "--out", str(out)])
    runpy.run_path(str(script), run_name="__main__")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"{HEADLINE}: {data[HEADLINE]['text']}"
