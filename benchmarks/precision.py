"""float32 vs bf16 autocast training-step throughput at two model sizes, and what ``train.dtype = "auto"``
picks on this machine (`growkit.train.hardware`).

For each size, two copies of the same `growkit.Transformer` (same initial weights) take full training
steps — forward (under bf16 autocast for the bf16 copy), backward, gradient clipping, AdamW, as
``growkit train`` does — on the same random-token batches. After one untimed step each, timings are
interleaved in one process (order alternating each round: AB, BA, ...). Each timing covers a few steps;
bf16 gets fewer steps than float32 because where bf16 is emulated it is many times slower. Throughput per
dtype is the median over rounds; the per-round ratio bf16/float32 is reported as a median too.

``auto_vs_best_ratio`` = throughput of the dtype ``auto`` resolved to / throughput of the faster of the
two, the smaller over the two sizes (goal ≥ 0.95: ``auto`` never leaves much speed behind).

    python benchmarks/precision.py [--rounds 3 --out benchmarks/results/precision.json]

Prints a table, writes JSON to ``--out`` and prints ``auto_vs_best_ratio: <value>`` last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import growkit as gk
from growkit.io import atomic_write_json
from growkit.train.config import TrainConfig
from growkit.train.hardware import cached_bf16_speedup, cpu_info, machine, matmul_shapes, resolve_precision
from growkit.train.loop import build_optimizer


@dataclass(frozen=True)
class Size:
    """One model size and its batch; ``fp32_steps`` / ``bf16_steps`` training steps per timing."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    seq_len: int
    batch: int
    fp32_steps: int
    bf16_steps: int

    def config(self, vocab: int) -> gk.TransformerConfig:
        return gk.TransformerConfig(arch="gpt2", n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
                                    d_ff=4 * self.d_model, vocab_size=vocab, max_seq_len=self.seq_len)


#: The targets of ``growkit bench speedup --quick`` (2L × 64, context 64, batch 16) and of its full preset
#: (4L × 256, context 128), the latter at batch 4 so that an emulated bf16 step stays a few seconds.
SIZES = (Size("2Lx64", 2, 64, 2, 64, 16, fp32_steps=8, bf16_steps=2),
         Size("4Lx256", 4, 256, 4, 128, 4, fp32_steps=4, bf16_steps=1))
#: ``--tiny``, for tests: one micro model, a second in all.
TINY = (Size("1Lx16", 1, 16, 2, 16, 2, fp32_steps=1, bf16_steps=1),)


