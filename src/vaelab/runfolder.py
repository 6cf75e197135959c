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
from typing import Any, Callable, Iterable, Mapping

import tomli_w
import torch
from safetensors import SafetensorError, safe_open
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
    if path.is_dir():
        raise UserError(f"{path} is a directory, where vaelab writes a file; move it away")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        record_written(path)  # before the file appears: a kill never leaves one its manifest lacks
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode(errors="surrogateescape") if isinstance(data, str) else data)  # a name's undecodable bytes as they were
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


def read_toml(path: Path | str, what: str = "") -> dict[str, Any]:
    """The tables of a TOML file; a missing, unreadable or invalid file is a UserError naming it
    (after `what`, e.g. "--config", when given)."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise UserError(f"{name} is a directory, not a TOML file")
    if not path.is_file():
        raise UserError(f"{name} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except UnicodeDecodeError:
        raise UserError(f"{name} is not valid TOML: not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"{name} cannot be read ({e.strerror})") from None
    except (ValueError, RecursionError) as e:  # TOMLDecodeError, an integer of over 4,300 digits, or nesting past Python's limit
        raise UserError(f"{name} is not valid TOML: {one_line(e)}") from None


def one_line(e: BaseException | str) -> str:
    """An exception's message (a library's, quoted in a UserError) on one line."""
    return " ".join(str(e).split()) or type(e).__name__


def write_jsonl(path: Path | str, rows: Iterable[Mapping[str, Any]]) -> Path:
    return atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(path: Path | str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append whole lines (the file is trimmed back to the checkpoint on resume)."""
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if text:
        with open(path, "a") as f:
            f.write(text)


def read_jsonl(path: Path | str, valid: Callable[[Any], bool] = lambda row: isinstance(row, dict), what: str = "a JSON object") -> list[Any]:
    """The rows of a JSON-lines file, one JSON value a line, each one that `valid` says is `what`.

    A torn last line (not JSON: what a killed process leaves) is dropped; any other line that is
    not JSON, or not `what`, is a UserError naming the file and the line. A missing file has none."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        row = _json_value(line)
        if row is _NOT_JSON and number == len(lines):
            break  # a torn last line from a killed process: everything before it is good
        if row is _NOT_JSON or not valid(row):
            raise UserError(f"{path} line {number} is not {what}")
        rows.append(row)
    return rows


_NOT_JSON = object()


def _json_value(line: bytes) -> Any:
    """The JSON value on `line`, or _NOT_JSON (not JSON, not text, or nested past Python's limit)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _NOT_JSON


METRICS_ROW = "a vaelab metrics row (an object with an integer step >= 0 and numbers for time, loss and every other term)"


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl (`read_jsonl`), each as training logs it (`is_metrics_row`):
    what resume and the report compute with."""
    return read_jsonl(path, is_metrics_row, METRICS_ROW)


def is_metrics_row(row: Any) -> bool:
    """An object with an integer `step` >= 0, and numbers for `time`, `loss` and every other key."""
    return (
        isinstance(row, dict)
        and all(k in row for k in ("step", "time", "loss"))
        and _is_int(row["step"])
        and row["step"] >= 0
        and all(_is_number(v) for v in row.values())
    )


def _is_int(v: Any) -> bool:
    return type(v) is int and abs(v) < 2**63  # not a bool; within int64, as NumPy holds it


def _is_number(v: Any) -> bool:
    return type(v) is float or _is_int(v)


def save_tensors(path: Path | str, tensors: Mapping[str, torch.Tensor], **meta: Any) -> Path:
    """Save tensors as safetensors with vaelab's format tag and `meta` (strings) in the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write(path, _canonical(save(tensors, metadata={"format": FORMAT, **{k: str(v) for k, v in meta.items()}})))


def _canonical(blob: bytes) -> bytes:
    """The safetensors file `blob` with its JSON header's keys sorted (safetensors writes its
    metadata in hash order), so equal tensors and metadata give equal bytes. The data follows
    the header unchanged; its offsets are relative to the data's start."""
    size = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data stays 8-byte aligned
    return len(header).to_bytes(8, "little") + header + blob[8 + size :]


def load_tensors(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a vaelab safetensors file; a missing, corrupt or foreign file is a UserError."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a safetensors file")
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} is not a valid safetensors checkpoint ({one_line(e)})") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is not a vaelab checkpoint (no vaelab format tag in its header)")
    return tensors, meta


