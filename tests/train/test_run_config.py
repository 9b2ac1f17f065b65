"""RunConfig: TOML sections and keys of DESIGN.md, --set overrides, and every config error."""

from __future__ import annotations

from pathlib import Path

import pytest

from growkit import GrowkitError, RunConfig
from growkit.train.config import apply_overrides

TOML = """
[model]
arch = "llama"
n_layers = 3
d_model = 48
n_heads = 6
n_kv_heads = 2
d_ff = 37
[data]
tokenizer = "byte"
seq_len = 64
[train]
max_steps = 20
batch_size = 8
lr = 3e-3
[run]
dir = "runs/x"
eval_every = 5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_toml_sections_and_keys(tmp_path: Path) -> None:
    cfg = RunConfig.from_toml(write(tmp_path, TOML))
    assert cfg.model["arch"] == "llama" and cfg.data.tokenizer == "byte" and cfg.data.seq_len == 64
    assert cfg.train.max_steps == 20 and cfg.train.lr == 3e-3 and cfg.run.eval_every == 5
    mcfg = cfg.model_config(vocab_size=259)
    assert (mcfg.vocab_size, mcfg.max_seq_len, mcfg.n_kv_heads, mcfg.d_ff) == (259, 64, 2, 37)


def test_overrides_parse_toml_values_and_bare_strings(tmp_path: Path) -> None:
    cfg = RunConfig.from_toml(write(tmp_path, TOML), ["train.max_steps=50", "run.dir=runs/other",
                                                       "train.lr=1e-4", "run.progress=false", "model.d_ff=40"])
    assert cfg.train.max_steps == 50 and cfg.run.dir == "runs/other" and cfg.train.lr == 1e-4
    assert cfg.run.progress is False and cfg.model["d_ff"] == 40


def test_int_accepted_for_float_and_round_trip(tmp_path: Path) -> None:
    cfg = RunConfig.from_toml(write(tmp_path, TOML), ["train.lr=1"])
    assert isinstance(cfg.train.lr, float)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_default_run_is_valid_and_overridable() -> None:
    cfg = RunConfig.default(["train.max_steps=7"])
    assert cfg.train.max_steps == 7 and cfg.model["arch"] == "gpt2"


def test_grad_accumulation() -> None:
    cfg = RunConfig.default(["train.batch_size=16", "train.micro_batch_size=4"])
    assert (cfg.micro_batch_size, cfg.grad_accum) == (4, 4)


@pytest.mark.parametrize(("overrides", "phrase"), [
    (["train.bogus=1"], "unknown key(s) in [train]: bogus"),
    (["model.bogus=1"], "unknown key(s) in [model]: bogus"),
    (["nosuch.key=1"], "unknown section(s) nosuch"),
    (["train.max_steps=ten"], "train.max_steps must be int"),
    (["train.lr=true"], "train.lr must be float"),
    (["run.progress=3"], "run.progress must be bool"),
    (["train.max_steps=0"], "train.max_steps must be positive"),
    (["train.batch_size=10", "train.micro_batch_size=4"], "not a multiple of train.micro_batch_size"),
    (["train.decay='step'"], "train.decay must be one of cosine, linear, constant"),
    (["train.dtype='float16'"], "train.dtype must be one of auto, float32, bfloat16"),
    (["data.val_fraction=1.5"], "data.val_fraction must be between 0 and 1"),
    (["model.n_heads=6", "model.n_kv_heads=4", "model.arch='llama'"], "must be a multiple of n_kv_heads"),
    (["model.n_kv_heads=2"], "has no grouped-query attention"),
    (["train.max_steps=nan"], "train.max_steps must be int"),
])
def test_config_errors_name_the_key(overrides: list[str], phrase: str) -> None:
    with pytest.raises(GrowkitError) as e:
        RunConfig.default(overrides)
    assert phrase in str(e.value)


def test_run_without_a_budget_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="has no length"):
        RunConfig.from_toml(write(tmp_path, "[train]\nlr = 1e-3\n"))


def test_model_vocab_smaller_than_tokenizer_is_refused() -> None:
    cfg = RunConfig.default(["model.vocab_size=100"])
    with pytest.raises(GrowkitError, match="smaller than the tokenizer"):
        cfg.model_config(vocab_size=8192)


@pytest.mark.parametrize("bad", ["train.max_steps", "max_steps=5", "a.b.c=1", ".x=1"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(GrowkitError, match=r"section\.key=value"):
        apply_overrides({}, [bad])


def test_missing_and_invalid_toml_files(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="does not exist"):
        RunConfig.from_toml(tmp_path / "nope.toml")
    with pytest.raises(GrowkitError, match="not valid TOML"):
        RunConfig.from_toml(write(tmp_path, "[train\nmax_steps = 3"))


CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = RunConfig.from_toml(path)
    assert cfg.model_config(vocab_size=8192).vocab_size == 8192


def test_default_run_is_configs_gpt_tiny() -> None:
    shipped = RunConfig.from_toml(Path(__file__).parents[2] / "configs" / "gpt-tiny.toml")
    assert shipped == RunConfig()


def test_main_job_is_configs_gpt_tiny_msg_and_grows_to_gpt_tiny() -> None:
    shipped = RunConfig.from_toml(Path(__file__).parents[2] / "configs" / "gpt-tiny-msg.toml")
    assert shipped == RunConfig.main() and len(shipped.stages()) == 3
    final = dict(shipped.model)
    for stage in shipped.stages():
        final.update(stage.grow)
    assert final == RunConfig().model  # the progressive run ends at the fixed run's size
