"""Run folders: the marker and manifest, `--force` that deletes only what vaelab wrote, verbs that
check a folder's kind, writable outputs checked before anything is written, and safetensors files
that are equal when their contents are.

Every `--force` case of the probe in issue 15 is here: the user's files must still be there, byte
for byte, after the command is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from clihelp import one_thread  # noqa: F401  (registers the module-wide one-thread fixture)
from clihelp import cli, user_error

from vaelab.runfolder import MANIFEST, MARKER, check_writable, folder_kind, load_tensors, prepare_out, read_manifest, save_tensors

B = ["--preset", "chain-fc1", "--set", "data.n=300", "--set", "train.steps=4", "--set", "sample.n=4", "--quiet"]
CHAIN = ["--preset", "chain-fc1", "--set", "data.n=200", "--set", "train.steps=3", "--set", "chain.generations=1", "--set", "chain.holdout=50", "--set", "chain.metric_samples=50", "--quiet"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path → sha256), symbolic links by their target."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def made(factory, name: str, *args) -> Path:
    """The folder `vaelab ARGS --out DIR` writes, once per module."""
    d = factory.mktemp(name) / name
    r = cli(*args, "--out", d)
    assert r.rc == 0, r.err
    return d


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return made(tmp_path_factory, "run", "train", *B)


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    return made(tmp_path_factory, "chain", "chain", *CHAIN)


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# ---------------------------------------------------------------------------------------------
# The marker and the manifest.


def test_every_entry_vaelab_writes_into_a_run_folder_is_in_its_manifest(tmp_path, run):
    d = copy(run, tmp_path / "run")
    assert cli("evaluate", d, "--n", "64", "--k", "2", "--metrics", "recon_mse,elbo").rc == 0
    assert cli("latent", d, "--n", "64").rc == 0
    assert cli("report", d).rc == 0
    written = {p.name for p in d.iterdir()} - {MARKER, MANIFEST}
    assert written >= {"config.toml", "model.safetensors", "evaluation.json", "latent", "report.html"}
    assert set(read_manifest(d)) == written
    assert folder_kind(d) == "run"


def test_every_entry_of_a_chain_folder_is_in_its_manifest_and_its_vaes_are_runs(chain):
    written = {p.name for p in chain.iterdir()} - {MARKER, MANIFEST}
    assert set(read_manifest(chain)) == written
    assert {"seed-0", "chain.csv", "config.toml", "report.html"} <= written
    vae = chain / "seed-0" / "gen-000" / "vae"
    assert folder_kind(chain) == "chain" and folder_kind(vae) == "run"
    assert {p.name for p in vae.iterdir()} - {MARKER, MANIFEST} <= set(read_manifest(vae))  # (a finished VAE drops its state)


def test_force_clears_what_vaelab_wrote_and_keeps_the_users_files_beside_it(tmp_path, run):
    d = copy(run, tmp_path / "run")
    assert cli("evaluate", d, "--n", "64", "--k", "2", "--metrics", "recon_mse").rc == 0
    (d / "notes.txt").write_text("my notes\n")
    (d / "mine").mkdir()
    (d / "mine" / "a.bin").write_bytes(b"\x00\x01")
    mine = {k: v for k, v in snapshot(d).items() if k.startswith(("notes", "mine"))}
    r = cli("train", *B, "--set", "train.seed=5", "--out", d, "--force")
    assert r.rc == 0, r.err
    assert {k: v for k, v in snapshot(d).items() if k.startswith(("notes", "mine"))} == mine
    assert not (d / "evaluation.json").exists()  # the old run's evaluation went with it
    assert "seed = 5" in (d / "config.toml").read_text()


def test_a_manifest_cannot_name_anything_outside_its_folder(tmp_path):
    d = prepare_out(tmp_path / "run", "run")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    with open(d / MANIFEST, "a") as f:
        for name in ["../outside.txt", "..", ".", "", "a/../../outside.txt", str(outside)]:
            f.write(json.dumps(name) + "\n")
        f.write('{"torn\n')
    assert read_manifest(d) == []
    prepare_out(d, "run", force=True)
    assert outside.read_text() == "keep"


def test_force_removes_a_symbolic_link_it_wrote_but_not_what_it_points_to(tmp_path):
    d = prepare_out(tmp_path / "run", "run")
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious").write_text("keep")
    (d / "latent").symlink_to(target)
    with open(d / MANIFEST, "a") as f:
        f.write(json.dumps("latent") + "\n")
    prepare_out(d, "run", force=True)
    assert (target / "precious").read_text() == "keep" and not (d / "latent").exists()


# ---------------------------------------------------------------------------------------------
# --force refuses what it must never clear (the probe's five cases).


def test_force_refuses_a_users_project_whose_config_looks_like_vaelabs(tmp_path):
    d = tmp_path / "myproject"
    (d / "src").mkdir(parents=True)
    (d / "src" / "main.py").write_text("print('hi')\n")
    (d / "NOTES.md").write_text("# notes\n")
    (d / "config.toml").write_text("[model]\nname = 'mine'\n[train]\nepochs = 3\n")
    before = snapshot(d)
    user_error(cli("train", *B, "--out", d, "--force"), "--force refused", "no .vaelab marker")
    assert snapshot(d) == before


def test_force_refuses_a_folder_holding_a_copied_vaelab_report(tmp_path, run):
    d = tmp_path / "mydocs"
    d.mkdir()
    shutil.copy(run / "report.html", d / "report.html")
    (d / "paper.docx").write_bytes(b"PK\x03\x04 a paper")
    before = snapshot(d)
    user_error(cli("train", *B, "--out", d, "--force"), "--force refused")
    assert snapshot(d) == before


def test_force_refuses_a_run_folder_that_holds_the_commands_own_data(tmp_path, run):
    d = copy(run, tmp_path / "runX")
    np.save(d / "mydata.npy", np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32))
    before = snapshot(d)
    args = ["--preset", "chain-fc1", "--set", "data.name=array", "--set", "data.n=0", "--set", f"data.path={d / 'mydata.npy'}", "--set", "train.steps=2", "--quiet"]
    user_error(cli("train", *args, "--out", d, "--force"), "an input of this command", "mydata.npy")
    assert snapshot(d) == before
    assert cli("train", *args, "--out", tmp_path / "elsewhere").rc == 0  # the data is still there to train on


def test_chain_compare_refuses_to_overwrite_one_of_the_chains_it_compares(tmp_path, chain):
    a = copy(chain, tmp_path / "A")
    b = copy(chain, tmp_path / "B")
    before = snapshot(a)
    user_error(cli("chain", "compare", a, b, "--out", a, "--force"), "an input of this command")
    assert snapshot(a) == before
    r = cli("chain", "compare", a, b, "--out", tmp_path / "cmp")
    assert r.rc == 0, r.err
    assert folder_kind(tmp_path / "cmp") == "compare"


def test_force_refuses_the_working_folder_and_its_ancestors(tmp_path, run, monkeypatch):
    d = copy(run, tmp_path / "runC")
    before = snapshot(d)
    monkeypatch.chdir(d)
    user_error(cli("train", *B, "--out", ".", "--force"), "--force refused", "working folder")
    (d / "sub").mkdir()
    monkeypatch.chdir(d / "sub")
    user_error(cli("train", *B, "--out", "..", "--force"), "--force refused")
    (d / "sub").rmdir()
    assert snapshot(d) == before


def test_force_refuses_a_symbolic_link_to_a_run_folder(tmp_path, run):
    d = copy(run, tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(d)
    before = snapshot(d)
    user_error(cli("train", *B, "--out", link, "--force"), "symbolic link")
    assert snapshot(d) == before


def test_force_refuses_a_folder_of_another_kind(tmp_path, chain):
    d = copy(chain, tmp_path / "chain")
    before = snapshot(d)
    user_error(cli("train", *B, "--out", d, "--force"), "--force refused", "chain folder")
    assert snapshot(d) == before


# ---------------------------------------------------------------------------------------------
# Verbs check the folder's kind.


@pytest.mark.parametrize("verb", ["chain", "sweep"])
def test_resuming_a_study_on_a_plain_run_folder_is_refused_and_writes_nothing(tmp_path, run, verb):
    d = copy(run, tmp_path / "run")
    before = snapshot(d)
    user_error(cli(verb, "--out", d, "--resume"), "is a run folder", f"not a {verb} folder")
    assert snapshot(d) == before


def test_resuming_a_run_on_a_chain_folder_is_refused_and_writes_nothing(tmp_path, chain):
    d = copy(chain, tmp_path / "chain")
    before = snapshot(d)
    user_error(cli("train", "--resume", d), "is a chain folder", "not a run folder")
    user_error(cli("sweep", "--out", d, "--resume"), "is a chain folder")
    user_error(cli("sample", d, "--out", tmp_path / "s.png"), "is a chain folder")
    assert snapshot(d) == before


def test_report_rebuilds_by_the_folders_kind(tmp_path, chain):
    d = copy(chain, tmp_path / "chain")
    (d / "report.html").unlink()
    assert cli("report", d).rc == 0
    assert "vaelab chain" in (d / "report.html").read_text()
    user_error(cli("report", tmp_path), "not a vaelab")


# ---------------------------------------------------------------------------------------------
# A failed start never blocks the retry.


def test_a_run_that_fails_at_its_start_leaves_nothing_that_blocks_a_plain_retry(tmp_path):
    d = tmp_path / "run"
    user_error(cli("train", *B, "--set", "data.n=1", "--set", "model.batch_norm=true", "--out", d), "at least 2")
    r = cli("train", *B, "--out", d)
    assert r.rc == 0, r.err
    assert (d / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------
# Outputs that cannot be written: one line, before anything is written.


def unwritable(tmp_path: Path) -> Path:
    """A folder no file can be created in: mode 0o555, or (as root, who ignores modes) a folder
    under /sys, which the kernel refuses to create."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "probe").touch()
    except OSError:
        return d
    (d / "probe").unlink()
    return Path("/sys/vaelab-test-unwritable")


