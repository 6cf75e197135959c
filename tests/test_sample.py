import pytest
import torch
from torch import nn

from vaelab.models import VAE
from vaelab.sample import denoise_images, reconstruct, sample


class Identity(nn.Module):
    """decode(z) = z as a (1, 1, L) image: sampling's z becomes visible."""

    latent_dim = 4000

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    prior_sample = VAE.prior_sample

    def decode(self, z, labels=None):
        return z[:, None, None, :] + self.w

    def forward(self, x, labels=None):
        return x * 2 + self.w


@pytest.mark.parametrize("delta", [0.0, 0.4, 0.7])
def test_prior_is_widened_by_delta(delta):
    z = sample(Identity(), 50, delta=delta, seed=1)
    assert z.shape == (50, 1, 1, 4000)
    assert z.std().item() == pytest.approx(1 + delta, rel=0.02)
    assert z.mean().item() == pytest.approx(0, abs=0.02)


def test_sampling_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = sample(Identity(), 5, seed=3), sample(Identity(), 5, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, sample(Identity(), 5, seed=4))
    assert torch.equal(state, torch.get_rng_state())


def test_denoise_zeroes_pixels_below_threshold_times_the_set_max():
    x = torch.tensor([[[[0.1, 0.5]]], [[[0.8, 0.39]]]])  # max 0.8; threshold 0.5 → 0.4
    out = denoise_images(x, 0.5)
    assert torch.equal(out.flatten(), torch.tensor([0.0, 0.5, 0.8, 0.0]))
    big = sample(Identity(), 20, denoise=0.5, seed=0)
    raw = sample(Identity(), 20, seed=0)
    keep = raw >= 0.5 * raw.max()
    assert torch.equal(big[keep], raw[keep]) and (big[~keep] == 0).all()


def test_reconstruct_runs_the_model_in_eval_mode_and_restores_training():
    m = Identity()
    m.train()
    x = torch.rand(7, 1, 2, 2)
    assert torch.equal(reconstruct(m, x, batch_size=3), x * 2)
    assert m.training
