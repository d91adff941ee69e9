"""Train on synthetic, test on real (TSTR): is labelled synthetic data useful for a classifier?

The domain net's classifier (``domain.train_domain_net``: same architecture, steps and augmentation) is
trained on N synthetic labelled images and scored on the real test split, and again on N real train
images (TRTR, the reference a perfect generator would reach). Reported: AUC and ACC of both and their
ratio TSTR / TRTR (1.0 = the synthetic images teach as much as as many real ones).
"""

from __future__ import annotations

import torch

from medgan.data import ImageSet
from medgan.evaluation.domain import train_domain_net


def tstr(
    images: torch.Tensor,
    labels: torch.Tensor,
    train: ImageSet,
    test: ImageSet,
    steps: int | None = None,
    seed: int = 0,
    device="cpu",
) -> dict:
    """``images`` uint8 (N, C, H, W) with MedMNIST label rows ``labels`` against ``train``/``test``."""
    n = min(len(images), len(train))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    real = ImageSet(train.uint8(pick), train.labels[pick], train.name, "train", multi_label=train.multi_label)
    synthetic = ImageSet(
        images[:n], labels[:n].to(train.labels.dtype), train.name, "synthetic", multi_label=train.multi_label
    )
    _, on_synthetic = train_domain_net(synthetic, test, steps=steps, seed=seed, device=device)
    _, on_real = train_domain_net(real, test, steps=steps, seed=seed, device=device)
    out = {"n": n}
    for metric in ("auc", "acc"):
        out[f"tstr_{metric}"], out[f"trtr_{metric}"] = on_synthetic[f"test_{metric}"], on_real[f"test_{metric}"]
        out[f"{metric}_ratio"] = (
            out[f"tstr_{metric}"] / out[f"trtr_{metric}"] if out[f"trtr_{metric}"] else float("nan")
        )
    return out
