"""Grow the hidden width d_model → d̂_model: the residual stream gets d̂ − d new channels.

Units are residual-stream channels. Write h = d, ĥ = d̂, and x for the stream (B, T, h). The tensors
that touch a channel fall into three kinds:

- *producers* write the stream (or a d_model-wide output that only feeds norms and heads):
  columns of ``tok_emb``, ``pos_emb``, ``type_emb``; rows of every ``attn.o_proj`` and ``mlp.down``
  and their biases; rows of ``mlm_dense`` and ``pooler`` and their biases (BERT heads);
- *consumers* read it: columns of ``q_proj``, ``k_proj``, ``v_proj``, ``mlp.up``, ``mlp.gate``,
  ``mlm_dense``, ``pooler`` and of ``lm_head`` when it is untied (tied, it IS ``tok_emb``);
- *norms*: the gain and bias of every norm over d_model (``emb_norm``, ``attn_norm``, ``mlp_norm``,
  ``final_norm``, ``mlm_norm``). In BERT's post-LN blocks a norm's output IS the stream, so there a
  norm is a producer too. ``lm_head.bias`` is vocabulary-sized and unchanged; head sizes (``d_head``,
  ``d_head_v``) are explicit config fields and do not change: q/k/v just read more input channels.

Per method (``growkit.grow.methods`` for the shared mechanics):

``masked`` (MSG): every new weight is random (new norm gains 1, biases 0: any value would do) and the
model's ``width_mask`` m (ones at the old size, created if absent) gets 0 on the new channels. The
model multiplies embeddings (gpt2, llama), every norm output and every pre-norm branch output by m,
and every norm's statistics are m-weighted (μ = Σmx/Σm, σ² = Σm(x−μ)²/Σm, RMS: σ² = Σmx²/Σm). At
m = 0 on the new channels the norms see exactly the old channels with the old divisor h, the new
stream channels are 0 wherever something reads them, so consumers' new columns multiply 0: the
function is unchanged for ANY new weights, tied embeddings included (the new ``tok_emb`` columns are
masked on input and, as the tied head, read only the masked-zero final hidden state). BERT's post-LN
stream may hold garbage on new channels between a branch and its norm, but the m-weighted norm ignores
them and zeroes its output. The BERT pooler's new output channels are not masked (they are not part
of the logits; its old output channels are exact).

``zero`` (Gesmundo & Maile): the new stream channels must stay exactly 0, so the producers' new
entries are 0 and the consumers' new columns random (never both sides zero: the consumers pass the
loss gradient back to the zero producers at once, and once the channels are non-zero the consumers
learn too). Consumers then add W_new·0 = 0. Norms see a zero-padded width:
- LayerNorm: the mean (h/ĥ)·μ and the variance over ĥ change in a way that depends on μ per token;
  no rescaling fixes that, so gpt2/bert are refused (use ``masked`` or ``split``).
- RMSNorm (llama): Σx² is unchanged but divided by ĥ, so rms_new² = (h/ĥ)·rms_old². With every old
  gain multiplied by √(h/ĥ) and ``norm_eps`` replaced by eps·h/ĥ (in the new config),
  y = x·g√(h/ĥ)/√(Σx²/ĥ + eps·h/ĥ) = x·g√(h/ĥ)/(√(h/ĥ)·√(Σx²/h + eps)) = x·g/√(Σx²/h + eps): exact.
  New gains are 1 (they multiply x_new = 0). With tied embeddings the new ``tok_emb`` columns are
  producers, hence 0, and so are the tied head's new columns; the head reads the final norm's 0 there
  anyway, and the other consumers are random, so no unit is zero on both sides.

``copy`` (copy-and-pad from a smaller trained model): every new weight N(0, std²), zeros with
``std = 0``; new norm gains 1, biases 0. Approximate, never exact: even zero padding shifts every
LayerNorm's mean/variance and every RMSNorm's rms by √(h/ĥ) (copy does not rescale). The error is
what `check_preserved` reports.

``split`` (Net2Net / bert2BERT FPI / HyperCloning): ĥ = k·h and channel j of the new stream
duplicates old channel j mod h, k copies each. Producers and norm gains/biases are copied, so the
stream is [x, x, …, x]; a LayerNorm over it has mean (kΣx/kh) = μ and variance σ², an RMSNorm rms²
kΣx²/(kh) = Σx²/h: the norm of the copies is the copies of the norm (eps unchanged). Consumers'
columns are divided by k, so Σ over the k copies of (W/k)·x_j = W·x_j restores every old
pre-activation; pairs of copies get noise ±r on their consumer columns that cancels because their
inputs are equal. With an uneven split (ĥ not a multiple of h) the norm statistics change:
refused. Tied embeddings: ``tok_emb`` is a producer (copied, not divided) AND the head that reads the
final hidden state, which would need dividing. The tie is kept and the norm that feeds the head is
divided instead: its gain and bias ×1/k (gpt2/llama ``final_norm``, BERT ``mlm_norm``, which only feed
``lm_head``), so each copy of the final hidden state is h/k and logits = Σ_copies E_j·(h_j/k) = E·h.
(``hidden_states`` of a tied gpt2/llama then returns h/k per copy; the logits are exact. BERT's
pooler reads the last block's output, which is not divided.) Untied heads divide ``lm_head``'s
columns like any consumer.

The model's ``width_mask``, when it exists (an earlier masked growth at c = 1, not folded), is widened
with 0 (``masked``) or 1 (other methods). Masks over other dimensions (``ffn_mask``, ``head_mask``,
``qk_mask``, ``layer_gate``) do not span d_model and are untouched.
"""

