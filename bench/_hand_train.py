"""Helper of bench/process_time.py: a hand-written standalone training script (no vaelab).

    .venv/bin/python bench/_hand_train.py --data IMAGES.npy --out DIR --epochs 3 --batch 32 \
        --lr 1e-3 --hidden 115 --latent 8 --seed 0

What a user would write instead of `vaelab train` for the same work: read the images from the
.npy file, build vaelab's fc1 VAE as plain `nn.Sequential`s (with vaelab's layer names, so the
weights files compare key for key), train it with Adam on vaelab's loss (squared error of
sigmoid(logits) summed over pixels + the Gaussian KL, batch means) over vaelab's shuffles and
seeds, and write the weights to DIR/model.safetensors. It prints one line: the steps and the
seconds of the training loop.
"""

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description="train a dense VAE on an .npy of images; write model.safetensors")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--latent", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    x = torch.from_numpy(np.load(args.data))  # (N, C, H, W) float32
    n, shape = x.shape[0], tuple(x.shape[1:])
    d, h, l = math.prod(shape), args.hidden, args.latent
    torch.manual_seed(args.seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.ReLU(), nn.Linear(h, 2 * l))
    decoder = nn.Sequential(nn.Linear(l, h), nn.ReLU(), nn.Linear(h, d), nn.Unflatten(1, shape))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=args.lr)

    start, steps = time.perf_counter(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 1_000_003 + epoch))
        shuffled = x[order]
        for i in range(math.ceil(n / args.batch)):
            batch = shuffled[i * args.batch : (i + 1) * args.batch]  # (B, C, H, W)
            mu, logvar = encoder(batch).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            recon = (torch.sigmoid(decoder(z)) - batch).pow(2).flatten(1).sum(1).mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            (recon + kl).backward()
            optimizer.step()
            steps += 1
    loop = time.perf_counter() - start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    weights.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"))
    print(f"trained {steps} steps in {loop:.3f} s")


if __name__ == "__main__":
    main()
