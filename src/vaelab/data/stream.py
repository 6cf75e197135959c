"""Images that stay on disk: a .npy file (through NumPy memmaps) or a folder of PNGs, read in
chunks, for data larger than memory (`data.stream`).

An `ImageStream` stands where a Dataset's image tensor would: `len`, `.shape`, indexing with a
slice or an index tensor (which reads only the chunks the index touches) and `split`. Training
draws an epoch with `epoch_order`: the chunks in a seeded random order, each shuffled within
itself, so one epoch reads every chunk once, front to back. That is a coarser shuffle than the
in-memory one (a batch holds images of one or two chunks), the usual price of streaming; an
epoch still holds every image exactly once.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from vaelab.errors import UserError

CHUNK_BYTES = 64 * 2**20
"""float32 bytes of one chunk (two are kept in memory while an epoch crosses from one to the next)"""


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def should_stream(setting: str, n: int, image_bytes: int) -> bool:
    """`data.stream`: on, off, or auto (when the float32 images would take over a quarter of the
    machine's memory)."""
    return setting == "on" or (setting == "auto" and n * image_bytes > memory_bytes() // 4)


class ImageStream:
    """N images (C, H, W) float32, read on demand by `read(start, stop)` → (stop − start, C, H, W).

    Arguments:
        n: the number of images.
        shape: (C, H, W) of one image.
        read: reads the images start … stop − 1 (validated, converted to float32).
        source: what the images are read from (named in messages).
    """

    def __init__(self, n: int, shape: tuple[int, int, int], read: Callable[[int, int], np.ndarray], source: str):
        self.n, self.image_shape, self.read, self.source = n, tuple(shape), read, source
        self.chunk = max(1, CHUNK_BYTES // (4 * int(np.prod(shape))))
        """images per chunk"""
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, *self.image_shape))

    def __repr__(self) -> str:
        return f"ImageStream({self.source}, {self.n} images of {self.image_shape}, {self.chunk} per chunk)"

    def _chunk(self, c: int) -> torch.Tensor:
        if c not in self._cache:
            self._cache[c] = torch.from_numpy(self.read(c * self.chunk, min(self.n, (c + 1) * self.chunk)))
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[c]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.n)
            if step == 1:
                return torch.from_numpy(self.read(start, max(start, stop)))
            index = torch.arange(start, stop, step)
        if isinstance(index, int):
            return self[index : index + 1][0] if index >= 0 else self[self.n + index]
        index = torch.as_tensor(index).cpu()  # a CUDA index is read here, on the CPU
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = index.long()
        index = torch.where(index < 0, index + self.n, index)
        out = torch.empty((len(index), *self.image_shape))
        chunks = index // self.chunk
        for c in chunks.unique().tolist():
            at = (chunks == c).nonzero().flatten()
            out[at] = self._chunk(c)[index[at] - c * self.chunk]
        return out

    def split(self, size: int) -> Iterator[torch.Tensor]:
        for i in range(0, self.n, size):
            yield self[i : i + size]

    def epoch_order(self, seed: int, epoch: int) -> torch.Tensor:
        """Epoch `epoch`'s order (N,): the chunks in a random order, each shuffled within itself;
        it depends only on (seed, epoch)."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        n_chunks = -(-self.n // self.chunk)
        parts = []
        for c in torch.randperm(n_chunks, generator=g).tolist():
            start, stop = c * self.chunk, min(self.n, (c + 1) * self.chunk)
            parts.append(start + torch.randperm(stop - start, generator=g))
        return torch.cat(parts)


def npy_stream(file: Path, check: Callable[[np.ndarray, str], np.ndarray], required: bool = False) -> ImageStream | None:
    """A stream over a .npy file's images, or None when it cannot be mapped (then it is loaded whole).
    `check` validates and converts raw rows to float32 (N, C, H, W), as for in-memory arrays;
    `required` (data.stream = on): a file stored in Fortran order is refused rather than loaded."""
    probe = np.load(file, mmap_mode="r", allow_pickle=False)
    if required and isinstance(probe, np.memmap) and probe.ndim in (3, 4) and len(probe) and not probe.flags.c_contiguous:
        raise UserError(f"data.stream=on reads {file} row by row, but it is stored in Fortran order: save it with numpy.save(path, numpy.ascontiguousarray(images))")
    if not isinstance(probe, np.memmap) or probe.ndim not in (3, 4) or not probe.flags.c_contiguous or len(probe) == 0:
        return None  # checked (and refused with its own message) as a whole array
    raw_shape, dtype, offset = probe.shape, probe.dtype, probe.offset
    del probe
    row = int(np.prod(raw_shape[1:])) * dtype.itemsize

    def read(start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty((0, *shape), np.float32)
        mm = np.memmap(file, dtype=dtype, mode="r", offset=offset + start * row, shape=(stop - start, *raw_shape[1:]))
        try:
            return check(np.array(mm), f"{file} (images {start}…{stop - 1})")
        finally:
            del mm  # unmapped: the pages read leave this process's memory

    shape = tuple(check(np.array(np.load(file, mmap_mode="r")[:1]), str(file)).shape[1:])
    return ImageStream(raw_shape[0], shape, read, str(file))
