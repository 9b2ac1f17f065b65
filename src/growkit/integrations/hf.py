"""Grow a Hugging Face model while ``transformers.Trainer`` trains it (``pip install 'growkit[hf]'``).

    from growkit.integrations.hf import GrowthCallback
    growth = [{"at_step": 1000, "grow": {"n_layers": 8, "d_model": 512}, "method": "zero"}]
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[GrowthCallback(growth)])
    trainer.train()                   # grows at optimizer step 1000 and keeps training
    trainer.save_model(OUT)           # the grown model: LlamaForCausalLM.from_pretrained(OUT) loads it

``growth`` is the ``[[growth]]`` stages of `growkit.Grower` (a TOML file or a list). ``grow_trainer(trainer,
growth)`` does the same for a Trainer already built, and checks the schedule at once.

**Route** (one growth, at the top of optimizer step t: ``on_step_begin`` with ``global_step = t``):

1. `growkit.adapters.from_hf`: the HF model → a `growkit.Transformer` (exact: the weights are copied along
   the adapter's links; GPT-2's fused ``c_attn = [q | k | v]`` is split, its ``Conv1D`` weights
   transposed). The Trainer's optimizer state moves along the same links: a moment is shaped like its
   weight, so it is split and transposed the same way; the step count is copied.
2. `growkit.Grower` applies the due stages: `growkit.grow`, then `growkit.carry_optimizer_state` (moments
   follow their weights, ``exp_avg·s`` and ``exp_avg_sq·s²`` for a weight scaled by s; new entries start
   at ``exp_avg = 0``, ``exp_avg_sq`` = the old entries' mean, see `growkit.grow.optim_state`).
3. `growkit.adapters.to_hf`: the grown model → a new model of the same HF class (structure from the grown
   config; token ids and the rest from the old config; same dtype, device, mode, attention kernel), and
   the carried state back along the new links (q, k, v moments concatenated into ``c_attn``'s).
4. **In place**: the Trainer's model object takes the new model's submodules and config, and the
   Trainer's optimizer object takes the new parameter groups (same order and hyperparameters) and state.

Step 4 is why a `TrainerCallback` suffices and no ``Trainer`` subclass is needed. The Trainer's loop
holds the model in a local variable (the forward, gradient clipping and ``zero_grad`` use it), accelerate
wraps the optimizer, and the LR scheduler holds the optimizer: none of these references can be replaced
from outside the loop, and assigning ``trainer.model``/``trainer.optimizer`` would leave the loop
training the old objects. Growing the same objects keeps every reference valid, in any transformers
version whose loop calls ``on_step_begin`` before the step's forward. The scheduler keeps its step count
and every group keeps its ``lr`` and ``initial_lr``: LR(t) is the schedule's value at t, grown or not.

Exactness: steps 1 and 3 move weights without arithmetic, so the HF model computes what the growkit model
computes; with a strict method (``zero``, ``split``) the grown model computes the old function, to
float rounding (pass ``probe`` to measure the loss jump). A growth briefly holds ~3 copies of the weights
(and of the optimizer state): the Trainer's, the grown growkit model's and the new HF model's.

Refused when the callback is built or bound (`GrowkitError`, before anything trains): a stage the model
or its HF class cannot take (e.g. GPT-2 needs n_heads · d_head = d_model); a mask ramp (``ramp_steps``:
HF models have no growth masks; a masked stage with ramp_steps = 0 folds at once); an LR policy,
``lr_scale`` or ``new_lr_warmup_steps`` (the LR is the Trainer's scheduler's); ``at_flops`` (the Trainer
counts FLOPs only when it logs); ``at_tokens`` without ``include_num_input_tokens_seen``; an optimizer
other than AdamW, Adam or SGD, or one that leaves a weight out (checked when training begins); more than one
process (DDP/FSDP/DeepSpeed own the parameters a growth replaces).

Resuming: build the Trainer on the checkpoint's model (``from_pretrained(CHECKPOINT)``, the grown shapes;
the Trainer's optimizer then has the groups the callback installed, in the same order, so its saved
state loads) with the same schedule. The callback, bound when training begins (or by
``grow_trainer(..., resume_from_checkpoint=CHECKPOINT)``), counts the stages due before the checkpoint's
step as done, checks that the model has the sizes they set, and goes on with the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from growkit.adapters import CLASSES, from_hf, supported_class, to_hf
from growkit.adapters._common import Link
from growkit.config import TransformerConfig
from growkit.errors import GrowkitError
from growkit.grow.optim_state import SUPPORTED, same_kind
from growkit.grow.shapes import meta_model
from growkit.grow.spec import DIMENSIONS
from growkit.model import Transformer
from growkit.record import GrowthRecord
from growkit.train.distributed import Parallel
from growkit.train.grower import Grower, Schedule, load_schedule
from growkit.train.growth import GrowthStage

try:
    import accelerate  # noqa: F401  (transformers.Trainer needs it)
    from transformers import TrainerCallback
except ImportError as _e:
    raise GrowkitError(f"growkit.integrations.hf needs transformers and accelerate ({_e.name} is missing): "
                       f"pip install 'growkit[hf]'") from None

__all__ = ["GrowthCallback", "grow_trainer"]

Probe = Callable[[nn.Module], float]
State = dict[str, Any]

#: Attributes every nn.Module has (hooks, mode): never copied from the new model to the old one.
_MODULE_ATTRS = frozenset(vars(nn.Module()))
#: The user's own settings on the HF model object, kept across a growth.
_KEEP = frozenset({"generation_config", "name_or_path"})


class GrowthCallback(TrainerCallback):
    """A `TrainerCallback` that grows the Trainer's model (and its optimizer state) on a schedule.

    Args:
        growth: ``[[growth]]`` stages (a TOML file, or a list of dicts / `GrowthStage`), as for `growkit.Grower`.
        probe: ``hf_model → loss`` on a fixed batch (called under ``torch.no_grad()``); each growth event
            then has ``probe_loss_before``, ``probe_loss_after`` and ``loss_jump``.

    After training, ``events`` holds one dict per growth (step, sizes, parameter counts, probe losses)
    and ``records`` the `GrowthRecord` of each (where every entry of each grown growkit tensor came from).
    """

    def __init__(self, growth: Schedule, *, probe: Probe | None = None) -> None:
        self.stages = load_schedule(growth)
        _check_stages(self.stages)
        self.probe = probe
        self.grower: Grower | None = None
        self.events: list[dict[str, Any]] = []
        self.records: list[GrowthRecord] = []
        self._class = ""
        self._bound_at = 0
        self._done = 0
        """Stages done before the Grower's first (a resumed run): its stage numbers start after them."""

    def bind(self, model: nn.Module, max_steps: int | None = None, step: int = 0) -> Grower:
        """Check the schedule against ``model``'s shapes (on the meta device: nothing is allocated) and the HF
        class, before anything trains; `on_train_begin` calls it when `grow_trainer` has not.

        ``step > 0`` (a Trainer resumed at that step): the stages due before it were applied before the
        checkpoint was saved (``model`` is the grown model), so the schedule starts after them; ``model``'s
        sizes must be the ones they set."""
        name = supported_class(model)
        family = CLASSES[name]
        cfg = family.config_from_hf(model)
        done = _done_before(self.stages, step, max_steps, cfg)
        placeholder = meta_model(cfg)
        grower = Grower(self.stages[done:], placeholder, _no_optimizer(placeholder), total_steps=max_steps or None,
                        parallel=Parallel())
        for i, grown in enumerate(grower.plan[1:], start=done):
            try:
                family.config_to_hf(grown, name, {})
            except GrowkitError as e:
                raise GrowkitError(f"[[growth]] stage {i + 1} (grow = {self.stages[i].grow}) makes a model "
                                   f"{name} cannot hold: {e}") from None
        self.grower, self._class, self._bound_at, self._done = grower, name, step, done
        return grower

    # -- Trainer events ----------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        _check_args(args, self.stages)
        assert model is not None
        if kwargs.get("optimizer") is not None:
            _check_optimizer(_torch_optimizer(kwargs["optimizer"]), model)
        if self.grower is None or self._bound_at != state.global_step:  # not bound yet, or resumed
            self.bind(model, state.max_steps, state.global_step)
        self.grower.total_steps = state.max_steps or None  # type: ignore[union-attr]

    def on_step_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                      optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        grower = self.grower
        assert grower is not None and model is not None and optimizer is not None
        step = state.global_step
        tokens = int(state.num_input_tokens_seen) if _counts_tokens(args) else None
        if grower.due(step, tokens=tokens):
            with torch.no_grad():
                self._grow(model, optimizer, args, step, tokens)

    # -- one growth ----------------------------------------------------------------------------------
    def _grow(self, model: nn.Module, optimizer: torch.optim.Optimizer, args: Any, step: int,
              tokens: int | None) -> None:
        grower = self.grower
        assert grower is not None
        inner = _torch_optimizer(optimizer)
        before = self._probe(model)
        old = from_hf(model)
        expected = grower.plan[grower.state.stages_done]
        if old.cfg != expected:
            raise GrowkitError(f"the Trainer's model is {old.cfg.to_dict()}, this schedule expected "
                               f"{expected.to_dict()} here: use one GrowthCallback per Trainer, bound to its model")
        grower.model, grower.optimizer = old, optimizer_to_growkit(inner, model, old, self._links(old))
        del old  # from here the Grower holds the only reference: the growth frees it
        events = grower.grow_due(step, tokens=tokens)
        grown, grown_optimizer = grower.model, grower.optimizer
        placeholder = meta_model(grown.cfg)  # the Grower keeps the schedule position, not a weight copy
        grower.model, grower.optimizer = placeholder, _no_optimizer(placeholder)
        attn = getattr(model.config, "_attn_implementation", None)
        new = to_hf(grown, self._class, base_config=model.config,
                    attn_implementation=attn if isinstance(attn, str) else None)
        groups, carried = optimizer_to_hf(grown_optimizer, grown, new, self._links(grown))
        del grown, grown_optimizer
        _take_over(model, new, args)
        _install(inner, groups, carried)
        self.records += grower.records
        after = self._probe(model)
        for event in events:
            event["stage"] += self._done
        if events and before is not None and after is not None:
            events[-1].update(probe_loss_before=before, probe_loss_after=after, loss_jump=after - before)
        self.events += events

    def _links(self, model: Transformer) -> list[Link]:
        return CLASSES[self._class].links(model.cfg, self._class)

    def _probe(self, model: nn.Module) -> float | None:
        if self.probe is None:
            return None
        with torch.no_grad():
            return float(self.probe(model))


