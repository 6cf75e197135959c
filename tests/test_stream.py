"""Streamed data (`data.stream`, vaelab.data.stream): images read from disk in chunks.

The files are written here; every expectation is the in-memory load of the same file.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab.data.stream as stream
from clihelp import cli, one_thread, user_error  # noqa: F401  (one_thread: a module fixture)
from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.data.stream import ImageStream
from vaelab.train import train


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 100 images of 8x8 (so a few hundred images make several chunks)."""
    monkeypatch.setattr(stream, "CHUNK_BYTES", 100 * 64 * 4)


def npy(tmp_path, n=1050, shape=(8, 8), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size=(n, *shape)).astype(dtype)
    path = tmp_path / "images.npy"
    np.save(path, a)
    return path, a


def data(path, stream="on", **more):
    return load_data(load_config(overrides={"data.name": "array", "data.path": str(path), "data.stream": stream, **more}).data)


def test_a_streamed_npy_reads_what_the_in_memory_load_holds(tmp_path, small_chunks):
    path, _ = npy(tmp_path)
    s, m = data(path, "on"), data(path, "off")
    assert isinstance(s.images, ImageStream) and isinstance(m.images, torch.Tensor)
    assert s.images.chunk == 100 and len(s) == 1050 and s.shape == m.shape == (1, 8, 8)
    assert torch.equal(s.images[:], m.images)
    assert torch.equal(s.images[130:470], m.images[130:470])
    idx = torch.tensor([1049, 0, 99, 100, 555, 7, 1000, 7])  # out of order, across chunks, repeated
    assert torch.equal(s.images[idx], m.images[idx])
    mask = torch.zeros(1050, dtype=torch.bool)
    mask[[3, 250, 1049]] = True  # a boolean mask selects, it is no list of indices 0 and 1
    assert torch.equal(s.images[mask], m.images[mask]) and len(s.images[mask]) == 3
    assert torch.equal(torch.cat(list(s.images.split(300))), m.images)
    assert torch.equal(s.images[-1], m.images[-1])


def test_an_nhwc_float_file_streams_like_its_in_memory_load(tmp_path, small_chunks):
    path, _ = npy(tmp_path, n=230, shape=(6, 6, 3), dtype=np.float32)
    s, m = data(path, "on"), data(path, "off")
    assert s.shape == m.shape == (3, 6, 6)
    assert torch.equal(s.images[torch.arange(230).flip(0)], m.images.flip(0))


