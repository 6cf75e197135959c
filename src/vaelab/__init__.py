"""vaelab: a laboratory for variational autoencoders.

    from vaelab import load_config, train, sample
    run = train(load_config("chain-conv"), out="runs/conv")
    images = sample(run.model, 64, delta=0.4)

The names below are imported on first use, so that `import vaelab` (and `vaelab --help`) does not
load PyTorch.
"""

import importlib
import sys
import types

_HOMES = {
    "Config": "vaelab.config",
    "load_config": "vaelab.config",
    "DATASETS": "vaelab.data",
    "Dataset": "vaelab.data",
    "load_data": "vaelab.data",
    "TrainingDiverged": "vaelab.errors",
    "UserError": "vaelab.errors",
    "MODELS": "vaelab.models",
    "VAE": "vaelab.models",
    "build_model": "vaelab.models",
    "denoise_images": "vaelab.sample",
    "reconstruct": "vaelab.sample",
    "sample": "vaelab.sample",
    "Run": "vaelab.train",
    "resume": "vaelab.train",
    "train": "vaelab.train",
}
"""each public name → the module it lives in"""

__all__ = sorted(_HOMES)
__version__ = "0.1.0"


class _Package(types.ModuleType):
    """`vaelab.train` and `vaelab.sample` name the functions, as they did when this file imported
    them eagerly: importing the submodules of the same names later does not rebind them (the
    submodules stay in sys.modules, where `from vaelab.train import …` finds them)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _HOMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
