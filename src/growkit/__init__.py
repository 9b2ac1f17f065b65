"""growkit: grow transformers while they train, and train them sparse.

    import growkit as gk
    model = gk.Transformer(gk.TransformerConfig(arch="gpt2", n_layers=2, d_model=64, n_heads=4))
    logits, loss = model(tokens, targets)
    gk.train(gk.RunConfig.from_toml("configs/gpt-tiny.toml"))

Note: ``gk.train`` is the function; the subpackage is reached as ``from growkit.train import ...``.
"""

from growkit import adapters  # from_hf / to_hf; transformers itself is imported only when they are called
from growkit.config import TransformerConfig
from growkit.errors import GrowkitError, GrowkitWarning
from growkit.grow import GrowthSpec, carry_optimizer_state, check_preserved, fold_masks, grow, ramp_masks
from growkit.model import Transformer
from growkit.record import GrowthRecord
from growkit.sparse import SparsityConfig, SparsityController, sparsify
from growkit.train import Grower, RunConfig, Trainer
from growkit.train import train as train  # the function shadows the subpackage attribute on purpose

__all__ = ["Grower", "GrowkitError", "GrowkitWarning", "GrowthRecord", "GrowthSpec", "RunConfig", "SparsityConfig",
           "SparsityController", "Trainer", "Transformer", "TransformerConfig", "adapters", "carry_optimizer_state",
           "check_preserved", "fold_masks", "grow", "ramp_masks", "sparsify", "train"]
__version__ = "0.1.0"
