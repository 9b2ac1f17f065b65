"""`RunConfig`: one training run, read from TOML with ``--set section.key=value`` overrides.

The sections and keys are part of the public contract (DESIGN.md, "A run, as a TOML file")::

    [model]     a TransformerConfig (vocab_size defaults to the tokenizer's, max_seq_len to data.seq_len),
                or ``hf = "DIR"`` alone: start from a Hugging Face model (growkit.train.hf_start)
    [data]      tokenizer, path, text_field, seq_len, val_fraction, cache_dir, mlm_prob
    [train]     max_steps | max_tokens | max_flops, batch_size, micro_batch_size, lr, min_lr, warmup_steps,
                decay, weight_decay, beta1, beta2, eps, grad_clip, dtype, seed, device,
                threads, max_nonfinite_steps
    [run]       dir, eval_every, eval_batches, log_every, ckpt_every, keep_checkpoints, progress,
                tensorboard, plots
    [parallel]  fsdp, backend (multi-process runs under torchrun; see growkit.train.distributed)
    [[growth]]  growth stages (see growkit.train.schedule)
    [sparsity]  dynamic sparse training

Unknown sections or keys and values of the wrong type are `GrowkitError`s that name the key and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from growkit.config import TransformerConfig, check_keys
from growkit.errors import GrowkitError
from growkit.sparse import SparsityConfig
from growkit.train.growth import GrowthStage, parse_stages
from growkit.train.hf_start import check_hf_section


@dataclass
class DataConfig:
    tokenizer: str = "bpe"
    """``"bpe"`` (the bundled 8k byte-level BPE), ``"byte"`` (raw bytes), or ``"hf:DIR"``."""
    path: str | None = None
    """A text file or a folder of .txt/.md files, a .jsonl or .parquet file (or folder of them), a
    ``datasets.save_to_disk`` folder, or nanoGPT's folder of train.bin/val.bin; default: the bundled
    Shakespeare corpus (`growkit.data.sources`)."""
    text_field: str = "text"
    """The JSON field (.jsonl) or column (.parquet, datasets) that holds the text."""
    seq_len: int = 128
    """Sequence length of evaluation, and of training unless a growth schedule says otherwise."""
    start_seq_len: int | None = None
    """Training sequence length before the first ``[[growth]]`` stage that sets ``seq_len`` (CompoundGrow)."""
    start_pool: int = 1
    """Embedding pooling factor before the first ``[[growth]]`` stage that sets ``pool`` (CompoundGrow)."""
    val_fraction: float = 0.05
    cache_dir: str | None = None
    """Where token ids are cached; default ``$GROWKIT_CACHE`` or ``~/.cache/growkit``."""
    mlm_prob: float = 0.15


@dataclass
class TrainConfig:
    max_steps: int | None = None
    max_tokens: int | None = None
    max_flops: float | None = None
    batch_size: int = 32
    """Global batch in sequences per optimizer step, whatever the number of processes."""
    micro_batch_size: int | None = None
    """Sequences per forward pass; batch_size / micro_batch_size micro-batches are accumulated."""
    lr: float = 1e-3
    min_lr: float | None = None
    """LR at the end of the decay; default lr / 10."""
    warmup_steps: int = 100
    decay: str = "cosine"
    """``cosine``, ``linear``, ``constant`` or ``wsd`` (warmup-stable-decay: constant, then linear to min_lr
    over the last ``decay_fraction`` of the run) after warmup."""
    decay_fraction: float = 0.2
    """``wsd`` only: the share of the run (by progress) spent decaying."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    dtype: str = "auto"
    """``auto`` (bf16 autocast where the hardware runs bf16 natively and faster, else float32: see
    `growkit.train.hardware`), ``float32``, or ``bfloat16`` for bf16 autocast (weights and optimizer stay
    float32; on a CPU that emulates bf16 it runs, with a warning: many times slower)."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (CUDA when available, with TF32 matmuls, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: int | None = None
    """Torch CPU threads; default: the process's torch thread count (``OMP_NUM_THREADS``) capped at the cores
    this process may use (CPU affinity and cgroup quota, not the host's core count)."""
    max_nonfinite_steps: int = 5
    """A non-finite loss or gradient skips the step; this many in a row stop the run (`growkit.train.numerics`)."""


@dataclass
class RunSection:
    dir: str = "runs/gpt-tiny"
    eval_every: int = 100
    eval_batches: int = 16
    log_every: int = 10
    ckpt_every: int | None = None
    """Steps between checkpoints; default: at every eval. The last step is always saved."""
    keep_checkpoints: int = 2
    progress: bool = True
    tensorboard: bool = True
    """Also write TensorBoard events when the ``tensorboard`` package is installed."""
    plots: bool = True
    wandb: str | None = None
    """A Weights & Biases project to log to (None: off; needs the ``wandb`` extra)."""
    wandb_mode: str = "offline"
    """``offline`` (written under RUN_DIR/wandb, synced later with ``wandb sync``) or ``online``."""


@dataclass
class ParallelConfig:
    """How a run started by ``torchrun`` splits its work; ignored by a single process."""

    fsdp: bool = False
    """Shard parameters, gradients and optimizer state with FSDP2 (``fully_shard``) instead of DDP."""
    backend: str = "auto"
    """``auto`` (nccl on CUDA, gloo on CPU), ``gloo`` or ``nccl``."""


@dataclass
class RunConfig:
    model: dict[str, Any] = field(default_factory=lambda: dict(
        arch="gpt2", n_layers=4, d_model=128, n_heads=4, d_ff=512))
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=600, batch_size=16))
    run: RunSection = field(default_factory=RunSection)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    growth: list[dict[str, Any]] = field(default_factory=list)
    sparsity: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- derived -------------------------------------------------------------------------------
    def model_config(self, vocab_size: int) -> TransformerConfig:
        """The model's config, with vocab_size and max_seq_len filled from the data when unset."""
        if "hf" in self.model:
            raise GrowkitError("model.hf: the model's config comes from its Hugging Face folder "
                               "(growkit.train.hf_start.hf_start), not from [model]")
        d = dict(self.model)
        d.setdefault("vocab_size", vocab_size)
        d.setdefault("max_seq_len", self.data.seq_len)
        if d["vocab_size"] < vocab_size:
            raise GrowkitError(
                f"model.vocab_size {d['vocab_size']} is smaller than the tokenizer's vocabulary ({vocab_size}): "
                f"remove model.vocab_size to use the tokenizer's size")
        if d["max_seq_len"] < self.data.seq_len:
            raise GrowkitError(
                f"model.max_seq_len {d['max_seq_len']} is shorter than data.seq_len {self.data.seq_len}: "
                f"raise model.max_seq_len or lower data.seq_len")
        return TransformerConfig.from_dict(d)

    def stages(self) -> list[GrowthStage]:
        return parse_stages(self.growth)

    def sparsity_config(self) -> SparsityConfig | None:
        """The ``[sparsity]`` table as a `SparsityConfig` (None: dense training)."""
        return None if self.sparsity is None else SparsityConfig.from_dict(self.sparsity)

    @property
    def micro_batch_size(self) -> int:
        return self.train.micro_batch_size or self.train.batch_size

    @property
    def grad_accum(self) -> int:
        return self.train.batch_size // self.micro_batch_size

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> RunConfig:
        t, r, dt = self.train, self.run, self.data
        if "hf" in self.model:  # the model comes from a Hugging Face folder (growkit.train.hf_start)
            check_hf_section(self.model, dt.tokenizer)
        else:
            probe = dict(self.model)
            probe.setdefault("vocab_size", 256)
            probe.setdefault("max_seq_len", dt.seq_len)
            TransformerConfig.from_dict(probe)
        if t.max_steps is None and t.max_tokens is None and t.max_flops is None:
            raise GrowkitError("the run has no length: set train.max_steps, train.max_tokens or train.max_flops")
        _positive(train_max_steps=t.max_steps, train_max_tokens=t.max_tokens, train_max_flops=t.max_flops,
                  train_batch_size=t.batch_size, train_micro_batch_size=t.micro_batch_size, train_lr=t.lr,
                  train_max_nonfinite_steps=t.max_nonfinite_steps, train_threads=t.threads,
                  data_seq_len=dt.seq_len, data_start_seq_len=dt.start_seq_len, data_start_pool=dt.start_pool,
                  run_eval_every=r.eval_every, run_eval_batches=r.eval_batches,
                  run_log_every=r.log_every, run_ckpt_every=r.ckpt_every, run_keep_checkpoints=r.keep_checkpoints)
        if t.batch_size % self.micro_batch_size:
            raise GrowkitError(f"train.batch_size {t.batch_size} is not a multiple of train.micro_batch_size "
                               f"{self.micro_batch_size}: pick a micro batch that divides the batch")
        _choice("train.decay", t.decay, ("cosine", "linear", "constant", "wsd"))
        if not 0.0 < t.decay_fraction <= 1.0:
            raise GrowkitError(f"train.decay_fraction must be in (0, 1] (the share of the run spent decaying), "
                               f"got {t.decay_fraction}")
        _choice("train.dtype", t.dtype, ("auto", "float32", "bfloat16"))
        _choice("run.wandb_mode", r.wandb_mode, ("offline", "online"))
        _choice("parallel.backend", self.parallel.backend, ("auto", "gloo", "nccl"))
        if not 0.0 < dt.val_fraction < 1.0:
            raise GrowkitError(f"data.val_fraction must be between 0 and 1, got {dt.val_fraction}")
        if not dt.text_field:
            raise GrowkitError("data.text_field is empty: name the JSON field or column holding the text, e.g. 'text'")
        if not 0.0 < dt.mlm_prob < 1.0:
            raise GrowkitError(f"data.mlm_prob must be between 0 and 1, got {dt.mlm_prob}")
        if t.warmup_steps < 0:
            raise GrowkitError(f"train.warmup_steps must be >= 0, got {t.warmup_steps}")
        self.stages()  # parses and checks every [[growth]] stage
        if self.sparsity is not None:
            self.sparsity_config()  # checks every [sparsity] key
        self._check_fsdp()
        return self

    def _check_fsdp(self) -> None:
        """FSDP2 shards each weight across processes; the sparsity controller needs whole weights."""
        if not self.parallel.fsdp:
            return
        if self.sparsity is not None:
            raise GrowkitError("parallel.fsdp = true does not combine with [sparsity] (the masks need whole "
                               "weights): train sparse with DDP (parallel.fsdp = false)")

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Build from nested dicts; every key is checked against the dataclasses above."""
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k != "resolved"}  # config.json's record of what "auto" became
        unknown = sorted(set(d) - known)
        if unknown:
            raise GrowkitError(f"unknown section(s) {', '.join(unknown)}: the sections are {', '.join(sorted(known))}")
        kw: dict[str, Any] = {}
        for name, section_cls in (("data", DataConfig), ("train", TrainConfig), ("run", RunSection),
                                  ("parallel", ParallelConfig)):
            if name in d:
                kw[name] = _build_section(section_cls, d[name], name)
        if "model" in d:
            if not isinstance(d["model"], dict):
                raise GrowkitError("[model] must be a table of TransformerConfig keys")
            kw["model"] = dict(d["model"])
        if "growth" in d:
            if not (isinstance(d["growth"], list) and all(isinstance(s, dict) for s in d["growth"])):
                raise GrowkitError("growth must be a list of tables: write each stage as [[growth]]")
            kw["growth"] = [dict(s) for s in d["growth"]]
        if d.get("sparsity") is not None:
            if not isinstance(d["sparsity"], dict):
                raise GrowkitError("[sparsity] must be a table of SparsityConfig keys")
            kw["sparsity"] = dict(d["sparsity"])
        return cls(**kw)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
        """Read a TOML file, apply ``section.key=value`` overrides, validate."""
        path = Path(path)
        if not path.is_file():
            raise GrowkitError(f"config file {str(path)!r} does not exist: pass --config PATH to a TOML file")
        try:
            d = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise GrowkitError(f"config file {str(path)!r} is not valid TOML ({e}): fix the file") from None
        return cls.from_dict(apply_overrides(d, overrides))

    @classmethod
    def main(cls, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
        """The main job, what ``growkit train`` runs without --config (= configs/gpt-tiny-msg.toml): the
        default run's model grown progressively from 2 layers × 64 with MSG stages."""
        return cls.from_dict(apply_overrides(MAIN_RUN, overrides))

    @classmethod
    def default(cls, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
        """The built-in run (gpt2, 4 layers × 128, 600 steps on Shakespeare) with overrides applied."""
        return cls.from_dict(apply_overrides(cls().to_dict(), overrides))


_MSG_RAMP = 30
#: The main job: configs/gpt-tiny-msg.toml (a test keeps the two equal).
MAIN_RUN: dict[str, Any] = {
    "model": {"arch": "gpt2", "n_layers": 2, "d_model": 64, "n_heads": 2, "d_ff": 128},
    "data": {"tokenizer": "bpe", "seq_len": 128},
    "train": {"max_steps": 600, "batch_size": 16, "lr": 1e-3, "warmup_steps": 100, "decay": "cosine"},
    "run": {"dir": "runs/gpt-tiny-msg", "eval_every": 100},
    "growth": [
        {"at_fraction": 0.1, "grow": {"d_ff": 256}, "method": "masked", "ramp_steps": _MSG_RAMP},
        {"at_fraction": 0.25, "grow": {"n_layers": 4}, "method": "masked", "ramp_steps": _MSG_RAMP},
        {"at_fraction": 0.45, "grow": {"d_model": 128, "n_heads": 4, "d_ff": 512}, "method": "masked",
         "ramp_steps": _MSG_RAMP},
    ],
}


def apply_overrides(d: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.max_steps=50", "run.dir=runs/x"]`` → a copy of ``d`` with those keys set.

    Values are parsed as TOML (``50`` → int, ``1e-3`` → float, ``true`` → bool, ``"x"`` → str); a
    value that is not valid TOML is taken as a bare string (``run.dir=runs/x``).
    """
    out = json.loads(json.dumps(d))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise GrowkitError(f"cannot read override {item!r}: write it as section.key=value, e.g. train.max_steps=50")
        section, name = parts
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        if out.get(section) is None:  # e.g. sparsity = None in RunConfig.to_dict()
            out[section] = {}
        target = out[section]
        if not isinstance(target, dict):
            raise GrowkitError(f"cannot override {key}: [{section}] is not a table")
        target[name] = value
    return out


def _build_section(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise GrowkitError(f"[{where}] must be a table of keys")
    hints = typing.get_type_hints(cls)
    check_keys(values, (f.name for f in fields(cls)), f"[{where}]")
    return cls(**{k: _check_type(f"{where}.{k}", v, hints[k]) for k, v in values.items()})


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Accept ``value`` if it fits ``hint`` (int for float is fine; bool is not an int)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in options:
        if t is type(None) and value is None:
            return value
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if t is str and isinstance(value, str):
            return value
    names = " or ".join("none" if t is type(None) else t.__name__ for t in options)
    raise GrowkitError(f"{key} must be {names}, got {value!r} ({type(value).__name__})")


def _positive(**values: Any) -> None:
    for name, v in values.items():
        if v is not None and v <= 0:
            section, key = name.split("_", 1)
            raise GrowkitError(f"{section}.{key} must be positive, got {v}")


def _choice(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise GrowkitError(f"{key} must be one of {', '.join(options)}, got {value!r}")
