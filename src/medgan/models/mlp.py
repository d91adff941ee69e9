"""The seed projects' fully connected nets: z(100) -> 128 -> 256 -> 512 -> C*H*W (seed 001), optionally
with batch norm in G and LeakyReLU in D (seed 002)."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLPGenerator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 100, mlp_batch_norm: bool = False, **_):
        super().__init__()
        self.shape, self.latent_dim = shape, latent_dim
        norm = nn.BatchNorm1d if mlp_batch_norm else lambda _: nn.Identity()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 128),
            nn.ReLU(),
            nn.Linear(128, 256),
            norm(256),
            nn.ReLU(),
            nn.Linear(256, 512),
            norm(512),
            nn.ReLU(),
            nn.Linear(512, math.prod(shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], leaky: bool = False, **_):
        super().__init__()
        act = (lambda: nn.LeakyReLU(0.2)) if leaky else nn.ReLU
        self.features = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(shape), 512),
            act(),
            nn.Linear(512, 256),
            act(),
        )
        self.head = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).view(-1)
