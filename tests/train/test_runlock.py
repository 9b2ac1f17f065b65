"""One writer per run dir (`growkit.train.runlock`): real `growkit train` processes started together on one
run dir (one runs, the other exits 2 naming it), a SIGKILLed trainer's dir resumed at once, --force-unlock,
grow/export outputs; and the lock's rules in-process (stale and live holders, release, unwritable dirs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from growkit import GrowkitError, GrowkitWarning
from growkit.train.runlock import HOLDER_FILE, LOCK_FILE, RunLock, holder_record, holder_state, read_holder

TINY = ["model.n_layers=1", "model.d_model=16", "model.n_heads=2", "model.d_ff=32", "data.tokenizer='byte'",
        "data.seq_len=16", "train.batch_size=2", "run.eval_batches=1", "run.progress=false", "run.plots=false",
        "run.tensorboard=false", "run.log_every=1"]
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gpt-tiny.toml"


def growkit(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m growkit ARGS`` as a real process (one thread; this checkout's package)."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "growkit", *args], env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def train_args(run_dir: Path, *more: str) -> list[str]:
    sets = [f"run.dir='{run_dir}'", *TINY, *more]
    return ["train", "--config", str(CONFIG), *[a for s in sets for a in ("--set", s)]]


def finish(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=300)
    return p.returncode, err


def steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_two_trainers_started_together_one_runs_the_other_exits_2_naming_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = train_args(run, "train.max_steps=300", "run.eval_every=100")  # a few seconds of training
    procs = [growkit(*args), growkit(*args)]
    (code_a, err_a), (code_b, err_b) = finish(procs[0]), finish(procs[1])
    assert sorted([code_a, code_b]) == [0, 2], (err_a, err_b)
    winner, loser = (procs[0], err_b) if code_a == 0 else (procs[1], err_a)
    assert loser.count("\n") == 1 and loser.startswith("growkit: error: "), loser  # one line, no traceback
    assert f"is in use by another growkit process (pid {winner.pid} on host {socket.gethostname()}" in loser
    assert f"Z: growkit train --config {CONFIG}" in loser  # when it started, and its command
    # the run dir holds one run's files: every record once, one run's checkpoints, the lock gone
    assert steps(run / "metrics.jsonl") == [0, 100, 200, 300]
    assert steps(run / "train.jsonl") == list(range(1, 301))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.json", "step_00000200",
                                                                        "step_00000300"]
    assert not (run / LOCK_FILE).exists() and not (run / HOLDER_FILE).exists()


def test_a_sigkilled_trainers_dir_resumes_at_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = train_args(run, "train.max_steps=8", "run.eval_every=4", "run.ckpt_every=2")
    code, _ = finish(growkit(*args, env={"GROWKIT_FAULT": "5:before_step"}))  # SIGKILLs itself at step 5
    assert code == -9
    holder = read_holder(run / HOLDER_FILE)  # left behind by the killed process
    assert holder is not None and holder_state(holder) == "stale"
    code, err = finish(growkit(*args, "--resume"))
    assert code == 0, err
    assert f"taking over the lock on {run} left by pid {holder['pid']}" in err and "no longer running" in err
    assert steps(run / "train.jsonl") == list(range(1, 9))
    assert not (run / LOCK_FILE).exists() and not (run / HOLDER_FILE).exists()


def test_force_unlock_overrides_a_holder_that_cannot_be_checked_and_warns(tmp_path: Path) -> None:
    run = tmp_path / "run"
    from growkit import RunConfig
    from growkit.train.loop import Trainer

    Trainer(RunConfig.default([*TINY, f"run.dir='{run}'", "train.max_steps=2", "run.eval_every=2"])).fit()
    args = train_args(run, "train.max_steps=4", "run.eval_every=2")  # resumed with a larger budget
    other = {**holder_record("growkit train (on another node)"), "host": "other-node.example", "pid": 4242}
    (run / HOLDER_FILE).write_text(json.dumps(other))  # a job on another host, over a shared filesystem
    code, err = finish(growkit(*args, "--resume"))
    assert code == 2 and err.count("\n") == 1, err
    assert "locked by pid 4242 on host other-node.example" in err and "pass --force-unlock" in err
    assert steps(run / "train.jsonl") == [1, 2]  # nothing was changed
    code, err = finish(growkit(*args, "--resume", "--force-unlock"))
    assert code == 0, err
    assert "growkit: warning: --force-unlock: overriding the lock on" in err and "pid 4242 on host other-node" in err
    assert steps(run / "train.jsonl") == [1, 2, 3, 4]


def test_force_unlock_never_overrides_a_lock_the_os_holds(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run, command="the test"):
        code, err = finish(growkit(*train_args(run, "train.max_steps=2"), "--force-unlock"))
    assert code == 2, err
    assert f"(pid {os.getpid()} on host" in err and "the test" in err and "cannot override" in err
    assert sorted(p.name for p in run.iterdir()) == []  # the refused writer wrote nothing; the lock is gone


# -- in-process: the rules ---------------------------------------------------------------------------------
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_lock_is_refused_and_release_cleans_up(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "r", command="first").acquire()
    assert first.os_lock and read_holder(tmp_path / "r" / HOLDER_FILE)["command"] == "first"
    with pytest.raises(GrowkitError, match=r"in use by another growkit process \(pid \d+ on host .*: first\)"):
        RunLock(tmp_path / "r").acquire()
    first.release()
    assert list((tmp_path / "r").iterdir()) == []
    with RunLock(tmp_path / "r") as again:  # free again
        assert again.held
    assert not again.held


def test_stale_holders_are_taken_over_with_a_warning(tmp_path: Path) -> None:
    tmp_path.joinpath(HOLDER_FILE).write_text(json.dumps({**holder_record("killed run"), "pid": dead_pid()}))
    with pytest.warns(GrowkitWarning, match="left by pid .*killed run.*no longer running"), RunLock(tmp_path):
        pass
    # a live pid with another start time: the pid was reused, the holder is gone
    tmp_path.joinpath(HOLDER_FILE).write_text(json.dumps({**holder_record("old"), "pid": 1, "pid_start": -5}))
    assert holder_state(read_holder(tmp_path / HOLDER_FILE)) == "stale"
    # this process's own holder file (a lock object never released): taken quietly
    tmp_path.joinpath(HOLDER_FILE).write_text(json.dumps(holder_record("me")))
    assert holder_state(read_holder(tmp_path / HOLDER_FILE)) == "mine"


def test_live_or_unknown_holders_are_refused_without_force(tmp_path: Path) -> None:
    live = {**holder_record("elsewhere"), "host": "node-7"}
    tmp_path.joinpath(HOLDER_FILE).write_text(json.dumps(live))
    with pytest.raises(GrowkitError, match=r"locked by pid .* on host node-7.*pass --force-unlock"):
        RunLock(tmp_path).acquire()
    tmp_path.joinpath(HOLDER_FILE).write_text("{not json")
    with pytest.raises(GrowkitError, match=r"holder unknown: .* is unreadable"):
        RunLock(tmp_path).acquire()
    with pytest.warns(GrowkitWarning, match="--force-unlock: overriding the lock .* holder unknown"):
        lock = RunLock(tmp_path, force=True).acquire()
    lock.release()


def test_output_folders_are_locked_from_beside_them(tmp_path: Path) -> None:
    out = tmp_path / "grown"
    with RunLock(out, beside=True):
        assert not out.exists() and (tmp_path / ".grown.lock").exists()
        with pytest.raises(GrowkitError, match="grown is in use"):
            RunLock(out, beside=True).acquire()
    assert list(tmp_path.iterdir()) == []


def test_run_dir_under_a_file_cannot_be_locked(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(GrowkitError, match=r"is not writable .*--set run.dir"):
        RunLock(tmp_path / "file" / "run").acquire()


def test_lock_is_released_when_the_trainer_fails_to_start(tmp_path: Path) -> None:
    from growkit import RunConfig
    from growkit.train.loop import Trainer

    cfg = RunConfig.default([*TINY, f"run.dir='{tmp_path}'", "train.max_steps=2"])
    with pytest.raises(GrowkitError, match="nothing to resume"):
        Trainer(cfg, resume=True)
    assert not (tmp_path / LOCK_FILE).exists()
    t = Trainer(cfg)
    assert t.lock is not None and t.lock.held and (tmp_path / HOLDER_FILE).exists()
    t.fit()
    assert not t.lock.held and not (tmp_path / HOLDER_FILE).exists()


def test_grow_and_export_lock_their_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from growkit import RunConfig
    from growkit.cli import main
    from growkit.train.loop import Trainer

    run = tmp_path / "run"
    Trainer(RunConfig.default([*TINY, f"run.dir='{run}'", "train.max_steps=2", "run.eval_every=2"])).fit()
    out = tmp_path / "grown"
    grow = ["grow", "--from", str(run), "--to", "d_ff=48", "--method", "zero", "--out", str(out)]
    with RunLock(out, beside=True, command="another grow"):
        assert main(grow) == 2
    err = capsys.readouterr().err
    assert "grown is in use by another growkit process" in err and "another grow" in err
    assert not out.exists()
    assert main(grow) == 0 and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grown", "run"]  # no lock files left beside it
    pytest.importorskip("transformers")
    exported = tmp_path / "hf"
    with RunLock(run, command="a trainer"):  # a run being trained is read, not locked: export still works
        with RunLock(exported, beside=True, command="another export"):
            assert main(["export", str(run), "--out", str(exported)]) == 2
        assert "another export" in capsys.readouterr().err and not exported.exists()
        assert main(["export", str(run), "--out", str(exported)]) == 0
    assert (exported / "config.json").is_file() and not (tmp_path / ".hf.lock").exists()


def test_resume_from_a_run_being_trained_takes_no_lock_on_it(tmp_path: Path) -> None:
    from growkit import RunConfig
    from growkit.train.checkpoint import find_checkpoint
    from growkit.train.loop import Trainer

    common = [*TINY, "train.max_steps=2", "run.eval_every=2"]
    Trainer(RunConfig.default([*common, f"run.dir='{tmp_path / 'a'}'"])).fit()
    with RunLock(tmp_path / "a", command="run a, still training"):  # its writer holds a's lock
        ckpt = find_checkpoint(tmp_path / "a")
        b = Trainer(RunConfig.default([*common, f"run.dir='{tmp_path / 'b'}'", "train.max_steps=3"]), resume=ckpt)
        assert b.state.step == 2 and b.lock is not None and b.lock.target == tmp_path / "b"
        b.fit()
    assert b.state.step == 3
