"""`TransformerConfig`: derived defaults, (de)serialisation and every validation error."""

from __future__ import annotations

import json
from typing import Any

import pytest

import growkit as gk
from growkit.config import ARCHS, TransformerConfig

TINY: dict[str, Any] = {"n_layers": 1, "d_model": 20, "n_heads": 2, "vocab_size": 51, "max_seq_len": 16}


def cfg_of(**kw: Any) -> TransformerConfig:
    """A tiny config with ``kw`` overriding `TINY`."""
    return TransformerConfig(**{**TINY, **kw})


# -- defaults -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "eps", "act", "bias", "d_ff"),
    [("gpt2", 1e-5, "gelu_tanh", True, 80), ("bert", 1e-12, "gelu", True, 80), ("llama", 1e-5, "silu", False, 56)],
)
def test_per_arch_defaults(arch: str, eps: float, act: str, bias: bool, d_ff: int) -> None:
    cfg = cfg_of(arch=arch)
    assert cfg.d_head == 10  # d_model // n_heads
    assert cfg.n_kv_heads == 2  # = n_heads
    assert cfg.d_head_v == 10  # = d_head
    assert cfg.norm_eps == eps
    assert cfg.activation == act
    assert cfg.bias is bias
    # gpt2/bert: 4·d_model; llama: 2/3·4·d_model rounded up to a multiple of 8 (53.3 -> 56)
    assert cfg.d_ff == d_ff
    assert cfg.causal is (arch != "bert")
    assert cfg.gated_mlp is (arch == "llama")
    assert cfg.norm == ("rmsnorm" if arch == "llama" else "layernorm")
    assert cfg.positions == ("rope" if arch == "llama" else "learned")


def test_d_head_floor_division_and_widths() -> None:
    cfg = cfg_of(arch="gpt2", d_model=23, n_heads=3, d_ff=37)
    assert cfg.d_head == 7  # 23 // 3: floor, the remainder is simply not a head
    cfg = cfg_of(arch="llama", d_model=20, n_heads=6, n_kv_heads=2, d_head=4, d_head_v=5, d_ff=37)
    assert (cfg.q_width, cfg.kv_width, cfg.v_width, cfg.o_width) == (24, 8, 10, 30)
    assert cfg.d_ff == 37


def test_d_head_v_follows_explicit_d_head() -> None:
    cfg = cfg_of(d_head=6)
    assert cfg.d_head_v == 6


def test_explicit_values_are_kept() -> None:
    cfg = cfg_of(arch="bert", d_ff=37, norm_eps=1e-6, activation="relu", bias=False)
    assert (cfg.d_ff, cfg.norm_eps, cfg.activation, cfg.bias) == (37, 1e-6, "relu", False)


def test_error_type_is_value_error() -> None:
    assert issubclass(gk.GrowkitError, ValueError)


# -- (de)serialisation -----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_dict_round_trip(arch: str) -> None:
    extra: dict[str, Any] = {"n_kv_heads": 1, "d_head": 6, "d_head_v": 5} if arch == "llama" else {}
    if arch == "bert":
        extra = {"pooler": True, "d_head_v": 7}
    cfg = cfg_of(arch=arch, d_ff=37, **extra)
    d = cfg.to_dict()
    assert set(d) == {f for f in TransformerConfig.__dataclass_fields__}
    # derived fields are written out resolved, so the dict describes the model exactly
    assert all(d[k] is not None for k in ("d_ff", "n_kv_heads", "d_head", "d_head_v", "norm_eps", "activation"))
    again = TransformerConfig.from_dict(json.loads(json.dumps(d)))
    assert again == cfg
    assert again.to_dict() == d


def test_replace_does_not_rederive() -> None:
    cfg = cfg_of(d_ff=37)
    bigger = cfg.replace(d_model=40)
    assert (bigger.d_model, bigger.d_head, bigger.d_ff) == (40, 10, 37)
    assert cfg.d_model == 20


def test_replace_validates() -> None:
    with pytest.raises(gk.GrowkitError, match="no grouped-query attention"):
        cfg_of().replace(n_kv_heads=1)


def test_validate_after_mutation() -> None:
    cfg = cfg_of(arch="llama", n_heads=4, d_model=24)
    assert cfg.validate() is cfg
    cfg.n_kv_heads = 3
    with pytest.raises(gk.GrowkitError, match="must be a multiple of n_kv_heads"):
        cfg.validate()


