"""One rank of the distributed tests, started by ``torchrun --nproc_per_node=2 dist_worker.py OUT``.

It runs every 2-process scenario of ``test_distributed.py`` in one process group (so the suite pays the
process start-up once) and leaves what the tests check under ``OUT``: each scenario's run dir, and per
rank the sparsity masks and a fingerprint of the weights.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from growkit import RunConfig
from growkit.train import Trainer, train

#: A tiny GPT-2 grown in width at step 4 (masked, ramped over 2 steps: a checkpoint at step 5 is mid-ramp;
#: the new entries in their own 3-step LR warmup),
#: 8 steps of a global batch of 8 in 2 micro-batches of 4 (each of 2 ranks takes 2 rows of each).
TINY = ["model.arch='gpt2'", "model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_ff=48",
        "data.seq_len=32", "train.max_steps=8", "train.batch_size=8", "train.micro_batch_size=4",
        "train.warmup_steps=2", "train.lr=3e-3", "run.eval_every=4", "run.eval_batches=2", "run.log_every=1",
        "run.progress=false", "run.tensorboard=false", "run.plots=false"]
GROWTH = {"at_step": 4, "grow": {"d_model": 48, "n_heads": 3, "d_ff": 64}, "method": "masked", "ramp_steps": 2,
          "new_lr_warmup_steps": 3}
#: Extra overrides per scenario; "sparse" is a BERT (masked-LM: ranks hold unequal numbers of targets; a
#: pooler the loss does not use) with RigL prune-and-regrow every 2 steps, grown at step 4.
SCENARIOS: dict[str, list[str]] = {
    "ddp": [],
    "fsdp": ["parallel.fsdp=true"],
    "sparse": ["model.arch='bert'", "model.pooler=true", "sparsity.density=0.5", "sparsity.block=8",
               "sparsity.update_every=2", "sparsity.regrow='gradient'"],
}


def run_config(run_dir: Path, *more: str) -> RunConfig:
    """The scenarios' run: `TINY` with one growth stage, in ``run_dir``."""
    d = RunConfig.default([*TINY, f"run.dir={run_dir}", *more]).to_dict()
    return RunConfig.from_dict({**d, "growth": [GROWTH]})


def main(out: Path) -> None:
    dist.init_process_group("gloo")  # growkit joins this group (and leaves it to us to destroy)
    rank = dist.get_rank()
    try:
        train(run_config(out / "ddp", *SCENARIOS["ddp"]))
        train(run_config(out / "fsdp", *SCENARIOS["fsdp"]))
        part = run_config(out / "part", *SCENARIOS["ddp"])
        Trainer(part).fit(stop_at_step=5)  # preempted mid-ramp; resumed below by 2 and (in the test) 1 process
        if rank == 0:
            shutil.copytree(out / "part", out / "part-for-1proc")
        dist.barrier()
        train(part, resume=True)
        sparse = Trainer(run_config(out / "sparse", *SCENARIOS["sparse"]))
        sparse.fit()
        assert sparse.sparsity is not None
        masks = {f"mask.{k}": v.contiguous() for k, v in sparse.sparsity.masks.items()}
        weights = {f"weight.{k}": p.detach().contiguous() for k, p in sparse.model.named_parameters()}
        save_file({**masks, **weights}, str(out / f"sparse-rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
