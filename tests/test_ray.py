"""The Ray backend (`--backend ray`) against the local one.

One local Ray runtime (loopback, 2 worker CPUs) serves the whole module; the backend finds it
running and submits to it. Its workers train with one torch thread, as the in-process local runs do
here (clihelp.one_thread), so the two backends must write the same tables bit for bit: every column
but the wall-clock `train_seconds`. A worker killed with SIGKILL in the middle of a cell is started
again by Ray, and the sweep completes with the same table.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")  # installed by make test (the ray extra); maybe not on a bare GPU machine

from clihelp import cli, one_thread, user_error  # noqa: F401  (one_thread: a module fixture)
from vaelab.config import load_config
from vaelab.experiments.chain import run_chain
from vaelab.experiments.sweep import run_sweep

# On the CPU: the two backends' tables are compared bit for bit, which a GPU does not promise.
SWEEP = load_config(
    "bias-robustness",
    overrides=["train.steps=40", "data.n=256", "train.batch_size=32", "sweep.test_n=300", "sweep.metrics=[pmi,decoder_mse]", "model.hidden=[32,16]", "train.device=cpu"],
)
GRID = ["loss.beta=0.5,4", "data.mu=0,3"]
CELLS = ["cell-beta=0.5,mu=0", "cell-beta=0.5,mu=3", "cell-beta=4,mu=0", "cell-beta=4,mu=3"]
CHAIN = load_config(
    "chain-fc2",
    overrides=[
        "data.n=200", "train.steps=10", "chain.holdout=50", "chain.metric_samples=50", "sample.n=8", "chain.generations=2", "chain.seeds=2",
        "train.device=cpu",
    ],
)


@pytest.fixture(scope="module", autouse=True)
def runtime(tmp_path_factory):
    """A local Ray runtime with 2 worker CPUs; the workers inherit this environment."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; no token file in ~/.ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def table(path: Path, drop: str = "train_seconds") -> list[list[str]]:
    """A CSV's cells as text, without the wall-clock column."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, c in enumerate(rows[0]) if c != drop]
    return [[r[i] for i in keep] for r in rows]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    run_sweep(SWEEP, out, grid=GRID, quiet=True, vectorize="off")
    return out




@pytest.mark.parametrize("vectorize", ["off", "auto"])
def test_a_ray_sweep_writes_the_local_sweeps_table(local_sweep, tmp_path, vectorize):
    # off: four tasks, two at a time; auto: the four cells share a model, so one stacked task
    reference = local_sweep
    if vectorize == "auto":  # a stacked group rounds differently from cells trained alone
        reference = tmp_path / "local"
        run_sweep(SWEEP, reference, grid=GRID, quiet=True, vectorize=vectorize)
    out = tmp_path / "ray"
    rows = run_sweep(SWEEP, out, grid=GRID, quiet=True, vectorize=vectorize, backend="ray")
    assert [r["cell"] for r in rows] == CELLS
    assert table(out / "sweep.csv") == table(reference / "sweep.csv")
    for c in CELLS:
        assert (out / c / "model.safetensors").is_file() and (out / c / "row.json").is_file()
    assert (out / "report.html").is_file()


@pytest.fixture(scope="module")
def local_chain(tmp_path_factory):
    out = tmp_path_factory.mktemp("chain") / "local"
    run_chain(CHAIN, out, quiet=True)
    return out


@pytest.mark.parametrize("vectorize", ["off", "auto"])
def test_a_ray_chain_writes_the_local_chains_table(local_chain, tmp_path, vectorize):
    # off: a task per seed, two at a time; auto: one task, the seeds' VAEs stacked
    if vectorize == "off":  # seeds trained alone round (and draw noise) differently from a stacked group
        local_chain = tmp_path / "local"
        run_chain(CHAIN, local_chain, quiet=True, vectorize=vectorize)
    out = tmp_path / "ray"
    rows = run_chain(CHAIN, out, quiet=True, vectorize=vectorize, backend="ray")
    assert [(r["seed"], r["generation"]) for r in rows] == [(s, g) for s in (0, 1) for g in (0, 1, 2)]
    assert table(out / "chain.csv") == table(local_chain / "chain.csv")
    for s in (0, 1):  # each seed into its own folder
        assert (out / f"seed-{s}/gen-001/vae/model.safetensors").is_file()
        assert table(out / f"seed-{s}/chain.csv")[1:] == [r for r in table(local_chain / "chain.csv")[1:] if r[0] == str(s)]


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _task_pids(name: str) -> list[int]:
    """Workers of this process's Ray runtime now running a task of this function (Ray titles
    them `ray::NAME`; this process started the raylet, the raylet the workers). Other Ray
    runtimes on the machine are left alone."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "cmdline").read_bytes().split(b"\0")[0] == f"ray::{name}".encode():
                if _parent(_parent(int(p.name))) == os.getpid():
                    pids.append(int(p.name))
        except OSError:
            pass
    return pids


