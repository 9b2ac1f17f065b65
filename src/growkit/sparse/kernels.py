"""Block-sparse (BSR) matmuls for a sparse linear layer y = x Wᵀ, on CPU fp32.

For a weight W (n_out × n_in) whose zeros come in b × b blocks, BSR stores only the non-zero blocks.
The two matmuls of a layer that involve W are:

- forward:        y  = x Wᵀ   = (W_bsr  · xᵀ)ᵀ     (n_tokens × n_out)
- input gradient: dx = dy W   = (Wᵀ_bsr · dyᵀ)ᵀ    (n_tokens × n_in)

(the weight gradient dW = dyᵀ x is only needed on active blocks: a sampled dense-dense product, not a
BSR matmul). Both use ``torch.sparse`` BSR × strided matmul (``torch.mm`` on a ``to_sparse_bsr`` tensor);
``F.linear`` with a BSR weight is supported too but measured about 3× slower on CPU.

`benchmarks/sparse_kernels.py` measured these BSR kernels no faster than dense on the CPUs we have; the
constant fan-in layout of `growkit.sparse.layout` is the faster path there. These functions stay as a
candidate that benchmark times beside it (torch's CSR tensors go through the same two calls).
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_bsr(weight: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """(W_bsr, Wᵀ_bsr): the weight and its transpose in BSR form with b × b blocks (zero blocks dropped)."""
    w = weight.detach()
    return w.to_sparse_bsr((block, block)), w.t().contiguous().to_sparse_bsr((block, block))


def bsr_forward(x: Tensor, weight_bsr: Tensor) -> Tensor:
    """y = x Wᵀ for a 2-D input (n_tokens × n_in), computed as (W_bsr · xᵀ)ᵀ."""
    return torch.mm(weight_bsr, x.t()).t()


def bsr_input_grad(grad_out: Tensor, weight_t_bsr: Tensor) -> Tensor:
    """dx = dy W for a 2-D output gradient (n_tokens × n_out), computed as (Wᵀ_bsr · dyᵀ)ᵀ."""
    return torch.mm(weight_t_bsr, grad_out.t()).t()
