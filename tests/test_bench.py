"""The benchmarks in bench/ as smoke tests: each runs with --quick as a real process and must exit
0 with a `row:` line and a final `ratio:` line (their figures are not asserted); bench/all.py's
table is checked on made-up output, and once end to end on one quick benchmark. `--device`: all.py
forwards it only to the benchmarks that take it (train_throughput, sweep, chain), each of those
refuses a device this machine lacks with a usage error (no traceback). bench/gpu_check.py (`make
gpu-check`) is checked on made-up output, and its suite step for real on the `gpu` tests.

The processes run with OMP_NUM_THREADS=1: on a 2-core machine shared with other work, two
spinning OpenMP threads make these tiny runs several times slower. pythae_compare works with or
without bench/.venv-pythae (`make bench-env`); without it, it prints `ratio: n/a`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ALL = load("all")
RUNS = [(script, args) for script, args, _, _ in ALL.plan()]
SMOKED = [r for r in RUNS if r not in (("sweep.py", []), ("train_throughput.py", ["--model", "conv"]))]
"""the runs smoked one by one: sweep runs end to end through all.py below, and train_throughput's
conv run differs from its default run by the model alone (suite time on 2 cores)"""


def test_every_benchmark_is_planned():
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name not in ("all.py", "gpu_check.py")}
    assert {s for s, _ in RUNS} == scripts  # the drivers (all.py, make gpu-check's gpu_check.py) are no benchmarks
    assert ("train_throughput.py", ["--model", "conv"]) in RUNS


@pytest.mark.parametrize("script,args", SMOKED, ids=[ALL.run_name(s, a) for s, a in SMOKED])
def test_benchmark_quick(script, args):
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--quick"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("ratio: "), lines[-5:]
    assert ALL.ROW.match(lines[-2]), lines[-5:]


def test_all_leaves_the_gpu_sized_studies_out_of_a_cpu_run(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(ALL, "run_one", lambda script, args, *rest: ran.append(script) or ALL.Result(script, "", ""))
    monkeypatch.setattr(sys, "argv", ["all.py", "--only", "studies"])
    with pytest.raises(SystemExit, match="GPU benchmarks only"):
        ALL.main()
    assert ran == [] and "skipped on the CPU" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["all.py", "--only", "studies", "--quick"])
    ALL.main()
    assert ran == ["studies.py", "studies.py"]  # their smoke sizes run anywhere


def test_pythae_compare_without_its_environment(tmp_path, monkeypatch):
    module = load("pythae_compare")
    monkeypatch.setattr(module, "PYTHAE_PYTHON", tmp_path / "no-such-venv" / "bin" / "python")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["pythae_compare.py", "--quick"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.main()  # returns (exit 0) before training anything
    lines = out.getvalue().splitlines()
    assert "make bench-env" in lines[0]
    assert lines[-2] == "row: vaelab=n/a; reference=pythae env missing: make bench-env"
    assert lines[-1] == "ratio: n/a"


def test_all_table_from_made_up_output():
    ok = "\n".join([
        "fc1 576-256-8 VAE, 20000 points images", "  round  vaelab  hand", "      1   32000  31000",
        "row: vaelab=32,755 samples/s; reference=31,731 samples/s (hand-written loop)", "ratio: 1.03", "",
    ])  # fmt: skip
    r = ALL.parse_output(ALL.Result("train_throughput", "MLP | loop", "≥ 1.0"), ok, 0, "AMD EPYC, 2 cores")
    assert (r.vaelab, r.reference, r.ratio, r.machine, r.failed) == (
        "32,755 samples/s", "31,731 samples/s (hand-written loop)", "1.03", "AMD EPYC, 2 cores", False)  # fmt: skip

    gpu = "machine: NVIDIA H200\ntarget: >= 10\nrow: vaelab=1 samples/s; reference=2 samples/s\nratio: 0.50\n"
    g = ALL.parse_output(ALL.Result("sweep", "vectorized vs sequential", "≥ 1.5"), gpu, 0, "AMD EPYC, 2 cores")
    assert (g.machine, g.target, g.ratio) == ("NVIDIA H200", ">= 10", "0.50")

    bare = ALL.parse_output(ALL.Result("memory", "streaming", "-"), "peak_rss_gib: 0.4\nsamples_per_s: 2000\n", 0, "cpu")
    assert (bare.vaelab, bare.reference, bare.ratio, bare.failed) == ("samples_per_s: 2000", "-", "-", False)

    crash = "starting\nTraceback (most recent call last):\nRuntimeError: boom\n"
    f = ALL.parse_output(ALL.Result("chain", "chain", "≥ 1.0"), crash, 1, "cpu")
    assert f.failed and f.ratio == "failed (exit 1)" and f.vaelab == "RuntimeError: boom"

    missing = "pythae environment missing\nrow: vaelab=n/a; reference=pythae env missing: make bench-env\nratio: n/a\n"
    m = ALL.parse_output(ALL.Result("pythae_compare", "vs pythae", "≥ 1.3"), missing, 0, "cpu")
    assert (m.reference, m.ratio, m.failed) == ("pythae env missing: make bench-env", "n/a", False)

    for x in (r, g, bare, f, m):
        x.date = "2026-01-01"
    table = ALL.table([r, g, bare, f, m]).splitlines()
    assert table[0] == "| benchmark | compares | vaelab | reference | ratio | target | machine | date |"
    assert table[1] == "|---|---|---|---|---|---|---|---|"
    assert table[2] == (
        "| train_throughput | MLP \\| loop | 32,755 samples/s | 31,731 samples/s (hand-written loop) | 1.03 | ≥ 1.0 "
        "| AMD EPYC, 2 cores | 2026-01-01 |"
    )
    assert "| failed (exit 1) |" in table[5]
    assert all(line.count(" | ") == 7 for line in table[2:])  # the escaped | does not add a column


def test_all_runs_and_tabulates_one_quick_benchmark():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "all.py"), "--quick", "--only", "sweep"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "== bench/sweep.py --quick" in lines
    rows = [line for line in lines if line.startswith("| sweep |")]
    assert len(rows) == 1 and ALL.cpu_name() in rows[0]
    assert "failed" not in rows[0] and re.search(r"\| \d+(\.\d+)?x? ", rows[0]), rows[0]  # the benchmark ran: a ratio, no failure


def test_all_forwards_device_only_to_the_device_benchmarks():
    scripts = {s for s, _ in RUNS}
    assert set(ALL.DEVICE_SCRIPTS) <= scripts
    for script, args in RUNS:
        cpu = ALL.command(script, args, quick=True)
        assert "--device" not in cpu and cpu == ALL.command(script, args, quick=True, device="cpu")  # CPU: as it always was
        gpu = ALL.command(script, args, quick=True, device="cuda:1")
        if script in ALL.DEVICE_SCRIPTS:
            assert gpu == [*cpu[:-1], "--device", "cuda:1", "--quick"]
        else:
            assert gpu == cpu  # fid, memory, process_time, pythae_compare stay on the CPU


def test_a_device_this_machine_lacks_is_refused_clearly(capsys):
    # cuda:99 is missing here whether or not there is a GPU: a usage error naming it, before any work.
    # The three device benchmarks take --device through bench/_device.py: checked here in process,
    # and once end to end below.
    sys.path.insert(0, str(BENCH))
    try:
        import _device
    finally:
        sys.path.remove(str(BENCH))
    import argparse

    for script in ALL.DEVICE_SCRIPTS:
        assert re.search(r"from _device import .*add_device, .*resolved", (BENCH / script).read_text()), script
    ap = argparse.ArgumentParser(prog="bench")
    _device.add_device(ap, "both sides")
    with pytest.raises(SystemExit) as e:
        _device.resolved(ap, ap.parse_args(["--device", "cuda:99"]).device)
    assert e.value.code == 2 and "error: --device cuda:99: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ap.parse_args(["--device", "gpu"])
    assert "must be cpu, cuda, cuda:N or auto, got 'gpu'" in capsys.readouterr().err
    proc = subprocess.run(
        [sys.executable, str(BENCH / "train_throughput.py"), "--device", "cuda:99", "--quick"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error: --device cuda:99: " in proc.stderr and "CUDA device" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "ratio:" not in proc.stdout


def test_a_malformed_device_is_a_usage_error():
    # all.py checks the form before importing torch (the scripts check it the same way)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "all.py"), "--device", "gpu", "--quick"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "must be cpu, cuda, cuda:N or auto, got 'gpu'" in proc.stderr, proc.stderr



# ---------------------------------------------------------------------------------------------
# bench/gpu_check.py: `make gpu-check`.

GPU_CHECK = load("gpu_check")


@pytest.fixture
def a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(GPU_CHECK, "missing_packages", lambda: [])


def gpu_check_exit(tmp_path, monkeypatch, run, *args: str) -> int:
    """bench/gpu_check.py's exit status (with `args`) with `run` standing in for its commands; the table in t.md."""
    monkeypatch.setattr(GPU_CHECK, "run", run)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", *args, "--out", str(tmp_path / "t.md"), "--log", str(tmp_path / "log")])
    with pytest.raises(SystemExit) as e:
        GPU_CHECK.main()
    return e.value.code


