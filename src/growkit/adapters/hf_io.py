"""Hugging Face folders and GGUF files in, ``save_pretrained`` folders out (what ``growkit grow --hf`` uses).

    hf = load_pretrained("path/to/dir")                 # or "path/to/model.gguf" (pip install gguf accelerate)
    model = from_hf(hf)                                 # ... grow it ...
    save_pretrained(big, "out/dir", like=hf, source="path/to/dir")

`save_pretrained` exports with `to_hf` (the class and the non-structural config fields of ``like``), keeps
``like``'s generation config, and copies the tokenizer of ``source`` so that the folder is complete.
Nothing reaches for a hub: paths must be local.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from growkit.adapters import CLASSES, to_hf
from growkit.adapters._common import transformers_major, transformers_module
from growkit.errors import GrowkitError
from growkit.model import Transformer

#: The files of a tokenizer that a save_pretrained folder may hold.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja")


def _split_gguf(path: Path) -> tuple[Path, dict[str, str]]:
    """(folder, from_pretrained kwargs) of a save_pretrained folder or a ``.gguf`` file."""
    if path.suffix == ".gguf" and path.is_file():
        return path.parent, {"gguf_file": path.name}
    if not path.is_dir():
        raise GrowkitError(f"{path} is neither a folder written by save_pretrained nor a .gguf file")
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        hint = f" (it holds {ggufs[0].name}: pass that file)" if ggufs else ""
        raise GrowkitError(f"{path} has no config.json: not a Hugging Face model folder{hint}")
    return path, {}


def load_pretrained(path: str | Path, **kwargs: Any) -> Any:
    """The HF model saved in ``path`` (a save_pretrained folder, or a ``.gguf`` file, dequantized to float32),
    loaded with the supported class its config names, in its saved dtype, in eval mode. ``kwargs`` go to
    ``from_pretrained``."""
    tf = transformers_module()
    folder, extra = _split_gguf(Path(path))
    config = tf.AutoConfig.from_pretrained(folder, local_files_only=True, **extra)
    architectures = getattr(config, "architectures", None) or []
    names = [n for n in architectures if n in CLASSES]
    by_type = {"gpt2": "GPT2LMHeadModel", "bert": "BertForMaskedLM", "llama": "LlamaForCausalLM"}
    if not architectures and config.model_type in by_type:  # e.g. a GGUF file: the family's LM class
        names = [by_type[config.model_type]]
    if not names:
        raise GrowkitError(f"{path} holds a {config.model_type!r} model ({', '.join(architectures) or 'no class'}): "
                           f"growkit converts {', '.join(CLASSES)}")
    if not ({"dtype", "torch_dtype"} & kwargs.keys()):  # keep the saved dtype (transformers 5's default)
        kwargs["dtype" if transformers_major() >= 5 else "torch_dtype"] = "auto"
    try:
        model = getattr(tf, names[0]).from_pretrained(folder, local_files_only=True, **extra, **kwargs)
    except (ImportError, ValueError, OSError) as e:  # e.g. a GGUF without `pip install gguf accelerate`
        raise GrowkitError(f"cannot load {path}: {e}") from e
    return model.eval()


def save_pretrained(model: Transformer, out: str | Path, like: Any = None, source: str | Path | None = None) -> Path:
    """Export ``model`` with `to_hf` (as ``like``'s class, keeping ``like``'s token ids and generation config)
    and write a save_pretrained folder to ``out`` (which must not exist or be empty), with the tokenizer of
    ``source`` (a folder: its tokenizer files are copied; a .gguf file: its tokenizer is converted)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GrowkitError(f"{out} exists and is not empty: pick a new output folder")
    hf_class = type(like) if like is not None and type(like).__name__ in CLASSES else None
    hf = to_hf(model, hf_class, base_config=like.config if like is not None else None)
    if like is not None and getattr(like, "generation_config", None) is not None and hf.can_generate():
        hf.generation_config = like.generation_config
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    if source is not None:
        _copy_tokenizer(Path(source), out)
    return out


def _copy_tokenizer(source: Path, out: Path) -> None:
    folder, extra = _split_gguf(source)
    if extra:  # a GGUF file: transformers rebuilds its tokenizer
        tokenizer = transformers_module().AutoTokenizer.from_pretrained(folder, local_files_only=True, **extra)
        tokenizer.save_pretrained(out)
        return
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / name)
