"""Run folders: atomic writes, TOML, JSON lines and safetensors checkpoints.

Every file is written to a temporary name in the same folder and renamed into place, so a killed
process never leaves a half-written file. Nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

import tomli_w
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from vaelab.errors import UserError

FORMAT = "vaelab"
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK

def atomic_write(path: Path | str, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_toml(path: Path | str, data: Mapping[str, Any]) -> Path:
    return atomic_write(path, tomli_w.dumps(_toml_ready(data)))


def _toml_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _toml_ready(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_toml_ready(v) for v in value]
    return value


def read_toml(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None


def write_jsonl(path: Path | str, rows: Iterable[Mapping[str, Any]]) -> Path:
    return atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(path: Path | str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append whole lines (the file is trimmed back to the checkpoint on resume)."""
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if text:
        with open(path, "a") as f:
            f.write(text)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a killed process: everything before it is good
    return rows


def save_tensors(path: Path | str, tensors: Mapping[str, torch.Tensor], **meta: Any) -> Path:
    """Save tensors as safetensors with vaelab's format tag and `meta` (strings) in the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, save(tensors, metadata={"format": FORMAT, **{k: str(v) for k, v in meta.items()}}))


def load_tensors(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a vaelab safetensors file; a missing, corrupt or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} is not a valid safetensors checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a vaelab checkpoint (no vaelab format tag in its header)")
    return tensors, meta


def prepare_out(out: Path | str, *, force: bool = False) -> Path:
    """Make `out` ready for a new run: it must be missing or empty, unless `force` is given.

    With `force`, a previous vaelab folder (one holding config.toml) is cleared; any other
    non-empty folder is refused, so a mistyped --out never deletes a user's files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UserError(
                f"--out {out} exists and is not empty; pass --resume to continue it or --force to overwrite it"
            )
        if not is_vaelab_folder(out):
            raise UserError(f"--force refused: {out} is not a vaelab run folder (no config.toml); choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def is_vaelab_folder(out: Path) -> bool:
    """A run folder (config.toml with vaelab's sections) or a study folder (a report vaelab wrote)."""
    try:
        sections = set(tomllib.loads((out / "config.toml").read_text()))
        if {"model", "train"} <= sections:
            return True
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        pass
    try:
        return "<title>vaelab" in (out / "report.html").read_text(errors="replace")[:4096]
    except OSError:
        return False


def remove_temporary_files(folder: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process left behind."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_csv(path: Path | str, rows: Iterable[Mapping[str, Any]], columns: Iterable[str]) -> Path:
    """Write rows as CSV with the given columns (NaN and missing values as empty cells), atomically."""
    columns = list(columns)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _cell(row.get(k, math.nan)) for k in columns})
    return atomic_write(path, buf.getvalue())


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"  # as TOML and --set/--grid write them
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def read_csv(path: Path | str, int_columns: Iterable[str] = (), str_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of a CSV written by `write_csv`: ints and strings where named, floats (NaN if empty) elsewhere."""
    path = Path(path)
    if not path.is_file():
        return []
    ints, strs = set(int_columns), set(str_columns)
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if k in strs:
                    row[k] = v
                elif k in ints:
                    row[k] = int(v)
                else:
                    row[k] = float(v) if v not in ("", None) else math.nan
            rows.append(row)
    return rows