def test_an_epoch_holds_every_image_once_chunk_by_chunk(tmp_path, small_chunks):
    path, _ = npy(tmp_path)
    s = data(path).images
    order = s.epoch_order(seed=3, epoch=2)
    assert sorted(order.tolist()) == list(range(1050))
    blocks = [order[i : i + 100] for i in range(0, 1050, 100)]
    assert all(len(set((b // 100).tolist())) <= 2 for b in blocks)  # each batch of 100 touches at most two chunks
    runs = (order // 100).unique_consecutive()
    assert sorted(runs.tolist()) == list(range(11))  # each chunk is read in one stretch
    assert torch.equal(order, s.epoch_order(3, 2)) and not torch.equal(order, s.epoch_order(3, 1))


def test_a_streamed_epoch_is_the_in_memory_epoch_as_a_multiset(tmp_path, small_chunks):
    path, _ = npy(tmp_path, n=550)
    s, m = data(path, "on"), data(path, "off")
    b = 64
    order = s.images.epoch_order(0, 0)
    streamed = [s.images[order[i : i + b]] for i in range(0, len(s), b)]
    full = torch.randperm(len(m), generator=torch.Generator().manual_seed(0))  # the in-memory shuffle
    memory = [m.images[full][i : i + b] for i in range(0, len(m), b)]
    as_rows = lambda batches: Counter(tuple(r.flatten().tolist()) for r in torch.cat(batches))  # noqa: E731
    assert as_rows(streamed) == as_rows(memory)
    assert [len(x) for x in streamed] == [len(x) for x in memory]


def test_training_on_streamed_data_learns_and_is_deterministic(tmp_path, small_chunks):
    rng = np.random.default_rng(2)
    patterns = rng.integers(0, 2, size=(4, 8, 8)) * 255  # four binary 8x8 images, drawn at random
    path = tmp_path / "patterns.npy"
    np.save(path, patterns[rng.integers(0, 4, size=600)].astype(np.uint8))
    sets = {"model.name": "fc1", "model.hidden": [32], "train.epochs": 5, "train.batch_size": 50, "train.lr": 0.01}
    # the two in-process runs on the CPU (bitwise equal losses); the CLI run below on `auto`
    on_cpu = {"data.name": "array", "data.path": str(path), "data.stream": "on", "train.device": "cpu", **sets}
    runs = [train(load_config(overrides=on_cpu), quiet=True) for _ in range(2)]
    assert isinstance(runs[0].data.images, ImageStream)
    losses = [r["loss"] for r in runs[0].history]
    assert sum(losses[-12:]) / 12 < 0.5 * sum(losses[:12]) / 12  # it learns the four patterns
    assert losses == [r["loss"] for r in runs[1].history]  # bitwise the same under the seed
    # streamed through the CLI into a run folder, with its pictures and report
    r = cli("train", *(a for k, v in {**sets, "data.name": "array", "data.path": str(path), "data.stream": "on"}.items() for a in ("--set", f"{k}={v}")),
            "--out", tmp_path / "run", "--quiet")  # fmt: skip
    assert r.rc == 0, r.err
    assert (tmp_path / "run" / "reconstructions.png").is_file() and (tmp_path / "run" / "report.html").is_file()


def test_a_file_that_fits_in_one_chunk_trains_as_it_would_in_memory(tmp_path):
    # one chunk: the chunk order is trivial and the within-chunk shuffle is the in-memory one
    path, _ = npy(tmp_path, n=300)
    sets = {"data.name": "array", "data.path": str(path), "model.name": "fc1", "model.hidden": [16], "train.steps": 30, "train.batch_size": 32}
    sets["train.device"] = "cpu"  # the two runs' losses are compared bitwise
    on = train(load_config(overrides={**sets, "data.stream": "on"}), quiet=True)
    off = train(load_config(overrides={**sets, "data.stream": "off"}), quiet=True)
    assert [r["loss"] for r in on.history] == [r["loss"] for r in off.history]


def test_auto_streams_only_data_larger_than_a_quarter_of_memory(tmp_path, monkeypatch):
    path, _ = npy(tmp_path, n=100)
    assert isinstance(data(path, "auto").images, torch.Tensor)
    monkeypatch.setattr(stream, "memory_bytes", lambda: 4 * 100 * 64 * 4 - 4)  # the file's float32 images: just over a quarter
    assert isinstance(data(path, "auto").images, ImageStream)
    assert isinstance(data(path, "off").images, torch.Tensor)


def test_a_png_folder_streams_its_files(tmp_path, small_chunks):
    folder = tmp_path / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(230):
        Image.fromarray(rng.integers(0, 256, size=(8, 8)).astype(np.uint8)).save(folder / f"{i:04d}.png")
    s = load_data(load_config(overrides={"data.name": "images", "data.path": str(folder), "data.stream": "on"}).data)
    m = load_data(load_config(overrides={"data.name": "images", "data.path": str(folder), "data.stream": "off"}).data)
    assert isinstance(s.images, ImageStream) and s.images.chunk == 100
    idx = torch.tensor([229, 3, 150, 99, 100])
    assert torch.equal(s.images[idx], m.images[idx]) and torch.equal(s.images[:], m.images)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(folder / "0150.png")  # a bad file is found when its chunk is read
    s = load_data(load_config(overrides={"data.name": "images", "data.path": str(folder), "data.stream": "on"}).data)
    with pytest.raises(Exception, match="0150.png: shape"):
        s.images[torch.tensor([150])]


def test_bad_streaming_requests_are_one_line_errors(tmp_path):
    path, a = npy(tmp_path, n=50)
    np.savez(tmp_path / "images.npz", images=a)
    r = cli("train", "--set", "data.name=array", "--set", f"data.path={tmp_path / 'images.npz'}", "--set", "data.stream=on", "--out", tmp_path / "r1")
    user_error(r, "data.stream=on", "numpy.save")
    r = cli("train", "--set", "data.name=array", "--set", f"data.path={path}", "--set", "data.stream=on", "--set", "train.debias=true",
            "--set", "model.name=fc1", "--out", tmp_path / "r2")  # fmt: skip
    user_error(r, "train.debias", "data.stream")
    r = cli("train", "--set", "data.name=array", "--set", f"data.path={path}", "--set", "data.stream=sometimes", "--out", tmp_path / "r3")
    user_error(r, "data.stream", "auto")
    np.save(tmp_path / "fortran.npy", np.asfortranarray(a))
    r = cli("train", "--set", "data.name=array", "--set", f"data.path={tmp_path / 'fortran.npy'}", "--set", "data.stream=on", "--out", tmp_path / "r4")
    user_error(r, "Fortran order", "ascontiguousarray")
    assert len(data(tmp_path / "fortran.npy", stream="auto").images) == 50  # auto: small enough, loaded whole


def test_a_subset_of_a_file_is_the_same_images_whether_cut_before_or_after_loading(tmp_path):
    # data.n < N: array cuts the raw rows first (only those become float32), as take would after
    from vaelab.data.registry import take

    path, _ = npy(tmp_path, n=400)
    np.savez(tmp_path / "both.npz", images=np.load(path), labels=np.arange(400) % 7)
    for file in (path, tmp_path / "both.npz"):
        whole = data(file, "off")
        part = data(file, "off", **{"data.n": 123, "data.seed": 5})
        ref = take(whole, 123, 5, str(file))
        assert torch.equal(part.images, ref.images) and len(part) == 123
        assert (part.labels is None) == (whole.labels is None)
        if part.labels is not None:
            assert torch.equal(part.labels, ref.labels)
    streamed = data(path, "on", **{"data.n": 123, "data.seed": 5})  # a streamed file's subset is taken the same way
    assert torch.equal(streamed.images, data(path, "off", **{"data.n": 123, "data.seed": 5}).images)
