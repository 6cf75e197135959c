"""Where a study's independent tasks run: here, one after another (`local`), or as Ray tasks on a
local Ray runtime or a cluster (`ray`).

A task is a module-level function and its arguments (a sweep's group of cells, a chain's seed). It
writes its results into the study folder itself, atomically, and returns a small record (the rows
of the study's table); the driver merges those records as they arrive. The Ray backend therefore
needs the study folder on a filesystem every worker sees (one machine, NFS, …), like Ray Tune's
`storage_path`; each task checks that it does and says so when it does not.

A task whose worker dies (killed, out of memory, node lost) is run again, up to `RETRIES` times;
because finished work is on disk, the retry only redoes the unfinished part. An exception raised
by the task itself is not retried: it is the same on every try, and the driver re-raises it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from vaelab.errors import UserError

RETRIES = 3
"""how many times a task whose worker died is started again"""


@dataclass(frozen=True)
class Backend:
    """How to run a list of independent tasks."""

    run: Callable[..., None]
    """run(fn, tasks, done, address=None, gpus=0): call fn(*args) for each args in tasks, and
    done(i, result) in this process as each task i finishes"""
    description: str


def _local(fn: Callable, tasks: Sequence[tuple], done: Callable[[int, Any], None], address: str | None = None, gpus: float = 0) -> None:
    for i, args in enumerate(tasks):
        done(i, fn(*args))


def _ray(fn: Callable, tasks: Sequence[tuple], done: Callable[[int, Any], None], address: str | None = None, gpus: float = 0) -> None:
    import ray
    from ray.exceptions import RayError, RayTaskError

    started = not ray.is_initialized()
    if started:
        where = address or os.environ.get("RAY_ADDRESS")
        try:
            # a runtime started here runs its workers at normal priority: Ray's default (nice 15)
            # lets every other process on a shared machine starve the training tasks
            system = None if where else {"worker_niceness": 0}
            ray.init(address=where, include_dashboard=False, log_to_driver=True, configure_logging=False, _system_config=system)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot join the Ray cluster at {where}: {str(e).splitlines()[0]}") from None
    try:
        if gpus and not ray.cluster_resources().get("GPU"):
            gpus = 0  # train.device = auto on a cluster without GPUs
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)(fn)
        pending = {remote.remote(*args): i for i, args in enumerate(tasks)}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                raise (cause or e) from None  # the task's own exception (a UserError stays one line)
            except RayError as e:
                raise UserError(
                    f"task {i + 1} of {len(tasks)} failed on Ray {RETRIES + 1} times ({type(e).__name__}); "
                    "finished work is kept: rerun with --resume"
                ) from None
            done(i, result)
    finally:
        if started:
            ray.shutdown()


BACKENDS: dict[str, Backend] = {
    "local": Backend(_local, "in this process, one task after another"),
    "ray": Backend(_ray, "Ray tasks: a local Ray runtime, or the cluster at --address / RAY_ADDRESS"),
}


def check_backend(backend: str, address: str | None) -> None:
    """The backend exists and can run here (before a study writes anything)."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if address and backend != "ray":
        raise UserError("--address joins a Ray cluster: pass --backend ray with it")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--backend ray needs Ray: pip install 'vaelab[ray]'") from None
        where = address or os.environ.get("RAY_ADDRESS")
        if where and not ray.is_initialized():
            _check_reachable(where)


def _check_reachable(address: str) -> None:
    """A cluster address of the form [ray://]host:port answers on its port (Ray itself waits
    minutes on a wrong one); "auto" and other forms are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}): check --address / RAY_ADDRESS, or leave both unset for a local Ray runtime") from None


def run_tasks(
    fn: Callable, tasks: Sequence[tuple], done: Callable[[int, Any], None], *, backend: str = "local", address: str | None = None, gpus: float = 0
) -> None:
    """Run fn(*args) for each args in `tasks` on `backend`; done(i, result) is called here as task i finishes.

    Arguments:
        fn: a module-level function (Ray ships it to the workers by reference).
        tasks: the arguments of each call.
        done: called in this process with each task's index and return value, in finishing order.
        backend: a name in BACKENDS.
        address: a Ray cluster to join (`ray` only; else RAY_ADDRESS, else a local runtime).
        gpus: GPUs per task when the cluster has any (`ray` only).
    """
    check_backend(backend, address)
    BACKENDS[backend].run(fn, tasks, done, address=address, gpus=gpus)


def task_gpus(device: str) -> float:
    """GPUs a training task asks of Ray for `train.device`: one unless it trains on the CPU.

    Ray gives each task its GPU as the only one the task sees (cuda:0), so a fixed cuda:N is an error."""
    if device.startswith("cuda:"):
        raise UserError(f"train.device={device} with --backend ray: Ray assigns each task its GPU, use train.device=cuda or auto")
    return 0 if device == "cpu" else 1


def check_visible(out: Path, marker: bytes) -> None:
    """In a task: the study folder `out` is the driver's (its config.toml holds `marker`), or a
    clear error naming this host; a Ray worker on another machine sees it only on a shared filesystem."""
    config = Path(out) / "config.toml"
    if not config.is_file() or config.read_bytes() != marker:
        raise UserError(f"the study folder {out} is not visible from the Ray worker on {socket.gethostname()}: put it on a filesystem every node shares")
