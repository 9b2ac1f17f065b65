"""`growkit.integrations.hf`: tiny Llama and GPT-2 models trained by ``transformers.Trainer`` grow at step 10
of 20 (zero and split; depth and width) and keep training. Nothing is downloaded: models are built from
configs, the data are random token ids."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from growkit.adapters import CLASSES, from_hf  # noqa: E402
from growkit.errors import GrowkitError  # noqa: E402
from growkit.integrations.hf import GrowthCallback, grow_trainer, optimizer_to_growkit, optimizer_to_hf  # noqa: E402

VOCAB, SEQ, STEPS, AT = 64, 16, 20, 10
#: case → arch, growth stage, an HF weight whose moments are checked against the GrowthRecord, its growkit name,
#: and whether HF stores it transposed (GPT-2's Conv1D).
CASES: dict[str, dict[str, Any]] = {
    "llama-zero": {"arch": "llama", "grow": {"n_layers": 3, "d_model": 48, "d_ff": 96}, "method": "zero",
                   "hf": "model.layers.0.mlp.down_proj.weight", "gk": "blocks.0.mlp.down.weight", "t": False},
    "gpt2-split": {"arch": "gpt2", "grow": {"n_layers": 3, "d_ff": 128, "n_heads": 8, "d_model": 64},
                   "method": {"n_layers": "zero", "*": "split"},
                   "hf": "transformer.h.0.mlp.c_fc.weight", "gk": "blocks.0.mlp.up.weight", "t": True},
    "llama-split": {"arch": "llama", "grow": {"n_layers": 3, "d_model": 64, "n_heads": 8, "n_kv_heads": 4,
                                              "d_ff": 128}, "method": {"n_layers": "zero", "*": "split"},
                    "hf": "model.layers.1.self_attn.o_proj.weight", "gk": "blocks.1.attn.o_proj.weight", "t": False},
    "gpt2-zero": {"arch": "gpt2", "grow": {"n_layers": 4, "d_ff": 96}, "method": "zero",
                  "hf": "transformer.h.1.mlp.c_proj.weight", "gk": "blocks.1.mlp.down.weight", "t": True},
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_DISABLED", "true")


def tiny(arch: str) -> Any:
    torch.manual_seed(0)
    if arch == "llama":
        cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                       bos_token_id=1, eos_token_id=2, pad_token_id=0)
        return transformers.LlamaForCausalLM(cfg)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=32,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2)
    return transformers.GPT2LMHeadModel(cfg)


class Tokens(torch.utils.data.Dataset):
    """Random sequences with a learnable rule (token i+1 = token i + 1 mod VOCAB, 80% of the time)."""

    def __init__(self, n: int = 200, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        self.ids = (start + torch.arange(SEQ)) % VOCAB
        noise = torch.rand(n, SEQ, generator=g) < 0.2
        self.ids = torch.where(noise, torch.randint(0, VOCAB, (n, SEQ), generator=g), self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


PROBE = Tokens(8, seed=1).ids


def probe_loss(model: Any) -> float:
    mode = model.training
    model.eval()
    loss = model(input_ids=PROBE, labels=PROBE).loss.item()
    model.train(mode)
    return loss


def carried(before: torch.Tensor, after: torch.Tensor, tmap: Any, transpose: bool) -> tuple[torch.Tensor, ...]:
    """(new moment, the old one carried by the record's definition, which entries are old, their factor), in
    growkit orientation (a GPT-2 Conv1D stores (in, out): its transpose)."""
    old, new = (before.T, after.T) if transpose else (before, after)
    factor = torch.ones(new.shape)
    for axis, s in enumerate(tmap.scale):
        if s is not None:
            factor = factor * s.view([-1 if a == axis else 1 for a in range(new.ndim)])
    return new, tmap.gather(old), tmap.old_mask(new.shape), factor


def args(tmp_path: Path, **kw: Any) -> Any:
    base = dict(output_dir=str(tmp_path / "out"), max_steps=STEPS, per_device_train_batch_size=4, learning_rate=1e-2,
                warmup_steps=4, lr_scheduler_type="linear", weight_decay=0.01, logging_steps=1, save_strategy="no",
                report_to="none", use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True)
    return transformers.TrainingArguments(**{**base, **kw})


class Snapshot(transformers.TrainerCallback):
    """At the top of step AT, the HF optimizer's state and LR (placed before/after the GrowthCallback)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: dict[str, Any] = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                      **kw: Any) -> None:
        if state.global_step == AT:
            p = dict(model.named_parameters())[self.name]
            self.seen = {"exp_avg": optimizer.state[p]["exp_avg"].clone(), "step": optimizer.state[p]["step"].item(),
                         "lr": [g["lr"] for g in optimizer.param_groups], "config": model.config.to_dict()}


@pytest.mark.parametrize("case", list(CASES))
def test_trainer_grows_at_step_10_and_keeps_training(case: str, tmp_path: Path) -> None:
    c = CASES[case]
    model = tiny(c["arch"])
    before, after = Snapshot(c["hf"]), Snapshot(c["hf"])
    trainer = transformers.Trainer(model=model, args=args(tmp_path), train_dataset=Tokens(),
                                   callbacks=[before])
    growth = grow_trainer(trainer, [{"at_step": AT, "grow": c["grow"], "method": c["method"]}], probe=probe_loss)
    trainer.add_callback(after)
    params_before = model.num_parameters()
    trainer.train()

    # grown in place, function preserved at the growth
    (event,) = growth.events
    assert event["step"] == AT and event["params_before"] < event["params_after"]
    assert abs(event["loss_jump"]) < 1e-4, event
    assert trainer.model is model and model.num_parameters() == event["params_after"] > params_before
    sizes = {"n_layers": "num_hidden_layers", "d_ff": "intermediate_size"} if c["arch"] == "llama" else \
        {"n_layers": "n_layer", "d_ff": "n_inner"}
    for gk_key, hf_key in sizes.items():
        assert getattr(model.config, hf_key) == c["grow"][gk_key]

    # the Trainer's optimizer holds exactly the new parameters, in its two groups (decay / no decay)
    opt = trainer.optimizer
    held = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in held} == {id(p) for p in model.parameters()} and len(held) == len(list(model.parameters()))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]

    # moments followed their weights: old entries carry exp_avg × the record's scale (unchanged where it is 1)
    new, expected, old_entries, factor = carried(before.seen["exp_avg"], after.seen["exp_avg"],
                                                 growth.records[0][c["gk"]], c["t"])
    assert old_entries.any() and torch.equal(new[old_entries], expected[old_entries])
    assert new[old_entries].abs().sum() > 0 and (new[~old_entries] == 0).all()  # new entries: exp_avg = 0
    if c["method"] == "zero":
        assert (old_entries & (factor == 1)).any()
    assert after.seen["step"] == before.seen["step"] == AT
    assert after.seen["lr"] == before.seen["lr"]

    # the LR schedule continues: the logged LR of every step is the scheduler's value without growth
    ref_opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    ref = transformers.get_scheduler("linear", ref_opt, num_warmup_steps=4, num_training_steps=STEPS)
    expected_lr = []
    for _ in range(STEPS):
        expected_lr.append(ref.get_last_lr()[0])
        ref_opt.step()
        ref.step()
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert logged == pytest.approx(expected_lr, rel=1e-12)
    assert trainer.lr_scheduler.last_epoch == STEPS

    # it kept training: loss finite after the growth, lower at the end than at the start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[AT:]) < sum(losses[:AT]) and sum(losses[-3:]) < sum(losses[AT:AT + 3])

    # save_pretrained + from_pretrained: no missing keys, same logits
    out = tmp_path / "grown"
    trainer.save_model(str(out))
    cls = type(model)
    reloaded, info = cls.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(PROBE).logits, model(PROBE).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_optimizer_state_round_trips_through_growkit(arch: str) -> None:
    """HF → growkit → HF along the links (GPT-2: fused, transposed c_attn) gives back every moment and group."""
    hf = tiny(arch)
    decay = [p for n, p in hf.named_parameters() if p.ndim > 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": [p for p in hf.parameters() if p.ndim == 1], "weight_decay": 0.0}], lr=1e-3)
    hf(input_ids=PROBE, labels=PROBE).loss.backward()
    opt.step()
    model = from_hf(hf)
    name = type(hf).__name__
    links = CLASSES[name].links(model.cfg, name)
    ours = optimizer_to_growkit(opt, hf, model, links)
    q = model.blocks[0].attn.q_proj.weight
    assert ours.state[q]["exp_avg"].shape == q.shape and isinstance(ours, torch.optim.AdamW)
    groups, state = optimizer_to_hf(ours, model, hf, links)
    assert [[id(p) for p in g["params"]] for g in groups] == [[id(p) for p in g["params"]] for g in opt.param_groups]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    for p in hf.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state[p][key], opt.state[p][key]), key


