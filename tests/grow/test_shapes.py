"""`growkit.grow.shapes`: growth on meta tensors agrees with the real growth — the same refusals (same
message) and the same shapes of every tensor — without weights."""

from __future__ import annotations

import itertools

import pytest

import growkit as gk
from growkit.grow import grow
from growkit.grow.shapes import grow_shapes, meta_model

GPT2 = gk.TransformerConfig(arch="gpt2", n_layers=2, d_model=32, n_heads=2, d_ff=37, vocab_size=64, max_seq_len=16)
LLAMA = gk.TransformerConfig(arch="llama", n_layers=2, d_model=48, n_heads=4, n_kv_heads=2, d_ff=37, vocab_size=64,
                             max_seq_len=16, tie_embeddings=False)
BERT = gk.TransformerConfig(arch="bert", n_layers=2, d_model=32, n_heads=2, d_ff=40, vocab_size=64, max_seq_len=16,
                            pooler=True)
TARGETS = [{"d_ff": 64}, {"n_layers": 3}, {"n_layers": 4}, {"d_model": 64}, {"d_model": 40}, {"n_heads": 4},
           {"n_heads": 8, "n_kv_heads": 4}, {"n_heads": 6, "n_kv_heads": 3}, {"d_head": 32}, {"d_head": 24},
           {"d_head_v": 32}, {"max_seq_len": 32}, {"d_model": 64, "n_heads": 4, "d_ff": 80, "n_layers": 4}]
METHODS = ["masked", "zero", "copy", "split", "stack", "interpolate", "tile"]


def outcome(fn: object, model: gk.Transformer, spec: gk.GrowthSpec) -> tuple:
    try:
        big, _ = fn(model, spec)  # type: ignore[operator]
    except gk.GrowkitError as e:
        return ("refused", str(e))
    assert all(p.device.type == ("meta" if fn is grow_shapes else "cpu") for p in big.parameters())
    return ("grown", big.cfg, {k: tuple(v.shape) for k, v in big.state_dict().items()})


def check(cfg: gk.TransformerConfig, target: dict, method: str) -> tuple:
    spec = gk.GrowthSpec.from_dict({**target, "method": method})
    real = outcome(grow, gk.Transformer(cfg, seed=0), spec)
    assert outcome(grow_shapes, meta_model(cfg), spec) == real
    return real


@pytest.mark.parametrize(("cfg", "target", "method", "result"), [
    (GPT2, {"d_model": 64, "n_heads": 4, "d_ff": 80, "n_layers": 4}, "masked", "grown"),
    (GPT2, {"d_model": 64, "d_ff": 74}, "split", "grown"),
    (LLAMA, {"n_heads": 8, "n_kv_heads": 4, "d_head_v": 24}, "split", "grown"),
    (LLAMA, {"n_heads": 5}, "masked", "refused"),  # ungroupable GQA
    (LLAMA, {"d_head": 18}, "zero", "refused"),  # RoPE frequencies
    (BERT, {"n_layers": 3}, "zero", "refused"),  # post-LN zero layer
    (BERT, {"n_layers": 4, "max_seq_len": 32}, "interpolate", "grown"),
])
def test_meta_growth_matches_real_growth(cfg: gk.TransformerConfig, target: dict, method: str, result: str) -> None:
    assert check(cfg, target, method)[0] == result


@pytest.mark.slow  # ~45 s: 228 combinations
def test_meta_growth_matches_real_growth_on_the_whole_grid() -> None:
    seen = 0
    for cfg, target, method in itertools.product((GPT2, LLAMA, BERT), TARGETS, METHODS):
        try:
            gk.GrowthSpec.from_dict({**target, "method": method}).changes(cfg)
        except gk.GrowkitError:
            continue  # a size that shrinks: refused before any operator runs
        check(cfg, target, method)
        seen += 1
    assert seen > 200
