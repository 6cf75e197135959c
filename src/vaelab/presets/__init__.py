"""The shipped presets: TOML files beside this module, read without loading PyTorch (so that
`vaelab presets` answers at once).

    preset_names()            # ["arch-latent-dim", …]
    read_preset("chain-conv")  # its raw tables, `extends` resolved
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

from vaelab.errors import UserError


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in resources.files("vaelab.presets").iterdir() if p.name.endswith(".toml"))


def read_preset(name: str) -> dict[str, Any]:
    """The raw dict of a shipped preset (with its `description`), `extends` resolved: a preset may
    name another as its base and set only what differs."""
    names = preset_names()
    if name not in names:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(names)}")
    raw = tomllib.loads(resources.files("vaelab.presets").joinpath(f"{name}.toml").read_text())
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw
    base = read_preset(base_name)
    for section, values in raw.items():
        base[section] = {**base.get(section, {}), **values} if isinstance(values, Mapping) else values
    return base
