"""vaelab's built-in feature net for FID with no download: a small LeNet-style classifier (LeCun et
al. 1998) trained on the dataset's own labelled images, its penultimate layer as the features.

    net = feature_net(train.images, train.labels)       # trained once, then read from the cache
    fid(net(real_images), net(generated_images))
    net.predict(generated_images)                       # class labels, for the class distribution

Practitioners compute FID for MNIST-like data this way (Alemohammad et al. 2024 used LeNet
features); such figures are not Inception-FID and are labelled with `net.name`. The trained net is
cached as safetensors under `$VAELAB_CACHE` (default `~/.cache/vaelab`), keyed by a content hash of
the images, the labels and the net's config, so the same data always gets the same features.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from vaelab.errors import UserError
from vaelab.runfolder import load_tensors, save_tensors


@dataclass(frozen=True)
class FeatureNetConfig:
    """How the feature net is built and trained (part of its cache key)."""

    channels: tuple[int, int] = (16, 32)
    """output channels of the two 3×3 convolutions (each followed by ReLU and 2×2 max-pooling)"""
    features: int = 128
    """width of the penultimate layer: the feature dimension"""
    steps: int = 800
    """Adam steps (a small dataset gets many passes, a large one a few)"""
    batch_size: int = 128
    lr: float = 1e-3
    max_train: int = 20000
    """at most this many labelled images train it (a seeded subset); 10% of them are held out"""
    seed: int = 0


class LeNet(nn.Module):
    """(N, C, H, W) → conv 3×3 → ReLU → pool → conv 3×3 → ReLU → pool → dense → ReLU (features) → classes."""

    def __init__(self, shape: tuple[int, int, int], n_classes: int, cfg: FeatureNetConfig):
        super().__init__()
        c, h, w = shape
        c1, c2 = cfg.channels
        self.body = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, c1, H/2, W/2)
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, c2, H/4, W/4)
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), cfg.features), nn.ReLU(),  # (N, features)
        )  # fmt: skip
        self.head = nn.Linear(cfg.features, n_classes)  # (N, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class FeatureNet:
    """A trained LeNet: `net(images)` → features (N, D); `net.predict(images)` → labels (N,).

    Attributes:
        name: names the net in every figure it makes, e.g. "LeNet-128 (fontdigits 3f9a…, acc 0.98)".
        shape: the (C, H, W) it was trained on; other shapes are refused.
        accuracy: its accuracy on the held-out 10% of its training images.
    """

    def __init__(self, net: LeNet, shape: tuple[int, int, int], n_classes: int, key: str, accuracy: float, source: str):
        self.net, self.shape, self.n_classes, self.key, self.accuracy = net.eval(), tuple(shape), n_classes, key, accuracy
        self.name = f"LeNet-{net.head.in_features} ({source} {key[:8]}, held-out accuracy {accuracy:.3f})"

    def _check(self, images: torch.Tensor) -> None:
        if tuple(images.shape[1:]) != self.shape:
            raise UserError(f"the feature net was trained on images of shape {self.shape}, got {tuple(images.shape[1:])}")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """Penultimate-layer features (N, D), float32 on the CPU."""
        self._check(images)
        return torch.cat([self.net.body(x) for x in images.float().split(batch_size)])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """The classifier's labels (N,) int64."""
        self._check(images)
        return torch.cat([self.net(x).argmax(1) for x in images.float().split(batch_size)])


def cache_dir() -> Path:
    return Path(os.environ.get("VAELAB_CACHE") or Path.home() / ".cache" / "vaelab")


def content_key(images: torch.Tensor, labels: torch.Tensor, cfg: FeatureNetConfig) -> str:
    """sha256 of the images, the labels and the net's config."""
    h = hashlib.sha256()
    h.update(repr((tuple(images.shape), asdict(cfg))).encode())
    h.update(images.detach().float().contiguous().numpy().tobytes())
    h.update(labels.detach().long().contiguous().numpy().tobytes())
    return h.hexdigest()


def feature_net(images: torch.Tensor, labels: torch.Tensor | None, cfg: FeatureNetConfig | None = None, *, source: str = "data", cache: Path | str | None = None) -> FeatureNet:
    """The feature net for these labelled images: read from the cache, or trained and cached.

    Arguments:
        images: (N, C, H, W) the dataset's training images.
        labels: (N,) their class labels; None is a user error (FID needs a labelled dataset).
        cfg: how the net is built and trained; None is `FeatureNetConfig()`.
        source: the dataset's name, for the net's `name`.
        cache: the cache folder (default `$VAELAB_CACHE` or ~/.cache/vaelab).
    """
    if labels is None:
        raise UserError(
            f"FID and the class distribution need a labelled dataset to train the feature net: {source} has no labels "
            "(use fontdigits, digits, mnist or fashion-mnist, an array file with a 'labels' key, or pass your own feature extractor)"
        )
    shape = tuple(images.shape[1:])
    if min(shape[1:]) < 4:
        raise UserError(f"the feature net needs images of at least 4×4 pixels, got {shape}")
    n_classes = int(labels.max()) + 1
    cfg = cfg or FeatureNetConfig()
    key = content_key(images, labels, cfg)
    path = Path(cache or cache_dir()) / f"lenet-{key}.safetensors"
    with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
        torch.manual_seed(cfg.seed)
        net = LeNet(shape, n_classes, cfg)
    if path.is_file():
        tensors, meta = load_tensors(path)
        net.load_state_dict(tensors)
        return FeatureNet(net, shape, n_classes, key, float(meta["accuracy"]), source)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.max_train]
    held = order[: max(1, len(order) // 10)]
    fit_classifier(net, images[order[len(held) :]], labels[order[len(held) :]], cfg)
    accuracy = classifier_accuracy(net, images[held], labels[held])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, net.state_dict(), accuracy=accuracy, shape=",".join(map(str, shape)), source=source)
    return FeatureNet(net, shape, n_classes, key, accuracy, source)


def fit_classifier(net: LeNet, images: torch.Tensor, labels: torch.Tensor, cfg: FeatureNetConfig = FeatureNetConfig()) -> LeNet:
    """Train `net` with Adam on cross-entropy over (images, labels) for cfg.steps batches (the
    data reshuffled each pass, under cfg.seed). The caller's RNG is left as it was."""
    g = torch.Generator().manual_seed(cfg.seed)
    x, y = images.float(), labels.long()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        net.train()
        step = 0
        while step < cfg.steps:
            for idx in torch.randperm(len(x), generator=g).split(cfg.batch_size)[: cfg.steps - step]:
                loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
    return net.eval()


@torch.no_grad()
def classifier_accuracy(net: LeNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    correct = sum(int((net(x.float()).argmax(1) == y).sum()) for x, y in zip(images.split(2048), labels.split(2048)))
    return correct / len(images)