# -- every validation error --------------------------------------------------------------------------
BAD: list[tuple[dict[str, Any], str]] = [
    ({"arch": "gpt3"}, "unknown arch 'gpt3'"),
    ({"arch": None}, "unknown arch"),
    ({"arch": "llama", "n_heads": 6, "d_model": 24, "n_kv_heads": 4},
     r"n_heads \(6\) must be a multiple of n_kv_heads \(4\)"),
    ({"arch": "llama", "n_heads": 2, "n_kv_heads": 3}, "must be a multiple of n_kv_heads"),
    ({"arch": "gpt2", "n_heads": 4, "n_kv_heads": 2}, "arch 'gpt2' has no grouped-query attention"),
    ({"arch": "bert", "n_heads": 4, "n_kv_heads": 1}, "arch 'bert' has no grouped-query attention"),
    ({"arch": "llama", "d_model": 18, "n_heads": 2}, r"RoPE rotates pairs .* d_head \(9\) must be even"),
    ({"arch": "llama", "d_head": 7}, r"d_head \(7\) must be even"),
    ({"n_layers": 2.0}, "n_layers must be a whole number"),
    ({"d_model": 20.5}, "d_model must be a whole number"),
    ({"n_heads": "2"}, "n_heads must be a whole number"),
    ({"d_ff": 37.0}, "d_ff must be a whole number"),
    ({"vocab_size": True}, "vocab_size must be a whole number"),
    ({"max_seq_len": None}, "max_seq_len must be a whole number"),
    ({"d_head": 4.0}, "d_head must be a whole number"),
    ({"d_head_v": "5"}, "d_head_v must be a whole number"),
    ({"n_kv_heads": 2.0}, "n_kv_heads must be a whole number"),
    ({"type_vocab_size": 2.5}, "type_vocab_size must be a whole number"),
    ({"n_layers": 0}, "n_layers must be at least 1"),
    ({"d_model": 0}, "d_model must be at least 1"),
    ({"d_ff": 0}, "d_ff must be at least 1"),
    ({"n_heads": 0}, "n_heads must be at least 1"),
    ({"n_kv_heads": 0}, "n_kv_heads must be at least 1"),
    ({"d_head": 0}, "d_head must be at least 1"),
    ({"d_head_v": -3}, "d_head_v must be at least 1"),
    ({"vocab_size": 0}, "vocab_size must be at least 1"),
    ({"max_seq_len": 0}, "max_seq_len must be at least 1"),
    ({"type_vocab_size": 0}, "type_vocab_size must be at least 1"),
    ({"d_model": 2, "n_heads": 4}, "d_head must be at least 1"),  # d_model // n_heads == 0
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ({"dropout": "0.1"}, "dropout must be a number"),
    ({"dropout": True}, "dropout must be a number"),
    ({"norm_eps": 0.0}, "norm_eps must be positive"),
    ({"norm_eps": "1e-5"}, "norm_eps must be a number"),
    ({"rope_theta": -1.0}, "rope_theta must be positive"),
    ({"init_std": 0}, "init_std must be positive"),
    ({"activation": "swish"}, "unknown activation 'swish'"),
    ({"arch": "gpt2", "pooler": True}, "pooler=True is a BERT head"),
    ({"arch": "llama", "pooler": True}, "pooler=True is a BERT head"),
    ({"tie_embeddings": "yes"}, "tie_embeddings must be true or false"),
    ({"bias": 1}, "bias must be true or false"),
    ({"arch": "bert", "pooler": 1}, "pooler must be true or false"),
]


@pytest.mark.parametrize(("kw", "phrase"), BAD, ids=[f"{i}-{','.join(k)}" for i, (k, _) in enumerate(BAD)])
def test_validation_errors(kw: dict[str, Any], phrase: str) -> None:
    with pytest.raises(gk.GrowkitError, match=phrase):
        cfg_of(**kw)


def test_from_dict_unknown_keys_named() -> None:
    with pytest.raises(gk.GrowkitError, match=r"unknown key\(s\) in \[model\]: d_modle, layers") as info:
        TransformerConfig.from_dict({"arch": "gpt2", "d_modle": 64, "layers": 2})
    assert "known keys: arch" in str(info.value)


def test_from_dict_names_its_section() -> None:
    with pytest.raises(gk.GrowkitError, match=r"in \[student\]: foo"):
        TransformerConfig.from_dict({"foo": 1}, where="student")


def test_from_dict_wrong_type() -> None:
    with pytest.raises(gk.GrowkitError, match="n_layers must be a whole number"):
        TransformerConfig.from_dict({**TINY, "n_layers": "2"})
