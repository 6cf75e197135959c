"""Per-epoch training throughput: vaelab against pythae 0.1.2 on the same MLP VAE (CPU).

What it measures
    The 576-256-8 dense VAE of bench/train_throughput.py (`fc1`, hidden [256], latent 8) on the
    same 20,000 `points` images (24x24), batch 128, Adam lr 1e-3, 3 epochs per run, trained by
    two libraries:

    * vaelab, in this process: `vaelab.train.train(cfg, data, out=None, quiet=True)` (in memory,
      no files; Adam's fused kernel, as always in vaelab). Its per-step log gives each epoch's
      seconds (the `time` of an epoch's last step minus that of the epoch before; the first from
      the loop's start).
    * pythae 0.1.2, in its own environment (bench/.venv-pythae, made by `make bench-env`, so that
      pythae and what it pulls in -- pydantic 2, imageio, cloudpickle, the `dataclasses` backport
      -- stay out of vaelab's), as a subprocess running
      bench/_pythae_run.py: pythae's `VAE` with a custom encoder and decoder built on
      `pythae.models.nn.BaseEncoder`/`BaseDecoder` with exactly vaelab's layers (Linear(576, 256)
      -> ReLU -> Linear(256, 16) split into mu and log sigma^2; Linear(8, 256) -> ReLU ->
      Linear(256, 576) -> sigmoid), trained through `TrainingPipeline` with a `BaseTrainerConfig`
      (the same batch, lr, epochs, Adam, seed; no eval set). A training callback stamps pythae's
      own epoch events: an epoch's seconds run from `on_epoch_begin` to `on_epoch_end`.

    The two train the same objective: pythae's "mse" loss is 0.5 x the squared error summed over
    pixels + the KL, batch mean; vaelab's gaussian loss has no 0.5, so vaelab runs with
    `loss.recon_weight=0.5` (one scalar multiply per step). Both models have 302,160 weights
    (checked). pythae shuffles with its DataLoader, vaelab with its own permutations: the same
    number of batches of the same sizes, not the same batches.

    The pythae side also reports what it costs before training, timed separately and not part of
    the ratio: `import torch`, the pythae imports after it, and the set-up (model and trainer
    configs, model, pipeline, the pipeline's data checks and conversion, the trainer with its
    DataLoader and sanity-check forward pass, optimizer, output folder, callbacks: everything up
    to the first epoch). vaelab's import time is measured the same way in a fresh process, its
    set-up is the whole call minus the training loop.

    What pythae does that vaelab's in-memory run does not: each epoch, a DataLoader pass that
    builds every batch from 128 per-image `__getitem__` calls and a collate, a `loss.item()` per
    step, and a deepcopy of the model whenever the epoch's training loss is the best so far (with
    no eval set it keeps the best model on the training set); after the last epoch, it saves the
    final model into its output folder (model.pt, three JSON files, the encoder and decoder as
    cloudpickle files) -- reported as "finish", outside the epochs. To keep it as fair as
    possible: `steps_saving=None` (no checkpoints), no eval set, no `steps_predict`, the output
    folder in a temporary directory (deleted afterwards), and pythae's per-epoch progress bars off
    (TQDM_DISABLE=1; vaelab runs with quiet=True). pythae's log lines go to the subprocess's
    stderr, which this script keeps only to show on failure.

    Threads: both sides use the same torch thread count (this process's, or --threads), passed
    to the subprocess as OMP_NUM_THREADS and torch.set_num_threads.

    After a warm-up round of each (vaelab warms its process; pythae's warms the file cache for its
    imports), they alternate (vaelab, then pythae) for `--rounds` rounds. A run's per-epoch
    throughput is its images ÷ its median epoch seconds (robust to one slow epoch: a busy
    neighbour, or first-call costs in a fresh process; the same rule on both sides). The
    line before the last is `row: vaelab=...; reference=...` (for bench/all.py's table), the last
    is `ratio: X.XX` = median vaelab per-epoch samples/s ÷ median pythae per-epoch samples/s.
    Target (issue 7): >= 1.3.

    Without bench/.venv-pythae (or with one lacking pythae or torch) the script says so, prints
    `ratio: n/a` and exits 0, so `make bench` completes; `make bench-env` creates it.

    The timings are wall-clock: on a small busy machine other processes move single rounds a lot
    (the load average is printed); use `--threads 1` and more rounds when it is not quiet.

How to run (from the repository root)
    make bench-env                                   # once: bench/.venv-pythae with pythae 0.1.2
    .venv/bin/python bench/pythae_compare.py         # 5 rounds of 3 epochs each
    .venv/bin/python bench/pythae_compare.py --threads 1 --rounds 7
    .venv/bin/python bench/pythae_compare.py --quick # smoke check: 1 round (no warm-up) of 2 epochs
                                                     # on 2,000 images
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.models import count_parameters
from vaelab.train import train

ROOT = Path(__file__).resolve().parent.parent
PYTHAE_PYTHON = ROOT / "bench" / ".venv-pythae" / "bin" / "python"
HELPER = ROOT / "bench" / "_pythae_run.py"
N, BATCH, HIDDEN, LATENT, LR, SEED, EPOCHS = 20000, 128, 256, 8, 1e-3, 0, 3
QUICK_N, QUICK_EPOCHS = 2000, 2


def make_config(epochs: int, n: int):
    return load_config(
        overrides={
            "data.name": "points",
            "data.n": n,
            "model.name": "fc1",
            "model.hidden": [HIDDEN],
            "model.latent_dim": LATENT,
            "loss.recon_weight": 0.5,  # pythae's mse: 0.5 x summed squared error
            "train.batch_size": BATCH,
            "train.epochs": epochs,
            "train.device": "cpu",
            "train.lr": LR,
            "train.seed": SEED,
        }
    )


def pythae_missing() -> str | None:
    """Why the pythae environment cannot be used, or None when it can."""
    if not PYTHAE_PYTHON.exists():
        return f"{PYTHAE_PYTHON.relative_to(ROOT)} does not exist"
    code = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('pythae') and u.find_spec('torch') else 1)"
    if subprocess.run([str(PYTHAE_PYTHON), "-c", code], capture_output=True).returncode != 0:
        return f"{PYTHAE_PYTHON.relative_to(ROOT)} has no pythae or no torch"
    return None


def epoch_seconds(history: list[dict]) -> list[float]:
    """Each epoch's seconds from vaelab's per-step log (`time`: seconds since the loop began)."""
    ends: dict[int, float] = {}
    for row in history:
        ends[row["epoch"]] = row["time"]
    times = [ends[e] for e in sorted(ends)]
    return [b - a for a, b in zip([0.0, *times[:-1]], times)]


def run_vaelab(cfg, data) -> dict:
    t0 = time.perf_counter()
    run = train(cfg, data, out=None, quiet=True)
    whole = time.perf_counter() - t0
    return {"epoch_s": epoch_seconds(run.history), "setup_s": whole - run.seconds, "whole_s": whole,
            "params": count_parameters(run.model), "final_loss": run.history[-1]["loss"]}


def run_pythae(data_file: Path, epochs: int, threads: int, workdir: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="pythae-out-", dir=workdir))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [str(PYTHAE_PYTHON), str(HELPER), "--data", str(data_file), "--out", str(out), "--epochs", str(epochs),
           "--batch", str(BATCH), "--lr", str(LR), "--hidden", str(HIDDEN), "--latent", str(LATENT),
           "--threads", str(threads), "--seed", str(SEED)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    process_s = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"the pythae run failed (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = process_s
    return result


def vaelab_import_seconds() -> tuple[float, float]:
    """(import torch, the vaelab imports after it) in a fresh process, like the pythae side's."""
    code = (
        "import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
        "import vaelab.config, vaelab.data, vaelab.train; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description="vaelab vs pythae 0.1.2 on the same MLP VAE: per-epoch samples/s and their ratio (CPU).")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up round (default 5)")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs per training run (default {EPOCHS})")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both sides (default: torch's default)")
    ap.add_argument("--quick", action="store_true", help=f"smoke check: 1 round (no warm-up) of {QUICK_EPOCHS} epochs on {QUICK_N:,} images")
    args = ap.parse_args()
    rounds, epochs, n = (1, QUICK_EPOCHS, QUICK_N) if args.quick else (args.rounds, args.epochs, N)
    warmups = 0 if args.quick else 1
    if rounds < 1 or epochs < 1 or args.threads < 0:
        ap.error("--rounds and --epochs must be >= 1, --threads >= 0")

    why = pythae_missing()
    if why is not None:
        print(f"pythae environment missing ({why}): `make bench-env` creates it (pythae 0.1.2 in bench/.venv-pythae)")
        print("row: vaelab=n/a; reference=pythae env missing: make bench-env")
        print("ratio: n/a")
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()  # fixed for the whole process; the pythae side gets the same

    cfg = make_config(epochs, n)
    data = load_data(cfg.data)
    images = data.images
    print(f"fc1 576-{HIDDEN}-{LATENT} VAE, {images.shape[0]} points images {tuple(images.shape[1:])}, batch {BATCH}, "
          f"Adam lr {LR:g}, {epochs} epoch(s) per run")
    print(f"torch {torch.__version__}, CPU, {threads} thread(s) on {os.cpu_count()} core(s) for both sides; "
          f"{rounds} timed round(s) after {warmups} warm-up round(s), vaelab first in each")
    print(f"load average before (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")

    work = Path(tempfile.mkdtemp(prefix="vaelab-bench-pythae-"))
    try:
        data_file = work / "images.npy"
        np.save(data_file, images.numpy())  # (N, 1, 24, 24) float32, read by the pythae process
        torch_s, vaelab_import_s = vaelab_import_seconds()
        print("per-epoch samples/s = images / the run's median epoch seconds; pythae: import, set-up and finish in seconds")
        print(f"{'round':>7}  {'vaelab':>8}  {'pythae':>8}  {'ratio':>5}  {'import':>6}  {'set-up':>6}  {'finish':>6}  {'load':>5}   epoch seconds (vaelab | pythae)")
        results: dict[str, list[float]] = {"vaelab": [], "pythae": []}
        pythae_costs: list[tuple[float, float, float, float]] = []
        vaelab_setup: list[float] = []
        for r in range(rounds + warmups):
            v = run_vaelab(cfg, data)
            p = run_pythae(data_file, epochs, threads, work)
            load = os.getloadavg()[0]
            if r == 0:
                if v["params"] != p["params"]:
                    raise SystemExit(f"the two models differ: vaelab {v['params']:,} weights, pythae {p['params']:,}")
                if p["threads"] != threads or p["samples"] != images.shape[0]:
                    raise SystemExit(f"the pythae run used {p['threads']} thread(s) and {p['samples']} images, expected {threads} and {images.shape[0]}")
                first = (v, p)
            vs, ps = images.shape[0] / statistics.median(v["epoch_s"]), images.shape[0] / statistics.median(p["epoch_s"])
            label = "warm-up" if r < warmups else str(r + 1 - warmups)
            epochs_text = " ".join(f"{t:.2f}" for t in v["epoch_s"]) + " | " + " ".join(f"{t:.2f}" for t in p["epoch_s"])
            print(f"{label:>7}  {vs:8.0f}  {ps:8.0f}  {vs / ps:5.2f}  {p['import_s']:6.2f}  {p['setup_s']:6.2f}  "
                  f"{p['finish_s']:6.2f}  {load:5.2f}   {epochs_text}", flush=True)
            if r >= warmups:
                results["vaelab"].append(vs)
                results["pythae"].append(ps)
                pythae_costs.append((p["torch_import_s"], p["import_s"], p["setup_s"], p["finish_s"]))
                vaelab_setup.append(v["setup_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    v_med, p_med = statistics.median(results["vaelab"]), statistics.median(results["pythae"])
    t_imp, p_imp, p_set, p_fin = (statistics.median(c[j] for c in pythae_costs) for j in range(4))
    v0, p0 = first
    print(f"load average after (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"same model: {v0['params']:,} weights on both sides; pythae {p0['pythae']} with torch {p0['torch']} "
          f"(Python {p0['python']}), {p0['steps_per_epoch']} steps per epoch")
    print(f"final training loss (first round, last step / last epoch's mean): vaelab {v0['final_loss']:.2f}, pythae {p0['final_loss']:.2f}")
    print(f"pythae before training (median s): import torch {t_imp:.2f}, import pythae {p_imp:.2f}, set-up {p_set:.2f}; "
          f"after the last epoch: saving the final model {p_fin:.2f}")
    print(f"vaelab before training (s): import torch {torch_s:.2f}, import vaelab {vaelab_import_s:.2f} (one fresh process), "
          f"set-up {statistics.median(vaelab_setup):.3f} (median)")
    print(f"median per-epoch samples/s: vaelab {v_med:.0f}, pythae {p_med:.0f}")
    print("ratio = median vaelab per-epoch samples/s / median pythae per-epoch samples/s:")
    print(f"row: vaelab={v_med:,.0f} samples/s per epoch; reference={p_med:,.0f} samples/s per epoch "
          f"(pythae {p0['pythae']}; its import {p_imp:.1f} s + set-up {p_set:.1f} s apart)")
    print(f"ratio: {v_med / p_med:.2f}")


if __name__ == "__main__":
    main()
