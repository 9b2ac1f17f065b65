"""What benchmark figures share: the axes of a loss-vs-FLOPs plot, and the end (a tight layout, a 120-dpi PNG,
the figure closed)."""

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


def loss_vs_flops_axes(ax: Any, lowest: float, below: float, above: float, xlabel: str = "training FLOPs") -> None:
    """Log FLOPs on x, validation loss on y from ``lowest − below`` to ``lowest + above``, a grid, the legend."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation loss (nats/byte)")
    ax.set_ylim(lowest - below, lowest + above)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
