"""Tokenizers behind ``data.tokenizer``: ``"bpe"`` (shipped), ``"byte"`` and ``"hf:DIR"``.

Every tokenizer encodes plain text to ids without adding any special token of its own (no BOS, no
``[CLS]``); the dataset inserts ``eot_id`` between documents itself. Special-token *strings* that
appear in the text (say a literal ``[MASK]``) are encoded as ordinary text, so user data can never
inject control tokens, and ``decode(encode(text)) == text`` for the byte-level tokenizers.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from growkit.data.corpus import user_path
from growkit.errors import GrowkitError

__all__ = [
    "BPE_FILE",
    "EOT",
    "MASK",
    "PAD",
    "SPECIAL_TOKENS",
    "ByteTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "load_tokenizer",
]

EOT = "<|endoftext|>"
MASK = "[MASK]"
PAD = "[PAD]"
#: The special tokens of growkit's own tokenizers, in id order (``bpe``: 0, 1, 2; ``byte``: 256, 257, 258).
SPECIAL_TOKENS = (EOT, MASK, PAD)
#: The shipped byte-level BPE, a ``tokenizers`` JSON file inside this package.
BPE_FILE = "bpe-shakespeare-8k.json"

# Looked up in this order in a Hugging Face tokenizer; the first one present wins.
_EOT_CANDIDATES = (EOT, "<|end_of_text|>", "</s>", "<eos>", "[SEP]", "<|eot_id|>", "<|im_end|>")
_MASK_CANDIDATES = (MASK, "<mask>")
_PAD_CANDIDATES = (PAD, "<pad>", "<|pad|>", "<|finetune_right_pad_id|>")
_UNKNOWN_HINT = "use 'bpe', 'byte' or 'hf:DIR'"


def _as_id_list(ids: Iterable[int] | Any) -> list[int]:
    """Ids given as a list, a numpy array or a (CPU) torch tensor, as a flat list of ints."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(i) for i in ids]


