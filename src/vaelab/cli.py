"""The `vaelab` command: parses arguments and calls one importable function per verb."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import math
import sys
from pathlib import Path

from vaelab.errors import DIVERGED, UserError
from vaelab.host_memory import keep_freed_host_memory

DATASET_LISTING = Path(__file__).parent / "data" / "datasets.txt"
"""`vaelab datasets`' text: vaelab.data.listing(), written into the package (tests/test_cli.py checks it)"""

EXAMPLES = """examples:
  vaelab train --preset chain-conv --out runs/conv
  vaelab train --preset chain-fc2 --set loss.beta=0.3 --set train.epochs=2 --out runs/fc2
  vaelab train --resume runs/conv
  vaelab train --resume runs/conv --set train.device=cpu
  vaelab sample runs/conv --n 64 --set sample.delta=0.4 --out samples.png
  vaelab chain --preset chain-conv --out runs/chain-conv
  vaelab sweep --preset bias-robustness --out runs/bias
  vaelab demo
"""

VERB_EXAMPLES = {
    "train": "example:\n  vaelab train --preset chain-conv --set loss.beta=0.3 --out runs/conv\n  vaelab train --resume runs/conv\n  vaelab train --resume runs/conv --set train.device=cpu",
    "sample": "example:\n  vaelab sample runs/conv --n 1000 --set sample.delta=0.4 --set sample.denoise=0.05 --out gen.npz",
    "reconstruct": "example:\n  vaelab reconstruct runs/conv --n 16 --out recon.png",
    "report": "example:\n  vaelab report runs/conv",
    "anomaly": "example:\n  vaelab anomaly --preset fontdigits-cnn --class 7 --out runs/anomaly-7",
    "augment": "example:\n  vaelab augment --preset fontdigits-cnn --few 100 --generated 2000 --out runs/augment",
    "latent": "example:\n  vaelab latent runs/digits --n 2000",
    "evaluate": "examples:\n  vaelab evaluate runs/digits\n  vaelab evaluate runs/digits --n 5000 --k 128 --metrics fid,class",
    "presets": "example:\n  vaelab presets",
    "keys": "examples:\n  vaelab keys loss\n  vaelab keys model --set model.name=vqvae\n  vaelab keys --preset chain-conv",
    "datasets": "example:\n  vaelab datasets",
    "demo": "example:\n  vaelab demo --out runs/demo",
    "chain": (
        "examples:\n  vaelab chain --preset chain-conv --out runs/chain-conv\n"
        "  vaelab chain --preset chain-conv --set chain.generations=5 --set data.n=5000 --out runs/short\n"
        "  vaelab chain --preset chain-conv --out runs/chain-conv --resume\n"
        "  vaelab chain --preset chain-conv --set chain.seeds=8 --out runs/seeds --backend ray\n"
        "  vaelab chain compare runs/chain-conv runs/chain-conv-varloss --out runs/compare"
    ),
    "sweep": (
        "examples:\n  vaelab sweep --preset bias-robustness --out runs/bias\n"
        "  vaelab sweep --preset bias-robustness --grid loss.beta=0.5,1,2 --grid data.mu=0:4:2 --set train.steps=2000 --out runs/small\n"
        "  vaelab sweep --preset bias-robustness --out runs/bias --resume\n"
        "  vaelab sweep --preset bias-robustness --out /shared/bias --backend ray --address 10.0.0.5:6379"
    ),
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (UserError), not usage text."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def build_parser() -> Parser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = Parser(prog="vaelab", description="A laboratory for variational autoencoders.", epilog=EXAMPLES, formatter_class=fmt)
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)

    def verb(name: str, help: str) -> Parser:
        return sub.add_parser(name, help=help, description=help, epilog=VERB_EXAMPLES[name], formatter_class=fmt)

    def backend_args(q: Parser, what: str) -> None:
        q.add_argument("--backend", choices=("local", "ray"), default="local", help=f"local: {what} one after another here (default); ray: as Ray tasks (pip install 'vaelab[ray]'), the folder on a filesystem every worker sees")
        q.add_argument("--address", help="the Ray cluster to join (default: $RAY_ADDRESS, else a local Ray runtime)")

    def config_args(q: Parser) -> None:
        q.add_argument("--preset", help="a shipped preset (see `vaelab presets`)")
        q.add_argument("--config", help="a TOML file with config sections, over the preset")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key, e.g. loss.beta=0.5 (`vaelab keys` lists every key)")

    q = verb("train", "train a model into a run folder")
    config_args(q)
    q.add_argument("--out", help="the run folder to create")
    q.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR (with --set train.device=… on another device)")
    q.add_argument("--force", action="store_true", help="overwrite an existing run folder at --out")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

    q = verb("chain", "run a VAE chain (each VAE trained on the previous one's samples), or compare chains")
    q.add_argument("action", nargs="*", metavar="compare DIR …", help="`compare DIR DIR …` overlays finished chains")
    config_args(q)
    q.add_argument("--out", help="the chain's folder (or the comparison's)")
    q.add_argument("--resume", action="store_true", help="continue the chain in --out from its first unfinished generation")
    q.add_argument("--force", action="store_true", help="overwrite an existing folder at --out")
    q.add_argument("--vectorize", choices=("auto", "off"), help="auto: each generation's VAEs of all seeds train together as one stacked model, in one task (default); off: a task per seed")
    backend_args(q, "the seeds (one task for all with --vectorize auto)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")

    q = verb("sweep", "train one model per cell of a grid over config keys, measure each, and report")
    config_args(q)
    q.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,…|KEY=START:STOP:STEP", help="a swept key (stop included); over the preset's sweep.grid. K1+K2=[a,b],[c,d] sweeps keys together; FAMILY: KEY=… puts an entry in one family (the grid is the union of its families)")
    q.add_argument("--out", help="the sweep's folder")
    q.add_argument("--resume", action="store_true", help="train only the cells the sweep in --out lacks")
    q.add_argument("--force", action="store_true", help="overwrite an existing folder at --out")
    q.add_argument("--vectorize", choices=("auto", "off"), default="auto", help="auto: cells sharing an architecture train together as one stacked model (default); off: one by one")
    q.add_argument("--yes", action="store_true", help="run a sweep of more than 10,000 cells")
    q.add_argument("--keep-going", action="store_true", help="exit 0 even when some cells diverged (default: exit 1; their rows stay blank)")
    backend_args(q, "the cells (or groups of vectorized cells)")
    q.add_argument("--quiet", action="store_true", help="no progress output")

    q = verb("sample", "generate images from a trained run")
    q.add_argument("dir", help="a run folder")
    q.add_argument("--n", type=int, help="number of images (default: sample.n)")
    q.add_argument("--class", dest="label", type=int, metavar="K", help="a conditional model (cvae): draw class K only (default: every class in turn)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sample.delta, sample.denoise, sample.seed")
    q.add_argument("--out", required=True, help="a .png (image grid) or .npz (key `images`, (N, C, H, W) float32)")

    q = verb("reconstruct", "reconstruct images through a trained run")
    q.add_argument("dir", help="a run folder")
    q.add_argument("--input", help="a .npz/.npy file of images (default: the run's own data)")
    q.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    q.add_argument("--out", required=True, help="a .png (inputs above reconstructions) or .npz (keys `images`, `inputs`)")

    q = verb("evaluate", "measure a trained run: reconstruction error, ELBO, importance-weighted NLL, FID, P/R/D/C, class spread")
    q.add_argument("dir", help="a run folder")
    q.add_argument("--n", type=int, default=0, help="test images (default: the dataset's test set, or 2,000)")
    q.add_argument("--k", type=int, default=64, help="importance samples per image for nll_iw (default 64)")
    q.add_argument("--metrics", default="", help="a comma-separated subset of the metrics in docs/evaluation.md (default: recon_mse, elbo, nll_iw, fid, prdc, class and posterior, those that apply)")

    q = verb("anomaly", "train on every class but one, score test images by −ELBO and reconstruction error, report ROC-AUC")
    config_args(q)
    q.add_argument("--class", dest="anomaly_class", type=int, required=True, metavar="K", help="the class the VAE never sees")
    q.add_argument("--out", required=True, help="the output folder")
    q.add_argument("--force", action="store_true", help="overwrite an existing folder at --out")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

    q = verb("augment", "train a classifier on a few labelled images, with and without VAE-generated ones, and compare")
    config_args(q)
    q.add_argument("--few", type=int, default=100, help="real labelled images (default 100)")
    q.add_argument("--generated", type=int, default=1000, help="VAE samples added, labelled by the first classifier (default 1000)")
    q.add_argument("--out", required=True, help="the output folder")
    q.add_argument("--force", action="store_true", help="overwrite an existing folder at --out")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

    q = verb("latent", "draw a run's latent space: scatter or t-SNE, traversals, interpolation, reconstructions, noise in")
    q.add_argument("dir", help="a run folder")
    q.add_argument("--n", type=int, default=0, help="test images (default: the dataset's test set, or 2,000)")
    q.add_argument("--seed", type=int, default=0, help="seed of t-SNE and of the noise images")

    q = verb("report", "rebuild report.html of a run, chain or sweep folder from its files")
    q.add_argument("dir", help="a run, chain or sweep folder")

    verb("presets", "list the shipped presets")
    q = verb("keys", "list every config key: its type, default and meaning (the chosen dataset's and model's keys too)")
    q.add_argument("section", nargs="?", help="one section: data, model, loss, train, sample, chain or sweep")
    config_args(q)
    verb("datasets", "list the datasets and their parameters")

    q = verb("demo", "train the demo study and write its HTML report")
    q.add_argument("--out", default="runs/demo", help="where to write (default runs/demo)")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the demo's config, e.g. train.steps=100")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# ---------------------------------------------------------------------------------------------
