"""Batches: stateless in their index, rank-consistent, fixed evaluation batches, BERT masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from growkit.data import IGNORE_INDEX, CausalBatches, MLMBatches, TokenData
from growkit.errors import GrowkitError

TOKENS = np.arange(10_000, dtype=np.uint16) % 251  # a stream whose windows are easy to check


def test_causal_batch_is_a_function_of_seed_and_index() -> None:
    batches = CausalBatches(TOKENS, batch_size=8, seq_len=16, seed=3)
    x, y = batches.batch(5)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    resumed = CausalBatches(TOKENS, batch_size=8, seq_len=16, seed=3)  # e.g. after a restart
    assert all(torch.equal(a, b) for a, b in zip(resumed.batch(5), (x, y), strict=True))
    assert not torch.equal(batches.batch(6)[0], x)
    assert not torch.equal(CausalBatches(TOKENS, 8, 16, seed=4).batch(5)[0], x)


def test_causal_rows_are_windows_of_the_stream() -> None:
    batches = CausalBatches(TOKENS, batch_size=4, seq_len=7, seed=0)
    offsets = batches.offsets(2)
    x, y = batches.batch(2)
    for row, start in enumerate(offsets.tolist()):
        assert x[row].tolist() == TOKENS[start : start + 7].tolist()
        assert y[row].tolist() == TOKENS[start + 1 : start + 8].tolist()


def test_every_window_start_is_reachable() -> None:
    short = np.arange(12, dtype=np.uint16)
    batches = CausalBatches(short, batch_size=64, seq_len=10, seed=0)  # 11 tokens per window: 2 starts
    starts = np.concatenate([batches.offsets(i) for i in range(4)])
    assert set(starts.tolist()) == {0, 1}


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_split_the_global_batch(world_size: int) -> None:
    batches = CausalBatches(TOKENS, batch_size=8, seq_len=16, seed=1)
    x, y = batches.batch(9)
    parts = [batches.batch(9, rank=r, world_size=world_size) for r in range(world_size)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x)
    assert torch.equal(torch.cat([p[1] for p in parts]), y)


def test_eval_batches_are_fixed_and_evenly_spaced() -> None:
    batches = CausalBatches(TOKENS, batch_size=4, seq_len=16, seed=1)
    first = batches.eval_batches(3)
    other_seed = CausalBatches(TOKENS, batch_size=4, seq_len=16, seed=99).eval_batches(3)
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, other_seed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    offsets = batches.eval_offsets(3).ravel()
    assert offsets[0] == 0 and offsets[-1] == len(TOKENS) - 17
    assert np.ptp(np.diff(offsets)) <= 1


def test_batches_over_token_data(bpe_data: TokenData) -> None:
    x, y = bpe_data.causal_batches("train", batch_size=4, seq_len=64, seed=0).batch(0)
    assert x.shape == (4, 64) and int(x.max()) < bpe_data.vocab_size
    text = bpe_data.tokenizer.decode(torch.cat([x[0], y[0, -1:]]))
    assert len(text) > 100  # ~3.4 bytes per token
    xv, _ = bpe_data.causal_batches("val", 4, 64).eval_batches(1)[0]
    assert torch.equal(xv, bpe_data.causal_batches("val", 4, 64, seed=7).eval_batches(1)[0][0])


def _mlm(seed: int = 0, **kw: object) -> MLMBatches:
    tokens = np.random.default_rng(0).integers(0, 997, size=200_000).astype(np.uint16)
    tokens[::50] = 999  # an end-of-text every 50 tokens
    args = {"batch_size": 64, "seq_len": 256, "vocab_size": 1000, "mask_id": 998, "special_ids": (999, 997)}
    return MLMBatches(tokens, seed=seed, **{**args, **kw})  # type: ignore[arg-type]


def test_mlm_follows_the_80_10_10_rule() -> None:
    batches = _mlm(batch_size=256)  # 65,536 positions: the 15% has a standard error of 0.0014
    x, targets = batches.batch(0)
    original = torch.from_numpy(batches._windows(batches.offsets(0)))
    selected = targets != IGNORE_INDEX
    assert torch.equal(targets[selected], original[selected])  # targets are the original tokens
    assert torch.equal(x[~selected], original[~selected])  # unselected positions are untouched
    assert not selected[original == 999].any()  # special tokens are never selected
    n_normal = int((original != 999).sum())
    assert int(selected.sum()) / n_normal == pytest.approx(0.15, abs=0.005)
    masked = (x[selected] == 998).float().mean().item()
    kept = (x[selected] == original[selected]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.015)
    assert kept == pytest.approx(0.1, abs=0.01)
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.01)
    replaced = x[selected & (x != 998) & (x != original)]
    assert not torch.isin(replaced, torch.tensor([997, 998, 999])).any()


def test_mlm_is_deterministic_and_rank_consistent() -> None:
    batches = _mlm(seed=5)
    x, t = batches.batch(3)
    again = _mlm(seed=5).batch(3)
    assert torch.equal(again[0], x) and torch.equal(again[1], t)
    assert not torch.equal(batches.batch(4)[1], t)
    halves = [batches.batch(3, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([h[0] for h in halves]), x)
    assert torch.equal(torch.cat([h[1] for h in halves]), t)
    e1, e2 = batches.eval_batches(2), _mlm(seed=6).eval_batches(2)
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]) for a, b in zip(e1, e2, strict=True))


def test_mlm_over_token_data(byte_data: TokenData) -> None:
    x, targets = byte_data.mlm_batches("train", batch_size=8, seq_len=128, seed=0).batch(0)
    assert x.shape == targets.shape == (8, 128)
    assert (x == byte_data.tokenizer.mask_id).any()


def test_mlm_needs_a_mask_token() -> None:
    with pytest.raises(GrowkitError, match=r"tokenizer has no mask token"):
        _mlm(mask_id=None)


@pytest.mark.parametrize("prob", [0, 1.5, -0.1])
def test_mlm_bad_mask_prob(prob: float) -> None:
    with pytest.raises(GrowkitError, match=r"mask_prob must be in \(0, 1\]"):
        _mlm(mask_prob=prob)


def test_sequence_longer_than_the_split() -> None:
    with pytest.raises(GrowkitError, match=r"the val split has 100 tokens, fewer than the 129 one window"):
        CausalBatches(np.zeros(100, np.uint16), 2, 128, label="the val split")
    CausalBatches(np.zeros(129, np.uint16), 2, 128).batch(0)  # exactly one window fits


def test_bad_batch_arguments() -> None:
    batches = CausalBatches(TOKENS, batch_size=6, seq_len=8)
    with pytest.raises(GrowkitError, match=r"batch_size 6 does not divide among 4 processes"):
        batches.batch(0, rank=0, world_size=4)
    with pytest.raises(GrowkitError, match=r"rank 2 is not below world_size 2"):
        batches.batch(0, rank=2, world_size=2)
    with pytest.raises(GrowkitError, match=r"index must be an integer >= 0"):
        batches.batch(-1)
    with pytest.raises(GrowkitError, match=r"seq_len must be an integer >= 1"):
        CausalBatches(TOKENS, batch_size=2, seq_len=0)
    with pytest.raises(GrowkitError, match=r"1-D array of token ids"):
        CausalBatches(TOKENS.reshape(100, 100), batch_size=2, seq_len=8)