from __future__ import annotations

import math

import torch

from growkit.config import TransformerConfig
from growkit.errors import GrowkitError
from growkit.grow.methods import Slot, expand_units
from growkit.grow.state import GrowthState, padded_index

NORMS = ("emb_norm", "final_norm", "mlm_norm")
BLOCK_NORMS = ("attn_norm", "mlp_norm")


def grow_d_model(state: GrowthState, old: int, new: int, method: str) -> None:
    """Grow the residual stream from ``old`` to ``new`` channels with ``method`` (see the module doc)."""
    cfg = state.cfg
    _check_strict(cfg, old, new, method)
    producers, consumers, gains, biases = _slots(state)
    mask = [Slot("width_mask", 0)]
    mask_shape = {"width_mask": (old,)}
    norm_eps = cfg.norm_eps
    if method == "split":
        # norms are copied like producers: the norm of [x, …, x] is [norm(x), …, norm(x)]
        expand_units(state, method, old, new, producers + gains + biases, consumers, mask, mask_shape)
        if cfg.tie_embeddings:
            k = new // old
            head_norm = "mlm_norm" if cfg.arch == "bert" else "final_norm"
            for name in (f"{head_norm}.weight", f"{head_norm}.bias"):
                if name in state.tensors:
                    state.scale_axis(name, 0, _full(new, 1.0 / k))
    elif method == "zero":  # the new stream channels stay 0: the producers are the zero side
        expand_units(state, method, old, new, producers, consumers, mask, mask_shape, zero_side="producers")
        # RMSNorm only (LayerNorm was refused): old gains × √(h/ĥ), eps × h/ĥ
        for slot in gains:
            if slot.name in state.tensors:
                state.scale_axis(slot.name, 0, _full(old, math.sqrt(old / new)))
        norm_eps = cfg.norm_eps * old / new
        _pad_norms(state, old, new, gains, biases)
    else:  # masked, copy
        expand_units(state, method, old, new, producers, consumers, mask, mask_shape)
        _pad_norms(state, old, new, gains, biases)
    state.cfg = cfg.replace(d_model=new, norm_eps=norm_eps)


def _check_strict(cfg: TransformerConfig, old: int, new: int, method: str) -> None:
    """Refuse the strict methods where the norms make exact preservation impossible."""
    if method == "zero" and cfg.norm == "layernorm":
        raise GrowkitError(
            f"zero growth of d_model {old} → {new} for arch {cfg.arch!r}: zero-padded LayerNorm width cannot "
            f"preserve the function (the new zero channels shift every LayerNorm's mean to {old}/{new}·μ, which "
            f"no rescaling undoes); use masked or split (d_model a multiple of {old})")
    if method == "split" and new % old:
        multiples = ", ".join(str(old * k) for k in range(2, 5))
        raise GrowkitError(
            f"split growth of d_model {old} → {new} cannot preserve the function: LayerNorm/RMSNorm statistics "
            f"are kept only when every channel is duplicated the same number of times, so d_model must become "
            f"a multiple of {old} ({multiples}, …); use one of those, or method 'masked'")


def _slots(state: GrowthState) -> tuple[list[Slot], list[Slot], list[Slot], list[Slot]]:
    """Producers, consumers, norm gains and norm biases over d_model (present or not: absent ones are
    skipped by the edits)."""
    cfg = state.cfg
    producers = [Slot(f"{e}.weight", 1) for e in ("tok_emb", "pos_emb", "type_emb")]
    consumers: list[Slot] = []
    norms = list(NORMS)
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        producers += [Slot(b + n, 0) for n in ("attn.o_proj.weight", "attn.o_proj.bias",
                                              "mlp.down.weight", "mlp.down.bias")]
        consumers += [Slot(b + f"attn.{p}.weight", 1) for p in ("q_proj", "k_proj", "v_proj")]
        consumers += [Slot(b + f"mlp.{p}.weight", 1) for p in ("up", "gate")]
        norms += [b + n for n in BLOCK_NORMS]
    # BERT heads: mlm_dense and pooler read the stream (columns) and write d_model-wide outputs (rows)
    for head in ("mlm_dense", "pooler"):
        producers += [Slot(f"{head}.weight", 0), Slot(f"{head}.bias", 0)]
        consumers.append(Slot(f"{head}.weight", 1))
    if "lm_head.weight" in state.tensors:  # untied (tied, it is tok_emb: a producer)
        consumers.append(Slot("lm_head.weight", 1))
    gains = [Slot(f"{n}.weight", 0) for n in norms]
    biases = [Slot(f"{n}.bias", 0) for n in norms]
    return producers, consumers, gains, biases


def _full(size: int, value: float) -> torch.Tensor:
    """A float64 factor vector (a bare number would be rounded to float32 by `GrowthState.scale_axis`)."""
    return torch.full((size,), value, dtype=torch.float64)


def _pad_norms(state: GrowthState, old: int, new: int, gains: list[Slot], biases: list[Slot]) -> None:
    """New norm channels get a fresh norm's values: gain 1, bias 0."""
    index = padded_index(old, new)
    for slots, value in ((gains, 1.0), (biases, 0.0)):
        for slot in slots:
            if slot.name in state.tensors:
                state.expand(slot.name, slot.axis, index, value)

