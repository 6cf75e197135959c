"""The host allocator for CPU training: freed activation blocks kept for reuse (glibc's mallopt).

    keep_freed_host_memory()   # True on glibc; the vaelab command calls it first

Without it, glibc returns every freed block above its threshold (at most 32 MiB) to the system,
and the next step's allocation of the same size takes fresh pages the kernel must zero: on 2 cores
the reduced `unsupervised-study` network spent 15.5 s of a 24.9 s training run there. No torch import: the
`vaelab` command calls this before it knows its verb.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's mallopt parameters (malloc.h)"""
HOST_BLOCK_BYTES = 1 << 30
"""freed host blocks up to this size stay in the process for reuse (a C int: mallopt's argument)"""


def keep_freed_host_memory() -> bool:
    """Let glibc's malloc keep freed blocks up to 1 GiB in the process for reuse, instead of
    returning each to the system and taking it back zeroed on the next step.

    A CPU training step frees and reallocates the same activations every step; the network of
    `unsupervised-study` trains 1.81× faster on 2 cores with this (bench/host_memory.py). The
    process keeps the memory it peaked at instead of handing it back between steps. A script that
    trains on the CPU can call it too. Returns False where the C library has no mallopt (not glibc)."""
    try:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the C library the process runs on
    except (OSError, TypeError):  # no C library to open by name (Windows)
        return False
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, HOST_BLOCK_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, HOST_BLOCK_BYTES))
