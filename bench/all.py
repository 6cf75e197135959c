"""Every benchmark in bench/, one after another, then one table: what `make bench` runs.

What it does
    Runs each benchmark script in bench/ (every *.py but the drivers, this one and `make
    gpu-check`'s gpu_check.py, and the helpers whose names start with `_`) as a subprocess with
    this Python, showing its output as it comes, and at the end prints one Markdown table with a
    row per run: the benchmark, what it compares, vaelab's figure and the reference's, the ratio,
    the target, the machine and the date.

    Known scripts run with the arguments and are described as in RUNS below (train_throughput.py
    twice: the MLP and the conv model); a script not listed there runs with no arguments and is
    described by the first line of its docstring. The figures come from the line each benchmark
    prints just before its last, `row: vaelab=<text>; reference=<text>`, the ratio from its last
    line, `ratio: X.XX`. A benchmark without a `row:` line gets its last line in the vaelab column;
    one without a `ratio:` line gets "-". A benchmark may also print `machine: <text>` (e.g. the
    GPU it ran on; otherwise the column names this machine's CPU model and core count) and
    `target: <text>` (over the table's own). A benchmark that exits non-zero gets a row saying so,
    and this script then exits 1 after the table.

    `--device` (cuda, cuda:N or auto; cpu is the default and passes nothing) is forwarded to the
    benchmarks that measure both sides on a device of choice, DEVICE_SCRIPTS: train_throughput.py
    (both models), sweep.py, chain.py, studies.py, profile_step.py and disentanglement.py. Each of them then prints `machine: <the GPU>`, which
    fills its row's machine column. The others (fid, memory, process_time, pythae_compare) run on
    the CPU whatever --device says, and their rows name the CPU; the line under the table says so.
    A device this machine lacks is refused before any benchmark runs.

How to run (from the repository root)
    make bench                                   # builds bench/.venv-pythae first, then this
    .venv/bin/python bench/all.py
    .venv/bin/python bench/all.py --quick        # every benchmark's smoke check (--quick)
    .venv/bin/python bench/all.py --threads 1    # OMP_NUM_THREADS=1 for every benchmark
    .venv/bin/python bench/all.py --only pythae  # the runs whose name contains "pythae"
    .venv/bin/python bench/all.py --device cuda  # train_throughput, sweep and chain on the GPU
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent

RUNS: list[tuple[str, list[str], str, str]] = [
    # (script, arguments, what it compares, target)
    ("train_throughput.py", [], "MLP VAE (576-256-8) training, samples/s: vaelab vs a hand-written loop", "≥ 1.0"),
    ("train_throughput.py", ["--model", "conv"], "conv VAE training, samples/s: vaelab vs a hand-written loop", "≥ 1.0"),
    ("pythae_compare.py", [], "MLP VAE (576-256-8), per-epoch samples/s: vaelab vs pythae 0.1.2", "≥ 1.3"),
    ("process_time.py", [], "whole process, small `vaelab train` vs a hand-written script (hand s / vaelab s)", "≥ 0.83 (≤ 1.2× the time)"),
    ("sweep.py", [], "16 VAEs, samples/s: vectorized vs sequential", "≥ 1.5 (2 CPU cores); ≥ 10 (GPU)"),
    ("chain.py", [], "3-generation chain with its metrics: vaelab chain vs hand-written", "≥ 1.0"),
    ("studies.py", ["--part", "chain"], "chain-conv, 20 generations at the study's settings: 5 seeds vs 1 (2 x one seed's s / five seeds' s)", "≥ 1 (GPU; one seed < 60 s)"),
    ("studies.py", ["--part", "sweep"], "bias-robustness in full, 77 cells x 10,000 steps (120 s / its s)", "≥ 1 (GPU)"),
    ("profile_step.py", [], "host work per cnn training step: kernel launches without / with a CUDA graph (CPU: ops per step)", "-"),
    ("fid.py", [], "FID of 10k vs 10k images: vaelab vs NumPy/SciPy (ref s / vaelab s)", "vaelab < 20 s per FID"),
    ("disentanglement.py", [], "every disentanglement and recovery score of one sprites cnn VAE at beta-disentangle's sizes: vaelab vs its former encoding (ref s / vaelab s)", "vaelab < 120 s per model (2 CPU cores); < 15 s (GPU)"),
    ("host_memory.py", [], "CPU training of unsupervised-study's one-conv network, steps/s: freed blocks kept (the vaelab command) vs glibc's default", "≥ 1.0"),
    ("memory.py", [], "one epoch over 1,000,000 28x28 images streamed from disk vs 100,000 in memory (samples/s)", "peak RSS < 2 GiB"),
]

# scripts in bench/ that run others and are no benchmarks: this one, and `make gpu-check`'s
DRIVERS = ("all.py", "gpu_check.py")

# the scripts that take --device (both sides on that device); the others run on the CPU
DEVICE_SCRIPTS = ("train_throughput.py", "sweep.py", "chain.py", "studies.py", "profile_step.py", "disentanglement.py")

# the scripts whose full sizes are GPU work (hours on a 2-core CPU): on the CPU only their --quick runs
GPU_SCRIPTS = ("studies.py",)

ROW = re.compile(r"^row: vaelab=(.*?); reference=(.*)$")


@dataclass
class Result:
    name: str
    compares: str
    target: str
    vaelab: str = "-"
    reference: str = "-"
    ratio: str = "-"
    machine: str = ""
    date: str = ""
    failed: bool = False
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)


def cpu_name() -> str:
    """This machine's CPU model and core count, e.g. 'AMD EPYC 7B13, 2 cores'."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if not model:
        import platform

        model = platform.processor() or platform.machine() or "unknown CPU"
    n = os.cpu_count() or 1
    return f"{model}, {n} core{'s' if n != 1 else ''}"