class Runner:
    """A model, its AdamW (growkit's parameter groups) and a fixed cycle of batches."""

    def __init__(self, cfg: gk.TransformerConfig, bf16: bool, batches: list[tuple[torch.Tensor, torch.Tensor]],
                 device: torch.device) -> None:
        self.model = gk.Transformer(cfg, seed=0).to(device)
        self.opt = build_optimizer(self.model, TrainConfig(max_steps=1, lr=1e-3))
        self.bf16, self.batches, self.device, self.i = bf16, batches, device, 0
        self.loss = float("nan")

    def steps(self, n: int) -> float:
        """Seconds for ``n`` training steps."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = self.batches[self.i % len(self.batches)]
            self.i += 1
            ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
            with ctx:
                _, loss = self.model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        self.loss = float(loss.detach())
        sync()
        return time.perf_counter() - t0


def measure(size: Size, rounds: int, vocab: int, device: torch.device, threads: int) -> dict[str, Any]:
    cfg = size.config(vocab)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        data = torch.randint(0, vocab, (size.batch, size.seq_len + 1), generator=gen)
        batches.append((data[:, :-1].contiguous().to(device), data[:, 1:].contiguous().to(device)))
    runners = {"float32": Runner(cfg, False, batches, device), "bfloat16": Runner(cfg, True, batches, device)}
    steps = {"float32": size.fp32_steps, "bfloat16": size.bf16_steps}
    for r in runners.values():
        r.steps(1)  # warm-up
    tokens = size.batch * size.seq_len
    tps: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    ratios = []
    for rnd in range(rounds):
        for name in (("float32", "bfloat16") if rnd % 2 == 0 else ("bfloat16", "float32")):
            tps[name].append(steps[name] * tokens / runners[name].steps(steps[name]))
        ratios.append(tps["bfloat16"][-1] / tps["float32"][-1])
    shapes = matmul_shapes(cfg, tokens)
    auto = resolve_precision(TrainConfig(max_steps=1, threads=threads), shapes, device=str(device))
    med = {k: statistics.median(v) for k, v in tps.items()}
    best = max(med, key=lambda k: med[k])
    matmul = cached_bf16_speedup(cpu_info(), shapes, threads) if device.type == "cpu" else None
    return {"size": size.name, "model": cfg.to_dict(), "params": runners["float32"].model.num_params(),
            "batch": size.batch, "seq_len": size.seq_len, "steps_per_timing": steps,
            "tokens_per_s": med, "tokens_per_s_rounds": tps, "bf16_over_fp32_rounds": ratios,
            "bf16_over_fp32": statistics.median(ratios), "best": best, "auto": auto.to_dict(),
            "auto_vs_best": med[auto.dtype] / med[best], "matmul_bf16_speedup": matmul,
            "last_loss": {k: r.loss for k, r in runners.items()}}


def table(results: list[dict[str, Any]]) -> list[str]:
    """The results as a Markdown table (the README's, which a test checks against the committed JSON)."""
    rows = ["| model | params | batch × ctx | float32 tok/s | bf16 tok/s | bf16 / fp32 | auto picks | auto / best |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["tokens_per_s"]
        rows.append(f"| {r['size']} | {r['params']:,} | {r['batch']} × {r['seq_len']} | {t['float32']:,.0f} | "
                    f"{t['bfloat16']:,.0f} | {r['bf16_over_fp32']:.3f} | {r['auto']['dtype']} | "
                    f"{r['auto_vs_best']:.3f} |")
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved A/B rounds per size")
    p.add_argument("--vocab", type=int, default=8192, help="vocabulary (growkit's bundled BPE: 8192)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/precision.json"))
    p.add_argument("--tiny", action="store_true", help="one micro model (a smoke test, seconds)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    auto = resolve_precision(TrainConfig(max_steps=1), [(1, 1, 1)], warn=False)
    device, threads = torch.device(auto.device), auto.threads
    torch.set_num_threads(threads)
    info = machine()
    print(f"precision: float32 vs bf16 autocast training steps on {device.type} ({info['cpu_model']}, "
          f"{info['cpu_capability']}, bf16 {info['cpu_bf16']}), {threads} thread(s), torch {info['torch']}, "
          f"load average {os.getloadavg()[0]:.1f}")
    results = []
    for size in TINY if args.tiny else SIZES:
        r = measure(size, args.rounds, args.vocab, device, threads)
        results.append(r)
        t = r["tokens_per_s"]
        matmul = "" if r["matmul_bf16_speedup"] is None else f"; bf16 matmuls alone {r['matmul_bf16_speedup']:.2f}×"
        print(f"{size.name} ({r['params']:,} params, batch {size.batch} × {size.seq_len}): float32 "
              f"{t['float32']:,.0f} tok/s, bf16 {t['bfloat16']:,.0f} tok/s (bf16/fp32 {r['bf16_over_fp32']:.3f}"
              f"{matmul}); auto → {r['auto']['dtype']} ({r['auto']['reason']}): {r['auto_vs_best']:.3f} of the best")
    ratio = min(r["auto_vs_best"] for r in results)
    print()
    print("\n".join(table(results)))
    data = {"benchmark": "precision", "auto_vs_best_ratio": ratio, "device": device.type, "threads": threads,
            "hardware": info, "load_average_1m": os.getloadavg()[0], "rounds": args.rounds, "sizes": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, data)
    print(f"wrote {args.out}\nauto_vs_best_ratio: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
