import json
import re

import browser
from vaelab.cli import main
from vaelab.runfolder import folder_kind, prepare_out, read_manifest


def test_demo_writes_a_self_contained_report(tmp_path, capsys, monkeypatch, quick_feature_net, chromium):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--set", "train.steps=20", "--set", "data.n=500"]) == 0
    printed = capsys.readouterr().out
    starts = [line for line in printed.splitlines() if re.match(r"\[\d/4\] ", line)]
    assert [line[:5] for line in starts] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]  # each part named as it starts
    assert len(re.findall(r"^ +done in \d+ s$", printed, flags=re.M)) == 4  # and timed as it ends
    assert f"wrote {out / 'report.html'}" in printed and (out / "report.html").resolve().as_uri() in printed  # where to look
    html = (out / "report.html").read_text()
    for part in ("About this demo", "A VAE on points", "VAE chain", "β × μ sweep", "A CNN VAE on fontdigits, evaluated", "Latent space", "Evaluation"):
        assert part in html, part
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 12
    assert not re.search(r'src="(?!data:)', html)  # nothing outside the file
    for page in [out / "report.html", *sorted(out.glob("*/report.html"))]:  # the demo's and its parts' (test_browser.py: the checks)
        assert browser.problems(chromium, page) == [], page
    assert (out / "train" / "model.safetensors").is_file()
    evaluation = json.loads((out / "digits" / "evaluation.json").read_text())
    assert evaluation["fid"] > 0 and "LeNet" in evaluation["feature_net"]
    assert (out / "digits" / "latent" / "traversals.png").is_file()
    assert len(list((tmp_path / "cache").glob("lenet-*.safetensors"))) == 1  # the feature net went to the cache named
    # a second demo replaces the first: it starts by clearing what the first wrote, and nothing else
    assert folder_kind(out) == "demo" and {"train", "chain", "sweep", "digits", "report.html"} <= set(read_manifest(out))
    (out / "notes.txt").write_text("mine")
    prepare_out(out, "demo", force=True)
    assert sorted(p.name for p in out.iterdir()) == [".vaelab", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
