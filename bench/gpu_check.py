"""`make gpu-check`: vaelab on a machine with an NVIDIA GPU, checked unattended, ending in one table.

What it does
    1. Checks that every package vaelab and its tests need imports (one line naming the missing
       ones, exit 2) and that CUDA is available (one line, exit 2, on a machine without it).
    2. Runs the whole test suite with `train.device=auto`, which picks CUDA here, on every core
       (pytest-xdist), the `gpu` tests (tests/test_gpu.py) included.
    3. Runs the benchmarks with `--device cuda`, each side by side with its reference in one
       process (BENCHES): train_throughput (the cnn VAE against the DataLoader loop most users
       write, bf16 against fp32, the mlp against a hand-written loop, each with its share of the
       GPU's arithmetic peak), sweep (vectorized against one by one) and studies (chain-conv's 20
       generations with 1 and 5 seeds; bias-robustness in full): issue 16's targets.
    4. Prints a Markdown table with the GPU's name, PyTorch's and CUDA's versions and the date, and
       writes it to gpu-check.md (or --out), for the table in docs/gpu.md.
    Exit status 0 only when the suite and every benchmark passed.

How to run (from the repository root)
    make gpu-check                      # in .venv, installed by the Makefile
    make gpu-check PYTHON=python3       # on a Python that already has a CUDA PyTorch and the
                                        # scientific stack: vaelab is taken from src/, nothing installed
    python3 bench/gpu_check.py --quick  # a smoke run: the suite's gpu tests and --quick benchmarks

Budget: BUDGET seconds in all, each step stopped where it would run past it (its row then says
so); `--only suite` and `--only benches` split the check into two device calls when the studies
run long.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NEEDED = {
    "torch": "torch",
    "numpy": "numpy",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
    "safetensors": "safetensors",
    "tqdm": "tqdm",
    "tomli_w": "tomli-w",
    "pytest": "pytest",
    "xdist": "pytest-xdist",
    "hypothesis": "hypothesis",
}
"""import name → the package to bring when it is missing"""

BENCHES = [
    ("train cnn vs DataLoader", ["train_throughput.py", "--model", "cnn", "--reference", "dataloader", "--rounds", "3"], "cnn VAE, 20,000 fontdigits, batch 128, 3 epochs: vaelab vs the DataLoader loop (target ≥ 5)"),
    ("train cnn bf16 vs fp32", ["train_throughput.py", "--model", "cnn", "--precision", "bf16", "--reference", "fp32", "--rounds", "3"], "the same, vaelab bf16 vs vaelab fp32 (target ≥ 1)"),
    ("train mlp", ["train_throughput.py", "--model", "mlp", "--rounds", "3"], "vaelab vs a hand-written loop, fc1, batch 128"),
    ("profile of a step", ["profile_step.py"], "cnn, batch 128: kernel launches, copies, syncs per step; ratio = launches without ÷ with the CUDA graph"),
    ("sweep", ["sweep.py", "--rounds", "3"], "16 fc1 VAEs vectorized vs one by one (target ≥ 20)"),
    ("chain-conv study", ["studies.py", "--part", "chain"], "20 generations at the study's settings, 5 seeds vs 1 (targets: 1 seed < 60 s; ratio ≥ 1)"),
    ("bias-robustness study", ["studies.py", "--part", "sweep"], "77 cells × 10,000 steps (target < 120 s: ratio ≥ 1)"),
]
"""(name, bench/ script and arguments, what it compares); each also gets --device cuda"""


BUDGET = 560.0
"""seconds for the whole check: a step that would run past it is stopped (and fails)"""
START = time.perf_counter()


def budget(limit: float) -> float:
    """A step's time limit: `limit`, or what is left of BUDGET when that is less (at least 10 s)."""
    return max(10.0, min(limit, BUDGET - (time.perf_counter() - START)))


def fail(message: str) -> None:
    print(f"gpu-check: {message}", file=sys.stderr)
    sys.exit(2)


def missing_packages() -> list[str]:
    return [package for module, package in NEEDED.items() if importlib.util.find_spec(module) is None]


def environment() -> dict[str, str]:
    """The tests' and benchmarks' environment: vaelab from src/ (installed or not), one thread per
    worker (xdist runs one worker per core), unbuffered output."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(cmd: list[str], timeout: float, log) -> tuple[int, str, float]:
    """(exit status, output, seconds) of cmd, its output also copied to `log`."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=timeout)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        code, out = 124, f"{(e.stdout or b'').decode() if isinstance(e.stdout, bytes) else e.stdout or ''}\ntimed out after {timeout:.0f} s"
    log.write(f"$ {' '.join(cmd)}\n{out}\n")
    log.flush()
    return code, out, time.perf_counter() - start