def test_callback_alone_binds_at_train_begin(tmp_path: Path) -> None:
    """``callbacks=[GrowthCallback(...)]`` (no grow_trainer): bound when training begins, grows at at_fraction."""
    model = tiny("llama")
    cb = GrowthCallback([{"at_fraction": 0.5, "grow": {"d_ff": 96}, "method": "split"}], probe=probe_loss)
    trainer = transformers.Trainer(model=model, args=args(tmp_path, max_steps=12), train_dataset=Tokens(),
                                   callbacks=[cb])
    trainer.train()
    (event,) = cb.events
    assert event["step"] == 6 and abs(event["loss_jump"]) < 1e-4
    assert model.config.intermediate_size == 96 and model.model.layers[0].mlp.up_proj.weight.shape == (96, 32)


def test_resume_after_a_growth_continues_the_schedule(tmp_path: Path) -> None:
    """Checkpoint at step 15 (after a growth at 10), resume on the checkpoint's model: the growth at 17 still
    happens and the losses of steps 16–20 equal the uninterrupted run's."""
    growth = [{"at_step": AT, "grow": {"n_layers": 3, "d_ff": 96}, "method": "zero"},
              {"at_step": 17, "grow": {"d_ff": 128}, "method": "zero"}]
    run = args(tmp_path, save_strategy="steps", save_steps=15)

    def losses(trainer: Any) -> dict[int, float]:
        return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}

    whole = transformers.Trainer(model=tiny("llama"), args=run, train_dataset=Tokens(),
                                 callbacks=[GrowthCallback(growth)])
    whole.train()
    checkpoint = tmp_path / "out" / "checkpoint-15"
    model = transformers.LlamaForCausalLM.from_pretrained(str(checkpoint))
    resumed = transformers.Trainer(model=model, args=run, train_dataset=Tokens())
    cb = grow_trainer(resumed, growth, resume_from_checkpoint=checkpoint)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert [(e["step"], e["stage"]) for e in cb.events] == [(17, 2)] and model.config.intermediate_size == 128
    after = {s: v for s, v in losses(resumed).items() if s > 15}
    assert sorted(after) == [16, 17, 18, 19, 20]
    assert after == pytest.approx({s: losses(whole)[s] for s in after}, abs=1e-5)

    wrong = transformers.Trainer(model=tiny("llama"), args=run, train_dataset=Tokens())
    with pytest.raises(GrowkitError, match=r"set d_ff = 96, n_layers = 3, but the model has d_ff = 64, n_layers = 2"):
        grow_trainer(wrong, growth, resume_from_checkpoint=checkpoint)


