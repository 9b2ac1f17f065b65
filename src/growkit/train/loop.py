"""The training loop: `growkit.train(RunConfig)` and the `Trainer` behind it.

One optimizer step = ``grad_accum`` micro-batches of ``micro_batch_size`` sequences (forward, backward
of ``loss / grad_accum``), gradient clipping, AdamW, then the LR for the next step. Batches are pure
functions of their index (see `growkit.data`), so the data position is just the step counter and a
resumed run sees exactly the batches an uninterrupted run would have. Counters kept per step:
tokens, training FLOPs (``flops_per_token × tokens``, with the formula in `growkit.flops`) and
wall-clock; every log record carries all three. Under ``torchrun`` the same loop runs on every process
(`growkit.train.distributed`): each takes its slice of every global micro-batch, and rank 0 logs and saves.
Rank 0 holds the run dir's write lock from before it checks the dir until `Trainer.fit` returns
(`growkit.train.runlock`): a second process on the same run dir gets a `GrowkitError` naming the first.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from growkit.data import IGNORE_INDEX, CausalBatches, MLMBatches, load_tokenizer, prepare_data
from growkit.errors import GrowkitError
from growkit.flops import training_flops_per_token
from growkit.io import atomic_write_json, atomic_write_text
from growkit.model import Transformer
from growkit.sparse import TARGET, SparsityConfig, SparsityController, sparsify
from growkit.train.checkpoint import find_checkpoint, read_checkpoint, save_checkpoint
from growkit.train.config import RunConfig, TrainConfig
from growkit.train.distributed import check_divides, setup
from growkit.train.faults import fault_point
from growkit.train.grower import Grower
from growkit.train.hardware import Resolved, apply, resolve_device, resolve_run
from growkit.train.hf_start import hf_start
from growkit.train.metrics import EVENTS_FILE, METRICS_FILE, TRAIN_LOG_FILE, MetricsLogger, read_jsonl
from growkit.train.numerics import grad_norm, nonfinite_step, skip_step
from growkit.train.runlock import RunLock
from growkit.train.schedule import learning_rate, progress


@dataclass
class TrainState:
    """Counters of a run; with the checkpointed tensors and the Grower's state (`growkit.train.grower`: the
    growth schedule's position) they are all a resume needs."""

    step: int = 0
    tokens: int = 0
    flops: float = 0.0
    time_s: float = 0.0
    flops_dense: float = 0.0
    """Training FLOPs the same steps would have cost dense (equal to ``flops`` without sparsity)."""
    nonfinite_in_a_row: int = 0
    """Optimizer steps skipped in a row for a non-finite loss or gradient (`growkit.train.numerics`)."""
    skipped_steps: int = 0


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig,
                    sparsity: SparsityConfig | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only: no decay on norms, biases and embeddings.

    With ``sparsity`` whose sparse weights' LR differs from the others' (``sparse_weight_lr_factor() != 1``),
    the sparse weights (`growkit.sparse.TARGET`) get a third group, last, whose ``"lr_factor"`` the trainer
    multiplies into their LR at every step (the groups keep their keys through growth)."""
    decay, no_decay, sparse = [], [], []
    factor = 1.0 if sparsity is None else sparsity.sparse_weight_lr_factor()
    for name, p in model.named_parameters():
        if p.ndim < 2 or name.endswith("_emb.weight"):
            no_decay.append(p)
        elif factor != 1.0 and TARGET.match(name):
            sparse.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if sparse:
        groups.append({"params": sparse, "weight_decay": cfg.weight_decay, "lr_factor": factor})
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


class Trainer:
    """Owns the model, optimizer, data and counters of one run; `fit()` runs it to its budget."""

    def __init__(self, cfg: RunConfig, resume: bool | str | Path = False, force_unlock: bool = False) -> None:
        """``resume``: True continues the run dir's latest checkpoint, a path that checkpoint (or run dir).
        ``force_unlock``: take the run dir's lock over from a holder that cannot be checked
        (`growkit.train.runlock`)."""
        self.cfg = cfg
        self.run_dir = Path(cfg.run.dir)
        t = cfg.train
        self.parallel = setup(resolve_device(t.device), cfg.parallel.fsdp, cfg.parallel.backend)  # torchrun: join
        self.device = self.parallel.device
        check_divides(self.parallel.world_size, cfg.micro_batch_size)
        start: Transformer | None = None  # the initial model, when [model] names a Hugging Face folder
        if "hf" in cfg.model:
            start, self.model_cfg, self.tokenizer = hf_start(cfg.model, cfg.data.tokenizer, cfg.data.seq_len)
        else:
            self.tokenizer = load_tokenizer(cfg.data.tokenizer)
        with self.parallel.first(local=True):  # one process per machine tokenizes, the others read its cache
            self.data = prepare_data(self.tokenizer, cfg.data.path, cfg.data.cache_dir, cfg.data.val_fraction,
                                     cfg.data.text_field)
        # one writer per run dir: rank 0 takes the lock, then checks the dir (so it sees a concurrent writer)
        self.lock = RunLock(self.run_dir, force=force_unlock) if self.parallel.is_main else None
        with self.parallel.first():  # rank 0 checks and creates the run dir before the others look
            if self.lock is not None:
                self.lock.acquire()
            try:
                checkpoint = _prepare_run_dir(self.run_dir, resume)
            except BaseException:
                self.release_lock()
                raise
        try:
            self._build(cfg, start, checkpoint)
        except BaseException:
            self.release_lock()
            raise

    def _build(self, cfg: RunConfig, start: Transformer | None, checkpoint: Path | None) -> None:
        """The rest of `__init__`, with the run dir locked: model, optimizer, Grower, resume, data."""
        t = cfg.train
        if start is None:
            self.model_cfg = cfg.model_config(self.tokenizer.vocab_size)
        if self.model_cfg.arch == "bert" and self.tokenizer.mask_id is None:
            raise GrowkitError(f"tokenizer {cfg.data.tokenizer!r} has no mask token, which BERT's masked-LM "
                               f"needs: use data.tokenizer = 'bpe' or 'byte'")
        self.initial_model_cfg = self.model_cfg
        self.resolved: Resolved = resolve_run(cfg, self.model_cfg, self.parallel.world_size, str(self.device),
                                              warn=self.parallel.is_main)
        apply(self.resolved)  # threads; TF32 on CUDA
        torch.manual_seed(t.seed)
        self.model = (start if start is not None else Transformer(self.model_cfg, seed=t.seed)).to(self.device)
        self.optimizer = build_optimizer(self.model, t, cfg.sparsity_config())
        # the stage logic: checks the whole schedule on the model's shapes now, grows at its steps
        self.grower = Grower(cfg.stages(), self.model, self.optimizer, lr=self._base_lr,
                             seq_len=cfg.data.start_seq_len or cfg.data.seq_len, pool=cfg.data.start_pool,
                             probe=self._probe_loss,
                             parallel=self.parallel, make_optimizer=self._make_optimizer, wrap=self._wrap_grown)
        self.state = TrainState()
        self.sparsity: SparsityController | None = None
        self._saved_sparsity: dict[str, torch.Tensor] = {}
        if checkpoint is not None:
            self._restore(checkpoint)
        if cfg.sparsity is not None:  # after the optimizer (and a resumed model): masks from the checkpoint if any
            self.sparsity = sparsify(self.model, self._sparsity_config(), self.optimizer,
                                     state=self._saved_sparsity or None)
            self.grower.sparsity = self.sparsity  # masks follow each growth (controller.on_grow)
        self.sparse_paths: list[dict[str, Any]] = []
        self._sparse_fast_path(self.model)
        if self.parallel.is_main and not (self.run_dir / "config.json").exists():
            atomic_write_json(self.run_dir / "config.json", {**cfg.to_dict(), "resolved": self.resolved.to_dict()})
        self._wrap()
        self.batches = self._batches("train", self.seq_len, t.seed)
        self.eval_set = self._batches("val", cfg.data.seq_len, t.seed + 1).eval_batches(cfg.run.eval_batches)
        self.autocast = self.resolved.dtype == "bfloat16"

    def release_lock(self) -> None:
        """Give up the run dir's lock (`fit` does at its end; a later `fit` takes it again)."""
        if self.lock is not None:
            self.lock.release()

    # -- pieces --------------------------------------------------------------------------------
    def _make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(model, self.cfg.train, self.cfg.sparsity_config())

    def _wrap(self) -> None:
        """(Re)build the distributed wrapper around the current model (after the start and every growth)."""
        self.model, self.optimizer, self.forward_model = self.parallel.wrap(self.model, self.optimizer,
                                                                            self._make_optimizer)
        self.grower.model, self.grower.optimizer = self.model, self.optimizer

    def _sparse_fast_path(self, model: Transformer) -> None:
        """``sparsity.kernel``: patch the sparse linears of ``model`` to the condensed matmuls where chosen
        (`growkit.sparse.fast_path`); ``"auto"`` times both paths per layer shape and keeps the faster. The
        choices are kept in ``sparse_paths`` and written to the log at the start of `fit`."""
        if self.sparsity is None or self.sparsity.cfg.kernel == "masked":
            return
        from growkit.sparse.fast_path import choose_paths, install

        kernel = self.sparsity.cfg.kernel
        why = ("a multi-process run" if self.parallel.world_size > 1 else
               "bf16 autocast" if self.resolved.dtype == "bfloat16" else None)
        if why is not None:
            if kernel == "condensed":
                raise GrowkitError(f'sparsity.kernel = "condensed" is not available in {why}: use kernel = '
                                   f'"masked" (or "auto", which falls back to it)')
            self.sparse_paths = [{"path": "masked", "reason": why}]
            return
        paths, records = choose_paths(model, self.sparsity.block_masks, self.sparsity.cfg.block,
                                      self.cfg.micro_batch_size * self.seq_len, kernel)
        install(model, self.sparsity.block_masks, self.sparsity.cfg.block, paths)
        self.sparse_paths = records or [{"path": kernel, "layers": len(paths)}]

    def _wrap_grown(self, model: Transformer, optimizer: torch.optim.Optimizer
                    ) -> tuple[Transformer, torch.optim.Optimizer]:
        """The Grower's ``wrap``: wrap a grown model and its carried optimizer for this run's processes."""
        self._sparse_fast_path(model)  # the grown model's sparse linears (the controller has its masks)
        self.model, self.optimizer, self.forward_model = self.parallel.wrap(model, optimizer, self._make_optimizer)
        self.model_cfg = model.cfg
        return self.model, self.optimizer

    def _base_lr(self, step: int, frac: float) -> float:
        """The run's LR schedule before growth policies (`growkit.train.schedule`), with the sparse LR rule."""
        lr = learning_rate(self.cfg.train, step, frac)
        return lr * self.sparsity.lr_factor() if self.sparsity is not None else lr

    @property
    def seq_len(self) -> int:
        """The training sequence length now (input-length growth changes it)."""
        return self.grower.seq_len or self.cfg.data.seq_len

    def _batches(self, split: str, seq_len: int, seed: int) -> CausalBatches | MLMBatches:
        batch_size = self.cfg.micro_batch_size
        if self.model_cfg.causal:
            return self.data.causal_batches(split, batch_size, seq_len, seed)
        return self.data.mlm_batches(split, batch_size, seq_len, seed, mask_prob=self.cfg.data.mlm_prob)

    def _restore(self, path: Path) -> None:
        """Continue from a checkpoint; after growth stages it holds the grown model, which is rebuilt."""
        ckpt = read_checkpoint(path)
        grown = ckpt.state.get("stages_done", 0) > 0
        start = ckpt.state.get("initial_model_config") if grown else ckpt.state.get("model_config")
        if start != self.model_cfg.to_dict():
            raise GrowkitError(f"checkpoint {ckpt.path} holds a different model ({start}) than the config builds "
                               f"({self.model_cfg.to_dict()}): resume with the config the run was started with")
        self.grower.load_state_dict(ckpt.state)  # replays the done growths: the saved shapes and ramp
        self.model, self.optimizer, self.model_cfg = self.grower.model, self.grower.optimizer, self.grower.model.cfg
        ckpt.load_model(self.model)
        ckpt.load_optimizer(self.optimizer, self.model)
        torch.set_rng_state(ckpt.rng_state())
        self._saved_sparsity = {k.removeprefix("sparsity."): v for k, v in ckpt.extra().items()
                                if k.startswith("sparsity.")}
        self.state = TrainState(**{k: ckpt.state.get(k, v) for k, v in asdict(TrainState()).items()})
        if self.parallel.is_main:  # drop records the resumed run will write again
            for name in (METRICS_FILE, TRAIN_LOG_FILE):
                _truncate_records(self.run_dir / name, self.state.step)
            _truncate_records(self.run_dir / EVENTS_FILE, self.state.step - 1)  # step N's events follow its checkpoint

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.train.batch_size * self.seq_len

    @property
    def flops_per_token(self) -> float:
        """At the current size and training sequence length: it changes at every growth. With sparsity,
        each projection counts only its active weights (`growkit.flops`); the attention term stays dense."""
        if self.sparsity is not None:
            return training_flops_per_token(self.model.cfg, self.seq_len, self.sparsity.projection_densities(),
                                            pool=self.model.seq_pool)
        return self.model.flops_per_token(self.seq_len)

    def _sparsity_config(self) -> SparsityConfig:
        """``[sparsity]``, with total_steps from the run's budget when unset (computed from the initial
        model and length at the configured density, so a resumed run gets the same T)."""
        scfg = self.cfg.sparsity_config()
        assert scfg is not None
        if scfg.total_steps is not None:
            return scfg
        t = self.cfg.train
        seq_len = self.cfg.data.start_seq_len or self.cfg.data.seq_len
        tokens = t.batch_size * seq_len
        fpt = training_flops_per_token(self.initial_model_cfg, seq_len, scfg.density, pool=self.cfg.data.start_pool)
        per_budget = [t.max_steps, t.max_tokens and math.ceil(t.max_tokens / tokens),
                      t.max_flops and math.ceil(t.max_flops / (fpt * tokens))]
        return scfg.replace(total_steps=min(n for n in per_budget if n))

    def progress(self) -> float:
        s = self.state
        return progress(self.cfg.train, s.step, s.tokens, s.flops)

    def estimated_total_steps(self) -> int:
        t = self.cfg.train
        per_budget = [t.max_steps,
                      t.max_tokens and math.ceil(t.max_tokens / self.tokens_per_step),
                      t.max_flops and math.ceil(t.max_flops / (self.flops_per_token * self.tokens_per_step))]
        return min(n for n in per_budget if n)

    # -- one step, one eval ----------------------------------------------------------------------
    def train_step(self) -> float:
        """One optimizer step; returns the mean training loss over its micro-batches."""
        self.model.train()
        lr = self.grower.lr(self.state.step, self.progress())  # growth LR policy × lr_scale × the sparse LR rule
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)  # the sparse weights' own factor (build_optimizer)
        accum = self.cfg.grad_accum
        total = 0.0
        par = self.parallel
        for micro in range(accum):  # each rank: its slice of every global micro-batch
            batch = self.batches.batch(self.state.step * accum + micro, par.rank, par.world_size)
            x, y = (b.to(self.device) for b in batch)
            weight = 1.0 if self.model_cfg.causal else par.loss_weight(y, IGNORE_INDEX)  # MLM: share of targets
            with par.grad_sync(self.forward_model, sync=micro == accum - 1):
                with self._autocast():
                    _, loss = self.forward_model(x, y)
                (loss * weight / accum).backward()
            total += loss.item() * weight
        total = par.mean(total)
        if self.sparsity is not None:
            par.average_(self.sparsity.captured_gradients().values())  # RigL scores from the global batch
        norm = grad_norm(self.model.parameters(), self.cfg.train.grad_clip)
        skipped = nonfinite_step(total / accum, norm)
        if skipped:  # every rank agrees; the weights stay, the batch is consumed
            skip_step(self.state, total / accum, float(norm), self.cfg.train.max_nonfinite_steps, self.run_dir)
        else:
            self.state.nonfinite_in_a_row = 0
            self.optimizer.step()  # the Grower's hooks scale the update of a growth's new entries in their warmup
        fault_point("after_optimizer", self.state.step)
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.tokens += self.tokens_per_step
        self.state.flops += self.flops_per_token * self.tokens_per_step
        self.state.flops_dense += self.model.flops_per_token(self.seq_len) * self.tokens_per_step
        if self.sparsity is not None and skipped:
            self.sparsity.skip(self.state.step)  # no prune-and-regrow on non-finite gradients
        elif self.sparsity is not None:
            self.sparsity.step(self.state.step)  # re-mask weights and moments; prune-and-regrow when due
        self.grower.advance(self.state.step)  # a running mask ramp moves (and folds at its end)
        return total / accum

    # -- growth --------------------------------------------------------------------------------
    def grow_due_stages(self) -> list[dict[str, Any]]:
        """Apply every growth stage that is due at the current counters (the Grower's stage logic);
        returns their event records."""
        s = self.state
        seq_len = self.seq_len
        self.grower.step(s.step, tokens=s.tokens, flops=s.flops, progress=self.progress())
        self.model, self.optimizer = self.grower.model, self.grower.optimizer
        if self.seq_len != seq_len:
            self.batches = self._batches("train", self.seq_len, self.cfg.train.seed)
        return [{**self._counters(), **event} for event in self.grower.events]

    @torch.no_grad()
    def _probe_loss(self, model: torch.nn.Module) -> float:
        model.eval()
        x, y = self.eval_set[0]
        with self._autocast():
            _, loss = model(x.to(self.device), y.to(self.device))
        return loss.item()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float | None]:
        """Loss on the fixed validation batches; perplexity; bits per byte (causal LMs only)."""
        self.model.eval()
        losses = []
        for x, y in self.eval_set:
            with self._autocast():
                _, loss = self.model(x.to(self.device), y.to(self.device))
            losses.append(loss.item())
        val_loss = sum(losses) / len(losses)
        knows_bytes = self.model_cfg.causal and self.data.has_text_sizes  # not for pre-tokenized .bin data
        bpb = self.data.bits_per_byte(val_loss, "val") if knows_bytes else None
        return {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)), "val_bpb": bpb}

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 writes; under FSDP2 every rank first helps gather the full state)."""
        whole = self.parallel.full(self.model, self.optimizer, self._make_optimizer, main_only=True)
        if whole is None:
            return None
        state = {**asdict(self.state), **self.grower.state_dict(), "model_config": self.model_cfg.to_dict(),
                 "initial_model_config": self.initial_model_cfg.to_dict(), "run_config": self.cfg.to_dict()}
        extra = {f"new_entries.{n}": m for n, m in self.grower.new_entries.items()}
        if self.sparsity is not None:
            extra.update({f"sparsity.{k}": v for k, v in self.sparsity.state_dict().items()})
        return save_checkpoint(self.run_dir, whole[0], whole[1], state, keep=self.cfg.run.keep_checkpoints,
                               extra=extra)

    # -- the run -------------------------------------------------------------------------------
    def fit(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train until the budget is spent; evaluate, log and checkpoint on the way; plot at the end.

        ``stop_at_step`` ends this session early at that step (with a checkpoint), as a preempted job
        would; the schedule still follows the full budget, so ``--resume`` continues the same run.
        The run dir stays locked until it returns (or raises).
        """
        if self.lock is not None:
            self.lock.acquire()  # again, after a fit that ended; a GrowkitError if another process took the dir
        try:
            return self._fit(stop_at_step)
        finally:
            self.release_lock()

    def _fit(self, stop_at_step: int | None) -> dict[str, Any]:
        run = self.cfg.run
        ckpt_every = run.ckpt_every or run.eval_every
        main = self.parallel.is_main
        sink = None
        if run.wandb and main:
            from growkit.train.wandb_sink import WandbSink

            sink = WandbSink(run.wandb, self.run_dir, self.cfg.to_dict(), run.wandb_mode)
        logger = MetricsLogger(self.run_dir, tensorboard=run.tensorboard, enabled=main, wandb=sink)
        started, base_time = time.perf_counter(), self.state.time_s
        last = {"time": started, "tokens": self.state.tokens}
        bar = tqdm(total=self.estimated_total_steps(), initial=self.state.step, disable=not (run.progress and main),
                   unit="step", dynamic_ncols=True, desc=self.run_dir.name)
        eval_record: dict[str, Any] = {}
        train_loss = float("nan")
        self._say(bar, f"{self.run_dir.name}: {self.resolved.summary()}")
        for rec in self.sparse_paths:
            self._say(bar, "sparse matmuls: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                          for k, v in rec.items()))
        try:
            if self.state.step == 0:  # where the run starts, for the plots and the "loss fell" check
                eval_record = self._eval_and_log(logger, bar, train_loss=None)
            while self.progress() < 1.0:
                fault_point("before_step", self.state.step)
                for event in self.grow_due_stages():
                    logger.log_event(event)
                    self._say(bar, f"step {event['step']:>6} | growth stage {event['stage']}: {event['grow']} "
                                   f"seq_len {event['seq_len']} | params {event['params_before']:,} → "
                                   f"{event['params_after']:,} | probe loss jump {event['loss_jump']:+.2e}")
                train_loss = self.train_step()
                self.state.time_s = base_time + time.perf_counter() - started
                s = self.state
                done = self.progress() >= 1.0
                bar.update(1)
                if s.step % run.log_every == 0 or done:
                    now = time.perf_counter()
                    tok_s = (s.tokens - last["tokens"]) / max(now - last["time"], 1e-9)
                    last = {"time": now, "tokens": s.tokens}
                    logger.log_train({**self._counters(), "train_loss": train_loss, "tokens_per_s": tok_s,
                                      "lr": self.optimizer.param_groups[0]["lr"]})
                    bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                if s.step % run.eval_every == 0 or done:
                    eval_record = self._eval_and_log(logger, bar, train_loss)
                if s.step % ckpt_every == 0 or done or s.step == stop_at_step:
                    self.save()
                if s.step == stop_at_step:
                    break
        finally:
            bar.close()
            logger.close()
        plots = []
        if run.plots and main:
            from growkit.train.plots import plot_runs
            plots = plot_runs([self.run_dir], self.run_dir / "plots")
        return {**eval_record, "run_dir": str(self.run_dir), "plots": [str(p) for p in plots]}

    def _eval_and_log(self, logger: MetricsLogger, bar: tqdm, train_loss: float | None) -> dict[str, Any]:
        record = {**self._counters(), "train_loss": train_loss, **self.evaluate()}
        logger.log_eval(record)
        self._say(bar, _describe(record))
        return record

    def _say(self, bar: tqdm, text: str) -> None:
        if self.parallel.is_main:
            bar.write(text)

    def _counters(self) -> dict[str, Any]:
        s = self.state
        out = {"step": s.step, "tokens": s.tokens, "flops": s.flops, "time_s": round(s.time_s, 3)}
        if self.sparsity is not None:
            out.update(flops_dense=s.flops_dense, density=self.sparsity.density())
        return out


def train(cfg: RunConfig, resume: bool | str | Path = False, force_unlock: bool = False) -> dict[str, Any]:
    """Run a training run to its budget; returns the last evaluation and where the results are.

    ``resume=True`` continues from the run dir's latest checkpoint (``str``/``Path``: from that
    checkpoint directory); without it a run dir that already holds a run is refused, never overwritten.
    The run dir is locked for the whole run (`growkit.train.runlock`): a second process writing to it gets a
    `GrowkitError` naming this one; ``force_unlock`` takes over a lock whose holder cannot be checked.
    """
    trainer = Trainer(cfg, resume=resume, force_unlock=force_unlock)
    try:
        return trainer.fit()
    finally:
        trainer.release_lock()
        trainer.parallel.shutdown()


def _describe(r: dict[str, Any]) -> str:
    bpb = f" | bpb {r['val_bpb']:.3f}" if r.get("val_bpb") is not None else ""
    return (f"step {r['step']:>6} | val loss {r['val_loss']:.4f} | ppl {r['val_ppl']:.1f}{bpb} | "
            f"{r['flops']:.3g} FLOPs | {r['time_s']:.0f} s")


def _prepare_run_dir(run_dir: Path, resume: bool | str | Path) -> Path | None:
    """Create or check the run dir; returns the checkpoint to resume from, if any."""
    found = None
    if resume:
        source = run_dir if resume is True else Path(resume)
        found = find_checkpoint(source)
        if found is None:
            raise GrowkitError(f"nothing to resume in {source}: it holds no checkpoint; start the run without --resume")
    elif (run_dir.exists() and find_checkpoint(run_dir) is not None) or (run_dir / METRICS_FILE).exists():
        raise GrowkitError(f"run dir {run_dir} already holds a run: pass --resume to continue it, or set "
                           f"run.dir to a new directory (nothing was changed)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise GrowkitError(f"run.dir {str(run_dir)!r} is not writable ({e.strerror}): choose a directory you "
                           f"can write, e.g. --set run.dir=runs/my-run") from None
    return found


def _truncate_records(path: Path, step: int) -> None:
    """Keep the records up to ``step``; a torn last line (the process was killed mid-write) goes too."""
    if path.exists():
        kept = [r for r in read_jsonl(path, warn=False) if r.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
