"""Models: a name → spec registry (`MODELS`) and `build_model(config, shape)`.

Every model is a `VAE` (models/vae.py) around an encoder and a decoder. Each model file holds the
networks, the builder and the frozen dataclass of the model's own `model.<param>` keys (their
defaults and docstrings, and the `loss.*` keys the model honours); this table only names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from vaelab import config
from vaelab.errors import UserError
from vaelab.losses import loss_weights
from vaelab.models.conv import AsymParams, CNNParams, ConvParams, build_asym, build_conv
from vaelab.models.cvae import CVAEParams, build_cvae
from vaelab.models.factorvae import FactorVAEParams, build_factorvae
from vaelab.models.gaussian_fit import GaussianFitParams, build_gaussian_fit
from vaelab.models.introvae import IntroVAEParams, build_introvae
from vaelab.models.mlp import AEParams, Dense3Params, FC1Params, FC2Params, build_ae, build_dense
from vaelab.models.vae import VAE
from vaelab.models.vqvae import VQVAEParams, build_vqvae


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: `build(model_config, (C, H, W)) → VAE` and the dataclass of its own
    `model.<param>` keys (`params`), which also names the `loss.*` keys it honours."""

    build: Callable[..., VAE]
    params: type
    description: str
    conditional: bool = False
    """the model takes class labels (`model.classes` of them) wherever it takes images"""
    vectorizable: bool = True
    """members can train stacked in one vmap (`vaelab.vectorized`); False for models that update
    buffers in place while training"""
    graphable: bool = True
    """its training step can be captured once as a CUDA graph and replayed (`train.cuda_graph`):
    the step runs the same kernels every time, with no Python branch on the step or the data;
    False for models whose step changes (a warm-up phase, a codebook set from the first batch)"""
    fitted: bool = False
    """fitted in closed form after a training loop that changes nothing (gaussian-fit): no decoder
    likelihood, so no ELBO-based metric (a chain leaves its model columns empty)"""


MODELS: dict[str, ModelSpec] = {
    "fc1": ModelSpec(build_dense, FC1Params, "dense VAE, one hidden layer (chain study: 576-115-8)"),
    "fc2": ModelSpec(build_dense, FC2Params, "dense VAE, two hidden layers (chain study: 576-144-28-8)"),
    "conv": ModelSpec(build_conv, ConvParams, "conv encoder, transposed-conv decoder (chain study: 32 3x3 filters, 115)"),
    "asym": ModelSpec(build_asym, AsymParams, "conv encoder with the fc2 decoder (chain study)"),
    "ae": ModelSpec(build_ae, AEParams, "deterministic autoencoder (dense), the lectures' baseline"),
    "dense3": ModelSpec(build_dense, Dense3Params, "dense VAE of 3 layers each way, 784-392-196-z (the MNIST study's dense model: 780k weights at z = 16)"),
    "cnn": ModelSpec(
        build_conv, CNNParams, "small CNN VAE: 5x5 convs of 16 and 32 channels, 2x2 pooling, dense 64 (the MNIST study's CNN; 442k weights on 28x28 at z = 16)"
    ),
    "cvae": ModelSpec(
        build_cvae, CVAEParams, "conditional VAE (dense, 3 layers each way like dense3): encoder and decoder take the class label", conditional=True
    ),
    "vqvae": ModelSpec(
        build_vqvae,
        VQVAEParams,
        "VQ-VAE: conv encoder to a grid of codes (H/4 x W/4) from a codebook of model.codebook_size, a GRU prior over the codes for sampling",
        vectorizable=False,
        graphable=False,
    ),
    "introvae": ModelSpec(
        build_introvae,
        IntroVAEParams,
        "IntroVAE: the cnn's networks trained introspectively (the encoder's KL as the discriminator; model.margin, model.adversarial_weight, model.adversarial_warmup)",
        vectorizable=False,
        graphable=False,
    ),
    "factorvae": ModelSpec(
        build_factorvae,
        FactorVAEParams,
        "FactorVAE: the conv model with a discriminator on shuffled latents trained alongside, its total-correlation estimate weighted by model.tc_weight (Kim & Mnih 2018)",
    ),
    "gaussian-fit": ModelSpec(
        build_gaussian_fit,
        GaussianFitParams,
        "the exact baseline: a full-covariance Gaussian fitted by maximum likelihood to the flattened images (no network; model.jitter)",
        vectorizable=False,
        graphable=False,
        fitted=True,
    ),
}
config.MODEL_PARAMS.update({name: spec.params for name, spec in MODELS.items()})


