"""Checkpoints: tensors in safetensors, everything else in JSON; written atomically, checksummed, never unpickled.

Layout of one checkpoint, ``RUN_DIR/checkpoints/step_00000300/``::

    model.safetensors      the model's parameters and persistent buffers (tied weights stored once)
    optimizer.safetensors  AdamW moments by parameter name: ``{name}.exp_avg``, ``.exp_avg_sq``, ``.step``
    rng.safetensors        the torch CPU generator state (dropout, MLM masking draws)
    trainer.safetensors    optional: the trainer's own tensors (e.g. which entries a growth just added)
    state.json             format version, step, tokens, FLOPs, wall-clock, model and run config
    manifest.json          format version and the size and SHA-256 of every file above, written last

The directory is written under a temporary name, fsynced and renamed into place, then ``latest.json``
is replaced atomically; a crash at any moment leaves the previous checkpoint intact and pointed to.
Reading verifies every file against the manifest. Resuming a run dir whose newest checkpoint is
damaged (a torn file, a flipped bit, ``latest.json`` pointing nowhere) falls back to the newest one
that verifies, with a warning; the damaged one is renamed ``corrupt-step_N`` (kept for inspection,
never deleted, outside the keep-K pruning).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from growkit.errors import GrowkitError, GrowkitWarning
from growkit.io import atomic_write_json
from growkit.model import MASK_NAMES
from growkit.train.faults import fault_point

FORMAT_VERSION = 2
"""Version 2 added ``manifest.json``; version 1 checkpoints (no checksums) are refused with a clear error."""
LATEST = "latest.json"
MANIFEST = "manifest.json"
_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")


@dataclass
class Checkpoint:
    """A checkpoint on disk, read back and verified: its JSON state and where its tensors are."""

    path: Path
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])

    def load_model(self, model: nn.Module) -> None:
        """Load weights (and mid-ramp growth masks, which a freshly built model lacks) into ``model``.

        A checkpoint of another architecture or size is refused before any weight is touched."""
        self._check_model_config(model)
        try:
            with safe_open(str(self.path / "model.safetensors"), framework="pt") as f:
                if hasattr(model, "attach_masks"):
                    model.attach_masks({k: f.get_tensor(k) for k in f.keys() if k.rsplit(".", 1)[-1] in MASK_NAMES})  # noqa: SIM118
                saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            wrong = [f"{k}: {saved[k]} vs {ours[k]}" for k in sorted(saved.keys() & ours.keys()) if saved[k] != ours[k]]
            if wrong:
                raise GrowkitError(f"checkpoint {self.path} does not match the model (shapes, checkpoint vs model: "
                                   f"{'; '.join(wrong[:3])}): resume with the model config the run was started with")
            missing, unexpected = load_model(model, str(self.path / "model.safetensors"), strict=False)
        except (SafetensorError, RuntimeError, OSError) as e:
            raise _corrupt(self.path, e) from None
        if missing or unexpected:
            raise GrowkitError(
                f"checkpoint {self.path} does not match the model (missing {sorted(missing)[:4]}, unexpected "
                f"{sorted(unexpected)[:4]}): resume with the model config the run was started with")

    def _check_model_config(self, model: nn.Module) -> None:
        saved, cfg = self.state.get("model_config"), getattr(model, "cfg", None)
        if not (isinstance(saved, dict) and hasattr(cfg, "to_dict")):
            return
        ours = cfg.to_dict()
        diff = [f"{k}={saved.get(k)!r} (model: {ours.get(k)!r})" for k in sorted(saved.keys() | ours.keys())
                if saved.get(k) != ours.get(k)]
        if diff:
            raise GrowkitError(f"checkpoint {self.path} does not match the model: it holds {', '.join(diff[:4])}; "
                               f"resume with the model config the run was started with")

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


# -- writing ---------------------------------------------------------------------------------------
def write_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any],
                     extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write one checkpoint directory at ``path``: under a temporary name, fsynced, then renamed into
    place. An existing checkpoint at ``path`` is moved aside first and deleted only afterwards.

    A failed write (disk full, permissions) removes the temporary directory and raises a `GrowkitError`;
    whatever was at ``path`` before is untouched."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        fault_point("mid_checkpoint", int(state["step"]))
        save_file({k: v.contiguous() for k, v in optimizer_state_by_name(optimizer, model).items()},
                  str(tmp / "optimizer.safetensors"))
        save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        if extra:
            save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp / "trainer.safetensors"))
        atomic_write_json(tmp / "state.json", {"format_version": FORMAT_VERSION, **state})
        files = sorted(f.name for f in tmp.iterdir())
        atomic_write_json(tmp / MANIFEST, {"format_version": FORMAT_VERSION,
                                           "files": {name: _digest(tmp / name) for name in files}})
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _unwritable(path, e) from None
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
    """Write ``checkpoints/step_N`` atomically, point ``latest.json`` at it, keep the newest ``keep``.

    Leftovers of writers that died (``.tmp-*``, ``.old-*``) are removed first; ``corrupt-*`` directories
    set aside by a fall-back are never touched."""
    ckpt_root = run_dir / "checkpoints"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(ckpt_root, e) from None
    for stale in [*ckpt_root.glob(".tmp-*"), *ckpt_root.glob(".old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    final = write_checkpoint(ckpt_root / f"step_{state['step']:08d}", model, optimizer, state, extra)
    fault_point("before_latest", int(state["step"]))
    try:
        atomic_write_json(ckpt_root / LATEST, {"step": state["step"], "path": final.name})
    except OSError as e:
        raise _unwritable(ckpt_root / LATEST, e) from None
    older = sorted(p for p in ckpt_root.glob("step_*") if p != final)
    for old in older[: max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


# -- finding and reading ---------------------------------------------------------------------------
def find_checkpoint(path: Path) -> Path | None:
    """The checkpoint to resume from: ``path`` itself if it is a checkpoint directory, else the run
    dir's newest good checkpoint, None if it has none at all.

    ``latest.json``'s target comes first; if it (or the pointer itself) is damaged, the newest other
    ``step_N`` that verifies is used, with a `GrowkitWarning`, and the damaged directory is renamed
    ``corrupt-step_N``. A run dir whose checkpoints are all damaged is a `GrowkitError`."""
    if _is_checkpoint_dir(path):
        return path
    root = path / "checkpoints"
    candidates = sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True) if root.is_dir() else []
    problems: list[str] = []
    pointed = _read_latest(root, problems)
    if pointed is not None:
        if pointed in candidates:
            candidates.remove(pointed)
            candidates.insert(0, pointed)
        else:
            problems.append(f"{LATEST} points to {pointed.name}, which does not exist")
    if not candidates:
        if problems:
            raise _corrupt(root, "; ".join(problems))
        return None
    damaged = []
    for candidate in candidates:
        try:
            verify_checkpoint(candidate)
        except GrowkitError as e:
            problems.append(str(e).split(": resume from")[0])
            damaged.append(candidate)
            continue
        if problems:
            _fall_back(candidate, problems, damaged)
        return candidate
    raise GrowkitError(f"checkpoint(s) in {root} are all corrupt or incomplete ({'; '.join(problems)}): start a "
                       f"new run.dir; nothing was overwritten")


def read_checkpoint(path: Path) -> Checkpoint:
    """Open and verify a checkpoint directory (or a run dir's newest good one, see `find_checkpoint`)."""
    found = find_checkpoint(path)
    if found is None:
        raise GrowkitError(f"no checkpoint in {path}: start the run without --resume, or point at a run dir "
                           f"that holds checkpoints/")
    return Checkpoint(found, verify_checkpoint(found))


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check a checkpoint directory against its manifest (format version, every file's size and SHA-256);
    returns its state. A damaged or foreign directory is a `GrowkitError` that says what is wrong."""
    version = _format_version(path)
    if version != FORMAT_VERSION:
        raise GrowkitError(f"checkpoint {path} has format version {version!r}, and this growkit reads version "
                           f"{FORMAT_VERSION}: resume it with the growkit version that wrote it, or start a new "
                           f"run.dir")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        listed = manifest["files"]
        assert isinstance(listed, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        raise _corrupt(path, f"{MANIFEST} unreadable: {e}") from None
    missing = [f for f in _FILES if f not in listed or not (path / f).is_file()]
    if missing:
        raise _corrupt(path, f"missing {', '.join(missing)}")
    for name, want in listed.items():
        if not (path / name).is_file():
            raise _corrupt(path, f"missing {name}")
        if _digest(path / name) != want:
            raise _corrupt(path, f"{name} does not match its checksum in {MANIFEST}")
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise _corrupt(path, e) from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise _corrupt(path, "state.json has no step")
    return state


def _is_checkpoint_dir(path: Path) -> bool:
    return any((path / name).exists() for name in (MANIFEST, "state.json", "model.safetensors"))


def _format_version(path: Path) -> object:
    """The format version a checkpoint directory declares (manifest first, then state.json)."""
    for name in (MANIFEST, "state.json"):
        try:
            d = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and "format_version" in d:
            return d["format_version"]
    if not (path / MANIFEST).is_file():
        raise _corrupt(path, f"missing {MANIFEST}" if path.is_dir() else "not a directory")
    raise _corrupt(path, f"{MANIFEST} is unreadable")


def _read_latest(root: Path, problems: list[str]) -> Path | None:
    latest = root / LATEST
    if not latest.exists():
        return None
    try:
        name = json.loads(latest.read_text())["path"]
        assert isinstance(name, str) and "/" not in name and name.startswith("step_")
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        problems.append(f"{LATEST} is unreadable")
        return None
    return root / name


def _fall_back(good: Path, problems: list[str], damaged: list[Path]) -> None:
    """Warn about the damaged checkpoints skipped and set them aside as ``corrupt-step_N``."""
    kept = []
    for bad in damaged:
        target = bad.with_name(f"corrupt-{bad.name}")
        n = 1
        while target.exists():
            n += 1
            target = bad.with_name(f"corrupt-{bad.name}-{n}")
        try:
            os.replace(bad, target)
            kept.append(target.name)
        except OSError:
            kept.append(bad.name)
    aside = f"; kept for inspection as {', '.join(kept)}" if kept else ""
    warnings.warn(f"{'; '.join(problems)}{aside}: falling back to {good}", GrowkitWarning, stacklevel=3)


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise _corrupt(path.parent, e) from None


def _corrupt(path: Path, why: object) -> GrowkitError:
    return GrowkitError(f"checkpoint {path} is corrupt or incomplete ({why}): resume from an earlier checkpoint "
                        f"(pass its step_N directory) or start a new run.dir; nothing was overwritten")


def _unwritable(path: Path, e: BaseException) -> GrowkitError:
    why = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
    hint = "free some disk space" if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) else \
        "make it writable"
    return GrowkitError(f"could not write checkpoint {path} ({why}): {hint}, then continue with --resume; the "
                        f"previous checkpoint is intact")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
