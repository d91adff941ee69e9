"""DCGAN-style convolutional nets that work at 28 and at 64, 128, 224.

Both nets work between ``size`` and a base resolution ``size / 2**k`` of 4 to 7 pixels
(28 -> 7, 64 -> 4, 128 -> 4, 224 -> 7), doubling or halving with stride-2 4x4 convolutions.
"""

from __future__ import annotations

from torch import nn

from medgan.models.minibatch_std import MinibatchStd


def num_stages(size: int) -> int:
    """Number of 2x up/down-sampling stages between ``size`` and a 4-7 px base."""
    k = 0
    while size % 2 == 0 and size // 2 >= 4:
        size //= 2
        k += 1
    if k == 0 or size > 7:
        raise ValueError(f"dcgan needs an image size of 4..7 times a power of two (28, 32, 64, 128, 224), got {size}")
    return k


def _width(stage: int, width: int, max_width: int = 512) -> int:
    return min(width * 2**stage, max_width)


def init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) for convs and linears, N(1, 0.02) for batch-norm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 100, width: int = 64, **_):
        super().__init__()
        channels, size, _ = shape
        k = num_stages(size)
        base, top = size // 2**k, _width(k - 1, width)
        self.latent_dim = latent_dim
        self.project = nn.Sequential(
            nn.Linear(latent_dim, top * base * base, bias=False),
            nn.Unflatten(1, (top, base, base)),
            nn.BatchNorm2d(top),
            nn.ReLU(inplace=True),
        )
        layers = []
        for stage in reversed(range(k)):
            c_in, c_out = _width(stage, width), _width(max(stage - 1, 0), width)
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.Conv2d(_width(0, width), channels, 3, 1, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.apply(init_dcgan)

    def forward(self, z):
        return self.body(self.project(z))


class DCGANDiscriminator(nn.Module):
    """Strided convs + LeakyReLU; batch norm only when the loss allows it (never in Wasserstein critics).

    ``minibatch_std`` appends the minibatch standard deviation (groups of 4) as a channel before the head."""

    def __init__(
        self, shape: tuple[int, int, int], width: int = 64, batch_norm: bool = True, minibatch_std: bool = False, **_
    ):
        super().__init__()
        channels, size, _ = shape
        k = num_stages(size)
        base = size // 2**k
        layers = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for stage in range(1, k):
            c_in, c_out = _width(stage - 1, width), _width(stage, width)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers += [nn.LeakyReLU(0.2, inplace=True)]
        layers += [MinibatchStd()] if minibatch_std else []
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear((_width(k - 1, width) + minibatch_std) * base * base, 1)
        self.apply(init_dcgan)

    def forward(self, x):
        return self.head(self.features(x)).view(-1)
