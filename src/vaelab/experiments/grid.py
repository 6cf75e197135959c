"""A sweep's grid: the entries of `sweep.grid` (and `vaelab sweep --grid`), the axes they make
and the points they span.

    axes = parse_grid(["loss.beta=0.5,1,2", "data.mu=0:5:0.5"])      # a product: 3 × 11 points
    axes = parse_grid(["betavae: loss.beta=1,2,4", "tcvae: loss.tc_weight=2,6",
                       "dip1: loss.dip=i", "dip1: loss.dip_offdiag+loss.dip_diag=[1,10],[5,50]"])
    grid_points(axes)   # [(family, {key: value}), …]: 3 + 2 + 2 points
    key_columns(axes)   # ["family", "loss.beta", "loss.tc_weight", "loss.dip", …]: sweep.csv's

An entry is "[family:] key=v1,v2,…" (TOML values or bare strings), "key=start:stop:step" (stop
included when it lies on the grid) or "k1+k2=[a1,b1],[a2,b2]" (keys swept together, one list per
point). Without families the grid is the product of its axes; with them, the union over the
families of the product of the unnamed axes (shared by every family) and the family's own.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from vaelab.config import Config, parse_value, printable
from vaelab.errors import UserError

MAX_CELLS = 10_000
"""more cells × seeds than this need `yes=True` (`--yes`)"""
FAMILY = re.compile(r"[A-Za-z0-9_-]+")
"""a family's name (it begins its cells' folder names)"""


@dataclass(frozen=True)
class Axis:
    """One swept key (or keys swept together, "k1+k2") and its values, in order, in one family of
    the grid ("": every family)."""

    key: str
    values: tuple
    family: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key.split("+"))

    def points(self) -> list[dict]:
        """Each value as {key: value}; a zipped axis's value holds one item per key."""
        return [dict(zip(self.keys, v)) for v in self.values] if len(self.keys) > 1 else [{self.key: v} for v in self.values]

    @property
    def entry(self) -> str:
        """The axis as a grid entry (what sweep.grid stores)."""
        return f"{self.family + ': ' if self.family else ''}{self.key}={','.join(map(_grid_text, self.values))}"


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets, so list values ("[128,64],[256,128]") stay whole."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[(" and 1 or (-1 if ch in "])" else 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _number(text: str, entry: str) -> int | float:
    """One bound or step of a range: a finite number (an integer within 64 bits)."""
    v = parse_value(text.strip(), f"--grid {entry}:")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
        raise UserError(f"--grid {entry}: a range needs numbers start:stop:step, got {text.strip()!r:.40}")
    return v


def _finite(v: int | float) -> bool:
    return abs(v) < 2**63 if isinstance(v, int) else math.isfinite(v)


def _range_count(start: int | float, stop: int | float, step: int | float, entry: str) -> int:
    """How many values start:stop:step holds (stop included when it lies on the grid); a UserError
    beyond MAX_CELLS."""
    span = (stop - start) / step
    if not math.isfinite(span):  # floats that overflow: far bounds, a tiny step
        raise UserError(f"--grid {entry}: the range has too many values (at most {MAX_CELLS})")
    count = math.floor(span + 1e-9) + 1
    if count > MAX_CELLS:
        raise UserError(f"--grid {entry}: the range has {count} values (at most {MAX_CELLS})")
    return count


def parse_axis(entry: str) -> Axis:
    """"key=v1,v2,…" or "key=start:stop:step" → Axis. Values are TOML (1e-3, true, [1, 2]) or bare
    strings; a range includes stop when it lies on the grid and is all ints when its ends and step are."""
    head, eq, spec = entry.partition("=")
    family, colon, key = head.rpartition(":")
    family, key, spec = family.strip(), key.strip(), spec.strip()
    if not eq or not key or not spec:
        raise UserError(f"--grid expects key=v1,v2,… or key=start:stop:step, got {entry!r:.80}")
    entry = printable(entry)  # as messages show it
    if colon and not FAMILY.fullmatch(family):
        raise UserError(f"--grid {entry}: a family is a name of letters, digits, - and _ before the key, e.g. tcvae: loss.tc_weight=1,2")
    keys = [k.strip() for k in key.split("+")]
    if any(not k for k in keys) or len(set(keys)) != len(keys):
        raise UserError(f"--grid {entry}: keys swept together are distinct keys joined by +, e.g. loss.dip_offdiag+loss.dip_diag=[1,10],[2,20]")
    if any(k.startswith("sweep.") for k in keys):
        raise UserError(f"--grid {entry}: sweep.* keys shape the sweep itself and cannot be swept")
    key = "+".join(keys)
    if ":" in spec and not spec.startswith(("[", '"', "'")):
        if len(keys) > 1:
            raise UserError(f"--grid {entry}: keys swept together take a list of values, one [v1,v2] per point, not a range")
        bounds = spec.split(":")
        if len(bounds) != 3:
            raise UserError(f"--grid {entry}: a range is start:stop:step, got {spec!r}")
        start, stop, step = (_number(b, entry) for b in bounds)
        if step <= 0 or stop < start:
            raise UserError(f"--grid {entry}: the range is empty (needs step > 0 and start <= stop)")
        count = _range_count(start, stop, step, entry)
        ints = all(isinstance(v, int) for v in (start, stop, step))
        values = tuple(start + i * step if ints else round(start + i * step, 12) for i in range(count))
        if len(set(map(value_text, values))) != len(values):
            raise UserError(f"--grid {entry}: the range's step is too small to tell its values apart (12 decimals)")
        return Axis(key, values, family)
    items = [s.strip() for s in _split_top(spec)]
    if any(not s for s in items):
        raise UserError(f"--grid {entry}: an empty value in the list")
    values = tuple(parse_value(s, f"--grid {entry}:") for s in items)
    if len(set(map(value_text, values))) != len(values):  # 1 and 1.0 would name the same cell
        raise UserError(f"--grid {entry}: a value is listed twice")
    if len(keys) > 1 and not all(isinstance(v, list) and len(v) == len(keys) for v in values):
        raise UserError(f"--grid {entry}: each point of {len(keys)} keys swept together is a list of {len(keys)} values, e.g. [1,10]")
    return Axis(key, values, family)


def parse_grid(entries: Sequence[str]) -> list[Axis]:
    """Grid entries → axes, in order (an entry for a key already swept in the same family replaces
    its values, in its place). A key is swept once per cell: in one axis of a family, or in the
    unnamed axes that every family shares."""
    axes: dict[tuple[str, str], Axis] = {}
    for entry in entries:
        axis = parse_axis(entry)
        axes[(axis.family, axis.key)] = axis
    for family in dict.fromkeys(a.family for a in axes.values()):
        mine = [k for a in axes.values() if a.family in ("", family) for k in a.keys]
        twice = next((k for k in mine if mine.count(k) > 1), None)
        if twice is not None:
            where = f"family {family}" if family else "the grid"
            raise UserError(f"--grid: {twice} is swept twice in {where} (in two entries, or in a family's and the shared ones); sweep each key once per cell")
    return list(axes.values())


def sweep_axes(cfg: Config, grid: Sequence[str] = ()) -> list[Axis]:
    """The preset's `sweep.grid`, then `grid` entries over it."""
    return parse_grid([*cfg.sweep.grid, *grid])


def _families(axes: list[Axis]) -> list[str]:
    return list(dict.fromkeys(a.family for a in axes if a.family)) or [""]


def grid_size(axes: list[Axis]) -> int:
    """How many points the grid spans (without listing them)."""
    return sum(math.prod(len(a.values) for a in axes if a.family in ("", f)) for f in _families(axes))


def grid_points(axes: list[Axis]) -> list[tuple[str, dict]]:
    """Every point of the grid as (family, {key: value}): the product of the axes, or with
    families, the union over the families of the product of the shared axes and their own."""
    points = []
    for family in _families(axes):
        mine = [a for a in axes if a.family in ("", family)]
        for combo in itertools.product(*(a.points() for a in mine)):
            points.append((family, {k: v for point in combo for k, v in point.items()}))
    return points


def value_text(v: Any) -> str:
    """A swept value as a cell's folder name shows it (1 and 1.0 alike)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)[:-2] if repr(v).endswith(".0") else repr(v)
    if isinstance(v, (list, tuple)):
        return "-".join(map(value_text, v))
    return str(v).replace("/", "_").replace("\\", "_")



def grid_keys(axes: list[Axis]) -> list[str]:
    """The swept keys, in order, each once (a zipped axis gives each of its keys)."""
    return list(dict.fromkeys(k for a in axes for k in a.keys))


def key_columns(axes: list[Axis]) -> list[str]:
    """sweep.csv's columns that name a cell's point: "family" when the grid has families, then
    every swept key (a family's rows leave the other families' keys empty)."""
    return ["family"] * any(a.family for a in axes) + grid_keys(axes)


def _grid_text(v: Any) -> str:
    """A value as a grid entry writes it."""
    return f'"{v}"' if isinstance(v, str) else repr(v).lower() if isinstance(v, bool) else str(v).replace(" ", "")
