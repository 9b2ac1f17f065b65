"""FLOPs per token: the formula against a real count (`torch.utils.flop_counter`), and sparse densities.

The counter is run with the MATH attention backend: PyTorch's fused CPU flash kernel is not registered
with `FlopCounterMode`, the math path is plain batched matmuls, which the counter sees exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import growkit as gk
from growkit.config import TransformerConfig
from growkit.flops import (
    attention_flops_per_token,
    layer_matmul_params,
    matmul_params,
    training_flops_per_token,
)

BASE: dict[str, Any] = {"n_layers": 2, "d_model": 20, "n_heads": 2, "d_ff": 37, "vocab_size": 51, "max_seq_len": 16}
CASES: dict[str, dict[str, Any]] = {
    "gpt2": {"arch": "gpt2"},
    "gpt2-untied-dv": {"arch": "gpt2", "n_heads": 3, "d_head": 6, "d_head_v": 7, "tie_embeddings": False},
    "bert": {"arch": "bert", "pooler": True},
    "bert-dv": {"arch": "bert", "d_head_v": 9, "n_layers": 3},
    "llama-gqa": {"arch": "llama", "n_heads": 6, "n_kv_heads": 2, "d_head": 4},
    "llama-gqa-untied-dv": {"arch": "llama", "n_heads": 4, "n_kv_heads": 2, "d_head": 6, "d_head_v": 5,
                            "tie_embeddings": False},
}


def cfg_of(case: str) -> TransformerConfig:
    """The config of a named case."""
    return TransformerConfig(**{**BASE, **CASES[case]})


def count(model: gk.Transformer, b: int, t: int, backward: bool) -> int:
    """FLOPs that `FlopCounterMode` measures for a forward (and backward) pass at batch b, length t."""
    x = torch.randint(0, model.cfg.vocab_size, (b, t))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        if backward:
            assert loss is not None
            loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("b", "t"), [(3, 11), (1, 16)])
def test_forward_flops_match_measurement(case: str, b: int, t: int) -> None:
    cfg = cfg_of(case)
    model = gk.Transformer(cfg, seed=0)
    want = (2 * matmul_params(cfg) + 2 * cfg.n_layers * t * cfg.n_heads * (cfg.d_head + cfg.d_head_v)) * b * t
    assert count(model, b, t, backward=False) == want
    # the training figure is three forwards (backward = grads w.r.t. activations + w.r.t. weights)
    assert want * 3 == training_flops_per_token(cfg, t) * b * t


@pytest.mark.parametrize("case", CASES)
def test_training_flops_match_measured_forward_backward(case: str) -> None:
    cfg = cfg_of(case)
    model = gk.Transformer(cfg, seed=0)
    b, t = 2, 9
    assert count(model, b, t, backward=True) == training_flops_per_token(cfg, t) * b * t


def test_matmul_params_hand_count() -> None:
    cfg = cfg_of("llama-gqa-untied-dv")  # d 20, q 4×6, kv 2×6, v 2×5, o 4×5, ff 37, vocab 51
    per_layer = layer_matmul_params(cfg)
    assert per_layer == {
        "attn.q_proj": 20 * 24, "attn.k_proj": 20 * 12, "attn.v_proj": 20 * 10, "attn.o_proj": 20 * 20,
        "mlp.up": 20 * 37, "mlp.down": 37 * 20, "mlp.gate": 20 * 37,
    }
    assert matmul_params(cfg) == 2 * sum(per_layer.values()) + 20 * 51
    bert = cfg_of("bert")
    assert "mlp.gate" not in layer_matmul_params(bert)
    # the MLM transform counts, the pooler (not on the LM path) does not
    assert matmul_params(bert) == 2 * (4 * 400 + 2 * 20 * 37) + 20 * 51 + 20 * 20


def test_head_is_counted_whether_tied_or_not() -> None:
    tied, untied = cfg_of("gpt2"), cfg_of("gpt2").replace(tie_embeddings=False)
    assert matmul_params(tied) == matmul_params(untied)


def test_attention_term() -> None:
    cfg = cfg_of("gpt2-untied-dv")
    assert attention_flops_per_token(cfg, 10) == 6 * 2 * 10 * 3 * (6 + 7)
    # not halved for causal masking: bert of the same sizes has the same attention cost
    bert = TransformerConfig(**{**BASE, **CASES["gpt2-untied-dv"], "arch": "bert"})
    assert attention_flops_per_token(bert, 10) == attention_flops_per_token(cfg, 10)
    # linear in the sequence length, and the only part of the total that depends on it
    total = [training_flops_per_token(cfg, t) for t in (4, 8, 12)]
    assert total[1] - total[0] == total[2] - total[1] == attention_flops_per_token(cfg, 4)


# -- sparsity ------------------------------------------------------------------------------------------
def test_density_one_is_dense() -> None:
    cfg = cfg_of("llama-gqa")
    dense = training_flops_per_token(cfg, 8)
    assert training_flops_per_token(cfg, 8, density=1.0) == dense
    assert training_flops_per_token(cfg, 8, density={}) == dense
    assert dense == 6 * matmul_params(cfg) + attention_flops_per_token(cfg, 8)


@pytest.mark.parametrize("density", [0.0, 0.1, 0.5])
def test_uniform_density_scales_layers_only(density: float) -> None:
    """The LM head (and MLM transform) and the attention term stay dense."""
    for case in ("gpt2", "bert", "llama-gqa"):
        cfg = cfg_of(case)
        layers = cfg.n_layers * sum(layer_matmul_params(cfg).values())
        head = matmul_params(cfg) - layers
        want = 6 * (density * layers + head) + attention_flops_per_token(cfg, 8)
        assert training_flops_per_token(cfg, 8, density=density) == pytest.approx(want, rel=1e-12)


def test_density_map_per_projection() -> None:
    cfg = cfg_of("llama-gqa")
    per = layer_matmul_params(cfg)
    dense = training_flops_per_token(cfg, 8)
    # one projection sparse: only its share drops
    got = training_flops_per_token(cfg, 8, density={"mlp.up": 0.25})
    assert got == pytest.approx(dense - 6 * cfg.n_layers * 0.75 * per["mlp.up"], rel=1e-12)
    # a map giving every projection the same density equals the uniform float
    uniform = training_flops_per_token(cfg, 8, density=0.3)
    assert training_flops_per_token(cfg, 8, density=dict.fromkeys(per, 0.3)) == pytest.approx(uniform, rel=1e-12)
    # projections not in the map stay dense; a name the arch lacks (gpt2 has no gate) changes nothing
    gpt2 = cfg_of("gpt2")
    assert training_flops_per_token(gpt2, 8, density={"mlp.gate": 0.1}) == training_flops_per_token(gpt2, 8)


def test_density_is_monotone() -> None:
    cfg = cfg_of("bert")
    values = [training_flops_per_token(cfg, 16, density=d) for d in (0.05, 0.2, 0.6, 1.0)]
    assert values == sorted(values) and len(set(values)) == 4


def test_model_method_uses_max_seq_len_by_default() -> None:
    model = gk.Transformer(cfg_of("gpt2"), seed=0)
    assert model.flops_per_token() == training_flops_per_token(model.cfg, 16)


@pytest.mark.parametrize("case", ["gpt2", "bert-dv", "llama-gqa-untied-dv"])
@pytest.mark.parametrize("k", [3, 4])
def test_pooled_training_flops_match_measurement(case: str, k: int) -> None:
    """Embedding pooling by k: the blocks run on ⌈T/k⌉ positions, the head on all T."""
    cfg = cfg_of(case)
    model = gk.Transformer(cfg, seed=0)
    model.seq_pool = k
    b, t = 2, 9
    assert count(model, b, t, backward=True) == training_flops_per_token(cfg, t, pool=k) * b * t
    assert model.flops_per_token(t) == training_flops_per_token(cfg, t, pool=k) < training_flops_per_token(cfg, t)
