"""Suite-wide settings.

Under pytest-xdist (`make test` runs one worker per core) each worker computes on one thread, and
the processes the tests start inherit OMP_NUM_THREADS=1: two workers of two threads each on a
2-core machine fight over the cores and run several times slower (the CLI modules already pinned
one thread for the same reason, see clihelp.one_thread)."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
