"""Every config key with its type, default and docstring, read from the config's dataclasses: the
sections in vaelab.config, each dataset's parameters (vaelab.data) and each model's (vaelab.models).
`vaelab keys [SECTION]` prints them; the key tables of docs/configuration.md are checked against them.

    for key in config_keys(load_config("chain-conv"), "model"):
        print(key.name, key.default, key.doc)
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from dataclasses import dataclass, fields
from typing import Any

from vaelab.config import MODEL_PARAMS, Config
from vaelab.data import DATASETS


@dataclass(frozen=True)
class Key:
    """One config key."""

    name: str
    """dotted, e.g. loss.beta"""
    type: str
    """its type as written in the dataclass, e.g. float, tuple[int, ...]"""
    default: Any
    """the value a config that leaves it unset gets (for a dataset's or model's key: that one's)"""
    doc: str
    """the field's docstring"""
    value: Any
    """its value in the config the keys were listed for"""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (the string literal right after the field),
    inherited from a base class where a subclass redefines a field's default without one."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if base is object or not dataclasses.is_dataclass(base):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(base))).body[0].body
        for field, after in zip(body, body[1:]):
            if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                docs[field.target.id] = " ".join(str(after.value.value).split())
    return docs


def _keys_of(prefix: str, cls: type, section: Any) -> list[Key]:
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if f.name == "params":
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(Key(f"{prefix}.{f.name}", _type_name(hints[f.name]), default, docs.get(f.name, ""), getattr(section, f.name)))
    return out


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(map(str, typing.get_args(tp)))
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def config_keys(cfg: Config | None = None, section: str | None = None) -> list[Key]:
    """Every key of `cfg` (default: the default config), or of one section: the sections' own,
    and the chosen dataset's (`data.<param>`) and model's (`model.<param>`) parameters."""
    cfg = cfg or Config.from_dict({})
    out = []
    for f in fields(Config):
        if section not in (None, f.name):
            continue
        part = getattr(cfg, f.name)
        out += _keys_of(f.name, type(part), part)
        if getattr(part, "params", None) is not None:
            out += _keys_of(f.name, type(part.params), part.params)
    return out


def sections() -> list[str]:
    return [f.name for f in fields(Config)]


def every_model_key() -> dict[str, list[str]]:
    """`model.<param>` → the models that take it, for every registered model."""
    owners: dict[str, list[str]] = {}
    for name, params in MODEL_PARAMS.items():
        for f in fields(params):
            owners.setdefault(f"model.{f.name}", []).append(name)
    return owners


def every_data_key() -> dict[str, list[str]]:
    """`data.<param>` → the datasets that take it, for every registered dataset."""
    owners: dict[str, list[str]] = {}
    for name, spec in DATASETS.items():
        for f in fields(spec.params):
            owners.setdefault(f"data.{f.name}", []).append(name)
    return owners


def toml_value(value: Any) -> str:
    """A value as TOML writes it: true, 1.0, "auto", [144, 28]."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def describe(cfg: Config, section: str | None = None) -> str:
    """The text `vaelab keys` prints: each key with its type, default (and this config's value where
    it differs) and docstring; loss keys the chosen model does not honour are marked."""
    honoured = type(cfg.model.params).loss_keys
    lines = []
    for key in config_keys(cfg, section):
        head = f"{key.name} = {toml_value(key.default)}  ({key.type})"
        if key.value != key.default:
            head += f"  [this config: {toml_value(key.value)}]"
        if key.name.startswith("loss.") and key.name[5:] not in honoured:
            head += f"  [not used by model {cfg.model.name}: keep the default]"
        lines += [head, *textwrap.wrap(key.doc, 96, initial_indent="    ", subsequent_indent="    ")]
    if section in (None, "data"):
        lines.append(f"(data.* above are dataset {cfg.data.name}'s; --set data.name=NAME lists another's (with data.path for one read from files), `vaelab datasets` names them)")
    if section in (None, "model"):
        lines.append(f"(model.* above are model {cfg.model.name}'s; --set model.name=NAME lists another's: {', '.join(MODEL_PARAMS)})")
    return "\n".join(lines)


def _summary(cls: type) -> str:
    """The first paragraph of a class's docstring, on one line."""
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _table(keys: list[Key]) -> list[str]:
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    return rows + [f"| `{k.name}` | {cell(k.type)} | `{cell(toml_value(k.default))}` | {cell(k.doc)} |" for k in keys]


def reference_markdown() -> str:
    """docs/keys.md: every key of every section, dataset and model, as Markdown tables, from the
    dataclasses' fields and docstrings (the page is this text; a test checks it is current)."""
    out = [
        "# Every config key",
        "",
        "Generated from the config's dataclasses, their defaults and docstrings (`vaelab.keys.reference_markdown`);",
        "`vaelab keys` prints the same, with a config's values. [Configuration and datasets](configuration.md)",
        "explains them with examples.",
    ]
    default = Config.from_dict({})
    for name in sections():
        part = getattr(default, name)
        out += ["", f"## {name}", "", _summary(type(part)), "", *_table(_keys_of(name, type(part), part))]
    out += ["", "## Each dataset's keys", "", "`data.<param>` for the dataset `data.name` names (`vaelab datasets`)."]
    for name, spec in sorted(DATASETS.items()):
        keys = _keys_of("data", spec.params, spec.params())
        out += ["", f"### {name}", "", spec.description, "", *(_table(keys) if keys else ["No keys of its own."])]
    out += ["", "## Each model's keys", "", "`model.<param>` for the model `model.name` names."]
    for name, params in MODEL_PARAMS.items():
        keys = _keys_of("model", params, params())
        out += ["", f"### {name}", "", _summary(params), "", *_table(keys)]
    return "\n".join(out) + "\n"
