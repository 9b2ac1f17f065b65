"""`GrowthSpec`: the target sizes of a growth and how each dimension's new weights are made.

    GrowthSpec(n_layers=4, d_model=96, d_ff=384, n_heads=6,
               method={"n_layers": "stack", "*": "masked"})

A size left as None is unchanged. ``method`` is one name for every dimension, or a dict from
dimension name (``depth`` is an alias of ``n_layers``) to method name, with ``"*"`` for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from growkit.config import MAX_SIZE, TransformerConfig, check_types
from growkit.errors import GrowkitError

#: Dimensions in the order `grow` applies them (each step preserves the function, so any order would).
DIMENSIONS = ("d_ff", "n_heads", "n_kv_heads", "d_head", "d_head_v", "d_model", "n_layers", "max_seq_len")
ALIASES = {"depth": "n_layers", "width": "d_model", "hidden": "d_model", "ffn": "d_ff", "heads": "n_heads",
           "length": "max_seq_len", "seq_len": "max_seq_len"}
METHODS = ("masked", "zero", "copy", "split", "stack", "interpolate", "tile")
#: Which methods make sense for which dimension.
APPLICABLE = {
    "n_layers": ("masked", "zero", "copy", "stack", "interpolate"),
    "d_model": ("masked", "zero", "copy", "split"),
    "d_ff": ("masked", "zero", "copy", "split"),
    "n_heads": ("masked", "zero", "copy", "split"),
    "n_kv_heads": ("masked", "zero", "copy", "split"),
    "d_head": ("masked", "zero", "copy", "split"),
    "d_head_v": ("masked", "zero", "copy", "split"),
    "max_seq_len": ("masked", "zero", "copy", "split", "stack", "tile", "interpolate"),
}
#: Methods that promise an exactly preserved function (a GrowkitError where they cannot keep it).
STRICT = ("masked", "zero", "split")
DEPTH_PLACEMENTS = ("top", "bottom", "interleave", "middle")


@dataclass
class GrowthSpec:
    """Target sizes (None: unchanged) and the method per dimension.

    Options:
        depth_placement: where new layers go: ``"top"`` (appended), ``"bottom"``, ``"interleave"``
            (spread evenly between old layers), ``"middle"``, or a list of the new layers' indices in
            the grown model.
        std: standard deviation of new random weights (default: the model's ``init_std``). 0 pads
            with zeros under ``copy``; ``zero`` and ``masked`` refuse it where it would make dead units.
        seed: seed of the generator that draws new random weights.
        noise: ``split`` only: relative size of the symmetry-breaking noise that cancels in pairs.
    """

    n_layers: int | None = None
    d_model: int | None = None
    d_ff: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    d_head: int | None = None
    d_head_v: int | None = None
    max_seq_len: int | None = None
    method: str | dict[str, str] = "masked"
    depth_placement: str | list[int] = "top"
    std: float | None = None
    seed: int = 0
    noise: float = 0.01
    _methods: dict[str, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._methods = _resolve_methods(self.method)
        for name in ("std", "noise"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not 0.0 <= value < float("inf")):
                raise GrowkitError(f"growth spec {name} must be a finite number >= 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise GrowkitError(f"growth spec seed must be a whole number >= 0, got {self.seed!r}")

    def method_for(self, dim: str) -> str:
        return self._methods[dim]

    def targets(self) -> dict[str, int]:
        """The sizes that are set, by dimension."""
        return {d: getattr(self, d) for d in DIMENSIONS if getattr(self, d) is not None}

    def changes(self, cfg: TransformerConfig) -> dict[str, tuple[int, int]]:
        """``{dim: (old, new)}`` for the dimensions that grow; a clear error for any that would shrink."""
        out = {}
        for dim, new in self.targets().items():
            old = getattr(cfg, dim)
            if isinstance(new, bool) or not isinstance(new, int):
                raise GrowkitError(f"GrowthSpec.{dim} must be a whole number, got {new!r}")
            if new > MAX_SIZE:
                raise GrowkitError(f"cannot grow {dim} to {new}: far too large (at most {MAX_SIZE:,}); a typo?")
            if new < old:
                raise GrowkitError(
                    f"cannot grow {dim} {old} → {new}: sizes only grow (leave {dim} unset to keep {old})")
            if new > old:
                out[dim] = (old, new)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GrowthSpec:
        """From a TOML/JSON table; dimension aliases (``depth`` …) are accepted as size keys too."""
        if not isinstance(d, dict):
            raise GrowkitError(f"a growth spec must be a table of sizes and options, got {d!r}")
        known = {f.name for f in fields(cls) if f.init}
        out: dict[str, Any] = {}
        for key, value in d.items():
            name = ALIASES.get(key, key)
            if name not in known:
                raise GrowkitError(f"unknown growth key {key!r}: sizes are {', '.join(DIMENSIONS)}; options are "
                                   f"method, depth_placement, std, seed, noise")
            out[name] = value
        check_types(out, cls, "growth spec ")
        return cls(**out)


def _resolve_methods(method: str | dict[str, str]) -> dict[str, str]:
    if isinstance(method, str):
        chosen = dict.fromkeys(DIMENSIONS, method)
    elif isinstance(method, dict):
        default = method.get("*", "masked")
        chosen = dict.fromkeys(DIMENSIONS, default)
        for key, value in method.items():
            if key == "*":
                continue
            dim = ALIASES.get(key, key)
            if dim not in DIMENSIONS:
                raise GrowkitError(f"unknown dimension {key!r} in method: use {', '.join(DIMENSIONS)} (or depth), "
                                   f"and '*' for the rest")
            chosen[dim] = value
    else:
        raise GrowkitError(f"method must be a name or a dict of names, got {method!r}")
    for dim, name in chosen.items():
        if name not in METHODS:
            raise GrowkitError(f"unknown growth method {name!r} for {dim}: use one of {', '.join(METHODS)}")
    if "n_kv_heads" not in (method if isinstance(method, dict) else {}):
        chosen["n_kv_heads"] = chosen["n_heads"]  # K/V heads grow with the query heads by default
    return chosen


#: Methods whose new units get their life from random values on one side (``zero``: the other side is 0;
#: ``masked``: both sides random, the mask 0): with ``std = 0`` both sides are 0 and so is every
#: gradient of the unit, forever. Position rows (max_seq_len) are not units: zeros there are fine.
NEEDS_RANDOM = ("zero", "masked")


def check_std(dim: str, method: str, std: float) -> None:
    """Refuse ``std = 0`` where it makes dead units (see `NEEDS_RANDOM`)."""
    if std == 0 and method in NEEDS_RANDOM and dim != "max_seq_len":
        raise GrowkitError(
            f"std = 0 with method {method!r} for {dim} makes dead units: both sides of every new unit are 0, so "
            f"their gradients are 0 forever; leave std unset (the model's init_std) or set it > 0 (zeros are "
            f"the padding of method 'copy', which allows std = 0)")


def check_applicable(dim: str, method: str) -> None:
    """Refuse a method that has no meaning for a dimension, naming the ones that do."""
    if method not in APPLICABLE[dim]:
        raise GrowkitError(f"method {method!r} does not apply to {dim}: use one of {', '.join(APPLICABLE[dim])}")
