"""Generator/discriminator pairs by name: ``mlp`` and ``mlp-bn`` (the seeds' nets), ``dcgan`` (convolutional),
``resnet`` (SNGAN-style residual nets), ``progressive`` (ProGAN-style nets that grow by 2x stages)."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import _SpectralNorm
from torch.nn.utils.parametrize import register_parametrization

from medgan.models.conditional import ConditionalGenerator, ProjectionDiscriminator
from medgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from medgan.models.mlp import MLPDiscriminator, MLPGenerator
from medgan.models.progressive import ProgressiveDiscriminator, ProgressiveGenerator
from medgan.models.resnet import ResNetDiscriminator, ResNetGenerator

MODELS: dict[str, tuple] = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "mlp-bn": (partial(MLPGenerator, mlp_batch_norm=True), partial(MLPDiscriminator, leaky=True)),  # seed 002
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "resnet": (ResNetGenerator, ResNetDiscriminator),
    "progressive": (ProgressiveGenerator, ProgressiveDiscriminator),
}
MINIBATCH_STD_MODELS = ("dcgan", "resnet")  # progressive's D always has it


class SpectralNorm(_SpectralNorm):
    """torch's spectral-norm parametrization (same buffers, same numbers, so checkpoints are interchangeable), with its
    power iteration writing u and v by ``copy_`` instead of ``out=``: ``vmap`` cannot batch ``out=``, and packed runs
    (medgan.packed) run each member's own power iteration under ``vmap``."""

    @torch.no_grad()
    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        for _ in range(n_power_iterations):
            self._u.copy_(F.normalize(torch.mv(weight_mat, self._v), dim=0, eps=self.eps))
            self._v.copy_(F.normalize(torch.mv(weight_mat.H, self._u), dim=0, eps=self.eps))


def add_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral normalisation (one power iteration per forward) on every conv and linear layer."""
    for child in module.children():
        if isinstance(child, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            dim = 1 if isinstance(child, nn.ConvTranspose2d) else 0  # the output channels, as torch's spectral_norm
            register_parametrization(
                child, "weight", SpectralNorm(child.weight, n_power_iterations=1, dim=dim, eps=1e-12)
            )
        else:
            add_spectral_norm(child)
    return module


def build_models(
    name: str,
    shape: tuple[int, int, int],
    latent_dim: int = 100,
    batch_norm_in_d: bool = True,
    width: int = 64,
    spectral_norm: bool = False,
    n_classes: int = 0,
    minibatch_std: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """Return ``(generator, discriminator)`` for images of ``shape`` = (C, H, W).

    With ``spectral_norm`` every layer of D is spectrally normalised and D has no batch norm.
    With ``minibatch_std`` D (dcgan, resnet) sees the batch's variety as one more feature channel.
    With ``n_classes`` the nets are class-conditional: G(z, y) and D(x, y) (see ``conditional``)."""
    gen_cls, disc_cls = MODELS[name]
    gen = gen_cls(shape, latent_dim=latent_dim * (2 if n_classes else 1), width=width)
    disc = disc_cls(shape, batch_norm=batch_norm_in_d and not spectral_norm, width=width, minibatch_std=minibatch_std)
    if n_classes:
        gen, disc = ConditionalGenerator(gen, n_classes, latent_dim), ProjectionDiscriminator(disc, n_classes)
    return gen, add_spectral_norm(disc) if spectral_norm else disc