MARKER = ".vaelab"
"""the marker file of a folder vaelab made: TOML with its `kind` and the marker's `format`"""
MANIFEST = ".vaelab-manifest"
"""the names (one JSON string per line) of the entries vaelab wrote into a marked folder"""
MARKER_FORMAT = 1
KINDS = ("run", "chain", "sweep", "compare", "anomaly", "augment", "demo")
RETRYABLE = frozenset({"config.toml", "metrics.jsonl", "diverged.json", "tensorboard", "mlflow.json"})
"""what a run that failed before its first checkpoint leaves: a folder holding only these never blocks a retry"""
LEGACY_KINDS = (("chain.csv", "chain"), ("sweep.csv", "sweep"), ("compare.csv", "compare"), ("anomaly.json", "anomaly"), ("augment.json", "augment"))
"""a folder vaelab wrote before it marked its folders is known by one of these files"""


def record_written(path: Path | str) -> None:
    """Add `path`'s top entry to the manifest of every marked folder that holds it.

    Called before each file appears, so a killed process never leaves one its manifest lacks."""
    path = Path(os.path.abspath(path))
    for folder in path.parents:
        if (folder / MARKER).is_file():
            name = path.relative_to(folder).parts[0]
            if name not in (MARKER, MANIFEST) and name not in read_manifest(folder):
                with open(folder / MANIFEST, "a") as f:  # one short append: whole even if two writers race
                    f.write(json.dumps(name) + "\n")


def read_manifest(folder: Path | str) -> list[str]:
    """The plain names (no path separators, no "." or "..") the manifest of `folder` lists."""
    try:
        lines = (Path(folder) / MANIFEST).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    names = []
    for line in lines:
        try:
            name = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line: its file, if any, was never written
        if isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name and name not in names:
            names.append(name)
    return names


def marked_kind(folder: Path | str) -> str | None:
    """The kind in `folder`'s marker, or None when it has no valid one."""
    try:
        marker = tomllib.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not TOML (a ValueError), or nested too deep
        return None
    kind = marker.get("kind")
    return kind if marker.get("format") == MARKER_FORMAT and kind in KINDS else None


