"""Suite-wide settings.

Under pytest-xdist (`make test` runs one worker per core) each worker computes on one thread, and
the processes the tests start inherit OMP_NUM_THREADS=1: two workers of two threads each on a
2-core machine fight over the cores and run several times slower (the CLI modules already pinned
one thread for the same reason, see clihelp.one_thread)."""

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


HEAVY_FIRST = (
    "test_bench.py", "test_sweep.py", "test_ray.py", "test_demo.py", "test_chain.py", "test_cli.py",
    "test_models.py", "test_reproduce.py", "test_cvae.py", "test_disentanglement.py", "test_evaluate.py", "test_vqvae.py",
)  # fmt: skip
"""the slowest test files (tens of seconds to minutes each, on the 2-core machine), longest first"""


SPREAD = ("test_bench.py", "test_reproduce.py", "test_models.py", "test_readme.py")
"""test files whose tests share no costly module fixture: under `make test` each of their tests goes
to whichever worker is free; every other file's tests stay together on one worker, so a fixture
they share (a trained run, a sweep, a Ray runtime) is built once"""


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Run the slowest files first, and group each file's tests (SPREAD's aside) for pytest-xdist
    --dist loadgroup: a slow file collected last would leave one worker idle while the other
    finishes it; started first, the short files fill in around it."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the order within a file is kept
    for item in items:
        if item.path.name not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(item.path.name))


@pytest.fixture
def quick_feature_net(monkeypatch):
    """The LeNet feature net trained for 100 Adam steps instead of 800 (over 80 % of its time), for
    tests of a study's plumbing: the net's accuracy, cache and FID are tested in test_fid."""
    import functools

    from vaelab.metrics import featurenet

    monkeypatch.setattr(featurenet, "FeatureNetConfig", functools.partial(featurenet.FeatureNetConfig, steps=100))


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium for the browser tests (tests/browser.py), one per module; skipped,
    saying why, only on a machine without one."""
    import browser

    found = browser.find_browser()
    if found is None:
        pytest.skip(browser.MISSING)
    driver = browser.start(*found)
    yield driver
    driver.quit()
