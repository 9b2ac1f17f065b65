"""`growkit plot`: growth events and ramp ends marked, train beside val loss, runs overlaid on FLOPs, tokens
and wall-clock, log axes starting at the data — on a real tiny progressive run and its from-scratch twin."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import pytest

from growkit import RunConfig
from growkit.errors import GrowkitWarning
from growkit.train.loop import Trainer
from growkit.train.plots import AXES, draw, growth_label, plot_runs, read_run

matplotlib.use("Agg")

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=40", "data.seq_len=32",
        "data.tokenizer=byte", "train.batch_size=4", "train.warmup_steps=2", "train.max_steps=16",
        "run.eval_every=4", "run.eval_batches=1", "run.log_every=2", "run.progress=false",
        "run.tensorboard=false", "run.plots=false"]
STAGE = {"at_step": 6, "grow": {"d_ff": 64, "n_layers": 2}, "method": "masked", "ramp_steps": 4}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("plots")
    dirs = []
    for name, stages in (("grown", [STAGE]), ("scratch", [])):
        d = RunConfig.default([*TINY, f"run.dir={root / name}"]).to_dict()
        d["growth"] = stages
        Trainer(RunConfig.from_dict(d)).fit()
        dirs.append(root / name)
    return dirs[0], dirs[1]


def test_growth_event_and_ramp_end_are_marked_on_every_axis(runs: tuple[Path, Path]) -> None:
    import matplotlib.pyplot as plt

    grown = read_run(runs[0])
    assert len(grown.events) == 1 and grown.ramps == {1: 4}
    assert growth_label(grown.events[0]) == "d_ff 64, n_layers 2"
    for key in AXES:
        fig, ax = plt.subplots()
        draw(ax, [grown], key)
        xs = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() in ("--", ":")]
        event_x = grown.events[0][key]
        ramp_end = grown.at_step(6 + 4, key)
        assert xs == pytest.approx([event_x, ramp_end])
        assert ramp_end > event_x
        assert [t.get_text() for t in ax.texts] == ["d_ff 64, n_layers 2"]
        labels = ax.get_legend_handles_labels()[1]
        assert labels == ["grown (train)", "grown (val)"]
        plt.close(fig)


def test_log_axes_start_at_the_data_not_at_step_0(runs: tuple[Path, Path]) -> None:
    import matplotlib.pyplot as plt

    run = read_run(runs[1])
    assert run.evals[0]["flops"] == 0  # the step-0 evaluation: left out on log axes
    for key in ("flops", "tokens"):
        fig, ax = plt.subplots()
        draw(ax, [run], key)
        first = min(r[key] for r in run.train + run.evals if r[key] > 0)
        assert 0 < ax.get_xlim()[0] <= first and ax.get_xlim()[0] > first / 3
        assert ax.get_xscale() == "log"
        plt.close(fig)


def test_overlay_writes_three_pngs_and_skips_a_torn_line(runs: tuple[Path, Path], tmp_path: Path) -> None:
    torn = tmp_path / "torn"
    shutil.copytree(runs[1], torn)
    with open(torn / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "val_lo')  # a writer killed mid-line
    with pytest.warns(GrowkitWarning, match="torn"):
        written = plot_runs([runs[0], torn], tmp_path / "plots")
    assert [p.name for p in written] == [f for _, f, _ in AXES.values()]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000 for p in written)


def test_at_step_interpolates_between_logged_records(runs: tuple[Path, Path]) -> None:
    run = read_run(runs[1])
    s2, s4 = (next(r for r in run.train + run.evals if r["step"] == s) for s in (2, 4))
    assert run.at_step(3, "tokens") == pytest.approx((s2["tokens"] + s4["tokens"]) / 2)
    assert run.at_step(10_000, "tokens") is None
