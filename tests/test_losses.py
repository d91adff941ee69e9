import math

import pytest
import torch
from torch import nn

from medgan.losses import LOSSES, build_loss, gradient_penalty


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_registry_has_the_variants():
    assert {"gan", "lsgan", "wgan", "wgan-gp", "hinge"} <= set(LOSSES)
    assert build_loss("wgan").n_critic == 5 and build_loss("wgan-gp").n_critic == 5
    assert build_loss("gan").n_critic == 1 and build_loss("lsgan").n_critic == 1
    assert build_loss("wgan").wasserstein and not build_loss("lsgan").wasserstein


def test_bce_gan_loss_by_hand():
    loss = build_loss("gan")
    assert loss.d_from_scores(t(0.0), t(0.0)).item() == pytest.approx(2 * math.log(2))
    expected = math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))
    assert loss.d_from_scores(t(2.0), t(-1.0)).item() == pytest.approx(expected)
    # non-saturating G loss: -log(sigmoid(D(G(z))))
    assert loss.g_loss(t(0.0, 3.0)).item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-3))) / 2)


def test_lsgan_loss_by_hand():
    loss = build_loss("lsgan")
    assert loss.d_from_scores(t(1.0, 3.0), t(0.0, 2.0)).item() == pytest.approx(2.0)
    assert loss.g_loss(t(0.0, 2.0)).item() == pytest.approx(0.5)


def test_wgan_and_hinge_by_hand():
    wgan = build_loss("wgan")
    assert wgan.d_from_scores(t(1.0, 3.0), t(0.0, -2.0)).item() == pytest.approx(-1.0 - 2.0)
    assert wgan.g_loss(t(0.0, -2.0)).item() == pytest.approx(1.0)
    stats = wgan.stats(t(1.0, 3.0), t(0.0, -2.0))
    assert stats["wasserstein"].item() == pytest.approx(3.0)
    hinge = build_loss("hinge")
    assert hinge.d_from_scores(t(0.5, 2.0), t(-2.0, 0.0)).item() == pytest.approx(0.75)
    assert hinge.g_loss(t(1.0, 3.0)).item() == pytest.approx(-2.0)


class HalfSquaredNorm(nn.Module):
    """D(x) = ||x||^2 / 2, so grad D(x) = x: the gradient norm of each sample is its own norm."""

    def forward(self, x):
        return 0.5 * x.flatten(1).pow(2).sum(1)


def test_gradient_penalty_is_per_sample_over_all_pixels_and_channels():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    x[0, 0, 0, 0] = 1.0  # norm 1 -> (1 - 1)^2 = 0
    x[1, 2, 3, 3] = 3.0  # norm 3 -> (3 - 1)^2 = 4
    # real == fake, so the interpolate is x whatever alpha is
    assert gradient_penalty(HalfSquaredNorm(), x, x).item() == pytest.approx(2.0)


def test_gradient_penalty_of_linear_critic():
    w = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    w[0, 0, 0, 0], w[0, 1, 2, 2] = 1.2, 1.6  # ||w|| = 2 -> penalty (2 - 1)^2 = 1 for every sample
    critic = lambda x: (x * w).flatten(1).sum(1)
    real, fake = torch.randn(5, 2, 3, 3, dtype=torch.float64), torch.randn(5, 2, 3, 3, dtype=torch.float64)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(1.0)


def test_wgan_gp_adds_weighted_penalty():
    loss = build_loss("wgan-gp")
    x = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 0], x[1, 0, 1, 1] = 1.0, 3.0
    total, stats = loss.d_loss(HalfSquaredNorm(), x, x)
    assert stats["gradient_penalty"].item() == pytest.approx(2.0)
    assert total.item() == pytest.approx(0.0 + 10.0 * 2.0)  # Wasserstein part is 0 when real == fake


def test_weight_clipping_after_d_step():
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        for p in disc.parameters():
            p.mul_(10)
    build_loss("wgan").after_d_step(disc)
    values = torch.cat([p.flatten() for p in disc.parameters()])
    assert values.abs().max().item() == pytest.approx(0.01)
    before = [p.clone() for p in disc.parameters()]
    build_loss("wgan-gp").after_d_step(disc)  # no clipping for the GP variant
    assert all(torch.equal(a, b) for a, b in zip(before, disc.parameters()))


def test_r1_penalty_of_linear_discriminator():
    """D(x) = <w, x> has gradient w everywhere: R1 = ||w||^2, added as gamma / 2 * R1."""
    w = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    w[0, 0, 0, 0], w[0, 0, 1, 1] = 3.0, 4.0  # ||w||^2 = 25
    disc = lambda x: (x * w).flatten(1).sum(1)
    real, fake = torch.randn(4, 1, 2, 2, dtype=torch.float64), torch.randn(4, 1, 2, 2, dtype=torch.float64)
    plain, _ = build_loss("gan").d_loss(disc, real, fake)
    total, stats = build_loss("gan", r1=2.0).d_loss(disc, real, fake)
    assert stats["r1_penalty"].item() == pytest.approx(25.0)
    assert (total - plain).item() == pytest.approx(25.0)
    assert "r1_penalty" not in build_loss("gan").d_loss(disc, real, fake)[1]
