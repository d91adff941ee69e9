"""SNGAN/BigGAN-style residual nets (Miyato et al. 2018; Brock et al. 2019) sized for 28 to 224 px.

Like the DCGAN nets they work between ``size`` and a 4-7 px base (28 -> 7, 64 -> 4, ...), one residual
block per 2x stage. The generator's blocks are BN-ReLU-upsample-conv-BN-ReLU-conv with a 1x1 shortcut;
the discriminator's are ReLU-conv-ReLU-conv-avgpool, ending in a ReLU and a sum over positions. D has
no normalisation of its own: use it with spectral norm (``spectral_norm = true``) or a gradient penalty.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from medgan.models.dcgan import _width, num_stages
from medgan.models.minibatch_std import MinibatchStd


class GeneratorBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0))


class DiscriminatorBlock(nn.Module):
    """Residual block; ``first`` omits the leading ReLU (it would act on the image itself)."""

    def __init__(self, c_in: int, c_out: int, downsample: bool = True, first: bool = False):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1), nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or downsample) else nn.Identity()
        self.downsample, self.first = downsample, first

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.downsample:  # a 1x1 conv and 2x2 average pooling commute: pool first, it is cheaper
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        return h + self.shortcut(x)


class ResNetGenerator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 100, width: int = 64, **_):
        super().__init__()
        channels, size, _ = shape
        k = num_stages(size)
        self.base, self.top, self.latent_dim = size // 2**k, _width(k - 1, width), latent_dim
        self.project = nn.Linear(latent_dim, self.top * self.base**2)
        self.blocks = nn.Sequential(
            *[GeneratorBlock(_width(s, width), _width(max(s - 1, 0), width)) for s in reversed(range(k))]
        )
        self.out = nn.Sequential(
            nn.BatchNorm2d(_width(0, width)), nn.ReLU(), nn.Conv2d(_width(0, width), channels, 3, 1, 1), nn.Tanh()
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, z):
        h = self.project(z).view(-1, self.top, self.base, self.base)
        return self.out(self.blocks(h))


class ResNetDiscriminator(nn.Module):
    """Residual blocks down to the 4-7 px base, one more at the base, then a sum over positions.

    ``minibatch_std`` appends the minibatch standard deviation (groups of 4) as a channel before the last block."""

    def __init__(self, shape: tuple[int, int, int], width: int = 64, minibatch_std: bool = False, **_):
        super().__init__()
        channels, size, _ = shape
        k = num_stages(size)
        blocks = [DiscriminatorBlock(channels, width, first=True)]
        blocks += [DiscriminatorBlock(_width(s - 1, width), _width(s, width)) for s in range(1, k)]
        blocks += [MinibatchStd()] if minibatch_std else []
        blocks += [DiscriminatorBlock(_width(k - 1, width) + minibatch_std, _width(k - 1, width), downsample=False)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(_width(k - 1, width), 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)

    def features(self, x):
        return F.relu(self.blocks(x)).sum(dim=(2, 3))

    def forward(self, x):
        return self.head(self.features(x)).view(-1)