def parse_output(result: Result, text: str, returncode: int, default_machine: str) -> Result:
    """Fill `result`'s figures, ratio, machine and target from a benchmark's output."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    result.lines = lines
    result.machine = default_machine
    for line in lines:
        if m := ROW.match(line):
            result.vaelab, result.reference = m.group(1).strip(), m.group(2).strip()
        elif line.startswith("ratio:"):
            result.ratio = line[len("ratio:") :].strip()
        elif line.startswith("machine:"):
            result.machine = line[len("machine:") :].strip()
        elif line.startswith("target:"):
            result.target = line[len("target:") :].strip()
    if not any(ROW.match(line) for line in lines) and lines:
        result.vaelab = lines[-1]  # no row line: show the benchmark's last line as it is
    if returncode != 0:
        result.failed = True
        result.ratio = f"failed (exit {returncode})"
        if not any(ROW.match(line) for line in lines):
            result.vaelab = lines[-1] if lines else "no output"
    return result


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def table(results: list[Result]) -> str:
    head = ["benchmark", "compares", "vaelab", "reference", "ratio", "target", "machine", "date"]
    rows = [[r.name, r.compares, r.vaelab, r.reference, r.ratio, r.target, r.machine, r.date] for r in results]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def docstring_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (OSError, SyntaxError):
        doc = None
    return doc.strip().splitlines()[0] if doc else path.stem


def plan() -> list[tuple[str, list[str], str, str]]:
    """The runs, in order: the known ones whose script exists, then every other script."""
    scripts = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name not in (*DRIVERS, Path(__file__).name))
    runs = [r for r in RUNS if r[0] in scripts]
    known = {r[0] for r in RUNS}
    runs += [(s, [], docstring_line(BENCH / s), "-") for s in scripts if s not in known]
    return runs


def run_name(script: str, args: list[str]) -> str:
    return " ".join([Path(script).stem, *args])


def device_name(name: str) -> str:
    """--device's value: cpu, cuda, cuda:N or auto (the forms of train.device)."""
    from vaelab.config import is_device_name

    if not is_device_name(name):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or auto, got {name!r}")
    return name


def command(script: str, args: list[str], quick: bool = False, device: str = "cpu") -> list[str]:
    """The command line of one run: `--device` only for DEVICE_SCRIPTS and only when not the CPU
    (so a CPU run's command is what it always was)."""
    on_device = ["--device", device] if device != "cpu" and script in DEVICE_SCRIPTS else []
    return [sys.executable, str(BENCH / script), *args, *on_device, *(["--quick"] if quick else [])]


def run_one(
    script: str, args: list[str], compares: str, target: str, quick: bool, env: dict, machine: str, device: str = "cpu"
) -> Result:
    name = run_name(script, args)
    cmd = command(script, args, quick, device)
    print(f"== {' '.join([f'bench/{script}', *cmd[2:]])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=BENCH.parent)
    chunks = []
    assert proc.stdout is not None
    for line in proc.stdout:  # shown as it comes, kept for the table
        sys.stdout.write(line)
        sys.stdout.flush()
        chunks.append(line)
    rc = proc.wait()
    result = parse_output(Result(name, compares, target), "".join(chunks), rc, machine)
    result.seconds = time.perf_counter() - t0
    result.date = datetime.date.today().isoformat()
    print(f"== {name}: {'FAILED, exit ' + str(rc) if rc else 'done'} in {result.seconds:.0f} s\n", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description="run every benchmark in bench/ and print one table")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (smoke sizes)")
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for every benchmark (default: unset)")
    ap.add_argument("--only", default="", help="run only the benchmarks whose name contains this text")
    ap.add_argument("--device", type=device_name, default="cpu",
                    help=f"cuda, cuda:N or auto: passed to {', '.join(s.removesuffix('.py') for s in DEVICE_SCRIPTS)} "
                         "(the others run on the CPU); default cpu")
    args = ap.parse_args()
    if args.device != "cpu":  # a device this machine lacks: refused before hours of benchmarks, not by each script
        from vaelab.device import resolve_device
        from vaelab.errors import UserError

        try:
            resolve_device(args.device)
        except UserError as e:
            ap.error(f"--device {args.device}: {e}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    machine = cpu_name()
    runs = [r for r in plan() if args.only in run_name(r[0], r[1])]
    if not runs:
        raise SystemExit(f"no benchmark matches --only {args.only!r}")
    if args.device == "cpu" and not args.quick:
        skipped = [run_name(r[0], r[1]) for r in runs if r[0] in GPU_SCRIPTS]
        runs = [r for r in runs if r[0] not in GPU_SCRIPTS]
        if skipped:
            print(f"skipped on the CPU (GPU sizes, hours here; run them with --device cuda, or --quick): {', '.join(skipped)}")
        if not runs:
            raise SystemExit(f"--only {args.only!r} matches GPU benchmarks only: add --device cuda (on a GPU machine) or --quick")
    t0 = time.perf_counter()
    results = [run_one(script, a, compares, target, args.quick, env, machine, args.device) for script, a, compares, target in runs]
    failed = [r.name for r in results if r.failed]
    print(f"# vaelab benchmarks{' (--quick: smoke sizes, not figures to quote)' if args.quick else ''}\n")
    print(table(results))
    print(f"\n{len(results)} benchmark run(s) in {time.perf_counter() - t0:.0f} s"
          + (f"; OMP_NUM_THREADS={args.threads}" if args.threads else "")
          + (f"; --device {args.device} for {', '.join(s.removesuffix('.py') for s in DEVICE_SCRIPTS)}, the others on the CPU"
             if args.device != "cpu" else "")
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
