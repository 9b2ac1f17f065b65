"""Embedding pooling (``model.seq_pool``): the blocks run on a k× shorter sequence, a causal model stays
causal, k = 1 is the plain model, and growth keeps the pooled function."""

from __future__ import annotations

import pytest
import torch

import growkit as gk
from growkit.config import ARCHS
from growkit.model import pool_sequence
from tests.grow.conftest import tiny_model, tokens


def test_pool_sequence_windows_hold_no_later_position() -> None:
    x = torch.arange(1.0, 8.0).view(1, 7, 1)  # positions 0 … 6 hold 1 … 7
    pooled = pool_sequence(x, 3)  # windows [−2, 0], [1, 3], [4, 6]
    assert pooled.flatten().tolist() == pytest.approx([1 / 3, (2 + 3 + 4) / 3, (5 + 6 + 7) / 3])
    assert torch.equal(pool_sequence(x, 1), x)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_pooled_causal_model_stays_causal(arch: str) -> None:
    model = tiny_model(arch).eval()
    model.seq_pool = 3
    x = tokens(model, batch=2, seq=11)
    logits = model(x)[0]
    for t in range(10):
        changed = x.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % model.cfg.vocab_size
        assert torch.equal(model(changed)[0][:, : t + 1], logits[:, : t + 1]), t
        assert not torch.equal(model(changed)[0][:, t + 1:], logits[:, t + 1:])


@pytest.mark.parametrize("arch", ARCHS)
def test_blocks_see_the_pooled_length_and_k1_is_the_plain_model(arch: str) -> None:
    model = tiny_model(arch).eval()
    x = tokens(model, batch=2, seq=11)
    plain = model(x)[0]
    lengths: list[int] = []
    model.blocks[0].register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    model.seq_pool = 4
    pooled, loss = model(x, x)
    assert lengths[-1] == 3 and pooled.shape == plain.shape and torch.isfinite(loss)
    assert not torch.allclose(pooled, plain)
    model.seq_pool = 1
    assert torch.equal(model(x)[0], plain) and lengths[-1] == 11


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, 17])
def test_bad_pool_factor_is_refused(bad: object) -> None:
    model = tiny_model("gpt2")  # max_seq_len 16
    with pytest.raises(gk.GrowkitError, match="seq_pool must be a whole number from 1"):
        model.seq_pool = bad  # type: ignore[assignment]


@pytest.mark.parametrize("arch", ARCHS)
def test_growth_keeps_the_pooled_function(arch: str) -> None:
    old = tiny_model(arch)
    old.seq_pool = 2
    new, _ = gk.grow(old, gk.GrowthSpec(d_ff=74, n_layers=4, method="masked"))
    assert new.seq_pool == 2
    assert gk.check_preserved(old, new, tokens(old)) < 1e-10
