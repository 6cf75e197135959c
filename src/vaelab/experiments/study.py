"""What every study does with its output folder: start it or resume it (chain, sweep), and
rebuild its report from its files (REPORTS, `vaelab report DIR`)."""

from __future__ import annotations

import functools
from pathlib import Path

from vaelab.checkpoint import read_run_config
from vaelab.config import Config
from vaelab.errors import UserError
from vaelab.experiments.apps import write_apps_report
from vaelab.experiments.chain_report import write_chain_report
from vaelab.experiments.sweep_report import write_sweep_report
from vaelab.run_report import write_run_report
from vaelab.runfolder import prepare_out, write_toml


def open_study(cfg: Config, out: Path, kind: str, *, resume: bool, force: bool, inputs: tuple[str, ...] = (), growable: tuple[str, ...] = ()) -> None:
    """A new study (of `kind`: chain, sweep) writes its config.toml into an empty `out` (or one
    `force` may clear; never one holding `inputs`); a resumed one must be a folder of `kind` with
    the same config stored, and loses the temporary files a kill left behind.

    `growable` names integer keys a resume may raise (a chain's `chain.generations`: more
    generations extend a chain); the stored config is then updated to the new value."""
    if not resume:
        prepare_out(out, kind, force=force, inputs=inputs)
        write_toml(out / "config.toml", cfg.to_dict())
        return
    stored = read_run_config(out, kind)
    grown = {k: cfg.to_dict()[k.split(".")[0]][k.split(".")[1]] for k in growable}
    if stored.override(grown) == cfg and all(v >= stored.to_dict()[k.split(".")[0]][k.split(".")[1]] for k, v in grown.items()):
        if stored != cfg:
            write_toml(out / "config.toml", cfg.to_dict())  # extended
        stored = cfg
    if stored != cfg:
        diff = [f"{s}.{k}" for s, d in cfg.to_dict().items() for k, v in d.items() if stored.to_dict().get(s, {}).get(k) != v]
        raise UserError(f"--resume: the config differs from the one stored in {out} ({', '.join(diff[:4])}); drop those --set or start a new --out")
    for tmp in out.rglob(".*.tmp"):  # temporary files of atomic writes a killed process left
        tmp.unlink(missing_ok=True)


REPORTS = {
    "run": write_run_report,
    "chain": write_chain_report,
    "sweep": write_sweep_report,
    "anomaly": functools.partial(write_apps_report, kind="anomaly"),
    "augment": functools.partial(write_apps_report, kind="augment"),
}
"""the report each kind of folder (`vaelab.runfolder.folder_kind`) rebuilds from its files (`vaelab report DIR`)"""
