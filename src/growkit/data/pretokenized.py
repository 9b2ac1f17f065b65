"""nanoGPT's pre-tokenized data: a folder with ``train.bin`` and ``val.bin``, raw ``uint16`` token ids.

These are the files nanoGPT's ``prepare.py`` scripts write (``np.memmap(..., dtype=np.uint16)``, no header).
They are used as they are (memory-mapped, never copied) with the tokenizer named by ``data.tokenizer``;
every id is checked against that tokenizer's vocabulary before training, in blocks, so a 10 GB file is
scanned without being loaded. The text is not at hand, so bits per byte cannot be computed for this data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from growkit.data.tokenizer import Tokenizer
from growkit.errors import GrowkitError

__all__ = ["BIN_DTYPE", "SPLIT_FILES", "check_ids", "open_token_bins"]

BIN_DTYPE = np.dtype(np.uint16)
SPLIT_FILES = {"train": "train.bin", "val": "val.bin"}
_SCAN = 1 << 24  # ids checked per block


def check_ids(ids: np.ndarray, vocab_size: int, where: str, tokenizer_name: str) -> None:
    """Raise if any id in ``ids`` is ``>= vocab_size``, naming the first such id and its position."""
    for start in range(0, len(ids), _SCAN):
        block = np.asarray(ids[start : start + _SCAN])
        if block.size and int(block.max()) >= vocab_size:
            pos = int(np.argmax(block >= vocab_size))
            raise GrowkitError(
                f"{where} holds token id {int(block[pos])} at position {start + pos}, outside the vocabulary of "
                f"tokenizer '{tokenizer_name}' (0..{vocab_size - 1}): set data.tokenizer to the tokenizer that "
                "made the .bin files (for nanoGPT's GPT-2 data: hf:DIR with GPT-2's tokenizer.json)"
            )


def _open_bin(file: Path) -> np.memmap:
    if not file.is_file():
        raise GrowkitError(
            f"'{file}' is missing: a nanoGPT data folder holds both train.bin and val.bin (uint16 token ids)"
        )
    size = file.stat().st_size
    if size == 0 or size % BIN_DTYPE.itemsize:
        raise GrowkitError(
            f"'{file}' is not a file of uint16 token ids ({size} bytes, not a positive even number): write it "
            "with np.array(ids, dtype=np.uint16).tofile(path), as nanoGPT's prepare.py does"
        )
    return np.memmap(file, dtype=BIN_DTYPE, mode="r", shape=(size // BIN_DTYPE.itemsize,))


def open_token_bins(folder: Path, tokenizer: Tokenizer) -> tuple[dict[str, np.memmap], dict[str, Any]]:
    """The two splits of a nanoGPT data folder as memmaps, checked, and the ``meta`` that describes them.

    Raises:
        GrowkitError: for a missing or odd-sized file, or an id outside ``tokenizer``'s vocabulary.
    """
    arrays = {split: _open_bin(folder / name) for split, name in SPLIT_FILES.items()}
    for split, ids in arrays.items():
        check_ids(ids, tokenizer.vocab_size, f"'{folder / SPLIT_FILES[split]}'", tokenizer.name)
    meta = {
        "format": "bin",
        "tokenizer": tokenizer.name,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.eot_id,
        "dtype": BIN_DTYPE.name,
        "source": str(folder.resolve()),
        "splits": {s: {"n_tokens": len(a), "n_bytes": None, "n_documents": None} for s, a in arrays.items()},
    }
    return arrays, meta