def test_check_writable_refuses_what_cannot_be_created(tmp_path):
    ro = unwritable(tmp_path)
    for bad in [ro / "run", ro / "a" / "b", tmp_path / ("x" * 300)]:
        with pytest.raises(Exception, match="--out") as e:
            check_writable(bad)
        assert type(e.value).__name__ == "UserError"
    (tmp_path / "file").write_text("")
    with pytest.raises(Exception, match="is a file"):
        check_writable(tmp_path / "file" / "run")
    check_writable(tmp_path / "new" / "run")  # does not create it
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("verb", ["train", "chain", "sweep"])
def test_an_unwritable_out_is_one_line_for_every_study(tmp_path, verb):
    ro = unwritable(tmp_path)
    args = {"train": B, "chain": CHAIN, "sweep": [*B, "--grid", "loss.beta=1,2"]}[verb]
    user_error(cli(verb, *args, "--out", ro / "out"), "cannot write")


def test_sample_into_an_unwritable_place_or_onto_a_folder_is_one_line(tmp_path, run):
    ro = unwritable(tmp_path)
    for name in ["s.png", "s.npz"]:
        user_error(cli("sample", run, "--n", "4", "--out", ro / name), "cannot write")
    (tmp_path / "adir.png").mkdir()
    user_error(cli("sample", run, "--n", "4", "--out", tmp_path / "adir.png"), "is a directory")
    user_error(cli("reconstruct", run, "--n", "4", "--out", ro / "r.png"), "cannot write")


