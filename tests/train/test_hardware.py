"""``auto`` device, dtype and threads (growkit.train.hardware): the CPU and CUDA are mocked, so these tests
give the same answers on any machine."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from growkit import GrowkitError, GrowkitWarning, RunConfig, TransformerConfig
from growkit.train import hardware as hw
from growkit.train.config import TrainConfig
from growkit.train.loop import Trainer

SHAPES = [(64, 32, 96), (64, 37, 32)]

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: {model}
flags\t\t: fpu sse sse2 avx avx2 fma {extra}
"""


def fake_cpu(tmp_path: Path, model: str = "AMD EPYC 7B13", extra: str = "") -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(vendor="x", model=model, extra=extra))
    return path


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """The CPU as `resolve_precision` sees it (``state["bf16"]``) and the measured bf16 speedup
    (``state["speedup"]``), with a count of measurements; no CUDA; an empty measurement cache; warnings
    not yet given."""
    monkeypatch.setenv("GROWKIT_CACHE", str(tmp_path / "cache"))
    state = {"bf16": "emulated", "speedup": 0.125, "measured": 0}
    monkeypatch.setattr(hw, "cpu_info", lambda: hw.CpuInfo("Test CPU", "AVX2", state["bf16"]))

    def measure(shapes: list, threads: int) -> float:
        state["measured"] += 1
        return state["speedup"]

    monkeypatch.setattr(hw, "measure_bf16_speedup", measure)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hw, "_warned", set())
    return state


# -- the machine -------------------------------------------------------------------------------------------
def test_cpu_info_reads_native_bf16_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROWKIT_CPU_BF16")
    plain = hw.cpu_info(fake_cpu(tmp_path))
    assert plain.model == "AMD EPYC 7B13" and plain.bf16 == "emulated"
    assert plain.capability == torch.backends.cpu.get_cpu_capability()
    native = hw.cpu_info(fake_cpu(tmp_path, "Intel Xeon Platinum 8480+", "avx512f avx512_bf16 amx_tile amx_bf16"))
    assert native.bf16 == "native" and native.capability.endswith(" avx512_bf16 amx_bf16")


def test_cpu_bf16_env_overrides_the_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROWKIT_CPU_BF16", "native")
    assert hw.cpu_info(fake_cpu(tmp_path)).bf16 == "native"
    monkeypatch.setenv("GROWKIT_CPU_BF16", "emulated")
    assert hw.cpu_info(fake_cpu(tmp_path, extra="amx_bf16")).bf16 == "emulated"
    monkeypatch.setenv("GROWKIT_CPU_BF16", "fast")
    with pytest.raises(GrowkitError, match="GROWKIT_CPU_BF16 must be 'native' or 'emulated'"):
        hw.cpu_info(fake_cpu(tmp_path))


def test_cgroup_quota_v2_and_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert hw.cgroup_cpu_quota(tmp_path) == pytest.approx(1.5)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert hw.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert hw.cgroup_cpu_quota(tmp_path) == pytest.approx(3.0)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert hw.cgroup_cpu_quota(tmp_path) is None


def test_usable_cores_is_affinity_capped_by_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hw.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(hw.os, "cpu_count", lambda: 64)
    assert hw.usable_cores(tmp_path) == 6  # no quota file: the affinity, not the host's 64
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert hw.usable_cores(tmp_path) == 2  # 2.5 CPUs of quota: 2 threads, never more than the quota
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert hw.usable_cores(tmp_path) == 1


def test_default_threads_follows_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hw, "usable_cores", lambda: 5)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert hw.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert hw.default_threads() == 5


def test_threads_default_to_torchs_count_capped_at_usable_cores(cpu: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hw, "usable_cores", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)  # torch's default: the host's cores
    assert resolve().threads == 4
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1 or set_num_threads(1)
    assert resolve().threads == 1
    assert resolve(threads=3).threads == 3  # train.threads wins


def test_matmul_shapes_are_the_models_projections() -> None:
    cfg = TransformerConfig(arch="gpt2", n_layers=2, d_model=32, n_heads=2, d_ff=37, vocab_size=101, max_seq_len=16)
    assert hw.matmul_shapes(cfg, 8 * 16) == [(128, 32, 32), (128, 32, 37), (128, 37, 32), (128, 32, 101)]
    llama = TransformerConfig(arch="llama", n_layers=1, d_model=32, n_heads=4, n_kv_heads=2, d_ff=37,
                              vocab_size=101, max_seq_len=16)
    r = hw.MEASURE_ROWS  # 10,000 tokens: rows capped
    assert hw.matmul_shapes(llama, 10_000) == [(r, 32, 32), (r, 32, 16), (r, 32, 37), (r, 37, 32), (r, 32, 101)]


def test_measure_bf16_speedup_is_a_positive_ratio() -> None:
    threads = torch.get_num_threads()
    speedup = hw.measure_bf16_speedup([(16, 32, 48)], threads=1, budget_s=0.01)
    assert math.isfinite(speedup) and speedup > 0
    assert torch.get_num_threads() == threads  # restored


