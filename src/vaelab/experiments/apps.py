"""Applications from the lectures (docs/studies.md, the lectures): anomaly detection and data
augmentation with a VAE.

    run_anomaly(load_config("fontdigits-cnn"), "runs/anomaly", anomaly_class=7)
    run_augment(load_config("fontdigits-cnn"), "runs/augment", few=100)

Both split the labelled dataset once, seeded by data.seed: 80% is the pool a VAE trains on, 20%
the test images every figure is measured on.

Anomaly: the VAE trains on every class of the pool but one; each test image is scored by its
negative ELBO and by its reconstruction error (large = outlier), and the ROC-AUC of each score
says how well it separates the held-out class from the rest (0.5 = chance).

Augmentation: a small classifier (the LeNet of vaelab.metrics.featurenet) trains on `few` labelled
pool images; a VAE trained on the whole pool (no labels) generates `generated` images, labelled by
that classifier; a second classifier trains on the few real plus the generated images. Both
classifiers' test accuracies are reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from vaelab.config import Config
from vaelab.data import Dataset, load_data
from vaelab.device import check_fits
from vaelab.errors import UserError
from vaelab.evaluate import image_scores
from vaelab.images import save_grid
from vaelab.metrics.featurenet import FeatureNetConfig, LeNet, classifier_accuracy, fit_classifier
from vaelab.models import MODELS, class_labels
from vaelab.report import Section, fig_png, img, plt, table, write_page
from vaelab.run_report import run_section
from vaelab.runfolder import atomic_write, prepare_out
from vaelab.sample import sample
from vaelab.train import train

POOL_FRACTION = 0.8


def split(cfg: Config, what: str) -> tuple[Dataset, Dataset]:
    """(pool, test): the labelled dataset split 80/20 under data.seed."""
    data = load_data(cfg.data)
    if data.labels is None:
        raise UserError(f"{what} needs a labelled dataset: {cfg.data.name} has no labels (use fontdigits, digits, mnist or fashion-mnist)")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.data.seed))
    cut = int(POOL_FRACTION * len(data))
    return data.subset(order[:cut].sort().values), data.subset(order[cut:].sort().values)


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(positive.numpy(), scores.double().numpy()))


def histogram_png(scores: dict[str, torch.Tensor], positive: torch.Tensor, k: int, aucs: dict[str, float]) -> bytes:

    fig, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.4), squeeze=False)
    for ax, (name, s) in zip(axes.flat, scores.items()):
        s = s.double().numpy()
        bins = np.linspace(np.percentile(s, 0.5), np.percentile(s, 99.5), 50)
        ax.hist(s[~positive.numpy()], bins=bins, density=True, alpha=0.6, label="other classes", color="#1f4e79")
        ax.hist(s[positive.numpy()], bins=bins, density=True, alpha=0.6, label=f"class {k} (never trained on)", color="#c0392b")
        ax.set_title(f"{name}: ROC-AUC {aucs[name]:.3f}", fontsize=10)
        ax.set_xlabel("score (higher = more anomalous)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig_png(fig)


def run_anomaly(config: Config, out: Path | str, *, anomaly_class: int, force: bool = False, quiet: bool = False) -> dict:
    """Train on every class but `anomaly_class`; score the test images; write anomaly.json,
    scores.png and report.html into `out` (the VAE's run folder is `out/vae`). Returns the results."""
    if MODELS[config.model.name].conditional:
        raise UserError(f"vaelab anomaly scores images without knowing their class; model {config.model.name} needs it: use an unconditional model")
    pool, test = split(config, "vaelab anomaly")
    classes = sorted(int(c) for c in pool.labels.unique())
    if anomaly_class not in classes:
        raise UserError(f"--class {anomaly_class} does not exist in {config.data.name}; classes: {', '.join(map(str, classes))}")
    held = int((test.labels == anomaly_class).sum())
    if held == 0 or held == len(test):
        raise UserError(f"the test split ({len(test)} images) has {held} of class {anomaly_class}: ROC-AUC needs both kinds; use more data (data.n)")
    out = prepare_out(Path(out), "anomaly", force=force, inputs=config.input_paths())
    normal = pool.subset(pool.labels != anomaly_class)
    run = train(config, normal, out=out / "vae", quiet=quiet)
    scores = image_scores(run.model, test.images, seed=config.train.seed)
    positive = test.labels == anomaly_class
    aucs = {name: roc_auc(s, positive) for name, s in scores.items()}
    results = {
        "class": anomaly_class,
        "auc_neg_elbo": aucs["neg_elbo"],
        "auc_recon_error": aucs["recon_error"],
        "n_train": len(normal),
        "n_test_normal": int((~positive).sum()),
        "n_test_anomalous": int(positive.sum()),
        **{f"mean_{n}_normal": float(s[~positive].mean()) for n, s in scores.items()},
        **{f"mean_{n}_anomalous": float(s[positive].mean()) for n, s in scores.items()},
    }
    atomic_write(out / "anomaly.json", json.dumps(results, indent=1))
    atomic_write(out / "scores.png", histogram_png(scores, positive, anomaly_class, aucs))
    write_apps_report(out, "anomaly")
    return results


def run_augment(config: Config, out: Path | str, *, few: int = 100, generated: int = 1000, force: bool = False, quiet: bool = False) -> dict:
    """Classifiers trained on `few` real labelled images, with and without `generated` VAE images
    labelled by the first (or, from a conditional VAE, by the class each was drawn for); write
    augment.json, generated.png and report.html into `out`."""
    pool, test = split(config, "vaelab augment")
    if not 10 <= few <= len(pool):
        raise UserError(f"--few must be in 10..{len(pool)} (the pool's size), got {few}")
    if generated < 1:
        raise UserError(f"--generated must be >= 1, got {generated}")
    check_fits(generated * math.prod(pool.shape) * 4 * 2, torch.device("cpu"), f"--generated {generated:,} images")
    out = prepare_out(Path(out), "augment", force=force, inputs=config.input_paths())
    run = train(config, pool, out=out / "vae", quiet=quiet)
    g = torch.Generator().manual_seed(config.data.seed + 1)
    few_idx = torch.randperm(len(pool), generator=g)[:few]
    x_few, y_few = pool.images[few_idx], pool.labels[few_idx]
    n_classes = int(pool.labels.max()) + 1
    cfg = FeatureNetConfig(seed=config.train.seed)

    def classifier(x: torch.Tensor, y: torch.Tensor) -> LeNet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = LeNet(tuple(x.shape[1:]), n_classes, cfg)
        return fit_classifier(net, x, y, cfg)

    real_only = classifier(x_few, y_few)
    s = config.sample
    drawn = class_labels(run.model, generated)  # a conditional model: every class in turn
    fake = sample(run.model, generated, delta=s.delta, denoise=s.denoise, seed=s.seed, labels=drawn, prior=s.prior)
    with torch.no_grad():
        fake_labels = drawn if drawn is not None else real_only(fake).argmax(1)
    augmented = classifier(torch.cat([x_few, fake]), torch.cat([y_few, fake_labels]))
    results = {
        "few": few,
        "generated": generated,
        "accuracy_real": classifier_accuracy(real_only, test.images, test.labels),
        "accuracy_augmented": classifier_accuracy(augmented, test.images, test.labels),
        "n_test": len(test),
        "generated_label_counts": torch.bincount(fake_labels, minlength=n_classes).tolist(),
        "generated_labels": "conditional" if drawn is not None else "classifier",  # the cvae's classes, or the real-only classifier's guesses
    }
    atomic_write(out / "augment.json", json.dumps(results, indent=1))

    order = fake_labels.argsort(stable=True)
    save_grid(out / "generated.png", fake[order][:100], nrow=10)
    write_apps_report(out, "augment")
    return results


def anomaly_section(out: Path, results: dict) -> Section:
    """The head of an anomaly run's report, from anomaly.json and scores.png."""
    return Section(
        f"Anomaly detection: class {results['class']} held out",
        "<p>The VAE never saw this class; each test image is scored by its negative ELBO and by its "
        "reconstruction error. ROC-AUC 1 separates the class perfectly, 0.5 is chance.</p>"
        + table([results])
        + img((out / "scores.png").read_bytes(), "score histograms (density)", pixelated=False),
    )


def augment_section(out: Path, results: dict) -> Section:
    """The head of an augmentation run's report, from augment.json and generated.png."""
    shown = {k: v for k, v in results.items() if k != "generated_label_counts"}
    return Section(
        "Data augmentation",
        f"<p>A classifier trained on {results['few']} real labelled images, against one trained on them plus "
        f"{results['generated']} VAE samples labelled by the first.</p>"
        + table([shown])
        + img((out / "generated.png").read_bytes(), "generated images, sorted by the label they were given"),
    )


HEADS = {"anomaly": anomaly_section, "augment": augment_section}
"""each application's own section, above the section of the VAE it trained"""


def write_apps_report(out: Path | str, kind: str) -> Path:
    """report.html of an anomaly or augmentation run, from its json, pictures and VAE folder."""
    out = Path(out)
    head = HEADS[kind](out, json.loads((out / f"{kind}.json").read_text()))
    return write_page(out / "report.html", f"vaelab {kind}: {out.name}", [head, run_section(out / "vae", "The VAE")], str(out))
