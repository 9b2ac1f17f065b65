"""Checkpoints: safetensors + JSON round trip, atomic latest pointer, pruning, checksums, fall-back to the newest
good checkpoint, foreign checkpoints and failed writes (disk full) refused with the previous one intact."""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import pytest
import torch

from growkit import GrowkitError, GrowkitWarning, Transformer, TransformerConfig
from growkit.train import checkpoint as ckpt_module
from growkit.train.checkpoint import find_checkpoint, read_checkpoint, save_checkpoint
from growkit.train.config import TrainConfig
from growkit.train.loop import build_optimizer

CFG = TransformerConfig(arch="llama", n_layers=2, d_model=20, n_heads=2, n_kv_heads=1, d_ff=37, vocab_size=51,
                        max_seq_len=16, tie_embeddings=True)


def trained(seed: int = 0) -> tuple[Transformer, torch.optim.AdamW]:
    model = Transformer(CFG, seed=seed)
    opt = build_optimizer(model, TrainConfig(max_steps=1))
    x = torch.randint(0, 51, (2, 9), generator=torch.Generator().manual_seed(seed))
    for _ in range(2):
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def save(run_dir: Path, model: Transformer, opt: torch.optim.Optimizer, step: int, keep: int = 2) -> Path:
    return save_checkpoint(run_dir, model, opt, {"step": step, "model_config": CFG.to_dict()}, keep=keep)


def test_round_trip_restores_weights_moments_and_rng(tmp_path: Path) -> None:
    model, opt = trained()
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    path = save(tmp_path, model, opt, step=2)
    ckpt = read_checkpoint(tmp_path)
    assert ckpt.path == path and ckpt.step == 2 and ckpt.state["model_config"] == CFG.to_dict()

    fresh = Transformer(CFG, seed=99)
    fresh_opt = build_optimizer(fresh, TrainConfig(max_steps=1))
    ckpt.load_model(fresh)
    ckpt.load_optimizer(fresh_opt, fresh)
    for (n, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(a, b), n
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[a][key], fresh_opt.state[b][key]), (n, key)
    assert fresh.lm_head.weight is fresh.tok_emb.weight  # tying survives loading
    assert torch.equal(ckpt.rng_state(), rng)


def test_resumed_optimizer_steps_like_the_original(tmp_path: Path) -> None:
    model, opt = trained()
    save(tmp_path, model, opt, step=2)
    fresh = Transformer(CFG, seed=5)
    fresh_opt = build_optimizer(fresh, TrainConfig(max_steps=1))
    ckpt = read_checkpoint(tmp_path)
    ckpt.load_model(fresh)
    ckpt.load_optimizer(fresh_opt, fresh)
    x = torch.randint(0, 51, (2, 9), generator=torch.Generator().manual_seed(7))
    for m, o in ((model, opt), (fresh, fresh_opt)):
        m(x, x)[1].backward()
        o.step()
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


