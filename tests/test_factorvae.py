"""FactorVAE (vaelab.models.factorvae): the discriminator's density-ratio estimate of the total
correlation against a Gaussian's closed form, the loss's parts reaching only their own weights,
and the model training alone and in a vectorized group."""

import math

import pytest
import torch

from vaelab.config import load_config
from vaelab.data import load_data
from vaelab.losses import loss_weights
from vaelab.models import build_model
from vaelab.models.factorvae import Discriminator, discriminator_terms, shuffle_dims
from vaelab.vectorized import group_key, train_group

SMALL = {"model.name": "factorvae", "data.n": 256, "train.steps": 80, "model.discriminator": [64, 64], "model.tc_weight": 5.0}


def correlated(n: int, rho: float, g: torch.Generator) -> torch.Tensor:
    a, b = torch.randn(n, generator=g), torch.randn(n, generator=g)
    return torch.stack([a, rho * a + math.sqrt(1 - rho**2) * b], 1)  # (n, 2), correlation rho


@pytest.mark.parametrize("rho", [0.9, 0.6, 0.0])
def test_the_discriminator_learns_the_total_correlation_of_a_gaussian(rho):
    # at its optimum D's logit is log q(z) / (q(z_1) q(z_2)); for a Gaussian with correlation ρ its
    # mean is the total correlation −½ log(1 − ρ²): 0.83 nats at ρ = 0.9, 0.22 at 0.6, 0 for
    # independent dims (measured after 800 steps: 0.95, 0.27, 0.001)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    d = Discriminator(2, (64, 64))
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    for _ in range(800):
        opt.zero_grad()
        discriminator_terms(d, correlated(256, rho, g))["discriminator"].backward()
        opt.step()
    with torch.no_grad():
        z = correlated(20000, rho, g)
        tc = d(z).mean().item()
        accuracy = discriminator_terms(d, z)["discriminator_accuracy"].item()
    assert tc == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.2)
    assert accuracy > 0.55 if rho else accuracy == pytest.approx(0.5, abs=0.05)


def test_shuffling_keeps_each_dim_s_values_and_breaks_their_pairing():
    z = correlated(5000, 0.9, torch.Generator().manual_seed(2))
    s = shuffle_dims(z)
    for d in range(2):
        assert torch.equal(s[:, d].sort().values, z[:, d].sort().values)
    assert abs(torch.corrcoef(s.T)[0, 1].item()) < 0.05


def test_each_part_of_the_loss_reaches_only_its_own_weights():
    cfg = load_config("chain-conv", overrides=SMALL)
    model = build_model(cfg, (1, 24, 24))
    x = load_data(cfg.data).images[:32]
    terms = model.loss(x, 0, loss_weights(cfg.loss, 0, 256))
    disc = list(model.discriminator.parameters())
    vae = [*model.encoder.parameters(), *model.decoder.parameters()]
    assert all(g is None for g in torch.autograd.grad(terms["tc_discriminator"], disc, retain_graph=True, allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(terms["discriminator"], vae, retain_graph=True, allow_unused=True))
    assert any(g is not None and g.abs().sum() > 0 for g in torch.autograd.grad(terms["tc_discriminator"], list(model.encoder.parameters()), retain_graph=True, allow_unused=True))
    want = terms["recon"] + terms["kl"] + 5.0 * terms["tc_discriminator"] + terms["discriminator"]
    assert terms["loss"].item() == pytest.approx(want.item(), rel=1e-6)


def test_factorvae_trains_alone_and_in_a_vectorized_group():
    configs = [load_config("chain-conv", overrides={**SMALL, "train.seed": s}) for s in (0, 1)]
    assert group_key(configs[0]) == group_key(configs[1])
    data = load_data(configs[0].data)
    for run in train_group(configs, [data, data], [None, None], quiet=True):
        rows = run.history
        assert rows[-1]["recon"] < 0.5 * rows[0]["recon"]
        for row in rows:
            assert row["loss"] == pytest.approx(row["recon"] + row["kl"] + 5.0 * row["tc_discriminator"] + row["discriminator"], rel=1e-4, abs=1e-4)
        assert "tc" not in rows[-1] and "dip_diag" not in rows[-1]  # terms no member uses are not computed
