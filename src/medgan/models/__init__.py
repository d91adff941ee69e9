"""Generator/discriminator pairs by name: ``mlp`` (the seeds' nets) and ``dcgan`` (convolutional)."""

from __future__ import annotations

from torch import nn

from medgan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from medgan.models.mlp import MLPDiscriminator, MLPGenerator

MODELS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
}


def build_models(name: str, shape: tuple[int, int, int], latent_dim: int = 100, batch_norm_in_d: bool = True, width: int = 64) -> tuple[nn.Module, nn.Module]:
    """Return ``(generator, discriminator)`` for images of ``shape`` = (C, H, W)."""
    gen_cls, disc_cls = MODELS[name]
    return gen_cls(shape, latent_dim=latent_dim, width=width), disc_cls(shape, batch_norm=batch_norm_in_d, width=width)