def grow_trainer(trainer: Any, growth: Schedule, *, probe: Probe | None = None,
                 resume_from_checkpoint: str | Path | None = None) -> GrowthCallback:
    """Add a `GrowthCallback` to a built ``transformers.Trainer``, checking the schedule against its model
    and arguments now (before ``trainer.train()``); returns the callback (its ``events``, ``records``).

    To resume, build the Trainer on the checkpoint's model (``from_pretrained(CHECKPOINT)``: the shapes it
    grew to), pass the same ``growth`` and ``resume_from_checkpoint=CHECKPOINT``, then
    ``trainer.train(resume_from_checkpoint=CHECKPOINT)``: the schedule goes on after the stages done."""
    callback = GrowthCallback(growth, probe=probe)
    _check_args(trainer.args, callback.stages)
    step = _checkpoint_step(Path(resume_from_checkpoint)) if resume_from_checkpoint is not None else 0
    callback.bind(trainer.model, trainer.args.max_steps if trainer.args.max_steps > 0 else None, step)
    trainer.add_callback(callback)
    return callback


# -- optimizer state along the adapter's links -------------------------------------------------------
def optimizer_to_growkit(optimizer: torch.optim.Optimizer, hf_model: nn.Module, model: Transformer,
                         links: list[Link]) -> torch.optim.Optimizer:
    """An optimizer of ``optimizer``'s class over ``model`` (the `from_hf` of ``hf_model``) with the same
    groups and the state split along ``links``: a fused HF tensor's moments ``[m_q | m_k | m_v]`` (transposed
    back for a ``Conv1D``) become ``m_q``, ``m_k``, ``m_v``; step counts are copied."""
    _check_optimizer(optimizer, hf_model)
    hf, ours = dict(hf_model.named_parameters()), dict(model.named_parameters())
    group_of = _group_index(optimizer)
    groups = _empty_groups(optimizer)
    state: dict[torch.Tensor, State] = {}
    for link in links:
        p = hf[link.hf]
        targets = [ours[n] for n in link.gk]
        groups[group_of[id(p)]]["params"] += targets
        if optimizer.state.get(p):
            state.update(zip(targets, _split(optimizer.state[p], p, link.transpose, [t.shape[0] for t in targets]),
                             strict=True))
    out = same_kind(optimizer, groups)
    out.state.update(state)
    return out