def recording(calls: list, suite: str, bench: str, bench_code: int = 0):
    """A stand-in for gpu_check's `run`: records each command, answers the suite with `suite` and
    each benchmark with (`bench_code`, `bench`)."""

    def run(cmd, timeout, log):
        calls.append(cmd)
        if "pytest" in cmd:
            return 0, suite, 1.0
        return bench_code, bench, 1.0

    return run


def test_gpu_check_tabulates_the_suite_and_every_benchmark(tmp_path, monkeypatch, a_gpu):
    calls = []
    suite = "....\n== 1059 passed, 14 warnings in 140.2s ==\n"
    run = recording(calls, suite, "machine: cuda:0 (NVIDIA H200)\nrow: vaelab=9,000 samples/s; reference=3,000 samples/s\nratio: 3.00\n")
    assert gpu_check_exit(tmp_path, monkeypatch, run) == 0
    table = (tmp_path / "t.md").read_text().splitlines()
    assert "NVIDIA H200" in table[0] and "PyTorch" in table[0]
    assert "1059 passed, 14 warnings in 140.2s" in table[4]
    rows = [line for line in table if line.startswith(tuple(f"| {name} |" for name, _, _ in GPU_CHECK.BENCHES))]
    assert len(rows) == len(GPU_CHECK.BENCHES) == 7 and all(row.endswith("| 3.00 |") for row in rows)
    assert [c[2:] for c in calls if "pytest" not in c][:2] == [
        ["--model", "cnn", "--reference", "dataloader", "--rounds", "3", "--device", "cuda"],
        ["--model", "cnn", "--precision", "bf16", "--reference", "fp32", "--rounds", "3", "--device", "cuda"],
    ]  # issue 16's targets: against the DataLoader loop, and bf16 against fp32
    pytest_call = next(c for c in calls if "pytest" in c)
    assert pytest_call[pytest_call.index("-n") + 1].isdigit() and pytest_call[-3:] == ["--dist", "loadgroup", "--no-loadscope-reorder"]
    assert all(c[-2:] == ["--device", "cuda"] for c in calls if "pytest" not in c)


