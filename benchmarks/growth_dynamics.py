"""Is Adam's step size continuous across a growth? Train a tiny llama on the bundled Shakespeare (bytes),
grow it three ways — split d_ff ×2, zero d_model ×2, masked every dimension (masks ramped 0 → 1 over
``--ramp`` steps) — and compare, for each, the median |update| of the OLD entries in the ``--window``
AdamW steps after the growth with that of the same entries in the ``--window`` steps before (mapped
through the `GrowthRecord`), per role (parameter name without its layer index).

Each growth is run with the optimizer state carried by ``carry_optimizer_state`` (moments scaled like
the gradients) and, for comparison, with the previous rule (moments scaled like the weights: m·s, v·s²).
A ratio far from 1 is a kick (or a stall) that the growth caused in the weights that were already
trained.

    python benchmarks/growth_dynamics.py [--steps 600] [--window 50] [--out docs/figures/growth_dynamics.json]

Last line: ``update_continuity_worst: X`` — over the growths, with the carried rule, the after/before
ratio (pooled over every old entry) farthest from 1 in log scale; the goal is within [0.8, 1.25]. The
JSON also holds the ratios per role, and per role against the same 50 steps without a growth (the
old model trained on: this removes the drift of training itself, ``no_growth_ratio``).

Targets are the next byte (inputs shifted by one): with ``model(x, x)`` the model learns to copy its
input and the update sizes of a nearly-solved task drift a lot from one window to the next.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import growkit as gk
from growkit.data.corpus import shakespeare_text
from growkit.grow.optim_state import role
from growkit.record import GrowthRecord

GROWTHS: dict[str, dict[str, Any]] = {
    "split d_ff x2": dict(d_ff=128, method="split"),
    "zero d_model x2": dict(d_model=64, method="zero"),
    "masked all": dict(n_layers=3, d_model=48, d_ff=96, n_heads=6, n_kv_heads=3, d_head=16, d_head_v=12,
                       max_seq_len=96, method="masked"),
}
CONFIG = dict(arch="llama", n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, vocab_size=256,
              max_seq_len=64)
RULES = ("gradients", "weights")


class Batches:
    """Random windows of ``seq + 1`` bytes of the corpus (vocab 256): inputs and next-byte targets; batch
    ``i`` is the same for every run."""

    def __init__(self, batch: int, seq: int, n_bytes: int = 2_000_000) -> None:
        self.data = torch.frombuffer(bytearray(shakespeare_text().encode()[:n_bytes]), dtype=torch.uint8).long()
        self.batch, self.seq = batch, seq

    def __call__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        starts = torch.randint(0, len(self.data) - self.seq - 1, (self.batch,), generator=g)
        return torch.stack([self.data[s:s + self.seq + 1] for s in starts.tolist()])


def step(model: gk.Transformer, opt: torch.optim.Optimizer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One AdamW step on ``x``; returns |Δw| per parameter."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(x[:, :-1], x[:, 1:])[1].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return {n: (p.detach() - before[n]).abs() for n, p in model.named_parameters()}


def carry_like_weights(old_opt: torch.optim.Optimizer, new_opt: torch.optim.Optimizer, old: gk.Transformer,
                       new: gk.Transformer, record: GrowthRecord) -> None:
    """The previous rule, on top of a carried optimizer: old entries' moments scaled like their weights."""
    old_params = dict(old.named_parameters())
    for name, p in new.named_parameters():
        tmap = record[name]
        if tmap.source is None:
            continue
        is_old = tmap.old_mask(p.shape)
        for key, power in (("exp_avg", 1), ("exp_avg_sq", 2)):
            like = tmap.gather(old_opt.state[old_params[tmap.source]][key], power=power)
            new_opt.state[p][key] = torch.where(is_old, like, new_opt.state[p][key])


def medians(updates: list[dict[str, torch.Tensor]], select: dict[str, torch.Tensor]) -> dict[str, float]:
    """Median of |Δw| over the window and the selected entries, pooled per role and over all ("*")."""
    pooled: dict[str, list[torch.Tensor]] = {}
    for name, mask in select.items():
        values = torch.cat([u[name][mask].flatten() for u in updates])
        pooled.setdefault(role(name), []).append(values)
        pooled.setdefault("*", []).append(values)
    return {r: float(torch.cat(v).median()) for r, v in pooled.items()}


def ratios(num: dict[str, float], den: dict[str, float]) -> dict[str, float]:
    return {r: num[r] / den[r] for r in num if den.get(r, 0) > 0}


def farthest_from_1(values: list[float]) -> float:
    return max(values, key=lambda v: abs(math.log(v)))


def make_optimizer(model: gk.Transformer, args: argparse.Namespace) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=args.eps, weight_decay=0.0)


def restore(state: dict[str, Any], args: argparse.Namespace) -> tuple[gk.Transformer, torch.optim.AdamW]:
    model = gk.Transformer(gk.TransformerConfig(**CONFIG), seed=0)
    model.load_state_dict(state["model"])
    opt = make_optimizer(model, args)
    opt.load_state_dict(state["optimizer"])
    return model, opt


def snapshot(model: gk.Transformer, opt: torch.optim.Optimizer) -> dict[str, Any]:
    return copy.deepcopy({"model": model.state_dict(), "optimizer": opt.state_dict()})


