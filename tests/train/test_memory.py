"""Memory across growths: after a growth nothing keeps the old model or its optimizer state alive, and
`release_memory` gives freed heap pages back (glibc)."""

from __future__ import annotations

import platform
import weakref
from pathlib import Path

import pytest

from growkit import RunConfig
from growkit.train.loop import Trainer
from growkit.train.memory import _malloc_trim, release_memory

TINY = ["model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ff=32", "data.tokenizer='byte'",
        "data.seq_len=16", "train.batch_size=2", "run.eval_batches=1", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", "train.max_steps=8", "run.eval_every=8"]


def test_the_old_model_and_optimizer_are_freed_after_each_growth(tmp_path: Path) -> None:
    d = RunConfig.default([*TINY, f"run.dir='{tmp_path}'"]).to_dict()
    d["growth"] = [{"at_step": 2, "grow": {"d_ff": 48}, "method": "masked", "ramp_steps": 2},
                   {"at_step": 5, "grow": {"n_layers": 2, "d_model": 32, "n_heads": 4}, "method": "masked",
                    "ramp_steps": 1}]
    trainer = Trainer(RunConfig.from_dict(d))
    olds = []
    while trainer.progress() < 1.0:
        before = (weakref.ref(trainer.model), weakref.ref(trainer.optimizer),
                  [weakref.ref(p) for p in trainer.model.parameters()])
        if trainer.grow_due_stages():
            olds.append(before)
            model, optimizer, params = before
            assert model() is None and optimizer() is None  # no reference cycle or forgotten attribute keeps them
            assert all(p() is None for p in params)  # nor their weights (and so their AdamW moments)
        trainer.train_step()
    assert len(olds) == 2
    assert not trainer.model.masks()  # the last ramp ended: the masks were folded away


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_memory_finds_malloc_trim_on_glibc() -> None:
    assert _malloc_trim() is not None
    release_memory()  # and runs