def suite(quick: bool, log) -> tuple[str, bool]:
    """The test suite on every core; (its summary line, passed)."""
    workers = max(1, min(os.cpu_count() or 1, 16))
    selection = ["-m", "gpu"] if quick else []
    # --dist loadgroup: a file's tests share one worker (tests/conftest.py groups them), so a module's fixtures (a trained run, a Ray
    # runtime) are built once, not once per worker that draws one of its tests
    code, out, seconds = run([sys.executable, "-m", "pytest", "-q", "-n", str(workers), "--dist", "loadgroup", "--no-loadscope-reorder", *selection], budget(300), log)
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?)\b.* in [\d.]+s", line)]
    line = summary[-1].strip("= ") if summary else f"no summary (exit {code})"
    if code != 0:
        failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
        print("\n".join(failed[:40]))
    return f"{line} ({workers} workers, {seconds:.0f} s)", code == 0


def bench(args: list[str], quick: bool, log) -> tuple[str, str, bool]:
    """One benchmark on the GPU: (its row, its ratio, passed)."""
    extra = ["--quick"] if quick else []
    code, out, seconds = run([sys.executable, str(ROOT / "bench" / args[0]), *args[1:], "--device", "cuda", *extra], budget(200), log)
    row = next((line[len("row: ") :] for line in out.splitlines() if line.startswith("row: ")), "")
    ratio = next((line.split(":", 1)[1].strip() for line in reversed(out.splitlines()) if line.startswith("ratio: ")), "")
    if code != 0 or not ratio:
        tail = out.strip().splitlines()[-1] if out.strip() else ""
        return f"failed (exit {code}): {tail}", "—", False
    return f"{row} ({seconds:.0f} s)", ratio, True


def main() -> None:
    ap = argparse.ArgumentParser(description="the test suite and the benchmarks on a CUDA GPU, in one table")
    ap.add_argument("--quick", action="store_true", help="a smoke run: the gpu tests only and --quick benchmarks")
    ap.add_argument("--only", choices=("all", "suite", "benches"), default="all", help="all (default), or the suite or the benchmarks alone (each fits one device call of 10 minutes)")
    ap.add_argument("--out", default=str(ROOT / "gpu-check.md"), help="where to write the table (default gpu-check.md)")
    ap.add_argument("--log", default=str(ROOT / "gpu-check.log"), help="every command's output (default gpu-check.log)")
    args = ap.parse_args()

    missing = missing_packages()
    if missing:
        fail(f"{sys.executable} lacks {', '.join(missing)}: install them (pip install {' '.join(missing)}, or their wheels with pip install --no-index) and run again")
    import torch

    if not torch.cuda.is_available():
        fail(f"no CUDA device here (PyTorch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}): make gpu-check needs a machine with an NVIDIA GPU; make test checks the CPU")

    gpu = torch.cuda.get_device_name(0)
    rows = []
    with open(args.log, "w") as log:
        tests, all_passed = "not run (--only benches)", True
        if args.only != "benches":
            print(f"gpu-check on {gpu}: the test suite …", flush=True)
            tests, all_passed = suite(args.quick, log)
            print(f"  {tests}", flush=True)
        for name, script, what in BENCHES if args.only != "suite" else []:
            print(f"gpu-check: bench {name} …", flush=True)
            row, ratio, passed = bench(script, args.quick, log)
            print(f"  {row}; ratio {ratio}", flush=True)
            rows.append((name, what, row, ratio))
            all_passed = all_passed and passed

    date = datetime.date.today().isoformat()
    lines = [
        f"`make gpu-check`{' --quick' if args.quick else ''} on {date}: {gpu}, PyTorch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU cores; {time.perf_counter() - START:.0f} s in all.",
        "",
        "| check | what | measured | ratio |",
        "|---|---|---|---|",
        f"| test suite (`train.device=auto` → CUDA) | every test, the `gpu` ones included | {tests} | — |",
        *(f"| {name} | {what} | {row} | {ratio} |" for name, what, row, ratio in rows),
    ]
    table = "\n".join(lines)
    Path(args.out).write_text(table + "\n")
    print(f"\n{table}\n\nwritten to {args.out}; every command's output in {args.log}")
    sys.exit(0 if all_passed else 1)


if __name__ == "__main__":
    main()
