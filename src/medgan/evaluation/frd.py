"""FRD (Fréchet Radiomics Distance, Osuala et al.) through the optional ``frd-score`` package.

frd-score reads images from folders, so the two sets are written as PNGs to a temporary folder.
It needs pyradiomics, whose PyPI release does not import on Python >= 3.10: where it is missing,
FRD is reported as unavailable with the reason, and nothing else changes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from medgan.evaluation.inception import Unavailable


def _frd_module():
    try:
        from frd_score import frd
    except ImportError as e:
        raise Unavailable(
            f"FRD needs the optional package frd-score (pip install frd-score) and pyradiomics: {e}"
        ) from None
    return frd


def frechet_radiomics_distance(images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """FRD between two uint8 (N, C, H, W) image sets (grayscale or RGB)."""
    from PIL import Image

    frd = _frd_module()
    with tempfile.TemporaryDirectory(prefix="medgan-frd-") as tmp:
        folders = []
        for name, images in (("a", images_a), ("b", images_b)):
            folder = Path(tmp) / name
            folder.mkdir()
            array = images.permute(0, 2, 3, 1).numpy()
            for i, image in enumerate(array):
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{i:05d}.png")
            folders.append(str(folder))
        try:
            return float(frd.compute_frd(folders))
        except ImportError as e:  # frd-score imports pyradiomics lazily
            raise Unavailable(f"FRD: frd-score is installed but cannot run: {e}") from None
