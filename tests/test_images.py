"""Image grids: every number of channels is written (grey, RGB, or channel by channel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli
from PIL import Image

from vaelab.images import make_grid


@pytest.mark.parametrize("c", [5, 7])
def test_images_of_other_channel_counts_are_shown_channel_by_channel(c):
    x = torch.rand(3, c, 4, 5)
    grid = make_grid(x, nrow=3, pad=0, scale=1)
    assert grid.shape == (4, 3 * c * 5)
    expected = np.concatenate([np.concatenate(list(img.numpy()), axis=1) for img in x], axis=1)  # (4, 3·c·5)
    assert np.array_equal(grid, (expected * 255).round().astype(np.uint8))


@pytest.mark.parametrize("c,shape", [(1, lambda h, w: (h, w)), (3, lambda h, w: (h, w, 3)), (2, lambda h, w: (h, w)), (4, lambda h, w: (h, w, 3))])
def test_grey_rgb_and_alpha_keep_their_meaning(c, shape):
    grid = make_grid(torch.rand(1, c, 6, 6), nrow=1, pad=0, scale=1)
    assert grid.shape == shape(6, 6)


def test_a_run_on_seven_channel_data_writes_its_pictures(tmp_path):
    path = tmp_path / "multispectral.npy"
    np.save(path, np.random.default_rng(0).random((64, 7, 8, 8), dtype=np.float32))
    d = tmp_path / "run"
    r = cli("train", "--preset", "chain-fc1", "--set", "data.name=array", "--set", "data.n=0", "--set", f"data.path={path}", "--set", "train.steps=3", "--set", "sample.n=4", "--out", d, "--quiet")
    assert r.rc == 0, r.err
    with Image.open(d / "samples.png") as im:
        assert im.mode == "L" and im.width > 7 * 8
    assert cli("sample", d, "--n", "2", "--out", tmp_path / "s.png").rc == 0
