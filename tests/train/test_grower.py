"""`growkit.Grower` in a plain PyTorch loop: the same losses as `growkit train` with the same stages, exact
resume mid-ramp from its state_dict, and impossible schedules refused before step 0."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import growkit as gk
from growkit import Grower, GrowkitError, RunConfig, Transformer, TransformerConfig
from growkit.data import prepare_data
from growkit.train.loop import Trainer, build_optimizer
from growkit.train.schedule import learning_rate

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=40", "data.seq_len=32",
        "train.batch_size=4", "train.warmup_steps=2", "train.lr=3e-3", "train.max_steps=20", "run.eval_every=10",
        "run.eval_batches=2", "run.log_every=1", "run.progress=false", "run.tensorboard=false", "run.plots=false"]
STAGES = [  # a masked stage ramping over steps 5 → 11, then a zero stage with its LR policies
    {"at_step": 5, "grow": {"d_ff": 64, "n_layers": 2}, "method": "masked", "ramp_steps": 6},
    {"at_step": 13, "grow": {"d_ff": 96, "n_layers": 3}, "method": "zero", "lr": "rewarm", "lr_warmup_steps": 3,
     "new_lr_warmup_steps": 4, "lr_scale": 0.5},
]


def run_config(run_dir: Path, stages: list[dict]) -> RunConfig:
    d = RunConfig.default([*TINY, f"run.dir={run_dir}"]).to_dict()
    d["growth"] = stages
    return RunConfig.from_dict(d)


def start(rc: RunConfig, stages: list[dict]) -> tuple[Grower, object]:
    """What a user's script builds: model, AdamW, its LR schedule and data; plus the Grower."""
    data = prepare_data("bpe")
    torch.manual_seed(rc.train.seed)
    model = Transformer(rc.model_config(data.tokenizer.vocab_size), seed=rc.train.seed)
    optimizer = build_optimizer(model, rc.train)
    grower = Grower(stages, model, optimizer, total_steps=rc.train.max_steps,
                    lr=lambda step, progress: learning_rate(rc.train, step, progress))
    return grower, data.causal_batches("train", rc.train.batch_size, rc.data.seq_len, rc.train.seed)


def plain_loop(grower: Grower, batches: object, steps: range) -> list[float]:
    """A nanoGPT-style loop; its only growkit line is ``grower.step``."""
    losses = []
    model, optimizer = grower.model, grower.optimizer
    for step in steps:
        model, optimizer = grower.step(step)
        model.train()
        x, y = batches.batch(step)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def test_plain_loop_equals_growkit_train_and_resumes_mid_ramp(tmp_path: Path) -> None:
    rc = run_config(tmp_path / "train", STAGES)
    gk.train(rc)
    logged = [json.loads(line)["train_loss"] for line in (tmp_path / "train" / "train.jsonl").read_text().splitlines()]

    grower, batches = start(rc, STAGES)
    losses = plain_loop(grower, batches, range(20))
    assert losses == logged  # bit-identical: one implementation of the stage logic
    assert grower.model.cfg.n_layers == 3 and grower.model.cfg.d_ff == 96 and not grower.model.masks()
    assert grower.state.stages_done == 2 and grower.state.lr_scale == 0.5

    # the user's own checkpoint at step 8: mid-ramp (c = 3/6), between the two stages
    part, batches = start(rc, STAGES)
    first = plain_loop(part, batches, range(8))
    part.advance(8)
    assert 0 < min(float(m.min()) for m in part.model.masks().values()) < 1
    resumed, batches = checkpoint_and_resume(part, rc)
    assert first + plain_loop(resumed, batches, range(8, 20)) == losses


def checkpoint_and_resume(part: Grower, rc: RunConfig) -> tuple[Grower, object]:
    """What a user's checkpointing does: save model, optimizer and Grower state; in a new process build
    everything as at the start, then load the Grower's state first and the model's and optimizer's into
    the model and optimizer it hands back."""
    saved = copy.deepcopy({"model": part.model.state_dict(), "optimizer": part.optimizer.state_dict(),
                           "grower": part.state_dict()})
    json.dumps(saved["grower"])  # plain numbers: any checkpoint format holds it
    resumed, batches = start(rc, STAGES)  # the initial model again
    resumed.load_state_dict(saved["grower"])
    resumed.model.load_state_dict(saved["model"])
    resumed.optimizer.load_state_dict(saved["optimizer"])
    return resumed, batches


def test_new_entry_warmup_resumes_from_state_dict(tmp_path: Path) -> None:
    rc = run_config(tmp_path, STAGES)
    full, batches = start(rc, STAGES)
    losses = plain_loop(full, batches, range(20))
    part, batches = start(rc, STAGES)
    first = plain_loop(part, batches, range(15))  # zero stage at 13: new entries in warmup until 17
    part.advance(15)
    assert part.state.new_warmup_start == 13 and part.new_entries
    resumed, batches = checkpoint_and_resume(part, rc)
    assert resumed.new_entries.keys() == part.new_entries.keys()
    assert all(torch.equal(m, part.new_entries[n]) for n, m in resumed.new_entries.items())
    assert resumed.state == part.state
    assert first + plain_loop(resumed, batches, range(15, 20)) == losses


def test_state_dict_of_another_schedule_is_refused(tmp_path: Path) -> None:
    rc = run_config(tmp_path, STAGES)
    grower, batches = start(rc, STAGES)
    plain_loop(grower, batches, range(6))
    other, _ = start(rc, [{**STAGES[0], "grow": {"d_ff": 48}}, STAGES[1]])
    with pytest.raises(GrowkitError, match="saved with another model or schedule"):
        other.load_state_dict(grower.state_dict())


