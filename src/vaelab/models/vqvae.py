"""`vqvae`: the vector-quantised VAE (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete
Representation Learning").

The encoder maps an image to a grid of D-dim vectors z_e; each is replaced by its nearest of K
codebook vectors (z_q), and the decoder maps the grid back to logits. The gradient passes the
quantisation straight through (z_e + sg(z_q − z_e)). The loss per image:

    recon_weight·recon + ‖sg(z_e) − z_q‖² (codebook) + commitment·‖z_e − sg(z_q)‖² (commitment)

With `model.codebook_ema` the codebook is instead the exponential moving average of the vectors
assigned to each code (the paper's appendix; decay 0.99) and the codebook term is dropped. A code
no vector has chosen for a while (its usage average below 1/(100·K)) is restarted at a random
encoder output of the batch; the codebook itself starts at encoder outputs of the first batch. `perplexity` = exp(entropy of the batch's code histogram) is logged:
K when every code is used equally, 1 when one code takes everything.

The prior over code grids is learned after training (`after_training`): a GRU reads the grid in
raster order and predicts each code from those before it. Sampling draws a grid from it (at
temperature 1 + δ, δ = `sample.delta`) and decodes it. There is no ELBO: like the autoencoder, its
neg_elbo is the reconstruction term.

    x (B, C, H, W) → convs 4×4/2, 4×4/2, 1×1 → z_e (B, D, h, w), h = ⌊⌊H/2⌋/2⌋ → z_q (B, D, h, w)
    z_q (B, D·h·w) → 3×3 conv → transposed convs 4×4/2 (back to H, W) → (B, C, H, W) logits
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.errors import UserError, require
from vaelab.losses import LossWeights, reconstruction
from vaelab.models.vae import VAE


@dataclass(frozen=True)
class VQVAEParams:
    """vqvae's own keys, `model.<field>`. `model.latent_dim` is the size D of each code vector.
    Its loss has no KL and no variability term: of the `loss.*` settings it takes recon_weight."""

    channels: tuple[int, ...] = (32, 64)
    """output channels of the two stride-2 convolutions (the first and last entries are used)"""
    codebook_size: int = 64
    """the number K of codebook vectors (each of latent_dim numbers)"""
    codebook_ema: bool = False
    """update the codebook as a moving average of its assigned encoder outputs instead of by a loss term"""
    commitment: float = 0.25
    """weight of the commitment term ‖z_e − sg(z_q)‖² (the paper's β)"""
    prior_steps: int = 2000
    """Adam steps fitting the autoregressive prior over code grids after training"""

    loss_keys: ClassVar[tuple[str, ...]] = ("recon_weight",)
    """the `loss.*` settings the model honours; any other must keep its default"""
    aggregate_prior: ClassVar[bool] = False
    """it samples from its own code prior, fitted after training (`prior_steps`)"""

    def __post_init__(self):
        require(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "model.channels", f"must list one or two widths, each >= 1, got {list(self.channels)}")
        require(self.codebook_size >= 2, "model.codebook_size", f"must be >= 2, got {self.codebook_size}")
        require(self.commitment >= 0, "model.commitment", f"must be >= 0, got {self.commitment}")
        require(self.prior_steps >= 0, "model.prior_steps", f"must be >= 0, got {self.prior_steps}")

EMA_DECAY = 0.99
DEAD_FRACTION = 0.01
"""a code whose usage average falls below DEAD_FRACTION / K is restarted"""


def code_counts(idx: torch.Tensor, k: int) -> torch.Tensor:
    """How often each of the K codes occurs in idx (N,): float32 (K,), exact below 2^24. A scatter
    rather than torch.bincount, whose output size depends on the data (a GPU sync each step)."""
    return torch.zeros(k, device=idx.device).scatter_add_(0, idx, torch.ones(idx.shape, device=idx.device))


class Quantizer(nn.Module):
    """Nearest-code quantisation of (N, D) vectors against a (K, D) codebook, with usage tracking,
    the optional EMA update and dead-code restarts (both in training mode only)."""

    def __init__(self, k: int, d: int, ema: bool):
        super().__init__()
        self.ema = ema
        book = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k)
        if ema:
            self.register_buffer("codebook", book)
            self.register_buffer("ema_count", torch.ones(k))
            self.register_buffer("ema_sum", book.clone())
        else:
            self.codebook = nn.Parameter(book)
        self.register_buffer("usage", torch.full((k,), 1.0 / k))  # moving average of each code's share
        self.register_buffer("ready", torch.tensor(False))  # set once the codebook is initialised from data
        self.ready_here = False  # `ready` as last read here: read once per load, not once per step (a GPU sync)

    def _load_from_state_dict(self, *args, **kwargs):
        self.ready_here = False  # a loaded codebook may or may not be initialised: read `ready` again
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """flat (N, D) → (z_q (N, D), indices (N,))."""
        book = self.codebook
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)  # (N, K)
        idx = dist.argmin(1)  # (N,)
        if self.training:
            self._update(flat.detach(), idx)
        return self.codebook.index_select(0, idx), idx  # (N, D)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        k = self.codebook.shape[0]
        self.ready_here = self.ready_here or bool(self.ready)
        if not self.ready_here:  # the first training batch: codes start at its encoder outputs
            pick = torch.randint(len(flat), (k,), device=flat.device)
            self.codebook.copy_(flat[pick])
            if self.ema:
                self.ema_sum.copy_(flat[pick])
            self.ready.fill_(True)
            self.ready_here = True
            return
        counts = code_counts(idx, k).to(flat.dtype)  # (K,)
        self.usage.mul_(EMA_DECAY).add_(counts / len(idx), alpha=1 - EMA_DECAY)
        if self.ema:
            self.ema_count.mul_(EMA_DECAY).add_(counts, alpha=1 - EMA_DECAY)
            sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)  # (K, D)
            self.ema_sum.mul_(EMA_DECAY).add_(sums, alpha=1 - EMA_DECAY)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing: no empty code divides by 0
            self.codebook.copy_(self.ema_sum / smoothed[:, None])
        # restart dead codes at encoder outputs that exist now; a candidate is drawn for every code
        # and kept where the code is dead, so no step waits to learn how many are (a GPU sync)
        dead = (self.usage < DEAD_FRACTION / k)[:, None]  # (K, 1)
        pick = flat[torch.randint(len(flat), (k,), device=flat.device)]  # (K, D)
        self.codebook.copy_(torch.where(dead, pick, self.codebook))
        self.usage.copy_(torch.where(dead[:, 0], 1.0 / k, self.usage))
        if self.ema:
            self.ema_count.copy_(torch.where(dead[:, 0], 1.0, self.ema_count))
            self.ema_sum.copy_(torch.where(dead, pick, self.ema_sum))


