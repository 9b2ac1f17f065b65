"""``benchmarks/precision.py``: float32 vs bf16 throughput and what ``auto`` picks; the README's table is
the committed JSON's."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "precision.py"


def test_tiny_run_prints_the_ratio_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "precision.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--tiny", "--rounds", "2", "--out", str(out)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(out.read_text())
    assert re.fullmatch(r"auto_vs_best_ratio: \d\.\d{3}", last) and last.endswith(f"{data['auto_vs_best_ratio']:.3f}")
    (size,) = data["sizes"]
    assert size["auto"]["dtype"] == "float32"  # tests see a CPU without native bf16 (conftest)
    assert len(size["bf16_over_fp32_rounds"]) == 2 and all(v > 0 for v in size["tokens_per_s"].values())
    best = max(size["tokens_per_s"].values())
    assert data["auto_vs_best_ratio"] == pytest.approx(size["tokens_per_s"]["float32"] / best)
    assert data["hardware"]["cpu_capability"] and data["threads"] >= 1


def test_readme_table_is_the_committed_json() -> None:
    table = runpy.run_path(str(SCRIPT))["table"]
    data = json.loads((ROOT / "docs" / "figures" / "precision.json").read_text())
    readme = (ROOT / "README.md").read_text()
    rows = table(data["sizes"])
    assert "\n".join(rows) in readme
    assert f"`auto_vs_best_ratio: {data['auto_vs_best_ratio']:.3f}`" in readme
