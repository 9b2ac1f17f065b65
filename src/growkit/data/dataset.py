"""Tokenize a corpus once, cache the ids on disk, and read them back as memory maps.

The split is made on the *text*, before tokenization: the last ``val_fraction`` of the corpus's UTF-8
bytes (cut at the start of a line, so possibly inside the last documents) is validation, the rest is
training. Every tokenizer therefore sees the same validation text, and bits-per-byte figures compare
across tokenizers. Within a split, documents are joined with the tokenizer's end-of-text id.

The cache lives in ``cache_dir`` (default: ``$GROWKIT_CACHE``, else ``~/.cache/growkit``) under
``tokens/<tokenizer>-<key>/``: ``train.bin`` and ``val.bin`` (raw ``uint16`` ids, ``uint32`` for
vocabularies over 65536) and ``meta.json``. The key hashes the source files' names, sizes and mtimes
(for the bundled corpus: its files and the conversion version), the tokenizer's name and vocabulary
fingerprint, and ``val_fraction`` (for ``.jsonl``/Parquet/datasets sources also the format and
``text_field``). nanoGPT ``train.bin``/``val.bin`` folders are used in place, not cached. Files are
written under temporary names and renamed, ``meta.json`` last, so a crashed or concurrent writer never
leaves a half-written cache that looks complete (concurrent writers, e.g. several ranks on a cold cache,
each write the same bytes; to avoid the duplicate work, let one rank call :func:`prepare_data` first and
the others after a barrier).

The corpus is streamed, never held whole: long documents are handed to the tokenizer in pieces of about
256 KiB cut at line starts, ~4 M characters at a time, encoded in parallel by the ``tokenizers`` library's
batch encoding (its own Rust thread pool: ``RAYON_NUM_THREADS`` threads, one per core by default; set
``TOKENIZERS_PARALLELISM=false`` to encode on one thread). For byte-level BPE (``bpe``, GPT-2-like
``hf:`` tokenizers) and ``byte`` this gives exactly the ids of encoding whole documents; a
SentencePiece-style ``hf:`` tokenizer may tokenize the first word of a piece slightly differently (a few
tokens per 256 KiB).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from growkit.data.batches import CausalBatches, MLMBatches
from growkit.data.corpus import user_path
from growkit.data.pretokenized import open_token_bins
from growkit.data.sources import DataSource, Document, open_source
from growkit.data.tokenizer import Tokenizer, load_tokenizer
from growkit.errors import GrowkitError

__all__ = [
    "CACHE_FORMAT",
    "SPLITS",
    "TokenData",
    "bits_per_byte",
    "default_cache_dir",
    "prepare_data",
    "split_documents",
]

#: Bumped whenever the layout or content of cached files changes.
CACHE_FORMAT = 1
SPLITS = ("train", "val")
_GROUP_CHARS = 1 << 22  # characters encoded per batch call (in parallel), bounding memory for big corpora
_LINE_START = re.compile(rb"\n(?=\S)")


def bits_per_byte(loss_nats: float, n_tokens: int, n_bytes: int) -> float:
    """Mean cross-entropy per token (nats) as bits per UTF-8 byte: ``loss * n_tokens / (n_bytes ln 2)``."""
    return loss_nats * n_tokens / (n_bytes * math.log(2))


def default_cache_dir() -> Path:
    """``$GROWKIT_CACHE`` if set, else ``~/.cache/growkit``."""
    env = os.environ.get("GROWKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "growkit"


@dataclass(eq=False)
class TokenData:
    """A tokenized corpus: the two splits as read-only memmaps of ids, plus their sizes.

    Attributes:
        train, val: 1-D ``np.memmap`` of ids (``uint16`` or ``uint32``).
        tokenizer: the tokenizer that made them.
        meta: what ``meta.json`` holds (``n_tokens``/``n_bytes``/``n_documents`` per split, ...).
        directory: the cache folder of these files.
        cached: True when this call found the files already made (no tokenization happened).
    """

    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer
    meta: dict[str, Any]
    directory: Path
    cached: bool = field(default=False)

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (the model's ``vocab_size``)."""
        return int(self.meta["vocab_size"])

    def split(self, name: str) -> np.ndarray:
        """``train`` or ``val`` by name."""
        if name not in SPLITS:
            raise GrowkitError(f"unknown split '{name}': use 'train' or 'val'")
        return self.train if name == "train" else self.val

    def n_tokens(self, split: str) -> int:
        """Tokens in ``split``, end-of-text separators included."""
        self.split(split)
        return int(self.meta["splits"][split]["n_tokens"])

    @property
    def has_text_sizes(self) -> bool:
        """False for pre-tokenized data (nanoGPT ``.bin``), whose text, so its size in bytes, is unknown."""
        return all(self.meta["splits"][s].get("n_bytes") is not None for s in SPLITS)

    def n_bytes(self, split: str) -> int:
        """UTF-8 bytes of the text of ``split`` (separators not counted)."""
        self.split(split)
        if not self.has_text_sizes:
            raise GrowkitError(
                "this data came pre-tokenized (.bin), so its size in bytes is unknown: bits per byte need a text "
                "source (data.path to text, .jsonl, .parquet or a datasets folder)"
            )
        return int(self.meta["splits"][split]["n_bytes"])

    def bytes_per_token(self, split: str = "val") -> float:
        """Average UTF-8 bytes per token of ``split``."""
        return self.n_bytes(split) / self.n_tokens(split)

    def bits_per_byte(self, loss_nats: float, split: str = "val") -> float:
        """A mean per-token loss (nats) on ``split`` as bits per byte."""
        return bits_per_byte(loss_nats, self.n_tokens(split), self.n_bytes(split))

    def causal_batches(self, split: str, batch_size: int, seq_len: int, seed: int = 0) -> CausalBatches:
        """:class:`CausalBatches` over ``split``."""
        return CausalBatches(self.split(split), batch_size, seq_len, seed, label=f"the {split} split")

    def mlm_batches(
        self, split: str, batch_size: int, seq_len: int, seed: int = 0, mask_prob: float = 0.15
    ) -> MLMBatches:
        """:class:`MLMBatches` over ``split``, with this tokenizer's mask and special ids."""
        tok = self.tokenizer
        return MLMBatches(
            self.split(split), batch_size, seq_len, seed, tok.vocab_size, tok.mask_id, mask_prob,
            special_ids=tok.special_ids, label=f"the {split} split",
        )  # fmt: skip


