"""The seed projects' fully connected nets (seed 001): z(100) -> 128 -> 256 -> 512 -> C*H*W."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLPGenerator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 100, **_):
        super().__init__()
        self.shape, self.latent_dim = shape, latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 128), nn.ReLU(),
            nn.Linear(128, 256), nn.ReLU(),
            nn.Linear(256, 512), nn.ReLU(),
            nn.Linear(512, math.prod(shape)), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], **_):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(shape), 512), nn.ReLU(),
            nn.Linear(512, 256), nn.ReLU(),
            nn.Linear(256, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)
