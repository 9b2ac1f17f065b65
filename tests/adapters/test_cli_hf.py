"""``growkit grow --hf IN_DIR --to ... --method ... --out OUT_DIR`` writes a save_pretrained folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from growkit.cli import main
from tests.adapters.conftest import hf_logits, max_diff, tiny_hf, tokens, transformers


@pytest.mark.parametrize("arch,args,tol", [
    ("gpt2", ["--to", "d_ff=64", "--to", "n_layers=3", "--method", "zero"], 1e-10),
    ("llama", ["--to", "d_model=64", "--to", "n_heads=8", "--to", "n_kv_heads=4", "--to", "n_layers=3",
               "--method", "split", "--method", "n_layers=zero"], 1e-6),
])
def test_grow_hf_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], arch: str, args: list[str],
                        tol: float) -> None:
    hf = tiny_hf(arch, seed=2)
    src, out = tmp_path / "small", tmp_path / "grown"
    hf.save_pretrained(src)
    (src / "tokenizer.json").write_text("{}")  # stands in for a tokenizer: copied along
    assert main(["grow", "--hf", str(src), *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |Δlogits| (float64): " in printed and f"wrote {out}" in printed
    err = float(printed.split("max |Δlogits| (float64): ")[1].split()[0])
    assert err < tol
    assert (out / "tokenizer.json").read_text() == "{}" and (out / "config.json").is_file()
    cls = type(hf)
    loaded, info = cls.from_pretrained(out, output_loading_info=True, dtype=torch.float64, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids = tokens(length=9)
    assert max_diff(hf_logits(hf, ids), hf_logits(loaded.eval(), ids)) < tol
    assert loaded.config.num_hidden_layers == 3


def test_grow_hf_refuses_masked_and_bad_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "small"
    tiny_hf("gpt2").save_pretrained(src)
    assert main(["grow", "--hf", str(src), "--to", "d_ff=64", "--out", str(tmp_path / "o")]) == 2
    assert "pick --method zero, split, copy or stack" in capsys.readouterr().err
    assert main(["grow", "--hf", str(tmp_path / "nope"), "--to", "d_ff=64", "--method", "zero",
                 "--out", str(tmp_path / "o")]) == 2
    assert "neither a folder written by save_pretrained nor a .gguf file" in capsys.readouterr().err
    assert main(["grow", "--hf", str(src), "--from", str(src), "--to", "d_ff=64", "--out", str(tmp_path / "o")]) == 2
    assert "--from CKPT or --hf DIR" in capsys.readouterr().err
    transformers.GPT2Model(tiny_hf("gpt2").config).save_pretrained(tmp_path / "base")
    assert main(["grow", "--hf", str(tmp_path / "base"), "--to", "d_ff=64", "--method", "zero",
                 "--out", str(tmp_path / "o")]) == 2
    assert "growkit converts" in capsys.readouterr().err