def test_report_latent_and_resume_in_a_folder_that_refuses_writes_are_one_line(tmp_path, run, monkeypatch):
    """A read-only run folder (simulated: root may write anywhere, so mkstemp refuses instead)."""
    import tempfile

    d = copy(run, tmp_path / "run")
    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kw):
        if dir is not None and Path(dir).resolve().is_relative_to(d.resolve()):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    before = snapshot(d)
    user_error(cli("report", d), "Permission denied")
    user_error(cli("latent", d, "--n", "32"), "Permission denied")
    user_error(cli("train", "--resume", d), "Permission denied")
    assert snapshot(d) == before


# ---------------------------------------------------------------------------------------------
# safetensors files: equal contents, equal bytes.


def test_equal_tensors_and_metadata_give_equal_files(tmp_path):
    tensors = {f"w{i}": torch.arange(6.0).reshape(2, 3) + i for i in range(8)}
    meta = {f"key{i}": str(i) for i in range(12)}
    files = [save_tensors(tmp_path / f"{k}.safetensors", tensors, **meta).read_bytes() for k in range(6)]
    assert all(f == files[0] for f in files)
    header = json.loads(files[0][8 : 8 + int.from_bytes(files[0][:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    back, got = load_tensors(tmp_path / "0.safetensors")
    assert got == {"format": "vaelab", **meta}
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_sampling_more_images_than_memory_holds_is_one_line_and_writes_nothing(tmp_path, run):
    user_error(cli("sample", run, "--n", "1000000000000", "--out", tmp_path / "s.png"), "--n 1,000,000,000,000", "GiB")
    user_error(cli("sample", run, "--set", "sample.seed=99999999999999999999", "--out", tmp_path / "s.png"), "sample.seed")
    user_error(cli("latent", run, "--seed", "-1"), "--seed")
    assert not (tmp_path / "s.png").exists()


def test_an_out_inside_an_input_is_refused_even_without_force(tmp_path, chain):
    a = copy(chain, tmp_path / "A")
    before = snapshot(a)
    user_error(cli("chain", "compare", a, a, "--out", a / "cmp"), "an input of this command")
    assert snapshot(a) == before


@pytest.mark.parametrize(
    "args,needle",
    [
        (["chain", *CHAIN, "--set", "chain.samples=99999999999"], "chain.samples"),
        (["augment", *B, "--set", "data.name=digits", "--set", "data.n=0", "--few", "20", "--generated", "99999999999"], "--generated"),
    ],
)
def test_sizes_beyond_memory_in_studies_are_one_line_before_anything_is_written(tmp_path, args, needle):
    user_error(cli(*args, "--out", tmp_path / "o"), needle, "GiB")
    assert not (tmp_path / "o").exists()


def test_importance_samples_beyond_memory_are_one_line(run):
    user_error(cli("evaluate", run, "--n", "50", "--k", "99999999999"), "--k", "GiB")


# ---------------------------------------------------------------------------------------------
# The second probe's findings.


def test_a_newline_in_a_folders_name_stays_on_one_line(tmp_path):
    d = tmp_path / "no\nsuch"
    line = user_error(cli("sample", d, "--out", tmp_path / "s.png"), "does not exist")
    assert "no\\nsuch" in line


def test_a_users_folder_with_a_copied_report_and_config_is_not_a_run(tmp_path, run):
    d = tmp_path / "mine"
    d.mkdir()
    for name in ("report.html", "config.toml"):
        shutil.copy(run / name, d / name)
    before = snapshot(d)
    user_error(cli("report", d), "not a vaelab run folder")
    assert snapshot(d) == before


def test_resume_without_a_training_state_is_refused_and_keeps_the_weights(tmp_path, run):
    d = copy(run, tmp_path / "run")
    (d / "state.safetensors").unlink()
    before = snapshot(d)
    user_error(cli("train", "--resume", d), "no state.safetensors")
    assert snapshot(d) == before


def test_latent_on_a_damaged_log_writes_nothing(tmp_path, run):
    d = copy(run, tmp_path / "run")
    (d / "metrics.jsonl").write_text("[1, 2]\n{}\n")
    before = snapshot(d)
    user_error(cli("latent", d, "--n", "32"), "metrics.jsonl line 1")
    assert snapshot(d) == before


def test_a_width_beyond_any_tensor_is_one_line(tmp_path):
    user_error(cli("train", *B, "--set", "model.hidden=[1e30]", "--out", tmp_path / "o"), "model.hidden")
    user_error(cli("train", *B, "--set", "model.hidden=[1000000000000000000000000000000]", "--out", tmp_path / "o"), "cannot be built")
    assert not (tmp_path / "o").exists()


def test_a_folder_name_that_is_not_utf8_gets_its_report(tmp_path):
    d = Path(os.fsdecode(bytes(tmp_path) + b"/o\xff"))
    r = cli("train", *B, "--out", d)
    assert r.rc == 0, r.err
    assert (d / "report.html").is_file()


def test_weights_that_are_not_finite_are_refused_in_one_line(tmp_path, run):
    from safetensors.torch import load_file

    d = copy(run, tmp_path / "run")
    weights = load_file(str(d / "model.safetensors"))
    _, meta = load_tensors(d / "model.safetensors")
    save_tensors(d / "model.safetensors", {k: v * float("nan") for k, v in weights.items()}, **{k: v for k, v in meta.items() if k != "format"})
    user_error(cli("evaluate", d, "--n", "50", "--k", "2", "--metrics", "recon_mse,elbo"), "NaN or infinite")


def test_a_report_that_is_a_folder_is_refused_before_evaluate_writes(tmp_path, run):
    d = copy(run, tmp_path / "run")
    (d / "report.html").unlink()
    (d / "report.html").mkdir()
    before = snapshot(d)
    user_error(cli("evaluate", d, "--n", "50", "--k", "2", "--metrics", "recon_mse"), "report.html is a directory")
    user_error(cli("report", d), "report.html is a directory")
    assert snapshot(d) == before
