"""A training run's model out as a Hugging Face folder: ``growkit export RUN_DIR --out DIR [--base HF_DIR]``.

The checkpoint's model (the grown one, after ``[[growth]]`` stages) is exported with `to_hf` and written by
`growkit.adapters.hf_io.save_pretrained`, so ``from_pretrained(DIR)`` loads it with no missing or
unexpected keys. The base — ``--base``, else the run's ``model.hf`` — gives the class, the non-structural
config fields (token ids) and the generation config; without one the class follows the arch. The tokenizer
the run trained with comes along: ``data.tokenizer = "hf:DIR"`` is copied; growkit's shipped ``bpe`` is
written as a tokenizer.json that ``AutoTokenizer`` loads; ``byte`` has no Hugging Face form and is left out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from growkit.config import TransformerConfig
from growkit.data.tokenizer import EOT, MASK, PAD, shipped_bpe_text
from growkit.errors import GrowkitError
from growkit.model import Transformer
from growkit.train.checkpoint import read_checkpoint
from growkit.train.runlock import RunLock


def export_run(source: str | Path, out: str | Path, base: str | Path | None = None,
               force_unlock: bool = False) -> dict[str, Any]:
    """Write the model of checkpoint ``source`` (a checkpoint dir, or a run dir: its latest) to ``out`` as a
    save_pretrained folder; reload it with transformers and compare logits.

    ``out`` is locked while it is written (`growkit.train.runlock`, from beside it); ``source`` is only read
    (a complete checkpoint, even while its run trains) and takes no lock. Returns ``{"out", "hf_class",
    "step", "params", "tokenizer", "max_abs_dlogits"}`` (the last: float32 logits of the reloaded folder vs
    growkit's on a fixed random batch).
    """
    with RunLock(Path(out), beside=True, force=force_unlock):
        return _export(source, out, base)


def _export(source: str | Path, out: str | Path, base: str | Path | None) -> dict[str, Any]:
    from growkit.adapters.hf_io import load_pretrained, save_pretrained

    ckpt = read_checkpoint(Path(source))
    model = Transformer(TransformerConfig.from_dict(ckpt.state["model_config"], where="checkpoint model_config"))
    ckpt.load_model(model)
    if model.masks():
        s = ckpt.state
        end = (s.get("ramp_start") or 0) + (s.get("ramp_steps") or 0)
        raise GrowkitError(
            f"checkpoint {ckpt.path} (step {ckpt.step}) was saved during the mask ramp of a masked growth, which "
            f"has no Hugging Face equivalent: export a checkpoint saved after the ramp ends (step {end}), e.g. "
            f"continue the run with --resume and a larger budget, or use a strict method (zero, split) there")
    run = ckpt.state.get("run_config") or {}
    base = base if base is not None else run.get("model", {}).get("hf")
    like = load_pretrained(base) if base is not None else None
    tokenizer = (run.get("data") or {}).get("tokenizer", "bpe")
    tok_source = Path(tokenizer[len("hf:"):]) if tokenizer.startswith("hf:") else None
    tok_file = tok_source if tok_source is not None and tok_source.is_file() and tok_source.suffix != ".gguf" else None
    out = save_pretrained(model.eval(), out, like=like, source=tok_source if tok_file is None else None)
    if tok_file is not None:  # hf:FILE.json: a tokenizer.json under another name
        shutil.copy2(tok_file, out / "tokenizer.json")
    elif tokenizer == "bpe":
        _write_shipped_bpe(out)
    hf_class = like.__class__.__name__ if like is not None else json.loads((out / "config.json").read_text())[
        "architectures"][0]
    return {"out": str(out), "hf_class": hf_class, "step": ckpt.step, "params": model.num_params(),
            "tokenizer": tokenizer if tokenizer != "byte" else None, "max_abs_dlogits": _check(model, out)}


def _write_shipped_bpe(out: Path) -> None:
    """growkit's bundled BPE as tokenizer.json + tokenizer_config.json (``AutoTokenizer.from_pretrained`` loads it)."""
    (out / "tokenizer.json").write_text(shipped_bpe_text(), encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT, "mask_token": MASK,
              "pad_token": PAD}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


@torch.no_grad()
def _check(model: Transformer, out: Path) -> float:
    """max |Δlogits| between growkit's model and the folder as transformers loads it (float32, eager)."""
    from growkit.adapters.hf_io import load_pretrained

    hf = load_pretrained(out, attn_implementation="eager")
    ids = torch.randint(0, model.cfg.vocab_size, (2, min(16, model.cfg.max_seq_len)),
                        generator=torch.Generator().manual_seed(0))
    ours = model.eval()(ids)[0]
    if model.cfg.arch == "bert" and not hasattr(hf, "cls"):  # BertModel: compare the hidden states
        return float((hf(input_ids=ids).last_hidden_state - model.hidden_states(ids)).abs().max())
    return float((hf(input_ids=ids).logits - ours).abs().max())
