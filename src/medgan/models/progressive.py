"""Progressive-growing nets (ProGAN, Karras et al. 2018) that train at a low resolution and grow by 2x stages.

Both nets are built at full size: one block per resolution on the ladder ``base, 2 base, ..., size`` (the same
4-7 px base as the dcgan nets: 64 -> 4, 8, ..., 64; 28 -> 7, 14, 28) and a 1x1 conv to or from pixels at
every resolution. ``set_stage(resolution, alpha)`` picks how many blocks forward uses; while a new block
fades in (``alpha`` < 1) its output is blended with the previous resolution's: G's upsampled image, D's
features of the downsampled image. The current resolution and alpha travel in the state dict, so a loaded
net is at the stage it was saved in; a new net starts at full size with alpha 1.

Kept from ProGAN: nearest-neighbour upsampling, 2x2 average pooling, pixel norm in G, minibatch
standard deviation in D, no batch norm, He-initialised weights (with PyTorch's default init the signal
fades through the deep D and it scores real and fake alike). Left out: equalised learning rate. G ends in tanh
like the other nets (tanh commutes with nearest upsampling, so alpha 0 is exactly the previous stage's image
upsampled).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medgan.models.dcgan import _width, num_stages
from medgan.models.minibatch_std import minibatch_stddev


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each pixel's feature vector to unit mean square (ProGAN's normalisation in G)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def init_he(module: nn.Module) -> None:
    """He (Kaiming) normal weights for LeakyReLU(0.2), zero biases: activations keep their scale through depth."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, a=0.2)
        nn.init.zeros_(module.bias)


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(c_out, c_out, 3, 1, 1), nn.LeakyReLU(0.2)
    )


class Growing(nn.Module):
    """The stage a progressive net is at: its output (G) or input (D) resolution and the fade-in alpha."""

    def __init__(self, size: int, width: int):
        super().__init__()
        k = num_stages(size)
        self.resolutions = [size // 2**k * 2**i for i in range(k + 1)]
        self.channels = [_width(k - i, width) for i in range(k + 1)]  # wide at low resolution, like dcgan
        self.level, self.alpha = k, 1.0

    @property
    def resolution(self) -> int:
        return self.resolutions[self.level]

    def set_stage(self, resolution: int, alpha: float = 1.0) -> None:
        if resolution not in self.resolutions:
            raise ValueError(f"resolution {resolution} is not a stage of this net; stages: {self.resolutions}")
        if not 0.0 <= alpha <= 1.0 or (resolution == self.resolutions[0] and alpha < 1.0):
            raise ValueError(f"alpha must be in [0, 1] (and 1 at the base resolution), got {alpha}")
        self.level, self.alpha = self.resolutions.index(resolution), float(alpha)

    def fading(self) -> bool:
        return self.alpha < 1.0 and self.level > 0

    def get_extra_state(self) -> dict:
        return {"resolution": self.resolution, "alpha": self.alpha}

    def set_extra_state(self, state: dict) -> None:
        self.set_stage(state["resolution"], state["alpha"])


class ProgressiveGenerator(Growing):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 100, width: int = 64, **_):
        channels, size, _ = shape
        super().__init__(size, width)
        self.latent_dim, base, c0 = latent_dim, self.resolutions[0], self.channels[0]
        self.project = nn.Sequential(
            nn.Linear(latent_dim, c0 * base * base), nn.Unflatten(1, (c0, base, base)), nn.LeakyReLU(0.2)
        )
        self.blocks = nn.ModuleList(
            [conv_block(c0, c0)] + [conv_block(a, b) for a, b in zip(self.channels, self.channels[1:])]
        )
        self.to_rgb = nn.ModuleList([nn.Conv2d(c, channels, 1) for c in self.channels])
        self.apply(init_he)

    def forward(self, z):
        h = self.project(pixel_norm(z.unsqueeze(-1).unsqueeze(-1)).flatten(1))
        for level in range(self.level + 1):
            previous = h
            h = pixel_norm(self.blocks[level](pixel_norm(h) if level == 0 else upsample(h)))
        image = self.to_rgb[self.level](h)
        if self.fading():
            image = torch.lerp(upsample(self.to_rgb[self.level - 1](previous)), image, self.alpha)
        return torch.tanh(image)


class ProgressiveDiscriminator(Growing):
    """Mirror of the generator; ``batch_norm`` is ignored (ProGAN's D has none; spectral norm works)."""

    def __init__(self, shape: tuple[int, int, int], width: int = 64, **_):
        channels, size, _ = shape
        super().__init__(size, width)
        c0, base = self.channels[0], self.resolutions[0]
        self.from_rgb = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(channels, c, 1), nn.LeakyReLU(0.2)) for c in self.channels]
        )
        self.blocks = nn.ModuleList(
            [conv_block(b, a) for a, b in zip(self.channels, self.channels[1:])]
        )  # level i+1 -> i
        self.final = nn.Sequential(conv_block(c0 + 1, c0), nn.Flatten())
        self.head = nn.Linear(c0 * base * base, 1)
        self.apply(init_he)

    def features(self, x):
        if x.shape[-1] != self.resolution:
            raise ValueError(f"the discriminator is at {self.resolution} px but got {x.shape[-1]} px images")
        h = self.from_rgb[self.level](x)
        for level in reversed(range(self.level)):
            h = downsample(self.blocks[level](h))
            if level == self.level - 1 and self.fading():
                h = torch.lerp(self.from_rgb[level](downsample(x)), h, self.alpha)
        return self.final(minibatch_stddev(h))

    def forward(self, x):
        return self.head(self.features(x)).view(-1)
