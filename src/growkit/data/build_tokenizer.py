"""Train the shipped byte-level BPE on the bundled Shakespeare corpus.

    python -m growkit.data.build_tokenizer            # rewrite src/growkit/data/bpe-shakespeare-8k.json
    python -m growkit.data.build_tokenizer --check    # retrain and compare with the shipped file

Training is deterministic: the same corpus and settings give a byte-identical file (checked with 1 and 2
threads; the command line pins rayon to one thread anyway). Training takes a few seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from growkit.data.corpus import shakespeare_plays, split_at_line_starts
from growkit.data.tokenizer import BPE_FILE, SPECIAL_TOKENS

__all__ = ["VOCAB_SIZE", "bpe_json", "main", "train_bpe"]

VOCAB_SIZE = 8192
_CHUNK_CHARS = 1 << 16


def train_bpe(documents: Sequence[str], vocab_size: int = VOCAB_SIZE) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``documents``.

    GPT-2 style: ByteLevel pre-tokenizer (GPT-2 regex, no prefix space) and decoder, all 256 bytes in
    the alphabet, and :data:`SPECIAL_TOKENS` as ids 0, 1, 2. ``vocab_size`` counts the special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    chunks = [chunk for doc in documents for chunk in split_at_line_starts(doc, _CHUNK_CHARS)]
    tokenizer.train_from_iterator(chunks, trainer=trainer, length=len(chunks))
    return tokenizer


def bpe_json(vocab_size: int = VOCAB_SIZE) -> str:
    """The JSON text of the BPE trained on the bundled corpus (what ships as :data:`BPE_FILE`)."""
    return str(train_bpe(shakespeare_plays(), vocab_size).to_str(pretty=True)) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry: rebuild (or ``--check``) the shipped tokenizer file."""
    parser = argparse.ArgumentParser(prog="python -m growkit.data.build_tokenizer", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(BPE_FILE), help="output file")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    # Training gave identical files with 1 and 2 threads; one thread rules out any doubt (~1 s slower).
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    text = bpe_json()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'identical' if same else 'DIFFERENT'}")
        return 0 if same else 1
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
