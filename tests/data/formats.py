"""Writers of one small corpus in every format `data.path` reads (shared by the data-format tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from growkit.data import load_tokenizer

#: The documents every format below holds (the same text, so every format tokenizes to the same ids).
DOCS = [
    "".join(f"{name} line {i}: to be or not to be, that is the question\n" for i in range(60))
    for name in ("alpha", "beta", "gamma", "delta")
]


def write_jsonl(path: Path, docs: list[str] = DOCS, field: str = "text") -> Path:
    path.write_text("".join(json.dumps({"id": i, field: d}) + "\n" for i, d in enumerate(docs)), encoding="utf-8")
    return path


def write_text_folder(folder: Path, docs: list[str] = DOCS) -> Path:
    folder.mkdir()
    for i, doc in enumerate(docs):
        (folder / f"{i:02d}.txt").write_text(doc, encoding="utf-8")
    return folder


def write_parquet(path: Path, docs: list[str] = DOCS) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), path, row_group_size=2)
    return path


def write_parquet_folder(folder: Path, docs: list[str] = DOCS) -> Path:
    folder.mkdir()
    write_parquet(folder / "part-0.parquet", docs[:2])
    write_parquet(folder / "part-1.parquet", docs[2:])
    return folder


def write_saved_dataset(folder: Path, docs: list[str] = DOCS, as_dict: bool = False) -> Path:
    import datasets

    ds = datasets.Dataset.from_dict({"id": list(range(len(docs))), "text": docs})
    (datasets.DatasetDict({"train": ds}) if as_dict else ds).save_to_disk(str(folder))
    return folder


def write_bins(folder: Path, tokenizer: str = "byte", docs: list[str] = DOCS) -> Path:
    """nanoGPT's layout: train.bin / val.bin of uint16 ids (documents joined by the end-of-text id)."""
    tok = load_tokenizer(tokenizer)
    ids: list[int] = []
    for doc in docs:
        ids += [*tok.encode(doc), tok.eot_id]
    cut = len(ids) * 9 // 10
    folder.mkdir()
    np.array(ids[:cut], dtype=np.uint16).tofile(folder / "train.bin")
    np.array(ids[cut:], dtype=np.uint16).tofile(folder / "val.bin")
    return folder