def test_latest_pointer_and_pruning(tmp_path: Path) -> None:
    model, opt = trained()
    for step in (10, 20, 30):
        save(tmp_path, model, opt, step=step, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_00000020", "step_00000030"]
    assert read_checkpoint(tmp_path).step == 30
    assert read_checkpoint(tmp_path / "checkpoints" / "step_00000020").step == 20
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


@pytest.mark.parametrize("victim", ["model.safetensors", "optimizer.safetensors", "state.json"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, victim: str) -> None:
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    data = (path / victim).read_bytes()
    (path / victim).write_bytes(data[: len(data) // 2])
    fresh = Transformer(CFG)
    with pytest.raises(GrowkitError, match="corrupt or incomplete"):
        ckpt = read_checkpoint(tmp_path)
        ckpt.load_model(fresh)
        ckpt.load_optimizer(build_optimizer(fresh, TrainConfig(max_steps=1)), fresh)


def test_missing_file_and_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match="no checkpoint"):
        read_checkpoint(tmp_path)
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    (path / "rng.safetensors").unlink()
    with pytest.raises(GrowkitError, match=r"missing rng\.safetensors"):
        read_checkpoint(tmp_path)


def test_checkpoint_of_another_shape_is_refused(tmp_path: Path) -> None:
    model, opt = trained()
    save(tmp_path, model, opt, step=1)
    other = Transformer(CFG.replace(n_layers=3))
    with pytest.raises(GrowkitError, match="does not match the model"):
        read_checkpoint(tmp_path).load_model(other)


def test_checkpoints_are_never_unpickled(tmp_path: Path) -> None:
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    source = Path(__file__).parents[2] / "src" / "growkit"
    for py in source.rglob("*.py"):
        text = py.read_text()
        assert "torch.load(" not in text and "import pickle" not in text and "pickle.load" not in text, py


def test_flipped_byte_is_caught_by_the_checksum(tmp_path: Path) -> None:
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 0x01  # a tensor byte: safetensors itself would load it without complaint
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(GrowkitError, match=r"model\.safetensors does not match its checksum"):
        read_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncate", "flip", "missing_dir", "bad_pointer"])
def test_damaged_latest_falls_back_to_the_newest_good_one(tmp_path: Path, damage: str) -> None:
    model, opt = trained()
    for step in (10, 20, 30):
        save(tmp_path, model, opt, step=step, keep=3)
    root = tmp_path / "checkpoints"
    newest = root / "step_00000030"
    if damage == "truncate":
        f = newest / "optimizer.safetensors"
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "flip":
        f = newest / "state.json"
        f.write_text(f.read_text().replace('"step": 30', '"step": 31'))
    elif damage == "missing_dir":
        newest.rename(root / "elsewhere")
    else:
        (root / "latest.json").write_text("{not json")
    with pytest.warns(GrowkitWarning, match="falling back to .*step_00000020" if damage != "bad_pointer"
                      else "latest.json is unreadable"):
        found = find_checkpoint(tmp_path)
    expected = 30 if damage == "bad_pointer" else 20  # an unreadable pointer: the newest dir that verifies
    assert read_checkpoint(found).step == expected
    if damage in ("truncate", "flip"):  # set aside, never deleted, and outside the keep-K pruning
        assert (root / "corrupt-step_00000030").is_dir() and not newest.exists()
        save(tmp_path, model, opt, step=40, keep=1)
        assert (root / "corrupt-step_00000030").is_dir()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert read_checkpoint(tmp_path).step == 40


def test_all_checkpoints_damaged_is_a_clear_error(tmp_path: Path) -> None:
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    (path / "rng.safetensors").write_bytes(b"")
    with pytest.raises(GrowkitError, match="all corrupt or incomplete"):
        find_checkpoint(tmp_path)


def test_checkpoint_of_another_format_version_is_refused(tmp_path: Path) -> None:
    model, opt = trained()
    path = save(tmp_path, model, opt, step=1)
    for name in ("manifest.json", "state.json"):  # as written by a growkit of another format
        d = json.loads((path / name).read_text())
        (path / name).write_text(json.dumps({**d, "format_version": 1}))
    with pytest.raises(GrowkitError, match="format version 1, and this growkit reads version 2"):
        read_checkpoint(path)


@pytest.mark.parametrize("other", [CFG.replace(arch="gpt2", d_head=None, d_head_v=None, n_kv_heads=2,
                                               activation=None, bias=None, norm_eps=None),
                                   CFG.replace(d_ff=40)])
def test_checkpoint_of_another_architecture_is_refused_before_loading(tmp_path: Path,
                                                                       other: TransformerConfig) -> None:
    model, opt = trained()
    save(tmp_path, model, opt, step=1)
    fresh = Transformer(TransformerConfig(**{k: v for k, v in other.to_dict().items() if v is not None}))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(GrowkitError, match="does not match the model"):
        read_checkpoint(tmp_path).load_model(fresh)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # nothing partially loaded


def test_shapes_are_checked_even_when_the_config_is_not_stored(tmp_path: Path) -> None:
    model, opt = trained()
    save_checkpoint(tmp_path, model, opt, {"step": 1})
    with pytest.raises(GrowkitError, match=r"does not match the model \(shapes"):
        read_checkpoint(tmp_path).load_model(Transformer(CFG.replace(d_ff=40)))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_unwritable_during_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     code: int) -> None:
    model, opt = trained()
    save(tmp_path, model, opt, step=10)
    root = tmp_path / "checkpoints"
    before = {p.name: p.read_bytes() for p in (root / "step_00000010").iterdir()}
    latest = (root / "latest.json").read_text()
    real = ckpt_module.save_file

    def full_disk(tensors: dict, filename: str, *args: object, **kw: object) -> None:
        real(tensors, filename, *args, **kw)  # some bytes reach the disk, then the device is full
        with open(filename, "r+b") as f:
            f.truncate(7)
        raise OSError(code, "simulated")

    monkeypatch.setattr(ckpt_module, "save_file", full_disk)
    hint = "free some disk space" if code == errno.ENOSPC else "make it writable"
    with pytest.raises(GrowkitError, match=f"could not write checkpoint .*step_00000020.*{hint}.*previous "
                                           f"checkpoint is intact"):
        save(tmp_path, model, opt, step=20)
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_00000010"]  # no temp dir left
    assert (root / "latest.json").read_text() == latest
    assert {p.name: p.read_bytes() for p in (root / "step_00000010").iterdir()} == before
    assert read_checkpoint(tmp_path).step == 10


def test_leftovers_of_a_killed_writer_are_cleaned(tmp_path: Path) -> None:
    model, opt = trained()
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_00000010-999999").mkdir(parents=True)
    (root / ".tmp-step_00000010-999999" / "model.safetensors").write_bytes(b"half")
    assert find_checkpoint(tmp_path) is None  # a temporary dir is never taken for a checkpoint
    save(tmp_path, model, opt, step=10)
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_00000010"]
