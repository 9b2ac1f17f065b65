"""`check_preserved(old, new, tokens)`: how far a grown model's function is from the old one's."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


@torch.no_grad()
def check_preserved(old: nn.Module, new: nn.Module, tokens: Tensor, token_type_ids: Tensor | None = None) -> float:
    """Max |Δlogits| between the two models on ``tokens``, computed in float64 and eval mode.

    Copies are made, so neither model's dtype or mode changes. For an exact (strict) growth this is
    rounding error: ~1e-12 or below.
    """
    outs = []
    for model in (old, new):
        m = copy.deepcopy(model).to(torch.float64).eval()
        outs.append(m(tokens, token_type_ids=token_type_ids)[0])
    return float((outs[0] - outs[1]).abs().max())
