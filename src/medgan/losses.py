"""GAN losses as small objects in a registry. Adding a variant never touches the trainer.

Each loss turns discriminator outputs (raw scores, no sigmoid) into a D loss and a G loss.
``d_loss`` returns the loss and a dict of extra scalars to log (e.g. the Wasserstein estimate).
Every loss takes an optional R1 penalty (Mesheder et al. 2018) on D's gradient at real images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES: dict[str, type[GANLoss]] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        LOSSES[name] = cls
        return cls

    return add


class GANLoss:
    name = "?"
    n_critic = 1  # default D steps per G step
    wasserstein = False  # a critic: no batch norm in D, logs the Wasserstein estimate
    undecided: float | None = 0.0  # D's output halfway between "real" and "fake" (None: a critic has no such point)
    gp_weight = 0.0  # weight of the gradient penalty at real/fake mixtures (WGAN-GP); 0 = none

    def __init__(self, r1: float = 0.0):
        self.r1 = r1  # gamma of the R1 penalty, gamma / 2 * E ||grad D(real)||^2; 0 = off

    def d_loss(self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """One run's D loss with its penalties, and its stats (``d_losses`` for a single member)."""
        return d_losses(
            [self], lambda x: disc(x.squeeze(0)).unsqueeze(0), real.unsqueeze(0), fake.unsqueeze(0), one_member
        )[0]

    def d_loss_from(
        self,
        real_out: torch.Tensor,
        fake_out: torch.Tensor,
        real_grad: torch.Tensor | None = None,
        mixed_grad: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """D's loss and stats from its scores and, for the penalties, its input gradients at the real images (R1)
        and at the real/fake mixtures (gradient penalty), for one member."""
        loss, stats = self.d_from_scores(real_out, fake_out), self.stats(real_out, fake_out)
        if real_grad is not None:
            penalty = real_grad.flatten(1).pow(2).sum(1).mean()
            loss = loss + 0.5 * self.r1 * penalty
            stats["r1_penalty"] = penalty.detach()
        if mixed_grad is not None:
            penalty = unit_gradient_penalty(mixed_grad)
            loss = loss + self.gp_weight * penalty
            stats["gradient_penalty"] = penalty.detach()
        return loss, stats

    def d_from_scores(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stats(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> dict:
        stats = {"d_real": real_out.detach().mean(), "d_fake": fake_out.detach().mean()}
        if self.undecided is not None:  # ADA's overfitting heuristic r_t: 1 = D calls every real image real
            stats["d_real_sign"] = torch.sign(real_out.detach().float() - self.undecided).mean()
        return stats

    def after_d_step(self, disc: nn.Module) -> None:
        """Hook run after each discriminator optimiser step (weight clipping)."""


@register("gan")
class BCELoss(GANLoss):
    """Original GAN with binary cross-entropy and the non-saturating generator loss."""

    def d_from_scores(self, real_out, fake_out):
        return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()

    def g_loss(self, fake_out):
        return F.softplus(-fake_out).mean()


@register("lsgan")
class LeastSquaresLoss(GANLoss):
    """LSGAN (Mao et al. 2017), targets a=0, b=c=1."""

    undecided = 0.5

    def d_from_scores(self, real_out, fake_out):
        return 0.5 * ((real_out - 1).pow(2).mean() + fake_out.pow(2).mean())

    def g_loss(self, fake_out):
        return 0.5 * (fake_out - 1).pow(2).mean()


@register("hinge")
class HingeLoss(GANLoss):
    """Hinge loss (Lim & Ye 2017; SNGAN, BigGAN)."""

    def d_from_scores(self, real_out, fake_out):
        return F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()

    def g_loss(self, fake_out):
        return -fake_out.mean()


@register("wgan")
class WassersteinLoss(GANLoss):
    """WGAN (Arjovsky et al. 2017): critic weights clipped to [-clip, clip] after each optimiser step."""

    n_critic = 5
    wasserstein = True
    undecided = None

    def __init__(self, clip: float = 0.01, **options):
        super().__init__(**options)
        self.clip = clip

    def d_from_scores(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()

    def g_loss(self, fake_out):
        return -fake_out.mean()

    def stats(self, real_out, fake_out):
        return {**super().stats(real_out, fake_out), "wasserstein": (real_out.mean() - fake_out.mean()).detach()}

    @torch.no_grad()
    def after_d_step(self, disc):
        for p in disc.parameters():
            p.clamp_(-self.clip, self.clip)


def d_losses(
    losses: list[GANLoss], disc, real: torch.Tensor, fake: torch.Tensor, each
) -> list[tuple[torch.Tensor, dict]]:
    """Each member's D loss with its penalties, and its stats: the one place the penalties are assembled.

    ``real``, ``fake``: (K, B, C, H, W), members first; ``disc`` scores such batches; ``each(draw, *tensors)`` makes a
    random draw per member in its own random stream (``one_member`` for one run). The members agree on the penalties
    (a pack's runs do), so D and its input gradients are computed once for all; each member's loss then reads its own
    slice. Random draws per member: D's inputs real, fake, then the mixtures and their augmentation."""
    r1, gp = losses[0].r1, losses[0].gp_weight
    if r1:
        real = real.detach().requires_grad_(True)
    real_out, fake_out = disc(real), disc(fake)
    real_grad = input_gradient(real_out, real) if r1 else None
    mixed = each(interpolate, real, fake) if gp else None
    mixed_grad = input_gradient(disc(mixed), mixed) if gp else None
    return [
        loss.d_loss_from(real_out[k], fake_out[k], _member(real_grad, k), _member(mixed_grad, k))
        for k, loss in enumerate(losses)
    ]


def _member(stacked: torch.Tensor | None, k: int) -> torch.Tensor | None:
    return None if stacked is None else stacked[k]


def one_member(draw, *tensors: torch.Tensor) -> torch.Tensor:
    """``each`` of a single run: ``draw`` on the slices of its leading dimension of 1, in the global random stream."""
    return draw(*(t.squeeze(0) for t in tensors)).unsqueeze(0)


def input_gradient(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d(sum of D's scores)/dx, kept in the graph (a penalty on it trains D). Each score depends on its own image
    only (and, in a packed run, on its own member), so this is every image's own gradient."""
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


def interpolate(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Random points between real and fake images (one mixing weight per image), where WGAN-GP takes D's gradient."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    return torch.lerp(real.detach(), fake.detach().to(real.dtype), alpha).requires_grad_(
        True
    )  # fake is bf16 under autocast


def unit_gradient_penalty(grad: torch.Tensor) -> torch.Tensor:
    """E[(||grad||_2 - 1)^2], the norm taken per sample over all pixels and channels."""
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty: E[(||grad D(x_hat)||_2 - 1)^2] at random real/fake mixtures x_hat."""
    mixed = interpolate(real, fake)
    return unit_gradient_penalty(input_gradient(disc(mixed), mixed))


@register("wgan-gp")
class WassersteinGPLoss(WassersteinLoss):
    """WGAN-GP (Gulrajani et al. 2017): Wasserstein loss plus lambda * gradient penalty."""

    def __init__(self, gp_weight: float = 10.0, **options):
        super().__init__(**options)
        self.gp_weight = gp_weight

    def after_d_step(self, disc):  # no clipping: the penalty keeps the critic Lipschitz
        pass


def build_loss(name: str, r1: float = 0.0) -> GANLoss:
    return LOSSES[name](r1=r1)
