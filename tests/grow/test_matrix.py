"""The growth matrix is computed, and strict methods never silently approximate."""

from __future__ import annotations

from growkit.grow.matrix import PRESERVED_TOL, format_matrix, growth_matrix
from growkit.grow.spec import STRICT


def test_strict_methods_preserve_or_refuse_never_approximate() -> None:
    cells = growth_matrix()
    assert len(cells) == 3 * 32  # 3 archs × (5 + 4 + 4 + 4 + 4 + 4 + 7) methods per dimension
    for c in cells:
        if c.method in STRICT:
            assert c.status in ("preserved", "refused"), c
        if c.status == "preserved":
            assert c.error is not None and c.error < PRESERVED_TOL
        if c.status == "refused":
            assert c.reason and c.error is None
    table = format_matrix(cells)
    assert table.count("\n") == 2 + 32 - 1 and "| d_ff | zero | preserved | preserved | preserved |" in table
