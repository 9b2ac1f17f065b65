"""CompoundGrow's two input-length operators side by side: the ``compound`` schedule of ``growkit bench
speedup`` as shipped (data truncation: training sequences of L/4, then L/2, then L) and the same schedule
with embedding pooling instead (full-length sequences, pooled by 4, then 2, then 1 — ``data.start_pool``
and stage ``pool``), same token budget, seed and data; final validation loss (at the full length,
unpooled by then), training FLOPs and time of each.

    python benchmarks/pool_vs_truncate.py [--preset quick|micro|full]

Last line: ``pool_minus_truncate_loss: X`` (negative: pooling ends lower).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import growkit as gk
from growkit.bench.schedules import PRESETS, run_dict, schedules
from growkit.train.loop import Trainer


def pooled(d: dict[str, Any]) -> dict[str, Any]:
    """The compound run with every training length L/k replaced by full-length sequences pooled by k."""
    out = copy.deepcopy(d)
    full = out["data"]["seq_len"]
    out["data"]["start_pool"] = full // out["data"].pop("start_seq_len")
    for stage in out["growth"]:
        if "seq_len" in stage:
            stage["pool"] = full // stage.pop("seq_len")
    return out


def run(d: dict[str, Any]) -> dict[str, Any]:
    shutil.rmtree(d["run"]["dir"], ignore_errors=True)
    start = time.perf_counter()
    Trainer(gk.RunConfig.from_dict(d)).fit()
    rows = [json.loads(line) for line in (Path(d["run"]["dir"]) / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r.get("val_loss") is not None][-1]
    return {"val_loss": last["val_loss"], "flops": last["flops"], "tokens": last["tokens"], "steps": last["step"],
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    parser.add_argument("--runs", default="runs/pool-vs-truncate", help="folder of the runs (replaced)")
    parser.add_argument("--out", default="docs/figures/pool_vs_truncate.json")
    args = parser.parse_args()
    p = PRESETS[args.preset]
    truncate = run_dict(p, schedules(p)["compound"], 1.0, str(Path(args.runs) / "truncate"), eval_every=10**9)
    pool = pooled(truncate)
    pool["run"]["dir"] = str(Path(args.runs) / "pool")
    results = {"truncate": run(truncate), "pool": run(pool)}
    print(f"{'operator':<10} {'val loss':>9} {'FLOPs':>10} {'steps':>6} {'seconds':>8}")
    for name, r in results.items():
        print(f"{name:<10} {r['val_loss']:>9.4f} {r['flops']:>10.3e} {r['steps']:>6} {r['seconds']:>8.1f}")
    delta = results["pool"]["val_loss"] - results["truncate"]["val_loss"]
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"preset": args.preset, "growth": {"truncate": truncate["growth"],
                                                                  "pool": pool["growth"]},
                                "data": {"truncate": truncate["data"], "pool": pool["data"]},
                                "results": results, "pool_minus_truncate_loss": delta}, indent=2) + "\n")
    print(f"pool_minus_truncate_loss: {delta:+.4f}")


if __name__ == "__main__":
    main()