def optimizer_to_hf(optimizer: torch.optim.Optimizer, model: Transformer, hf_model: nn.Module,
                    links: list[Link]) -> tuple[list[dict[str, Any]], dict[torch.Tensor, State]]:
    """The parameter groups and state of ``optimizer`` (over the growkit ``model``) for ``hf_model`` (its
    `to_hf`): moments concatenated along ``links`` (and transposed for a ``Conv1D``); each HF tensor joins
    the group of its first growkit tensor; each group's tensors in ``hf_model.parameters()`` order, as the
    Trainer would build them."""
    hf, ours = dict(hf_model.named_parameters()), dict(model.named_parameters())
    group_of = _group_index(optimizer)
    groups = _empty_groups(optimizer)
    state: dict[torch.Tensor, State] = {}
    for link in links:
        sources, p = [ours[n] for n in link.gk], hf[link.hf]
        groups[group_of[id(sources[0])]]["params"].append(p)
        parts = [optimizer.state.get(s) for s in sources]
        if all(parts):
            state[p] = _join(parts, sources, link.transpose)  # type: ignore[arg-type]
    order = {id(p): i for i, p in enumerate(hf_model.parameters())}
    for group in groups:
        group["params"].sort(key=lambda q: order[id(q)])
    return groups, state


def _check_optimizer(optimizer: torch.optim.Optimizer, hf_model: nn.Module) -> None:
    """The optimizer must be one whose state growkit carries, and hold exactly the model's parameters."""
    if not isinstance(optimizer, SUPPORTED):
        raise GrowkitError(f"the Trainer's optimizer is {type(optimizer).__name__}: growkit carries the state of "
                           f"{', '.join(c.__name__ for c in SUPPORTED)}; use TrainingArguments(optim='adamw_torch')")
    held = _group_index(optimizer)
    params = dict(hf_model.named_parameters())
    missing = [n for n, p in params.items() if id(p) not in held]
    if missing:
        raise GrowkitError(f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} not in the Trainer's "
                           f"optimizer: a growth carries the optimizer state of every weight; train them all "
                           f"(requires_grad=True, the Trainer's own optimizer)")
    if len(held) != len(params):
        raise GrowkitError("the Trainer's optimizer holds tensors that are not the model's weights: growth needs "
                           "an optimizer over the model's parameters only")


