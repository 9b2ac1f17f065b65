"""Batches as stateless functions of their index.

``CausalBatches(tokens, ...).batch(i)`` depends only on ``(tokens, batch_size, seq_len, seed, i)``: a
resumed run asks for batch ``step`` and gets exactly what the uninterrupted run got, and ``rank`` /
``world_size`` pick contiguous rows of the *same* global batch, so the data a step sees does not depend
on the number of processes. Windows start at uniformly random offsets (sampling with replacement).

``eval_batches(n)`` are fixed: evenly spaced windows over the split, and (for MLM) a masking seed that
depends on neither the run seed nor anything else, so every run is evaluated on identical batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from growkit.errors import GrowkitError

__all__ = ["EVAL_SEED", "IGNORE_INDEX", "CausalBatches", "MLMBatches"]

#: Label value of positions that carry no MLM loss (PyTorch's ``cross_entropy`` default ignore_index).
IGNORE_INDEX = -100
#: The masking seed of MLM evaluation batches, the same for every run.
EVAL_SEED = 20_240_601

Batch = tuple[torch.Tensor, torch.Tensor]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise GrowkitError(f"{name} must be an integer >= {minimum}, got {value!r}: pass a valid {name}")
    return int(value)


class _WindowBatches:
    """Shared machinery: validation, offsets, rank slicing; subclasses turn windows into a batch."""

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, extra: int, label: str) -> None:
        self.tokens = tokens
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seq_len = _check_int("seq_len", seq_len, 1)
        self.seed = _check_int("seed", seed, 0)
        self.window = self.seq_len + extra  # tokens read per row: seq_len, +1 for the shifted targets
        if getattr(tokens, "ndim", None) != 1:
            raise GrowkitError(f"{label} must be a 1-D array of token ids: pass TokenData.train or .val")
        if len(tokens) < self.window:
            raise GrowkitError(
                f"{label} has {len(tokens)} tokens, fewer than the {self.window} one window needs "
                f"(seq_len {self.seq_len}): lower data.seq_len or use a bigger corpus"
            )
        self._arange = np.arange(self.window, dtype=np.int64)

    @property
    def n_starts(self) -> int:
        """How many distinct window start positions the token stream has."""
        return len(self.tokens) - self.window + 1

    def offsets(self, index: int) -> np.ndarray:
        """Start positions of the ``batch_size`` windows of global batch ``index`` (int64)."""
        index = _check_int("index", index, 0)
        rng = np.random.default_rng([self.seed, index, 0])
        return rng.integers(0, self.n_starts, size=self.batch_size, dtype=np.int64)

    def eval_offsets(self, n_batches: int) -> np.ndarray:
        """Evenly spaced start positions, shape ``(n_batches, batch_size)``; the same on every call."""
        n_batches = _check_int("n_batches", n_batches, 1)
        starts = np.linspace(0, self.n_starts - 1, n_batches * self.batch_size)
        return np.rint(starts).astype(np.int64).reshape(n_batches, self.batch_size)

    def _rows(self, rank: int, world_size: int) -> slice:
        world_size = _check_int("world_size", world_size, 1)
        rank = _check_int("rank", rank, 0)
        if rank >= world_size:
            raise GrowkitError(f"rank {rank} is not below world_size {world_size}: pass 0 <= rank < world_size")
        if self.batch_size % world_size:
            raise GrowkitError(
                f"batch_size {self.batch_size} does not divide among {world_size} processes: make the "
                "global batch size a multiple of the number of processes"
            )
        per = self.batch_size // world_size
        return slice(rank * per, (rank + 1) * per)

    def _windows(self, offsets: np.ndarray) -> np.ndarray:
        return np.asarray(self.tokens[offsets[:, None] + self._arange], dtype=np.int64)

    def _make(self, offsets: np.ndarray, rng: np.random.Generator, rows: slice) -> Batch:
        raise NotImplementedError

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> Batch:
        """Global batch ``index``, or this rank's contiguous ``batch_size // world_size`` rows of it."""
        rows = self._rows(rank, world_size)
        offsets = self.offsets(index)
        return self._make(offsets, np.random.default_rng([self.seed, int(index), 1]), rows)

    def eval_batches(self, n_batches: int, rank: int = 0, world_size: int = 1) -> list[Batch]:
        """The fixed evaluation batches (identical for every call, seed and run)."""
        rows = self._rows(rank, world_size)
        return [
            self._make(offsets, np.random.default_rng([EVAL_SEED, i, 1]), rows)
            for i, offsets in enumerate(self.eval_offsets(n_batches))
        ]