class CodePrior(nn.Module):
    """p(c) = Π p(c_i | c_<i) over the P codes of a grid in raster order: a GRU over the codes."""

    def __init__(self, k: int, positions: int, embed: int = 64, hidden: int = 128):
        super().__init__()
        self.k, self.positions = k, positions
        self.embed = nn.Embedding(k + 1, embed)  # code K is the start token
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, k)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, P) → logits (B, P, K) of each code given the ones before it."""
        start = torch.full_like(codes[:, :1], self.k)
        h, _ = self.gru(self.embed(torch.cat([start, codes[:, :-1]], 1)))  # (B, P, H)
        return self.head(h)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """n code grids (n, P), drawn one position at a time (the CPU generator keeps it seeded)."""
        device = self.head.weight.device
        token = torch.full((n, 1), self.k, dtype=torch.int64, device=device)
        state, out = None, []
        for _ in range(self.positions):
            h, state = self.gru(self.embed(token), state)  # (n, 1, H)
            probs = torch.softmax(self.head(h[:, 0]).float().cpu() / temperature, 1)  # (n, K)
            token = torch.multinomial(probs, 1, generator=generator).to(device)  # (n, 1)
            out.append(token)
        return torch.cat(out, 1)


class VQVAE(VAE):
    """A VAE-shaped VQ-VAE: `posterior_params` gives the quantised grid flattened (B, D·h·w), which
    `decode` takes back; `prior_sample` draws grids from the learned code prior."""

    def __init__(self, encoder, decoder, quantizer: Quantizer, prior: CodePrior, grid: tuple[int, int, int], likelihood, commitment, prior_steps):
        super().__init__(encoder, decoder, math.prod(grid), likelihood, deterministic=True)  # no noise, no KL
        self.quantizer, self.prior, self.grid = quantizer, prior, grid
        self.commitment, self.prior_steps = commitment, prior_steps

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) → z_e (B·h·w, D), z_q (B·h·w, D), codes (B, h·w)."""
        d = self.grid[0]
        z_e = self.encoder(x).permute(0, 2, 3, 1).reshape(-1, d)  # (B·h·w, D)
        z_q, idx = self.quantizer(z_e)
        return z_e, z_q, idx.view(len(x), -1)

    def _to_grid(self, flat: torch.Tensor, batch: int) -> torch.Tensor:
        d, h, w = self.grid
        return flat.view(batch, h, w, d).permute(0, 3, 1, 2)  # (B, D, h, w)

    def posterior_params(self, x, labels=None):
        _, z_q, _ = self._encode(x)
        return self._to_grid(z_q, len(x)).flatten(1), None  # (B, D·h·w)

    def logits(self, z, labels=None):
        return self.decoder(z.view(len(z), *self.grid))  # (B, C, H, W)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """The code indices of each image: (B, h·w)."""
        return self._encode(x)[2]

    def loss(self, x, step: int, loss: LossWeights, inputs=None, labels=None):
        z_e, z_q, idx = self._encode(x if inputs is None else inputs)
        z_st = z_e + (z_q - z_e).detach()  # straight through
        logits = self.decoder(self._to_grid(z_st, len(x)))
        terms = {"recon": reconstruction(self.likelihood, logits, x)}
        per_image = (lambda t: t.pow(2).sum() / len(x))  # summed over the grid, mean over images
        terms["commitment"] = per_image(z_e - z_q.detach())
        total = loss.recon_weight * terms["recon"] + self.commitment * terms["commitment"]
        if not self.quantizer.ema:
            terms["codebook"] = per_image(z_e.detach() - z_q)
            total = total + terms["codebook"]
        p = code_counts(idx.flatten(), self.quantizer.codebook.shape[0]) / idx.numel()  # (K,)
        terms["perplexity"] = torch.exp(-(p * torch.log(p + 1e-10)).sum()).detach()
        return {"loss": total, **terms}

    def prior_sample(self, n: int, generator: torch.Generator, delta: float = 0.0) -> torch.Tensor:
        codes = self.prior.sample(n, generator, temperature=1.0 + delta).to(self.quantizer.codebook.device)  # (n, P)
        z_q = self.quantizer.codebook[codes.flatten()]  # (n·P, D)
        return self._to_grid(z_q, n).flatten(1)  # (n, D·h·w)

    def after_training(self, images: torch.Tensor, seed: int, batch_size: int = 128) -> dict[str, float]:
        """Fit the code prior, from a fresh seeded initialisation (so a resumed run refits it the
        same), to the training images' code grids: Adam, `prior_steps` steps. Returns its final
        `prior_nll` (nats per code; log K is a uniform guess)."""
        self.eval()
        with torch.no_grad():
            device = self.quantizer.codebook.device
            codes = torch.cat([self.codes(xb.to(device)) for xb in images.split(1024)])  # (N, P); streamed images come from the CPU
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for m in self.prior.modules():
                if m is not self.prior and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        g = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(self.prior.parameters(), lr=3e-3)
        nll = torch.tensor(math.log(self.prior.k))
        self.prior.train()
        for _ in range(self.prior_steps):
            batch = codes[torch.randint(len(codes), (min(batch_size, len(codes)),), generator=g).to(codes.device)]  # (B, P)
            nll = F.cross_entropy(self.prior(batch).flatten(0, 1), batch.flatten())
            optimizer.zero_grad(set_to_none=True)
            nll.backward()
            optimizer.step()
        self.eval()
        return {"prior_nll": nll.item()}


