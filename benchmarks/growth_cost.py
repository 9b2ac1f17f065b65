"""What does a growth cost? Grow a ~100M-parameter GPT (12 layers × 768 → 24 × 1024 by default) and
compare the time of `growkit.grow` with one ``clone()`` of the GROWN model's weights, measured in the
same run, interleaved (grow, clone, grow, clone, …), reported as the median of per-round ratios.

    python benchmarks/growth_cost.py [--method masked] [--rounds 3] [--small]

Last line: ``growth_cost_ratio: <value>`` (target <= 3).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import growkit as gk


def clone_weights(model: gk.Transformer) -> float:
    start = time.perf_counter()
    copies = [t.clone() for t in model.state_dict().values()]
    elapsed = time.perf_counter() - start
    del copies
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="masked", help="growth method for every dimension (default masked)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a tiny model, for smoke tests")
    parser.add_argument("--out", default="benchmarks/results/growth_cost.json")
    args = parser.parse_args()

    if args.small:
        cfg = gk.TransformerConfig(arch="gpt2", n_layers=2, d_model=64, n_heads=4, d_ff=256, vocab_size=512)
        spec = dict(n_layers=4, d_model=128, d_ff=512, n_heads=8)
    else:
        cfg = gk.TransformerConfig(arch="gpt2", n_layers=12, d_model=768, n_heads=12, d_ff=3072, vocab_size=8192,
                                   max_seq_len=1024)
        spec = dict(n_layers=24, d_model=1024, d_ff=4096, n_heads=16)
    method = args.method
    model = gk.Transformer(cfg, seed=0)
    grow_times, clone_times, ratios = [], [], []
    big = None
    for _ in range(args.rounds):
        del big
        start = time.perf_counter()
        big, _ = gk.grow(model, gk.GrowthSpec(**spec, method=method))
        grow_times.append(time.perf_counter() - start)
        clone_times.append(clone_weights(big))
        ratios.append(grow_times[-1] / clone_times[-1])
    result = {
        "from": {k: getattr(cfg, k) for k in ("n_layers", "d_model", "d_ff", "n_heads")}, "to": spec,
        "method": args.method, "params_before": model.num_params(), "params_after": big.num_params(),
        "grow_s": grow_times, "clone_s": clone_times, "ratios": ratios,
        "growth_cost_ratio": statistics.median(ratios), "threads": torch.get_num_threads(),
    }
    print(f"{'round':>5} {'grow (s)':>10} {'clone (s)':>10} {'ratio':>7}")
    for i, (g, c, r) in enumerate(zip(grow_times, clone_times, ratios, strict=True)):
        print(f"{i:>5} {g:>10.3f} {c:>10.3f} {r:>7.2f}")
    print(f"params {result['params_before']:,} → {result['params_after']:,}, method {args.method}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"growth_cost_ratio: {result['growth_cost_ratio']:.2f}")


if __name__ == "__main__":
    main()
