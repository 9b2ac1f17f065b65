"""Non-finite steps: a NaN/inf loss or gradient norm skips the optimizer step instead of poisoning the weights.

The trainer computes the step's gradient norm (`grad_norm`, which also clips), asks `nonfinite_step`
whether to skip (one decision for all processes of a distributed run: the flag is all-reduced with
MAX, so if any rank saw a non-finite value every rank skips), and on a skip calls `skip_step`, which
counts it, warns, writes a ``nonfinite_step`` event to ``events.jsonl`` and, after
``train.max_nonfinite_steps`` skips in a row, stops the run with a `GrowkitError`. The weights and
optimizer state are untouched by a skipped step, so every checkpoint on disk is a good one.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from growkit.errors import GrowkitError, GrowkitWarning
from growkit.train.metrics import EVENTS_FILE


class _Counters(Protocol):
    step: int
    nonfinite_in_a_row: int
    skipped_steps: int


def grad_norm(params: Iterable[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """The total L2 norm of the gradients; clips them to ``max_norm`` when it is set."""
    params = [p for p in params if p.grad is not None]
    if max_norm:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: the norm over every shard


def nonfinite_step(loss: float, norm: torch.Tensor | float) -> bool:
    """Whether to skip this optimizer step: the loss or the gradient norm is NaN/inf on any process."""
    bad = not (math.isfinite(loss) and math.isfinite(float(norm)))
    if dist.is_available() and dist.is_initialized():
        device = norm.device if torch.is_tensor(norm) else torch.device("cpu")
        flag = torch.tensor([1.0 if bad else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        bad = bool(flag.item())
    return bad


def skip_step(state: _Counters, loss: float, norm: float, limit: int, run_dir: Path) -> dict[str, Any]:
    """Count a skipped step (``state.step + 1``), warn, log it; a `GrowkitError` at ``limit`` in a row.

    The event's ``step`` is the steps completed before it (as for growth events), ``skipped_step`` the one
    skipped."""
    state.nonfinite_in_a_row += 1
    state.skipped_steps += 1
    event = {"step": state.step, "event": "nonfinite_step", "skipped_step": state.step + 1, "loss": loss,
             "grad_norm": norm,
             "in_a_row": state.nonfinite_in_a_row, "skipped_total": state.skipped_steps}
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        with open(run_dir / EVENTS_FILE, "a") as f:
            f.write(json.dumps(event) + "\n")
    if state.nonfinite_in_a_row >= limit:
        raise GrowkitError(
            f"training diverged: {state.nonfinite_in_a_row} steps in a row up to step {state.step + 1} had a "
            f"non-finite loss or gradient (loss {loss}, gradient norm {norm}), the limit train.max_nonfinite_steps: "
            f"lower train.lr or set train.grad_clip, then continue with --resume; the checkpoints in "
            f"{run_dir / 'checkpoints'} hold the last good weights (skipped steps never change them)")
    warnings.warn(f"step {state.step + 1}: non-finite loss {loss} or gradient norm {norm}; the optimizer "
                  f"step is skipped ({state.nonfinite_in_a_row} in a row, at most {limit})", GrowkitWarning,
                  stacklevel=3)
    return event
