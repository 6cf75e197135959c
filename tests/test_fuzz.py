"""Fuzzed readers (issue 15): every reader of a user's file or value, fed structured but broken
input, returns a valid result or raises a UserError with a one-line message, never another
exception (a traceback is a bug).

The inputs are valid files and values with damage a user or a killed process could cause:
headers with mutated fields (IDX, .npy, PNG, safetensors), TOML-ish text, JSON values of any kind
per line, cells of the wrong kind, truncations, bit flips. Where the input is undamaged, the
reader must give back what was written (a round trip). Hypothesis runs derandomized and without
an example database, so every run (and CI) tries the same examples; EXAMPLES gives each
property's count (the file takes about 23 s of CPU, half of it importing torch and vaelab). The
second half holds plain regression tests of the failures the fuzzing and a probe found, each
through the CLI where that is how a user meets it.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import shutil
import struct
import time
import tomllib
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaelab.checkpoint import load_run, load_state, read_run_config, save_checkpoint
from vaelab.config import Config, DataConfig, apply_overrides, load_config, parse_value
from vaelab.data import DATASETS, load_data
from vaelab.data.files import ArrayParams, IdxParams, ImagesParams, read_idx
from vaelab.data.registry import check_images
from vaelab.errors import UserError
from vaelab.experiments import chain, sweep, sweep_table
from vaelab.experiments.sweep import MAX_CELLS, Axis, parse_axis, sweep_axes
from vaelab.models import build_model
from vaelab.train import make_optimizer
from vaelab.experiments.chain_report import curves_figure
from vaelab.experiments.sweep_report import sweep_line_figure
from vaelab.run_report import loss_terms, write_run_report
from vaelab.runfolder import load_tensors, prepare_out, read_jsonl, read_metrics, save_tensors, write_csv, write_toml

EXAMPLES = {
    "idx_file": 80,
    "idx_folder": 40,
    "npy": 80,
    "npz": 50,
    "png": 40,
    "config_dict": 120,
    "config_file": 60,
    "set": 120,
    "grid": 120,
    "jsonl": 80,
    "report": 5,
    "safetensors": 80,
    "load_run": 40,
    "load_state": 60,
    "csv": 80,
}
"""examples per property (Hypothesis' max_examples)"""


def fuzz(name: str):
    """The settings of property `name`: its example count, derandomized, no database, no deadline."""
    return settings(
        max_examples=EXAMPLES[name],
        database=None,
        derandomize=True,
        deadline=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def valid_or_user_error(read, *args, **kwargs):
    """`read`'s result, or None when it raised a UserError whose message is one non-empty line.
    Any other exception propagates and fails the property."""
    try:
        return read(*args, **kwargs)
    except UserError as e:
        assert_one_line(str(e))
        return None


def assert_one_line(message: str) -> None:
    lines = message.splitlines()
    assert len(lines) == 1 and lines[0].strip() and lines[0] == message, f"not one line: {message!r}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def fresh(root: Path, name: str) -> Path:
    """An empty folder `root/name` (emptied when an earlier example left files there)."""
    d = root / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


# ---------------------------------------------------------------------------------------------
# Damage: generic byte-level and text-level mutations.


DAMAGE = ("none", "truncate", "flip", "byte", "insert", "append", "zero")


def damage(data: st.DataObject, raw: bytes, header: int = 0) -> bytes:
    """`raw` with at most one generic mutation; half of them land in the first `header` bytes."""
    kind = data.draw(st.sampled_from(DAMAGE), label="damage")
    if kind == "none" or not raw:
        return raw
    end = min(len(raw), header) if header and data.draw(st.booleans(), label="in header") else len(raw)
    i = data.draw(st.integers(0, max(0, end - 1)), label="at")
    if kind == "truncate":
        return raw[:i]
    if kind == "flip":
        return raw[:i] + bytes([raw[i] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[i + 1 :]
    if kind == "byte":
        return raw[:i] + bytes([data.draw(st.integers(0, 255))]) + raw[i + 1 :]
    if kind == "insert":
        return raw[:i] + data.draw(st.binary(min_size=1, max_size=8)) + raw[i:]
    if kind == "zero":
        return raw[:i] + bytes(min(8, len(raw) - i)) + raw[i + 8 :]
    return raw + data.draw(st.binary(min_size=1, max_size=16))


TOKENS = ("[", "]", "=", '"', "'", "\n", ",", "{", "}", "#", ".", "\\", '"""', "\x00", "nan", "inf", "1e400", "-1", "[model]\n", 'model = "x"\n', "\u2028", "é")


def damage_text(data: st.DataObject, text: str) -> str:
    """`text` with at most one edit: a span deleted, a token inserted or the text cut short."""
    kind = data.draw(st.sampled_from(("none", "none", "delete", "insert", "cut")), label="text damage")
    if kind == "none":
        return text
    i = data.draw(st.integers(0, len(text)), label="at")
    if kind == "delete":
        return text[:i] + text[i + data.draw(st.integers(1, 8)) :]
    if kind == "insert":
        return text[:i] + data.draw(st.sampled_from(TOKENS)) + text[i:]
    return text[:i]


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
"""any JSON value (NaN and infinities included, as Python's json writes them)"""


def rng_of(data: st.DataObject) -> np.random.Generator:
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


# ---------------------------------------------------------------------------------------------
# IDX files (MNIST's format) and the mnist dataset read from a folder of them.


IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    return bytes([0, 0, IDX_CODES[a.dtype], a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape) + a.tobytes()


def gzipped(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)  # the same bytes every time


def mutate_idx(data: st.DataObject, raw: bytes) -> bytes:
    """An IDX file with a header field changed (dtype code, ndim or one dimension), then damaged."""
    field = data.draw(st.sampled_from(("none", "dtype", "ndim", "dim")), label="idx field")
    ndim = raw[3]
    if field == "dtype":
        raw = raw[:2] + bytes([data.draw(st.sampled_from((0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x0A, 0xFF)))]) + raw[3:]
    elif field == "ndim":
        raw = raw[:3] + bytes([data.draw(st.sampled_from((0, 1, 2, 3, 4, 5, 255)))]) + raw[4:]
    elif field == "dim" and ndim:
        k = data.draw(st.integers(0, ndim - 1))
        dim = data.draw(st.sampled_from((0, 1, 2, 3, 255, 2**16, 2**31, 2**32 - 1)))
        raw = raw[: 4 + 4 * k] + struct.pack(">I", dim) + raw[8 + 4 * k :]
    return damage(data, raw, header=4 + 4 * ndim)


@fuzz("idx_file")
@given(st.data())
def test_read_idx_is_an_array_or_a_user_error(scratch, data):
    """`read_idx` of a damaged IDX file (maybe gzipped): an array that its header describes, or a
    UserError; undamaged, the array written."""
    rng = rng_of(data)
    dtype = data.draw(st.sampled_from(list(IDX_CODES)))
    shape = tuple(data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
    a = rng.integers(0, 100, size=shape).astype(dtype)
    raw = idx_bytes(a)
    damaged = mutate_idx(data, raw)
    gz = data.draw(st.booleans(), label="gzip")
    written = damage(data, gzipped(damaged)) if gz else damaged  # gzipped: the stream maybe damaged too
    path = scratch / ("one.idx.gz" if gz else "one.idx")
    path.write_bytes(written)
    got = valid_or_user_error(read_idx, path)
    if got is not None and written in (damaged, gzipped(damaged)):
        assert got.nbytes == len(damaged) - 4 - 4 * got.ndim  # exactly the data its header describes
    if written in (raw, gzipped(raw)):
        np.testing.assert_array_equal(got, a)


@fuzz("idx_folder")
@given(st.data())
def test_mnist_folder_is_a_dataset_or_a_user_error(scratch, data):
    """The mnist dataset from a folder of four IDX files, one of them damaged: a dataset, or a
    UserError; undamaged, the images written (÷255) and their labels."""
    rng = rng_of(data)
    folder = fresh(scratch, "mnist")
    arrays = {}
    for images, labels in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        n = data.draw(st.integers(1, 5))
        arrays[images] = rng.integers(0, 256, size=(n, 4, 3), dtype=np.uint8)
        arrays[labels] = rng.integers(0, 10, size=n, dtype=np.uint8)
    hurt = data.draw(st.sampled_from(sorted(arrays)))
    damaged = False
    for name, a in arrays.items():
        raw = idx_bytes(a)
        if name == hurt:
            new = mutate_idx(data, raw)
            damaged = new != raw
            raw = new
        gz = data.draw(st.booleans())
        (folder / (name + ".gz" if gz else name)).write_bytes(gzipped(raw) if gz else raw)
    split = data.draw(st.sampled_from(("train", "test")))
    got = valid_or_user_error(load_data, DataConfig(name="mnist", path=str(folder), params=IdxParams(split=split)))
    if got is not None:
        assert got.images.dtype == torch.float32 and got.images.ndim == 4 and len(got.labels) == len(got.images)
    if not damaged:
        prefix = "train" if split == "train" else "t10k"
        np.testing.assert_array_equal(got.images[:, 0].numpy(), arrays[f"{prefix}-images-idx3-ubyte"] / np.float32(255))
        np.testing.assert_array_equal(got.labels.numpy(), arrays[f"{prefix}-labels-idx1-ubyte"])


# ---------------------------------------------------------------------------------------------
# .npy and .npz arrays (the array dataset).


DESCRS = ("'|u1'", "'<u2'", "'<f4'", "'>f8'", "'|b1'", "'<i8'", "'|O'", "'<U3'", "'|V4'", "'|V0'", "'<c8'", "'<M8[s]'", "[('a', '<f4')]", "'xyz'", "3", "'<f2'")
ODD_DIMS = (0, 1, -1, 2**31, 2**40, 10**30)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def npy_header(items: str) -> bytes:
    """A version-1.0 .npy header whose dict holds `items` as written (Python literals, or not)."""
    text = "{" + items + "}"
    pad = -(10 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


def mutate_npy(data: st.DataObject, a: np.ndarray) -> bytes:
    """A .npy file of `a` with its header's fields mutated (dtype, order, shape, an unknown key), then damaged."""
    raw = npy_bytes(a)
    field = data.draw(st.sampled_from(("none", "none", "descr", "fortran", "shape", "extra", "drop")), label="npy field")
    if field == "none":
        return damage(data, raw, header=128)
    descr, fortran, shape = repr(np.lib.format.dtype_to_descr(a.dtype)), "False", repr(tuple(a.shape))
    extra = ""
    if field == "descr":
        descr = data.draw(st.sampled_from(DESCRS))
    elif field == "fortran":
        fortran = data.draw(st.sampled_from(("True", "0", "'x'", "None")))
    elif field == "shape":
        dims = list(a.shape)
        how = data.draw(st.sampled_from(("dim", "drop", "add", "text")))
        if how == "dim" and dims:
            dims[data.draw(st.integers(0, len(dims) - 1))] = data.draw(st.sampled_from(ODD_DIMS))
        elif how == "dim":
            dims.append(data.draw(st.sampled_from(ODD_DIMS)))
        elif how == "drop":
            dims = dims[1:]
        elif how == "add":
            dims.append(data.draw(st.integers(0, 3)))
        shape = data.draw(st.sampled_from(("'x'", "(1, 2,", "[2, 3]", "(2.5,)"))) if how == "text" else repr(tuple(dims))
    elif field == "extra":
        extra = "'x': 1, "
    order = "" if field == "drop" else f"'fortran_order': {fortran}, "
    header = npy_header(f"'descr': {descr}, {order}'shape': {shape}, {extra}")
    return damage(data, header + raw[len(npy_bytes(a)) - a.nbytes :], header=len(header))


def image_array(data: st.DataObject) -> np.ndarray:
    """Small images of a dtype the array dataset takes (or does not), in one of its layouts."""
    rng = rng_of(data)
    dtype = data.draw(st.sampled_from(("uint8", "uint16", "float32", "float64", "bool", "int16", "complex64")), label="dtype")
    layout = data.draw(st.sampled_from(((3, 4, 5), (3, 1, 4, 4), (2, 4, 4, 3), (0, 4, 4), (4,), ())), label="shape")
    a = np.asarray(rng.integers(0, 2, size=layout) if dtype == "bool" else rng.random(size=layout) * 200).astype(dtype)
    if dtype.startswith("float") and data.draw(st.integers(0, 9)) == 0 and a.size:
        a.flat[0] = np.nan
    return a


def expected_images(a: np.ndarray) -> np.ndarray | None:
    """What the array dataset should make of `a` (None when it should refuse it)."""
    try:
        return check_images(a, "x")
    except UserError:
        return None


def all_images(ds) -> np.ndarray:
    """Every image of a dataset, read (a streamed dataset reads its file here)."""
    return np.asarray(ds.images[0 : len(ds)])


def load_all(cfg: DataConfig) -> np.ndarray:
    """The images of the dataset `cfg` names, every one of them read."""
    return all_images(load_data(cfg))


@fuzz("npy")
@given(st.data())
def test_npy_array_is_a_dataset_or_a_user_error(scratch, data):
    """The array dataset from a .npy file with mutated header fields or damage, each data.stream
    setting: a dataset whose images all read, or a UserError; undamaged, the images."""
    a = image_array(data)
    raw = mutate_npy(data, a)
    path = scratch / "a.npy"
    path.write_bytes(raw)
    stream = data.draw(st.sampled_from(("auto", "on", "off")))
    got = valid_or_user_error(load_all, DataConfig(name="array", path=str(path), params=ArrayParams(stream=stream)))
    want = expected_images(a)
    if raw == npy_bytes(a):
        assert (got is None) == (want is None)
        if got is not None:
            np.testing.assert_array_equal(got, want)


def mutate_entry(data: st.DataObject, a: np.ndarray) -> bytes:
    """A .npz entry: `a` as a mutated .npy file, or a few bytes that are not one (NumPy hands
    those back as bytes)."""
    if data.draw(st.integers(0, 3), label="junk entry") == 0:
        return data.draw(st.binary(max_size=12))
    return mutate_npy(data, a)


@fuzz("npz")
@given(st.data())
def test_npz_array_is_a_dataset_or_a_user_error(scratch, data):
    """The array dataset from a .npz file (images, labels, factors), an entry mutated or the zip
    damaged: a dataset with labels and factors of its length, or a UserError; undamaged, the
    images and labels written."""
    rng = rng_of(data)
    a = image_array(data)
    n = a.shape[0] if a.ndim else 1
    entries = {"images": a}
    if data.draw(st.booleans()):
        entries["labels"] = rng.integers(0, 5, size=data.draw(st.sampled_from((n, n + 1, 0)))).astype(data.draw(st.sampled_from(("int64", "uint8", "float32"))))
    if data.draw(st.booleans()):
        entries["factors"] = rng.random(size=data.draw(st.sampled_from(((n, 2), (n,), (n + 1, 2), (n, 2, 2))))).astype("float32")
    hurt = data.draw(st.sampled_from([None, *entries]))
    files = {f"{k}.npy": mutate_entry(data, v) if k == hurt else npy_bytes(v) for k, v in entries.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=data.draw(st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)))) as z:
        for name, b in files.items():
            z.writestr(name, b)
    raw = damage(data, buf.getvalue())
    path = scratch / "a.npz"
    path.write_bytes(raw)
    key = data.draw(st.sampled_from(("images", "images", "labels", "nope")))
    got = valid_or_user_error(load_data, DataConfig(name="array", path=str(path), params=ArrayParams(key=key)))
    if got is not None:
        assert got.labels is None or got.labels.shape == (len(got),)
        assert got.factors is None or (got.factors.ndim == 2 and len(got.factors) == len(got))
    pristine = raw == buf.getvalue() and all(files[f"{k}.npy"] == npy_bytes(v) for k, v in entries.items())
    if pristine and key == "images" and got is not None:
        np.testing.assert_array_equal(got.images.numpy(), expected_images(a))
        if "labels" in entries:
            np.testing.assert_array_equal(got.labels.numpy(), entries["labels"])


# ---------------------------------------------------------------------------------------------
# PNG folders (the images dataset).


PNG_MODES = ("L", "RGB", "RGBA", "LA", "P", "1", "I;16")


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def chunk_fixed(raw: bytes, offset: int, body: bytes) -> bytes:
    """`raw` with the chunk at `offset` given a new body (same length) and its CRC recomputed, so
    the damage reaches the decoder instead of stopping at the checksum."""
    length = struct.unpack(">I", raw[offset : offset + 4])[0]
    kind = raw[offset + 4 : offset + 8]
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return raw[: offset + 8] + body + crc + raw[offset + 12 + length :]


def mutate_png(data: st.DataObject, raw: bytes) -> bytes:
    """A PNG with IHDR fields changed (width, height, bit depth, colour type) or IDAT bytes changed,
    the CRCs kept valid; then damaged."""
    field = data.draw(st.sampled_from(("none", "none", "width", "height", "depth", "color", "idat")), label="png field")
    ihdr = raw[16:29]  # after the signature (8) and IHDR's length and type (8): 13 bytes
    if field in ("width", "height"):
        value = data.draw(st.sampled_from((0, 1, 2, 7, 65535, 2**31 - 1, 2**31, 2**32 - 1)))
        at = 0 if field == "width" else 4
        raw = chunk_fixed(raw, 8, ihdr[:at] + struct.pack(">I", value) + ihdr[at + 4 :])
    elif field == "depth":
        raw = chunk_fixed(raw, 8, ihdr[:8] + bytes([data.draw(st.sampled_from((0, 1, 2, 4, 8, 16, 3, 255)))]) + ihdr[9:])
    elif field == "color":
        raw = chunk_fixed(raw, 8, ihdr[:9] + bytes([data.draw(st.sampled_from((0, 1, 2, 3, 4, 6, 7, 255)))]) + ihdr[10:])
    elif field == "idat":
        at = raw.find(b"IDAT") - 4
        length = struct.unpack(">I", raw[at : at + 4])[0]
        body = bytearray(raw[at + 8 : at + 8 + length])
        if body:
            body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
        raw = chunk_fixed(raw, at, bytes(body))
    return damage(data, raw, header=33)


@fuzz("png")
@given(st.data())
def test_png_folder_is_a_dataset_or_a_user_error(scratch, data):
    """The images dataset from a folder of 1 to 3 PNGs of one mode, one of them mutated, each
    data.stream setting: a dataset whose images all read, or a UserError; undamaged grey or RGB
    images, their pixels ÷255."""
    rng = rng_of(data)
    folder = fresh(scratch, "png")
    mode = data.draw(st.sampled_from(PNG_MODES))
    h, w = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    count = data.draw(st.integers(1, 3))
    hurt = data.draw(st.integers(0, count))  # count: none
    pictures, damaged = [], False
    for i in range(count):
        if mode == "I;16":
            im = Image.fromarray(rng.integers(0, 65536, size=(h, w), dtype=np.uint16))
        else:
            im = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).convert(mode)
        raw = png_bytes(im)
        if i == hurt:
            new = mutate_png(data, raw)
            damaged = new != raw
            raw = new
        (folder / f"{i}.png").write_bytes(raw)
        pictures.append(im)
    stream = data.draw(st.sampled_from(("auto", "on", "off")))
    got = valid_or_user_error(load_all, DataConfig(name="images", path=str(folder), params=ImagesParams(stream=stream)))
    if got is not None:
        assert got.dtype == np.float32 and got.ndim == 4 and np.isfinite(got).all()
    if not damaged and mode in ("L", "RGB"):
        want = np.stack([np.asarray(p).reshape(h, w, -1).transpose(2, 0, 1) for p in pictures]) / np.float32(255)
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# Configs: dicts, TOML files, a run folder's config.toml.


def _section_keys() -> dict[str, list[str]]:
    """section → its keys, data's with every dataset's own parameters."""
    import typing
    from dataclasses import fields

    hints = typing.get_type_hints(Config)
    keys = {f.name: [g.name for g in fields(hints[f.name]) if g.name != "params"] for f in fields(Config)}
    keys["data"] += sorted({f.name for spec in DATASETS.values() for f in fields(spec.params)})
    return keys


SECTION_KEYS = _section_keys()
WORDS = ("points", "squares", "array", "images", "mnist", "fc1", "fc2", "conv", "cvae", "vqvae", "gaussian", "linear", "cyclical", "replace", "mix", "pmi", "neg_elbo", "cpu", "cuda:0", "fp32", "bf16", "x", "")
TOML_SCALARS = (
    st.integers(-3, 3)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.sampled_from(WORDS)
    | st.text(max_size=6)
)
SET_VALUES = TOML_SCALARS | st.lists(TOML_SCALARS, max_size=3)
"""values a --set text can write (TOML's inline tables aside)"""
TOML_VALUES = SET_VALUES | st.dictionaries(st.text(max_size=4), TOML_SCALARS, max_size=2)


ODD_KEYS = ("a\nb", "x y", "", "é", "\u2028")
"""keys a quoted TOML key can hold, which a message must not print as they are"""


@st.composite
def raw_configs(draw) -> dict:
    """A nested dict like a config file's: mostly known sections and keys with values of any TOML
    type, sometimes an unknown section or key, or a section that is not a table."""
    raw = {}
    for section in draw(st.lists(st.sampled_from([*SECTION_KEYS, "optim", "description"]), max_size=4, unique=True)):
        if section not in SECTION_KEYS or draw(st.integers(0, 9)) == 0:
            raw[section] = draw(TOML_VALUES)
            continue
        keys = draw(st.lists(st.sampled_from(SECTION_KEYS[section]) | st.text(max_size=5) | st.sampled_from(ODD_KEYS), max_size=4, unique=True))
        raw[section] = {k: draw(TOML_VALUES) for k in keys}
    return raw


def assert_round_trips(cfg: Config) -> None:
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config.from_dict(tomllib.loads(tomli_w.dumps(cfg.to_dict()))) == cfg


@fuzz("config_dict")
@given(raw_configs())
def test_config_from_any_dict_is_a_config_or_a_user_error(raw):
    """`Config.from_dict` of a dict of known and unknown keys with values of any TOML type: a
    config that round-trips through to_dict and TOML, or a UserError."""
    cfg = valid_or_user_error(Config.from_dict, raw)
    if cfg is not None:
        assert_round_trips(cfg)


def toml_file_text(data: st.DataObject) -> bytes:
    """A config file: a random config dict as TOML, maybe edited into invalid TOML or bytes."""
    text = damage_text(data, tomli_w.dumps(data.draw(raw_configs())))
    raw = text.encode("utf-8", errors="surrogatepass")
    return damage(data, raw) if data.draw(st.integers(0, 4)) == 0 else raw


@fuzz("config_file")
@given(st.data())
def test_config_file_and_run_config_are_a_config_or_a_user_error(scratch, data):
    """`load_config(config_file=…)` and `read_run_config` of a run folder holding the same text as
    config.toml: configs that round-trip, or UserErrors."""
    folder = fresh(scratch, "run-config")
    raw = toml_file_text(data)
    (folder / "config.toml").write_bytes(raw)
    cfg = valid_or_user_error(load_config, config_file=folder / "config.toml")
    stored = valid_or_user_error(read_run_config, folder)
    for c in (cfg, stored):
        if c is not None:
            assert_round_trips(c)


# ---------------------------------------------------------------------------------------------
# --set values and --grid entries.


def toml_text(value) -> str:
    """`value` written as TOML writes it (the text after `v = `)."""
    return tomli_w.dumps({"v": value})[4:-1]


BARE = st.sampled_from(("points", "a b", "/a/b.npz", "[pmi]", "[pmi, neg_elbo]", '["pmi", neg_elbo]', "pmi,neg_elbo", "144,28", "[144, 28]", "1:4:1", "[", "]", "x=1", "1e-3", "'", '"'))
INJECT = ("\n", "\n[evil]\nx = 1", "\r\nv2 = 3", " # note", "\x00", "\u2028")


@st.composite
def set_texts(draw) -> str:
    """A --set value: a TOML value, a bare word or list, maybe with more text injected after it."""
    text = draw(st.one_of(SET_VALUES.map(toml_text), BARE))
    if draw(st.integers(0, 4)) == 0:
        text += draw(st.sampled_from(INJECT))
    return text


DOTTED = st.sampled_from([f"{s}.{k}" for s, keys in SECTION_KEYS.items() for k in keys]) | st.text(max_size=8)


@fuzz("set")
@given(DOTTED, set_texts())
def test_set_values_are_a_config_or_a_user_error(key, text):
    """`load_config(overrides=[key=text])` for any key and value text: a config that round-trips,
    or a UserError; a text holding more than one value (a newline and more) is refused."""
    cfg = valid_or_user_error(load_config, overrides=[f"{key}={text}"])
    if cfg is not None:
        assert_round_trips(cfg)
    parsed = valid_or_user_error(parse_value, text.strip())
    more = any(s in text for s in ("\n[evil]", "v2 = 3"))
    assert not (more and parsed is not None), f"{text!r} holds more than one value but was taken as {parsed!r}"
    valid_or_user_error(apply_overrides, {"loss": {"beta": 1.0}}, [f"{key}={text}"])


@fuzz("set")
@given(SET_VALUES)
def test_parse_value_gives_a_toml_value_back(value):
    """`parse_value` of any TOML value's text is that value (NaN compared as NaN)."""
    got = parse_value(toml_text(value))
    assert json.dumps(got, sort_keys=True) == json.dumps(value, sort_keys=True)


NUMBER_TEXTS = st.sampled_from(("0", "1", "2", "-1", "0.5", "1e-320", "1e-300", "1e308", "-1e308", "1e400", "nan", "inf", "10" + "0" * 400, "9223372036854775807", "x", "", "true")) | st.integers(-5, 5).map(str) | st.floats(0.01, 10).map(repr)


@st.composite
def grid_entries(draw) -> str:
    """A --grid entry: key=start:stop:step with odd numbers, or key=v1,v2,… with any values."""
    key = draw(st.sampled_from(("loss.beta", "data.mu", "model.hidden", "data.name", "sweep.seeds", "train.lr", "")) | st.text(max_size=5))
    if draw(st.booleans()):
        parts = draw(st.lists(NUMBER_TEXTS, min_size=2, max_size=4))
        return f"{key}={':'.join(parts)}"
    values = draw(st.lists(set_texts(), min_size=1, max_size=4))
    return f"{key}={','.join(values)}"


@fuzz("grid")
@given(st.lists(grid_entries(), min_size=1, max_size=3))
def test_grid_entries_are_axes_or_a_user_error(entries):
    """`parse_axis` and `sweep_axes` of any --grid entries: axes of 1 to MAX_CELLS distinct values
    each, or a UserError."""
    for entry in entries:
        axis = valid_or_user_error(parse_axis, entry)
        if axis is not None:
            assert 1 <= len(axis.values) <= MAX_CELLS and axis.key
            assert len({sweep.value_text(v) for v in axis.values}) == len(axis.values)
    axes = valid_or_user_error(sweep_axes, load_config(), entries)  # the default config, resolved (a bare Config() has no model params)
    assert axes is None or len({a.key for a in axes}) == len(axes)


# ---------------------------------------------------------------------------------------------
# metrics.jsonl: the rows training logs, as resume and the report read them.


def metric_rows(data: st.DataObject) -> list[dict]:
    n = data.draw(st.integers(1, 6), label="rows")
    floats = st.floats(0, 1e3)
    return [{"step": i, "epoch": i // 3, "loss": data.draw(floats), "recon": data.draw(floats), "kl": data.draw(floats), "beta": 1.0, "time": round(0.01 * (i + 1), 4)} for i in range(n)]


def mutate_line(data: st.DataObject, row: dict) -> str:
    """One row's line, maybe replaced by any JSON value, given a field of any JSON value, short of
    a field, cut short, or not UTF-8."""
    kind = data.draw(st.sampled_from(("keep", "keep", "keep", "value", "field", "drop", "tear", "bytes")), label="line")
    if kind == "value":
        return json.dumps(data.draw(JSON_VALUES))
    if kind == "field":
        return json.dumps({**row, data.draw(st.sampled_from((*row, "extra"))): data.draw(JSON_VALUES)})
    if kind == "drop":
        gone = data.draw(st.sampled_from(list(row)))
        return json.dumps({k: v for k, v in row.items() if k != gone})
    line = json.dumps(row)
    if kind == "tear":
        return line[: data.draw(st.integers(0, len(line) - 1))]
    if kind == "bytes":
        return line[:3] + "\udcff" + line[3:]  # written as a lone byte 0xff
    return line


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8", errors="surrogateescape"))


@fuzz("jsonl")
@given(st.data())
def test_metrics_rows_are_rows_or_a_user_error(scratch, data):
    """`read_jsonl` and `read_metrics` of a metrics.jsonl whose lines may be any JSON value, rows
    with fields of any value or missing, torn or not UTF-8: rows that resume and the report can
    use (an integer step, a number time, numbers elsewhere), or a UserError; undamaged, the rows
    written, and a torn last line is dropped."""
    rows = metric_rows(data)
    lines = [mutate_line(data, r) for r in rows]
    path = scratch / "metrics.jsonl"
    write_lines(path, lines)
    valid_or_user_error(read_jsonl, path)
    got = valid_or_user_error(read_metrics, path)
    if got is not None:
        step = data.draw(st.integers(0, 7), label="checkpoint step")
        history = [r for r in got if r["step"] < step]  # train.py's resume
        assert isinstance(time.perf_counter() - (history[-1]["time"] if history else 0.0), float)
        for term in loss_terms(got):  # the report's curves and summary
            assert np.array([r.get(term, np.nan) for r in got], dtype=float).shape == (len(got),)
    intact = [json.dumps(r) for r in rows]
    if lines == intact:
        assert got == rows
    if lines[:-1] == intact[:-1] and intact[-1].startswith(lines[-1]) and lines[-1] != intact[-1]:
        assert got == rows[:-1]  # a torn last line, as a killed process leaves it


@pytest.fixture(scope="module")
def config_only_run(tmp_path_factory) -> Path:
    """A run folder of a tiny fc1 on 8×8 points (config.toml, model.safetensors), never trained."""
    d = tmp_path_factory.mktemp("fuzz-run") / "run"
    cfg = load_config(overrides=["model.name=fc1", "model.hidden=[4]", "model.latent_dim=2", "data.name=points", "data.size=8", "data.n=16"])
    d.mkdir()
    write_toml(d / "config.toml", cfg.to_dict())
    model = build_model(cfg, (1, 8, 8))
    save_tensors(d / "model.safetensors", model.state_dict(), step=3, image_shape="1,8,8", device="cpu")
    return d


@fuzz("report")
@given(st.data())
def test_run_report_of_damaged_files_is_written_or_a_user_error(scratch, config_only_run, data):
    """`write_run_report` of a run whose metrics.jsonl is damaged as above, whose config.toml may
    be any config text and evaluation.json any JSON: report.html, or a UserError (few examples:
    each draws its figures)."""
    run = fresh(scratch, "report")
    shutil.copy(config_only_run / "model.safetensors", run / "model.safetensors")
    config = toml_file_text(data) if data.draw(st.booleans(), label="damage config") else (config_only_run / "config.toml").read_bytes()
    (run / "config.toml").write_bytes(config)
    write_lines(run / "metrics.jsonl", [mutate_line(data, r) for r in metric_rows(data)])
    if data.draw(st.booleans(), label="evaluation.json"):
        (run / "evaluation.json").write_text(json.dumps(data.draw(st.dictionaries(st.sampled_from(("fid", "feature_net", "x")), JSON_VALUES) | JSON_VALUES)))
    valid_or_user_error(write_run_report, run)


# ---------------------------------------------------------------------------------------------
# safetensors checkpoints: load_tensors and load_run.


ST_DTYPES = ("F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "U16", "U32", "U64", "C64", "X", 3, None)
ODD_JSON = st.sampled_from((-1, 0, 1, 2, 3, 7, 2**31, 2**64, 10**30, "1", None, 1.5, [], {}))


def split_safetensors(raw: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def mutate_safetensors(data: st.DataObject, raw: bytes) -> bytes:
    """A safetensors file with a header field mutated (a tensor's dtype, shape or offsets, a field
    dropped or added, the metadata's values or format tag, the header's length), then damaged."""
    header, body = split_safetensors(raw)
    names = sorted(k for k in header if k != "__metadata__")
    field = data.draw(st.sampled_from(("none", "none", "dtype", "shape", "offsets", "drop", "add", "meta", "format", "length", "image_shape")), label="st field")
    name = data.draw(st.sampled_from(names))
    if field == "dtype":
        header[name]["dtype"] = data.draw(st.sampled_from(ST_DTYPES))
    elif field == "shape":
        header[name]["shape"] = data.draw(st.lists(ODD_JSON, max_size=3) | ODD_JSON)
    elif field == "offsets":
        header[name]["data_offsets"] = data.draw(st.lists(ODD_JSON, max_size=3) | ODD_JSON)
    elif field == "drop":
        del header[name][data.draw(st.sampled_from(("dtype", "shape", "data_offsets")))]
    elif field == "add":
        header[data.draw(st.sampled_from((name, "__metadata__", "other")))] = data.draw(JSON_VALUES)
    elif field == "meta":
        header["__metadata__"] = data.draw(st.dictionaries(st.sampled_from(("format", "step", "image_shape", "x")), JSON_VALUES, max_size=3) | JSON_VALUES)
    elif field == "format":
        header["__metadata__"]["format"] = data.draw(st.sampled_from(("vaelab", "other", "")))
    elif field == "image_shape":
        header["__metadata__"]["image_shape"] = data.draw(st.sampled_from(("1,8,8", "1,8", "0,8,8", "-1,8,8", "1,9,8", "3,8,8", "x", "", "1,8,8,8", "1,65536,65536", "1,8,100000000", "1e3,8,8")))
    text = json.dumps(header).encode()
    length = len(text) if field != "length" else data.draw(st.sampled_from((0, 1, len(text) - 1, len(text) + 1, 2**32, 2**64 - 1)))
    return damage(data, struct.pack("<Q", length) + text + body, header=8 + len(text))


@fuzz("safetensors")
@given(st.data())
def test_load_tensors_is_tensors_or_a_user_error(scratch, data):
    """`load_tensors` of a vaelab safetensors file with mutated header fields or damage: tensors
    and metadata, or a UserError; undamaged, the tensors and metadata saved."""
    rng = rng_of(data)
    tensors = {"w": torch.from_numpy(rng.random((2, 3), dtype=np.float32)), "b": torch.arange(4, dtype=torch.int64)}
    path = scratch / "t.safetensors"
    save_tensors(path, tensors, step=3, image_shape="1,8,8")
    raw = path.read_bytes()
    new = mutate_safetensors(data, raw)
    path.write_bytes(new)
    got = valid_or_user_error(load_tensors, path)
    if got is not None:
        assert all(isinstance(k, str) and torch.is_tensor(v) for k, v in got[0].items())
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in got[1].items())
    if new == raw:
        assert got[0].keys() == tensors.keys() and all(torch.equal(got[0][k], tensors[k]) for k in tensors)
        assert got[1] == {"format": "vaelab", "step": "3", "image_shape": "1,8,8"}


@fuzz("load_run")
@given(st.data())
def test_load_run_of_a_damaged_model_file_is_a_model_or_a_user_error(scratch, config_only_run, data):
    """`load_run` of a run folder whose model.safetensors is mutated as above, its image shape
    included: the model, or a UserError; undamaged, the weights saved."""
    run = fresh(scratch, "load-run")
    shutil.copy(config_only_run / "config.toml", run / "config.toml")
    raw = (config_only_run / "model.safetensors").read_bytes()
    new = mutate_safetensors(data, raw)
    (run / "model.safetensors").write_bytes(new)
    got = valid_or_user_error(load_run, run, device="cpu")
    if new == raw:
        saved = load_tensors(config_only_run / "model.safetensors")[0]
        assert all(torch.equal(v, saved[k]) for k, v in got[1].state_dict().items())


STATE_KEYS = ("optim.x", "optim.0", "optim.0.exp_avg.more", "optim.99.exp_avg", "optim.-1.step", "optim.a.step", "model.x", "extra.x", "rng.cuda", "step", "rng.cpu")


def mutate_state(data: st.DataObject, raw: bytes) -> bytes:
    """A training state with a tensor renamed (to a key resume parses: optim.<i>.<name>, model.*,
    step, rng.cpu), or its header fields mutated as above."""
    if data.draw(st.booleans(), label="rename"):
        header, body = split_safetensors(raw)
        name = data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
        header[data.draw(st.sampled_from(STATE_KEYS))] = header.pop(name)
        text = json.dumps(header).encode()
        raw = struct.pack("<Q", len(text)) + text + body
    return mutate_safetensors(data, raw)


def stepped(cfg: Config) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A fresh model of `cfg` for 8×8 images and its Adam after one step (so it holds moments)."""
    model = build_model(cfg, (1, 8, 8))
    optimizer = make_optimizer(model, 1e-3)
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture(scope="module")
def state_run(tmp_path_factory, config_only_run) -> Path:
    """The tiny run with a training state (step 3) beside its model."""
    d = tmp_path_factory.mktemp("fuzz-state") / "run"
    shutil.copytree(config_only_run, d)
    save_checkpoint(d, *stepped(read_run_config(d)), 3, (1, 8, 8))
    return d


@fuzz("load_state")
@given(st.data())
def test_load_state_of_a_damaged_training_state_is_a_step_or_a_user_error(scratch, state_run, data):
    """`load_state` (resume) of a state.safetensors with a tensor renamed or header fields mutated:
    the step, with the weights, the optimizer and the RNG restored, or a UserError; undamaged, the
    step saved. The optimizer then takes a step (a state it cannot use must have been refused)."""
    run = prepare_out(fresh(scratch, "load-state"), "run")  # the marker: what makes it a run folder
    shutil.copy(state_run / "config.toml", run / "config.toml")
    raw = (state_run / "state.safetensors").read_bytes()
    new = mutate_state(data, raw)
    (run / "state.safetensors").write_bytes(new)
    model, optimizer = stepped(read_run_config(run))
    with torch.random.fork_rng():
        step = valid_or_user_error(load_state, run, optimizer, model)
        if step is not None:
            optimizer.zero_grad()
            sum(p.sum() for p in model.parameters()).backward()
            optimizer.step()
    if new == raw:
        assert step == 3


# ---------------------------------------------------------------------------------------------
# chain.csv and sweep.csv, as resume and the report read them.


CELLS = st.sampled_from(("", "x", "nan", "inf", "-inf", "1e400", "1.5", "-3", "3.0", '"a,b"', '"', '"\n"', "[1,2]", "\x00", "1_000", "\u0663", " 7 ", "1" * 5000))


def mutate_csv(data: st.DataObject, text: str) -> bytes:
    """CSV text with a cell replaced, dropped or added, the header changed, the text cut, or bytes
    that are not UTF-8."""
    lines = text.splitlines()
    kind = data.draw(st.sampled_from(("none", "none", "cell", "drop", "add", "header", "cut", "bytes", "blank")), label="csv")
    i = data.draw(st.integers(0, len(lines) - 1))
    cells = lines[i].split(",")
    j = data.draw(st.integers(0, len(cells) - 1))
    if kind == "cell":
        cells[j] = data.draw(CELLS)
    elif kind == "drop":
        del cells[j]
    elif kind == "add":
        cells.insert(j, data.draw(CELLS))
    elif kind == "header":
        gone = data.draw(st.sampled_from(lines[0].split(",")))
        lines[0] = ",".join(c for c in lines[0].split(",") if c != gone)
    elif kind == "blank":
        lines.insert(i, "")
    lines[i] = ",".join(cells) if kind in ("cell", "drop", "add") else lines[i]
    out = "\n".join(lines) + "\n"
    if kind == "cut":
        out = out[: data.draw(st.integers(0, len(out)))]
    raw = out.encode()
    return raw[:5] + b"\xff" + raw[5:] if kind == "bytes" else raw


def same_rows(a: list[dict], b: list[dict]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN equals NaN here


@fuzz("csv")
@given(st.data())
def test_chain_table_is_rows_or_a_user_error(scratch, data):
    """`chain.read_table` (resume, the report) of a damaged chain.csv: rows with integer seed,
    generation and n_train and numbers elsewhere, or a UserError; undamaged, the rows written."""
    rng = rng_of(data)
    rows = [{"seed": s, "generation": g, "n_train": 64, **{c: float(rng.random()) for c in chain.COLUMNS[3:]}} for s in range(2) for g in range(data.draw(st.integers(1, 3)))]
    rows[0]["neg_elbo"] = math.nan
    path = scratch / "chain.csv"
    write_csv(path, rows, chain.COLUMNS)
    text = path.read_text()
    raw = mutate_csv(data, text)
    path.write_bytes(raw)
    got = valid_or_user_error(chain.read_table, path)
    if got is not None:
        for r in got:
            assert all(type(r[k]) is int for k in ("seed", "generation", "n_train"))
            assert all(type(v) is float for k, v in r.items() if k not in ("seed", "generation", "n_train"))
    if raw == text.encode():
        assert same_rows(got, rows)


@fuzz("csv")
@given(st.data())
def test_sweep_table_is_rows_or_a_user_error(scratch, data):
    """`sweep_table.read_table` (resume, the report) of a damaged sweep.csv:
    rows with a cell name, an integer seed, the swept values parsed back and numbers elsewhere, or
    a UserError; undamaged, the rows written."""
    rng = rng_of(data)
    axes = [Axis("loss.beta", (0.5, 2)), Axis("data.name", ("points", "squares"))]
    cols = ["cell", "seed", "loss.beta", "data.name", "pmi", "pmi_untrained", "train_loss", "train_seconds"]
    rows = [
        {"cell": f"cell-beta={b},name={n}", "seed": 0, "loss.beta": b, "data.name": n, **{c: float(rng.random()) for c in cols[4:]}}
        for b in axes[0].values
        for n in axes[1].values
    ]
    path = scratch / "sweep.csv"
    write_csv(path, rows, cols)
    text = path.read_text()
    raw = mutate_csv(data, text)
    path.write_bytes(raw)
    got = valid_or_user_error(sweep_table.read_table, path, [a.key for a in axes])
    if got is not None:
        for r in got:
            assert type(r["cell"]) is str and type(r["seed"]) is int
            assert all(type(r[k]) is float for k in cols[4:] if k in r)
    if raw == text.encode():
        assert same_rows(got, rows)


# ---------------------------------------------------------------------------------------------
# Regressions: the failures the fuzzing and a probe found, each as a user meets it.


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny finished run (fc1, 4 steps, its last checkpoint at step 4)."""
    d = tmp_path_factory.mktemp("fuzz-cli") / "run"
    r = cli("train", "--set", "model.name=fc1", "--set", "data.n=32", "--set", "train.steps=4", "--set", "train.checkpoint_every=2", "--set", "sample.n=4", "--out", d, "--quiet")
    assert r.rc == 0, r.err
    return d


def copy_with(src: Path, dst: Path, name: str, edit) -> Path:
    """A copy of the run `src` at `dst` with file `name`'s text passed through `edit`."""
    shutil.copytree(src, dst)
    (dst / name).write_text(edit((dst / name).read_text()))
    return dst


def with_line(index: int, text: str):
    """An edit of metrics.jsonl: line `index` replaced by `text`."""

    def edit(old: str) -> str:
        lines = old.splitlines()
        lines[index] = text
        return "\n".join(lines) + "\n"

    return edit


@pytest.mark.parametrize("verb", ["report", "resume"])
@pytest.mark.parametrize("line", ["[1, 2]", "3"])
def test_metrics_line_that_is_not_an_object_is_one_line(tmp_path, trained, verb, line):
    run = copy_with(trained, tmp_path / "run", "metrics.jsonl", with_line(1, line))
    args = ("report", run) if verb == "report" else ("train", "--resume", run, "--quiet")
    user_error(cli(*args), "metrics.jsonl line 2 is not a vaelab metrics row")


@pytest.mark.parametrize("verb", ["report", "resume"])
def test_metrics_row_with_a_time_that_is_not_a_number_is_one_line(tmp_path, trained, verb):
    def edit(old: str) -> str:
        lines = old.splitlines()
        lines[-1] = json.dumps({**json.loads(lines[-1]), "time": "zz"})
        return "\n".join(lines) + "\n"

    run = copy_with(trained, tmp_path / "run", "metrics.jsonl", edit)
    args = ("report", run) if verb == "report" else ("train", "--resume", run, "--quiet")
    user_error(cli(*args), "metrics.jsonl line 4 is not a vaelab metrics row")


def test_a_torn_last_metrics_line_is_dropped(tmp_path, trained):
    run = copy_with(trained, tmp_path / "run", "metrics.jsonl", lambda old: old + '{"step": 4, "lo')
    r = cli("report", run)
    assert r.rc == 0 and r.err == "", r.err
    assert [row["step"] for row in read_metrics(run / "metrics.jsonl")] == [0, 1, 2, 3]


def test_run_config_with_a_section_that_is_not_a_table_is_one_line(tmp_path, trained):
    def edit(old: str) -> str:
        raw = tomllib.loads(old)
        raw["model"] = "x"
        return tomli_w.dumps(raw)

    run = copy_with(trained, tmp_path / "run", "config.toml", edit)
    user_error(cli("report", run), "config.toml", "'model' must be a table")


@pytest.mark.parametrize("value, metrics", [("[pmi]", ("pmi",)), ("[pmi, neg_elbo]", ("pmi", "neg_elbo")), ('["pmi", "neg_elbo"]', ("pmi", "neg_elbo")), ("pmi,neg_elbo", ("pmi", "neg_elbo"))])
def test_set_takes_a_list_of_words_in_brackets(value, metrics):
    assert load_config(overrides=[f"sweep.metrics={value}"]).sweep.metrics == metrics


def test_set_sweep_metrics_in_brackets_through_the_cli(tmp_path):
    """`--set sweep.metrics=[pmi]` was refused ("got '[pmi]'"); now the sweep takes it and goes on
    to the next check (an empty --grid entry stops it before anything is written)."""
    r = cli("sweep", "--set", "sweep.metrics=[pmi]", "--grid", "loss.beta=", "--out", tmp_path / "s")
    user_error(r, "--grid expects key=")


def test_data_path_that_is_a_directory_says_so(tmp_path):
    r = cli("train", "--set", "data.name=array", "--set", f"data.path={tmp_path}", "--out", tmp_path / "run")
    user_error(r, f"data.path {tmp_path} is a directory, not a file")


def test_config_that_is_a_directory_says_so(tmp_path):
    r = cli("train", "--config", tmp_path, "--out", tmp_path / "run")
    user_error(r, f"--config {tmp_path} is a directory")


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_reconstruct_input_errors_name_the_flag(tmp_path, trained, kind):
    path = tmp_path if kind == "directory" else tmp_path / "none.npy"
    r = cli("reconstruct", trained, "--input", path, "--out", tmp_path / "r.png")
    line = user_error(r, f"--input {path}", "is a directory" if kind == "directory" else "does not exist")
    assert "data.path" not in line


def test_set_value_with_a_newline_and_more_toml_is_refused(tmp_path):
    r = cli("train", "--set", "train.lr=1\n[evil]\nx=1", "--out", tmp_path / "run")
    user_error(r, "--set train.lr", "one value")
    assert not (tmp_path / "run").exists()


def test_set_bare_strings_are_still_taken():
    assert load_config(overrides=["data.name=squares", "data.path=/a b/c.npz"]).data.path == "/a b/c.npz"


def test_npz_entry_that_is_not_a_npy_array_is_one_line(tmp_path):
    """Found by fuzzing: NumPy hands back the bytes of a .npz entry that is not a .npy file (an
    empty one here), and the array dataset took them for an array."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("images.npy", b"")
    (tmp_path / "a.npz").write_bytes(buf.getvalue())
    r = cli("train", "--set", "data.name=array", "--set", f"data.path={tmp_path / 'a.npz'}", "--out", tmp_path / "run")
    user_error(r, "entry 'images' is not a .npy array")


def test_png_whose_header_claims_a_huge_image_is_one_line(tmp_path):
    """Found by fuzzing: Pillow's decompression-bomb error escaped the PNG reader."""
    raw = png_bytes(Image.new("L", (2, 2)))
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "a.png").write_bytes(chunk_fixed(raw, 8, struct.pack(">I", 2**31 - 1) + raw[20:29]))
    r = cli("train", "--set", "data.name=images", "--set", f"data.path={tmp_path / 'png'}", "--out", tmp_path / "run")
    user_error(r, "a.png: not a readable PNG", "decompression bomb")


@pytest.mark.parametrize("spec", ["0:1:1e-320", "-1e308:1e308:1", "0:" + "1" * 400 + ":1"])
def test_grid_range_beyond_a_float_is_one_line(tmp_path, spec):
    """Found by fuzzing: a range whose length overflows a float (a tiny step, far bounds, an
    integer bound of 400 digits) raised OverflowError."""
    user_error(cli("sweep", "--grid", f"loss.beta={spec}", "--out", tmp_path / "s"), "--grid loss.beta=")


def test_grid_entry_with_a_newline_is_one_line(tmp_path):
    """Found by fuzzing: the entry was echoed as written, its newline splitting the message."""
    user_error(cli("sweep", "--grid", "loss.beta=0,0\n", "--out", tmp_path / "s"), "--grid 'loss.beta=0,0\\n'", "listed twice")


def test_config_key_with_a_newline_is_one_line(tmp_path):
    (tmp_path / "c.toml").write_text('[loss]\n"a\\nb" = 1\n')
    user_error(cli("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "run"), "unknown config key 'loss.a\\nb'")


def test_metrics_line_that_is_not_utf8_is_one_line(tmp_path, trained):
    """Found by fuzzing: a byte that is not UTF-8 anywhere in metrics.jsonl raised UnicodeDecodeError."""
    run = shutil.copytree(trained, tmp_path / "run")
    lines = (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(lines[0] + b'{"step": \xff}\n' + b"".join(lines[2:]))
    user_error(cli("report", run), "metrics.jsonl line 2 is not a vaelab metrics row")


def study_folder(d: Path, table: str, rows: list[dict], columns: list[str], **overrides) -> Path:
    """A chain or sweep folder as a vaelab before folder markers left it: config.toml and its table."""
    d.mkdir()
    write_toml(d / "config.toml", load_config(overrides=overrides).to_dict())
    write_csv(d / table, rows, columns)
    return d


def test_chain_csv_with_a_cell_of_the_wrong_kind_is_one_line(tmp_path):
    """Found by fuzzing: `vaelab report` of a chain.csv with a seed that is not an integer raised ValueError."""
    rows = [{"seed": "x", "generation": 0, "n_train": 64, "variability": 1.0}]
    d = study_folder(tmp_path / "chain", "chain.csv", rows, list(chain.COLUMNS))
    user_error(cli("report", d), "chain.csv line 2: 'seed' must be an integer, got 'x'")


def test_sweep_csv_with_a_short_row_is_one_line(tmp_path):
    """Found by fuzzing: `vaelab report` of a sweep.csv row with fewer cells than its header raised TypeError."""
    d = study_folder(tmp_path / "sweep", "sweep.csv", [{"cell": "cell-beta=1", "seed": 0, "loss.beta": 1.0}], ["cell", "seed", "loss.beta", "pmi"], **{"sweep.grid": ["loss.beta=1"]})
    (d / "sweep.csv").write_text("cell,seed,loss.beta,pmi\ncell-beta=1,0\n")
    user_error(cli("report", d), "sweep.csv line 2 has 2 cells, its header 4")


def test_model_file_whose_header_claims_a_huge_image_is_refused_before_allocating(tmp_path, trained):
    """A header's image shape is checked against the weights on the meta device first: (1, 65536,
    65536) would otherwise build a dense layer of terabytes before finding the mismatch."""
    run = shutil.copytree(trained, tmp_path / "run")
    tensors, meta = load_tensors(run / "model.safetensors")
    save_tensors(run / "model.safetensors", tensors, **{**meta, "image_shape": "1,65536,65536"})
    user_error(cli("sample", run, "--out", tmp_path / "s.png"), "model.safetensors does not match the model")



def test_chain_curves_of_values_near_the_float_maximum_are_drawn():
    """Found by exploring the reports: a value near the float maximum in chain.csv broke
    matplotlib's margins and ticks (ValueError) in `vaelab report`; it is drawn as a gap now."""
    rows = [{"seed": s, "generation": g, "variability": 1e308} for s in range(2) for g in range(2)]
    assert curves_figure({"chain": rows}, [("variability", "variability")], cols=1).startswith(b"\x89PNG")


def test_sweep_curves_of_an_infinite_swept_value_are_drawn():
    """Found by exploring the reports: a swept value of inf put the axis on a log scale it could not
    draw, and a metric of 1e308 broke its ticks (ValueError)."""
    rows = [{"cell": f"cell-beta={b}", "seed": 0, "loss.beta": b, "pmi": 1e308} for b in (math.inf, 1.0)]
    assert sweep_line_figure(rows, "loss.beta", ["pmi"]).startswith(b"\x89PNG")


def resave_state(run: Path, edit) -> None:
    """Rewrite the run's state.safetensors with its tensors passed through `edit`."""
    tensors, meta = load_tensors(run / "state.safetensors")
    save_tensors(run / "state.safetensors", edit(dict(tensors)), **meta)


def test_training_state_with_a_malformed_optimizer_key_is_one_line(tmp_path, trained):
    """Found by fuzzing: resume split optim.<index>.<name> keys without checking them (ValueError)."""
    run = shutil.copytree(trained, tmp_path / "run")
    resave_state(run, lambda t: {**{k: v for k, v in t.items() if k != "optim.0.step"}, "optim.a.step": t["optim.0.step"]})
    user_error(cli("train", "--resume", run, "--quiet"), "state.safetensors is a damaged training state", "'optim.a.step'")


def test_training_state_missing_a_moment_is_refused_before_training(tmp_path, trained):
    """Found by fuzzing: a state whose first parameter lacks Adam's exp_avg loaded, and the next
    optimizer step raised KeyError."""
    run = shutil.copytree(trained, tmp_path / "run")
    resave_state(run, lambda t: {k: v for k, v in t.items() if k != "optim.0.exp_avg"})
    _, model = load_run(run, device="cpu")
    with torch.random.fork_rng(), pytest.raises(UserError, match="damaged training state"):
        load_state(run, make_optimizer(model, 1e-3), model)


def test_evaluation_json_that_is_not_an_object_leaves_the_report_without_it(tmp_path, trained):
    """Found by fuzzing: `vaelab report` of a run whose evaluation.json is a JSON list raised
    AttributeError; a damaged evaluation.json is now left out, as a missing one is."""
    run = shutil.copytree(trained, tmp_path / "run")
    (run / "evaluation.json").write_text("[1, 2]")
    r = cli("report", run)
    assert r.rc == 0 and "Traceback" not in r.err, r.err
    assert "<h3>Evaluation</h3>" not in (run / "report.html").read_text()
