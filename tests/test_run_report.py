"""A training run's report (vaelab.run_report): each part is built from the run folder's files
alone (hand-written here: no training), and left out when its files are missing or damaged."""

from __future__ import annotations

import json
import re

import pytest

from vaelab.errors import UserError
from vaelab.run_report import LATENT_VIEWS, loss_terms, run_section, write_run_report
from vaelab.runfolder import write_jsonl, write_toml

PNG = b"\x89PNG\r\n\x1a\n"  # a signature is all a part embeds; no browser decodes it here


def test_loss_terms_come_in_the_fixed_order_then_by_name():
    assert loss_terms([{"step": 0, "epoch": 0, "time": 1.0, "zeta": 1, "kl": 1, "beta": 1, "loss": 1, "alpha": 1, "recon": 1}]) == ["loss", "recon", "kl", "beta", "alpha", "zeta"]


def _run(folder):
    write_toml(folder / "config.toml", {"model": {"name": "fc1", "latent_dim": 4}, "data": {"name": "points"}})
    history = [{"step": i, "epoch": 0, "loss": float(100 - i), "recon": float(90 - i), "time": 0.5 * (i + 1)} for i in range(40)]
    write_jsonl(folder / "metrics.jsonl", history)


def test_a_run_section_is_built_from_the_folders_files(tmp_path):
    _run(tmp_path)
    (tmp_path / "diverged.json").write_text(json.dumps({"step": 40, "what": "loss", "checkpoint": 0}))
    body = run_section(tmp_path).body
    summary = re.findall(r"<td[^>]*>(.*?)</td>", body.split("</table>")[0])
    # model, dataset, latent dim, parameters (no weights: unknown), trained on, steps, time, final
    # loss and recon (the mean of the last 5%: steps 38 and 39), diverged
    assert summary[:8] == ["fc1", "points", "4", "?", "?", "40", "20", "61.5"]
    assert summary[8] == "51.5" and summary[9].startswith("at step 40: loss; checkpoint kept: step none")
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert "model.latent_dim" in body  # the configuration table
    assert "Latent space" not in body and "Evaluation" not in body  # neither `vaelab latent` nor `evaluate` has run


def test_the_latent_and_evaluation_parts_come_in_order_once_their_files_exist(tmp_path):
    _run(tmp_path)
    (tmp_path / "latent").mkdir()
    for name, _ in LATENT_VIEWS[:2]:
        (tmp_path / "latent" / name).write_bytes(PNG)
    (tmp_path / "evaluation.json").write_text(json.dumps({"n_test": 7, "fid": 1.25, "feature_net": "<net>"}))
    body = write_run_report(tmp_path).read_text()
    assert body.index("Loss terms") < body.index("Latent space") < body.index("Evaluation") < body.index("configuration")
    assert body.count("<figure>") == 1 + 2  # the loss curves and the two latent views written
    assert LATENT_VIEWS[0][1] in body and LATENT_VIEWS[2][1] not in body
    evaluation = body.split("Evaluation")[1].split("</table>")[0]
    assert re.findall(r"<td[^>]*>(.*?)</td>", evaluation) == ["7", "1.25"]
    assert "features: &lt;net&gt;" in body  # escaped


def test_a_damaged_evaluation_is_left_out_and_a_missing_config_refused(tmp_path):
    _run(tmp_path)
    (tmp_path / "evaluation.json").write_text('{"fid": ')
    assert "Evaluation" not in run_section(tmp_path).body
    (tmp_path / "config.toml").unlink()
    with pytest.raises(UserError, match="not a vaelab run folder"):
        run_section(tmp_path)