class CausalBatches(_WindowBatches):
    """Next-token batches: ``x`` is a window of ``seq_len`` tokens, ``y`` the same window shifted by one.

    Args:
        tokens: a 1-D array of ids (e.g. ``TokenData.train``, a memmap).
        batch_size: rows per global batch.
        seq_len: tokens per row.
        seed: the run's data seed; batch ``i`` is a pure function of ``(seed, i)``.
    """

    def __init__(
        self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int = 0, *, label: str = "the data"
    ) -> None:
        super().__init__(tokens, batch_size, seq_len, seed, extra=1, label=label)

    def _make(self, offsets: np.ndarray, rng: np.random.Generator, rows: slice) -> Batch:
        windows = torch.from_numpy(self._windows(offsets[rows]))
        return windows[:, :-1], windows[:, 1:]


class MLMBatches(_WindowBatches):
    """Masked-LM batches with BERT's rule: ``(x, targets)``, both ``(rows, seq_len)`` int64.

    Each position is selected with probability ``mask_prob`` (never a special id); of the selected,
    80% become ``mask_id``, 10% a random non-special token, 10% stay. ``targets`` holds the original
    token at selected positions and ``-100`` everywhere else.

    Args:
        tokens, batch_size, seq_len, seed: as for :class:`CausalBatches`.
        vocab_size: random replacements are drawn from ``0..vocab_size-1`` minus ``special_ids``.
        mask_id: the tokenizer's mask id.
        mask_prob: the selection probability.
        special_ids: ids never selected nor drawn as random replacements (``mask_id`` always is one).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        seq_len: int,
        seed: int,
        vocab_size: int,
        mask_id: int | None,
        mask_prob: float = 0.15,
        *,
        special_ids: Sequence[int] = (),
        label: str = "the data",
    ) -> None:
        super().__init__(tokens, batch_size, seq_len, seed, extra=0, label=label)
        if mask_id is None:
            raise GrowkitError(
                "this tokenizer has no mask token, which masked-LM training needs: use data.tokenizer "
                "'bpe' or 'byte', or a Hugging Face tokenizer with [MASK] or <mask>"
            )
        vocab_size = _check_int("vocab_size", vocab_size, 2)
        if not 0 <= mask_id < vocab_size:
            raise GrowkitError(f"mask_id {mask_id} is outside the vocabulary 0..{vocab_size - 1}: fix mask_id")
        if isinstance(mask_prob, bool) or not 0.0 < float(mask_prob) <= 1.0:
            raise GrowkitError(f"mask_prob must be in (0, 1], got {mask_prob!r}: the usual value is 0.15")
        self.vocab_size, self.mask_id, self.mask_prob = vocab_size, int(mask_id), float(mask_prob)
        self.special_ids = np.unique(np.array([*special_ids, mask_id], dtype=np.int64))
        self._candidates = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), self.special_ids)
        if len(self._candidates) == 0:
            raise GrowkitError("every id is a special id, so no random replacement exists: check special_ids")

    def _make(self, offsets: np.ndarray, rng: np.random.Generator, rows: slice) -> Batch:
        shape = (self.batch_size, self.seq_len)
        # Drawn for the whole global batch, then sliced, so a row's masking is independent of world_size.
        select = rng.random(shape)[rows] < self.mask_prob
        kind = rng.random(shape)[rows]
        random_tokens = self._candidates[rng.integers(0, len(self._candidates), size=shape)][rows]
        x = self._windows(offsets[rows])
        select &= ~np.isin(x, self.special_ids)
        targets = np.where(select, x, IGNORE_INDEX)
        x[select & (kind < 0.8)] = self.mask_id
        to_random = select & (kind >= 0.8) & (kind < 0.9)
        x[to_random] = random_tokens[to_random]
        return torch.from_numpy(x), torch.from_numpy(targets)
