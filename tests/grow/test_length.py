"""max_seq_len growth: inputs of the old length give identical outputs, longer inputs now run."""

from __future__ import annotations

import pytest
import torch

import growkit as gk
from growkit.grow.length import interpolated_rows
from tests.grow.conftest import fill_new_entries, tiny_model, tokens

#: the methods that keep old-length inputs exact (``interpolate`` moves every position: its own tests)
METHODS = ("masked", "zero", "copy", "split", "stack", "tile")


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
    tiled, record = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="tile"))
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


def test_interpolate_stretches_the_position_table() -> None:
    """Row p̂ of the new table is the old table read at p̂·(L−1)/(L̂−1), linearly between rows."""
    old = tiny_model("gpt2")
    pos = old.pos_emb.weight.detach()
    new, record = gk.grow(old, gk.GrowthSpec(max_seq_len=31, method="interpolate"))  # x = p̂/2
    table = new.pos_emb.weight.detach()
    assert torch.equal(table[::2], pos)  # even rows land on the old rows: copies
    assert torch.allclose(table[1::2], (pos[:-1] + pos[1:]) / 2, rtol=0, atol=1e-15)  # odd: midpoints
    assert record["pos_emb.weight"].index[0].tolist() == [p // 2 if p % 2 == 0 else -1 for p in range(31)]
    stretched, _ = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="interpolate"))
    x = 3 * 15 / 39  # row 3 of 40 reads the old table at 3·15/39 = 1.1538…
    expect = (2 - x) * pos[1] + (x - 1) * pos[2]
    assert torch.allclose(stretched.pos_emb.weight[3].detach(), expect, rtol=0, atol=1e-14)
    assert torch.equal(stretched.pos_emb.weight[0], pos[0]) and torch.equal(stretched.pos_emb.weight[39], pos[15])


def test_interpolate_is_approximate_and_longer_inputs_run(arch: str) -> None:
    old = tiny_model(arch)
    if arch == "llama":
        with pytest.raises(gk.GrowkitError, match="RoPE position interpolation is not implemented"):
            gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="interpolate"))
        return
    new, _ = gk.grow(old, gk.GrowthSpec(max_seq_len=40, method="interpolate"))
    assert gk.check_preserved(old, new, tokens(old, seq=16)) > 1e-6  # every position moved
    long = torch.randint(0, old.cfg.vocab_size, (2, 40))
    assert torch.isfinite(new(long, long)[1])


def test_interpolated_rows_of_a_single_row_table() -> None:
    index, rows = interpolated_rows(torch.tensor([[1.0, 2.0]]), 3)
    assert index.tolist() == [0, 0, 0] and torch.equal(rows, torch.tensor([[1.0, 2.0]] * 3))
