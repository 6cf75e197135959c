import re

from vaelab.cli import main


def test_demo_writes_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet", "--set", "train.steps=20", "--set", "data.n=500"]) == 0
    html = (out / "report.html").read_text()
    assert "About this demo" in html and "A VAE on points" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 3  # loss, samples, reconstructions
    assert not re.search(r'src="(?!data:)', html)  # nothing outside the file
    assert (out / "train" / "model.safetensors").is_file()
    # a second demo replaces the first
    assert main(["demo", "--out", str(out), "--quiet", "--set", "train.steps=10", "--set", "data.n=500"]) == 0
    assert len((out / "train" / "metrics.jsonl").read_text().splitlines()) == 10
