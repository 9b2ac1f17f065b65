"""Token files: the split, the cache, user data, bits per byte."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers

from growkit.data import (
    TokenData,
    bits_per_byte,
    load_tokenizer,
    prepare_data,
    shakespeare_plays,
    split_documents,
)
from growkit.data.dataset import _dtype_for, default_cache_dir
from growkit.errors import GrowkitError


def _mtimes(data: TokenData) -> dict[str, int]:
    return {f.name: f.stat().st_mtime_ns for f in data.directory.iterdir()}


def test_bundled_corpus_splits(byte_data: TokenData) -> None:
    plays = shakespeare_plays()
    total = sum(len(p.encode()) for p in plays)
    assert byte_data.n_bytes("train") + byte_data.n_bytes("val") == total
    assert byte_data.n_bytes("val") / total == pytest.approx(0.05, abs=0.001)
    # bytes: every text byte is one token, plus one end-of-text between documents of a split
    assert (
        byte_data.n_tokens("train") == byte_data.n_bytes("train") + byte_data.meta["splits"]["train"]["n_documents"] - 1
    )
    assert byte_data.train.dtype == np.uint16 and byte_data.vocab_size == 259
    tok = byte_data.tokenizer
    train, val = tok.decode(byte_data.train), tok.decode(byte_data.val)
    assert train + val == "<|endoftext|>".join(plays)  # the shared play is cut at a line start
    assert train.endswith("\n") and not val[0].isspace()


def test_bpe_and_byte_share_the_validation_text(bpe_data: TokenData, byte_data: TokenData) -> None:
    assert bpe_data.tokenizer.decode(bpe_data.val) == byte_data.tokenizer.decode(byte_data.val)
    assert bpe_data.n_bytes("val") == byte_data.n_bytes("val")
    assert bpe_data.vocab_size == 8192 and int(bpe_data.train.max()) < 8192


def test_second_call_is_a_cache_hit(bpe_data: TokenData) -> None:
    before = _mtimes(bpe_data)
    start = time.perf_counter()
    again = prepare_data("bpe", cache_dir=bpe_data.directory.parents[1])
    assert time.perf_counter() - start < 1.0
    assert again.cached and again.directory == bpe_data.directory
    assert _mtimes(again) == before  # nothing rewritten
    assert sorted(before) == ["meta.json", "train.bin", "val.bin"]  # no temporary files left
    assert np.array_equal(again.val, bpe_data.val)


def test_user_file_and_cache_key(tmp_path: Path) -> None:
    text = tmp_path / "poem.txt"
    text.write_text("".join(f"line {i} of the poem\n" for i in range(200)))
    cache = tmp_path / "cache"
    first = prepare_data("byte", text, cache_dir=cache, val_fraction=0.1)
    assert not first.cached
    assert first.tokenizer.decode(first.val).startswith("line 18")  # the last ~10% of the lines
    assert prepare_data("byte", text, cache_dir=cache, val_fraction=0.1).cached
    assert prepare_data("byte", text, cache_dir=cache, val_fraction=0.2).directory != first.directory
    text.write_text("changed text\n" * 100)
    os.utime(text, ns=(1, 1))
    changed = prepare_data("byte", text, cache_dir=cache, val_fraction=0.1)
    assert not changed.cached and changed.directory != first.directory
    assert changed.tokenizer.decode(changed.val) == "changed text\n" * 10


def test_user_folder_documents_are_separated_by_eot(tmp_path: Path) -> None:
    (tmp_path / "docs" / "b").mkdir(parents=True)
    for name, line in [("a.txt", "alpha"), ("b/x.md", "beta"), ("c.txt", "gamma")]:
        (tmp_path / "docs" / name).write_text(f"{line}\n" * 20)
    data = prepare_data("bpe", tmp_path / "docs", cache_dir=tmp_path / "cache", val_fraction=0.3)
    eot = data.tokenizer.eot_id
    assert data.meta["splits"]["train"]["n_documents"] == 3
    assert int((np.asarray(data.train) == eot).sum()) == 2
    assert data.tokenizer.decode(data.train).startswith("alpha\n" * 20 + "<|endoftext|>beta\n")
    assert data.tokenizer.decode(data.val) == "gamma\n" * 17  # 30% of 340 bytes, cut at a line start


def test_tokenizer_without_eot_joins_documents(tmp_path: Path) -> None:
    backend = Backend(models.WordLevel({"a": 0, "b": 1, "<unk>": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "tok").mkdir()
    backend.save(str(tmp_path / "tok" / "tokenizer.json"))
    for name, text in [("1.txt", "a b\n" * 10), ("2.txt", "b b\n" * 10)]:
        (tmp_path / name).write_text(text)
    tok = load_tokenizer(f"hf:{tmp_path / 'tok'}")
    assert tok.eot_id is None
    data = prepare_data(tok, tmp_path, cache_dir=tmp_path / "c", val_fraction=0.5)
    assert data.train.tolist() == [0, 1] * 10 and data.val.tolist() == [1, 1] * 10


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("some words\n" * 100)
    data = prepare_data("byte", tmp_path / "t.txt", cache_dir=tmp_path / "c")
    with open(data.directory / "train.bin", "r+b") as fh:
        fh.truncate(10)
    again = prepare_data("byte", tmp_path / "t.txt", cache_dir=tmp_path / "c")
    assert not again.cached and len(again.train) == len(data.train)


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GROWKIT_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    (tmp_path / "t.txt").write_text("hello there\n" * 50)
    data = prepare_data("byte", tmp_path / "t.txt")
    assert data.directory.is_relative_to(tmp_path / "env-cache")
    monkeypatch.delenv("GROWKIT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "growkit"


def test_split_documents_cuts_at_line_starts() -> None:
    docs = ["first doc\n" * 10, "second\n  indented\nthird\n" * 3]
    train, val = split_documents(docs, 0.25)
    assert "".join(train) + "".join(val) == "".join(docs)
    assert len(train) == 2 and val[0].startswith("third\n")
    assert split_documents(["one line with no break"], 0.5) == (["one line wi"], ["th no break"])
    assert split_documents(["aaaa", "bbbb"], 0.5) == (["aaaa"], ["bbbb"])


@given(
    st.lists(st.text(alphabet=st.sampled_from("ab \n☃"), min_size=1, max_size=40), min_size=1, max_size=5),
    st.floats(0.05, 0.95),
)
def test_split_documents_keeps_all_text(docs: list[str], fraction: float) -> None:
    try:
        train, val = split_documents(docs, fraction)
    except GrowkitError:
        return  # too small to split
    assert "".join(train) + "".join(val) == "".join(docs)
    assert len(train) + len(val) in (len(docs), len(docs) + 1)  # at most one document is shared


def test_bits_per_byte() -> None:
    assert bits_per_byte(math.log(2), 100, 100) == pytest.approx(1.0)
    assert bits_per_byte(math.log(2) * 3.5, 10, 35) == pytest.approx(1.0)


def test_bits_per_byte_of_data(bpe_data: TokenData) -> None:
    uniform = math.log(bpe_data.vocab_size)
    expected = uniform / math.log(2) / bpe_data.bytes_per_token("val")
    assert bpe_data.bits_per_byte(uniform) == pytest.approx(expected)


def test_wide_vocabularies_use_uint32() -> None:
    assert _dtype_for(65_536) == np.uint16 and _dtype_for(65_537) == np.uint32


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.1"])
def test_bad_val_fraction(tmp_path: Path, fraction: object) -> None:
    with pytest.raises(GrowkitError, match=r"val_fraction must be"):
        prepare_data("byte", cache_dir=tmp_path, val_fraction=fraction)  # type: ignore[arg-type]


def test_corpus_too_small_to_split(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text("x")
    with pytest.raises(GrowkitError, match=r"too small to split with val_fraction 0\.05: add more text"):
        prepare_data("byte", tmp_path / "tiny.txt", cache_dir=tmp_path / "c")


def test_unwritable_cache_dir(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("hello there\n" * 50)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(GrowkitError, match=r"cannot create the token cache folder .*: set GROWKIT_CACHE"):
        prepare_data("byte", tmp_path / "t.txt", cache_dir=blocker)


def test_unknown_split_name(byte_data: TokenData) -> None:
    with pytest.raises(GrowkitError, match=r"unknown split 'test': use 'train' or 'val'"):
        byte_data.split("test")
