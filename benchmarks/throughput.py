"""Training throughput of `growkit.Transformer` (arch gpt2) against a plain nanoGPT-style GPT of the same shape.

Both models take full training steps (forward, backward, AdamW step) on the same batches with the same
optimizer settings. After a warm-up, timings are interleaved in one process (the order alternates each
round: AB, BA, AB, ...), each timing covers ``--steps`` steps, and the headline is the median of the
per-round ratios ``tokens/s(growkit) / tokens/s(plain)``. Target: >= 0.95.

    python benchmarks/throughput.py [--d-model 256 --n-layers 4 --n-heads 4 --seq-len 256 --batch 16
                                     --rounds 10 --bf16]

Prints a table, writes the numbers as JSON to ``--out`` and prints ``throughput_ratio: <value>`` last.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import growkit as gk


# -- the plain reference: nanoGPT's model, trimmed to what this benchmark uses ----------------------------
class PlainAttention(nn.Module):
    """Causal self-attention with one fused q/k/v projection (nanoGPT's ``c_attn``)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class PlainMLP(nn.Module):
    """``c_proj(gelu_tanh(c_fc(x)))``."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d_model, d_ff)
        self.c_proj = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class PlainBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = PlainAttention(d_model, n_heads)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = PlainMLP(d_model, d_ff)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class PlainGPT(nn.Module):
    """nanoGPT's GPT: learned positions, pre-LN blocks, final LayerNorm, LM head tied to the embedding."""

    def __init__(self, vocab_size: int, max_seq_len: int, n_layers: int, d_model: int, n_heads: int,
                 d_ff: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_seq_len, d_model)
        self.h = nn.ModuleList(PlainBlock(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers))
            elif p.ndim == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100)


# -- timing ------------------------------------------------------------------------------------------
def n_params(model: nn.Module) -> int:
    """Distinct parameters (tied weights once)."""
    return sum(p.numel() for p in model.parameters())


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as nanoGPT configures it: decay on matrices, none on biases and norm gains."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def sync(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One model with its optimizer; ``steps(n)`` takes n full training steps and returns seconds."""

    def __init__(self, name: str, model: nn.Module, batches: list[tuple[Tensor, Tensor]], lr: float,
                 weight_decay: float, autocast: AbstractContextManager[Any] | None, device: torch.device) -> None:
        self.name, self.model, self.batches, self.device = name, model.train(), batches, device
        self.opt = make_optimizer(model, lr, weight_decay)
        self.autocast = autocast
        self.i = 0
        self.last_loss = float("nan")

    def step(self) -> None:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        with self.autocast if self.autocast is not None else nullcontext():
            _, loss = self.model(x, y)
        assert loss is not None
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.last_loss = loss.detach()

    def steps(self, n: int) -> float:
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            self.step()
        sync(self.device)
        return time.perf_counter() - t0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=None, help="default 4·d_model")
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=10, help="interleaved A/B rounds")
    p.add_argument("--steps", type=int, default=2, help="training steps per timing")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model before timing")
    p.add_argument("--n-batches", type=int, default=4, help="distinct batches cycled through")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    """Run the benchmark; returns the median growkit/plain throughput ratio."""
    args = parse_args(argv)
    device = torch.device(args.device)
    d_ff = args.d_ff or 4 * args.d_model
    cfg = gk.TransformerConfig(arch="gpt2", n_layers=args.n_layers, d_model=args.d_model, n_heads=args.n_heads,
                               d_ff=d_ff, vocab_size=args.vocab, max_seq_len=args.seq_len)
    growkit_model = gk.Transformer(cfg, seed=args.seed).to(device)
    torch.manual_seed(args.seed)
    plain_model = PlainGPT(args.vocab, args.seq_len, args.n_layers, args.d_model, args.n_heads, d_ff).to(device)
    n_growkit, n_plain = n_params(growkit_model), n_params(plain_model)
    assert n_growkit == n_plain == growkit_model.num_params(), (n_growkit, n_plain)

    gen = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(args.n_batches):
        data = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), generator=gen)
        batches.append((data[:, :-1].contiguous().to(device), data[:, 1:].contiguous().to(device)))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else None
    runners = {
        "growkit": Runner("growkit", growkit_model, batches, args.lr, args.weight_decay, autocast, device),
        "plain": Runner("plain", plain_model, batches, args.lr, args.weight_decay, autocast, device),
    }
    for r in runners.values():
        r.steps(args.warmup)

    tokens = args.steps * args.batch * args.seq_len
    tps: dict[str, list[float]] = {"growkit": [], "plain": []}
    ratios: list[float] = []
    for rnd in range(args.rounds):
        order = ("growkit", "plain") if rnd % 2 == 0 else ("plain", "growkit")
        for name in order:
            tps[name].append(tokens / runners[name].steps(args.steps))
        ratios.append(tps["growkit"][-1] / tps["plain"][-1])

    ratio = statistics.median(ratios)
    med = {k: statistics.median(v) for k, v in tps.items()}
    print(f"throughput: growkit gpt2 vs plain nanoGPT-style GPT, {n_growkit:,} parameters each, "
          f"{device.type}{' bf16' if args.bf16 else ' fp32'}, {torch.get_num_threads()} threads")
    print(f"shape: n_layers={args.n_layers} d_model={args.d_model} n_heads={args.n_heads} d_ff={d_ff} "
          f"vocab={args.vocab} seq_len={args.seq_len} batch={args.batch}; {args.rounds} rounds x {args.steps} steps")
    print(f"{'model':<10}{'median tok/s':>14}{'min tok/s':>12}{'max tok/s':>12}{'last loss':>11}")
    for name in ("growkit", "plain"):
        v = tps[name]
        print(f"{name:<10}{med[name]:>14,.0f}{min(v):>12,.0f}{max(v):>12,.0f}{float(runners[name].last_loss):>11.4f}")
    print(f"per-round ratios: {' '.join(f'{r:.3f}' for r in ratios)}")

    result = {
        "benchmark": "throughput",
        "throughput_ratio": ratio,
        "tokens_per_s": {"growkit": med["growkit"], "plain": med["plain"]},
        "ratios": ratios,
        "tokens_per_s_rounds": tps,
        "params": n_growkit,
        "shape": {"n_layers": args.n_layers, "d_model": args.d_model, "n_heads": args.n_heads, "d_ff": d_ff,
                  "vocab_size": args.vocab, "seq_len": args.seq_len, "batch": args.batch},
        "rounds": args.rounds, "steps_per_timing": args.steps, "warmup": args.warmup,
        "optimizer": {"name": "AdamW", "lr": args.lr, "weight_decay": args.weight_decay, "betas": [0.9, 0.95]},
        "dtype": "bf16-autocast" if args.bf16 else "fp32",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    print(f"throughput_ratio: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