def test_schedule_from_toml_and_lr_policy_needs_the_loops_schedule(tmp_path: Path) -> None:
    toml = tmp_path / "schedule.toml"
    toml.write_text('[[growth]]\nat_step = 2\ngrow = { d_ff = 64 }\nmethod = "zero"\n'
                    '[[growth]]\nat_fraction = 0.5\ngrow = { n_layers = 2 }\nlr = "rewind"\n')
    model = Transformer(TransformerConfig(arch="gpt2", n_layers=1, d_model=32, n_heads=2, d_ff=40, vocab_size=64,
                                          max_seq_len=16), seed=0)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(GrowkitError, match=r"stage 2 sets lr = 'rewind', which needs your LR schedule"):
        Grower(toml, model, opt)
    grower = Grower(toml, model, opt, lr=lambda step, progress: 1e-3)
    assert [s.at_step for s in grower.stages] == [2, None]
    with pytest.raises(GrowkitError, match=r"stage 2 grows at_fraction: pass progress= to grower.step\(\)"):
        for step in range(4):
            grower.step(step)
    assert grower.state.stages_done == 1  # the first stage grew at step 2; the second asked for progress
    bad = tmp_path / "none.toml"
    bad.write_text("[train]\nmax_steps = 3\n")
    with pytest.raises(GrowkitError, match="has no \\[\\[growth\\]\\] tables"):
        Grower(bad, model, opt)


LLAMA = TransformerConfig(arch="llama", n_layers=2, d_model=48, n_heads=3, n_kv_heads=3, d_ff=128, vocab_size=64,
                          max_seq_len=32)


@pytest.mark.parametrize(("stages", "phrase"), [
    # the issue's case: 3 heads on 3 KV heads grown to 4 query heads, KV heads left at 3
    ([{"at_step": 9, "grow": {"n_layers": 3, "d_model": 64, "n_heads": 4, "d_ff": 176}}],
     r"\[\[growth\]\] stage 1 .* ungroupable GQA: .* n_kv_heads in \[4\] with n_heads=4"),
    ([{"at_step": 5, "grow": {"d_head": 24}, "method": "split"}],
     r"stage 1 .* q/k width growth under RoPE cannot be split"),
    ([{"at_step": 5, "grow": {"d_head": 24}, "method": "zero"}],
     "stage 1 .* d_head 16 → 24 changes the rotation frequency"),
    ([{"at_step": 5, "grow": {"n_layers": 4}, "method": "split"}],
     "stage 1 .* method 'split' does not apply to n_layers: use one of masked"),
    ([{"at_step": 5, "grow": {"d_ff": 256}}, {"at_step": 9, "grow": {"d_ff": 192}}],
     r"stage 2 .* meets \(n_layers 2, d_model 48, d_ff 256.*cannot grow d_ff 256 → 192: sizes only grow"),
    ([{"at_step": 5, "grow": {"d_ff": 256}}, {"at_step": 9, "grow": {"d_ff": 256}}],
     "stage 2 .* it grows nothing: the model is already that size"),
    ([{"at_step": 5, "grow": {"n_layers": 3}, "seq_len": 64}],
     "stage 1 seq_len = 64 exceeds the model's max_seq_len 32"),
])
def test_impossible_schedule_is_refused_when_built(stages: list[dict], phrase: str) -> None:
    model = Transformer(LLAMA, seed=0)
    with pytest.raises(GrowkitError, match=phrase) as e:
        Grower(stages, model, torch.optim.AdamW(model.parameters()))
    assert "\n" not in str(e.value)


def test_growkit_train_refuses_an_impossible_stage_before_step_0(tmp_path: Path) -> None:
    d = RunConfig.default([*TINY, f"run.dir={tmp_path}", "model.arch='llama'", "model.d_model=48",
                           "model.n_heads=3", "model.n_kv_heads=3"]).to_dict()
    d["growth"] = [{"at_fraction": 0.6, "grow": {"n_layers": 3, "d_model": 64, "n_heads": 4, "d_ff": 176}}]
    with pytest.raises(GrowkitError, match=r"stage 1 .* ungroupable GQA"):
        Trainer(RunConfig.from_dict(d))
    assert not (tmp_path / "train.jsonl").exists() and not (tmp_path / "checkpoints").exists()


def test_planning_leaves_the_random_stream_and_weights_alone() -> None:
    torch.manual_seed(3)
    model = Transformer(LLAMA, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    grower = Grower([{"at_step": 1, "grow": {"d_ff": 160, "n_layers": 3}, "method": "masked", "ramp_steps": 2}],
                    model, torch.optim.AdamW(model.parameters()))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [c.d_ff for c in grower.plan] == [128, 160] and grower.plan[1].n_layers == 3


def test_due_and_records_tell_what_grows() -> None:
    """``due`` says whether ``grow_due`` would grow at these counters; ``records`` holds its GrowthRecords."""
    model = Transformer(LLAMA, seed=0)
    grower = Grower([{"at_step": 2, "grow": {"d_ff": 160}, "method": "zero"},
                     {"at_fraction": 0.5, "grow": {"n_layers": 3}, "method": "zero"}],
                    model, torch.optim.AdamW(model.parameters()), total_steps=10)
    assert not grower.due(1) and grower.due(2) and grower.records == []
    grower.grow_due(2)
    (record,) = grower.records
    assert record["blocks.0.mlp.up.weight"].index[0].tolist()[-1] == -1  # the new FFN rows are new entries
    assert not grower.due(4) and grower.due(5)
    assert len(grower.grow_due(5)) == 1 and len(grower.records) == 1  # records of the last call only
    assert grower.records[0]["blocks.0.attn.q_proj.weight"].is_identity()
    assert grower.records[0]["blocks.2.attn.q_proj.weight"].source != "blocks.2.attn.q_proj.weight"
    assert not grower.due(9)
