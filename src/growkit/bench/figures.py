"""What every benchmark figure does at the end: a tight layout, a 120-dpi PNG, the figure closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save(fig: Any, path: Path) -> Path:
    """Write matplotlib figure ``fig`` to ``path`` as a PNG and close it; returns ``path``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
