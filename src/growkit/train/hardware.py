"""Device, precision and threads for this machine: what ``train.device / dtype / threads = "auto"`` become.

bf16 autocast is only worth it where the hardware computes in bf16. A CPU without native bf16 (AVX2, or
AVX-512 without the BF16 extension) *emulates* it: each matmul converts its inputs and runs a slow path,
and a 4-layer × 256 GPT-2 training step measured 24× slower than in float32 on such a CPU (issue 17).
So, for ``train.dtype = "auto"`` (the default):

- CUDA: bfloat16 autocast when the device supports bf16 (`torch.cuda.is_bf16_supported`), else float32;
  float32 matmuls use TF32 on CUDA (as PyTorch recommends for training).
- CPU: float32, unless the CPU reports native bf16 (``avx512_bf16`` / ``amx_bf16`` in /proc/cpuinfo, or
  ``bf16`` on Arm) *and* a short measurement at the run's matmul shapes finds bf16 autocast faster:
  ``speedup = Σ t_float32 / Σ t_bf16`` over the model's projections (q/k/v, attention out, FFN in/out, LM
  head) at ``min(tokens per micro-batch, 256)`` rows, forward only, min of up to 3 interleaved timings
  per shape, bf16 chosen when ``speedup ≥ 1.1``. The result is cached per machine in
  ``$GROWKIT_CACHE/hardware.json`` (default ``~/.cache/growkit``), keyed by CPU model, capability, torch
  version, thread count and shapes. ``GROWKIT_CPU_BF16=native|emulated`` overrides the CPU flags (tests
  set ``emulated``, so they do not depend on the machine).

``train.dtype = "bfloat16"`` asked for explicitly is honoured; where bf16 is emulated (or measured slower)
it runs with one `GrowkitWarning` stating the measured slowdown and the fix.

Threads (``train.threads`` unset): the process's torch thread count (``OMP_NUM_THREADS``, or what the
caller set with `torch.set_num_threads`) capped at the cores this process may use — its CPU affinity
(`os.sched_getaffinity`) and its cgroup CPU quota (``cpu.max`` / CFS quota), never the host's
`os.cpu_count`. The benchmark presets use `default_threads`: ``OMP_NUM_THREADS`` if set, else those cores.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from growkit.config import TransformerConfig
from growkit.errors import GrowkitError, GrowkitWarning
from growkit.io import atomic_write_json

#: CPU flags (``/proc/cpuinfo``) that mean bf16 matmuls run natively.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
#: bf16 autocast must be at least this much faster than float32 for ``auto`` to pick it on a CPU.
MIN_BF16_SPEEDUP = 1.1
#: Rows (tokens) of the measurement's matmuls: enough for the per-FLOP speed, short on emulated hardware.
MEASURE_ROWS = 256
CACHE_FILE = "hardware.json"
#: The fields of `Resolved` that make two benchmark runs comparable (a bf16 run is not a float32 run).
IDENTITY = ("device", "dtype", "threads", "cpu_capability")

_warned: set[str] = set()


@dataclass(frozen=True)
class CpuInfo:
    """This CPU: ``model`` (``model name`` in /proc/cpuinfo, or `platform.processor`), ``capability``
    (torch's kernel level, `torch.backends.cpu.get_cpu_capability`: AVX2, AVX512, ..., plus any bf16
    flags) and ``bf16``: ``native`` or ``emulated``."""

    model: str
    capability: str
    bf16: str


@dataclass(frozen=True)
class Resolved:
    """What a run trains with, after ``auto`` was resolved on this machine."""

    device: str
    dtype: str
    threads: int
    cpu_model: str
    cpu_capability: str
    bf16: str
    """How this device runs bf16: ``native`` / ``emulated`` (CPU), ``cuda`` / ``unsupported`` (CUDA)."""
    tf32: bool
    """float32 matmuls in TF32 (CUDA only)."""
    bf16_speedup: float | None
    """Measured float32 time / bf16-autocast time at the run's matmul shapes (None: not measured)."""
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in IDENTITY}

    def summary(self) -> str:
        """One line: ``device cpu · float32 · 2 threads (AMD EPYC, AVX2; auto: no native bf16 ...)``."""
        return (f"device {self.device} · {self.dtype} · {self.threads} thread{'s' * (self.threads != 1)} "
                f"({self.cpu_model}, {self.cpu_capability}; {self.reason})")


