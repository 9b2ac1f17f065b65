"""Fuzz every user-facing entry point with malformed input: only `growkit.GrowkitError` may come out.

Configs (TOML text, nested dicts, ``--set`` overrides), `TransformerConfig`, `GrowthSpec` (alone and
against a model), ``[[growth]]`` stages, `SparsityConfig`, the CLI's arguments, and checkpoint files
get wrong types, unknown keys, negative/zero/huge sizes, NaN and inf, wrong nesting and random bytes.
Validation only: nothing trains here.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growkit import GrowkitError, GrowthSpec, RunConfig, SparsityConfig, Transformer, TransformerConfig
from growkit.cli import main as cli_main
from growkit.train.checkpoint import read_checkpoint, save_checkpoint
from growkit.train.config import MAIN_RUN, DataConfig, RunSection, TrainConfig, apply_overrides
from growkit.train.growth import GrowthStage
from growkit.train.loop import build_optimizer

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

NAMES = ["arch", "n_layers", "d_model", "n_heads", "d_ff", "n_kv_heads", "d_head", "d_head_v", "vocab_size",
         "max_seq_len", "norm_eps", "dropout", "tie_embeddings", "activation", "rope_theta", "bias", "init_std",
         "tokenizer", "path", "seq_len", "start_seq_len", "val_fraction", "mlm_prob", "max_steps", "max_tokens",
         "max_flops", "batch_size", "micro_batch_size", "lr", "min_lr", "warmup_steps", "decay", "weight_decay",
         "beta1", "beta2", "eps", "grad_clip", "dtype", "seed", "device", "max_nonfinite_steps", "dir",
         "eval_every", "eval_batches", "log_every", "ckpt_every", "keep_checkpoints", "progress", "tensorboard",
         "plots", "at_step", "at_tokens", "at_flops", "at_fraction", "grow", "method", "ramp_steps", "lr",
         "lr_warmup_steps", "new_lr_warmup_steps", "depth_placement", "std", "noise", "depth", "width",
         "density", "distribution", "block", "update_every", "n_updates", "total_steps", "pr_max", "regrow",
         "static", "sparse_lr_rule", "grace_steps", "grow_density", "text_field", "*", "bogus"]
SECTIONS = ["model", "data", "train", "run", "growth", "sparsity", "bogus"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=5), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1e-3, 0.0, -0.0, 1e300]),
    st.text(max_size=8), st.sampled_from(["masked", "zero", "split", "stack", "gpt2", "llama", "bert", "cpu",
                                          "cosine", "float32", "bpe", "byte", "top", "*", "erk"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)), max_leaves=6)
tables = st.dictionaries(st.sampled_from(NAMES), values, max_size=5)


def only_growkit_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except GrowkitError as e:
        assert str(e) and "\n" not in str(e), repr(e)  # one line
        return None


def mutated(base: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    d = json.loads(json.dumps(base))
    if section == "growth":
        d["growth"][0][key] = value
    elif isinstance(d.get(section), dict):
        d[section][key] = value
    else:
        d[section] = value
    return d


SECTION_KEYS = {"model": TransformerConfig, "data": DataConfig, "train": TrainConfig, "run": RunSection,
                "growth": GrowthStage, "sparsity": SparsityConfig}


@FUZZ
@given(st.data())
def test_run_config_bad_values_of_known_keys(data: st.DataObject) -> None:
    """One to three keys of a valid run (each a key its section has) set to arbitrary values."""
    d: dict[str, Any] = {**MAIN_RUN, "sparsity": {"density": 0.5}}
    for _ in range(data.draw(st.integers(1, 3))):
        section = data.draw(st.sampled_from(sorted(SECTION_KEYS)))
        key = data.draw(st.sampled_from([f.name for f in fields(SECTION_KEYS[section]) if f.init]))
        d = mutated(d, section, key, data.draw(values))
    cfg = only_growkit_errors(RunConfig.from_dict, d)
    if cfg is not None:  # what validates is usable: the model config and the stages build
        cfg.model_config(256)
        [stage.spec() for stage in cfg.stages()]


@FUZZ
@given(st.sampled_from(SECTIONS), st.sampled_from(NAMES), values)
def test_run_config_one_bad_key(section: str, key: str, value: Any) -> None:
    only_growkit_errors(RunConfig.from_dict, mutated({**MAIN_RUN, "sparsity": {"density": 0.5}}, section, key, value))


@FUZZ
@given(st.dictionaries(st.sampled_from(SECTIONS), st.one_of(tables, values, st.lists(tables, max_size=2)),
                       max_size=4))
def test_run_config_random_nesting(d: dict[str, Any]) -> None:
    only_growkit_errors(RunConfig.from_dict, d)


@FUZZ
@given(st.lists(st.one_of(
    st.builds(lambda s, k, v: f"{s}.{k}={v}", st.sampled_from(SECTIONS), st.sampled_from(NAMES),
              st.one_of(st.text(max_size=10), st.sampled_from(["1e999", "nan", "-inf", "[1, 2]", "{a = 1}",
                                                                '"x"', "true", "-5", "0", "99999999999999999999"]))),
    st.text(max_size=20)), max_size=4))
def test_set_overrides(overrides: list[str]) -> None:
    only_growkit_errors(RunConfig.main, overrides)
    only_growkit_errors(apply_overrides, MAIN_RUN, overrides)


@FUZZ
@given(st.text(max_size=200))
def test_toml_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("toml") / "run.toml"
    path.write_text(text)
    only_growkit_errors(RunConfig.from_toml, path)


@FUZZ
@given(tables)
def test_transformer_config(d: dict[str, Any]) -> None:
    cfg = only_growkit_errors(TransformerConfig.from_dict, d)
    if cfg is not None:  # a config that validates describes a model whose sizes are sane
        assert 1 <= cfg.n_layers < 2**31 and 1 <= cfg.d_model < 2**31
        assert math.isfinite(cfg.norm_eps) and cfg.norm_eps > 0


SMALL = TransformerConfig(arch="llama", n_layers=1, d_model=8, n_heads=2, n_kv_heads=1, d_ff=12, vocab_size=11,
                          max_seq_len=8)


@FUZZ
@given(tables)
def test_growth_spec_alone_and_against_a_model(d: dict[str, Any]) -> None:
    spec = only_growkit_errors(GrowthSpec.from_dict, d)
    if spec is not None:
        only_growkit_errors(spec.changes, SMALL)


@FUZZ
@given(tables)
def test_growth_stage(d: dict[str, Any]) -> None:
    only_growkit_errors(GrowthStage.from_dict, d, 0)


@FUZZ
@given(tables)
def test_sparsity_config(d: dict[str, Any]) -> None:
    only_growkit_errors(SparsityConfig.from_dict, d)


def test_growth_with_valid_looking_specs_raises_only_growkit_errors() -> None:
    """The grow operators themselves, on specs that pass from_dict (sizes that do not fit the model)."""
    import growkit as gk

    model = Transformer(SMALL)
    for spec in ({"d_model": 9}, {"n_heads": 3}, {"d_head": 5}, {"n_kv_heads": 3}, {"max_seq_len": 7},
                 {"n_layers": 3, "depth_placement": [0, 7]}, {"n_layers": 2, "depth_placement": "sideways"},
                 {"d_ff": 20, "method": "stack"}, {"d_model": 10, "std": -1.0}, {"d_ff": 14, "noise": float("nan")},
                 {"d_ff": 14, "std": float("inf")}, {"n_layers": 2, "depth_placement": ["a"]}):
        only_growkit_errors(lambda s=spec: gk.grow(model, GrowthSpec.from_dict(s)))


CLI_WORDS = ["train", "grow", "plot", "bench", "speedup", "--config", "--set", "--resume", "--resume-from", "--from",
             "--to", "--method", "--out", "--placement", "--hf", "--matrix", "d_model=8", "d_model=x", "=",
             "n_layers=-1", "masked", "nope", "train.max_steps=0", "run.dir=", "x.y", "/nonexistent", ""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(CLI_WORDS), min_size=1, max_size=6))
def test_cli_arguments(argv: list[str]) -> None:
    if "train" in argv and not any(a in argv for a in ("--set", "--config", "--resume", "--resume-from")):
        argv = [*argv, "--set", "train.max_steps=0"]  # validation only: never start the main job
    if argv[0] == "bench" or (argv[0] == "train" and "--config" not in argv):
        argv = [*argv, "--set", "train.max_steps=-1"]
    try:
        code = cli_main(argv)
    except SystemExit as e:  # argparse's own usage error: one message, exit status 2
        assert e.code in (0, 2)
        return
    assert code in (0, 2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ckpt")
    model = Transformer(SMALL)
    save_checkpoint(run, model, build_optimizer(model, RunConfig.main().train), {"step": 1,
                                                                               "model_config": SMALL.to_dict()})
    return run


@FUZZ
@given(st.sampled_from(["state.json", "manifest.json", "model.safetensors", "rng.safetensors", "latest.json"]),
       st.one_of(st.binary(max_size=64), values.map(lambda v: json.dumps(v).encode())))
def test_damaged_checkpoint_files(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, name: str,
                                  data: bytes) -> None:
    import shutil

    run = tmp_path_factory.mktemp("damaged")
    shutil.copytree(checkpoint / "checkpoints", run / "checkpoints")
    target = run / "checkpoints" / ("latest.json" if name == "latest.json" else "step_00000001/" + name)
    target.write_bytes(data)
    fresh = Transformer(SMALL)

    def load() -> None:
        ckpt = read_checkpoint(run)
        ckpt.load_model(fresh)
        ckpt.load_optimizer(build_optimizer(fresh, RunConfig.main().train), fresh)
        ckpt.rng_state()

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_growkit_errors(load)


def test_fuzz_strategies_reach_valid_configs() -> None:
    """The fuzz is not vacuous: a valid base config passes, so a failure above is the mutated key's."""
    assert RunConfig.from_dict(MAIN_RUN).train.max_steps == 600
    assert tomllib.loads("a = 1") == {"a": 1} and torch.__version__


PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))  # a name with a newline would echo on two lines


@FUZZ
@given(st.one_of(st.text(PRINTABLE, max_size=30), st.text(PRINTABLE, max_size=20).map(lambda t: "hf:" + t)))
def test_tokenizer_spec(spec: str) -> None:
    from growkit.data import load_tokenizer

    if spec in ("bpe", "byte"):
        return
    only_growkit_errors(load_tokenizer, spec)


@pytest.mark.parametrize("content", [None, b"", b"hi\n", bytes(range(256)) * 4, "dir-empty", "dir-binary"])
def test_data_paths(tmp_path: Path, content: bytes | str | None) -> None:
    from growkit.data import prepare_data

    path = tmp_path / "corpus.txt"
    if content == "dir-empty":
        path.mkdir()
    elif content == "dir-binary":
        path.mkdir()
        (path / "a.txt").write_bytes(bytes(range(256)))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(GrowkitError, match=r"data|corpus"):
        prepare_data("byte", path, tmp_path / "cache")
