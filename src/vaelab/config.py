"""Configuration: frozen dataclasses, presets, `--set` overrides and validation.

A config is built from a nested dict (a preset or a user's TOML file, then `key=value`
overrides) by `Config.from_dict`, which checks every key and type and fills every default;
`Config.to_dict` gives the fully resolved dict that a run folder stores as `config.toml`.
Dataset parameters (`data.p_x`, `data.mu`, …) live in each dataset's own dataclass, found
through the dataset registry.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from vaelab.data import DATASETS
from vaelab.errors import UserError, require
from vaelab.presets import preset_names, read_preset  # noqa: F401  (vaelab.config's API since the start)
from vaelab.runfolder import read_toml

Likelihood = Literal["gaussian", "bernoulli"]
KLSchedule = Literal["constant", "linear", "cyclical"]
DIP = Literal["off", "i", "ii"]
TCEstimator = Literal["mws", "mss"]


SEED_MAX = 2**32 - 1
"""the largest seed: seeds derived from it (per epoch, generation, cell) stay within 64 bits"""


def is_device_name(name: str) -> bool:
    """The forms `train.device` takes: auto, cpu, cuda or cuda:N (whether this machine has it is
    `vaelab.device.resolve_device`'s question)."""
    return name in ("cpu", "cuda", "auto") or (name.startswith("cuda:") and name[5:].isdigit())


@dataclass(frozen=True)
class DataConfig:
    """Which images to train on. Parameters of the chosen dataset are `data.<param>` too."""

    name: str = "points"
    """dataset name (`vaelab datasets` lists them)"""
    n: int = 0
    """number of images; 0 takes the dataset's default size (all of a file)"""
    seed: int = 0
    """seed of the generator (generated data) or of the subsample (data from files)"""
    path: str = ""
    """file or folder to read, for datasets read from files (mnist, array, images)"""
    params: Any = None
    """the dataset's own parameters: a frozen dataclass from the dataset registry"""

    def __post_init__(self):
        require(0 <= self.n <= 100_000_000, "data.n", f"must be in 0..100,000,000 (0 = the dataset's default), got {self.n}")
        require(0 <= self.seed <= SEED_MAX, "data.seed", f"must be in 0..{SEED_MAX}, got {self.seed}")


@dataclass(frozen=True)
class ModelConfig:
    """The architecture; the image shape comes from the data. Parameters of the chosen model are
    `model.<param>` too: each model file declares them (`vaelab keys model` lists them)."""

    name: str = "fc2"
    """model name (`vaelab.models.MODELS`): fc1, fc2, conv, asym, ae, dense3, cnn, cvae, vqvae, introvae"""
    latent_dim: int = 8
    """size of the latent code z, 1 to 2048"""
    likelihood: Likelihood = "gaussian"
    """output likelihood: gaussian (summed squared error) or bernoulli (summed binary cross-entropy)"""
    params: Any = None
    """the chosen model's own parameters (an instance of its dataclass, `MODEL_PARAMS[name]`)"""

    def __post_init__(self):
        require(1 <= self.latent_dim <= 2048, "model.latent_dim", f"must be in 1..2048, got {self.latent_dim}")

    @property
    def batch_norm(self) -> bool:
        """Whether the model normalises batches (`model.batch_norm` of the models that have it):
        its training needs batches of 2 or more and cannot be vectorized."""
        return getattr(self.params, "batch_norm", False)


MODEL_PARAMS: dict[str, type] = {}
"""model name → the frozen dataclass of its own `model.<param>` keys, whose `loss_keys` name the
`loss.*` settings it honours. vaelab.models fills it as it registers each model (this module
imports vaelab.models at its very end, so it is filled before any config is built, whichever
module a script imports first): the models import the config, and the config only triggers them."""


@dataclass(frozen=True)
class LossConfig:
    """total = recon_weight·recon + β(step)·KL + variability_weight·|V(x) − V(x̂)|, per sample; a VAE
    may add tc_weight·TC (β-TCVAE), take β·|KL − C(step)| for β·KL (annealed capacity) and add
    DIP's covariance penalty (docs/models.md, "Disentangling losses")."""

    recon_weight: float = 1.0
    """weight of the reconstruction term (summed over pixels, averaged over the batch)"""
    beta: float = 1.0
    """weight β of the KL term (β-VAE; λ in the chain study)"""
    variability_weight: float = 0.0
    """weight of |V(x) − V(x̂)|, V = mean squared L2 distance over all pairs in the batch"""
    kl_schedule: KLSchedule = "constant"
    """constant β; linear warm-up from 0 over warmup_steps; cyclical: warm-up, hold, repeat"""
    warmup_steps: int = 0
    """length of the linear ramp (linear, cyclical); a cyclical period is 2 × warmup_steps"""
    tc_weight: float = 0.0
    """β-TCVAE (Chen et al. 2018): weight of the total-correlation estimate added to the loss, on top
    of β·KL (β = 1 with tc_weight = b − 1 is their objective with α = γ = 1, TC weight b); 0 = off"""
    tc_estimator: TCEstimator = "mws"
    """the TC's minibatch estimate: mws (minibatch weighted sampling) or mss (stratified); needs tc_weight > 0"""
    capacity_max: float = 0.0
    """annealed capacity (Burgess et al. 2018): > 0 makes the KL term β·|KL − C(step)|, C rising
    linearly from 0 to capacity_max nats over capacity_steps (β is their γ); 0 = off"""
    capacity_steps: int = 0
    """steps over which the capacity C rises to capacity_max (needs capacity_max > 0)"""
    dip: DIP = "off"
    """DIP-VAE (Kumar et al. 2018): i penalises the covariance of the batch's posterior means away
    from the identity; ii that of the whole aggregate posterior (means' covariance + mean variance)"""
    dip_offdiag: float = 10.0
    """DIP's weight λ_od on the squared off-diagonal covariances (needs dip = i or ii)"""
    dip_diag: float = 100.0
    """DIP's weight λ_d on the squared gaps of the diagonal from 1 (needs dip = i or ii)"""

    def __post_init__(self):
        require(self.recon_weight >= 0, "loss.recon_weight", f"must be >= 0, got {self.recon_weight}")
        require(self.beta >= 0, "loss.beta", f"must be >= 0, got {self.beta}")
        require(self.variability_weight >= 0, "loss.variability_weight", f"must be >= 0, got {self.variability_weight}")
        require(self.warmup_steps >= 0, "loss.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(
            self.kl_schedule == "constant" or self.warmup_steps > 0,
            "loss.warmup_steps",
            f"must be > 0 for kl_schedule={self.kl_schedule}",
        )
        require(self.tc_weight >= 0, "loss.tc_weight", f"must be >= 0, got {self.tc_weight}")
        require(self.tc_weight > 0 or self.tc_estimator == "mws", "loss.tc_estimator", f"= {self.tc_estimator} is ignored without loss.tc_weight > 0")
        require(self.capacity_max >= 0, "loss.capacity_max", f"must be >= 0, got {self.capacity_max}")
        require(self.capacity_max == 0 or self.capacity_steps > 0, "loss.capacity_steps", f"must be > 0 with loss.capacity_max = {self.capacity_max}")
        require(self.capacity_max > 0 or self.capacity_steps == 0, "loss.capacity_steps", f"= {self.capacity_steps} is ignored without loss.capacity_max > 0")
        require(self.dip_offdiag >= 0 and self.dip_diag >= 0, "loss.dip_offdiag", f"and loss.dip_diag must be >= 0, got {self.dip_offdiag} and {self.dip_diag}")
        require(
            self.dip != "off" or (self.dip_offdiag, self.dip_diag) == (type(self).dip_offdiag, type(self).dip_diag),
            "loss.dip_offdiag",
            f"and loss.dip_diag are ignored with loss.dip = off (got {self.dip_offdiag} and {self.dip_diag}); set loss.dip = i or ii",
        )


TrainLogger = Literal["tensorboard", "mlflow"]
"""the names of vaelab.loggers.LOGGERS (config cannot import it; a test checks the two agree)"""


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: Adam over in-memory batches."""

    epochs: int = 5
    """passes over the data (ignored when `steps` > 0)"""
    steps: int = 0
    """optimizer steps; > 0 overrides `epochs`"""
    batch_size: int = 32
    """images per step"""
    lr: float = 1e-3
    """Adam learning rate"""
    seed: int = 0
    """seed of the initialisation, the shuffling and the reparameterisation noise"""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu, cuda or cuda:N"""
    precision: Literal["fp32", "bf16"] = "fp32"
    """fp32, or bf16: the forward pass under torch.autocast in bfloat16 (weights and optimizer stay fp32)"""
    compile: bool = False
    """compile the model's loss with torch.compile (single runs only). The cost is paid once per
    architecture and process (later runs of it, e.g. a chain's generations, reuse the code). On
    the CPU it never paid (measured: 18–33 s to compile fc1, conv or cnn, then steps 1.1–1.8× slower
    than eager); on a GPU its break-even is not measured yet, so it stays off unless asked for"""
    cuda_graph: Literal["auto", "on", "off"] = "auto"
    """capture the whole training step (forward, backward, Adam) once as a CUDA graph and replay it,
    one launch per step instead of hundreds: auto (on for a CUDA device, a model that allows it and
    no train.compile), on (an error where it cannot be), off"""
    checkpoint_every: int = 1000
    """steps between checkpoints (resume restarts from the last one)"""
    input_noise: float = 0.0
    """std of Gaussian noise added to the encoder's input each step (the loss still reconstructs the clean image)"""
    debias: bool = False
    """draw each epoch's batches by the inverse density of the training images' latent codes (the debiasing VAE; `vaelab.debias`) instead of a shuffle"""
    debias_smoothing: float = 0.01
    """α in the debiasing weights Π_d 1/(Q̂_d + α): smaller debiases harder, large is uniform"""
    loggers: tuple[TrainLogger, ...] = ()
    """where training is also logged, besides the run folder: tensorboard (event files in the run
    folder's tensorboard/), mlflow (MLflow's tracking store: MLFLOW_TRACKING_URI, else ./mlflow.db);
    each needs its extra, e.g. pip install 'vaelab[tensorboard]' (see vaelab.loggers)"""

    def __post_init__(self):
        require(self.epochs >= 1 or self.steps >= 1, "train.epochs", "or train.steps must be >= 1")
        require(self.epochs >= 0, "train.epochs", f"must be >= 0, got {self.epochs}")
        require(self.steps >= 0, "train.steps", f"must be >= 0, got {self.steps}")
        require(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        require(0 <= self.seed <= SEED_MAX, "train.seed", f"must be in 0..{SEED_MAX}, got {self.seed}")
        require(self.input_noise >= 0, "train.input_noise", f"must be >= 0, got {self.input_noise}")
        require(self.debias_smoothing > 0, "train.debias_smoothing", f"must be > 0, got {self.debias_smoothing}")
        require(self.checkpoint_every >= 1, "train.checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        require(len(set(self.loggers)) == len(self.loggers), "train.loggers", f"names a logger twice: {list(self.loggers)}")
        require(is_device_name(self.device), "train.device", f"must be cpu, cuda, cuda:N or auto, got {self.device!r}")


@dataclass(frozen=True)
class SampleConfig:
    """Generation from the prior: z ~ N(0, (1+δ)² I), the decoder mean as the image."""

    n: int = 64
    """number of images generated for samples.png"""
    delta: float = 0.0
    """δ: widens the prior to N(0, (1+δ)² I); must be > -1"""
    denoise: float = 0.0
    """threshold: zero every pixel below denoise × (max over the generated set); 0 = off"""
    seed: int = 0
    """seed of the prior draws"""
    prior: Literal["standard", "aggregate"] = "standard"
    """standard: the model's prior; aggregate: a Gaussian mixture fitted to the training images'
    latent means after training (stored as prior.safetensors in the run folder; Ghosh et al. 2020)"""
    prior_components: int = 10
    """sample.prior = aggregate: the mixture's components (full covariances)"""

    def __post_init__(self):
        require(self.n >= 1, "sample.n", f"must be >= 1, got {self.n}")
        require(self.prior_components >= 1, "sample.prior_components", f"must be >= 1, got {self.prior_components}")
        require(
            self.prior == "aggregate" or self.prior_components == SampleConfig.prior_components,
            "sample.prior_components",
            f"= {self.prior_components} is used only with sample.prior = aggregate",
        )
        require(0 <= self.seed <= SEED_MAX, "sample.seed", f"must be in 0..{SEED_MAX}, got {self.seed}")
        require(self.delta > -1, "sample.delta", f"must be > -1, got {self.delta}")
        require(0 <= self.denoise < 1, "sample.denoise", f"must be in [0, 1), got {self.denoise}")


ChainMode = Literal["replace", "mix", "accumulate", "accumulate-subsample", "fresh"]


@dataclass(frozen=True)
class ChainConfig:
    """A chain of VAEs, each trained on data generated by the one before (`vaelab chain`)."""

    generations: int = 20
    """G: VAEs 0..G−1 are trained; datasets 0 (the original) to G are measured"""
    mode: ChainMode = "replace"
    """training data of VAE g: replace (the study's: D_g), mix (real_fraction of real data kept),
    accumulate (D_0 ∪ … ∪ D_g), accumulate-subsample (budget drawn from that pool),
    fresh (new real samples each generation plus D_g)"""
    real_fraction: float = 0.0
    """mix and fresh: the fraction of real images in each generation's training set"""
    budget: int = 0
    """accumulate-subsample: training-set size drawn from the pool; 0 = the original size"""
    init: Literal["scratch", "finetune"] = "scratch"
    """scratch (the study's: a fresh initialisation) or finetune (start from VAE g−1's weights)"""
    seeds: int = 1
    """R: independent repeats of the whole chain (seed-0 … seed-(R−1))"""
    samples: int = 0
    """images generated per generation; 0 = the original training set's size"""
    quantize: bool = True
    """store generated images as 8-bit (×255, rounded), as the study did"""
    save_data: bool = False
    """write each generated dataset as gen-XXX/data.npz (key images)"""
    holdout: int = 2000
    """held-out original images for each model's negative ELBO"""
    metric_samples: int = 2000
    """images per set for precision/recall/density/coverage and memorisation (k-NN on pixels)"""
    iw_samples: int = 16
    """importance samples per held-out original for each generating VAE's nll_iw and its tail
    (nll_iw_q50 … tail_share); 0 leaves those columns empty"""

    def __post_init__(self):
        require(self.generations >= 1, "chain.generations", f"must be >= 1, got {self.generations}")
        require(0 <= self.real_fraction <= 1, "chain.real_fraction", f"must be in [0, 1], got {self.real_fraction}")
        require(
            self.mode not in ("mix", "fresh") or self.real_fraction > 0,
            "chain.real_fraction",
            f"must be > 0 for chain.mode={self.mode}",
        )
        require(self.budget >= 0, "chain.budget", f"must be >= 0, got {self.budget}")
        require(1 <= self.seeds <= 1000, "chain.seeds", f"must be in 1..1000, got {self.seeds}")
        require(self.samples >= 0, "chain.samples", f"must be >= 0 (0 = the training set's size), got {self.samples}")
        require(self.holdout >= 1, "chain.holdout", f"must be >= 1, got {self.holdout}")
        require(self.metric_samples >= 6, "chain.metric_samples", f"must be >= 6 (k = 5 neighbours), got {self.metric_samples}")
        require(self.iw_samples >= 0, "chain.iw_samples", f"must be >= 0 (0 leaves the likelihood's tail out), got {self.iw_samples}")


SweepMetric = Literal["pmi", "decoder_mse", "mcc", "factor_r2", "irs", "udr", "neg_elbo", "recon_mse", "elbo", "nll_iw", "fid", "prdc", "class", "posterior", "memorisation", "disentanglement", "rare"]
"""the names of vaelab.evaluate.METRICS (a test checks they agree; config does not import the metrics)"""


@dataclass(frozen=True)
class SweepConfig:
    """A grid of trainings, one per cell (`vaelab sweep`)."""

    grid: tuple[str, ...] = ()
    """swept keys, each "key=v1,v2,…" or "key=start:stop:step" (stop included), e.g. loss.beta=0.5,1,2; "k1+k2=[a,b],[c,d]" sweeps keys together, and "family: key=…" puts an entry in one family (the grid is then the union of its families)"""
    seeds: int = 1
    """R: repeats of every cell (train.seed and data.seed + r)"""
    metrics: tuple[SweepMetric, ...] = ()
    """measured after training, each cell and its untrained baseline: any of pmi, decoder_mse (need factors), neg_elbo, recon_mse, elbo, nll_iw, fid, prdc, class (need labels), posterior (a model with an ELBO), memorisation, disentanglement (points, sprites), rare (skewed sprites); docs/evaluation.md describes each"""
    pmi_fit: Literal["lstsq", "sgd"] = "lstsq"
    """how pmi fits its linear map: least squares, or the study's 3 epochs of SGD"""
    test_n: int = 0
    """test images; 0 = the dataset's whole enumerated test set (squares-test), or 2,000 new draws"""
    disentanglement_n: int = 10_000
    """points for the disentanglement scores (disentanglement_lib's 10,000; their eval/test sets get half)"""
    disentanglement_votes: int = 10_000
    """training points of the BetaVAE and FactorVAE scores (disentanglement_lib's 10,000; eval gets half); each encodes 64 images (BetaVAE: 64 pairs), so these two dominate on a CPU"""
    dci_classifier: Literal["boosting", "forest"] = "boosting"
    """DCI's trees: boosting (disentanglement_lib's gradient boosting) or forest (a random forest, about 6× faster on sprites)"""
    views: bool = False
    """draw each cell's latent views (as `vaelab latent`) and show every cell's traversals in the report"""

    def __post_init__(self):
        require(1 <= self.seeds <= 1000, "sweep.seeds", f"must be in 1..1000, got {self.seeds}")
        require(self.test_n >= 0, "sweep.test_n", f"must be >= 0, got {self.test_n}")
        require(self.disentanglement_n >= 20, "sweep.disentanglement_n", f"must be >= 20, got {self.disentanglement_n}")
        require(self.disentanglement_votes >= 20, "sweep.disentanglement_votes", f"must be >= 20, got {self.disentanglement_votes}")
        require(len(set(self.metrics)) == len(self.metrics), "sweep.metrics", f"lists a metric twice: {list(self.metrics)}")
        require(self.dci_classifier == "boosting" or "disentanglement" in self.metrics, "sweep.dci_classifier", f"= {self.dci_classifier} but sweep.metrics has no disentanglement (DCI is one of its scores)")


@dataclass(frozen=True)
class Config:
    """A whole configuration; each section is a frozen dataclass."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def __post_init__(self):
        require(
            self.loss.variability_weight == 0 or self.train.batch_size >= 2,
            "train.batch_size",
            f"must be >= 2 when loss.variability_weight > 0 (the term compares pairs), got {self.train.batch_size}",
        )
        require(
            not self.model.batch_norm or self.train.batch_size >= 2,
            "train.batch_size",
            f"must be >= 2 when model.batch_norm = true (batch statistics need pairs), got {self.train.batch_size}",
        )
        if self.model.params is None:  # a bare Config(): no model chosen through from_dict, nothing to check against
            return
        require(
            self.sample.prior == "standard" or type(self.model.params).aggregate_prior,
            "sample.prior",
            f"= aggregate: model {self.model.name} has no mixture prior (it samples its own way); use a VAE or ae",
        )
        honoured = type(self.model.params).loss_keys
        for f in fields(LossConfig):
            require(
                f.name in honoured or getattr(self.loss, f.name) == f.default,
                f"loss.{f.name}",
                f"= {getattr(self.loss, f.name)!r}: model {self.model.name} does not use it (it honours {', '.join(f'loss.{k}' for k in honoured) or 'no loss.* key'})",
            )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Config":
        """Validate a nested dict (sections → keys) and fill every default."""
        sections = {f.name: f for f in fields(cls)}
        for name, value in raw.items():
            if name not in sections:
                raise UserError(f"unknown config section {name!r}; valid sections: {', '.join(sections)}")
            if not isinstance(value, Mapping):
                raise UserError(f"config section {name!r} must be a table of keys")
        hints = typing.get_type_hints(cls)
        built = {}
        for name in sections:
            section_raw = dict(raw.get(name, {}))
            if name == "data":
                built[name] = _build_data(section_raw)
            elif name == "model":
                built[name] = _build_model(section_raw)
            else:
                built[name] = _build_section(hints[name], section_raw, name)
        return cls(**built)

    @classmethod
    def from_stored(cls, raw: Mapping[str, Any]) -> "Config":
        """The config a folder stored (its config.toml), as `from_dict` reads it after dropping the
        settings its model never used, which therefore changed nothing: another model's keys
        (vaelab 0.1 wrote all 17 into every run's file) and `loss.*` keys the model does not honour
        (0.1 ignored them without a word). A new config with such a setting is refused instead."""
        raw = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
        model, loss = raw.get("model", {}), raw.get("loss", {})
        params = MODEL_PARAMS.get(model.get("name", ModelConfig.name)) if isinstance(model, dict) else None
        if params is None or not isinstance(loss, dict):
            return cls.from_dict(raw)  # from_dict says what is wrong
        own = {f.name for f in fields(params)}
        others = {f.name for p in MODEL_PARAMS.values() for f in fields(p)} - own
        raw["model"] = {k: v for k, v in model.items() if k not in others}
        raw["loss"] = {k: v for k, v in loss.items() if k in params.loss_keys or k not in {f.name for f in fields(LossConfig)}}
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The fully resolved config as a nested dict of plain values (TOML-ready)."""
        out = {}
        for f in fields(self):
            section = getattr(self, f.name)
            d = {g.name: getattr(section, g.name) for g in fields(section) if g.name != "params"}
            if getattr(section, "params", None) is not None:
                d.update(dataclasses.asdict(section.params))
            out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return out

    def input_paths(self) -> tuple[str, ...]:
        """The files and folders this config reads (`data.path`): `--force` never deletes them."""
        return (self.data.path,) if self.data.path else ()

    def override(self, overrides: Mapping[str, Any] | Sequence[str]) -> "Config":
        """A copy with dotted-key overrides applied, e.g. `{"loss.beta": 4}` or `["loss.beta=4"]`.

        Switching `data.name` or `model.name` drops the values that were only the old dataset's or
        model's defaults, so the new one's defaults apply.
        """
        base = self.to_dict()
        new = apply_overrides(base, overrides)
        for section in ("data", "model"):
            params = getattr(self, section).params
            if new[section]["name"] == base[section]["name"] or params is None:
                continue
            for k, v in dataclasses.asdict(type(params)()).items():
                if _plain(base[section].get(k)) == _plain(v) and k not in _changed(overrides, section):
                    new[section].pop(k, None)
        return Config.from_dict(new)


def _plain(value: Any) -> Any:
    """A config value with tuples as lists, as to_dict writes them."""
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------------------------
# Building sections from dicts: key checks and type coercion.


def _field_keys(cls) -> list[str]:
    return [f.name for f in fields(cls) if f.name != "params"]


def _build_section(cls, raw: dict[str, Any], prefix: str):
    valid = _field_keys(cls)
    for key in raw:
        if key not in valid:
            raise UserError(f"unknown config key {printable(f'{prefix}.{key}')}; valid keys: {', '.join(f'{prefix}.{k}' for k in valid)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: coerce(v, hints[k], f"{prefix}.{k}") for k, v in raw.items()}
    return cls(**kwargs)


def printable(text: str) -> str:
    """User text (a key, a --grid entry) as a message shows it: as written, or quoted (repr) when it
    holds a line break or another character that does not print."""
    return text if text.isprintable() else repr(text)


def _build_data(raw: dict[str, Any]) -> DataConfig:
    name = coerce(raw.get("name", DataConfig.name), str, "data.name")
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    common = _field_keys(DataConfig)
    own = [f.name for f in fields(spec.params)]
    for key in raw:
        if key not in common and key not in own:
            valid = ", ".join(f"data.{k}" for k in common + own)
            raise UserError(f"unknown config key {printable(f'data.{key}')} for dataset {name}; valid keys: {valid}")
    params = _build_section(spec.params, {k: v for k, v in raw.items() if k in own}, "data")
    cfg = _build_section(DataConfig, {k: v for k, v in raw.items() if k in common}, "data")
    if spec.needs_path and not cfg.path:
        raise UserError(f"dataset {name} reads files: set data.path to {spec.path_hint}")
    return dataclasses.replace(cfg, params=params)


def _build_model(raw: dict[str, Any]) -> ModelConfig:
    name = coerce(raw.get("name", ModelConfig.name), str, "model.name")
    if name not in MODEL_PARAMS:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODEL_PARAMS))}")
    params = MODEL_PARAMS[name]
    common = _field_keys(ModelConfig)
    own = [f.name for f in fields(params)]
    for key in raw:
        if key not in common and key not in own:
            _check_foreign_model_key(name, key, common + own)
    built = _build_section(params, {k: v for k, v in raw.items() if k in own}, "model")
    if getattr(built, "decoder_hidden", ()) and built.decoder_hidden == tuple(reversed(built.hidden)):
        built = dataclasses.replace(built, decoder_hidden=())  # the mirror, as [] says it (vaelab 0.1 stored it resolved)
    cfg = _build_section(ModelConfig, {k: v for k, v in raw.items() if k in common}, "model")
    return dataclasses.replace(cfg, params=built)


def _check_foreign_model_key(name: str, key: str, valid: list[str]) -> None:
    """A key that model `name` does not take is refused in one line: unknown, or another model's."""
    owners = [model for model, cls in MODEL_PARAMS.items() if key in {f.name for f in fields(cls)}]
    if not owners:
        raise UserError(f"unknown config key {printable(f'model.{key}')} for model {name}; valid keys: {', '.join(f'model.{k}' for k in valid)}")
    raise UserError(f"model.{key} is a parameter of {', '.join(owners)}, not of model {name}, which takes: {', '.join(f'model.{k}' for k in valid)}")


def _without_stale_model_keys(raw: dict[str, Any], kept: set[str]) -> dict[str, Any]:
    """`raw` less the model keys from a file (a preset, --config) that its model does not take and
    that vaelab 0.1 wrote into every run's config.toml for every model: another model's key at that
    key's 0.1 default, or empty (0.1's "the model's default"). They change nothing. Any other value,
    and every key in `kept` (those given with --set), is left for `Config.from_dict` to refuse."""
    model = raw.get("model")
    params = MODEL_PARAMS.get(model.get("name", ModelConfig.name)) if isinstance(model, dict) else None
    if params is None:
        return raw  # from_dict says what is wrong
    own = {f.name for f in fields(params)} | set(_field_keys(ModelConfig)) | kept

    def stale(key: str, value: Any) -> bool:
        first = next((cls for cls in MODEL_PARAMS.values() if key in {f.name for f in fields(cls)}), None)
        if first is None:
            return False
        default = {f.name: f.default for f in fields(first)}[key]
        return value in ([], ()) or _plain(coerce(value, typing.get_type_hints(first)[key], f"model.{key}")) == _plain(default)

    return {**raw, "model": {k: v for k, v in model.items() if k in own or not stale(k, v)}}


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Coerce a TOML/CLI value to the annotated type `tp`, or raise a UserError naming `key`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UserError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise UserError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{key} must be a string, got {value!r}")
        return value
    if origin is tuple:
        (item_tp, *_) = typing.get_args(tp)
        if isinstance(value, str):
            value = list_items(value)
            if item_tp is int:
                try:
                    value = [int(v) for v in value]
                except ValueError:  # not an integer, or one of over 4,300 digits
                    raise UserError(f"{key} must be a list of integers like [144, 28], got {value!r:.80}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be a list, got {value!r}")
        return tuple(coerce(v, item_tp, key) for v in value)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, key)
            except UserError:
                pass
        raise UserError(f"{key} has the wrong type: {value!r}")
    return value


def list_items(text: str) -> list[str]:
    """The items of a list written as text: "a,b", "[a, b]" or "[a, 'b']" (words need no quotes);
    TOML's own form ("[\"a\", \"b\"]") never gets here, `parse_value` reads it."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    items = [v.strip() for v in text.split(",")]
    return [v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'" else v for v in items if v]


# ---------------------------------------------------------------------------------------------
# Presets, files and overrides.


def _changed(overrides: Mapping[str, Any] | Sequence[str], section: str) -> set[str]:
    keys = overrides.keys() if isinstance(overrides, Mapping) else [o.split("=", 1)[0].strip() for o in overrides]
    return {k.split(".", 1)[1] for k in keys if k.startswith(section + ".")}


def parse_value(text: str, what: str = "--set value") -> Any:
    """A `--set` value: one TOML value when it is one (1e-3, true, [144, 28], "s"), else the text
    itself as a bare string (points, /a/b.npz). Text that is neither (a newline and more TOML after a
    value, or a bare string of several lines) is a UserError naming `what`."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except (ValueError, RecursionError):  # TOMLDecodeError, an integer of over 4,300 digits, deep nesting
        doc = None
    if doc is not None and list(doc) == ["v"]:
        return doc["v"]
    if doc is None and not any(c in text for c in LINE_BREAKS):
        return text
    raise UserError(f"{what} {text!r:.80} is not one value (one TOML value such as 1e-3, true, [144, 28] or \"a b\", or a bare string on one line)")


LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
"""the characters that end a line (str.splitlines): a bare --set string holds none"""


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    """Apply dotted-key overrides (`section.key`) to a nested dict; returns a new dict."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    if not isinstance(overrides, Mapping):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise UserError(f"--set expects key=value, got {item!r}")
            key, value = item.split("=", 1)
            pairs[key.strip()] = parse_value(value.strip(), f"--set {printable(key.strip())}")
        overrides = pairs
    for key, value in overrides.items():
        section, dot, name = key.partition(".")
        if not dot or not section or not name:
            raise UserError(f"config keys look like section.key (e.g. loss.beta), got {key!r}")
        out.setdefault(section, {})
        if not isinstance(out[section], dict):
            raise UserError(f"config section {section!r} must be a table of keys")
        out[section][name] = value
    return out


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
) -> Config:
    """Build a config: a preset, then a TOML file over it, then `key=value` overrides.

    Arguments:
        preset: name of a shipped preset (`vaelab presets`), or None.
        config_file: a TOML file with the same sections as a run's config.toml, or None.
        overrides: dotted keys and values, as a mapping or as `key=value` strings.
    Returns:
        The validated, fully resolved `Config`.
    """
    raw: dict[str, Any] = {}
    if preset:
        raw = read_preset(preset)
    if config_file:
        for section, values in read_toml(config_file, "--config").items():
            if isinstance(values, Mapping) and isinstance(raw.get(section), Mapping):
                raw[section] = {**raw[section], **values}
            else:
                raw[section] = values
    raw.pop("description", None)
    return Config.from_dict(_without_stale_model_keys(apply_overrides(raw, overrides), _changed(overrides, "model")))


import vaelab.models  # noqa: E402, F401  (the models register their keys in MODEL_PARAMS; see there)