def test_grows_at_tokens_when_the_trainer_counts_them(tmp_path: Path) -> None:
    cb = GrowthCallback([{"at_tokens": 4 * 4 * SEQ, "grow": {"n_layers": 3}, "method": "zero"}], probe=probe_loss)
    trainer = transformers.Trainer(model=tiny("gpt2"), args=args(tmp_path, max_steps=6,
                                                                include_num_input_tokens_seen=True),
                                   train_dataset=Tokens(), callbacks=[cb])
    trainer.train()
    (event,) = cb.events
    assert event["step"] == 4 and abs(event["loss_jump"]) < 1e-4 and trainer.model.config.n_layer == 3


@pytest.mark.parametrize(("stage", "match"), [
    ({"at_step": 5, "grow": {"d_ff": 96}, "method": "masked", "ramp_steps": 4}, "no growth masks"),
    ({"at_step": 5, "grow": {"d_ff": 96}, "method": "zero", "lr": "rewarm", "lr_warmup_steps": 2},
     "Trainer's scheduler"),
    ({"at_flops": 1e9, "grow": {"d_ff": 96}, "method": "zero"}, "at_step, at_fraction or at_tokens"),
])
def test_stages_the_trainer_cannot_take_are_refused_when_built(stage: dict[str, Any], match: str) -> None:
    with pytest.raises(GrowkitError, match=match):
        GrowthCallback([stage])


def test_impossible_stage_is_refused_before_step_0(tmp_path: Path) -> None:
    """GPT-2 ties head width to d_model / n_heads: growkit can split d_model alone (heads keep their width), GPT-2
    cannot hold the result; refused at grow_trainer, before anything trains."""
    trainer = transformers.Trainer(model=tiny("gpt2"), args=args(tmp_path), train_dataset=Tokens())
    with pytest.raises(GrowkitError, match=r"stage 1 .* GPT2LMHeadModel cannot hold"):
        grow_trainer(trainer, [{"at_step": 5, "grow": {"d_model": 64}, "method": "split"}])
    with pytest.raises(GrowkitError, match="include_num_input_tokens_seen"):
        grow_trainer(trainer, [{"at_tokens": 100, "grow": {"d_ff": 96}, "method": "zero"}])
    assert trainer.state.global_step == 0


def test_frozen_weight_is_refused_when_training_begins(tmp_path: Path) -> None:
    """A weight outside the optimizer has no state to carry: refused at on_train_begin, before step 0."""
    model = tiny("llama")
    model.model.embed_tokens.weight.requires_grad_(False)
    trainer = transformers.Trainer(model=model, args=args(tmp_path), train_dataset=Tokens(),
                                   callbacks=[GrowthCallback([{"at_step": 5, "grow": {"d_ff": 96}, "method": "zero"}])])
    with pytest.raises(GrowkitError, match=r"model.embed_tokens.weight not in the Trainer's optimizer"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_optimizer_growkit_cannot_carry_is_refused_when_training_begins(tmp_path: Path) -> None:
    trainer = transformers.Trainer(model=tiny("gpt2"), args=args(tmp_path, optim="adagrad"), train_dataset=Tokens(),
                                   callbacks=[GrowthCallback([{"at_step": 5, "grow": {"d_ff": 96}, "method": "zero"}])])
    with pytest.raises(GrowkitError, match=r"optimizer is Adagrad: .*optim='adamw_torch'"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_without_transformers_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "growkit.integrations.hf")
    with pytest.raises(GrowkitError, match=r"pip install 'growkit\[hf\]'"):
        importlib.import_module("growkit.integrations.hf")