# One function per verb.


def cmd_train(args) -> None:
    from vaelab.config import load_config
    from vaelab.train import resume, train

    if args.resume:
        moves = [s.split("=", 1)[1].strip() for s in args.set if s.split("=", 1)[0].strip() == "train.device" and "=" in s]
        if args.preset or args.config or args.force or len(moves) != len(args.set) or len(moves) > 1:
            raise UserError("--resume takes the run's stored config: drop --preset/--config/--set/--force (one --set train.device=… may move it to another device)")
        if args.out and Path(args.out) != Path(args.resume):
            raise UserError("--resume DIR continues DIR; --out must be omitted or the same folder")
        run = resume(args.resume, quiet=args.quiet, device=moves[0] if moves else None)
    else:
        if not args.out:
            raise UserError("vaelab train needs --out DIR (or --resume DIR)")
        run = train(load_config(args.preset, args.config, args.set), out=args.out, force=args.force, quiet=args.quiet)
    print(f"trained {len(run.history)} steps in {run.seconds:.1f} s; report: {run.dir / 'report.html'}")


def _output_kind(path: str, kinds: tuple[str, ...]) -> str:
    from vaelab.runfolder import check_output_file

    suffix = Path(path).suffix.lower()
    if suffix not in kinds:
        raise UserError(f"--out must end in {' or '.join(kinds)}, got {path!r}")
    check_output_file(path)
    return suffix