# -- the machine -----------------------------------------------------------------------------------------
def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This CPU's model, kernel level and whether it has native bf16 (``GROWKIT_CPU_BF16`` overrides)."""
    model, flags = "", set()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    found = [f for f in BF16_FLAGS if f in flags]
    capability = " ".join([torch.backends.cpu.get_cpu_capability(), *found])
    bf16 = "native" if found else "emulated"
    forced = os.environ.get("GROWKIT_CPU_BF16", "").strip().lower()
    if forced:
        if forced not in ("native", "emulated"):
            raise GrowkitError(f"GROWKIT_CPU_BF16 must be 'native' or 'emulated', got {forced!r}: fix or unset it")
        bf16 = forced
    return CpuInfo(model, capability, bf16)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs this process's cgroup may use (quota / period), or None when unlimited or unknown."""
    candidates = [root / "cpu.max"]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2
                candidates.insert(0, root / path.lstrip("/") / "cpu.max")
    except (OSError, ValueError):
        pass
    for f in candidates:
        try:
            quota, period = f.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    for d in (root / "cpu", root / "cpu,cpuacct"):  # cgroup v1
        try:
            quota_us = int((d / "cpu.cfs_quota_us").read_text())
            period_us = int((d / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may use: its CPU affinity, capped by its cgroup quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (a positive integer), else `usable_cores`."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return usable_cores()


# -- the measurement -------------------------------------------------------------------------------------
def matmul_shapes(cfg: TransformerConfig, tokens: int) -> list[tuple[int, int, int]]:
    """The distinct ``(rows, in, out)`` projections of a training forward of ``cfg`` on ``tokens`` tokens
    per micro-batch, rows capped at `MEASURE_ROWS`: q, k, v, attention out, FFN in (and gate), FFN out,
    LM head (the model's ``nn.Linear`` layers; equal shapes measured once)."""
    rows = max(1, min(tokens, MEASURE_ROWS))
    d, f = cfg.d_model, cfg.d_ff
    shapes = [(rows, d, cfg.q_width), (rows, d, cfg.kv_width), (rows, d, cfg.v_width), (rows, cfg.o_width, d),
              (rows, d, f), (rows, f, d), (rows, d, cfg.vocab_size)]
    return list(dict.fromkeys(shapes))


def measure_bf16_speedup(shapes: list[tuple[int, int, int]], threads: int, budget_s: float = 0.2) -> float:
    """float32 time / bf16-autocast time of ``x @ Wᵀ`` summed over ``shapes`` on the CPU (> 1: bf16 faster).

    Per shape: one untimed call each, then float32/bf16 pairs in alternating order until ``budget_s`` is
    spent (at most 3 pairs, at least 1); the fastest timing of each dtype counts."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    total = {False: 0.0, True: 0.0}
    try:
        for rows, n_in, n_out in shapes:
            x, w = torch.randn(rows, n_in, generator=g), torch.randn(n_out, n_in, generator=g)
            best = {False: math.inf, True: math.inf}
            start = time.perf_counter()
            for i in range(4):
                for bf16 in ((False, True) if i % 2 else (True, False)):
                    t0 = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        torch.nn.functional.linear(x, w)
                    if i:  # the first call of each is a warm-up
                        best[bf16] = min(best[bf16], time.perf_counter() - t0)
                if i and time.perf_counter() - start > budget_s:
                    break
            total[False] += best[False]
            total[True] += best[True]
    finally:
        torch.set_num_threads(before)
    return total[False] / max(total[True], 1e-12)


def cached_bf16_speedup(cpu: CpuInfo, shapes: list[tuple[int, int, int]], threads: int) -> float:
    """`measure_bf16_speedup`, cached in ``$GROWKIT_CACHE/hardware.json`` per machine and shapes."""
    from growkit.data.dataset import default_cache_dir

    key = (f"{cpu.model} | {cpu.capability} | torch {torch.__version__} | {threads} threads | "
           f"{','.join('x'.join(map(str, s)) for s in shapes)}")
    path = default_cache_dir() / CACHE_FILE
    try:
        cache = json.loads(path.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key)
    if isinstance(hit, dict) and isinstance(hit.get("bf16_speedup"), int | float):
        return float(hit["bf16_speedup"])
    speedup = measure_bf16_speedup(shapes, threads)
    cache[key] = {"bf16_speedup": speedup, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with contextlib.suppress(OSError):  # an unwritable cache only costs a measurement next time
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cache)
    return speedup


# -- resolution -------------------------------------------------------------------------------------------
def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; an explicit value is kept (CUDA checked)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GrowkitError(f"train.device is {name!r} but no CUDA device is available: use train.device = 'cpu' "
                           f"or 'auto'")
    return name


def resolve_precision(train: Any, shapes: list[tuple[int, int, int]], device: str | None = None,
                      warn: bool = True, threads: int | None = None) -> Resolved:
    """Resolve ``train.device``, ``train.dtype`` and ``train.threads`` (a `TrainConfig`) for a model whose
    training matmuls are ``shapes`` (`matmul_shapes`). ``device``: already resolved (else from ``train``).
    Explicit values win; ``bfloat16`` on hardware that emulates it warns once per process (``warn``).
    ``threads``: overrides ``train.threads``; with neither, torch's current count capped at `usable_cores`."""
    device = device or resolve_device(train.device)
    threads = threads or train.threads or min(torch.get_num_threads(), usable_cores())
    cpu = cpu_info()
    if device.startswith("cuda"):
        supported = torch.cuda.is_bf16_supported()
        bf16 = "cuda" if supported else "unsupported"
        if train.dtype == "auto":
            dtype = "bfloat16" if supported else "float32"
            reason = f"auto: {'bf16 supported' if supported else 'no bf16 on this GPU'}, TF32 matmuls"
        else:
            dtype, reason = train.dtype, "as configured, TF32 matmuls"
            if dtype == "bfloat16" and not supported:
                _warn_once(warn, "train.dtype = 'bfloat16' on a CUDA device without bf16 support: autocast is "
                                 "emulated or fails there; set train.dtype = 'auto' (or 'float32')")
        return Resolved(device, dtype, threads, cpu.model, cpu.capability, bf16, True, None, reason)
    speedup = None
    if train.dtype == "auto":
        if cpu.bf16 == "native":
            speedup = cached_bf16_speedup(cpu, shapes, threads)
            dtype = "bfloat16" if speedup >= MIN_BF16_SPEEDUP else "float32"
            reason = f"auto: native bf16, measured {speedup:.2f}× float32's speed at this model's matmuls"
        else:
            dtype = "float32"
            reason = "auto: no native bf16 on this CPU (autocast would emulate it)"
    else:
        dtype, reason = train.dtype, "as configured"
        if dtype == "bfloat16":
            speedup = cached_bf16_speedup(cpu, shapes, threads)
            if speedup < 1.0:  # slower than float32: emulated, or native but not worth it at these shapes
                what = "this CPU has no native bf16 (autocast emulates it)" if cpu.bf16 == "emulated" else \
                    "bf16 autocast is slower than float32 on this CPU"
                _warn_once(warn, f"train.dtype = 'bfloat16' on {cpu.model} ({cpu.capability}): {what}; its matmuls "
                                 f"measured {1 / speedup:.1f}× slower than float32 at this model's shapes — set "
                                 f"train.dtype = 'auto' (or 'float32')")
                reason += f", bf16 {cpu.bf16}: {1 / speedup:.1f}× slower"
    return Resolved(device, dtype, threads, cpu.model, cpu.capability, cpu.bf16, False, speedup, reason)


def resolve_run(cfg: Any, model_cfg: TransformerConfig, world_size: int = 1, device: str | None = None,
                warn: bool = True, threads: int | None = None) -> Resolved:
    """`resolve_precision` for a `RunConfig` whose (initial) model is ``model_cfg``: the matmul shapes are
    those of one process's micro-batch at the run's starting sequence length."""
    tokens = cfg.micro_batch_size // world_size * (cfg.data.start_seq_len or cfg.data.seq_len)
    return resolve_precision(cfg.train, matmul_shapes(model_cfg, tokens), device=device, warn=warn,
                             threads=threads)


def apply(resolved: Resolved) -> None:
    """Set this process's torch threads, and TF32 matmuls on CUDA."""
    torch.set_num_threads(resolved.threads)
    if resolved.tf32:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"


def machine() -> dict[str, Any]:
    """What a benchmark records about where it ran: CPU model and capability, usable cores, torch, CUDA."""
    cpu = cpu_info()
    return {"cpu_model": cpu.model, "cpu_capability": cpu.capability, "cpu_bf16": cpu.bf16,
            "usable_cores": usable_cores(), "default_threads": default_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _warn_once(enabled: bool, message: str) -> None:
    if enabled and message not in _warned:
        _warned.add(message)
        warnings.warn(message, GrowkitWarning, stacklevel=4)


__all__ = ["CpuInfo", "Resolved", "apply", "cpu_info", "default_threads", "machine", "matmul_shapes",
           "measure_bf16_speedup", "resolve_device", "resolve_precision", "resolve_run", "usable_cores"]
