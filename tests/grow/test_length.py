"""max_seq_len growth: inputs of the old length give identical outputs, longer inputs now run."""

from __future__ import annotations

import pytest
import torch

import growkit as gk
from tests.grow.conftest import fill_new_entries, tiny_model, tokens

METHODS = ("masked", "zero", "copy", "split", "stack", "interpolate")


@pytest.mark.parametrize("method", METHODS)
def test_old_length_outputs_identical_and_longer_inputs_run(arch: str, method: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method=method))
    assert new.cfg.max_seq_len == 40
    fill_new_entries(new, record, keep_zeros=method == "zero")  # garbage in every new row: never read
    x = tokens(old, seq=16)
    with torch.no_grad():
        assert torch.equal(old(x)[0], new(x)[0])
    long = torch.randint(0, old.cfg.vocab_size, (2, 40))
    with pytest.raises(gk.GrowkitError, match="exceeds max_seq_len 16"):
        old(long)
    logits, loss = new(long, long)
    assert logits.shape == (2, 40, old.cfg.vocab_size) and torch.isfinite(loss)
    assert not new.masks()


def test_float32_identical() -> None:
    old = tiny_model("gpt2").float()
    new, _ = gk.grow(old, gk.GrowthSpec(max_seq_len=33, method="masked"))
    x = tokens(old, seq=16)
    with torch.no_grad():
        assert torch.equal(old(x)[0], new(x)[0])


def test_record_maps_and_new_rows() -> None:
    old = tiny_model("gpt2")
    pos = old.pos_emb.weight
    tiled, record = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="interpolate"))
    assert record["pos_emb.weight"].index[0].tolist() == [p % 16 for p in range(40)]
    assert torch.equal(tiled.pos_emb.weight[16:32], pos) and torch.equal(tiled.pos_emb.weight[32:], pos[:8])
    assert not record.new_entries("pos_emb.weight", tiled.pos_emb.weight.shape).any()
    zero, record = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="zero"))
    assert record["pos_emb.weight"].index[0].tolist() == [*range(16), *[-1] * 24]
    assert (zero.pos_emb.weight[16:] == 0).all() and torch.equal(zero.pos_emb.weight[:16], pos)
    masked, _ = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="masked", std=0.5))
    assert 0.3 < float(masked.pos_emb.weight[16:].detach().std()) < 0.7
    padded, _ = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="copy", std=0.0))
    assert (padded.pos_emb.weight[16:] == 0).all()


def test_rope_only_changes_the_config_and_tables() -> None:
    old = tiny_model("llama")
    new, record = gk.grow(old, gk.GrowthSpec(max_seq_len=40))
    assert all(m.is_identity() for m in record.maps.values())
    assert new.rope_cos.shape == (40, old.cfg.d_head)
    assert torch.equal(new.rope_cos[:16], old.rope_cos) and torch.equal(new.rope_sin[:16], old.rope_sin)


def test_new_positions_learn(arch: str) -> None:
    old = tiny_model(arch)
    new, record = gk.grow(old, gk.GrowthSpec(max_seq_len=24, method="zero"))
    long = torch.randint(0, old.cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    new(long, long)[1].backward()
    if arch == "llama":
        assert new.pos_emb is None
    else:
        assert float(new.pos_emb.weight.grad[record.new_entries("pos_emb.weight", (24, 20))].norm()) > 0


def test_composed_with_heads_and_grown_twice(arch: str) -> None:
    old = tiny_model(arch)
    n_heads = 6 if arch == "llama" else 3
    new, _ = gk.grow(old, gk.GrowthSpec(max_seq_len=24, n_heads=n_heads, method="split"))
    again, _ = gk.grow(new, gk.GrowthSpec(max_seq_len=48, method="stack"))
    assert again.cfg.max_seq_len == 48
    assert gk.check_preserved(old, again, tokens(old, seq=16)) < 1e-10
