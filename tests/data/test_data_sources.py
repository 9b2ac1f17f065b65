"""`growkit.data.sources` and `prepare_data` on every format: the same text gives the same ids whatever holds
it, bad files are one-line errors naming the fix, and reading is streamed (memory bounded)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.data.formats import (
    DOCS,
    write_bins,
    write_jsonl,
    write_parquet,
    write_parquet_folder,
    write_saved_dataset,
    write_text_folder,
)

import growkit.data.corpus as corpus
from growkit.data import prepare_data, split_at_line_starts, split_documents
from growkit.data.corpus import iter_text_file
from growkit.data.dataset import split_stream
from growkit.data.sources import open_source
from growkit.errors import GrowkitError


def _docs(path: Path, field: str = "text") -> list[str]:
    return ["".join(doc) for doc in open_source(path, field).documents()]


def _ids(path: Path, cache: Path, field: str = "text") -> tuple[list[int], list[int]]:
    data = prepare_data("bpe", path, cache_dir=cache, val_fraction=0.1, text_field=field)
    return data.train.tolist(), data.val.tolist()


# -- reading each format -------------------------------------------------------------------------------


def test_jsonl_documents_and_field(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [*DOCS[:2], "   ", DOCS[2]], field="body")
    with open(f, "a") as fh:
        fh.write("\n" + json.dumps({"body": None}) + "\n")  # a blank line and a null text are skipped
    assert open_source(f, "body").format == "jsonl"
    assert _docs(f, "body") == DOCS[:3]


def test_every_format_gives_the_ids_of_the_same_text(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    reference = _ids(write_text_folder(tmp_path / "txt"), tmp_path / "c")
    sources = {
        "jsonl": write_jsonl(tmp_path / "d.jsonl"),
        "parquet": write_parquet(tmp_path / "d.parquet"),
        "parquet-folder": write_parquet_folder(tmp_path / "pq"),
    }
    for fmt, path in sources.items():
        assert open_source(path).format == fmt.split("-")[0]
        assert _docs(path) == DOCS
        assert _ids(path, tmp_path / "c") == reference, fmt


def test_saved_dataset_and_dataset_dict(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    reference = _ids(write_jsonl(tmp_path / "d.jsonl"), tmp_path / "c")
    for as_dict in (False, True):
        folder = write_saved_dataset(tmp_path / f"ds-{as_dict}", as_dict=as_dict)
        assert open_source(folder).format == "datasets"
        assert _ids(folder, tmp_path / "c") == reference
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": DOCS})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(GrowkitError, match=r"has no 'train' split \(it has test\): point data.path at one split"):
        _docs(tmp_path / "dd")


def test_text_field_is_part_of_the_cache_key(tmp_path: Path) -> None:
    f = tmp_path / "two.jsonl"
    f.write_text("".join(json.dumps({"a": d, "b": d.upper()}) + "\n" for d in DOCS))
    a = prepare_data("byte", f, cache_dir=tmp_path / "c", text_field="a")
    b = prepare_data("byte", f, cache_dir=tmp_path / "c", text_field="b")
    assert a.directory != b.directory and not b.cached
    assert b.tokenizer.decode(b.val) == a.tokenizer.decode(a.val).upper()
    assert prepare_data("byte", f, cache_dir=tmp_path / "c", text_field="a").cached


def test_nanogpt_bins_are_used_in_place(tmp_path: Path) -> None:
    folder = write_bins(tmp_path / "owt", "bpe")
    data = prepare_data("bpe", folder, cache_dir=tmp_path / "c")
    assert data.cached and data.directory == folder and not (tmp_path / "c").exists()
    assert np.array_equal(data.train, np.fromfile(folder / "train.bin", dtype=np.uint16))
    assert data.n_tokens("val") == len(np.fromfile(folder / "val.bin", dtype=np.uint16))
    assert not data.has_text_sizes
    with pytest.raises(GrowkitError, match=r"came pre-tokenized \(\.bin\), so its size in bytes is unknown"):
        data.bits_per_byte(1.0)


# -- bad input: one line, naming the fix ---------------------------------------------------------------


def _one_line_error(path: Path, match: str, field: str = "text", tokenizer: str = "byte") -> None:
    with pytest.raises(GrowkitError, match=match) as info:
        prepare_data(tokenizer, path, cache_dir=path.parent / "cache", text_field=field)
    assert "\n" not in str(info.value)


def test_jsonl_line_that_is_not_json(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl")
    with open(f, "a") as fh:
        fh.write('{"text": "ok"}\n{"text": "cut off\n')
    _one_line_error(f, r"line 6 of '.*d\.jsonl' is not JSON \(.*\): a \.jsonl file holds one JSON object per "
                       r"line; fix or remove line 6")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # found by the counting pass: no ids


def test_jsonl_without_the_field(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", field="content")
    _one_line_error(f, r"line 1 of '.*' has no 'text' field \(its fields: 'id', 'content'\): set data.text_field")
    f.write_text('["a list", "not an object"]\n')
    _one_line_error(f, r"line 1 of .* has no 'text' field \(its fields: none\)")
    f.write_text('{"text": 3}\n')
    _one_line_error(f, r"field 'text' holds int, not text: set data.text_field to a text field")


def test_parquet_file_that_is_text(tmp_path: Path) -> None:
    f = tmp_path / "d.parquet"
    f.write_text("id,text\n1,hello there\n")
    _one_line_error(f, r"'.*d\.parquet' is not a Parquet file \(it starts with text 'id,text\\n1,hello there\\n'\): "
                       r"write it with pyarrow.parquet.write_table")


def test_jsonl_that_is_another_format(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    f = tmp_path / "d.jsonl"
    f.write_bytes(write_parquet(tmp_path / "d.parquet").read_bytes())
    _one_line_error(f, r"line 1 of '.*d\.jsonl' is not JSON \(.*\): a \.jsonl file holds one JSON object per line")


def test_damaged_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    f = write_parquet(tmp_path / "d.parquet")
    data = bytearray(f.read_bytes())
    data[4:400] = b"\xff" * 396  # the pages, not the magic bytes nor the footer
    f.write_bytes(bytes(data))
    _one_line_error(f, r"data file '.*d\.parquet' is not a readable Parquet file \(.*\): rewrite it")


def test_broken_saved_dataset(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    folder = write_saved_dataset(tmp_path / "ds")
    (folder / "state.json").write_text("{not json")
    _one_line_error(folder, r"'.*ds' is not a readable datasets.save_to_disk folder \(.*\): save it again with "
                            r"dataset.save_to_disk\(DIR\)")


def test_parquet_without_the_column(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    f = write_parquet(tmp_path / "d.parquet")
    _one_line_error(f, r"has no 'body' column \(its columns: 'id', 'text'\): set data.text_field", field="body")
    _one_line_error(f, r"column 'id' is int64, not text: set data.text_field to a text column", field="id")


def test_bin_ids_beyond_the_vocabulary(tmp_path: Path) -> None:
    folder = write_bins(tmp_path / "owt", "bpe")  # BPE ids (vocab 8192) read with the byte tokenizer (259)
    first = int(np.argmax(np.fromfile(folder / "train.bin", dtype=np.uint16) >= 259))
    _one_line_error(folder, r"'.*train\.bin' holds token id \d+ at position " + str(first)
                    + r", outside the vocabulary of tokenizer 'byte' \(0\.\.258\): set data.tokenizer to the tokenizer "
                    "that made the .bin files")


def test_bad_bin_folders(tmp_path: Path) -> None:
    folder = write_bins(tmp_path / "owt")
    with open(folder / "val.bin", "ab") as fh:
        fh.write(b"\x01")
    _one_line_error(folder, r"'.*val\.bin' is not a file of uint16 token ids \(\d+ bytes, not a positive even")
    (folder / "val.bin").unlink()
    _one_line_error(folder, r"val\.bin' is missing: a nanoGPT data folder holds both train\.bin and val\.bin")
    _one_line_error(folder / "train.bin", r"is one \.bin file: point data.path at the folder holding nanoGPT's")


# -- streaming -----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("ab \n☃"), min_size=1, max_size=60), min_size=1, max_size=5),
       st.sampled_from([0.1, 0.3, 0.5, 0.9]), st.integers(1, 12))
def test_streamed_split_is_split_documents(docs: list[str], fraction: float, piece: int) -> None:
    try:
        train, val = split_documents(docs, fraction)
    except GrowkitError:
        return
    total = sum(len(d.encode()) for d in docs)
    stream = list(split_stream((iter(split_at_line_starts(d, piece)) for d in docs), total - round(total * fraction)))
    for name, expected in (("train", train), ("val", val)):
        got: list[str] = []
        for split, starts, text in stream:
            if split == name:
                if starts:
                    got.append("")
                got[-1] += text
        assert got == expected


def test_text_file_is_read_in_bounded_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus, "_READ_CHARS", 1000)  # many read blocks, so block edges fall everywhere
    text = "".join(f"\ufeffline {i} ☃\r\n  indented\rnext\n" for i in range(3000))
    f = tmp_path / "big.txt"
    f.write_bytes(b"\xef\xbb\xbf" + text.encode())
    pieces = list(iter_text_file(f, 500))
    assert pieces == split_at_line_starts(text.replace("\r\n", "\n").replace("\r", "\n"), 500)  # same cuts
    assert max(map(len, pieces)) < 600 and len(pieces) > 100
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a" * 2500 + "é".encode("latin-1") + b"b" * 10)
    with pytest.raises(GrowkitError, match=r"is not valid UTF-8 \(byte 2500\)"):
        list(iter_text_file(bad, 500))


def _read_peak(path: Path) -> tuple[int, int]:
    """(characters read, peak bytes allocated meanwhile) for one full pass over a source's documents."""
    source = open_source(path)
    tracemalloc.start()
    n_chars = sum(len(piece) for doc in source.documents() for piece in doc)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return n_chars, peak


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
def test_reading_a_source_holds_one_piece_not_the_corpus(tmp_path: Path, fmt: str) -> None:
    peaks = []
    for n_docs in (16, 64):  # documents of ~0.34 MB: ~5 MB, then ~21 MB
        docs = [DOCS[0] * 100] * n_docs
        path = tmp_path / f"{n_docs}"
        path = write_jsonl(path.with_suffix(".jsonl"), docs) if fmt == "jsonl" else write_text_folder(path, docs)
        n_chars, peak = _read_peak(path)
        assert n_chars == sum(map(len, docs))
        peaks.append(peak)
    assert peaks[1] < 1.2 * peaks[0] and peaks[1] < 0.25 * n_chars  # flat in the corpus size


def test_unknown_home_folder(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match=r"data.path '~no-such-user-0/x' names a home folder that does not exist"):
        open_source("~no-such-user-0/x")
    with pytest.raises(GrowkitError, match=r"tokenizer folder '~0' names a home folder that does not exist"):
        prepare_data("hf:~0", tmp_path)