def _write_npz(path: str, **arrays) -> None:
    import numpy as np

    from vaelab.runfolder import atomic_write

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.numpy() for k, v in arrays.items()})
    atomic_write(path, buf.getvalue())


def cmd_sample(args) -> None:
    import torch

    from vaelab.checkpoint import load_run
    from vaelab.config import SampleConfig
    from vaelab.device import check_fits
    from vaelab.images import save_grid
    from vaelab.models import class_labels, output_shape
    from vaelab.sample import sample

    kind = _output_kind(args.out, (".png", ".npz"))
    bad = [s for s in args.set if not s.strip().startswith("sample.") or s.strip().startswith("sample.prior_components")]
    if bad:
        raise UserError(f"vaelab sample takes the sample.* keys of drawing (sample.delta, sample.denoise, sample.seed, sample.prior), got {bad[0]!r} (a run's mixture is fitted when it is trained)")
    cfg, model = load_run(args.dir)
    reset = [f"sample.prior_components={SampleConfig.prior_components}"]  # the run's mixture is fitted already: its size is not a drawing setting
    s = cfg.override([*args.set, *reset]).sample
    n = args.n if args.n is not None else s.n
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    check_fits(n * math.prod(output_shape(model)) * 4 * 2, torch.device("cpu"), f"--n {n:,} images")
    labels = class_labels(model, n, args.label)
    images = sample(model, n, delta=s.delta, denoise=s.denoise, seed=s.seed, labels=labels, prior=s.prior)
    if kind == ".png":
        save_grid(args.out, images)
    else:
        _write_npz(args.out, images=images, **({"labels": labels} if labels is not None else {}))
    print(f"wrote {n} samples to {args.out}")


