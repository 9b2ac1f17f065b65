"""``benchmarks/data_prep.py``: tokenizing a big text file into the token cache, its speed and peak memory;
the README's sentence is the committed JSON's."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "data_prep.py"


def test_small_run_prints_both_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data_prep.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--mb", "0.5", "--out", str(out)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    data = json.loads(out.read_text())
    assert re.fullmatch(r"tokenize_mb_per_s: \d+\.\d\d", lines[-1])
    assert lines[-1] == f"tokenize_mb_per_s: {data['tokenize_mb_per_s']:.2f}"
    assert f"peak_rss_mb: {data['peak_rss_mb']}" in lines
    assert 0.5 <= data["text_mb"] < 0.8 and data["tokens"] > 100_000  # whole plays: up to one play more
    rate, mb, seconds = data["tokenize_mb_per_s"], data["text_mb"], data["seconds"]  # rounded to 0.01, 0.1, 0.01
    assert rate == pytest.approx(mb / seconds, rel=0.05 / mb + 0.005 / seconds, abs=0.005)
    assert data["cores"] >= 1 and data["cpu"] and data["peak_rss_mb"] > 0


def test_readme_sentence_is_the_committed_json() -> None:
    readme_line = runpy.run_path(str(SCRIPT))["readme_line"]
    data = json.loads((ROOT / "docs" / "figures" / "data_prep.json").read_text())
    assert data["text_mb"] >= 500  # the committed figures are the full measurement
    readme = " ".join((ROOT / "README.md").read_text().split())  # the sentence is wrapped there
    assert readme_line(data) in readme
