"""A whole training step of a 90%-sparse GPT in the constant fan-in layout against the dense GPT of its shape.

Both are `growkit.Transformer` (arch gpt2, 4 layers × d_model 384, d_ff 1536 by default), fp32, CPU. The
sparse one is sparsified by a ``SparsityController`` with ``layout="constant_fan_in"`` (density 0.1, 32 × 32
blocks), then every sparse linear (attention q/k/v/o, MLP up/down) is swapped for its `CondensedLinear`
(`growkit.sparse.layout.condense_linears`): the forward, input gradient and weight gradient of those layers
run as gather + matmul on the active blocks, and AdamW updates only the active weights. Embeddings, the LM
head, norms and attention itself stay dense in both. A step is forward + backward + AdamW on the same batch;
prune-and-regrow (every ``update_every`` steps, not timed here) is not part of it. A third model times what
`growkit train` runs with ``sparsity.kernel = "condensed"`` (`growkit.sparse.fast_path`): the masked dense
weights stay the parameters (AdamW and the controller's re-masking over whole tensors), only the matmuls are
condensed — ``trainer_step_speedup`` in the JSON.

Rounds are interleaved (dense then sparse, then sparse then dense, …), each timing the median of ``--steps``
steps; the headline is the median over rounds of t_dense / t_sparse.

    python benchmarks/sparse_train_speed.py [--threads 1 --rounds 5 --steps 3 --batch 8 --seq-len 256]

Writes JSON to ``--out`` and prints ``sparse_step_speedup_90: <value>`` last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import growkit as gk
from growkit.sparse import SparsityConfig, sparsify
from growkit.sparse.fast_path import install
from growkit.sparse.layout import condense_linears

try:  # run as a script: the sibling benchmark module
    from sparse_kernels import cpu_model
except ImportError:  # imported as benchmarks.sparse_train_speed
    from benchmarks.sparse_kernels import cpu_model


def step_fn(model: gk.Transformer, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, ctl=None):
    def step() -> float:
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ctl is not None:
            ctl.step(1)  # re-mask weights and moments, as `growkit train` does after every step
        return float(loss.detach())
    return step


def timed(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--n-heads", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/sparse_train_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = gk.TransformerConfig(arch="gpt2", n_layers=args.n_layers, d_model=args.d_model, n_heads=args.n_heads,
                               d_ff=4 * args.d_model, vocab_size=args.vocab, max_seq_len=args.seq_len)
    dense = gk.Transformer(cfg, seed=0)
    sparse = gk.Transformer(cfg, seed=0)
    ctl = sparsify(sparse, SparsityConfig(density=args.density, block=args.block, layout="constant_fan_in",
                                          static=True))
    density = ctl.density()
    condense_linears(sparse, ctl.block_masks, args.block)
    ctl.remove()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq_len), generator=gen)
    y = torch.roll(x, -1, dims=1)
    with torch.no_grad():  # same function before training: the swap is exact
        diff = float((dense_masked_logits(cfg, ctl.masks, x) - sparse(x)[0]).abs().max())
    # what `growkit train` runs with sparsity.kernel = "condensed": the dense masked weights stay the parameters
    # (AdamW and the controller's re-masking on whole tensors), the matmuls are condensed (growkit.sparse.fast_path)
    trainer_model = gk.Transformer(cfg, seed=0)
    trainer_opt = torch.optim.AdamW(trainer_model.parameters(), lr=3e-4, weight_decay=0.1)
    trainer_ctl = sparsify(trainer_model, SparsityConfig(density=args.density, block=args.block,
                                                         layout="constant_fan_in", static=True, kernel="condensed"),
                           optimizer=trainer_opt)
    install(trainer_model, trainer_ctl.block_masks, args.block, dict.fromkeys(trainer_ctl.block_masks, "condensed"))
    steps = {}
    for name, model in (("dense", dense), ("sparse", sparse)):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
        steps[name] = step_fn(model, opt, x, y)
        steps[name]()  # warm-up
    steps["trainer"] = step_fn(trainer_model, trainer_opt, x, y, trainer_ctl)
    steps["trainer"]()
    times: dict[str, list[float]] = {"dense": [], "sparse": [], "trainer": []}
    for r in range(args.rounds):
        for name in (("dense", "sparse", "trainer") if r % 2 == 0 else ("trainer", "sparse", "dense")):
            times[name].append(timed(steps[name], args.steps))
    ratios = [d / s for d, s in zip(times["dense"], times["sparse"], strict=True)]
    speedup = statistics.median(ratios)
    trainer_ratios = [d / s for d, s in zip(times["dense"], times["trainer"], strict=True)]
    n_dense = sum(p.numel() for p in dense.parameters())
    n_sparse = sum(p.numel() for p in sparse.parameters())
    print(f"{args.n_layers}L × {args.d_model}, {args.batch}×{args.seq_len} tokens, fp32, {torch.get_num_threads()} "
          f"thread(s), {cpu_model()}; sparse: constant fan-in {args.block}×{args.block}, density {density:.3f}")
    print(f"dense  step {1e3 * statistics.median(times['dense']):8.1f} ms  ({n_dense:,} parameters)")
    print(f"sparse step {1e3 * statistics.median(times['sparse']):8.1f} ms  ({n_sparse:,} parameters trained)")
    print(f"growkit train, kernel = condensed: step {1e3 * statistics.median(times['trainer']):8.1f} ms "
          f"({statistics.median(trainer_ratios):.2f}× dense)")
    print(f"max |Δlogits| dense-masked vs condensed at init: {diff:.1e}")
    out = {"benchmark": "sparse_train_speed", "sparse_step_speedup_90": speedup, "ratios": ratios,
           "dense_ms": [1e3 * t for t in times["dense"]], "sparse_ms": [1e3 * t for t in times["sparse"]],
           "trainer_ms": [1e3 * t for t in times["trainer"]], "trainer_ratios": trainer_ratios,
           "trainer_step_speedup": statistics.median(trainer_ratios),
           "config": cfg.to_dict(), "batch": args.batch, "density": density, "block": args.block,
           "layout": "constant_fan_in", "threads": torch.get_num_threads(), "cpu": cpu_model(),
           "torch": torch.__version__, "dtype": "fp32", "max_abs_logit_diff": diff}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"sparse_step_speedup_90: {speedup:.3f}")


def dense_masked_logits(cfg: gk.TransformerConfig, masks: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits of the seed-0 model with its sparse weights masked (the sparse model before the swap)."""
    model = gk.Transformer(cfg, seed=0)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].data.mul_(mask)
    return model(x)[0]


if __name__ == "__main__":
    main()
