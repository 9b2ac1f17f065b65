"""Multi-process training on PyTorch's own engine: ``torchrun`` + DDP, or FSDP2 (``fully_shard``).

``torchrun --nproc_per_node=N -m growkit train --config F`` starts N processes; each reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment (`setup`) and joins one process group (gloo on
CPU, nccl on CUDA, or ``parallel.backend``). One process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) is
the plain single-process trainer: no group, no wrapper.

What a run keeps true across processes:

- **Same model everywhere.** Every rank builds the model from the same seed, grows it with the same
  seeded operators and moves sparsity masks with the same seeded generator; DDP and FSDP2 then keep
  the parameters equal (replicated or sharded) because every rank applies the same averaged gradient.
- **Same math as one process.** ``train.batch_size`` is the global batch: every rank takes its
  contiguous slice of each global micro-batch (`growkit.data` batches are pure functions of the step),
  and the gradient (DDP all-reduce, FSDP2 reduce-scatter) is the mean over ranks. For a causal LM each
  rank's slice has the same number of target tokens, so the mean of the ranks' mean losses is the
  global mean; for masked-LM the trainer weights each rank's loss by its share of the masked tokens
  (`Parallel.loss_weight`). Micro-batches before the last of a step skip the gradient sync.
- **A growth is a rebuild.** The grown model is a new module: `Parallel.full` gives the whole model and
  optimizer (FSDP2: gathered onto every rank), growth and the optimizer carry run on that as in one
  process, and `Parallel.wrap` wraps the new model again (FSDP2: shards it and loads the carried
  moments into a new optimizer over the shards).
- **One writer.** Rank 0 writes logs and checkpoints (FSDP2 first gathers the full state onto rank 0's
  CPU), in the single-process format, so a run resumes on any number of processes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from growkit.errors import GrowkitError
from growkit.model import MASK_NAMES, Transformer
from growkit.train.checkpoint import load_optimizer_state

MakeOptimizer = Callable[[nn.Module], torch.optim.Optimizer]


@dataclass
class Parallel:
    """This process's place in the run: rank, world size, device, and whether parameters are sharded."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    fsdp: bool = False
    owns_group: bool = False
    """True when `setup` created the process group (and `shutdown` should destroy it)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, plots and writes checkpoints."""
        return self.rank == 0

    # -- wrappers --------------------------------------------------------------------------------
    def wrap(self, model: Transformer, optimizer: torch.optim.Optimizer,
             make_optimizer: MakeOptimizer) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
        """``(model, optimizer, forward_module)`` for training a whole ``model`` whose ``optimizer``
        holds its state. DDP: the model and optimizer unchanged, plus the DDP wrapper to run forward
        and backward through. FSDP2: the model sharded in place (each block, then the root), a new
        optimizer over the shards carrying ``optimizer``'s moments; forward through the model itself."""
        if not self.enabled:
            return model, optimizer, model
        if not self.fsdp:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers (growth masks) change identically on every rank: no per-step broadcast needed; a BERT
            # pooler gets no gradient from the masked-LM loss, which DDP must be told to expect
            ddp = DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False,
                                          find_unused_parameters=model.pooler is not None)
            return model, optimizer, ddp
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        state = _optimizer_state_by_fqn(model, optimizer)
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        sharded_optimizer = make_optimizer(model)
        if state["state"]:
            set_optimizer_state_dict(model, sharded_optimizer, state, options=StateDictOptions(full_state_dict=True))
        return model, sharded_optimizer, model

    def full(self, model: nn.Module, optimizer: torch.optim.Optimizer, make_optimizer: MakeOptimizer,
             main_only: bool = False) -> tuple[Transformer, torch.optim.Optimizer] | None:
        """The whole model and an optimizer holding its whole state (a collective: call on every rank).

        Not sharded (one process, DDP): ``model`` and ``optimizer`` themselves. FSDP2: a new plain
        `Transformer` and optimizer gathered from the shards, on every rank, or only on rank 0's CPU with
        ``main_only`` (for writing a checkpoint; the other ranks get None)."""
        if not (self.enabled and self.fsdp):
            return (model, optimizer) if self.is_main or not main_only else None  # type: ignore[return-value]
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=main_only)
        weights = get_model_state_dict(model, options=options)
        moments = get_optimizer_state_dict(model, optimizer, options=options)
        if main_only and not self.is_main:
            return None
        with torch.random.fork_rng(devices=[]):  # building modules draws initial weights: keep the run's RNG
            whole = Transformer(model.cfg).to("cpu" if main_only else self.device)
        whole.attach_masks({k: v for k, v in weights.items() if k.rsplit(".", 1)[-1] in MASK_NAMES})
        whole.load_state_dict(weights)
        whole_optimizer = make_optimizer(whole)
        load_optimizer_state(whole_optimizer, whole, {f"{name}.{key}": value for name, entry in moments["state"].items()
                                                      for key, value in entry.items()})
        return whole, whole_optimizer

    def grad_sync(self, module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Context for one micro-batch's backward: ``sync=False`` accumulates gradients locally (DDP
        ``no_sync``, FSDP2 ``set_requires_gradient_sync(False)``); the last micro-batch syncs."""
        if sync or not self.enabled:
            return contextlib.nullcontext()
        if self.fsdp:
            return _fsdp_no_sync(module)
        return module.no_sync()  # type: ignore[operator]

    def local(self, param: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(this process's part of param, the same part of like)``, for entry-wise edits of a weight:
        a sharded (DTensor) parameter's local shard, which in-place edits write through, and the rows of
        the whole-shaped ``like`` that shard holds; an unsharded parameter and ``like`` as they are."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        if not isinstance(param, DTensor):
            return param, like
        part = distribute_tensor(like, param.device_mesh, param.placements, src_data_rank=None)
        return param.to_local(), part.to_local()

    # -- collectives -----------------------------------------------------------------------------
    def loss_weight(self, targets: torch.Tensor, ignore_index: int) -> float:
        """Factor on this rank's mean loss so that the mean over ranks is the mean over the global
        micro-batch: world_size × (this rank's target tokens) / (all ranks' target tokens)."""
        if not self.enabled:
            return 1.0
        counts = torch.tensor([float((targets != ignore_index).sum())], dtype=torch.float64)
        local = float(counts[0])
        total = self.sum(counts)
        return self.world_size * local / max(float(total[0]), 1.0)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (float64), for logging."""
        if not self.enabled:
            return value
        return float(self.sum(torch.tensor([value], dtype=torch.float64))[0]) / self.world_size

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) of a tensor, on this rank's device for nccl; returned on the CPU."""
        if not self.enabled:
            return tensor
        out = tensor.to(self._comm_device())
        dist.all_reduce(out)
        return out.cpu()

    def average_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Replace each tensor by its mean over ranks, in place (same order on every rank)."""
        if not self.enabled:
            return
        for t in tensors:
            dist.all_reduce(t)
            t.div_(self.world_size)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def first(self, local: bool = False) -> Iterator[None]:
        """Run the block on rank 0 (``local``: on each machine's local rank 0) before the others: one
        process fills a cache or creates a directory, the rest find it made."""
        leader = (self.local_rank if local else self.rank) == 0
        if not leader:
            self.barrier()
        try:
            yield
        finally:  # also when the block failed: the others then run it too and report the same error
            if leader:
                self.barrier()

    def shutdown(self) -> None:
        """Destroy the process group if `setup` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: str, fsdp: bool = False, backend: str = "auto") -> Parallel:
    """This process's `Parallel`, joining the process group when launched by ``torchrun`` with
    ``WORLD_SIZE`` > 1 (``device``: the run's device, ``cpu`` or ``cuda[:i]``; a plain ``cuda`` becomes
    ``cuda:LOCAL_RANK``)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Parallel(device=torch.device(device), fsdp=fsdp)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise GrowkitError(f"parallel.backend = 'nccl' needs CUDA devices but train.device is {device!r}: use "
                           f"parallel.backend = 'gloo' (or 'auto') on CPU, or train.device = 'cuda'")
    owns = not dist.is_initialized()
    if owns:
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise GrowkitError(f"WORLD_SIZE is {world} but {var} is not set: start several processes with "
                                   f"torchrun (torchrun --nproc_per_node=N -m growkit train ...)")
        dist.init_process_group(backend, rank=rank, world_size=world)
    elif dist.get_world_size() != world:
        raise GrowkitError(f"the process group has {dist.get_world_size()} processes but WORLD_SIZE is {world}: "
                           f"launch with torchrun, which sets both consistently")
    return Parallel(rank=rank, world_size=world, local_rank=local_rank, device=dev, fsdp=fsdp, owns_group=owns)


def check_divides(world_size: int, micro_batch_size: int) -> None:
    """Every rank takes ``micro_batch_size / world_size`` rows of each global micro-batch."""
    if micro_batch_size % world_size:
        raise GrowkitError(f"train.micro_batch_size (default train.batch_size) {micro_batch_size} does not divide "
                           f"among {world_size} processes: make it a multiple of {world_size} (each process takes "
                           f"an equal slice of every micro-batch)")


@contextlib.contextmanager
def _fsdp_no_sync(module: Any) -> Iterator[None]:
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def _optimizer_state_by_fqn(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A whole model's optimizer state in torch.distributed.checkpoint's full form: state and param
    groups keyed by parameter name (tied weights under their first name, like ``named_parameters``)."""
    names = {id(p): n for n, p in model.named_parameters()}
    state = {names[id(p)]: dict(s) for p, s in optimizer.state.items() if s}
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [names[id(p)] for p in g["params"]]}
              for g in optimizer.param_groups]
    return {"state": state, "param_groups": groups}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise GrowkitError(f"environment variable {name}={raw!r} is not an integer: unset it or let torchrun "
                           f"set it") from None
