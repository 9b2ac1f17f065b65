"""Give memory back after a growth: `release_memory`.

A growth builds the new model and its carried optimizer state while the old ones still exist (growth
returns a new model and leaves the old one untouched), so the old model, its AdamW moments and the
growth's temporaries are garbage once the loop holds the new objects. CPython frees them when their last
reference goes; `release_memory` then runs the cycle collector, for what only reference cycles keep alive.
With torch 2.13 the first ``AdamW`` a process builds is such a case (frames of its ``__init__`` stay in a
cycle), so without the collector the initial optimizer, its moments and, through them, the initial
model's weights outlive the first growth until Python's next collection. On glibc it then calls
``malloc_trim(0)``, which returns freed heap pages to the operating system instead of keeping them in the
allocator's free lists (large CPU tensors are mmap-ed and unmapped when freed anyway; the trim is for the
many small ones). On CUDA the caching allocator keeps freed blocks for reuse, which a training loop wants;
it is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable


def release_memory() -> None:
    """``gc.collect()``, then ``malloc_trim(0)`` where the C library is glibc (a no-op elsewhere)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows: no such function)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn
