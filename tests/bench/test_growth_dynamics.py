"""``benchmarks/growth_dynamics.py``: Adam's update size across a growth; the README quotes the committed
JSON."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "growth_dynamics.py"


def test_tiny_run_prints_the_worst_ratio_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "growth_dynamics.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--steps", "12", "--window", "4", "--ramp", "2", "--batch", "2",
                                      "--seq", "16", "--out", str(out)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(out.read_text())
    assert re.fullmatch(r"update_continuity_worst: \d+\.\d{3}", last)
    assert last.endswith(f"{data['update_continuity_worst']:.3f}")
    carried = [r["ratio"] for r in data["results"] if r["rule"] == "gradients"]
    assert data["update_continuity_worst"] in carried and len(data["results"]) == 6
    assert all(r["by_role"] and r["vs_no_growth_by_role"] for r in data["results"])


def test_readme_quotes_the_committed_json() -> None:
    table = runpy.run_path(str(SCRIPT))["table"]
    data = json.loads((ROOT / "docs" / "figures" / "growth_dynamics.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert "\n".join(table(data)) in readme
    assert f"`update_continuity_worst: {data['update_continuity_worst']:.3f}`" in readme
    by = {(r["growth"].split()[0], r["rule"]): r["vs_no_growth_by_role"] for r in data["results"]}
    for quoted in (by["split", "weights"]["mlp.down.weight"], by["split", "weights"]["mlp.up.weight"],
                   by["zero", "weights"]["final_norm.weight"], by["masked", "gradients"]["tok_emb.weight"],
                   by["masked", "gradients"]["final_norm.weight"]):
        assert f"{quoted:.2f}×" in readme, quoted
    for growth in ("split", "zero"):  # "every role of split and zero stays within 6%"
        assert all(0.94 <= v <= 1.06 for v in by[growth, "gradients"].values())
