"""Memory across growths: does a run that grows three times need more memory than training its final model?

A progressive run (`growkit.train.loop.Trainer`, GPT-2 on the bundled corpus, float32, CPU) grows with three
masked stages, each with a mask ramp (3L×280 → 6L×280 → 6L×560 → 12L×560, ≈50M parameters at the end),
in one child process; the final model trains from scratch in another. Each child records its resident
memory (RSS): a thread samples ``/proc/self/statm`` every few milliseconds (the curve), and the kernel's
high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` at every phase boundary; the sampled
maximum where that is not allowed) gives each phase's exact peak: the growth itself (grow, carry AdamW,
move masks), and the training at each size after it (ramp, fold, steps).

    OMP_NUM_THREADS=1 python benchmarks/growth_memory.py [--steps-per-stage 3] [--out docs/figures/growth_memory.json]

Prints one row per phase and the ratios, writes JSON, and ends with ``growth_peak_memory_ratio: X``: the
growing run's peak RSS over the from-scratch run's (goal ≤ 1.3). Both processes hold the same Python, torch
and dataset, so the JSON also gives the ratio above that common base (RSS before the Trainer is built).
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")
START = {"n_layers": 3, "d_model": 280, "n_heads": 4, "d_ff": 1120}
STAGES = [{"n_layers": 6}, {"d_model": 560, "n_heads": 8, "d_ff": 2240}, {"n_layers": 12}]
TINY_START = {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 32}  # --tiny: a smoke test of the script
TINY_STAGES = [{"n_layers": 2}, {"d_model": 32, "n_heads": 4, "d_ff": 64}, {"n_layers": 3}]


def schedule(tiny: bool) -> tuple[dict[str, int], list[dict[str, int]], dict[str, int]]:
    """(initial model, the three stages' targets, final model)."""
    start, stages = (TINY_START, TINY_STAGES) if tiny else (START, STAGES)
    final = dict(start)
    for stage in stages:
        final.update(stage)
    return start, stages, final


def overrides(model: dict[str, int], steps: int, run_dir: Path, tiny: bool) -> list[str]:
    data = ["data.tokenizer='byte'", "data.seq_len=16"] if tiny else ["data.seq_len=64"]
    return [*(f"model.{k}={v}" for k, v in model.items()), "model.arch='gpt2'", *data,
            "train.batch_size=4", f"train.max_steps={steps}", "train.warmup_steps=1", "train.dtype='float32'",
            "train.device='cpu'", "train.threads=1", f"run.eval_every={steps}", "run.eval_batches=1",
            "run.progress=false", "run.tensorboard=false", "run.plots=false", f"run.dir='{run_dir}'"]


# -- measuring, inside a child ---------------------------------------------------------------------
def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Meter:
    """RSS curve from a sampling thread, and per-phase peaks from the kernel's high-water mark."""

    def __init__(self, every_s: float = 0.002) -> None:
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, int]] = []
        self.phases: list[dict[str, Any]] = []
        self._sampled_max = 0
        self._stop = threading.Event()
        self.exact = self._reset_hwm()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            value = rss()
            self._sampled_max = max(self._sampled_max, value)
            self.samples.append((time.perf_counter() - self.t0, value))
            time.sleep(every_s)

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS (Linux ≥ 4.0)
        except OSError:
            return False
        return True

    @staticmethod
    def _hwm() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/self/status")

    def cut(self) -> tuple[int, int]:
        """(peak RSS since the last cut or the start, RSS now); starts a new interval."""
        peak, now = (self._hwm() if self.exact else max(self._sampled_max, rss())), rss()
        self._sampled_max = now
        self._reset_hwm()
        return peak, now

    def record(self, name: str, cut: tuple[int, int], **info: Any) -> None:
        """A phase: its peak RSS and the RSS at its end."""
        self.phases.append({"phase": name, "peak_rss": cut[0], "rss_after": cut[1],
                            "t": round(time.perf_counter() - self.t0, 3), **info})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def child(kind: str, steps_per_stage: int, out: Path, tiny: bool) -> None:
    import torch

    from growkit import RunConfig
    from growkit.train.loop import Trainer

    torch.set_num_threads(1)
    meter = Meter()
    start, stages, final = schedule(tiny)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "grow":
            steps = steps_per_stage * (len(stages) + 1)
            cfg = RunConfig.default(overrides(start, steps, Path(tmp) / "run", tiny))
            cfg.growth = [{"at_step": steps_per_stage * (i + 1), "grow": g, "method": "masked",
                           "ramp_steps": max(1, steps_per_stage - 1)} for i, g in enumerate(stages)]
            cfg.validate()
        else:
            steps = steps_per_stage + 1
            cfg = RunConfig.default(overrides(final, steps, Path(tmp) / "run", tiny))
        base = rss()
        meter.record("imports", meter.cut())
        trainer = Trainer(cfg)
        meter.record("build", meter.cut(), params=trainer.model.num_params())
        size = "initial model" if kind == "grow" else "final model"
        peak = 0  # of the training at the current size
        while trainer.progress() < 1.0:
            cut = meter.cut()
            peak = max(peak, cut[0])
            events = trainer.grow_due_stages()  # the growth alone: its own interval
            if events:
                meter.record(f"train: {size}", (peak, cut[1]), params=events[0]["params_before"])
                meter.record(f"growth {events[0]['stage']}", meter.cut(), params=events[0]["params_after"])
                size, peak = f"after growth {events[0]['stage']}", 0
            trainer.train_step()
        cut = meter.cut()
        meter.record(f"train: {size}", (max(peak, cut[0]), cut[1]), params=trainer.model.num_params())
        meter.stop()
    curve = meter.samples[:: max(1, len(meter.samples) // 400)]
    out.write_text(json.dumps({"kind": kind, "base_rss": base, "steps": steps, "exact_peaks": meter.exact,
                               "phases": meter.phases, "curve": [(round(t, 3), v) for t, v in curve]}))


# -- the parent -------------------------------------------------------------------------------------------
def run_child(kind: str, steps_per_stage: int, tiny: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{kind}.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", kind, "--steps-per-stage", str(steps_per_stage),
                        "--child-out", str(out), *(["--tiny"] if tiny else [])], check=True, env=env)
        result = json.loads(out.read_text())
        result["seconds"] = round(time.perf_counter() - start, 1)
        return result


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps-per-stage", type=int, default=3, help="optimizer steps at each size (≥ 2)")
    parser.add_argument("--out", default="docs/figures/growth_memory.json")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a smoke test of the script")
    parser.add_argument("--child", choices=("grow", "scratch"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps_per_stage, Path(args.child_out), args.tiny)
        return 0

    start, stages, final = schedule(args.tiny)
    scratch = run_child("scratch", args.steps_per_stage, args.tiny)
    grow = run_child("grow", args.steps_per_stage, args.tiny)
    s_peak = max(p["peak_rss"] for p in scratch["phases"])
    g_peak = max(p["peak_rss"] for p in grow["phases"])
    print(f"{'run':<8} {'phase':<24} {'params':>12} {'peak RSS MiB':>13} {'RSS after MiB':>14} {'peak/scratch':>13}")
    for run in (scratch, grow):
        for p in run["phases"]:
            params = f"{p['params']:,}" if "params" in p else "-"
            print(f"{run['kind']:<8} {p['phase']:<24} {params:>12} {mib(p['peak_rss']):>13} {mib(p['rss_after']):>14} "
                  f"{p['peak_rss'] / s_peak:>13.3f}")
    ratio = g_peak / s_peak
    above = (g_peak - grow["base_rss"]) / (s_peak - scratch["base_rss"])
    how = "exact (VmHWM)" if grow["exact_peaks"] else "sampled"
    print(f"peak RSS: growing {mib(g_peak)} MiB, from scratch {mib(s_peak)} MiB; above the common base "
          f"(Python, torch, data: {mib(grow['base_rss'])} / {mib(scratch['base_rss'])} MiB) the ratio is {above:.3f}; "
          f"{how} peaks; {scratch['seconds'] + grow['seconds']:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "growth_peak_memory_ratio": round(ratio, 3), "ratio_above_base": round(above, 3),
        "peak_rss_grow": g_peak, "peak_rss_scratch": s_peak, "start": start, "stages": stages, "final": final,
        "steps_per_stage": args.steps_per_stage, "dtype": "float32", "device": "cpu",
        "threads": 1, "runs": {"scratch": scratch, "grow": grow}}, indent=1) + "\n")
    print(f"growth_peak_memory_ratio: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