def _check_fraction(val_fraction: float) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise GrowkitError(f"val_fraction must be a number, got {val_fraction!r}: use e.g. 0.05")
    if not 0.0 < val_fraction < 1.0:
        raise GrowkitError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}: use e.g. 0.05")
    return float(val_fraction)


def split_documents(documents: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """Split a corpus into (train, val) documents: val is the last ``val_fraction`` of its UTF-8 bytes.

    The cut is at the first line start at or after the target byte (else the last one before it, else
    the nearest character boundary), so the document it falls in is shared between the two splits.

    Raises:
        GrowkitError: if either side would be empty.
    """
    val_fraction = _check_fraction(val_fraction)
    encoded = [doc.encode("utf-8") for doc in documents]
    total = sum(len(b) for b in encoded)
    target = total - round(total * val_fraction)  # bytes that go to train
    seen = 0
    for k, data in enumerate(encoded):
        if seen + len(data) > target:
            cut = _cut_point(data, target - seen)
            head, tail = data[:cut].decode("utf-8"), data[cut:].decode("utf-8")
            train = [*documents[:k], head] if head else list(documents[:k])
            val = [tail, *documents[k + 1 :]] if tail else list(documents[k + 1 :])
            break
        seen += len(data)
    else:
        train, val = list(documents), []
    if not train or not val:
        raise GrowkitError(
            f"the corpus ({total} bytes) is too small to split with val_fraction {val_fraction}: "
            "add more text or change val_fraction"
        )
    return train, val


def _cut_point(data: bytes, target: int) -> int:
    """A byte position in ``data`` near ``target`` where a line starts (see :func:`split_documents`)."""
    if target <= 0:
        return 0
    after = _LINE_START.search(data, target - 1)
    if after is not None:
        return after.end()
    before = [m.end() for m in _LINE_START.finditer(data, 0, target)]
    if before:
        return before[-1]
    while 0 < target < len(data) and data[target] & 0xC0 == 0x80:  # not inside a UTF-8 sequence
        target += 1
    return target


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[-40:] or "tok"


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _piece_cut(data: bytes, p: int, first: bool, last: bool) -> int:
    """:func:`_cut_point` of a whole document, computed from the one piece that holds the target byte.

    ``data`` is the piece, ``p`` the target's offset in it (``0 <= p < len(data)``); ``first`` / ``last``
    say whether the piece starts / ends its document. Pieces begin at line starts, so a piece boundary
    is itself a line start: the first one after the target is the piece's end if nothing inside matches
    (and the document goes on), the last one before it is the piece's start.
    """
    if p == 0:
        return 0
    after = _LINE_START.search(data, p - 1)
    if after is not None:
        return after.end()
    if not last:
        return len(data)
    before = [m.end() for m in _LINE_START.finditer(data, 0, p)]
    if before:
        return before[-1]
    if not first:
        return 0
    while 0 < p < len(data) and data[p] & 0xC0 == 0x80:  # not inside a UTF-8 sequence
        p += 1
    return p


def _with_last(pieces: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """``(piece, is_last)`` pairs."""
    it = iter(pieces)
    current = next(it, None)
    while current is not None:
        following = next(it, None)
        yield current, following is None
        current = following


def split_stream(documents: Iterable[Document], train_bytes: int) -> Iterator[tuple[str, bool, str]]:
    """The corpus as ``(split, starts_document, piece)``: the first ``train_bytes`` bytes (moved to a line
    start exactly as :func:`split_documents` moves them) are ``"train"``, the rest ``"val"``.

    Streams: holds one piece at a time. ``starts_document`` is True on the first piece of each document of
    a split (the document that holds the cut starts one in each split).
    """
    seen, split = 0, "train"
    for doc in documents:
        starts = True
        for index, (piece, last) in enumerate(_with_last(doc)):
            size = _utf8_len(piece)
            if split == "train" and seen + size > train_bytes:
                data = piece.encode("utf-8")
                cut = _piece_cut(data, train_bytes - seen, index == 0, last)
                head, tail = data[:cut].decode("utf-8"), data[cut:].decode("utf-8")
                if head:
                    yield "train", starts, head
                split, starts = "val", True
                if tail:
                    yield "val", True, tail
                    starts = False
            else:
                yield split, starts, piece
                starts = False
            seen += size


class _SplitWriter:
    """Encodes the pieces of one split in parallel batches and appends the ids to a file."""

    def __init__(self, tokenizer: Tokenizer, fh: Any, dtype: np.dtype) -> None:
        self.tok, self.fh, self.dtype = tokenizer, fh, dtype
        self.n_tokens = self.n_bytes = self.n_documents = 0
        self._group: list[str | int] = []
        self._chars = 0

    def add(self, starts_document: bool, piece: str) -> None:
        if starts_document:
            if self.n_documents and self.tok.eot_id is not None:
                self._group.append(self.tok.eot_id)
            self.n_documents += 1
        self._group.append(piece)
        self._chars += len(piece)
        self.n_bytes += _utf8_len(piece)
        if self._chars >= _GROUP_CHARS:
            self.flush()

    def flush(self) -> None:
        texts = [p for p in self._group if isinstance(p, str)]
        encoded = iter(self.tok.encode_arrays(texts))  # tokenizers: encode_batch on its own thread pool
        parts = [next(encoded) if isinstance(p, str) else np.array([p], dtype=np.int64) for p in self._group]
        ids = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        ids.astype(self.dtype).tofile(self.fh)
        self.n_tokens += len(ids)
        self._group.clear()
        self._chars = 0


def _open_cached(directory: Path, tokenizer: Tokenizer) -> TokenData | None:
    """The cached data in ``directory`` if complete and consistent, else None."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != CACHE_FORMAT:
            return None
        dtype = np.dtype(meta["dtype"])
        arrays = {}
        for split in SPLITS:
            file = directory / f"{split}.bin"
            n = int(meta["splits"][split]["n_tokens"])
            if n == 0 or file.stat().st_size != n * dtype.itemsize:
                return None
            arrays[split] = np.memmap(file, dtype=dtype, mode="r", shape=(n,))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return TokenData(arrays["train"], arrays["val"], tokenizer, meta, directory, cached=True)


def prepare_data(
    tokenizer: Tokenizer | str,
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    val_fraction: float = 0.05,
    text_field: str = "text",
) -> TokenData:
    """Tokenize a corpus into cached train/val id files, or open them if already made.

    Args:
        tokenizer: a :class:`Tokenizer` or a spec for :func:`load_tokenizer` (``"bpe"``, ...).
        path: ``data.path``: a text file or a folder of ``.txt``/``.md`` files, a ``.jsonl`` or ``.parquet``
            file (or folder of them), a ``datasets.save_to_disk`` folder, or nanoGPT's folder of
            ``train.bin``/``val.bin`` (used as is, not cached); None for the bundled Shakespeare corpus
            (see `growkit.data.sources`).
        cache_dir: where the token files live; default ``$GROWKIT_CACHE`` or ``~/.cache/growkit``.
        val_fraction: the share of the corpus's bytes (at its end) used for validation.
        text_field: the JSON field / column that holds the text (``.jsonl``, ``.parquet``, datasets).

    The text is read twice, streaming (once to count its bytes, which places the validation cut, once to
    tokenize it), and never held whole in memory; every bad line or file is reported by the first pass,
    before anything is tokenized.

    Raises:
        GrowkitError: for a bad path, file, tokenizer or fraction, a corpus too small to split, ids outside
            the vocabulary (``.bin``), or a cache folder that cannot be written.
    """
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    val_fraction = _check_fraction(val_fraction)
    source = open_source(path, text_field)
    if source.format == "bin":
        assert source.path is not None
        arrays, meta = open_token_bins(source.path, tok)
        return TokenData(arrays["train"], arrays["val"], tok, meta, source.path, cached=True)
    key_fields = {
        "format": CACHE_FORMAT,
        "source": source.key(),
        "tokenizer": tok.name,
        "tokenizer_fingerprint": tok.fingerprint,
        "val_fraction": val_fraction,
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    root = user_path(cache_dir, "cache_dir") if cache_dir is not None else default_cache_dir()
    directory = root / "tokens" / f"{_slug(tok.name)}-{key}"
    cached = _open_cached(directory, tok)
    if cached is not None:
        return cached
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GrowkitError(
            f"cannot create the token cache folder '{directory}' ({err.strerror}): set GROWKIT_CACHE "
            "(or the cache_dir argument) to a writable folder"
        ) from None
    _build(tok, source, val_fraction, directory, key_fields)
    data = _open_cached(directory, tok)
    if data is None:  # pragma: no cover - only if the files vanish between write and read
        raise GrowkitError(f"the token cache in '{directory}' could not be read back: delete it and retry")
    data.cached = False
    return data


def _count_bytes(source: DataSource) -> int:
    """UTF-8 bytes of the corpus (the first, checking pass over it)."""
    total = n_docs = 0
    for doc in source.documents():
        n_docs += 1
        total += sum(_utf8_len(piece) for piece in doc)
    if not n_docs:
        raise GrowkitError(f"data.path '{source.path}' contains no text: give it a non-empty UTF-8 text file")
    return total


def _build(
    tok: Tokenizer, source: DataSource, val_fraction: float, directory: Path, key_fields: dict[str, Any]
) -> None:
    """Tokenize the corpus into ``directory`` (atomically: temp names, then rename; meta.json last)."""
    start = time.perf_counter()
    total = _count_bytes(source)
    dtype = _dtype_for(tok.vocab_size)
    tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    meta: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "eot_id": tok.eot_id,
        "dtype": dtype.name,
        "val_fraction": val_fraction,
        "source": key_fields["source"],
        "splits": {},
    }
    temps = [directory / f"{name}.bin{tag}" for name in SPLITS]
    try:
        with open(temps[0], "wb") as train_fh, open(temps[1], "wb") as val_fh:
            writers = {"train": _SplitWriter(tok, train_fh, dtype), "val": _SplitWriter(tok, val_fh, dtype)}
            for split, starts, piece in split_stream(source.documents(), total - round(total * val_fraction)):
                writers[split].add(starts, piece)
            for name, writer in writers.items():
                writer.flush()
                if writer.n_documents == 0:
                    raise GrowkitError(
                        f"the corpus ({total} bytes) is too small to split with val_fraction {val_fraction}: "
                        "add more text or change val_fraction"
                    )
                if writer.n_tokens == 0:
                    raise GrowkitError(f"the {name} split encodes to no tokens: give data.path more text")
                meta["splits"][name] = {
                    "n_tokens": writer.n_tokens, "n_bytes": writer.n_bytes, "n_documents": writer.n_documents,
                }  # fmt: skip
        meta["tokenize_seconds"] = round(time.perf_counter() - start, 3)
        for name, tmp in zip(SPLITS, temps, strict=True):
            os.replace(tmp, directory / f"{name}.bin")
        meta_tmp = directory / f"meta.json{tag}"
        temps.append(meta_tmp)
        meta_tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(meta_tmp, directory / "meta.json")
    except OSError as err:
        raise GrowkitError(
            f"cannot write the token cache in '{directory}' ({err.strerror}): set GROWKIT_CACHE "
            "(or the cache_dir argument) to a writable folder with free space"
        ) from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
