"""Grow the FFN width d_ff → d̂_ff in every layer.

Units are hidden neurons. Producers: rows of ``mlp.up`` (and ``mlp.gate`` for SwiGLU: gate and up
grow together, so a new neuron is ``act(gate_j·x)·(up_j·x)``) and their biases. Consumers: columns of
``mlp.down``. Mask: ``mlp.ffn_mask`` on the hidden activations. See `growkit.grow.methods` for what
each method puts in the new rows and columns, and why the function is preserved.
"""

from __future__ import annotations

from growkit.grow.methods import Slot, expand_units
from growkit.grow.state import GrowthState


def grow_d_ff(state: GrowthState, old: int, new: int, method: str) -> None:
    for layer in range(state.cfg.n_layers):
        p = f"blocks.{layer}.mlp."
        producers = [Slot(p + name, 0) for name in ("up.weight", "up.bias", "gate.weight", "gate.bias")]
        expand_units(state, method, old, new, producers, consumers=[Slot(p + "down.weight", 1)],
                     masks=[Slot(p + "ffn_mask", 0)], mask_shape={p + "ffn_mask": (old,)})
    state.cfg = state.cfg.replace(d_ff=new)