def train_window(model: gk.Transformer, opt: torch.optim.Optimizer, first: int, args: argparse.Namespace,
                 batches: Batches) -> list[dict[str, torch.Tensor]]:
    """``window`` steps on batches first, first+1, …; a masked model's masks ramp 0 → 1 over ``ramp``
    steps and are folded."""
    out = []
    for i in range(args.window):
        if model.masks():
            gk.ramp_masks(model, min(1.0, (i + 1) / args.ramp))
        out.append(step(model, opt, batches(first + i)))
        if model.masks() and i + 1 >= args.ramp:
            gk.fold_masks(model)
    return out


def run_growth(label: str, spec: dict[str, Any], rule: str, grown_at: dict[str, Any], args: argparse.Namespace,
               batches: Batches, before: dict[str, float], control: dict[str, float]) -> dict[str, Any]:
    """Grow the model saved at the growth step, carry its optimizer by ``rule``, train ``window`` steps."""
    old, opt = restore(grown_at, args)
    new, record = gk.grow(old, gk.GrowthSpec(**spec))
    new_opt = gk.carry_optimizer_state(opt, new, record)
    if rule == "weights":
        carry_like_weights(opt, new_opt, old, new, record)
    after = train_window(new, new_opt, args.steps, args, batches)
    carried = {n: record[n].old_mask(p.shape) for n, p in new.named_parameters() if record[n].source is not None}
    med = medians(after, carried)
    by_role = {r: v for r, v in ratios(med, before).items() if r != "*"}
    vs_control = {r: v for r, v in ratios(med, control).items() if r != "*"}
    return {"growth": label, "rule": rule, "ratio": med["*"] / before["*"], "by_role": by_role,
            "vs_no_growth_by_role": vs_control, "role_worst_vs_no_growth": farthest_from_1(list(vs_control.values()))}


def table(data: dict[str, Any]) -> list[str]:
    """The README's table: per growth and rule, the pooled after/before ratio and the per-role range
    against no growth."""
    rows = ["| growth | moments scaled like | after / before, all old entries | per role, vs no growth |",
            "|---|---|---|---|",
            f"| none | | {data['no_growth_ratio']:.3f} | |"]
    for r in data["results"]:
        vc = r["vs_no_growth_by_role"].values()
        rows.append(f"| {r['growth']} | {r['rule']} | {r['ratio']:.3f} | {min(vc):.3f} … {max(vc):.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="AdamW steps before the growth (default 600)")
    parser.add_argument("--window", type=int, default=50, help="steps compared before and after (default 50)")
    parser.add_argument("--ramp", type=int, default=20, help="mask ramp of the masked growth, steps (default 20)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eps", type=float, default=1e-12,
                        help="AdamW eps, below √v of this tiny model's gradients (default 1e-12)")
    parser.add_argument("--out", default="docs/figures/growth_dynamics.json")
    args = parser.parse_args()
    if not 0 < args.window <= args.steps or args.ramp < 1:
        parser.error("need 0 < window <= steps and ramp >= 1")
    start = time.perf_counter()
    torch.manual_seed(0)
    batches = Batches(args.batch, args.seq)
    model = gk.Transformer(gk.TransformerConfig(**CONFIG), seed=0)
    opt = make_optimizer(model, args)
    first = args.steps - args.window
    for i in range(first):
        step(model, opt, batches(i))
    everything = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}
    before = medians(train_window(model, opt, first, args, batches), everything)
    grown_at = snapshot(model, opt)
    control = medians(train_window(model, opt, args.steps, args, batches), everything)  # no growth: drift
    results = [run_growth(label, spec, rule, grown_at, args, batches, before, control)
               for label, spec in GROWTHS.items() for rule in RULES]
    print(f"median |update| of the old entries, {args.window} steps after the growth / {args.window} before")
    print(f"{'growth':<18} {'moments':<10} {'all':>6}  per role (min … max)  per role vs no growth (min … max)")
    print(f"{'none':<18} {'':<10} {control['*'] / before['*']:>6.3f}")
    for r in results:
        br, vc = r["by_role"].values(), r["vs_no_growth_by_role"].values()
        print(f"{r['growth']:<18} {r['rule']:<10} {r['ratio']:>6.3f}  {min(br):.3f} … {max(br):.3f}"
              f"         {min(vc):.3f} … {max(vc):.3f}")
    carried = [r for r in results if r["rule"] == "gradients"]
    worst = farthest_from_1([r["ratio"] for r in carried])
    previous = farthest_from_1([r["ratio"] for r in results if r["rule"] == "weights"])
    out = {"config": CONFIG, "growths": GROWTHS, "args": vars(args), "results": results,
           "no_growth_ratio": control["*"] / before["*"],
           "no_growth_by_role": {r: v for r, v in ratios(control, before).items() if r != "*"},
           "update_continuity_worst": worst, "previous_rule_worst": previous,
           "role_worst_vs_no_growth": farthest_from_1([r["role_worst_vs_no_growth"] for r in carried]),
           "previous_rule_role_worst_vs_no_growth": farthest_from_1(
               [r["role_worst_vs_no_growth"] for r in results if r["rule"] == "weights"]),
           "threads": torch.get_num_threads(), "seconds": time.perf_counter() - start}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"previous rule (moments like weights) worst: {previous:.3f}")
    print(f"per role vs no growth, worst: {out['role_worst_vs_no_growth']:.3f} "
          f"(previous rule: {out['previous_rule_role_worst_vs_no_growth']:.3f})")
    print(f"update_continuity_worst: {worst:.3f}")


if __name__ == "__main__":
    main()
