"""Session-wide test settings: never reach the Hugging Face Hub, and one shared token cache.

The token cache (``GROWKIT_CACHE``) lives in a session temp dir, so the bundled corpus is tokenized at
most once per tokenizer per test session, and tests never touch the user's ``~/.cache/growkit`` (the
bf16 measurement cache of `growkit.train.hardware` included).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# train.dtype = "auto" resolves to float32 on every CPU in tests, whatever this machine's bf16 support
# (tests of the resolution itself mock the CPU); subprocesses (torchrun workers) inherit it.
os.environ["GROWKIT_CPU_BF16"] = "emulated"


@pytest.fixture(scope="session", autouse=True)
def growkit_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("growkit-cache")
    os.environ["GROWKIT_CACHE"] = str(cache)
    return cache
