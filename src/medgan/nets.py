"""The generator and discriminator a resolved config describes (training builds them, loading a run rebuilds them)."""

from __future__ import annotations

import torch

from medgan.config import TrainConfig
from medgan.losses import LOSSES
from medgan.models import build_models


def nets_for(cfg: TrainConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(generator, discriminator) of ``cfg``; Wasserstein critics get no batch norm."""
    shape = (cfg.channels, cfg.size, cfg.size)
    batch_norm_in_d = not LOSSES[cfg.loss].wasserstein
    return build_models(
        cfg.model,
        shape,
        cfg.latent_dim,
        batch_norm_in_d,
        cfg.width,
        cfg.spectral_norm,
        cfg.n_classes if cfg.conditional else 0,
        cfg.minibatch_std,
    )
