"""Each format ``data.path`` reads trains 5 steps with `growkit train`'s Trainer (tiny model), and bad data
stops the run before anything trains."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.data.formats import (
    write_bins,
    write_jsonl,
    write_parquet,
    write_parquet_folder,
    write_saved_dataset,
    write_text_folder,
)

from growkit import RunConfig
from growkit.errors import GrowkitError
from growkit.train.loop import Trainer

TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=40", "data.seq_len=32",
        "data.tokenizer=byte", "train.batch_size=4", "train.warmup_steps=2", "train.max_steps=5",
        "run.eval_every=5", "run.eval_batches=1", "run.log_every=1", "run.progress=false",
        "run.tensorboard=false", "run.plots=false"]

FORMATS: dict[str, tuple[Callable[[Path], Path], str | None]] = {
    "text": (write_text_folder, None),
    "jsonl": (write_jsonl, None),
    "parquet": (write_parquet, "pyarrow"),
    "parquet-folder": (write_parquet_folder, "pyarrow"),
    "datasets": (write_saved_dataset, "datasets"),
    "bin": (write_bins, None),
}
SUFFIX = {"jsonl": ".jsonl", "parquet": ".parquet"}


def _config(tmp_path: Path, data_path: Path, *extra: str) -> RunConfig:
    return RunConfig.default([*TINY, f"run.dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
                              *extra, f"data.path={data_path}"])


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_trains_five_steps(tmp_path: Path, fmt: str) -> None:
    writer, needs = FORMATS[fmt]
    if needs:
        pytest.importorskip(needs)
    source = writer(tmp_path / f"data{SUFFIX.get(fmt, '')}")
    Trainer(_config(tmp_path, source)).fit()
    steps = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps][-1] == 5 and all(math.isfinite(r["train_loss"]) for r in steps)
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["step"] == 5 and math.isfinite(last["val_loss"])
    assert (last["val_bpb"] is None) == (fmt == "bin")  # bits per byte need the text's size


@pytest.mark.parametrize(("content", "match"), [
    ('{"text": "fine"}\n{"text": oops}\n', r"line 2 of '.*bad\.jsonl' is not JSON"),
    ('{"body": "no text field"}\n', r"line 1 of '.*bad\.jsonl' has no 'text' field"),
])
def test_bad_data_stops_the_run_before_it_trains(tmp_path: Path, content: str, match: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(GrowkitError, match=match):
        Trainer(_config(tmp_path, bad))
    assert not (tmp_path / "run").exists()
