"""Views of a trained model's latent space (`vaelab latent DIR`), as the lectures and the MNIST
study show them: where the data lands, what each latent does, and what the decoder makes of inputs
it never saw.

    paths = latent_views("runs/digits")      # PNGs in runs/digits/latent/, and a report section

- latent.png: the latent means of test images, coloured by label: the means themselves for a
  2-D latent, a t-SNE embedding (van der Maaten & Hinton 2008, scikit-learn) for more dims, the
  value against the image index for one dim;
- traversals.png: one row per latent (the 16 most active, by mean KL, when there are more), each
  varied over [−3, 3] with the others fixed at a reference code (the mean of the first image drawn
  for the scatter);
- interpolation.png: decodes of (1 − t)·μ_a + t·μ_b between two test images, t from 0 to 1;
- reconstructions.png: test inputs (odd rows) above their reconstructions (even rows);
- ood.png: pure uniform noise in (odd rows), what comes out (even rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaelab.checkpoint import load_run
from vaelab.data import load_data, test_data_config
from vaelab.device import inference_layout
from vaelab.errors import UserError
from vaelab.images import interleave_rows, make_grid, png_bytes
from vaelab.models import class_labels
from vaelab.report import fig_png, plt, report_path
from vaelab.run_report import write_run_report
from vaelab.runfolder import atomic_write, read_metrics
from vaelab.sample import batches, reconstruct

TRAVERSAL = torch.linspace(-3.0, 3.0, 9)
"""the values each latent takes in a traversal row"""
MAX_ROWS = 16
"""traversal rows at most (the most active latents)"""
TSNE_POINTS = 2000
"""test images embedded by t-SNE at most (it is O(N²))"""


@torch.no_grad()
def latent_means(model, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """μ of q(z|x) for every image: (N, C, H, W) [labels (N,) for a conditional model] → (N, L) on the CPU."""
    device = next(model.parameters()).device
    with inference_layout(model) as size:
        return torch.cat([model.posterior_params(x, y)[0].cpu() for x, y in batches(images, labels, size, device)])


@torch.no_grad()
def active_dims(model, images: torch.Tensor, labels: torch.Tensor | None = None, limit: int = MAX_ROWS) -> list[int]:
    """The latent dims with the largest mean KL over the images (all of them when L ≤ limit)."""
    if model.latent_dim <= limit or model.deterministic:
        return list(range(min(model.latent_dim, limit)))
    device = next(model.parameters()).device
    mu, logvar = model.posterior_params(images[:2048].to(device), None if labels is None else labels[:2048].to(device))
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(0)  # (L,)
    return sorted(kl.argsort(descending=True)[:limit].tolist())


@torch.no_grad()
def traversals(model, reference: torch.Tensor, dims: list[int], values: torch.Tensor = TRAVERSAL, label: int | None = None) -> torch.Tensor:
    """Decodes with latent d set to each value, the others at `reference` (L,): (len(dims)·V, C, H, W),
    one row of V images per dim (a conditional model decodes them all as class `label`)."""
    device = next(model.parameters()).device
    z = reference.repeat(len(dims) * len(values), 1)  # (D·V, L)
    for i, d in enumerate(dims):
        z[i * len(values) : (i + 1) * len(values), d] = values
    return model.decode(z.to(device), class_labels(model, len(z), label)).cpu()


@torch.no_grad()
def interpolation(model, mu_a: torch.Tensor, mu_b: torch.Tensor, steps: int = 10, label: int | None = None) -> torch.Tensor:
    """Decodes of (1 − t)·μ_a + t·μ_b for t in [0, 1]: (steps, C, H, W) (as class `label` for a
    conditional model)."""
    device = next(model.parameters()).device
    t = torch.linspace(0.0, 1.0, steps)[:, None]  # (S, 1)
    return model.decode(((1 - t) * mu_a + t * mu_b).to(device), class_labels(model, steps, label)).cpu()


def embedding(mu: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of latent means (N, L) and how they were made."""
    m = mu.double().numpy()
    if not np.isfinite(m).all():
        m = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
    if float(m.std(0).max()) < 1e-9:  # every image has the same code (a collapsed posterior): nothing to embed
        return np.stack([np.arange(len(m)), np.zeros(len(m))], 1), "latent means (all equal: the posterior has collapsed) against image index"
    if m.shape[1] == 1:
        return np.stack([np.arange(len(m)), m[:, 0]], 1), "z (one latent dim) against image index"
    if m.shape[1] == 2:
        return m, "latent means (z₁, z₂)"
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(m) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(m), f"t-SNE of the {m.shape[1]}-D latent means"


def scatter_png(xy: np.ndarray, labels: torch.Tensor | None, title: str) -> bytes:

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, color="#1f4e79")
    else:
        lab = labels.numpy()
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=lab, s=4, alpha=0.7, cmap="tab10" if lab.max() < 10 else "viridis")
        fig.colorbar(sc, ax=ax, fraction=0.05, label="label")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig_png(fig)


def latent_views(run_dir: Path | str, *, n: int = 0, seed: int = 0) -> dict[str, Path]:
    """Write the latent views of the run in `run_dir` into `run_dir/latent/` and rebuild its
    report (which shows them); returns name → path.

    Arguments:
        n: test images (0: the dataset's test set, or 2,000 new draws; files: their own images).
        seed: seed of t-SNE and of the noise images.
    """
    run_dir = Path(run_dir)
    cfg, model = load_run(run_dir)
    read_metrics(run_dir / "metrics.jsonl")  # the report rebuilt at the end reads it: a damaged one is refused before anything is written
    report_path(run_dir)
    test = load_data(test_data_config(cfg.data, n))
    x = test.images
    if len(x) < 3:

        raise UserError(f"vaelab latent needs at least 3 test images (an embedding, two to interpolate), got {len(x)}: raise --n")
    out = run_dir / "latent"
    out.mkdir(exist_ok=True)
    paths = {}

    def save(name: str, png: bytes) -> None:
        paths[name] = atomic_write(out / f"{name}.png", png)

    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:TSNE_POINTS].sort().values
    y = test.labels if model.n_classes else None  # a conditional model's encoder and decoder take them
    pick = (lambda t, i: None if t is None else t[i])
    mu = latent_means(model, x[keep], pick(y, keep))
    xy, how = embedding(mu, seed)
    save("latent", scatter_png(xy, None if test.labels is None else test.labels[keep], how))
    dims = active_dims(model, x, y)
    first = None if y is None else int(y[keep[0]])  # the reference image's class
    rows = traversals(model, mu[0], dims, label=first)
    save("traversals", png_bytes(make_grid(rows, nrow=len(TRAVERSAL))))
    pair = interpolation(model, mu[0], mu[1], label=first)
    save("interpolation", png_bytes(make_grid(pair, nrow=len(pair))))
    inputs = x[:16]
    save("reconstructions", png_bytes(make_grid(interleave_rows(inputs, reconstruct(model, inputs, pick(y, slice(0, 16))), 8), nrow=8)))
    noise = torch.rand((8, *x.shape[1:]), generator=torch.Generator().manual_seed(seed))
    noise_y = torch.arange(8) % model.n_classes if model.n_classes else None  # noise presented as classes 0, 1, …
    save("ood", png_bytes(make_grid(interleave_rows(noise, reconstruct(model, noise, noise_y), 8), nrow=8)))
    atomic_write(out / "traversal_dims.txt", " ".join(map(str, dims)) + "\n")
    write_run_report(run_dir)
    return paths
