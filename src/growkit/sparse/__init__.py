"""Dynamic always-sparse training: block masks that are pruned and regrown while the model trains.

    ctl = growkit.sparsify(model, growkit.SparsityConfig(density=0.1, block=16, update_every=100,
                                                         total_steps=10_000), optimizer=opt)
    # after each optimizer step:  ctl.step(global_step);   ctl.masks -> {param name: bool tensor}
    # after a growth:             ctl.on_grow(new_model, record, new_optimizer)

The sparse weights are every linear weight inside the transformer blocks (attention q/k/v/o, MLP
gate/up/down); embeddings and the LM head stay dense. See `growkit.sparse.controller` for the algorithm
and its invariants, `growkit.sparse.layout` for the constant fan-in (condensed) layout and its matmuls
(``SparsityConfig(layout="constant_fan_in")``), `growkit.sparse.kernels` for torch's BSR matmuls.
"""

from growkit.sparse.config import SparsityConfig
from growkit.sparse.controller import SparsityController, sparsify
from growkit.sparse.masks import TARGET, block_counts, erk_densities, expand, projection, sparse_targets

__all__ = ["TARGET", "SparsityConfig", "SparsityController", "block_counts", "erk_densities", "expand",
           "projection", "sparse_targets", "sparsify"]
