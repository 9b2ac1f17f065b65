"""Checkpoints: tensors in safetensors, everything else in JSON; written atomically, never unpickled.

Layout of one checkpoint, ``RUN_DIR/checkpoints/step_00000300/``::

    model.safetensors      the model's parameters and persistent buffers (tied weights stored once)
    optimizer.safetensors  AdamW moments by parameter name: ``{name}.exp_avg``, ``.exp_avg_sq``, ``.step``
    rng.safetensors        the torch CPU generator state (dropout, MLM masking draws)
    trainer.safetensors    optional: the trainer's own tensors (e.g. which entries a growth just added)
    state.json             format version, step, tokens, FLOPs, wall-clock, model and run config

The directory is written under a temporary name and renamed into place, then ``latest.json`` is
replaced atomically; a crash at any moment leaves the previous checkpoint intact and pointed to.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from growkit.errors import GrowkitError
from growkit.io import atomic_write_json
from growkit.model import MASK_NAMES

FORMAT_VERSION = 1
LATEST = "latest.json"
_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")


@dataclass
class Checkpoint:
    """A checkpoint on disk, read back: its JSON state and where its tensors are."""

    path: Path
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])

    def load_model(self, model: nn.Module) -> None:
        """Load weights (and mid-ramp growth masks, which a freshly built model lacks) into ``model``."""
        try:
            if hasattr(model, "attach_masks"):
                with safe_open(str(self.path / "model.safetensors"), framework="pt") as f:
                    model.attach_masks({k: f.get_tensor(k) for k in f.keys() if k.rsplit(".", 1)[-1] in MASK_NAMES})  # noqa: SIM118
            missing, unexpected = load_model(model, str(self.path / "model.safetensors"), strict=False)
        except (SafetensorError, RuntimeError, OSError) as e:
            raise _corrupt(self.path, e) from None
        if missing or unexpected:
            raise GrowkitError(
                f"checkpoint {self.path} does not match the model (missing {sorted(missing)[:4]}, unexpected "
                f"{sorted(unexpected)[:4]}): resume with the model config the run was started with")

    def load_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        load_optimizer_state(optimizer, model, _load(self.path / "optimizer.safetensors"))

    def rng_state(self) -> torch.Tensor:
        return _load(self.path / "rng.safetensors")["torch_cpu"]

    def extra(self) -> dict[str, torch.Tensor]:
        """The trainer's own tensors (``trainer.safetensors``), or {} when the checkpoint has none."""
        path = self.path / "trainer.safetensors"
        return _load(path) if path.exists() else {}


def optimizer_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, torch.Tensor]:
    """The per-parameter optimizer state as flat ``{param_name}.{key}`` tensors."""
    out = {}
    for name, p in model.named_parameters():
        for key, value in optimizer.state.get(p, {}).items():
            out[f"{name}.{key}"] = value if torch.is_tensor(value) else torch.tensor(float(value))
    return out


def load_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, flat: dict[str, torch.Tensor]) -> None:
    """Inverse of `optimizer_state_by_name`: put the moments back onto the model's parameters."""
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer.state.clear()
    for group in optimizer.param_groups:
        for p in group["params"]:
            prefix = names[id(p)] + "."
            entry = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
            if entry:
                optimizer.state[p] = {k: v.to(p.device) if k != "step" else v for k, v in entry.items()}


def write_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
                     extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write one checkpoint directory at ``path``: under a temporary name, fsynced, then renamed into
    place. An existing checkpoint at ``path`` is moved aside first and deleted only afterwards."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in optimizer_state_by_name(optimizer, model).items()},
              str(tmp / "optimizer.safetensors"))
    save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    if extra:
        save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp / "trainer.safetensors"))
    atomic_write_json(tmp / "state.json", {"format_version": FORMAT_VERSION, **state})
    for f in tmp.iterdir():
        _fsync(f)
    trash = path.with_name(f".old-{path.name}-{os.getpid()}")
    if path.exists():
        os.replace(path, trash)
    os.replace(tmp, path)
    shutil.rmtree(trash, ignore_errors=True)
    return path


def save_checkpoint(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int = 2,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``checkpoints/step_N`` atomically, point ``latest.json`` at it, keep the newest ``keep``."""
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = write_checkpoint(ckpt_root / f"step_{state['step']:08d}", model, optimizer, state, extra)
    atomic_write_json(ckpt_root / LATEST, {"step": state["step"], "path": final.name})
    older = sorted(p for p in ckpt_root.glob("step_*") if p != final)
    for old in older[: max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: Path) -> Path | None:
    """The checkpoint a run dir's ``latest.json`` points to (or ``path`` itself if it is a checkpoint)."""
    if (path / "state.json").exists():
        return path
    latest = path / "checkpoints" / LATEST
    if not latest.exists():
        return None
    try:
        name = json.loads(latest.read_text())["path"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise _corrupt(latest, e) from None
    return path / "checkpoints" / name


def read_checkpoint(path: Path) -> Checkpoint:
    """Open a checkpoint directory (or a run dir's latest); corrupt or partial ones are a clear error."""
    found = find_checkpoint(path)
    if found is None:
        raise GrowkitError(f"no checkpoint in {path}: start the run without --resume, or point at a run dir "
                           f"that holds checkpoints/")
    missing = [f for f in _FILES if not (found / f).is_file()]
    if missing:
        raise _corrupt(found, f"missing {', '.join(missing)}")
    try:
        state = json.loads((found / "state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _corrupt(found, e) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION or "step" not in state:
        raise _corrupt(found, f"state.json is not a growkit v{FORMAT_VERSION} checkpoint state")
    return Checkpoint(found, state)


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise _corrupt(path.parent, e) from None


def _corrupt(path: Path, why: object) -> GrowkitError:
    return GrowkitError(f"checkpoint {path} is corrupt or incomplete ({why}): resume from an earlier checkpoint "
                        f"(pass its step_N directory) or start a new run.dir; nothing was overwritten")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
