"""Generator/discriminator pairs by name: ``mlp`` and ``mlp-bn`` (the seeds' nets), ``dcgan`` (convolutional)."""

from __future__ import annotations

from functools import partial

from torch import nn

from medgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from medgan.models.mlp import MLPDiscriminator, MLPGenerator

MODELS: dict[str, tuple] = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "mlp-bn": (partial(MLPGenerator, mlp_batch_norm=True), partial(MLPDiscriminator, leaky=True)),  # seed 002
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
}


def build_models(name: str, shape: tuple[int, int, int], latent_dim: int = 100, batch_norm_in_d: bool = True, width: int = 64) -> tuple[nn.Module, nn.Module]:
    """Return ``(generator, discriminator)`` for images of ``shape`` = (C, H, W)."""
    gen_cls, disc_cls = MODELS[name]
    return gen_cls(shape, latent_dim=latent_dim, width=width), disc_cls(shape, batch_norm=batch_norm_in_d, width=width)
