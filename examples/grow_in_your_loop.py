"""A plain PyTorch training loop (nanoGPT style) that grows its model with `growkit.Grower`.

    python examples/grow_in_your_loop.py               # 300 steps; see the README for the time it took
    python examples/grow_in_your_loop.py --steps 40    # a quick look

Everything is ordinary PyTorch: batches cut at random from the bundled Shakespeare corpus (tokenized
once with growkit's shipped BPE and cached), AdamW, a warmup + cosine LR, an eval now and then. The five
lines marked ``# growth`` give it the growth schedule of configs/gpt-tiny-msg.toml (2 layers × 64 grown to
4 layers × 128 by three masked stages): the Grower grows the model when a stage is due, carries AdamW's
moments into the grown optimizer, ramps and folds the masks; the loop keeps the model and optimizer it
hands back.
"""

import argparse
import math
from pathlib import Path

import numpy as np
import torch

import growkit as gk
from growkit.data import prepare_data

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--eval-every", type=int, default=50)
parser.add_argument("--data", help="data.path: text, .jsonl, .parquet, a datasets folder, nanoGPT train/val.bin")
args = parser.parse_args()
max_iters, block_size, batch_size, learning_rate, min_lr, warmup_iters = args.steps, 64, 8, 1e-3, 1e-4, 30
SCHEDULE = Path(__file__).resolve().parents[1] / "configs" / "gpt-tiny-msg.toml"  # growth

torch.manual_seed(1337)
data = prepare_data("bpe", args.data)  # the corpus (default: bundled) as token ids (np.memmap) and its tokenizer


def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = data.train if split == "train" else data.val
    ix = torch.randint(len(ids) - block_size - 1, (batch_size,))
    x = torch.stack([torch.from_numpy(ids[i:i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(ids[i + 1:i + 1 + block_size].astype(np.int64)) for i in ix])
    return x, y


def get_lr(it: int) -> float:
    if it < warmup_iters:
        return learning_rate * (it + 1) / warmup_iters
    ratio = min(1.0, (it - warmup_iters) / max(1, max_iters - warmup_iters))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, eval_iters: int = 10) -> float:
    model.eval()
    loss = sum(model(*get_batch("val"))[1].item() for _ in range(eval_iters)) / eval_iters
    model.train()
    return loss


config = gk.TransformerConfig(arch="gpt2", n_layers=2, d_model=64, n_heads=2, d_ff=128,
                              vocab_size=data.tokenizer.vocab_size, max_seq_len=block_size)
model = gk.Transformer(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.95), weight_decay=0.1)
grower = gk.Grower(SCHEDULE, model, optimizer, total_steps=max_iters)  # growth

for it in range(max_iters + 1):
    model, optimizer = grower.step(it)  # growth: grows when a stage is due, moves the mask ramps
    for event in grower.events:  # growth
        print(f"step {it}: grew {event['grow']} to {event['params_after']:,} params")  # growth
    if it % args.eval_every == 0 or it == max_iters:
        print(f"step {it}: val loss {estimate_loss(model):.4f} ({model.num_params():,} params)")
    if it == max_iters:
        break
    for param_group in optimizer.param_groups:
        param_group["lr"] = get_lr(it)
    x, y = get_batch("train")
    logits, loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
