"""vaelab: a laboratory for variational autoencoders.

    from vaelab import load_config, train, sample
    run = train(load_config("chain-conv"), out="runs/conv")
    images = sample(run.model, 64, delta=0.4)
"""

from vaelab.config import Config, load_config
from vaelab.data import DATASETS, Dataset, load_data
from vaelab.errors import TrainingDiverged, UserError
from vaelab.models import MODELS, VAE, build_model
from vaelab.sample import denoise_images, reconstruct, sample
from vaelab.train import Run, resume, train

__all__ = [
    "Config",
    "DATASETS",
    "Dataset",
    "MODELS",
    "Run",
    "TrainingDiverged",
    "UserError",
    "VAE",
    "build_model",
    "denoise_images",
    "load_config",
    "load_data",
    "reconstruct",
    "resume",
    "sample",
    "train",
]
__version__ = "0.1.0"
