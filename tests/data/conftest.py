"""Fixtures of the growkit.data tests: offline Hugging Face, and the corpus tokenized once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from growkit.data import TokenData, prepare_data


@pytest.fixture(scope="session", autouse=True)
def _hf_offline() -> Iterator[None]:
    """No test may reach the Hugging Face Hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def bpe_data(tmp_path_factory: pytest.TempPathFactory) -> TokenData:
    """The bundled corpus tokenized with the shipped BPE (the one full tokenization of the session)."""
    return prepare_data("bpe", cache_dir=tmp_path_factory.mktemp("bpe-cache"))


@pytest.fixture(scope="session")
def byte_data(tmp_path_factory: pytest.TempPathFactory) -> TokenData:
    """The bundled corpus as bytes."""
    return prepare_data("byte", cache_dir=tmp_path_factory.mktemp("byte-cache"))
