"""The benchmark's schedules: valid for the growth operators, ending at the target shape, and shipped
verbatim as the ready-made ``configs/gpt-<name>.toml``."""

from __future__ import annotations

from pathlib import Path

import pytest

from growkit.bench.schedules import (
    CONFIG_SCHEDULES,
    FULL,
    MICRO,
    NAMES,
    PRESETS,
    QUICK,
    run_dict,
    schedule_toml,
    schedules,
    write_configs,
)
from growkit.bench.speedup import plan_run
from growkit.train import RunConfig
from growkit.train.growth import parse_stages

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
VOCAB = 8192


def test_every_preset_has_every_schedule() -> None:
    for p in PRESETS.values():
        assert tuple(schedules(p)) == NAMES
        assert set(p.schedules) <= set(NAMES) and "scratch" in p.schedules
        assert p.frontier == (0.25, 0.5, 0.75, 1.0)
        assert all(len(p.budgets_of(n)) >= 2 for n in NAMES)


@pytest.mark.parametrize("preset", [MICRO, QUICK, FULL], ids=lambda p: p.name)
def test_growth_schedules_end_at_the_target_shape(preset) -> None:
    target = RunConfig.from_dict(run_dict(preset, schedules(preset)["scratch"], 1.0, "unused")).model_config(VOCAB)
    full = plan_run(run_dict(preset, schedules(preset)["scratch"], 1.0, "unused"), VOCAB)
    for name, s in schedules(preset).items():
        if not s.growth:
            continue
        plan = plan_run(run_dict(preset, s, 1.0, "unused"), VOCAB)  # grows through every stage: valid shapes
        assert plan.params == full.params, name
        assert plan.tokens >= preset.tokens
        assert plan.flops < full.flops, f"{name} should cost less per token than the target model"
        assert all(st["at_fraction"] is not None for st in s.growth), name
    assert target.n_layers == preset.n_layers and target.d_model == preset.d_model


def test_same_data_and_optimizer_for_every_run() -> None:
    base = run_dict(FULL, schedules(FULL)["scratch"], 1.0, "x")
    for name, s in schedules(FULL).items():
        d = run_dict(FULL, s, 0.5, "x")
        assert d["train"]["seed"] == base["train"]["seed"] == FULL.seed
        assert {k: v for k, v in d["train"].items() if k != "max_tokens"} == \
               {k: v for k, v in base["train"].items() if k != "max_tokens"}, name
        assert d["data"]["seq_len"] == base["data"]["seq_len"] and d["data"]["tokenizer"] == "bpe"
        assert d["run"]["eval_batches"] == base["run"]["eval_batches"]


@pytest.mark.parametrize("name", NAMES)
def test_schedule_toml_round_trips(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(schedule_toml(name))
    cfg = RunConfig.from_toml(path)
    assert cfg.stages() == parse_stages(schedules(FULL)[name].growth)
    assert cfg.model == schedules(FULL)[name].model
    assert cfg.train.max_tokens == FULL.tokens


@pytest.mark.parametrize("name", CONFIG_SCHEDULES)
def test_configs_are_the_schedules(name: str) -> None:
    """``configs/gpt-<name>.toml`` is exactly what ``python -m growkit.bench.schedules configs`` writes."""
    path = CONFIGS / f"gpt-{name}.toml"
    assert path.read_text() == schedule_toml(name), f"{path.name} is stale: python -m growkit.bench.schedules configs"
    cfg = RunConfig.from_toml(path)
    assert cfg.stages() == parse_stages(schedules(FULL)[name].growth)


def test_write_configs(tmp_path: Path) -> None:
    written = write_configs(tmp_path)
    assert [p.name for p in written] == [f"gpt-{n}.toml" for n in CONFIG_SCHEDULES]
    assert all(p.read_text() == schedule_toml(n) for p, n in zip(written, CONFIG_SCHEDULES, strict=True))