def grid_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """(H, W) after 0, 1 and 2 stride-2 convolutions (4×4, padding 1): each halves, rounding down."""
    sizes = [(h, w)]
    for _ in range(2):
        h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


def build_vqvae(m, shape) -> VQVAE:
    p = m.params
    c, h, w = shape
    sizes = grid_sizes(h, w)
    if min(sizes[-1]) < 1:
        raise UserError(f"vqvae halves the image twice: {h}x{w} images are too small (at least 4x4)")
    c1, c2 = p.channels[0], p.channels[-1]
    d, (gh, gw) = m.latent_dim, sizes[-1]
    encoder = nn.Sequential(
        nn.Conv2d(c, c1, 4, 2, 1),  # (B, c1, H/2, W/2)
        nn.ReLU(),
        nn.Conv2d(c1, c2, 4, 2, 1),  # (B, c2, H/4, W/4)
        nn.ReLU(),
        nn.Conv2d(c2, d, 1),  # (B, D, h, w)
    )
    pad = [(t[0] - 2 * s[0], t[1] - 2 * s[1]) for t, s in zip(sizes[:-1], sizes[1:])]  # what doubling misses (0 or 1)
    decoder = nn.Sequential(
        nn.Conv2d(d, c2, 3, padding=1),  # (B, c2, h, w)
        nn.ReLU(),
        nn.ConvTranspose2d(c2, c1, 4, 2, 1, output_padding=pad[1]),  # (B, c1, H/2, W/2)
        nn.ReLU(),
        nn.ConvTranspose2d(c1, c, 4, 2, 1, output_padding=pad[0]),  # (B, C, H, W)
    )
    quantizer = Quantizer(p.codebook_size, d, p.codebook_ema)
    prior = CodePrior(p.codebook_size, gh * gw)
    return VQVAE(encoder, decoder, quantizer, prior, (d, gh, gw), m.likelihood, p.commitment, p.prior_steps)
