"""The README's sparse speed tables are the committed benchmark JSON, formatted by `growkit.bench.sparse_speed`."""

from __future__ import annotations

import json
from pathlib import Path

from growkit.bench.sparse_speed import format_kernels, format_steps

ROOT = Path(__file__).parents[2]
FIGURES = ROOT / "docs" / "figures" / "sparse"


def test_readme_kernel_table_is_the_committed_run() -> None:
    data = json.loads((FIGURES / "sparse_kernels.json").read_text())
    table = format_kernels(data)
    assert table in (ROOT / "README.md").read_text()
    assert f"`sparse_linear_speedup_90: {data['sparse_linear_speedup_90']:.3f}`" in table
    # the headline is one prune-and-regrow layout on both shapes at a density no lower than asked (5 % rounding)
    h = data["headline"]
    rows = [r for r in data["rows"] if r["layout"] == h["layout"] and r["dtype"] == h["dtype"]]
    assert len(rows) == 2 and all(r["prune_regrow"] and r["density"] >= 0.95 * data["target_density"] for r in rows)
    assert h["speedup_fwd_bwd"] == h["dense_ms"] / h["sparse_ms"]


def test_readme_step_table_is_the_committed_runs() -> None:
    runs = [json.loads((FIGURES / f"sparse_train_speed_b{b}.json").read_text()) for b in (16, 32)]
    readme = (ROOT / "README.md").read_text()
    assert format_steps(runs) in readme
    assert f"`sparse_step_speedup_90: {runs[1]['sparse_step_speedup_90']:.3f}`" in readme
    assert all(r["max_abs_logit_diff"] < 1e-4 and r["layout"] == "constant_fan_in" for r in runs)
