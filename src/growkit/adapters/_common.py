"""What the three Hugging Face adapters share: the weight links, activation names, and building models.

A family module (`hf_gpt2`, `hf_bert`, `hf_llama`) describes its class by three things:

- ``config_from_hf(hf_model) -> TransformerConfig`` (a `GrowkitError` for what growkit cannot represent),
- ``config_to_hf(cfg, class_name, base) -> transformers config`` (every structural field written
  explicitly; ``base`` holds the non-structural fields to keep, e.g. token ids),
- ``links(cfg, class_name) -> list[Link]``: which growkit parameters make which HF parameter.

The generic code in `growkit.adapters` moves the tensors along the links, both ways, and checks that
every parameter on either side is written exactly once (tied parameters count once).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from growkit.config import TransformerConfig
from growkit.errors import GrowkitError


@dataclass(frozen=True)
class Link:
    """One HF parameter made of one or more growkit parameters.

    ``hf = cat([growkit tensors...], dim=0)``, transposed when ``transpose`` (GPT-2's ``Conv1D`` stores
    ``(in, out)``, the transpose of ``nn.Linear``). A fused tensor (GPT-2's ``c_attn``) lists q, k, v;
    going back it is split along the growkit dim 0 by the growkit shapes. ``also`` names HF parameters
    that get the same tensor on export and are not read on import (BERT's ``cls.predictions.bias``,
    which transformers 5 keeps beside the decoder's own bias when the embeddings are untied).
    """

    gk: tuple[str, ...]
    hf: str
    transpose: bool = False
    also: tuple[str, ...] = ()


def rename(gk: str, hf: str, transpose: bool = False, also: tuple[str, ...] = ()) -> Link:
    """A one-to-one link."""
    return Link((gk,), hf, transpose, also)


def linear(gk: str, hf: str, bias: bool, transpose: bool = False) -> list[Link]:
    """The weight (and bias) of one linear layer: ``gk.weight ↔ hf.weight`` (and ``.bias``)."""
    out = [rename(f"{gk}.weight", f"{hf}.weight", transpose)]
    if bias:
        out.append(rename(f"{gk}.bias", f"{hf}.bias"))
    return out


def norm(gk: str, hf: str, layernorm: bool) -> list[Link]:
    """A LayerNorm (gain and bias) or RMSNorm (gain only)."""
    return linear(gk, hf, bias=layernorm)


#: HF activation names growkit computes exactly (``gelu_new`` and ``gelu_pytorch_tanh`` are both the tanh
#: approximation; ``swish`` is SiLU).
ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "silu": "silu", "swish": "silu"}


def activation_from_hf(name: Any, field: str, model: str) -> str:
    """The growkit activation of an HF ``hidden_act`` / ``activation_function``, or a clear error."""
    if name not in ACT_FROM_HF:
        raise GrowkitError(f"{model}: {field}={name!r} has no exact growkit activation; growkit computes "
                           f"{', '.join(sorted(ACT_FROM_HF))} (gelu_new/gelu_pytorch_tanh are its gelu_tanh)")
    return ACT_FROM_HF[name]


def activation_to_hf(activation: str, default_tanh: str, base: dict[str, Any], field: str) -> str:
    """The HF name of a growkit activation: the base config's name when it means the same function
    (e.g. keep ``gelu_pytorch_tanh``), else the family's usual name (``default_tanh`` for gelu_tanh)."""
    if ACT_FROM_HF.get(base.get(field)) == activation:
        return base[field]
    return default_tanh if activation == "gelu_tanh" else activation


#: Config keys never carried over from a base config: they describe the old object, not the new one.
_NOT_CARRIED = {"architectures", "_name_or_path", "_model_name_or_path", "name_or_path", "transformers_version",
                "model_type", "quantization_config", "torch_dtype", "dtype", "_attn_implementation_autoset",
                "_commit_hash", "auto_map", "rope_scaling", "rope_parameters", "rope_theta", "n_ctx"}


def base_dict(base: Any, model_type: str) -> dict[str, Any]:
    """The non-structural fields of ``base`` (an HF config, an HF model, a dict, or None) to carry over."""
    if base is None:
        return {}
    if hasattr(base, "config") and not isinstance(base, dict):
        base = base.config
    if not isinstance(base, dict):
        if getattr(base, "model_type", model_type) != model_type:
            raise GrowkitError(f"base_config is a {base.model_type!r} config; this model exports as {model_type!r}")
        base = base.to_dict()
    return {k: v for k, v in base.items() if k not in _NOT_CARRIED}


def token_id(base: dict[str, Any], key: str, default: int | None, vocab_size: int) -> int | None:
    """A special-token id: the base config's, else ``default`` where it is inside the vocabulary, else None."""
    if key in base:
        return base[key]
    return default if default is not None and default < vocab_size else None


def check_square_heads(cfg: TransformerConfig, model: str) -> None:
    """GPT-2 and BERT in transformers derive the head width from the model width: refuse otherwise."""
    if cfg.d_head * cfg.n_heads != cfg.d_model or cfg.d_head_v != cfg.d_head:
        raise GrowkitError(
            f"{model} requires head width = hidden_size / num_heads for queries, keys and values; this model has "
            f"d_model={cfg.d_model}, n_heads={cfg.n_heads}, d_head={cfg.d_head}, d_head_v={cfg.d_head_v}: grow "
            f"n_heads together with d_model (n_heads · d_head = d_model) and leave d_head / d_head_v alone, or keep "
            f"the model in growkit")


def transformers_module() -> Any:
    """``import transformers``, or a clear error naming the extra to install."""
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise GrowkitError("the Hugging Face adapters need transformers: pip install 'growkit[hf]'") from e
    return transformers


def transformers_major() -> int:
    return int(transformers_module().__version__.split(".")[0])


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """Skip transformers' random initialisation (every parameter is overwritten right after)."""
    ctx: Any = None
    with contextlib.suppress(ImportError):
        from transformers.initialization import no_init_weights as ctx  # transformers 5
    if ctx is None:
        with contextlib.suppress(ImportError):
            from transformers.modeling_utils import no_init_weights as ctx  # transformers 4
    with ctx() if ctx is not None else contextlib.nullcontext():
        yield


def build_hf(cls: Any, config: Any, dtype: torch.dtype, device: torch.device, **kwargs: Any) -> Any:
    """An HF model of ``config`` with uninitialised parameters, its ties made, in ``dtype`` on ``device``.

    The parameters are created in ``dtype`` (no conversion pass over a large model); the global RNG and
    default dtype are left as they were (transformers may draw from the RNG while building).
    """
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.random.fork_rng(devices=[]), _no_init():
            model = cls(config, **kwargs)
    finally:
        torch.set_default_dtype(default)
    model.tie_weights()
    return model.to(dtype=dtype, device=device)


def set_attn_implementation(hf_model: Any, name: str) -> None:
    """Switch an HF model's attention kernel (``"eager"``, ``"sdpa"``, ...) in transformers 4 or 5."""
    if hasattr(hf_model, "set_attn_implementation"):
        hf_model.set_attn_implementation(name)
    else:  # pragma: no cover - older transformers 4
        hf_model.config._attn_implementation = name