def cmd_reconstruct(args) -> None:
    from vaelab.checkpoint import load_run
    from vaelab.data import load_data
    from vaelab.data.files import ArrayParams, read_array
    from vaelab.images import interleave_rows, save_grid
    from vaelab.sample import reconstruct

    kind = _output_kind(args.out, (".png", ".npz"))
    if args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    cfg, model = load_run(args.dir)
    if args.input:
        data = read_array(args.input, ArrayParams(), flag="--input")
    else:
        data = load_data(cfg.data)
    x = data.images[: args.n]
    shape = tuple(x.shape[1:])
    from vaelab.models import fit_to_data, output_shape

    trained = output_shape(model)
    if shape != trained:
        raise UserError(f"--input images are {shape} but the run was trained on {trained}")
    data = data.subset(slice(0, args.n))
    fit_to_data(cfg, data)  # a conditional model needs labels within its classes
    x_hat = reconstruct(model, x, data.labels if model.n_classes else None)
    if kind == ".png":
        save_grid(args.out, interleave_rows(x, x_hat, 8), nrow=8)
    else:
        _write_npz(args.out, images=x_hat, inputs=x)
    print(f"wrote {len(x)} reconstructions to {args.out}")


def cmd_evaluate(args) -> None:
    from vaelab.evaluate import evaluate_run

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) or None
    results = evaluate_run(args.dir, n=args.n, k=args.k, metrics=metrics)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in results.items() if isinstance(v, float))
    print(f"{shown}\nwrote {Path(args.dir) / 'evaluation.json'}")


def cmd_anomaly(args) -> None:
    from vaelab.config import load_config
    from vaelab.experiments.apps import run_anomaly

    r = run_anomaly(load_config(args.preset, args.config, args.set), args.out, anomaly_class=args.anomaly_class, force=args.force, quiet=args.quiet)
    print(f"class {r['class']} held out: ROC-AUC {r['auc_neg_elbo']:.3f} (−ELBO), {r['auc_recon_error']:.3f} (reconstruction error); report: {Path(args.out) / 'report.html'}")


def cmd_augment(args) -> None:
    from vaelab.config import load_config
    from vaelab.experiments.apps import run_augment

    r = run_augment(load_config(args.preset, args.config, args.set), args.out, few=args.few, generated=args.generated, force=args.force, quiet=args.quiet)
    print(f"test accuracy: {r['accuracy_real']:.3f} on {r['few']} real images, {r['accuracy_augmented']:.3f} with {r['generated']} generated; report: {Path(args.out) / 'report.html'}")


def cmd_latent(args) -> None:
    from vaelab.latent import latent_views

    from vaelab.config import SEED_MAX

    if args.n < 0:
        raise UserError(f"--n must be >= 0, got {args.n}")
    if not 0 <= args.seed <= SEED_MAX:
        raise UserError(f"--seed must be in 0..{SEED_MAX}, got {args.seed}")
    paths = latent_views(args.dir, n=args.n, seed=args.seed)
    print(f"wrote {', '.join(p.name for p in paths.values())} in {Path(args.dir) / 'latent'}; report: {Path(args.dir) / 'report.html'}")


def cmd_report(args) -> None:
    from vaelab.experiments.study import REPORTS
    from vaelab.runfolder import folder_kind, require_kind

    kind = folder_kind(args.dir)
    if kind is None:
        require_kind(args.dir, "run")  # says what the folder is instead: missing, a file, not vaelab's
    if kind not in REPORTS:
        raise UserError(f"vaelab report rebuilds {', '.join(REPORTS)} folders; {args.dir} is a {kind} folder")
    print(f"wrote {REPORTS[kind](args.dir)}")


def cmd_presets(args) -> None:
    from vaelab.presets import preset_names, read_preset

    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {read_preset(name).get('description', '')}")


def cmd_keys(args) -> None:
    from vaelab.config import load_config
    from vaelab.keys import describe, sections

    if args.section is not None and args.section not in sections():
        raise UserError(f"unknown config section {args.section!r}; valid sections: {', '.join(sections())}")
    print(describe(load_config(args.preset, args.config, args.set), args.section))


def cmd_datasets(args) -> None:
    print(DATASET_LISTING.read_text(), end="")  # vaelab.data.listing(), written into the package: no PyTorch to load


def cmd_chain(args) -> None:
    from vaelab.config import load_config
    from vaelab.experiments.chain import compare_chains, run_chain
    from vaelab.checkpoint import read_run_config

    if not args.out:
        raise UserError("vaelab chain needs --out DIR")
    if args.action:
        if args.action[0] != "compare" or len(args.action) < 2:
            raise UserError(f"unexpected {' '.join(args.action)!r}: use `vaelab chain compare DIR DIR … --out DIR`")
        if args.preset or args.config or args.set or args.resume or args.backend != "local" or args.address or args.vectorize:
            raise UserError("vaelab chain compare takes chain folders and --out only")
        print(f"wrote {compare_chains(args.action[1:], args.out, force=args.force)}")
        return
    if args.resume and not (args.preset or args.config or args.set):
        cfg = read_run_config(args.out, "chain")  # the stored config
    else:
        cfg = load_config(args.preset, args.config, args.set)
    rows = run_chain(cfg, args.out, resume=args.resume, force=args.force, quiet=args.quiet, vectorize=args.vectorize or "auto", backend=args.backend, address=args.address)
    last = max(r["generation"] for r in rows)
    final = [r["variability"] for r in rows if r["generation"] == last]
    print(f"{last} generations; variability {rows[0]['variability']:.3f} → {sum(final) / len(final):.3f}; report: {Path(args.out) / 'report.html'}")


