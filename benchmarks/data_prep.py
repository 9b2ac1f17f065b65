"""Tokenize a big text file with the shipped BPE into the token cache: speed and peak memory.

    python benchmarks/data_prep.py             # 500 MB (the bundled corpus repeated), docs/figures/data_prep.json
    python benchmarks/data_prep.py --mb 20     # a quick look

The text (the bundled Shakespeare corpus repeated to ``--mb`` MB, written to a temporary file) goes
through `growkit.data.prepare_data` exactly as ``growkit train`` would send ``data.path``: a counting pass
and a tokenizing pass, both streamed from disk, the tokenizing pass batched through the ``tokenizers``
library's own parallel batch encoding. Throughput is the text's size over the whole ``prepare_data``
call (both passes, the cache write included); peak memory is the process's peak resident set
(``VmHWM``, which includes the Python interpreter, numpy and the tokenizer). Goals (issue 15): at least
8 MB/s on 2 cores and at most 1 GB. The last line is ``tokenize_mb_per_s: X``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "figures" / "data_prep.json"
MB = 1_000_000


def peak_rss_mb() -> float:
    """The process's peak resident set size (``VmHWM`` in /proc/self/status), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    import resource  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB




def write_corpus(path: Path, n_bytes: int) -> int:
    """The bundled corpus repeated (whole plays, blank line between) until ``n_bytes``; returns the size."""
    from growkit.data import shakespeare_plays

    plays = [play.encode("utf-8") for play in shakespeare_plays()]
    written = 0
    with open(path, "wb") as fh:
        while written < n_bytes:
            for play in plays:
                fh.write(play + b"\n")
                written += len(play) + 1
                if written >= n_bytes:
                    break
    return written


def readme_line(data: dict) -> str:
    """The README's sentence with this JSON's figures."""
    return (f"`python benchmarks/data_prep.py` tokenized {data['text_mb']:.0f} MB of text with the shipped BPE at "
            f"**{data['tokenize_mb_per_s']:.1f} MB/s** ({data['cores']} cores, {data['cpu']}) with a peak RSS of "
            f"**{data['peak_rss_mb']:.0f} MB**")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=500.0, help="MB of text to tokenize (default 500)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args()

    from growkit.data import prepare_data

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="growkit-data-prep-") as tmp:
        text = Path(tmp) / "corpus.txt"
        size = write_corpus(text, int(args.mb * MB))
        start = time.perf_counter()
        data = prepare_data("bpe", text, cache_dir=Path(tmp) / "cache")
        seconds = time.perf_counter() - start
        n_tokens = data.n_tokens("train") + data.n_tokens("val")
        del data
    load_after = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    from growkit.train.hardware import cpu_info  # after the measurement: its imports don't count in the peak

    result = {
        "text_mb": round(size / MB, 1),
        "tokens": n_tokens,
        "seconds": round(seconds, 2),
        "tokenize_mb_per_s": round(size / MB / seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cpu": cpu_info().model,
        "cores": cores,
        "rayon_threads": os.environ.get("RAYON_NUM_THREADS", f"default ({cores}: one per core)"),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset (parallel)"),
        "load_average_before_after": [round(load_before, 2), round(load_after, 2)],
        "shared_cores": max(load_before, load_after) > 2,
        "goals": {"tokenize_mb_per_s": ">= 8 on 2 cores", "peak_rss_mb": "<= 1000"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    shared = " (cores shared with another job: load average > 2)" if result["shared_cores"] else ""
    print(f"text: {result['text_mb']} MB, {n_tokens:,} tokens in {result['seconds']} s on {cores} cores{shared}")
    print(f"peak_rss_mb: {result['peak_rss_mb']}")
    print(f"wrote {args.out}")
    print(f"tokenize_mb_per_s: {result['tokenize_mb_per_s']:.2f}")


if __name__ == "__main__":
    main()
