"""``benchmarks/growth_memory.py``: peak RSS of a run that grows three times vs training its final model from
scratch; the script's tiny smoke run, and the README's figures are the committed JSON's."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "growth_memory.py"


def test_tiny_run_reports_every_growth_and_prints_the_ratio_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "growth_memory.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--tiny", "--steps-per-stage", "2", "--out", str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(out.read_text())
    assert re.fullmatch(r"growth_peak_memory_ratio: \d+\.\d{3}", last)
    assert last.endswith(f"{data['growth_peak_memory_ratio']:.3f}")
    grow, scratch = data["runs"]["grow"], data["runs"]["scratch"]
    phases = [p["phase"] for p in grow["phases"]]
    assert phases == ["imports", "build", "train: initial model", "growth 1", "train: after growth 1", "growth 2",
                      "train: after growth 2", "growth 3", "train: after growth 3"]
    params = [p["params"] for p in grow["phases"] if p["phase"].startswith("growth")]
    assert params == sorted(params) and params[-1] == scratch["phases"][-1]["params"]  # grown to the final model
    peaks = {run: max(p["peak_rss"] for p in data["runs"][run]["phases"]) for run in ("grow", "scratch")}
    assert data["growth_peak_memory_ratio"] == pytest.approx(peaks["grow"] / peaks["scratch"], abs=5e-4)
    assert all(p["peak_rss"] >= p["rss_after"] - 2**20 > 0 for p in grow["phases"])  # RSS read just after the peak


def test_readme_states_the_committed_figures() -> None:
    data = json.loads((ROOT / "docs" / "figures" / "growth_memory.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"`growth_peak_memory_ratio: {data['growth_peak_memory_ratio']:.3f}`" in readme
    assert f"{data['ratio_above_base']:.3f} above the common base" in readme
    mib = {k: f"{data[k] / 2**20:,.0f} MiB" for k in ("peak_rss_grow", "peak_rss_scratch")}
    assert f"{mib['peak_rss_grow']} growing, {mib['peak_rss_scratch']} from scratch" in readme
    final = data["runs"]["grow"]["phases"][-1]["params"]
    assert f"{final:,} parameters" in readme
