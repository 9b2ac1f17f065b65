"""Deterministic kill points for fault-injection tests: ``GROWKIT_FAULT=STEP:PHASE``.

A crash at a random wall-clock moment rarely lands inside a growth event (it takes milliseconds), so
the trainer calls `fault_point(phase, step)` at a few places and, when the environment variable
``GROWKIT_FAULT`` names that step and phase, the process sends itself ``SIGKILL`` there: no cleanup,
no ``finally`` blocks, no flushed buffers, exactly as if the machine had lost power or the job had
been preempted without notice. ``STEP`` is the trainer's step counter (``TrainState.step``, the
optimizer steps completed) at the moment the point is reached. Phases:

- ``before_step``: at the top of the loop, before growth checks and the next optimizer step.
- ``after_optimizer``: right after ``optimizer.step()``, before the counters advance.
- ``mid_growth``: inside a growth stage, after the model is grown, before the optimizer state is carried.
- ``mid_ramp``: while a mask ramp runs, right after the masks moved (STEP: after the step's increment).
- ``mid_checkpoint``: while the checkpoint of STEP is written, some files on disk, before the rename.
- ``before_latest``: after the checkpoint of STEP is renamed into place, before ``latest.json`` points at it.

Several points may be given, comma-separated (``GROWKIT_FAULT=12:mid_growth,20:mid_checkpoint``);
the first one reached kills the process. Unset (the normal case) it costs one dict lookup per call.
"""

from __future__ import annotations

import functools
import os
import signal

from growkit.errors import GrowkitError

ENV = "GROWKIT_FAULT"
PHASES = ("before_step", "after_optimizer", "mid_growth", "mid_ramp", "mid_checkpoint", "before_latest")


def fault_point(phase: str, step: int) -> None:
    """Kill this process with SIGKILL if ``GROWKIT_FAULT`` names ``step`` and ``phase``."""
    raw = os.environ.get(ENV)
    if raw and (step, phase) in parse_faults(raw):
        os.kill(os.getpid(), signal.SIGKILL)


@functools.lru_cache(maxsize=8)
def parse_faults(raw: str) -> frozenset[tuple[int, str]]:
    """``"12:mid_growth,20:mid_checkpoint"`` → ``{(12, "mid_growth"), (20, "mid_checkpoint")}``."""
    points = set()
    for item in raw.split(","):
        step, sep, phase = item.strip().partition(":")
        if not sep or not step.strip().isdigit() or phase.strip() not in PHASES:
            raise GrowkitError(f"cannot read {ENV}={raw!r}: write STEP:PHASE (comma-separated for several), "
                               f"e.g. {ENV}=12:mid_growth, with PHASE one of {', '.join(PHASES)}; or unset it")
        points.add((int(step), phase.strip()))
    return frozenset(points)