class Tokenizer(ABC):
    """What growkit needs from a tokenizer.

    Attributes:
        name: the spec it was loaded from (``"bpe"``, ``"byte"``, ``"hf:/abs/dir"``).
        vocab_size: one more than the largest id it can produce (the model's embedding rows).
        eot_id: the end-of-text id put between documents, or None if the tokenizer has none.
        mask_id: the id MLM puts in place of hidden tokens, or None (then MLM cannot be trained).
        pad_id: the padding id, or None.
    """

    name: str
    vocab_size: int
    eot_id: int | None
    mask_id: int | None
    pad_id: int | None

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ``text``, with no special tokens added."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (a list, numpy array or CPU tensor); special ids come back as their strings."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """A hex digest that changes whenever the id assignment changes (used to key token caches)."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``[encode(t) for t in texts]``, possibly in parallel."""
        return [self.encode(t) for t in texts]

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Like :meth:`encode_batch`, but each result is an ``int64`` numpy array (the fast path)."""
        return [np.asarray(ids, dtype=np.int64) for ids in self.encode_batch(texts)]

    @property
    def special_ids(self) -> tuple[int, ...]:
        """The distinct ids among ``eot_id``, ``mask_id`` and ``pad_id`` (sorted)."""
        return tuple(sorted({i for i in (self.eot_id, self.mask_id, self.pad_id) if i is not None}))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size}, eot_id={self.eot_id}, "
            f"mask_id={self.mask_id}, pad_id={self.pad_id})"
        )


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0..255, then ``<|endoftext|>`` = 256, ``[MASK]`` = 257, ``[PAD]`` = 258."""

    def __init__(self) -> None:
        self.name = "byte"
        self.vocab_size = 256 + len(SPECIAL_TOKENS)
        self.eot_id, self.mask_id, self.pad_id = 256, 257, 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        arr = np.asarray(_as_id_list(ids), dtype=np.int64)
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            raise GrowkitError(
                f"token id {int(arr[bad][0])} is out of range for the byte tokenizer: ids must be in "
                f"0..{self.vocab_size - 1}"
            )
        special = np.flatnonzero(arr >= 256)
        parts, start = [], 0
        for pos in [*special.tolist(), len(arr)]:
            parts.append(arr[start:pos].astype(np.uint8).tobytes().decode("utf-8", errors="replace"))
            if pos < len(arr):
                parts.append(SPECIAL_TOKENS[int(arr[pos]) - 256])
            start = pos + 1
        return "".join(parts)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(("byte:" + ",".join(SPECIAL_TOKENS)).encode()).hexdigest()


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (the shipped BPE, or a Hugging Face ``tokenizer.json``)."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        """Wrap ``tokenizer`` (a ``tokenizers.Tokenizer``); ``name`` is the spec it came from."""
        self._tok = tokenizer
        # A special token's string inside the data is encoded as plain text, never as the control id.
        self._tok.encode_special_tokens = True
        self.name = name
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        self.eot_id = self._first_id(_EOT_CANDIDATES)
        self.mask_id = self._first_id(_MASK_CANDIDATES)
        self.pad_id = self._first_id(_PAD_CANDIDATES)
        self._fingerprint = hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()

    def _first_id(self, candidates: Sequence[str]) -> int | None:
        for token in candidates:
            token_id = self._tok.token_to_id(token)
            if token_id is not None:
                return int(token_id)
        return None

    @property
    def backend(self) -> Any:
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._tok

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def _encodings(self, texts: Sequence[str]) -> list[Any]:
        # encode_batch_fast (tokenizers >= 0.21) skips computing offsets; same ids.
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return list(encode(list(texts), add_special_tokens=False))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._encodings(texts)]

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in self._encodings(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return str(self._tok.decode(_as_id_list(ids), skip_special_tokens=False))

    @property
    def fingerprint(self) -> str:
        return self._fingerprint


def _load_json_tokenizer(source: str | Path, text: str | None = None) -> Any:
    """``tokenizers.Tokenizer`` from a file (or from ``text``), with a clear error if it is not one."""
    from tokenizers import Tokenizer as _Backend

    try:
        return _Backend.from_str(text) if text is not None else _Backend.from_file(str(source))
    except Exception as err:  # tokenizers raises a bare Exception for bad files
        raise GrowkitError(
            f"'{source}' is not a valid tokenizers JSON file ({err}): save it with "
            "tokenizer.save_pretrained(DIR) or tokenizers.Tokenizer.save(path)"
        ) from None


def shipped_bpe_text() -> str:
    """The JSON of the shipped Shakespeare BPE."""
    resource = importlib.resources.files("growkit.data").joinpath(BPE_FILE)
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GrowkitError(
            f"the shipped tokenizer {BPE_FILE} is missing from growkit.data: reinstall growkit or rebuild it "
            "with python -m growkit.data.build_tokenizer"
        ) from None


def _load_hf_dir(spec: str) -> HFTokenizer:
    raw = spec[len("hf:") :].strip()
    if not raw:
        raise GrowkitError(f"tokenizer '{spec}' names no folder: write 'hf:DIR' with DIR holding tokenizer.json")
    path = user_path(raw, "tokenizer folder")
    if not path.exists():
        raise GrowkitError(
            f"tokenizer folder '{raw}' does not exist: point 'hf:DIR' at a folder holding tokenizer.json"
        )
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise GrowkitError(
            f"tokenizer folder '{raw}' has no tokenizer.json: save a fast tokenizer there "
            "(tokenizer.save_pretrained(DIR) in transformers) or point 'hf:DIR' at another folder"
        )
    tokenizer = HFTokenizer(_load_json_tokenizer(file), name=f"hf:{path.resolve()}")
    if tokenizer.vocab_size == 0:
        raise GrowkitError(f"tokenizer '{file}' has an empty vocabulary: use a trained tokenizer.json")
    return tokenizer


def load_tokenizer(spec: str) -> Tokenizer:
    """The tokenizer named by ``data.tokenizer``: ``"bpe"``, ``"byte"`` or ``"hf:DIR"``.

    ``"bpe"`` is growkit's byte-level BPE (vocab 8192) trained on the bundled Shakespeare corpus and
    shipped in the package; ``"byte"`` is raw UTF-8 bytes (vocab 259); ``"hf:DIR"`` loads
    ``DIR/tokenizer.json`` (or DIR itself if it is a file) with the ``tokenizers`` library.

    Raises:
        GrowkitError: for an unknown spec or a missing/invalid tokenizer file.
    """
    if not isinstance(spec, str):
        raise GrowkitError(f"tokenizer must be a string, got {type(spec).__name__}: {_UNKNOWN_HINT}")
    spec = spec.strip()
    if spec == "bpe":
        return HFTokenizer(_load_json_tokenizer(BPE_FILE, shipped_bpe_text()), name="bpe")
    if spec == "byte":
        return ByteTokenizer()
    if spec.startswith("hf:"):
        return _load_hf_dir(spec)
    raise GrowkitError(f"unknown tokenizer {spec!r}: {_UNKNOWN_HINT}")
