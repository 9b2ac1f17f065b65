"""``benchmarks/sparse_kernels.py --quick`` and ``benchmarks/sparse_train_speed.py`` at a tiny size: they run,
check their layouts against dense, write their JSON and print their headline last."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    path = ROOT / "benchmarks" / script
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    monkeypatch.syspath_prepend(str(path.parent))
    runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_sparse_kernels_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "k.json"
    last = run("sparse_kernels.py", ["--quick", "--tokens", "256", "--out", str(out)], monkeypatch, capsys)
    data = json.loads(out.read_text())
    assert re.fullmatch(r"sparse_linear_speedup_90: \d+\.\d{3}", last)
    assert float(last.split()[-1]) == pytest.approx(data["sparse_linear_speedup_90"], abs=5e-4)
    assert [r["layout"] for r in data["rows"]] == ["fanin-b16", "fanin-b16"]
    assert all(r["prune_regrow"] and r["max_rel_err"] < 1e-5 and r["density"] >= 0.095 for r in data["rows"])
    assert data["threads"] == 1 and data["cpu"] and data["headline"]["dtype"] == "fp32"
    assert all(r[f"sparse_{op}_ms"] > 0 for r in data["rows"] for op in ("fwd", "dx", "dw"))
    h = data["headline"]  # both MLP shapes, one layout: Σ dense / Σ sparse
    assert sorted(h["shapes"]) == ["3072x768", "768x3072"]
    assert h["speedup_fwd_bwd"] == pytest.approx(h["dense_ms"] / h["sparse_ms"])


def test_sparse_train_speed_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    last = run("sparse_train_speed.py", ["--n-layers", "1", "--d-model", "64", "--n-heads", "2", "--vocab", "64",
                                         "--seq-len", "16", "--batch", "2", "--block", "16", "--density", "0.25",
                                         "--rounds", "2", "--steps", "1", "--out", str(out)], monkeypatch, capsys)
    data = json.loads(out.read_text())
    assert re.fullmatch(r"sparse_step_speedup_90: \d+\.\d{3}", last)
    assert data["max_abs_logit_diff"] < 1e-5 and data["layout"] == "constant_fan_in"
    assert data["density"] == pytest.approx(0.25)
