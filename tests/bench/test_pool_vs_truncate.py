"""``benchmarks/pool_vs_truncate.py``: the compound schedule with embedding pooling in place of data
truncation; the README quotes the committed JSON."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

from growkit.bench.schedules import QUICK, run_dict, schedules

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "pool_vs_truncate.py"


def test_pooling_replaces_every_training_length() -> None:
    pooled = runpy.run_path(str(SCRIPT))["pooled"]
    truncate = run_dict(QUICK, schedules(QUICK)["compound"], 1.0, "unused")
    pool = pooled(truncate)
    assert truncate["data"]["start_seq_len"] == 16 and "start_seq_len" not in pool["data"]
    assert pool["data"]["start_pool"] == 4 and pool["data"]["seq_len"] == 64
    assert [s.get("pool") for s in pool["growth"]] == [2, 1]
    assert all("seq_len" not in s for s in pool["growth"])
    assert [s["seq_len"] for s in truncate["growth"]] == [32, 64]  # the original is left alone


def test_readme_quotes_the_committed_json() -> None:
    data = json.loads((ROOT / "docs" / "figures" / "pool_vs_truncate.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"`pool_minus_truncate_loss: {data['pool_minus_truncate_loss']:+.4f}`" in readme
    for r in data["results"].values():
        assert f"{r['val_loss']:.4f}" in readme
