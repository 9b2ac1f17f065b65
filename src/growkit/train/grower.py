"""`Grower`: a growth schedule that any training loop calls once per optimizer step.

    grower = gk.Grower("schedule.toml", model, optimizer, total_steps=max_steps, lr=get_lr)
    for step in range(max_steps):
        model, optimizer = grower.step(step)          # grows when a stage is due; moves ramps; sets the LR
        loss = model(x, y)[1]; loss.backward(); optimizer.step(); optimizer.zero_grad()

The schedule is the ``[[growth]]`` stages of a run (`growkit.train.growth.GrowthStage`: from a TOML file,
a list of dicts or of stages). ``grower.step(t)``, called at the top of optimizer step t (t = optimizer
steps done so far), does in order:

1. **ramp**: a masked stage's masks move to c = min(1, (t − t_growth) / ramp_steps) and fold at c = 1
   (`growkit.ramp_masks`, `growkit.fold_masks`);
2. **grow** every stage that is due at t (``at_step``; ``at_tokens``/``at_flops``/``at_fraction`` with the
   counters passed in): `growkit.grow` the whole model, `growkit.carry_optimizer_state` into a new
   optimizer (moments follow their gradients), ``sparsity.on_grow(record)`` for a sparse model, start the
   stage's mask ramp and its new-entry LR warmup, and set its LR policy and ``lr_scale``;
3. **LR**: with ``lr`` (your schedule, a function of (step, progress) → LR), set every param group's LR to
   ``policy(lr)(t) × lr_scale``: ``continue`` = lr(t, p); ``rewarm`` = lr(t, p) × min(1, (t − t_g + 1)/W);
   ``rewind`` = lr(t − t_g, (p − p_g)/(1 − p_g)) (`growkit.train.schedule.with_lr_policy`). Without ``lr``
   the LR is yours and a stage with an LR policy or ``lr_scale`` is refused when the Grower is built.

and returns the model and optimizer to use from now on (new objects after a growth: keep using the
returned ones, and drop your references to the old ones — after each growth the Grower frees what is
unreferenced and returns it to the OS, `growkit.train.memory`). **New-entry warmup**
(``new_lr_warmup_steps = W``) needs no call: the Grower hooks the optimizer it returns
(``register_step_pre_hook``/``post_hook``), and each ``optimizer.step()`` scales the update of the entries
the last growth added by min(1, (t − t_g + 1)/W), which for AdamW (weight decay included) is the same as a
per-entry LR.

**Checked before step 0.** Building a Grower applies every stage, in order, to the model's shapes on
the meta device (`growkit.train.plan`); an impossible schedule is a one-line `GrowkitError` naming the
stage and the fix, before anything trains.

**Checkpoints.** ``grower.state_dict()`` is a small dict of numbers (the schedule position, ramp, LR
policy and the grown config). To resume, build the Grower as at the start (initial model, same stages),
``grower.load_state_dict(saved)`` — it replays the done growths on the model, so ``grower.model`` and
``grower.optimizer`` have the saved shapes, parameter groups and mid-ramp masks — then load your saved
model and optimizer state dicts into them. Resuming mid-ramp is exact.

Distributed: ``parallel`` (`growkit.train.distributed.Parallel`) makes the model and optimizer whole
before a growth and ``wrap`` re-wraps the grown ones (`growkit.train.loop.Trainer` passes both).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from growkit.errors import GrowkitError
from growkit.grow import carry_optimizer_state, fold_masks, grow, ramp_masks
from growkit.grow.shapes import meta_model
from growkit.model import Transformer
from growkit.record import GrowthRecord
from growkit.sparse import SparsityController
from growkit.sparse.masks import block_grid, sparse_targets
from growkit.train.distributed import MakeOptimizer, Parallel
from growkit.train.faults import fault_point
from growkit.train.growth import GrowthStage, parse_stages, ramp_value
from growkit.train.memory import release_memory
from growkit.train.plan import plan_schedule
from growkit.train.schedule import with_lr_policy

Schedule = str | Path | Sequence[GrowthStage | dict[str, Any]]
LRSchedule = Callable[[int, float], float]
Wrap = Callable[[Transformer, torch.optim.Optimizer], tuple[Transformer, torch.optim.Optimizer]]


@dataclass
class GrowerState:
    """Where a schedule is; with the stages and the initial model, all a resume needs."""

    step: int = 0
    """Optimizer steps done at the last call."""
    stages_done: int = 0
    seq_len: int | None = None
    """Training length set by the last stage with ``seq_len`` (None: none yet)."""
    pool: int | None = None
    """Embedding pooling factor set by the last stage with ``pool`` (None: none yet)."""
    ramp_start: int | None = None
    """Step at which the running mask ramp began (None: no ramp running)."""
    ramp_steps: int = 0
    lr_policy: str = "continue"
    lr_anchor: int | None = None
    """Step of the last growth with an LR policy, where the policy is anchored."""
    lr_anchor_progress: float = 0.0
    lr_warmup_steps: int = 0
    lr_scale: float = 1.0
    """The last ``lr_scale`` a stage set: multiplies the scheduled LR."""
    new_warmup_start: int | None = None
    """Step of the growth whose new entries are in their own LR warmup (None: none)."""
    new_warmup_steps: int = 0


class Grower:
    """Owns a growth schedule and the model and optimizer it grows (see the module docstring).

    Args:
        schedule: a TOML file with ``[[growth]]`` tables, or a list of stage dicts / `GrowthStage`.
        model, optimizer: the initial `growkit.Transformer` and its optimizer (AdamW or any other).
        total_steps: the run's length in optimizer steps, for ``at_fraction`` stages and for the
            progress passed to ``lr`` (else pass ``progress=`` to `step`).
        lr: your LR schedule ``(step, progress) → LR``; the Grower then sets the LR every step.
        seq_len: the training length before any stage sets one (checked against ``max_seq_len``).
        pool: the embedding pooling factor before any stage sets one (``Transformer.seq_pool``).
        sparsity: the `growkit.SparsityController` of a sparse model (also settable later).
        probe: ``model → loss`` on a fixed batch; growth events then report the loss jump.
        parallel, make_optimizer, wrap: distributed training (`growkit.train.distributed`).
    """

    def __init__(self, schedule: Schedule, model: Transformer, optimizer: torch.optim.Optimizer, *,
                 total_steps: int | None = None, lr: LRSchedule | None = None, seq_len: int | None = None,
                 pool: int = 1,
                 sparsity: SparsityController | None = None, probe: Callable[[nn.Module], float] | None = None,
                 parallel: Parallel | None = None, make_optimizer: MakeOptimizer | None = None,
                 wrap: Wrap | None = None) -> None:
        if not isinstance(model, Transformer):
            raise GrowkitError(f"Grower grows a growkit.Transformer, got {type(model).__name__}: convert Hugging "
                               f"Face models with growkit.adapters.from_hf first")
        self.stages = load_schedule(schedule)
        self.plan = plan_schedule(model.cfg, self.stages, seq_len)  # raises before anything trains
        _check_lr(self.stages, lr)
        self.total_steps = total_steps
        self.lr_schedule = lr
        self.start_seq_len = seq_len
        self.start_pool = pool
        model.seq_pool = pool  # refuses a bad factor now
        self.probe = probe
        self.parallel = parallel or Parallel(device=next(model.parameters()).device)
        self.make_optimizer = make_optimizer
        self.wrap = wrap
        self.state = GrowerState()
        self.events: list[dict[str, Any]] = []
        """The growth events of the last `step` call (empty when nothing grew)."""
        self.records: list[GrowthRecord] = []
        """The `GrowthRecord` of each growth of the last `grow_due` call (where every entry came from)."""
        self.new_entries: dict[str, torch.Tensor] = {}
        """Parameter name → bool mask of the entries in their new-entry LR warmup."""
        self.model = model
        self._hooks: list[Any] = []
        self._before: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        self._replaying = False
        self.optimizer = optimizer
        self._sparsity: SparsityController | None = None
        self.sparsity = sparsity

    # -- what a loop reads ---------------------------------------------------------------------
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Set when a loop replaces the optimizer (e.g. re-wraps it); the new-entry warmup hooks follow."""
        for handle in self._hooks:
            handle.remove()
        self._optimizer = optimizer
        self._hooks = [optimizer.register_step_pre_hook(self._pre_optimizer_step),
                       optimizer.register_step_post_hook(self._post_optimizer_step)]

    @property
    def sparsity(self) -> SparsityController | None:
        return self._sparsity

    @sparsity.setter
    def sparsity(self, controller: SparsityController | None) -> None:
        """Attach a sparse model's controller; every grown sparse weight must be tiled by its blocks."""
        if controller is not None:
            for i, cfg in enumerate(self.plan[1:]):
                try:
                    for name, p in sparse_targets(meta_model(cfg)).items():
                        block_grid(name, p.shape, controller.cfg.block)
                except GrowkitError as e:
                    raise GrowkitError(f"[[growth]] stage {i + 1} (grow = {self.stages[i].grow}) makes a weight "
                                       f"sparsity cannot take: {e}") from None
        self._sparsity = controller

    @property
    def pool(self) -> int:
        """The embedding pooling factor now (``pool`` stages change it)."""
        return self.state.pool or self.start_pool

    @property
    def seq_len(self) -> int | None:
        """The training length now (input-length growth changes it; None: never set)."""
        return self.state.seq_len or self.start_seq_len

    # -- the per-step call -----------------------------------------------------------------------
    def step(self, step: int, *, tokens: int | None = None, flops: float | None = None,
             progress: float | None = None) -> tuple[Transformer, torch.optim.Optimizer]:
        """Call at the top of optimizer step ``step`` (the optimizer steps done so far: 0, 1, …).

        Moves a running ramp, applies every due stage (events in `events`), sets the LR when the
        Grower has your ``lr`` schedule; returns the model and optimizer to train from now on."""
        self.advance(step)
        self.events = self.grow_due(step, tokens=tokens, flops=flops, progress=progress)
        if self.lr_schedule is not None:
            lr = self.lr(step, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        return self.model, self.optimizer

    def advance(self, step: int) -> None:
        """Bring the mask ramp to ``step`` optimizer steps done (a no-op when already there)."""
        if step <= self.state.step:
            return
        self.state.step = step
        self._move_ramp()

    def grow_due(self, step: int, *, tokens: int | None = None, flops: float | None = None,
                 progress: float | None = None) -> list[dict[str, Any]]:
        """Apply every stage that is due at these counters; returns their growth events."""
        self.advance(step)
        frac = self._progress(step, progress)
        events = []
        self.records = []
        s = self.state
        while s.stages_done < len(self.stages) and self._due(s.stages_done, tokens, flops, frac):
            events.append(self._apply(self.stages[s.stages_done], frac))
        return events

    def due(self, step: int, *, tokens: int | None = None, flops: float | None = None,
            progress: float | None = None) -> bool:
        """Whether the next stage is due at these counters (`grow_due` would grow); moves the ramp to
        ``step`` first, as `grow_due` does."""
        self.advance(step)
        s = self.state
        return s.stages_done < len(self.stages) and self._due(s.stages_done, tokens, flops,
                                                              self._progress(step, progress))

    def lr(self, step: int, progress: float | None = None) -> float:
        """The LR of optimizer step ``step``: the ``lr`` schedule under the last policy, × lr_scale."""
        if self.lr_schedule is None:
            raise GrowkitError("this Grower has no LR schedule: pass lr=lambda step, progress: ... when building it")
        s = self.state
        frac = self._progress(step, progress)
        frac = 0.0 if frac is None else frac
        return with_lr_policy(self.lr_schedule, step, frac, s.lr_policy, s.lr_anchor, s.lr_anchor_progress,
                              s.lr_warmup_steps) * s.lr_scale

    # -- one stage --------------------------------------------------------------------------------
    def _apply(self, stage: GrowthStage, frac: float | None) -> dict[str, Any]:
        """Grow the model (and/or the training length), carry the optimizer, set the ramp and LR policy.

        With a ``probe``, the loss on its fixed batch just before and just after is recorded: for a
        strict method at c = 0 the jump is rounding error."""
        s = self.state
        before = self.probe(self.model) if self.probe is not None else None
        params_before = self.model.num_params()
        if s.ramp_start is not None:  # a new stage before the last ramp ended: finish it first
            s.ramp_start, s.ramp_steps = s.step, 0
            self._move_ramp()
        self._grow(stage)
        release_memory()  # the old model and optimizer state are garbage now: give their memory back
        if stage.seq_len:
            s.seq_len = stage.seq_len
        if stage.pool:
            s.pool = stage.pool
            self.model.seq_pool = stage.pool
        if stage.lr != "continue":
            s.lr_policy, s.lr_anchor, s.lr_anchor_progress = stage.lr, s.step, 0.0 if frac is None else frac
            s.lr_warmup_steps = stage.lr_warmup_steps
        if stage.lr_scale is not None:
            s.lr_scale = float(stage.lr_scale)
        s.stages_done += 1
        after = self.probe(self.model) if self.probe is not None else None
        jump = after - before if before is not None and after is not None else None
        return {"step": s.step, "event": "growth", "stage": s.stages_done, "grow": stage.grow, "seq_len": self.seq_len,
                "pool": self.pool,
                "params_before": params_before, "params_after": self.model.num_params(),
                "probe_loss_before": before, "probe_loss_after": after, "loss_jump": jump}

    def _grow(self, stage: GrowthStage) -> None:
        s = self.state
        spec = stage.spec()
        if not spec.changes(self.model.cfg):
            return
        whole = self.parallel.full(self.model, self.optimizer, self._make_optimizer) if not self._replaying \
            else (self.model, self.optimizer)
        assert whole is not None
        new, record = grow(whole[0], spec)
        self.records.append(record)
        if not self._replaying:
            fault_point("mid_growth", s.step)
        optimizer = carry_optimizer_state(whole[1], new, record)
        if self.sparsity is not None:
            self.sparsity.on_grow(new, record, optimizer)
        self.new_entries, s.new_warmup_start = {}, None
        if stage.new_lr_warmup_steps:
            for name, p in new.named_parameters():
                mask = record.new_entries(name, p.shape).to(p.device)
                if mask.any():
                    self.new_entries[name] = mask
            s.new_warmup_start, s.new_warmup_steps = s.step, stage.new_lr_warmup_steps
        self.model = new
        if new.masks():
            s.ramp_start, s.ramp_steps = s.step, stage.ramp_steps
            self._move_ramp()  # ramp_steps 0: fold at once
        if self.wrap is not None and not self._replaying:
            new, optimizer = self.wrap(new, optimizer)
        self.model, self.optimizer = new, optimizer

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        if self.make_optimizer is None:
            raise GrowkitError("a sharded (FSDP2) model needs make_optimizer: pass Grower(make_optimizer=...)")
        return self.make_optimizer(model)

    def _move_ramp(self) -> None:
        """Set the running ramp's masks to c(step); fold them when c reaches 1."""
        s = self.state
        if s.ramp_start is None:
            return
        c = ramp_value(s.step, s.ramp_start, s.ramp_steps)
        ramp_masks(self.model, c)
        if not self._replaying:
            fault_point("mid_ramp", s.step)
        if c >= 1.0:
            fold_masks(self.model)
            s.ramp_start = None

    def _due(self, index: int, tokens: int | None, flops: float | None, frac: float | None) -> bool:
        stage = self.stages[index]
        missing = [(name, arg) for name, value, arg in (
            ("at_tokens", stage.at_tokens, tokens is None and "tokens"),
            ("at_flops", stage.at_flops, flops is None and "flops"),
            ("at_fraction", stage.at_fraction, frac is None and "progress")) if value is not None and arg]
        if missing:
            name, arg = missing[0]
            extra = " (or build the Grower with total_steps=...)" if arg == "progress" else ""
            raise GrowkitError(f"[[growth]] stage {index + 1} grows {name}: pass {arg}= to grower.step(){extra}")
        return stage.due(self.state.step, tokens or 0, flops or 0.0, frac or 0.0)

    def _progress(self, step: int, progress: float | None) -> float | None:
        if progress is not None:
            return progress
        return step / self.total_steps if self.total_steps else None

    # -- new-entry warmup: optimizer hooks ----------------------------------------------------------
    def _pre_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Before ``optimizer.step()``: keep the new entries' values (this process's shard of them)."""
        self._before = None
        if self.state.new_warmup_start is None or not self.new_entries:
            return
        self._before = {}
        for name, p in self.model.named_parameters():
            if name in self.new_entries:
                local, mask = self.parallel.local(p, self.new_entries[name])
                self._before[name] = (local, mask, local.detach().clone())

    @torch.no_grad()
    def _post_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """After ``optimizer.step()``: new entries move by min(1, (t − t_g + 1)/W) of their update."""
        if self._before is None:
            return
        s = self.state
        assert s.new_warmup_start is not None
        factor = min(1.0, (s.step - s.new_warmup_start + 1) / s.new_warmup_steps)
        for p, mask, before in self._before.values():
            p.copy_(torch.where(mask, before + factor * (p - before), p))
        self._before = None
        if factor >= 1.0:
            s.new_warmup_start, self.new_entries = None, {}

    # -- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The schedule position as plain numbers (JSON-able), with the grown model's config."""
        return {**asdict(self.state), "model_config": self.model.cfg.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict` into a Grower built like the saved one (initial model, same stages): the
        done growths are replayed on the model (weights, not yet trained, are yours to load next), the
        mask ramp is set to the saved step's c and the new-entry warmup resumes."""
        saved = GrowerState(**{f.name: state.get(f.name, getattr(GrowerState(), f.name)) for f in fields(GrowerState)})
        n = saved.stages_done
        if not self.state.stages_done <= n <= len(self.stages):
            raise GrowkitError(f"this state was saved after {n} growth stages; this Grower has done "
                               f"{self.state.stages_done} of {len(self.stages)}: load it into a Grower built with "
                               f"the same stages on the initial model")
        if "model_config" in state and dict(state["model_config"]) != self.plan[n].to_dict():
            raise GrowkitError(f"this state was saved with another model or schedule (after {n} stages its model "
                               f"was {state['model_config']}, this schedule makes {self.plan[n].to_dict()}): build "
                               f"the Grower with the initial model and stages the state was saved with")
        self._replaying = True
        try:
            with torch.random.fork_rng(devices=[]):
                for stage in self.stages[self.state.stages_done:n]:
                    if self.model.masks():
                        ramp_masks(self.model, 1.0)
                        fold_masks(self.model)
                    self._grow(stage)
            self.state = saved
            self.model.seq_pool = self.pool
            if self.model.masks():
                if saved.ramp_start is None:
                    ramp_masks(self.model, 1.0)
                    fold_masks(self.model)
                else:
                    ramp_masks(self.model, ramp_value(saved.step, saved.ramp_start, saved.ramp_steps))
            if saved.new_warmup_start is None:
                self.new_entries = {}
        finally:
            self._replaying = False
        self.optimizer = self.optimizer  # hooks on the replayed optimizer
        release_memory()  # the replayed stages' intermediate models


def load_schedule(schedule: Schedule) -> list[GrowthStage]:
    """Stages from a TOML file with ``[[growth]]`` tables (a run config or a schedule alone), or a list."""
    if isinstance(schedule, str | Path):
        path = Path(schedule)
        if not path.is_file():
            raise GrowkitError(f"growth schedule {str(path)!r} does not exist: pass a TOML file with [[growth]] "
                               f"tables, or a list of stages")
        try:
            raw = tomllib.loads(path.read_text()).get("growth")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise GrowkitError(f"growth schedule {str(path)!r} is not valid TOML ({e}): fix the file") from None
        if not isinstance(raw, list) or not raw:
            raise GrowkitError(f"growth schedule {str(path)!r} has no [[growth]] tables: add at least one stage")
        return parse_stages(raw)
    if not isinstance(schedule, Sequence):
        raise GrowkitError(f"a growth schedule is a TOML path or a list of stages, got {type(schedule).__name__}")
    stages = [s for s in schedule if isinstance(s, GrowthStage)]
    if stages and len(stages) == len(schedule):
        return list(stages)
    if any(isinstance(s, GrowthStage) for s in schedule):
        raise GrowkitError("a growth schedule mixes GrowthStage objects and dicts: give one kind")
    return parse_stages(list(schedule))


def _check_lr(stages: list[GrowthStage], lr: LRSchedule | None) -> None:
    """Without the loop's LR schedule the Grower cannot rewarm, rewind or scale it: refuse up front."""
    if lr is not None:
        return
    for i, stage in enumerate(stages):
        if stage.lr != "continue" or stage.lr_scale is not None:
            what = f"lr = {stage.lr!r}" if stage.lr != "continue" else f"lr_scale = {stage.lr_scale}"
            raise GrowkitError(f"[[growth]] stage {i + 1} sets {what}, which needs your LR schedule: build the "
                               f"Grower with lr=lambda step, progress: ... (it then sets the LR every step)")