def test_measurement_is_cached_per_machine(cpu: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "not" / "yet"  # created on first use
    monkeypatch.setenv("GROWKIT_CACHE", str(cache))
    info = hw.CpuInfo("Test CPU", "AVX512 amx_bf16", "native")
    assert hw.cached_bf16_speedup(info, SHAPES, 2) == 0.125
    assert hw.cached_bf16_speedup(info, SHAPES, 2) == 0.125
    assert cpu["measured"] == 1
    hw.cached_bf16_speedup(info, SHAPES, 1)  # another thread count: measured again
    hw.cached_bf16_speedup(info, SHAPES[:1], 2)  # other shapes too
    assert cpu["measured"] == 3
    (key,) = [k for k in json.loads((cache / hw.CACHE_FILE).read_text()) if "| 2 threads | 64x32x96,64x37x32" in k]
    assert key.startswith("Test CPU | AVX512 amx_bf16 | torch ")


# -- resolution ------------------------------------------------------------------------------------------
def resolve(**train: object) -> hw.Resolved:
    return hw.resolve_precision(TrainConfig(max_steps=1, **train), SHAPES)


def test_auto_on_a_cpu_without_native_bf16_is_float32_unmeasured(cpu: dict) -> None:
    r = resolve(threads=3)
    assert (r.device, r.dtype, r.threads, r.bf16, r.tf32) == ("cpu", "float32", 3, "emulated", False)
    assert cpu["measured"] == 0 and r.bf16_speedup is None  # the flags decide: no measurement needed
    assert "no native bf16" in r.reason


def test_auto_on_a_cpu_with_native_bf16_follows_the_measurement(cpu: dict) -> None:
    cpu["bf16"], cpu["speedup"] = "native", 1.6
    r = resolve()
    assert r.dtype == "bfloat16" and r.bf16_speedup == 1.6 and "1.60×" in r.reason
    assert resolve().dtype == "bfloat16" and cpu["measured"] == 1  # cached: measured once
    cpu["speedup"] = 1.02  # native, but not faster at these shapes (another thread count: a new measurement)
    assert resolve(threads=7).dtype == "float32"


def test_explicit_dtypes_win(cpu: dict) -> None:
    cpu["bf16"], cpu["speedup"] = "native", 1.6
    assert resolve(dtype="float32").dtype == "float32"
    cpu["bf16"], cpu["speedup"] = "emulated", 0.125
    with pytest.warns(GrowkitWarning):
        assert resolve(dtype="bfloat16").dtype == "bfloat16"


def test_explicit_bf16_on_emulating_cpu_warns_once_with_the_slowdown(cpu: dict) -> None:
    with pytest.warns(GrowkitWarning) as caught:
        r = resolve(dtype="bfloat16")
    assert r.dtype == "bfloat16" and r.bf16_speedup == 0.125
    (w,) = caught
    text = str(w.message)
    assert "no native bf16" in text and "8.0× slower than float32" in text and "train.dtype = 'auto'" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve(dtype="bfloat16")  # one warning per process, not one per run


def test_explicit_bf16_on_native_cpu_is_quiet(cpu: dict) -> None:
    cpu["bf16"], cpu["speedup"] = "native", 1.6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve(dtype="bfloat16").dtype == "bfloat16"


def test_explicit_bf16_on_native_cpu_measured_slower_warns(cpu: dict) -> None:
    cpu["bf16"], cpu["speedup"] = "native", 0.5
    with pytest.warns(GrowkitWarning, match="slower than float32 on this CPU; its matmuls measured 2.0× slower"):
        assert resolve(dtype="bfloat16").dtype == "bfloat16"


def test_auto_device_picks_cuda_with_bf16_and_tf32(cpu: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    r = resolve()
    assert (r.device, r.dtype, r.bf16, r.tf32) == ("cuda", "bfloat16", "cuda", True)
    assert cpu["measured"] == 0
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve().dtype == "float32"  # an older GPU: float32 (in TF32)
    assert resolve(device="cpu").device == "cpu"  # explicit values win
    assert resolve(device="cpu").dtype == "float32"


def test_explicit_cuda_without_cuda_is_an_error(cpu: dict) -> None:
    with pytest.raises(GrowkitError, match="no CUDA device is available"):
        resolve(device="cuda")


def test_apply_sets_threads_and_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    threads, precision = torch.get_num_threads(), torch.backends.cuda.matmul.fp32_precision
    try:
        hw.apply(hw.Resolved("cuda", "float32", 1, "x", "AVX2", "cuda", True, None, ""))
        assert torch.get_num_threads() == 1 and torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = "none"


def test_threads_must_be_positive() -> None:
    with pytest.raises(GrowkitError, match=r"train\.threads must be positive"):
        RunConfig.default(["train.threads=0"])


# -- in a run ---------------------------------------------------------------------------------------------
def test_resolved_values_in_first_line_and_config_json(tmp_path: Path, cpu: dict, growkit_cache: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = RunConfig.default([f"data.cache_dir={growkit_cache}", "data.tokenizer='byte'", "data.seq_len=16",
                             "model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ff=37",
                             "train.batch_size=4", "train.max_steps=1", "train.threads=1",
                             "run.eval_batches=1", "run.progress=false", "run.tensorboard=false",
                             "run.plots=false", f"run.dir={tmp_path / 'run'}"])
    assert (cfg.train.dtype, cfg.train.device) == ("auto", "auto")  # the defaults
    threads = torch.get_num_threads()
    try:
        Trainer(cfg).fit()
    finally:
        torch.set_num_threads(threads)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("run: device cpu · float32 · 1 thread (Test CPU, AVX2; auto: ")
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["train"]["dtype"] == "auto"
    assert {k: stored["resolved"][k] for k in hw.IDENTITY} == {"device": "cpu", "dtype": "float32", "threads": 1,
                                                               "cpu_capability": "AVX2"}
    assert RunConfig.from_dict(stored).to_dict() == cfg.to_dict()  # config.json still reads as a RunConfig
