"""Start a training run from a Hugging Face model: ``[model] hf = "DIR"`` with ``data.tokenizer = "hf:DIR"``.

    [model]
    hf = "path/to/save_pretrained_dir"      # or a .gguf file (pip install gguf accelerate)
    [data]
    tokenizer = "hf:path/to/save_pretrained_dir"

The initial model is `from_hf` of the HF model (in float32, the trainer's weight dtype), so its
`TransformerConfig` comes from the HF config: ``[model]`` holds ``hf`` and nothing else — sizes change
through ``[[growth]]`` stages, as in any run. A resumed run loads the folder again and checks that it still
gives the model the checkpoint started from. ``growkit export RUN_DIR --out DIR`` writes the trained model
back as a save_pretrained folder (`growkit.train.export`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from growkit.config import TransformerConfig
from growkit.data import load_tokenizer
from growkit.data.tokenizer import Tokenizer
from growkit.errors import GrowkitError
from growkit.model import Transformer


def check_hf_section(model: dict[str, Any], tokenizer: str) -> None:
    """``[model]`` with ``hf``: only that key, a path string, and a Hugging Face tokenizer in ``data.tokenizer``."""
    hf = model["hf"]
    if not isinstance(hf, str) or not hf.strip():
        raise GrowkitError(f"model.hf must be a path to a save_pretrained folder or a .gguf file, got {hf!r}")
    extra = sorted(set(model) - {"hf"})
    if extra:
        raise GrowkitError(
            f"[model] sets hf = {hf!r} and also {', '.join(extra)}: a model started from Hugging Face takes every "
            f"size and setting from its config.json; remove {', '.join(extra)} from [model] (to change sizes, add "
            f"a [[growth]] stage)")
    if not (isinstance(tokenizer, str) and tokenizer.startswith("hf:")):
        raise GrowkitError(
            f"model.hf starts from a pretrained model, but data.tokenizer is {tokenizer!r}: the model needs its own "
            f"tokenizer; set data.tokenizer = 'hf:{hf}'")


def hf_start(model_section: dict[str, Any], tokenizer_spec: str, seq_len: int
             ) -> tuple[Transformer, TransformerConfig, Tokenizer]:
    """(initial model in float32 train mode, its config, the tokenizer) of a run whose ``[model]`` has ``hf``.

    ``tokenizer_spec`` is ``data.tokenizer``: ``"hf:DIR"`` (a folder with tokenizer.json), or ``"hf:FILE.gguf"``
    (the GGUF's tokenizer, converted by transformers). Raises `GrowkitError` when the folder is missing, holds
    a class growkit has no adapter for, or does not fit the data (vocabulary, ``data.seq_len``).
    """
    from growkit.adapters import from_hf
    from growkit.adapters.hf_io import load_pretrained

    path = Path(model_section["hf"]).expanduser()
    if not path.exists():
        raise GrowkitError(f"model.hf = {str(path)!r} does not exist: point it at a folder written by "
                           f"save_pretrained (config.json + weights) or at a .gguf file")
    try:
        model = from_hf(load_pretrained(path))
    except GrowkitError as e:
        raise GrowkitError(f"model.hf = {str(path)!r}: {e}") from None
    model = model.to(torch.float32).train()
    cfg = model.cfg
    tokenizer = _tokenizer(tokenizer_spec)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise GrowkitError(f"data.tokenizer {tokenizer_spec!r} has {tokenizer.vocab_size} ids but the model of "
                           f"model.hf embeds {cfg.vocab_size}: use the model's own tokenizer (hf:{path})")
    if seq_len > cfg.max_seq_len:
        raise GrowkitError(f"data.seq_len {seq_len} exceeds the max_seq_len {cfg.max_seq_len} of the model in "
                           f"model.hf: lower data.seq_len to at most {cfg.max_seq_len}")
    return model, cfg, tokenizer


def _tokenizer(spec: str) -> Tokenizer:
    """``load_tokenizer(spec)``; a ``hf:FILE.gguf`` is first converted to tokenizer.json by transformers."""
    raw = Path(spec[len("hf:"):].strip()).expanduser()
    if raw.suffix != ".gguf" or not raw.is_file():
        return load_tokenizer(spec)
    from growkit.adapters._common import transformers_module

    with tempfile.TemporaryDirectory() as tmp:
        try:
            converted = transformers_module().AutoTokenizer.from_pretrained(
                raw.parent, gguf_file=raw.name, local_files_only=True)
        except (ImportError, ValueError, OSError) as e:
            raise GrowkitError(f"cannot read the tokenizer of {raw} ({e}): pip install gguf accelerate") from None
        converted.save_pretrained(tmp)
        tokenizer = load_tokenizer(f"hf:{tmp}")
    tokenizer.name = f"hf:{raw.resolve()}"
    return tokenizer
