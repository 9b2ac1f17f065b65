"""growkit: grow transformers while they train, and train them sparse.

    import growkit as gk
    model = gk.Transformer(gk.TransformerConfig(arch="gpt2", n_layers=2, d_model=64, n_heads=4))
    logits, loss = model(tokens, targets)
"""

from growkit.config import TransformerConfig
from growkit.errors import GrowkitError
from growkit.model import Transformer

__all__ = ["GrowkitError", "Transformer", "TransformerConfig"]
__version__ = "0.1.0"
