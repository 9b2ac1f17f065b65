"""The short fault-injection run (CI): three SIGKILLs — in a growth event, mid-ramp, mid-checkpoint —
resumed each time, bit-identical to the uninterrupted run; a second writer started mid-ramp is refused and
the run stays bit-identical; and the comparison does see a difference."""

from __future__ import annotations

import json
from pathlib import Path

from growkit.bench.faults import ci_trial, compare, damage_newest, fingerprint, run_trials, second_writer_trials


def test_three_kills_resume_bit_identical(tmp_path: Path) -> None:
    writer = next(t for t in second_writer_trials() if t.name == "writer-resume-ramp")
    (result, refused), _ = run_trials([ci_trial(), writer], tmp_path)
    assert result.ok, result.problems
    assert result.kills_landed == 3 and result.launches == 4
    assert refused.ok and refused.refused == 1, refused.problems
    assert "is in use by another growkit process" in (tmp_path / "writer-resume-ramp.second.log").read_text()
    events = [json.loads(line) for line in (tmp_path / "ci" / "events.jsonl").read_text().splitlines()]
    assert [e["stage"] for e in events if e["event"] == "growth"] == [1, 2]  # both growths, once each

    # the check is not vacuous: one changed byte in the final weights, or another loss, is a difference
    ref = fingerprint(tmp_path / "reference")
    assert compare(ref, fingerprint(tmp_path / "ci")) == []
    key = next(k for k in ref["tensors"] if k.startswith("model"))
    dtype, shape, data = ref["tensors"][key]
    flipped = {**ref, "tensors": {**ref["tensors"], key: (dtype, shape, bytes([data[0] ^ 1]) + data[1:])}}
    assert compare(ref, flipped) == ["1 tensors differ, e.g. " + str([key])]
    assert compare(ref, {**ref, "final_val_loss": ref["final_val_loss"] + 1e-12}) == ["final_val_loss differs"]
    assert damage_newest(tmp_path / "ci", "flip").startswith("step_")


def test_readme_states_the_committed_fault_injection_result() -> None:
    root = Path(__file__).resolve().parents[2]
    data = json.loads((root / "docs" / "figures" / "fault_injection.json").read_text())
    readme = (root / "README.md").read_text()
    assert data["n"] >= 24 and data["ok"] == data["n"]
    assert f"`fault_trials_ok: {data['ok']}/{data['n']}`" in readme and f"runs {data['n']} trials" in readme
    assert f"{data['kills']} kills landed" in readme and f"{data['refused']} second writers refused" in readme
    assert f"in {data['seconds']:.0f} s" in readme
    assert sum(t["name"].startswith("writer") for t in data["trials"]) == data["refused"] == 5
