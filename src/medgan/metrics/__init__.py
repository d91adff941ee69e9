"""Evaluation metrics: feature-space distances (FID, KID, IS, PRDC) and pixel-space checks
(SSIM, diversity, memorisation). Pure functions of features or image batches."""

from medgan.metrics.distances import (
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall_density_coverage,
)
from medgan.metrics.pixel import (
    best_ssim_to_reference,
    memorisation,
    nearest_neighbours,
    pairwise_ssim,
    ssim,
)

__all__ = [
    "best_ssim_to_reference",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "memorisation",
    "nearest_neighbours",
    "pairwise_ssim",
    "precision_recall_density_coverage",
    "ssim",
]
