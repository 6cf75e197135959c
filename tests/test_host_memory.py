"""vaelab.host_memory: after keep_freed_host_memory, a freed 64 MiB block stays in the process for the
next allocation; with glibc's default it is mapped and unmapped each time. Checked in fresh
processes (the setting is process-wide) through glibc's own accounting, mallinfo2."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, sys
from vaelab.host_memory import keep_freed_host_memory
kept = keep_freed_host_memory() if sys.argv[1] == "keep" else None

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(json.dumps({"kept": kept, "mapped": mapped, "free_in_heap": libc.mallinfo2().fordblks}))
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc ≥ 2.33 (mallinfo2) only")


def probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@glibc
def test_default_glibc_maps_a_large_block_and_returns_it():
    default = probe("default")
    assert default["mapped"] >= 64 << 20  # the block was its own mapping …
    assert default["free_in_heap"] < 64 << 20  # … handed back to the system when freed


@glibc
def test_kept_blocks_stay_in_the_heap_for_reuse():
    kept = probe("keep")
    assert kept["kept"] is True
    assert kept["mapped"] < 64 << 20  # taken from the heap, not mapped
    assert kept["free_in_heap"] >= 64 << 20  # and kept there once freed