def cmd_sweep(args) -> None:
    from vaelab.checkpoint import read_run_config
    from vaelab.config import load_config
    from vaelab.experiments.sweep import run_sweep
    from vaelab.experiments.sweep_table import diverged_step

    if not args.out:
        raise UserError("vaelab sweep needs --out DIR")
    if args.resume and not (args.preset or args.config or args.set or args.grid):
        cfg = read_run_config(args.out, "sweep")  # the stored config, grid included
    else:
        cfg = load_config(args.preset, args.config, args.set)
    rows = run_sweep(cfg, args.out, grid=args.grid, resume=args.resume, force=args.force, quiet=args.quiet, vectorize=args.vectorize, yes=args.yes, backend=args.backend, address=args.address)
    print(f"{len(rows)} cells; table: {Path(args.out) / 'sweep.csv'}; report: {Path(args.out) / 'report.html'}")
    diverged = [r["cell"] for r in rows if diverged_step(r) is not None]
    if diverged and not args.keep_going:
        print(f"vaelab: {len(diverged)} of {len(rows)} cells diverged ({', '.join(diverged[:3])}{', …' if len(diverged) > 3 else ''}); their rows are blank; --keep-going exits 0", file=sys.stderr)
        return 1


def cmd_demo(args) -> None:
    from vaelab.experiments.demo import run_demo

    report = run_demo(args.out, overrides=args.set, quiet=args.quiet)
    print(f"wrote {report}\nopen it in a web browser (one self-contained file): {report.resolve().as_uri()}")


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "report": cmd_report,
    "evaluate": cmd_evaluate,
    "latent": cmd_latent,
    "anomaly": cmd_anomaly,
    "augment": cmd_augment,
    "presets": cmd_presets,
    "keys": cmd_keys,
    "datasets": cmd_datasets,
    "demo": cmd_demo,
    "chain": cmd_chain,
    "sweep": cmd_sweep,
}


@contextlib.contextmanager
def diverged_run_errors(run_dir: Path | str | None):
    """Say in one line (a UserError) that the run diverged when work on its checkpoint fails on
    values it cannot take (a distribution's scale of 0, NaN outputs); any other run's failure is
    left as it is."""
    try:
        yield
    except (ValueError, RuntimeError) as e:
        if run_dir is None or not (Path(run_dir) / DIVERGED).is_file():
            raise
        first = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise UserError(f"{run_dir}: training diverged ({DIVERGED}), and the last good checkpoint gives values this cannot use ({first}); retrain with a lower train.lr") from None


def escape_breaks(message: str) -> str:
    """`message` on one line: a line break in it (a folder's name may hold one) is shown escaped."""
    from vaelab.config import LINE_BREAKS

    return "".join(repr(c)[1:-1] if c in LINE_BREAKS else c for c in message)


ENVIRONMENT_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR}
"""what the file system answers when the user's machine, not vaelab, refuses a read or write"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    keep_freed_host_memory()  # CPU training reuses its freed activations (vaelab.host_memory)
    try:
        args = parser.parse_args(argv)
        if args.verb is None:
            raise UserError(f"choose a verb: {', '.join(COMMANDS)} (see vaelab --help)")
        with diverged_run_errors(getattr(args, "dir", None)):  # the verbs that read a run folder
            rc = COMMANDS[args.verb](args)
    except UserError as e:
        print(f"vaelab: error: {escape_breaks(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRORS:
            raise
        print(f"vaelab: error: {escape_breaks(str(e.filename or 'a file'))}: {e.strerror}", file=sys.stderr)  # the machine refused a write
        return 2
    except MemoryError:  # a size no check foresaw (numpy's allocation)
        print("vaelab: error: out of memory: a size in the config or the arguments is too large for this machine", file=sys.stderr)
        return 2
    return rc or 0  # a verb returns 1 when its work partly failed (diverged sweep cells)


if __name__ == "__main__":
    sys.exit(main())
