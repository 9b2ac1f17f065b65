"""The growth matrix: for every arch × dimension × method, is the function preserved, approximated, or
is the growth refused? Computed by growing tiny float64 models (odd sizes: d_model 20, d_ff 37) to
twice their size and measuring `check_preserved` — nothing here is hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from growkit.config import ARCHS, TransformerConfig
from growkit.errors import GrowkitError
from growkit.grow import grow
from growkit.grow.spec import APPLICABLE, GrowthSpec
from growkit.grow.verify import check_preserved
from growkit.model import Transformer

#: Dimensions shown (n_kv_heads grows with n_heads; see GrowthSpec).
MATRIX_DIMENSIONS = ("n_layers", "d_model", "d_ff", "n_heads", "d_head", "d_head_v", "max_seq_len")
PRESERVED_TOL = 1e-9


@dataclass
class Cell:
    arch: str
    dim: str
    method: str
    status: str  # "preserved" | "approximate" | "refused"
    error: float | None  # max |Δlogits| (float64) when grown
    reason: str = ""


def tiny(arch: str) -> Transformer:
    extra = {"n_heads": 4, "n_kv_heads": 2, "d_head": 6} if arch == "llama" else {"n_heads": 2}
    cfg = TransformerConfig(arch=arch, n_layers=2, d_model=20, d_ff=37, vocab_size=51, max_seq_len=16, **extra)
    return Transformer(cfg, seed=0).double()


def growth_matrix(archs: tuple[str, ...] = ARCHS) -> list[Cell]:
    cells = []
    for arch in archs:
        model = tiny(arch)
        tokens = torch.randint(0, 51, (2, 12), generator=torch.Generator().manual_seed(0))
        for dim in MATRIX_DIMENSIONS:
            for method in APPLICABLE[dim]:
                target = {dim: 2 * getattr(model.cfg, dim)}
                if dim == "n_heads" and arch == "llama":
                    target["n_kv_heads"] = 2 * model.cfg.n_kv_heads
                try:
                    new, _ = grow(model, GrowthSpec(**target, method=method))
                except GrowkitError as e:
                    cells.append(Cell(arch, dim, method, "refused", None, str(e)))
                    continue
                err = check_preserved(model, new, tokens)
                status = "preserved" if err < PRESERVED_TOL else "approximate"
                cells.append(Cell(arch, dim, method, status, err))
    return cells


def format_matrix(cells: list[Cell]) -> str:
    """A Markdown table: rows dimension × method, one column per arch."""
    archs = list(dict.fromkeys(c.arch for c in cells))
    rows = list(dict.fromkeys((c.dim, c.method) for c in cells))
    by_key = {(c.arch, c.dim, c.method): c for c in cells}
    lines = ["| dimension | method | " + " | ".join(archs) + " |", "|---|---|" + "---|" * len(archs)]
    for dim, method in rows:
        entries = []
        for arch in archs:
            c = by_key[(arch, dim, method)]
            entries.append(c.status if c.status != "approximate" else f"approximate ({c.error:.1e})")
        lines.append(f"| {dim} | {method} | " + " | ".join(entries) + " |")
    return "\n".join(lines)
