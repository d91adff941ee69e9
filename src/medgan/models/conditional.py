"""Class-conditional nets for every model and loss: an embedded label for G, a projection head for D.

A label is a float vector ``y`` of ``n_classes``: one-hot for multi-class sets (PathMNIST, RetinaMNIST,
PneumoniaMNIST), multi-hot for multi-label ones (ChestMNIST's 14 findings). A linear map of ``y`` is an
embedding lookup for one-hot labels and the sum of the findings' embeddings for multi-hot ones.

D uses the projection discriminator (Miyato & Koyama 2018), D(x, y) = head(h) + <E y, h>, rather than an
auxiliary classifier (AC-GAN, Odena et al. 2017): the condition only changes D's score, so every loss
(BCE, LSGAN, hinge, Wasserstein, penalties) works unchanged, and it avoids AC-GAN's known pull towards
easily classified, less diverse images (Shu et al. 2017; Miyato & Koyama 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def label_vectors(labels: torch.Tensor, n_classes: int, multi_label: bool) -> torch.Tensor:
    """MedMNIST labels (N, 1) class indices or (N, L) 0/1 findings -> float (N, n_classes)."""
    if multi_label:
        return labels.float()
    return F.one_hot(labels[:, 0].long(), n_classes).float()


def label_space(labels: torch.Tensor, multi_label: bool) -> int:
    """Number of classes (or findings) of a MedMNIST label tensor."""
    return labels.shape[1] if multi_label else int(labels.max()) + 1 if len(labels) else 0


def grid_labels(n_classes: int, multi_label: bool, columns: int) -> torch.Tensor:
    """Labels of a sample grid with one row per class (multi-label: per finding, then a row of none)."""
    rows = torch.eye(n_classes)
    if multi_label:
        rows = torch.cat([rows, torch.zeros(1, n_classes)])
    return rows.repeat_interleave(columns, dim=0)


class ConditionalGenerator(nn.Module):
    """G(z, y) = net([z, E y]); ``net`` is any generator built for ``2 * latent_dim`` inputs."""

    def __init__(self, net: nn.Module, n_classes: int, latent_dim: int):
        super().__init__()
        self.net, self.n_classes, self.latent_dim = net, n_classes, latent_dim
        self.embed = nn.Linear(n_classes, latent_dim, bias=False)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.embed(y)], dim=1))


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = head(h) + <E y, h> with h = net.features(x): any discriminator with ``features`` and ``head``."""

    def __init__(self, net: nn.Module, n_classes: int):
        super().__init__()
        self.net, self.n_classes = net, n_classes
        self.embed = nn.Linear(n_classes, net.head.in_features, bias=False)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.net.features(x)
        return self.net.head(h).view(-1) + (self.embed(y) * h).sum(1)
