"""`TransformerConfig`: the sizes and choices of one `growkit.Transformer`.

Three families share one config (see DESIGN.md):

- ``arch="gpt2"``: pre-LN LayerNorm, learned positions, GELU MLP, tied embeddings, causal.
- ``arch="bert"``: post-LN LayerNorm, learned positions + token types, MLM head, bidirectional.
- ``arch="llama"``: pre-RMSNorm, RoPE, SwiGLU, grouped-query attention, tied or untied.

Fields left as ``None`` are resolved from the others when the config is built, so a config written
with `to_dict` and read with `from_dict` describes exactly the same model:

- ``d_head = d_model // n_heads`` (query/key width per head), ``d_head_v = d_head`` (value width),
- ``n_kv_heads = n_heads`` (gpt2 and bert have no grouped-query attention),
- ``norm_eps``: 1e-5 (gpt2, llama: 1e-5 as in Llama-2 / SmolLM2), 1e-12 (bert),
- ``activation``: ``gelu_tanh`` (gpt2), ``gelu`` (bert), ``silu`` (llama, gating a SwiGLU MLP),
- ``bias``: True for gpt2/bert, False for llama.

After a growth the per-head widths need not divide ``d_model`` any more; that is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from growkit.errors import GrowkitError

ARCHS = ("gpt2", "bert", "llama")
ACTIVATIONS = ("gelu", "gelu_tanh", "silu", "relu")
MAX_SIZE = 2**31 - 1
"""No size of a model may exceed this (a typo guard: such a tensor would not fit any memory)."""
_DEFAULT_EPS = {"gpt2": 1e-5, "bert": 1e-12, "llama": 1e-5}
_DEFAULT_ACT = {"gpt2": "gelu_tanh", "bert": "gelu", "llama": "silu"}


@dataclass
class TransformerConfig:
    """Sizes and choices of a `growkit.Transformer`. Call `validate()` (done on construction)."""

    arch: str = "gpt2"
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_ff: int | None = None
    n_kv_heads: int | None = None
    d_head: int | None = None
    d_head_v: int | None = None
    vocab_size: int = 8192
    max_seq_len: int = 128
    norm_eps: float | None = None
    dropout: float = 0.0
    tie_embeddings: bool = True
    activation: str | None = None
    rope_theta: float = 10000.0
    bias: bool | None = None
    type_vocab_size: int = 2
    pooler: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise GrowkitError(f"unknown arch {self.arch!r}: use one of {', '.join(ARCHS)}")
        _check_int("n_heads", self.n_heads)
        _check_int("d_model", self.d_model)
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model if self.arch != "llama" else _llama_ffn(self.d_model)
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_head is None:
            self.d_head = self.d_model // self.n_heads
        if self.d_head_v is None:
            self.d_head_v = self.d_head
        if self.norm_eps is None:
            self.norm_eps = _DEFAULT_EPS[self.arch]
        if self.activation is None:
            self.activation = _DEFAULT_ACT[self.arch]
        if self.bias is None:
            self.bias = self.arch != "llama"
        self.validate()

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def causal(self) -> bool:
        """gpt2 and llama are causal language models; bert attends both ways."""
        return self.arch != "bert"

    @property
    def gated_mlp(self) -> bool:
        """llama's MLP is SwiGLU: ``down(act(gate(x)) * up(x))``."""
        return self.arch == "llama"

    @property
    def norm(self) -> str:
        return "rmsnorm" if self.arch == "llama" else "layernorm"

    @property
    def positions(self) -> str:
        """How positions enter: learned absolute embeddings, or rotary (RoPE) on q and k."""
        return "rope" if self.arch == "llama" else "learned"

    @property
    def q_width(self) -> int:
        return self.n_heads * self.d_head

    @property
    def kv_width(self) -> int:
        return self.n_kv_heads * self.d_head

    @property
    def v_width(self) -> int:
        return self.n_kv_heads * self.d_head_v

    @property
    def o_width(self) -> int:
        """Width of the concatenated head outputs that the output projection reads."""
        return self.n_heads * self.d_head_v

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> TransformerConfig:
        """Reject inconsistent sizes with a message that names the fix. Returns self."""
        for name in ("n_layers", "d_model", "d_ff", "n_heads", "n_kv_heads", "d_head", "d_head_v",
                     "vocab_size", "max_seq_len", "type_vocab_size"):
            _check_int(name, getattr(self, name))
        if self.activation not in ACTIVATIONS:
            raise GrowkitError(f"unknown activation {self.activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if self.arch != "llama" and self.n_kv_heads != self.n_heads:
            raise GrowkitError(
                f"arch {self.arch!r} has no grouped-query attention: n_kv_heads ({self.n_kv_heads}) must equal "
                f"n_heads ({self.n_heads}); leave n_kv_heads unset or use arch='llama'")
        if self.n_heads % self.n_kv_heads:
            raise GrowkitError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}): each key/value "
                f"head serves a whole group of query heads; pick n_kv_heads among the divisors of {self.n_heads}")
        if self.positions == "rope" and self.d_head % 2:
            raise GrowkitError(f"RoPE rotates pairs of channels: d_head ({self.d_head}) must be even")
        for name in ("dropout", "norm_eps", "rope_theta", "init_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise GrowkitError(f"{name} must be a number, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise GrowkitError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("norm_eps", "rope_theta", "init_std"):
            if getattr(self, name) <= 0:
                raise GrowkitError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pooler and self.arch != "bert":
            raise GrowkitError("pooler=True is a BERT head: use it with arch='bert' only")
        for name in ("tie_embeddings", "bias", "pooler"):
            if not isinstance(getattr(self, name), bool):
                raise GrowkitError(f"{name} must be true or false, got {getattr(self, name)!r}")
        return self

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model") -> TransformerConfig:
        """Build from a dict (TOML section, JSON); unknown keys and wrong types are clear errors."""
        if not isinstance(d, dict):
            raise GrowkitError(f"[{where}] must be a table of TransformerConfig keys, got {d!r}")
        check_keys(d, (f.name for f in fields(cls)), f"[{where}]")
        check_types(d, cls, f"{where}.")
        return cls(**d)

    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with some fields changed (derived fields are NOT re-derived: set them explicitly)."""
        return dataclasses.replace(self, **changes)


def check_keys(values: dict[str, Any], known: Iterable[str], where: str) -> None:
    """Raise a `GrowkitError` naming the keys of ``values`` that are not in ``known`` (listed in order),
    e.g. ``unknown key(s) in [model]: d_modle; known keys: arch, n_layers, …``."""
    known = list(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise GrowkitError(f"unknown key(s) in {where}: {', '.join(unknown)}; known keys: {', '.join(known)}")


def check_types(values: dict[str, Any], cls: type, prefix: str) -> None:
    """Raise a `GrowkitError` for the first value of ``values`` that does not fit the type hint of the
    dataclass field of ``cls`` with its name, e.g. ``model.n_layers must be int, got '4' (str)``.

    An int fits a float; a bool fits neither; floats must be finite (NaN or inf is never a valid setting);
    ``dict[K, V]`` and ``list[T]`` are checked item by item. Unknown keys are `check_keys`' job."""
    hints = _hints(cls)
    for key, value in values.items():
        if key in hints and not _fits(value, hints[key]):
            raise GrowkitError(f"{prefix}{key} must be {_describe(hints[key])}, got {value!r} "
                               f"({type(value).__name__})")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    return True  # Any, or a hint the class checks itself


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "none"
    if origin is dict:
        return f"a table of {_describe(args[0])} → {_describe(args[1])}"
    if origin is list:
        return f"a list of {_describe(args[0])}"
    names = {int: "a whole number", float: "a finite number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GrowkitError(f"{name} must be a whole number, got {value!r}")
    if value < 1:
        raise GrowkitError(f"{name} must be at least 1, got {value}")
    if value > MAX_SIZE:
        raise GrowkitError(f"{name} = {value} is far too large (at most {MAX_SIZE:,}): check for a typo")


def _llama_ffn(d_model: int) -> int:
    """Llama's SwiGLU width: 2/3 of 4·d_model, rounded up to a multiple of 8."""
    return int(8 * math.ceil(8 * d_model / 3 / 8))