def _split(state: State, p: torch.Tensor, transpose: bool, sizes: list[int]) -> list[State]:
    parts: list[State] = [{} for _ in sizes]
    for key, value in state.items():
        if torch.is_tensor(value) and value.shape == p.shape:
            pieces = (value.T if transpose else value).split(sizes, 0)
            for part, piece in zip(parts, pieces, strict=True):
                part[key] = piece.clone(memory_format=torch.contiguous_format)
        else:
            for part in parts:
                part[key] = value.clone() if torch.is_tensor(value) else value
    return parts


def _join(parts: list[State], sources: list[torch.Tensor], transpose: bool) -> State:
    out: State = {}
    for key, value in parts[0].items():
        if torch.is_tensor(value) and value.shape == sources[0].shape:
            joined = torch.cat([part[key] for part in parts], 0)
            out[key] = (joined.T if transpose else joined).contiguous()
        else:
            out[key] = value.clone() if torch.is_tensor(value) else value
    return out


def _group_index(optimizer: torch.optim.Optimizer) -> dict[int, int]:
    return {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}


def _empty_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    return [{k: v for k, v in g.items() if k != "params"} | {"params": []} for g in optimizer.param_groups]


# -- in place ----------------------------------------------------------------------------------------
def _take_over(old: nn.Module, new: nn.Module, args: Any) -> None:
    """``old`` becomes ``new``: its submodules, config and the model-level attributes transformers derives
    from the config (``vocab_size``, tied-weight keys, ...); its hooks, generation config and name stay."""
    checkpointing = any(getattr(m, "gradient_checkpointing", False) is True for m in old.modules())
    for name in [n for n in old._modules if n not in new._modules]:
        delattr(old, name)
    for name, child in new.named_children():
        setattr(old, name, child)
    for key, value in vars(new).items():
        if key not in _MODULE_ATTRS and key not in _KEEP:
            setattr(old, key, value)
    if checkpointing:
        old.gradient_checkpointing_enable(gradient_checkpointing_kwargs=getattr(args, "gradient_checkpointing_kwargs",
                                                                                None))


