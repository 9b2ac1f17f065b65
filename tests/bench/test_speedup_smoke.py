"""End to end: the MICRO preset of ``growkit bench speedup`` (tiny model and budget), its outputs, its
reuse of finished runs, and the ``growkit bench speedup`` command line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from growkit.bench.speedup import PLOT_FILES, RESULTS_FILE, run_speedup
from growkit.train.metrics import METRICS_FILE, read_jsonl

LAST_LINES = re.compile(r"^best_speedup_wallclock: (\S+)\nbest_speedup_flops: (\S+)$")


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    out = tmp_path_factory.mktemp("bench") / "speedup"
    lines: list[str] = []
    data = run_speedup(out, "micro", log=lines.append)
    return out, data, lines


def test_outputs(micro: tuple[Path, dict, list[str]]) -> None:
    out, data, lines = micro
    for name in (RESULTS_FILE, *PLOT_FILES):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    names = {r["name"] for r in data["runs"]}
    assert names == {"scratch-025", "scratch-050", "scratch-075", "scratch-100", "small-100", "small-150",
                     "msg-100", "msg-150"}
    assert json.loads((out / RESULTS_FILE).read_text())["best"] == data["best"]
    m = LAST_LINES.match("\n".join(lines[-2:]))
    assert m, lines[-2:]
    assert float(m.group(1)) == pytest.approx(data["best"]["wallclock"], abs=1e-3)
    assert float(m.group(2)) == pytest.approx(data["best"]["flops"], abs=1e-3)
    table = "\n".join(lines)
    assert "| scratch-100 | scratch | 100% |" in table and "| msg |" in table
    for r in data["runs"]:
        assert r["tokens_per_param"] == pytest.approx(r["tokens"] / r["params"])
        assert r["train_time_s"] > 0 and r["flops"] > 0
        curve = r["curve"]
        assert curve[0]["flops"] == 0 and curve[-1]["loss"] == r["final_val_loss"]
    msg = [r for r in data["runs"] if r["schedule"] == "msg"]
    assert all(r["max_loss_jump"] is not None and abs(r["max_loss_jump"]) < 1e-2 for r in msg)  # masked: strict


def test_frontier_and_budgets(micro: tuple[Path, dict, list[str]]) -> None:
    _, data, _ = micro
    runs = {r["name"]: r for r in data["runs"]}
    full = runs["scratch-100"]
    assert data["target"]["loss"] == full["final_val_loss"]
    # each run decays its own LR to the end of its own budget: the 50 % run is not the 100 % run cut short
    assert runs["scratch-050"]["tokens"] * 2 == pytest.approx(full["tokens"], rel=0.05)
    assert runs["scratch-050"]["final_val_loss"] != next(p for p in full["curve"] if p["flops"] > 0)["loss"]
    # the small baseline spends msg's FLOPs at the same budget
    for frac in ("100", "150"):
        assert runs[f"small-{frac}"]["flops"] == pytest.approx(runs[f"msg-{frac}"]["flops"], rel=0.02)


def test_planned_counters_match_the_trainer(micro: tuple[Path, dict, list[str]]) -> None:
    from growkit.bench.schedules import MICRO
    from growkit.bench.speedup import plan_runs

    out, data, _ = micro
    runs = {r["name"]: r for r in data["runs"]}
    for spec in plan_runs(MICRO, MICRO.schedules, out, 8192):
        assert spec.plan.flops == pytest.approx(runs[spec.name]["flops"], rel=1e-9), spec.name
        assert spec.plan.steps == runs[spec.name]["steps"]


def test_rerun_reuses_finished_runs_and_redoes_unfinished(micro: tuple[Path, dict, list[str]]) -> None:
    out, data, _ = micro
    # a run interrupted before its end: its metrics stop short of the budget
    metrics = out / "msg-150" / METRICS_FILE
    records = read_jsonl(metrics)
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records[:-1]))
    again = run_speedup(out, "micro", log=lambda _: None)
    reused = {r["name"]: r["reused"] for r in again["runs"]}
    assert reused.pop("msg-150") is False
    assert all(reused.values())
    before = {r["name"]: r["final_val_loss"] for r in data["runs"]}
    after = {r["name"]: r["final_val_loss"] for r in again["runs"]}
    assert after == before  # same seed and data order: the re-run reproduces the loss exactly
    # a run written before growkit grew a config key (stored without it, at its default) is the same run
    bench = out / "scratch-100" / "bench.json"
    info = json.loads(bench.read_text())
    del info["config"]["train"]["max_nonfinite_steps"], info["config"]["parallel"]
    bench.write_text(json.dumps(info))
    assert run_speedup(out, "micro", log=lambda _: None)["runs"][0]["reused"]
    # a moved benchmark folder is still the same benchmark
    moved = out.parent / "moved"
    shutil.copytree(out, moved)
    assert all(r["reused"] for r in run_speedup(moved, "micro", log=lambda _: None)["runs"])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from growkit.cli import main

    assert main(["bench", "speedup", "--schedules", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown schedule" in capsys.readouterr().err


def test_remeasure_reruns_only_contended_runs(micro: tuple[Path, dict, list[str]]) -> None:
    out, data, _ = micro
    for bench in out.glob("*/bench.json"):  # every run on free cores but one (whatever this machine did)
        info = json.loads(bench.read_text())
        bench.write_text(json.dumps({**info, "cpu_share": 0.3 if bench.parent.name == "scratch-050" else 1.0}))
    lines: list[str] = []
    again = run_speedup(out, "micro", log=lines.append, remeasure=True)
    reused = {r["name"]: r["reused"] for r in again["runs"]}
    assert reused.pop("scratch-050") is False
    assert all(reused.values())
    assert {r["name"]: r["final_val_loss"] for r in again["runs"]} == \
           {r["name"]: r["final_val_loss"] for r in data["runs"]}
    assert not (out / "scratch-050.prev").exists()


def test_runs_record_and_reuse_only_the_same_resolved_precision(micro: tuple[Path, dict, list[str]],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from growkit.bench.schedules import MICRO
    from growkit.bench.speedup import _finished, plan_runs
    from growkit.train import hardware

    out, data, lines = micro
    assert data["hardware"]["cpu_capability"] and data["hardware"]["usable_cores"] >= 1
    assert "float32" in lines[0] and "1 CPU thread(s)" in lines[0]  # MICRO: dtype auto, 1 thread
    for r in data["runs"]:  # tests see a CPU without native bf16 (conftest): auto is float32
        assert r["resolved"]["identity"] == {"device": "cpu", "dtype": "float32", "threads": 1,
                                             "cpu_capability": data["hardware"]["cpu_capability"]}
    spec = next(s for s in plan_runs(MICRO, MICRO.schedules, out, 8192) if s.name == "scratch-025")
    bench = out / "scratch-025" / "bench.json"
    info = json.loads(bench.read_text())
    assert _finished(spec)
    try:
        identity = info["resolved"]["identity"]
        for key, other in (("dtype", "bfloat16"), ("device", "cuda"), ("threads", 2), ("cpu_capability", "AVX512")):
            changed = {**info["resolved"], "identity": {**identity, key: other}}
            bench.write_text(json.dumps({**info, "resolved": changed}))
            assert not _finished(spec), key
        bench.write_text(json.dumps(info))
        assert _finished(spec)
        # the same folder on a CPU where auto resolves to bf16 (native, measured faster): not the same run
        monkeypatch.setenv("GROWKIT_CPU_BF16", "native")
        monkeypatch.setattr(hardware, "cached_bf16_speedup", lambda cpu, shapes, threads: 1.5)
        assert not _finished(spec)
    finally:
        bench.write_text(json.dumps(info))
