"""Data for growkit runs: the bundled corpus, tokenizers, cached token files and batches.

Example::

    from growkit.data import prepare_data

    data = prepare_data("bpe")  # Shakespeare + shipped BPE; cached after the first call
    data = prepare_data("bpe", "corpus.jsonl", text_field="text")  # or .parquet, a datasets folder, ...
    batches = data.causal_batches("train", batch_size=32, seq_len=128, seed=0)
    x, y = batches.batch(step)  # a pure function of (seed, step)
    val = data.causal_batches("val", 32, 128).eval_batches(10)  # the same batches every time
    bpb = data.bits_per_byte(val_loss)  # mean loss in nats -> bits per byte
"""

from growkit.data.batches import EVAL_SEED, IGNORE_INDEX, CausalBatches, MLMBatches
from growkit.data.corpus import (
    load_documents,
    markdown_to_text,
    read_text_source,
    shakespeare_plays,
    shakespeare_text,
    split_at_line_starts,
)
from growkit.data.dataset import (
    TokenData,
    bits_per_byte,
    default_cache_dir,
    prepare_data,
    split_documents,
)
from growkit.data.sources import DataSource, open_source
from growkit.data.tokenizer import (
    EOT,
    MASK,
    PAD,
    SPECIAL_TOKENS,
    ByteTokenizer,
    HFTokenizer,
    Tokenizer,
    load_tokenizer,
)

__all__ = [
    "EOT",
    "EVAL_SEED",
    "IGNORE_INDEX",
    "MASK",
    "PAD",
    "SPECIAL_TOKENS",
    "ByteTokenizer",
    "CausalBatches",
    "DataSource",
    "HFTokenizer",
    "MLMBatches",
    "TokenData",
    "Tokenizer",
    "bits_per_byte",
    "default_cache_dir",
    "load_documents",
    "load_tokenizer",
    "markdown_to_text",
    "open_source",
    "prepare_data",
    "read_text_source",
    "shakespeare_plays",
    "shakespeare_text",
    "split_at_line_starts",
    "split_documents",
]
