"""What the optimizer carry does to a whole run: the ``split`` and ``zero`` schedules of ``growkit bench
speedup`` trained twice each — optimizer moments carried like the gradients (growkit's rule) and like the
weights (the previous rule: m·s, v·s²) — on the same data, seed and budget; the final validation loss of
each.

    python benchmarks/carry_effect.py [--preset full|quick|micro] [--schedules split,zero]
    python benchmarks/carry_effect.py --envelope RUN_DIR ... --out F   # runs of `growkit bench envelope`

Last line: ``carry_effect_loss_delta: X`` — over the schedules, the largest (final val loss with moments
like the weights) − (with moments like the gradients); positive: the gradient rule ends lower.
"""

from __future__ import annotations

import argparse
import json
import runpy
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import growkit as gk
from growkit.bench.schedules import PRESETS, run_dict, schedules
from growkit.train import grower
from growkit.train.loop import Trainer

HERE = Path(__file__).resolve().parent
carry_like_weights = runpy.run_path(str(HERE / "growth_dynamics.py"))["carry_like_weights"]


def like_weights(carry: Callable[..., Any]) -> Callable[..., Any]:
    """``carry_optimizer_state``, then the old entries' moments rescaled like their weights."""

    def carried(old_opt: Any, new: gk.Transformer, record: Any) -> Any:
        new_opt = carry(old_opt, new, record)
        old = {id(p): p for g in old_opt.param_groups for p in g["params"]}
        old_model = _Params({record.old_param_names[i]: p for i, p in old.items()})
        carry_like_weights(old_opt, new_opt, old_model, new, record)
        return new_opt

    return carried


class _Params:
    """Just enough of a model for `carry_like_weights`: ``named_parameters()`` of the grown-from model."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def named_parameters(self) -> Any:
        return iter(self.params.items())


def final_val_loss(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float([r for r in rows if r.get("val_loss") is not None][-1]["val_loss"])


def run(preset: str, name: str, rule: str, out: Path) -> dict[str, Any]:
    p = PRESETS[preset]
    run_dir = out / f"{name}-{rule}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = gk.RunConfig.from_dict(run_dict(p, schedules(p)[name], 1.0, str(run_dir), eval_every=10**9))
    start = time.perf_counter()
    if rule == "weights":
        with mock.patch.object(grower, "carry_optimizer_state", like_weights(grower.carry_optimizer_state)):
            Trainer(cfg).fit()
    else:
        Trainer(cfg).fit()
    return {"schedule": name, "rule": rule, "val_loss": final_val_loss(run_dir), "seconds": time.perf_counter() - start}


def rerun_like_weights(run_dir: Path, out: Path) -> dict[str, Any]:
    """A finished run of ``growkit bench envelope`` (trained with the gradient rule) trained again from its
    ``config.json`` with moments carried like the weights; both final losses."""
    d = json.loads((run_dir / "config.json").read_text())
    d.pop("resolved", None)
    again = out / f"{run_dir.name}-weights"
    shutil.rmtree(again, ignore_errors=True)
    d["run"] = {**d["run"], "dir": str(again)}
    with mock.patch.object(grower, "carry_optimizer_state", like_weights(grower.carry_optimizer_state)):
        Trainer(gk.RunConfig.from_dict(d)).fit()
    return {"run": run_dir.name, "gradients": final_val_loss(run_dir), "weights": final_val_loss(again)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=sorted(PRESETS))
    parser.add_argument("--schedules", default="split,zero")
    parser.add_argument("--runs", default="runs/carry-effect", help="folder of the runs (replaced)")
    parser.add_argument("--out", default="docs/figures/carry_effect.json")
    parser.add_argument("--envelope", nargs="+", metavar="RUN_DIR",
                        help="instead: finished `growkit bench envelope` run dirs, each trained again with moments "
                             "carried like the weights (same config, data and seed)")
    args = parser.parse_args()
    if args.envelope:
        rows = [rerun_like_weights(Path(r), Path(args.runs)) for r in args.envelope]
        for r in rows:
            r["delta"] = r["weights"] - r["gradients"]
            print(f"{r['run']:<28} like gradients {r['gradients']:.4f}  like weights {r['weights']:.4f}  "
                  f"delta {r['delta']:+.4f}")
        worst = max((r["delta"] for r in rows), key=abs)
        Path(args.out).write_text(json.dumps({"envelope_runs": rows, "carry_effect_loss_delta": worst}, indent=2)
                                  + "\n")
        print(f"carry_effect_loss_delta: {worst:+.4f}")
        return
    names = args.schedules.split(",")
    results = [run(args.preset, name, rule, Path(args.runs)) for name in names for rule in ("gradients", "weights")]
    by = {(r["schedule"], r["rule"]): r["val_loss"] for r in results}
    deltas = {name: by[name, "weights"] - by[name, "gradients"] for name in names}
    print(f"{'schedule':<10} {'like gradients':>15} {'like weights':>13} {'delta':>8}")
    for name in names:
        print(f"{name:<10} {by[name, 'gradients']:>15.4f} {by[name, 'weights']:>13.4f} {deltas[name]:>+8.4f}")
    worst = max(deltas.values(), key=abs)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"preset": args.preset, "results": results, "deltas": deltas,
                                "carry_effect_loss_delta": worst}, indent=2) + "\n")
    print(f"carry_effect_loss_delta: {worst:+.4f}")


if __name__ == "__main__":
    main()