def build_model(cfg, shape: tuple[int, int, int]) -> VAE:
    """The model `cfg.model.name` names, for images of shape (C, H, W)."""
    if MODELS[cfg.model.name].conditional and cfg.model.params.classes < 1:
        raise UserError(f"model {cfg.model.name} needs model.classes (or labelled training data to take it from)")
    return MODELS[cfg.model.name].build(cfg.model, tuple(shape))


def parameter_count(cfg, shape: tuple[int, int, int]) -> int:
    """The number of parameters of `build_model(cfg, shape)`, built on the meta device: nothing is
    allocated, so a model too large for any machine is counted, not built."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in build_model(cfg, shape).parameters())
    except (OverflowError, TypeError, RuntimeError) as e:  # a size beyond what a tensor can have
        raise UserError(f"model {cfg.model.name} cannot be built at these sizes ({', '.join(f'model.{k} = {v}' for k, v in vars(cfg.model.params).items())}, model.latent_dim = {cfg.model.latent_dim}): {str(e).splitlines()[0][:80]}") from None


def step_bytes(cfg, shape: tuple[int, int, int], batch: int) -> int:
    """Bytes one training step of `build_model(cfg, shape)` on a batch of `batch` images allocates:
    every tensor its loss and backward produce, traced on the meta device (nothing is allocated or
    computed). An upper bound on the step's activation memory (it counts tensors freed on the way)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Allocations(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            Allocations.total += sum(t.numel() * t.element_size() for t in tree_leaves(out) if isinstance(t, torch.Tensor))
            return out

    with torch.device("meta"):
        model = build_model(cfg, shape)
        x = torch.rand(batch, *shape)
        labels = torch.zeros(batch, dtype=torch.int64) if MODELS[cfg.model.name].conditional else None
        with Allocations():
            model.loss(x, 0, loss_weights(cfg.loss, 0), labels=labels)["loss"].backward()
    return Allocations.total


def fit_to_data(cfg, data):
    """`cfg` with `model.classes` taken from the data's labels when the model is conditional and
    leaves it 0; a UserError when such a model meets data without labels, or labels out of range."""
    name = cfg.model.name
    if not MODELS[name].conditional:
        return cfg
    if data.labels is None:
        raise UserError(f"model {name} conditions on class labels, but dataset {data.name or cfg.data.name} has none (use fontdigits, digits, mnist, fashion-mnist, sprites, or an array file with labels)")
    low, top = (int(data.labels.min()), int(data.labels.max()) + 1) if len(data.labels) else (0, 1)
    if low < 0:
        raise UserError(f"model {name}: class labels must be >= 0, dataset {data.name or cfg.data.name} has {low}")
    if cfg.model.params.classes == 0:
        return cfg.override({"model.classes": top})
    if top > cfg.model.params.classes:
        raise UserError(f"model.classes={cfg.model.params.classes} but dataset {data.name or cfg.data.name} has label {top - 1}")
    return cfg


def class_labels(model, n: int, label: int | None = None) -> torch.Tensor | None:
    """The labels to sample a conditional model with: n of class `label`, or every class in turn
    (0, 1, …, K − 1, 0, …) when None; None for an unconditional model (UserError with a `label`)."""
    k = getattr(model, "n_classes", 0)
    if not k:
        if label is not None:
            raise UserError("--class: this model is not conditional (train a cvae to sample by class)")
        return None
    if label is not None and not 0 <= label < k:
        raise UserError(f"--class must be in 0..{k - 1} (the model knows {k} classes), got {label}")
    return torch.full((n,), label, dtype=torch.int64) if label is not None else torch.arange(n) % k


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "ModelSpec", "VAE", "build_model", "class_labels", "count_parameters", "fit_to_data"]


@torch.no_grad()
def output_shape(model) -> tuple[int, int, int]:
    """The (C, H, W) of the images `model` decodes (one code decoded on its device)."""
    z = torch.zeros(1, model.latent_dim, device=next(model.parameters()).device)
    return tuple(model.decode(z, class_labels(model, 1)).shape[1:])
