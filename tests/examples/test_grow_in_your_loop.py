"""examples/grow_in_your_loop.py, reduced (40 steps): the plain loop grows through all three stages of
configs/gpt-tiny-msg.toml (2 layers × 64 → 4 layers × 128) and its loss falls; the growth lines are few.
Slow: a subprocess that tokenizes the bundled corpus into the session's cache first."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "grow_in_your_loop.py"


@pytest.mark.slow  # ~25 s on a shared 2-core machine, most of it tokenizing the corpus into the session cache
def test_grow_in_your_loop_reduced() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "40", "--eval-every", "20"], env=env,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    grew = [(int(s), int(n.replace(",", ""))) for s, n in re.findall(r"step (\d+): grew .* to ([\d,]+) params", out)]
    assert [step for step, _ in grew] == [4, 10, 18], out  # at_fraction 0.1, 0.25, 0.45 of 40 steps
    sizes = [int(n.replace(",", "")) for n in re.findall(r"val loss [\d.]+ \(([\d,]+) params", out)]
    assert sizes[0] < grew[0][1] < grew[1][1] < grew[2][1] == sizes[-1], out
    evals = [(int(s), float(loss)) for s, loss in re.findall(r"step (\d+): val loss ([\d.]+)", out)]
    assert [s for s, _ in evals] == [0, 20, 40] and evals[-1][1] < evals[0][1] - 1.0, out
    lines = EXAMPLE.read_text().splitlines()
    growth_lines = [line for line in lines if "  # growth" in line]
    assert len(growth_lines) == 5 and len(lines) <= 80  # the lines a plain loop gains, marked "# growth"
