"""Data read from files the user names: MNIST-style IDX folders, .npz/.npy arrays, PNG folders.

Nothing is ever downloaded, and nothing is unpickled (`np.load(..., allow_pickle=False)`).
"""

from __future__ import annotations

import gzip
import math
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vaelab.data.registry import Dataset, check_factors, check_images, check_labels, register, take, take_index
from vaelab.data.stream import ImageStream, npy_stream, should_stream
from vaelab.errors import UserError
from vaelab.runfolder import one_line

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): magic (0, 0, dtype, ndim), big-endian dims, data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise UserError(f"{path}: cannot be read as gzip ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(f"{path}: truncated or padded IDX data ({len(raw) - header} bytes, expected {expected})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


@dataclass(frozen=True)
class IdxParams:
    split: Literal["train", "test"] = "train"
    """train (60,000 images) or test (10,000 images: the t10k files)"""


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_folder(folder: str, split: str, name: str) -> Dataset:
    root = Path(folder).expanduser()
    expected = [f for pair in IDX_FILES.values() for f in pair]
    found = {f: _find(root, f) for f in expected}
    if not root.is_dir() or any(v is None for v in found.values()):
        missing = [f for f, v in found.items() if v is None] if root.is_dir() else expected
        raise UserError(
            f"data.path {root} must hold the four {name} IDX files (optionally .gz): {', '.join(expected)}; "
            f"missing: {', '.join(missing)}"
        )
    img_file, lbl_file = (found[f] for f in IDX_FILES[split])
    images, labels = read_idx(img_file), read_idx(lbl_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise UserError(f"{img_file}: expected (N, H, W) images and (N,) labels, got {images.shape} and {labels.shape}")
    images = check_images(images, str(img_file))
    labels = check_labels(labels, images.shape[0], str(lbl_file))
    return Dataset(torch.from_numpy(images), torch.from_numpy(labels), name=name)


HINT = "a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"


@register("mnist", IdxParams, "MNIST from the four IDX files in data.path (nothing is downloaded)", path_hint=HINT)
def mnist(p: IdxParams, n: int, seed: int, path: str) -> Dataset:
    return take(load_idx_folder(path, p.split, "mnist"), n, seed, path)


@register("fashion-mnist", IdxParams, "Fashion-MNIST from the four IDX files in data.path", path_hint=HINT)
def fashion_mnist(p: IdxParams, n: int, seed: int, path: str) -> Dataset:
    return take(load_idx_folder(path, p.split, "fashion-mnist"), n, seed, path)


@dataclass(frozen=True)
class ArrayParams:
    key: str = "images"
    """the .npz entry holding the images (labels and factors are read from `labels`, `factors`)"""
    stream: Literal["auto", "on", "off"] = "auto"
    """auto: stream a .npy file from disk (memmap, shuffled in chunks) when its images would take over a quarter of this machine's memory as float32; on: always (a .npy file); off: never"""


ARRAY_HINT = "a .npz or .npy file"


@dataclass(frozen=True)
class ImagesParams:
    stream: Literal["auto", "on", "off"] = "auto"
    """auto: decode the PNGs chunk by chunk during training when they would take over a quarter of this machine's memory as float32; on: always; off: never"""


@register("array", ArrayParams, "a user's .npz/.npy file of images (N, H, W) or (N, C, H, W)", path_hint=ARRAY_HINT)
def array(p: ArrayParams, n: int, seed: int, path: str) -> Dataset:
    return read_array(path, p, n, seed)


def read_array(path: str, p: ArrayParams, n: int = 0, seed: int = 0, flag: str = "data.path") -> Dataset:
    """The images (labels, factors) of a .npz/.npy file; `flag` is how the user named the file
    (data.path, or reconstruct's --input), for the messages."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise UserError(f"{flag} {file} is a directory, not a file ({ARRAY_HINT})")
    if not file.is_file():
        raise UserError(f"{flag} {file} does not exist")
    labels = factors = None
    try:
        if file.suffix == ".npy" and p.stream != "off":
            stream = npy_stream(file, check_images, required=p.stream == "on")
            if stream is not None and should_stream(p.stream, len(stream), 4 * math.prod(stream.image_shape)):
                return take(Dataset(stream, name="array"), n, seed, str(file))
        elif p.stream == "on":
            raise UserError(f"data.stream=on reads images from a .npy file (numpy.save), and {file} is not one: save its images with numpy.save")
        loaded = np.load(file, mmap_mode="r" if file.suffix == ".npy" else None, allow_pickle=False)  # a .npy: only the rows kept are read
        if isinstance(loaded, np.ndarray):
            images = loaded
        else:
            with loaded:
                if p.key not in loaded.files:
                    set_key = "; set data.key" if flag == "data.path" else ""
                    raise UserError(f"{file}: no entry {p.key!r} (entries: {', '.join(map(repr, loaded.files))}){set_key}")
                images = _entry(loaded, p.key, file)
                labels = _entry(loaded, "labels", file) if "labels" in loaded.files else None
                factors = _entry(loaded, "factors", file) if "factors" in loaded.files else None
    except UserError:
        raise
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, tokenize.TokenError) as e:
        raise UserError(f"{file}: not a readable .npy/.npz file ({one_line(e)})") from None
    except MemoryError:  # a header (or a damaged one) asking for more than this machine holds
        raise UserError(f"{file}: its arrays do not fit in this machine's memory (a .npy file of images can be streamed: data.stream)") from None
    n_all = images.shape[0] if images.ndim else 0
    labels = None if labels is None else check_labels(labels, n_all, str(file))
    factors = None if factors is None else check_factors(factors, n_all, str(file))
    index = take_index(n_all, n, seed, str(file)) if n_all else None  # subset first: only the kept images become float32
    pick = (lambda a: a if a is None or index is None else a[index])  # noqa: E731
    return Dataset(
        torch.from_numpy(check_images(np.asarray(pick(images)), str(file))),
        None if labels is None else torch.from_numpy(pick(labels)),
        None if factors is None else torch.from_numpy(pick(factors)),
        () if factors is None else tuple(f"f{i}" for i in range(factors.shape[1])),
        "array",
    )


def _entry(npz, key: str, file: Path) -> np.ndarray:
    """Entry `key` of an open .npz file: an array (NumPy gives the bytes of an entry that is not
    a .npy file, e.g. an empty or damaged one)."""
    value = npz[key]
    if not isinstance(value, np.ndarray):
        raise UserError(f"{file}: entry {key!r} is not a .npy array (save it with numpy.savez)")
    return value


@register("images", ImagesParams, "a folder of PNG files (all the same size and channel count)", path_hint="a folder of .png files")
def images(p: ImagesParams, n: int, seed: int, path: str) -> Dataset:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"data.path {folder} is not a folder")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() == ".png")
    if not files:
        raise UserError(f"data.path {folder} holds no .png files")
    first = _read_png(files[0])

    def read(start: int, stop: int) -> np.ndarray:
        arrays = [first if i == 0 else _read_png(files[i]) for i in range(start, stop)]
        for f, a in zip(files[start:stop], arrays):
            if a.shape != first.shape or a.dtype != first.dtype:
                raise UserError(f"{f}: shape {a.shape} {a.dtype} differs from {files[0].name}'s {first.shape} {first.dtype}")
        if not arrays:
            return np.empty((0, first.shape[2], *first.shape[:2]), np.float32)
        return check_images(np.stack(arrays).transpose(0, 3, 1, 2), str(folder))  # (N, H, W, C) → (N, C, H, W)

    shape = (first.shape[2], *first.shape[:2])
    if should_stream(p.stream, len(files), 4 * math.prod(shape)):
        return take(Dataset(ImageStream(len(files), shape, read, str(folder)), name="images"), n, seed, str(folder))
    return take(Dataset(torch.from_numpy(read(0, len(files))), name="images"), n, seed, str(folder))


def _read_png(f: Path) -> np.ndarray:
    """One PNG as (H, W, C)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            im.load()
            a = np.asarray(im)
            if im.mode in ("I;16", "I;16B", "I"):
                a = a.astype(np.uint16)
            elif im.mode == "P":
                a = np.asarray(im.convert("RGBA"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{f}: not a readable PNG ({one_line(e)})") from None
    return a[:, :, None] if a.ndim == 2 else a  # (H, W, C)
