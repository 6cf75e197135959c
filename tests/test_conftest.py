"""The suite's own scheduling (tests/conftest.py) does what it says."""

import pytest

from conftest import HEAVY_FIRST, SPREAD


def test_a_file_s_tests_share_one_worker_under_make_test(request):
    # `make test` (--dist loadgroup) keeps a file's tests on one worker, so its module fixtures are
    # built once. pytest-xdist marks that by suffixing each test's id with its group; from pytest
    # 9.2 the suffix no longer takes (pytest-xdist issue #1386) and the tests silently go one by one
    # to both workers, each building every fixture: the suite took about a fifth longer.
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("runs under make test's --dist loadgroup only")
    assert request.node.nodeid.endswith("@test_conftest.py"), request.node.nodeid


def test_spread_files_are_listed_in_heavy_first_or_exist():
    from pathlib import Path

    here = Path(__file__).parent
    for name in (*HEAVY_FIRST, *SPREAD):
        assert (here / name).is_file(), name  # a renamed file would silently lose its place