def folder_kind(folder: Path | str) -> str | None:
    """What `folder` is: its marker's kind, else (a folder of a vaelab before markers) the kind its
    files show, else None."""
    folder = Path(folder)
    kind = marked_kind(folder)
    if kind is not None:
        return kind
    for name, legacy in LEGACY_KINDS:
        if (folder / name).is_file():
            return legacy
    try:
        sections = tomllib.loads((folder / "config.toml").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    trained = (folder / "metrics.jsonl").is_file() or (folder / "model.safetensors").is_file()
    return "run" if {"model", "train"} <= set(sections) and trained else None


def require_kind(folder: Path | str, kind: str) -> Path:
    """`folder` itself, when it is a folder of `kind`; otherwise a UserError saying what it is."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} does not exist" if not folder.exists() else f"{folder} is a file, not a {kind} folder")
    found = folder_kind(folder)
    if found is None:
        raise UserError(f"{folder} is not a vaelab {kind} folder (no .vaelab marker, no config.toml of a run)")
    if found != kind:
        raise UserError(f"{folder} is a {found} folder, not a {kind} folder")
    return folder


def check_writable(path: Path | str, what: str = "--out") -> None:
    """Refuse, before anything is written, a file or folder `path` that cannot be made: the nearest
    folder that exists must take a new file, and each new name must fit the file system."""
    path = Path(path)
    base = next(p for p in (path, *path.parents) if _stat(p) is not None)
    if base == path and not path.is_dir():
        base = path.parent  # an existing file, to be replaced
    if not base.is_dir():
        raise UserError(f"{what} {path}: {base} is a file, not a folder")
    limit = _name_max(base)
    for part in path.relative_to(base).parts:
        if len(os.fsencode(part)) > limit:
            raise UserError(f"{what} {path}: the name {part[:40]}… is longer than the file system allows ({limit} bytes)")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".vaelab-probe.", suffix=".tmp")
    except OSError as e:
        raise UserError(f"{what} {path}: cannot write in {base} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: Path | str, what: str = "--out") -> Path:
    """`path` as a file vaelab may write: not a folder, in a folder it can write."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; name a file")
    check_writable(path, what)
    return path


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:  # missing, or a name too long to look up
        return None


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def prepare_out(out: Path | str, kind: str, *, force: bool = False, inputs: Iterable[Path | str] = ()) -> Path:
    """Make `out` ready for a new folder of `kind` and mark it; returns it.

    `out` must be missing or empty, or hold only what a failed start of the same kind left
    (`RETRYABLE`). With `force`, a marked folder of the same kind is cleared of what its
    manifest lists; files vaelab did not write stay. `--force` never clears an unmarked folder, a
    symbolic link, the working folder or one above it, or a folder that holds one of `inputs` (the
    command's own input files and folders) or lies inside one."""
    out = Path(out)
    if out.is_symlink():
        raise UserError(f"--out {out} is a symbolic link; name the folder itself ({os.path.realpath(out)}) or another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    check_writable(out)
    _check_apart(out, inputs)
    if out.is_dir() and any(out.iterdir()):
        found = marked_kind(out)
        retry = found == kind and set(read_manifest(out)) <= RETRYABLE
        if not force and not retry:
            raise UserError(f"--out {out} exists and is not empty; pass --resume to continue it or --force to overwrite it")
        if found is None:
            raise UserError(f"--force refused: {out} was not written by this vaelab (no .vaelab marker); choose another --out or empty it yourself")
        if found != kind:
            raise UserError(f"--force refused: {out} is a {found} folder and this command writes a {kind} folder; choose another --out")
        _check_clearable(out)
        clear_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create it ({e.strerror})") from None
    atomic_write(out / MARKER, tomli_w.dumps({"kind": kind, "format": MARKER_FORMAT}))
    return out


def _check_apart(out: Path, inputs: Iterable[Path | str]) -> None:
    """Refuse an `out` that holds one of the command's `inputs`, is one, or lies inside one."""
    target = out.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if source == target or target in source.parents or source in target.parents:
            raise UserError(f"--out {out} and {item}, an input of this command, overlap; choose another --out")


def _check_clearable(out: Path) -> None:
    target, here = out.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        raise UserError(f"--force refused: {out} is the working folder or holds it; run vaelab from outside it")


def clear_folder(out: Path) -> None:
    """Delete what the manifest of the marked folder `out` lists, then the marker itself.

    Entries are removed without following symbolic links; everything else in `out` stays."""
    for name in read_manifest(out):
        entry = out / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
    remove_temporary_files(out)
    (out / MANIFEST).unlink(missing_ok=True)
    (out / MARKER).unlink(missing_ok=True)


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
        w.writerow({k: csv_text(row.get(k, math.nan)) for k in columns})
    return atomic_write(path, buf.getvalue())


def csv_text(v: Any) -> str:
    """A value as a cell of a table `write_csv` writes (and a report shows it)."""
    if isinstance(v, bool):
        return "true" if v else "false"  # as TOML and --set/--grid write them
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def read_csv(path: Path | str, int_columns: Iterable[str] = (), str_columns: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of a CSV written by `write_csv`: ints and strings in the columns named (each must be
    there), floats (NaN if empty) elsewhere. A file that is not such a table (not UTF-8, a named
    column missing, a row of another length, a cell of the wrong kind) is a UserError naming the
    file and the line. A missing file has no rows."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        text = path.read_bytes().decode()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a CSV table: not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror})") from None
    try:
        return _csv_rows(path, csv.reader(io.StringIO(text, newline="")), list(int_columns), list(str_columns))
    except csv.Error as e:
        raise UserError(f"{path} is not a CSV table ({one_line(e)})") from None


def _csv_rows(path: Path, reader, ints: list[str], strs: list[str]) -> list[dict[str, Any]]:
    header = next(reader, None)
    if header is None:
        return []
    missing = [c for c in (*ints, *strs) if c not in header]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)}")
    rows = []
    for cells in reader:
        if not cells:
            continue  # a blank line, as csv.DictReader skips it
        if len(cells) != len(header):
            raise UserError(f"{path} line {reader.line_num} has {len(cells)} cells, its header {len(header)}")
        where = f"{path} line {reader.line_num}"
        rows.append({k: v if k in strs else _csv_int(v, k, where) if k in ints else _csv_float(v, k, where) for k, v in zip(header, cells)})
    return rows


def _csv_int(v: str, column: str, where: str) -> int:
    try:
        return int(v)
    except ValueError:  # not an integer, or one of over 4,300 digits
        raise UserError(f"{where}: {column!r} must be an integer, got {v[:40]!r}") from None


def _csv_float(v: str, column: str, where: str) -> float:
    if v == "":
        return math.nan
    try:
        return float(v)
    except ValueError:
        raise UserError(f"{where}: {column!r} must be a number or empty, got {v[:40]!r}") from None
