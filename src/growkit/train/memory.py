"""Give memory back after a growth: `release_memory`.

A growth builds the new model and its carried optimizer state while the old ones still exist (growth
returns a new model and leaves the old one untouched), so the old model, its AdamW moments and the
growth's temporaries are garbage once the loop holds the new objects. CPython frees them when their
last reference goes; `release_memory` then runs the cycle collector (for anything kept alive only by
reference cycles) and, on glibc, ``malloc_trim(0)``, which returns the freed heap pages to the operating
system instead of keeping them in the allocator's free lists. Without the trim a process's resident
memory stays at its peak after a growth, although the memory is free inside it. Large CPU tensors are
mmap-ed and unmapped when freed anyway; the trim matters for the many smaller ones (biases, norms, masks,
small layers). On CUDA the caching allocator keeps freed blocks for reuse, which is what a training loop
wants; it is left alone.
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
