"""`SparsityConfig`: the settings of dynamic always-sparse training (Dietrich et al. 2021, arXiv 2108.06277).

Every key is also a key of the ``[sparsity]`` table of a run's TOML file::

    [sparsity]
    density = 0.1            # fraction of active weights in the sparse tensors
    distribution = "uniform" # or "erk": Erdős–Rényi density per tensor, same total budget
    block = 16               # mask tiles of block × block (1 = unstructured)
    layout = "free"          # or "constant_fan_in": every block-row keeps the same number of blocks
    kernel = "masked"        # or "condensed" / "auto" (constant_fan_in only): matmuls on active blocks only
    update_every = 100       # prune-and-regrow every this many optimizer steps (or n_updates = K)
    pr_max = 0.5             # pr(t) = pr_max · ½(1 + cos(π t / T)) of active blocks per update
    regrow = "random"        # or "gradient" (RigL)
    static = false           # true: the initial random pattern is kept (the static-sparse baseline)
    sparse_lr_rule = false   # true: η(s) = η_dense · exp(1.969 s² + 0.2905 s), s = 1 − density
    lr_rule_scope = "all"    # the rule scales every parameter's LR, or "sparse": the sparse weights' only
    sparse_lr_scale = 1.0    # a further LR multiplier of the sparse weights only (their own param group)
    grow_density = "same"    # what a growth adds: "same" (density) or "dense" (pruned back over updates)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from growkit.config import check_keys, check_types
from growkit.errors import GrowkitError

DISTRIBUTIONS = ("uniform", "erk")
BLOCKS = (1, 4, 8, 16, 32, 64)
LAYOUTS = ("free", "constant_fan_in")
KERNELS = ("masked", "condensed", "auto")
REGROW = ("random", "gradient")
LR_RULE_SCOPES = ("all", "sparse")
GROW_DENSITY = ("same", "dense")
DEFAULT_UPDATE_EVERY = 100


@dataclass(frozen=True)
class SparsityConfig:
    """Settings of a `growkit.sparse.SparsityController` (see the module docstring for the TOML form).

    Attributes:
        density: fraction d ∈ (0, 1] of active entries over all sparse tensors (sparsity s = 1 − d).
        distribution: ``"uniform"`` (every tensor at d) or ``"erk"`` (tensor l at d_l = min(1, ε·(n_in +
            n_out)/(n_in·n_out)), ε chosen so that Σ d_l·N_l = d·Σ N_l; Evci et al. 2020).
        block: side of the square mask tiles: 1 (unstructured), 4, 8, 16, 32 or 64. Both sides of every
            sparse weight must be multiples of it.
        layout: ``"free"`` (active blocks anywhere in the tensor) or ``"constant_fan_in"`` (SRigL's condensed
            layout, `growkit.sparse.layout`: every block-row of a tensor keeps exactly k = round(d_l · n_in/b)
            active blocks, at least 1; prune-and-regrow then works row by row, so k never changes). Its
            density per tensor is k·b/n_in, which can differ from d_l by rounding.
        kernel: how a run computes the sparse linears (`growkit.sparse.fast_path`): ``"masked"`` (dense
            matmuls of the masked weights), ``"condensed"`` (gather + matmul on the active blocks only; needs
            ``layout = "constant_fan_in"`` and random regrowth) or ``"auto"`` (per layer shape, the faster of
            the two, measured at the start of the run and logged). Every path takes the same steps.
        update_every: optimizer steps between prune-and-regrow updates (default 100).
        n_updates: alternatively, the number of updates, at steps round(T·i/(n_updates+1)), i = 1…n_updates.
        total_steps: T, the length of the run in optimizer steps (the trainer fills it in from its budget).
            Required unless ``static``. No update happens at t ≥ T.
        pr_max: prune fraction at t = 0 of the cosine schedule pr(t) = pr_max · ½(1 + cos(π t / T)).
        regrow: ``"random"`` (uniform over inactive blocks) or ``"gradient"`` (RigL: inactive blocks with the
            largest L1 norm of the dense gradient of the update step's batch).
        static: keep the initial random pattern for the whole run (the static-sparse baseline).
        sparse_lr_rule: multiply learning rates by exp(1.969 s² + 0.2905 s), s = 1 − density: every one
            (``lr_rule_scope="all"``) or the sparse weights' only (``"sparse"``: embeddings, norms and the
            LM head are dense and keep the dense LR).
        lr_rule_scope: where the sparse LR rule applies: ``"all"`` parameters or the ``"sparse"`` weights.
        sparse_lr_scale: a further multiplier (> 0) of the sparse weights' LR only, e.g. for an LR sweep of
            the sparse weights. The trainer gives the sparse weights a param group of their own when their
            factor differs from the other parameters' (`sparse_weight_lr_factor`).
        grace_steps: a block that became active at step b (regrown, or added by growth) cannot be pruned
            at an update step t with t − b ≤ grace_steps. Default: one update interval, so it survives
            the next update.
        grow_density: density of the entries a growth adds: ``"same"`` (the tensor's configured density)
            or ``"dense"`` (all active; the excess over the configured density is then pruned without
            regrowth at the following updates).
        seed: seed of the controller's own generator (initial pattern, random regrowth); the global RNG
            is never touched.
    """

    density: float = 0.1
    distribution: str = "uniform"
    block: int = 1
    layout: str = "free"
    kernel: str = "masked"
    update_every: int | None = None
    n_updates: int | None = None
    total_steps: int | None = None
    pr_max: float = 0.5
    regrow: str = "random"
    static: bool = False
    sparse_lr_rule: bool = False
    lr_rule_scope: str = "all"
    sparse_lr_scale: float = 1.0
    grace_steps: int | None = None
    grow_density: str = "same"
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> SparsityConfig:
        """Raise a `GrowkitError` naming the bad key and its fix."""
        _number("density", self.density)
        if not 0.0 < self.density <= 1.0:
            raise GrowkitError(f"sparsity.density must be in (0, 1] (the fraction of active weights), "
                               f"got {self.density}: e.g. density = 0.1 for 90% sparsity")
        _choice("distribution", self.distribution, DISTRIBUTIONS)
        if isinstance(self.block, bool) or self.block not in BLOCKS:
            raise GrowkitError(f"sparsity.block must be one of {', '.join(map(str, BLOCKS))}, got {self.block!r}")
        _choice("layout", self.layout, LAYOUTS)
        _choice("kernel", self.kernel, KERNELS)
        if self.kernel != "masked" and self.layout != "constant_fan_in":
            raise GrowkitError(f'sparsity.kernel = "{self.kernel}" needs layout = "constant_fan_in" (the condensed '
                               f'matmuls need the same number of active blocks in every block-row)')
        if self.kernel != "masked" and self.regrow == "gradient":
            raise GrowkitError(f'sparsity.kernel = "{self.kernel}" cannot regrow by gradient (RigL needs the dense '
                               f'gradient of inactive blocks, which the condensed path never forms): use kernel = '
                               f'"masked" or regrow = "random"')
        _choice("regrow", self.regrow, REGROW)
        _choice("grow_density", self.grow_density, GROW_DENSITY)
        _choice("lr_rule_scope", self.lr_rule_scope, LR_RULE_SCOPES)
        _number("sparse_lr_scale", self.sparse_lr_scale)
        if not 0.0 < self.sparse_lr_scale < math.inf:
            raise GrowkitError(f"sparsity.sparse_lr_scale must be a positive finite number (a multiplier of the "
                               f"sparse weights' LR), got {self.sparse_lr_scale}")
        for key in ("update_every", "n_updates", "total_steps"):
            _whole(key, getattr(self, key), minimum=1, optional=True)
        _whole("grace_steps", self.grace_steps, minimum=0, optional=True)
        _whole("seed", self.seed, minimum=0, optional=False)
        if self.update_every is not None and self.n_updates is not None:
            raise GrowkitError("sparsity.update_every and sparsity.n_updates are two ways to say the same thing: "
                               "set only one of them")
        if self.layout == "constant_fan_in" and self.grow_density == "dense":
            raise GrowkitError('sparsity.grow_density = "dense" is not available with layout = "constant_fan_in" '
                               '(its excess is pruned tensor-wide, which would break the per-row count): use "same"')
        _number("pr_max", self.pr_max)
        if not 0.0 <= self.pr_max <= 1.0:
            raise GrowkitError(f"sparsity.pr_max must be in [0, 1] (a fraction of active blocks), got {self.pr_max}")
        for key in ("static", "sparse_lr_rule"):
            if not isinstance(getattr(self, key), bool):
                raise GrowkitError(f"sparsity.{key} must be true or false, got {getattr(self, key)!r}")
        return self

    # -- derived -------------------------------------------------------------------------------
    @property
    def interval(self) -> int:
        """Steps between updates (for ``n_updates``: the mean spacing T / (n_updates + 1))."""
        if self.update_every is not None:
            return self.update_every
        if self.n_updates is not None and self.total_steps is not None:
            return max(1, round(self.total_steps / (self.n_updates + 1)))
        return DEFAULT_UPDATE_EVERY

    @property
    def grace(self) -> int:
        """``grace_steps``, resolved (default: one update interval)."""
        return self.interval if self.grace_steps is None else self.grace_steps

    def is_update_step(self, t: int) -> bool:
        """Whether the masks are updated after optimizer step ``t`` (1-based: steps done so far)."""
        if self.static or self.total_steps is None or not 0 < t < self.total_steps:
            return False
        if self.n_updates is not None:
            return t in _spread(self.total_steps, self.n_updates)
        return t % self.interval == 0

    def prune_fraction(self, t: int) -> float:
        """pr(t) = pr_max · ½(1 + cos(π t / T)), and 0 for t ≥ T."""
        T = self.total_steps
        if T is None or t >= T:
            return 0.0
        return self.pr_max * 0.5 * (1.0 + math.cos(math.pi * max(t, 0) / T))

    def rule_factor(self) -> float:
        """The sparse LR rule's exp(1.969 s² + 0.2905 s), s = 1 − density (whether it is on or not)."""
        s = 1.0 - self.density
        return math.exp(1.969 * s * s + 0.2905 * s)

    def lr_factor(self) -> float:
        """The factor of every parameter's LR: the rule's when ``sparse_lr_rule`` with scope ``"all"``, else 1."""
        return self.rule_factor() if self.sparse_lr_rule and self.lr_rule_scope == "all" else 1.0

    def sparse_weight_lr_factor(self) -> float:
        """The sparse weights' LR relative to the other parameters': ``sparse_lr_scale``, × the rule's factor
        when ``sparse_lr_rule`` with scope ``"sparse"``."""
        rule = self.rule_factor() if self.sparse_lr_rule and self.lr_rule_scope == "sparse" else 1.0
        return self.sparse_lr_scale * rule

    def replace(self, **changes: Any) -> SparsityConfig:
        return dataclasses.replace(self, **changes)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "[sparsity]") -> SparsityConfig:
        """Build from a TOML table; unknown keys and wrong types are `GrowkitError`s."""
        if not isinstance(d, dict):
            raise GrowkitError(f"{where} must be a table of SparsityConfig keys")
        check_keys(d, (f.name for f in fields(cls)), where)
        check_types(d, cls, "sparsity.")
        return cls(**d)


def _spread(total: int, n: int) -> frozenset[int]:
    return frozenset(round(total * i / (n + 1)) for i in range(1, n + 1))


def _choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise GrowkitError(f"sparsity.{key} must be one of {', '.join(options)}, got {value!r}")


def _number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise GrowkitError(f"sparsity.{key} must be a number, got {value!r}")


def _whole(key: str, value: Any, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise GrowkitError(f"sparsity.{key} must be a whole number, got {value!r}")
    if value < minimum:
        raise GrowkitError(f"sparsity.{key} must be at least {minimum}, got {value}")
