"""Hugging Face models in and out: ``from_hf(hf_model) -> Transformer`` and ``to_hf(model) -> hf_model``.

    import growkit as gk
    from growkit.adapters import from_hf, to_hf
    hf = transformers.AutoModelForCausalLM.from_pretrained(DIR)        # GPT-2 or Llama
    model = from_hf(hf)                                                  # a growkit.Transformer
    big, record = gk.grow(model, gk.GrowthSpec(n_layers=32, d_ff=3072, method="zero"))
    to_hf(big, base_config=hf.config).save_pretrained(OUT)              # loads with from_pretrained

Supported classes: ``GPT2LMHeadModel`` (growkit ``arch="gpt2"``), ``BertForMaskedLM`` and ``BertModel``
(``"bert"``), ``LlamaForCausalLM`` (``"llama"``); one module per family (`hf_gpt2`, `hf_bert`,
`hf_llama`) holds the config mapping and the weight names. Both directions are exact: the converted model
computes the same logits (float64: to rounding for GPT-2 and BERT; to ~1e-6 for Llama, whose RMSNorm,
softmax and RoPE transformers computes in float32).

Conversions copy the tensors (neither model shares storage with the other) and keep dtype, device and
train/eval mode. transformers is imported only when a conversion needs it (``pip install 'growkit[hf]'``).
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import torch

from growkit.adapters import hf_bert, hf_gpt2, hf_llama
from growkit.adapters._common import Link, base_dict, build_hf, set_attn_implementation, transformers_module
from growkit.config import TransformerConfig
from growkit.errors import GrowkitError
from growkit.model import Transformer

__all__ = ["CLASSES", "from_hf", "hf_class_for", "supported_class", "to_hf"]

_FAMILIES: tuple[ModuleType, ...] = (hf_gpt2, hf_bert, hf_llama)
#: HF class name → the family module that converts it.
CLASSES: dict[str, ModuleType] = {name: fam for fam in _FAMILIES for name in fam.CLASSES}
_ARCH = {"gpt2": hf_gpt2, "bert": hf_bert, "llama": hf_llama}


def supported_class(hf_model: Any) -> str:
    """The name of the supported transformers class ``hf_model`` is (or derives from), or a clear error;
    ``CLASSES[name]`` is its family module (``config_from_hf``, ``config_to_hf``, ``links``)."""
    for klass in type(hf_model).__mro__:
        if klass.__name__ in CLASSES and klass.__module__.startswith("transformers."):
            return klass.__name__
    raise GrowkitError(
        f"no growkit adapter for {type(hf_model).__name__}: growkit converts {', '.join(CLASSES)}; load the "
        f"checkpoint with one of these classes (e.g. LlamaForCausalLM.from_pretrained(DIR) for a Llama-style "
        f"causal LM) or build a growkit.Transformer directly")


def hf_class_for(model: Transformer) -> str:
    """The HF class `to_hf` builds by default: by arch; for bert ``BertModel`` when the model has a pooler
    (e.g. a sentence encoder such as all-MiniLM-L6-v2), else ``BertForMaskedLM``."""
    arch = model.cfg.arch
    if arch == "bert":
        return "BertModel" if model.cfg.pooler else "BertForMaskedLM"
    return _ARCH[arch].CLASSES[0]


@torch.no_grad()
def from_hf(hf_model: Any) -> Transformer:
    """A `growkit.Transformer` computing the same function as ``hf_model``.

    ``hf_model`` is a ``GPT2LMHeadModel``, ``BertForMaskedLM``, ``BertModel`` or ``LlamaForCausalLM``
    (or a subclass). Weights are copied in their dtype, on their device; the growkit model is in the same
    train/eval mode. A ``BertModel`` has no MLM head: the growkit model gets a freshly initialised one
    (``seed=0``). Anything the adapter cannot represent exactly is a `GrowkitError` naming why.
    """
    name = supported_class(hf_model)
    family = CLASSES[name]
    cfg: TransformerConfig = family.config_from_hf(hf_model)
    hf_params = dict(hf_model.named_parameters(remove_duplicate=False))
    for pname, p in hf_params.items():
        if not p.dtype.is_floating_point:
            raise GrowkitError(f"{name}.{pname} is {p.dtype}: quantized weights cannot be converted; load the "
                               f"model in a float dtype (dequantized) first")
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in Transformer(cfg).named_parameters()}
    tensors: dict[str, torch.Tensor] = {}
    used: set[int] = set()
    for link in family.links(cfg, name):
        tensors.update(_split(link, hf_params, shapes, name))
        used.update(id(hf_params[n]) for n in (link.hf, *link.also) if n in hf_params)
    unused = sorted(n for n, p in hf_params.items() if id(p) not in used)
    if unused:
        raise GrowkitError(f"{name} has weights the growkit adapter does not place: {', '.join(unused[:5])}"
                           f"{' …' if len(unused) > 5 else ''}; this variant of {name} is not supported")
    like = next(iter(hf_params.values()))
    model = _growkit_model(cfg, tensors, shapes, like)
    return model.train(hf_model.training)


def _split(link: Link, hf_params: dict[str, torch.Tensor], shapes: dict[str, torch.Size],
           class_name: str) -> dict[str, torch.Tensor]:
    """The growkit tensors of one link, read from the HF parameters (copies, contiguous)."""
    if link.hf not in hf_params:
        raise GrowkitError(f"{class_name} has no parameter {link.hf}: its config and weights disagree, or this "
                           f"variant of {class_name} is not supported")
    t = hf_params[link.hf].detach()
    if link.transpose:
        t = t.T
    sizes = [shapes[g][0] for g in link.gk]
    expected = (sum(sizes), *shapes[link.gk[0]][1:])
    if tuple(t.shape) != expected:
        raise GrowkitError(f"{class_name}.{link.hf} has shape {tuple(t.shape)}, expected {expected} from its config")
    return {g: part.clone(memory_format=torch.contiguous_format) for g, part in zip(link.gk, t.split(sizes, 0),
                                                                                      strict=True)}


def _growkit_model(cfg: TransformerConfig, tensors: dict[str, torch.Tensor], shapes: dict[str, torch.Size],
                   like: torch.Tensor) -> Transformer:
    """A Transformer of ``cfg`` holding ``tensors``; parameters the HF model lacks (the MLM head of a
    ``BertModel``) come from a seeded initialisation."""
    missing = [n for n in shapes if n not in tensors]
    if missing:
        fresh = dict(Transformer(cfg, seed=0).named_parameters())
        tensors = {**tensors, **{n: fresh[n].detach().to(like.dtype) for n in missing}}
    with torch.device("meta"):
        model = Transformer(cfg)
    state = dict(tensors)
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    model.reset_buffers()  # the RoPE tables, on the weights' device
    return model


@torch.no_grad()
def to_hf(model: Transformer, hf_class: str | type | None = None, *, base_config: Any = None,
          attn_implementation: str | None = None) -> Any:
    """A transformers model computing the same function as the growkit ``model``, ready for ``save_pretrained``.

    Args:
        model: a `growkit.Transformer` without growth masks (fold them first: a masked growth in progress
            has no HF equivalent).
        hf_class: the class to build, by name or as the class: ``GPT2LMHeadModel`` (gpt2),
            ``LlamaForCausalLM`` (llama), ``BertForMaskedLM`` or ``BertModel`` (bert). Default: by arch; for
            bert ``BertModel`` when the model has a pooler, else ``BertForMaskedLM`` (see `hf_class_for`).
        base_config: an HF config (or model, or dict) whose non-structural fields are kept — special token
            ids, label maps, generation settings — e.g. the config of the model the growkit model came from.
            Every structural field (sizes, eps, activation, RoPE, ties, dropout) is written from
            ``model.cfg``.
        attn_implementation: ``"eager"``, ``"sdpa"``, ...; default: transformers' default.

    The HF model has ``model``'s dtype, device and train/eval mode, and shares no storage with it. Its
    per-layer state (e.g. ``layer_idx`` for the KV cache) is transformers' own, as the model is built from
    its config.
    """
    if not isinstance(model, Transformer):
        raise GrowkitError(f"to_hf() takes a growkit.Transformer, got {type(model).__name__}")
    masks = model.masks()
    if masks:
        raise GrowkitError(
            f"the model still has growth masks ({', '.join(sorted(masks)[:3])}{' …' if len(masks) > 3 else ''}): "
            f"a masked growth in progress has no Hugging Face equivalent; finish it first — ramp the masks to 1 "
            f"and fold them (gk.ramp_masks(model, 1.0); gk.fold_masks(model)), which keeps the function — then "
            f"export")
    if model.seq_pool != 1:
        raise GrowkitError(f"the model pools its embeddings by {model.seq_pool} (seq_pool): Hugging Face models have "
                           f"no embedding pooling; set model.seq_pool = 1 (the unpooled model, as after the last "
                           f"pool stage) before exporting")
    cfg = model.cfg
    if isinstance(hf_class, type):  # a supported class or a subclass of one
        name = next((k.__name__ for k in hf_class.__mro__ if k.__name__ in CLASSES), hf_class.__name__)
    else:
        name = hf_class or hf_class_for(model)
    family = _ARCH[cfg.arch]
    if name not in family.CLASSES:
        raise GrowkitError(f"a growkit {cfg.arch!r} model exports as {' or '.join(family.CLASSES)}, not {name}")
    if name == "BertForMaskedLM" and cfg.pooler:
        warnings.warn("BertForMaskedLM has no pooler: the growkit model's pooler is left out (export as "
                      "BertModel to keep it)", stacklevel=2)
    hf_config = family.config_to_hf(cfg, name, base_dict(base_config, family.MODEL_TYPE))
    cls = hf_class if isinstance(hf_class, type) else getattr(transformers_module(), name)
    param = model.tok_emb.weight
    kwargs = family.build_kwargs(cfg, name) if hasattr(family, "build_kwargs") else {}
    hf_model = build_hf(cls, hf_config, param.dtype, param.device, **kwargs)
    if attn_implementation is not None:
        set_attn_implementation(hf_model, attn_implementation)
    hf_params = dict(hf_model.named_parameters(remove_duplicate=False))
    tied = hf_model.get_output_embeddings() is not None and (
        hf_model.get_output_embeddings().weight is hf_model.get_input_embeddings().weight)
    if hf_model.get_output_embeddings() is not None and tied != cfg.tie_embeddings:
        raise GrowkitError(f"{name} built with tie_word_embeddings={cfg.tie_embeddings} came out "
                           f"{'tied' if tied else 'untied'}: this transformers version ties differently")
    ours = dict(model.named_parameters(remove_duplicate=False))
    written: set[int] = set()
    for link in family.links(cfg, name):
        t = torch.cat([ours[g].detach() for g in link.gk], 0)
        if link.transpose:
            t = t.T
        for target in (link.hf, *link.also):
            p = hf_params[target]
            if p.shape != t.shape:
                raise GrowkitError(f"{name}.{target} has shape {tuple(p.shape)}, growkit gives {tuple(t.shape)}")
            p.copy_(t)
            written.add(id(p))
    unwritten = sorted(n for n, p in hf_params.items() if id(p) not in written)
    if unwritten:  # pragma: no cover - a bug in a family's links
        raise GrowkitError(f"growkit adapter bug: {name} parameters left unset: {', '.join(unwritten[:5])}")
    return hf_model.train(model.training)
