"""``benchmarks/carry_effect.py``: the split and zero schedules with moments carried like the gradients vs
like the weights; the README quotes the committed JSON."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "carry_effect.py"


def test_micro_run_prints_the_delta_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "carry_effect.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--preset", "micro", "--schedules", "split",
                                      "--runs", str(tmp_path / "runs"), "--out", str(out)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(out.read_text())
    assert re.fullmatch(r"carry_effect_loss_delta: [+-]\d+\.\d{4}", last)
    (gradients, weights) = data["results"]
    assert (gradients["rule"], weights["rule"]) == ("gradients", "weights")
    assert data["deltas"]["split"] == weights["val_loss"] - gradients["val_loss"] != 0  # the rule matters


def test_readme_quotes_the_committed_json() -> None:
    data = json.loads((ROOT / "docs" / "figures" / "carry_effect.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"`carry_effect_loss_delta: {data['carry_effect_loss_delta']:+.4f}`" in readme
    for r in data["results"]:
        assert f"{r['val_loss']:.4f}" in readme, r


def test_readme_quotes_the_envelope_runs() -> None:
    data = json.loads((ROOT / "docs" / "figures" / "carry_effect_envelope.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"`carry_effect_loss_delta: {data['carry_effect_loss_delta']:+.4f}`" in readme
    for r in data["envelope_runs"]:
        assert f"{r['run']} {r['gradients']:.4f} like the gradients, {r['weights']:.4f} like the weights" in readme