def _install(optimizer: torch.optim.Optimizer, groups: list[dict[str, Any]], state: dict[torch.Tensor, State]) -> None:
    """Replace ``optimizer``'s groups and state in place (the scheduler and accelerate hold the object)."""
    if len(groups) != len(optimizer.param_groups):  # pragma: no cover - carry keeps the groups
        raise GrowkitError("growth changed the number of optimizer groups: growkit bug")
    optimizer.param_groups[:] = groups
    optimizer.state.clear()
    optimizer.state.update(state)


def _torch_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (or the optimizer itself)."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer  # type: ignore[attr-defined]
    return optimizer


def _no_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """A stand-in for the Grower between growths (the Trainer's optimizer is the real one)."""
    return torch.optim.SGD(model.parameters(), lr=0.0)


# -- resuming ----------------------------------------------------------------------------------------
def _done_before(stages: list[GrowthStage], step: int, max_steps: int | None, cfg: TransformerConfig) -> int:
    """How many stages a run resumed at ``step`` has done: those due at the top of step ``step − 1`` (the
    last one trained), checked against the model: each size a done stage sets must be ``cfg``'s."""
    if step == 0:
        return 0
    done = 0
    while done < len(stages) and stages[done].at_tokens is None and stages[done].due(
            step - 1, 0, 0.0, (step - 1) / max_steps if max_steps else 0.0):
        done += 1
    sizes = {dim: v for stage in stages[:done] for dim in DIMENSIONS if (v := getattr(stage.spec(), dim)) is not None}
    wrong = {dim: (v, getattr(cfg, dim)) for dim, v in sizes.items() if getattr(cfg, dim) != v}
    if wrong:
        raise GrowkitError(f"resumed at step {step}, the schedule has done {done} stage(s), which set "
                           f"{', '.join(f'{d} = {v}' for d, (v, _) in wrong.items())}, but the model has "
                           f"{', '.join(f'{d} = {m}' for d, (_, m) in wrong.items())}: build the Trainer on the "
                           f"checkpoint's model (from_pretrained(CHECKPOINT)) with the schedule it was trained with")
    return done


def _checkpoint_step(checkpoint: Path) -> int:
    """The global step a Trainer checkpoint folder was saved at (its ``trainer_state.json``)."""
    path = checkpoint / "trainer_state.json"
    try:
        return int(json.loads(path.read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GrowkitError(f"{path} is not a readable Trainer state ({e}): pass a checkpoint folder the Trainer "
                           f"wrote (output_dir/checkpoint-N)") from None


# -- checks before step 0 ----------------------------------------------------------------------------
def _check_stages(stages: list[GrowthStage]) -> None:
    for i, s in enumerate(stages):
        where = f"[[growth]] stage {i + 1}"
        if s.ramp_steps:
            raise GrowkitError(f"{where} has ramp_steps = {s.ramp_steps}: a Hugging Face model has no growth masks "
                               f"to ramp; use a strict method (method = 'zero' or 'split') with ramp_steps = 0")
        if s.lr != "continue" or s.lr_scale is not None or s.new_lr_warmup_steps:
            raise GrowkitError(f"{where} sets lr / lr_scale / new_lr_warmup_steps: under transformers.Trainer the LR "
                               f"is the Trainer's scheduler's; drop these keys (the schedule continues through growth)")
        if s.at_flops is not None:
            raise GrowkitError(f"{where} grows at_flops: the Trainer counts FLOPs only when it logs; use at_step, "
                               f"at_fraction or at_tokens")


def _counts_tokens(args: Any) -> bool:
    flag = getattr(args, "include_num_input_tokens_seen", False)
    return bool(flag) and flag != "no"


def _check_args(args: Any, stages: list[GrowthStage]) -> None:
    if any(s.at_tokens is not None for s in stages) and not _counts_tokens(args):
        raise GrowkitError("a [[growth]] stage grows at_tokens: set TrainingArguments(include_num_input_tokens_seen="
                           "True) so the Trainer counts tokens, or grow at_step / at_fraction")
    if getattr(args, "world_size", 1) > 1 or getattr(args, "deepspeed", None) or getattr(args, "fsdp", None):
        raise GrowkitError("GrowthCallback grows a model trained by one process: DDP, FSDP and DeepSpeed own the "
                           "parameters a growth replaces; train on one device, or grow with growkit train")