@pytest.mark.parametrize("only, suite, benches", [("suite", True, 0), ("benches", False, 7)])
def test_gpu_check_only_runs_one_half(tmp_path, monkeypatch, a_gpu, only, suite, benches):
    calls = []
    run = recording(calls, "== 3 passed in 1.0s ==\n", "row: vaelab=1 s; reference=2 s\nratio: 2.00\n")
    assert gpu_check_exit(tmp_path, monkeypatch, run, "--only", only) == 0
    assert any("pytest" in c for c in calls) == suite
    assert sum("pytest" not in c for c in calls) == benches
    assert ("not run (--only benches)" in (tmp_path / "t.md").read_text()) == (not suite)


def test_gpu_check_fails_when_a_benchmark_fails(tmp_path, monkeypatch, a_gpu):
    run = recording([], "== 3 passed in 1.0s ==\n", "Traceback …\nRuntimeError: boom\n", bench_code=1)
    assert gpu_check_exit(tmp_path, monkeypatch, run) == 1
    assert "failed (exit 1): RuntimeError: boom" in (tmp_path / "t.md").read_text()


def test_gpu_check_without_cuda_or_a_package_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path / "t.md")])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        GPU_CHECK.main()
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    monkeypatch.setattr(GPU_CHECK, "missing_packages", lambda: ["tomli-w", "pytest-xdist"])
    with pytest.raises(SystemExit) as e:
        GPU_CHECK.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "tomli-w, pytest-xdist" in err
    assert not (tmp_path / "t.md").exists()


def test_gpu_checks_suite_step_runs_the_gpu_tests_on_every_core(tmp_path):
    # the real pytest-xdist invocation, on the `gpu` tests only (skipped here without CUDA)
    with open(tmp_path / "log", "w") as log:
        line, passed = GPU_CHECK.suite(quick=True, log=log)
    assert passed, (tmp_path / "log").read_text()[-3000:]
    assert "skipped" in line or "passed" in line, line
