"""Helper of bench/pythae_compare.py: train pythae 0.1.2's VAE once and print its timings as JSON.

Runs in bench/.venv-pythae's Python (pythae and torch only: it must not import vaelab), started
by bench/pythae_compare.py, which has written the training images to an .npy file:

    bench/.venv-pythae/bin/python bench/_pythae_run.py --data IMAGES.npy --out TMPDIR \
        --epochs 3 --batch 128 --lr 1e-3 --hidden 256 --latent 8 --threads 2 --seed 0

The model is pythae's `VAE` (mse reconstruction: 0.5 x squared error summed over pixels, + KL,
batch mean) around a custom encoder and decoder built on `pythae.models.nn.BaseEncoder` /
`BaseDecoder` with exactly vaelab's fc1 layers: encoder flatten -> Linear(D, hidden) -> ReLU ->
Linear(hidden, 2 x latent), split into (mu, log sigma^2) like vaelab's; decoder Linear(latent,
hidden) -> ReLU -> Linear(hidden, D) -> sigmoid (vaelab applies the sigmoid inside its loss).
Training goes through pythae's documented path: `TrainingPipeline(model=..., training_config=
BaseTrainerConfig(...))(train_data=images)`, with Adam at the given lr, no eval set,
`steps_saving=None` (no checkpoints), the output folder in `--out`.

What it prints (one JSON object on the last line of stdout):
    torch_import_s   `import torch`
    import_s         the pythae imports after torch (pythae.models, pythae.trainers, pythae.pipelines)
    setup_s          building the VAEConfig, the encoder/decoder, the VAE, the BaseTrainerConfig and
                     the pipeline, then the pipeline call up to the first epoch: its data checks and
                     conversion, the BaseTrainer (DataLoader, a sanity-check forward pass), the seed,
                     the optimizer, the output folder and the callbacks (a callback's on_train_begin)
    epoch_s          seconds of each epoch, from the callback's on_epoch_begin to its on_epoch_end:
                     the pass over the DataLoader (per-sample __getitem__ and collate), forward,
                     backward, Adam, one loss.item() per step, and the deepcopy of the best model
                     that pythae makes after an epoch that lowers the training loss
    finish_s         after the last epoch until the pipeline returns: saving the final model
                     (model.pt, model_config.json, environment.json, training_config.json and the
                     custom encoder/decoder as cloudpickle files)
    train_s          the whole pipeline call (setup's pipeline part + epochs + finish)
    samples, steps_per_epoch, threads, torch, pythae, params, final_loss
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()
import torch  # noqa: E402

T_TORCH = time.perf_counter()
from torch import nn  # noqa: E402

from pythae.models import VAE, VAEConfig  # noqa: E402
from pythae.models.base.base_utils import ModelOutput  # noqa: E402
from pythae.models.nn import BaseDecoder, BaseEncoder  # noqa: E402
from pythae.pipelines import TrainingPipeline  # noqa: E402
from pythae.trainers import BaseTrainerConfig  # noqa: E402
from pythae.trainers.training_callbacks import TrainingCallback  # noqa: E402

T_PYTHAE = time.perf_counter()


class MLPEncoder(BaseEncoder):
    """(B, C, H, W) -> flatten -> hidden -> ReLU -> 2L, returned as embedding (mu) and log_covariance."""

    def __init__(self, d: int, hidden: int, latent: int):
        BaseEncoder.__init__(self)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.net(x).chunk(2, dim=1)  # (B, L), (B, L)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class MLPDecoder(BaseDecoder):
    """(B, L) -> hidden -> ReLU -> D -> sigmoid, reshaped to (B, C, H, W)."""

    def __init__(self, shape: tuple[int, ...], hidden: int, latent: int):
        BaseDecoder.__init__(self)
        d = 1
        for s in shape:
            d *= s
        self.net = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d), nn.Unflatten(1, shape))

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))


class EpochTimer(TrainingCallback):
    """Timestamps of pythae's own training events."""

    def __init__(self):
        self.train_begin = None
        self.epochs: list[tuple[float, float]] = []
        self._begin = 0.0
        self.last_loss = float("nan")

    def on_train_begin(self, training_config, **kwargs):
        self.train_begin = time.perf_counter()

    def on_epoch_begin(self, training_config, **kwargs):
        self._begin = time.perf_counter()

    def on_epoch_end(self, training_config, **kwargs):
        self.epochs.append((self._begin, time.perf_counter()))

    def on_log(self, training_config, logs, **kwargs):
        self.last_loss = float(logs.get("train_epoch_loss", float("nan")))


def main() -> None:
    ap = argparse.ArgumentParser(description="train pythae's VAE once; print its timings as JSON")
    ap.add_argument("--data", required=True, help=".npy of float32 images (N, C, H, W)")
    ap.add_argument("--out", required=True, help="pythae's output_dir (a temporary folder)")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--latent", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import numpy as np

    images = torch.from_numpy(np.load(args.data))  # (N, C, H, W) float32; reading it is not timed
    shape = tuple(images.shape[1:])
    d = int(np.prod(shape))

    t_setup = time.perf_counter()
    torch.manual_seed(args.seed)
    model_config = VAEConfig(input_dim=shape, latent_dim=args.latent, reconstruction_loss="mse")
    model = VAE(model_config, encoder=MLPEncoder(d, args.hidden, args.latent), decoder=MLPDecoder(shape, args.hidden, args.latent))
    training_config = BaseTrainerConfig(
        output_dir=args.out,
        num_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=args.batch,
        optimizer_cls="Adam",
        steps_saving=None,
        seed=args.seed,
        no_cuda=True,
    )
    pipeline = TrainingPipeline(model=model, training_config=training_config)
    timer = EpochTimer()
    t_call = time.perf_counter()
    pipeline(train_data=images, callbacks=[timer])
    t_end = time.perf_counter()

    if timer.train_begin is None or len(timer.epochs) != args.epochs:
        raise SystemExit(f"pythae ran {len(timer.epochs)} epoch(s), expected {args.epochs}")
    from importlib.metadata import version

    result = {
        "torch_import_s": T_TORCH - T0,
        "import_s": T_PYTHAE - T_TORCH,
        "setup_s": timer.train_begin - t_setup,
        "epoch_s": [b - a for a, b in timer.epochs],
        "finish_s": t_end - timer.epochs[-1][1],
        "train_s": t_end - t_call,
        "samples": int(images.shape[0]),
        "steps_per_epoch": len(pipeline.trainer.train_loader),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pythae": version("pythae"),
        "params": sum(p.numel() for p in model.parameters()),
        "final_loss": timer.last_loss,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
