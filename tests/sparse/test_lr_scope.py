"""Where the sparse LR rule applies: every parameter (``lr_rule_scope = "all"``, the default) or the sparse
weights only (``"sparse"``, their own param group), and ``sparse_lr_scale``; checked on the first AdamW step of
real (tiny) runs, whose update is exactly proportional to the LR (step 1: m̂/√v̂ and decoupled decay are the same
for every LR)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from growkit import GrowkitError, RunConfig, SparsityConfig
from growkit.sparse import TARGET
from growkit.train.loop import Trainer

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=64", "data.seq_len=32",
        "train.batch_size=4", "train.warmup_steps=0", "train.lr=1e-3", "train.decay='constant'",
        "train.max_steps=1", "run.eval_every=1", "run.eval_batches=1", "run.progress=false",
        "run.tensorboard=false", "run.plots=false", "sparsity.density=0.25", "sparsity.block=8",
        "sparsity.static=true", "train.dtype='float32'", "train.threads=1"]
RULE = math.exp(1.969 * 0.75**2 + 0.2905 * 0.75)


def test_factors_of_each_setting() -> None:
    cfg = SparsityConfig(density=0.25)
    assert (cfg.lr_factor(), cfg.sparse_weight_lr_factor()) == (1.0, 1.0)
    on = cfg.replace(sparse_lr_rule=True)
    assert on.lr_factor() == pytest.approx(RULE) and on.sparse_weight_lr_factor() == 1.0  # the default: every LR
    scoped = on.replace(lr_rule_scope="sparse")
    assert scoped.lr_factor() == 1.0 and scoped.sparse_weight_lr_factor() == pytest.approx(RULE)
    assert cfg.replace(sparse_lr_scale=2.5).sparse_weight_lr_factor() == 2.5
    assert scoped.replace(sparse_lr_scale=0.5).sparse_weight_lr_factor() == pytest.approx(RULE / 2)
    with pytest.raises(GrowkitError, match=r"sparsity\.lr_rule_scope must be one of all, sparse, got 'dense'"):
        SparsityConfig(lr_rule_scope="dense")
    with pytest.raises(GrowkitError, match=r"sparsity\.sparse_lr_scale must be a positive finite number"):
        SparsityConfig(sparse_lr_scale=0.0)


def _first_step(tmp_path: Path, name: str, *more: str) -> tuple[dict[str, torch.Tensor], Trainer]:
    """Each parameter's change over one optimizer step."""
    t = Trainer(RunConfig.default([*TINY, f"run.dir={tmp_path / name}", *more]))
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.fit()
    return {n: p.detach() - before[n] for n, p in t.model.named_parameters()}, t


def test_the_rule_scales_only_the_sparse_weights_when_scoped(tmp_path: Path) -> None:
    plain, _ = _first_step(tmp_path, "plain")
    scoped, t = _first_step(tmp_path, "scoped", "sparsity.sparse_lr_rule=true", "sparsity.lr_rule_scope='sparse'")
    every, _ = _first_step(tmp_path, "every", "sparsity.sparse_lr_rule=true")
    sparse = [n for n in plain if TARGET.match(n)]
    dense = [n for n in plain if not TARGET.match(n)]
    assert sparse and any(n.endswith("_emb.weight") for n in dense)
    for n in sparse:
        assert plain[n].abs().max() > 0, n
        torch.testing.assert_close(scoped[n], RULE * plain[n], rtol=1e-4, atol=2e-8)
        torch.testing.assert_close(every[n], RULE * plain[n], rtol=1e-4, atol=2e-8)
    for n in dense:  # embeddings, norms, head: the dense LR when scoped, the rule's when not
        torch.testing.assert_close(scoped[n], plain[n], rtol=1e-5, atol=2e-8)
        if plain[n].abs().max() > 0:
            torch.testing.assert_close(every[n], RULE * plain[n], rtol=1e-4, atol=2e-8)
    groups = t.optimizer.param_groups
    assert [g.get("lr_factor") for g in groups] == [None, None, pytest.approx(RULE)]
    assert groups[2]["lr"] == pytest.approx(RULE * groups[0]["lr"])


def test_sparse_lr_scale_and_growth_keep_the_group(tmp_path: Path) -> None:
    plain, _ = _first_step(tmp_path, "plain")
    scaled, _ = _first_step(tmp_path, "scaled", "sparsity.sparse_lr_scale=3.0")
    for n, d in plain.items():
        torch.testing.assert_close(scaled[n], (3.0 if TARGET.match(n) else 1.0) * d, rtol=1e-4, atol=2e-8)
    d = RunConfig.default([*TINY, f"run.dir={tmp_path / 'grown'}", "train.max_steps=4", "run.eval_every=4",
                           "sparsity.sparse_lr_scale=3.0"]).to_dict()
    d["growth"] = [{"at_step": 2, "grow": {"n_layers": 2}, "method": "stack"}]
    t = Trainer(RunConfig.from_dict(d))
    t.fit()
    names = {id(p): n for n, p in t.model.named_parameters()}
    (group,) = [g for g in t.optimizer.param_groups if "lr_factor" in g]
    assert sorted(names[id(p)] for p in group["params"]) == sorted(n for n in names.values() if TARGET.match(n))
    assert any(n.startswith("blocks.1.") for n in (names[id(p)] for p in group["params"]))  # the grown layer's too