def test_a_worker_killed_mid_cell_is_retried_and_the_sweep_completes(local_sweep, tmp_path):
    out = tmp_path / "killed"
    slow = SWEEP.override({"train.steps": 400})  # long enough to be caught training
    reference = tmp_path / "reference"
    run_sweep(slow, reference, grid=GRID, quiet=True, vectorize="off")
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(rows=run_sweep(slow, out, grid=GRID, quiet=True, vectorize="off", backend="ray")))
    worker.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and worker.is_alive() and time.monotonic() < deadline:
        training = [c for c in CELLS if (out / c / "metrics.jsonl").is_file() and not (out / c / "row.json").exists()]
        pids = _task_pids("run_group")
        if training and pids:
            os.kill(pids[0], signal.SIGKILL)  # mid-cell: a cell has started logging and has no row yet
            killed = pids[0]
        time.sleep(0.01)
    worker.join(timeout=600)
    assert killed is not None, "no worker was caught mid-cell"
    assert not worker.is_alive() and [r["cell"] for r in done["rows"]] == CELLS
    assert table(out / "sweep.csv") == table(reference / "sweep.csv")  # the retried cell trained from its start
    for c in CELLS:
        assert _steps(out / c) == _steps(reference / c) and len(_steps(out / c)) == 400


def _steps(run: Path) -> list[dict]:
    """A run's logged steps, without the wall-clock fields."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "seconds")} for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_works_across_backends(local_sweep, local_chain, tmp_path):
    # a sweep begun locally, its last cell lost, finished on Ray
    sweep = tmp_path / "sweep"
    shutil.copytree(local_sweep, sweep)
    lost = CELLS[-1]
    lines = (sweep / "sweep.csv").read_text().splitlines(keepends=True)
    (sweep / "sweep.csv").write_text("".join(line for line in lines if not line.startswith(f'"{lost}"')))
    shutil.rmtree(sweep / lost)
    kept = {c: (sweep / c / "model.safetensors").stat().st_mtime_ns for c in CELLS[:-1]}
    run_sweep(SWEEP, sweep, grid=GRID, quiet=True, vectorize="off", backend="ray", resume=True)
    assert table(sweep / "sweep.csv") == table(local_sweep / "sweep.csv")
    assert {c: (sweep / c / "model.safetensors").stat().st_mtime_ns for c in CELLS[:-1]} == kept  # never recomputed
    # a chain run one generation on Ray, extended to two locally
    chain = tmp_path / "chain"
    run_chain(CHAIN.override({"chain.generations": 1}), chain, quiet=True, backend="ray")
    first = (chain / "seed-0/gen-000/vae/model.safetensors").stat().st_mtime_ns
    run_chain(CHAIN, chain, quiet=True, resume=True)
    assert table(chain / "chain.csv") == table(local_chain / "chain.csv")
    assert (chain / "seed-0/gen-000/vae/model.safetensors").stat().st_mtime_ns == first


def test_a_task_raising_a_user_error_reaches_the_driver_as_one(tmp_path):
    # a worker that cannot see the study folder (here: its config.toml changed under it) says so
    from vaelab.errors import UserError
    from vaelab.experiments.backends import run_tasks
    from vaelab.experiments.sweep import run_group

    (tmp_path / "config.toml").write_text("something else")
    with pytest.raises(UserError, match="not visible from the Ray worker"):
        run_tasks(run_group, [([], tmp_path, True, b"the driver's config")], lambda i, r: None, backend="ray")


def test_address_without_the_ray_backend_is_a_user_error(tmp_path):
    r = cli("sweep", "--preset", "bias-robustness", "--out", tmp_path / "s", "--address", "127.0.0.1:6379")
    user_error(r, "--address", "--backend ray")
    assert not (tmp_path / "s").exists()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_is_a_user_error_before_anything_is_written(tmp_path, monkeypatch):
    # the module's runtime is up; a fresh process would try to join the address, so test the check itself
    from vaelab.experiments import backends

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    port = _closed_port()
    r = cli("sweep", "--preset", "bias-robustness", "--out", tmp_path / "s", "--backend", "ray", "--address", f"127.0.0.1:{port}")
    user_error(r, f"127.0.0.1:{port}", "cannot reach the Ray cluster")
    assert not (tmp_path / "s").exists()
    monkeypatch.setenv("RAY_ADDRESS", f"ray://127.0.0.1:{port}")  # the environment's address is checked the same way
    r = cli("chain", "--preset", "chain-fc2", "--out", tmp_path / "c", "--backend", "ray")
    user_error(r, f"ray://127.0.0.1:{port}", "RAY_ADDRESS")
    assert not (tmp_path / "c").exists()
    backends.check_backend("ray", "auto")  # forms other than host:port are left to Ray


def test_a_runtime_the_backend_starts_runs_its_workers_at_normal_priority(tmp_path):
    # Ray's default worker niceness (15) let any other busy process starve a study's tasks
    import subprocess
    import sys

    (tmp_path / "nicetask.py").write_text("import os\n\ndef niceness():\n    return os.nice(0)\n")
    code = (
        "from nicetask import niceness\n"
        "from vaelab.experiments.backends import run_tasks\n"
        "out = {}\n"
        "run_tasks(niceness, [()], lambda i, r: out.update({i: r}), backend='ray')\n"
        "print('niceness', out[0])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == f"niceness {os.nice(0)}"  # the driver's own priority
