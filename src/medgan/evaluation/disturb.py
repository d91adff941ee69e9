"""Disturbances of real images for validating metrics (Heusel et al. 2017, "FID" paper, Sec. 3 / App. A).

Each is ``f(images, level, seed) -> images``: uint8 (N, C, H, W) in and out, same shape, level 0 the
identity, levels 1..4 ever stronger (``STRENGTHS``), deterministic for a seed. Sizes scale with the image
size, so a level means the same at 28 and 64 px.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medgan.data import load_dataset
from medgan.data.imageset import convert_channels

# level 1..4 -> strength of each disturbance (level 0 is always the identity)
STRENGTHS = {
    "gaussian_noise": (0.02, 0.05, 0.10, 0.20),  # noise std, as a fraction of the 0..255 range
    "gaussian_blur": (0.5, 0.8, 1.2, 2.0),  # kernel std in pixels at 28 px
    "salt_and_pepper": (0.01, 0.03, 0.08, 0.20),  # fraction of pixels set to 0 or 255
    "rectangles": (1, 2, 4, 8),  # black rectangles of a quarter of the side each, at random places
    "swirl": (0.5, 1.0, 2.0, 4.0),  # skimage swirl strength (radians at the centre), radius the image side
    "mixed_in": (0.05, 0.10, 0.25, 0.50),  # fraction of images replaced by images of another source
}
LEVELS = len(next(iter(STRENGTHS.values())))


def _check(images: torch.Tensor, level: int, name: str) -> float | None:
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"{name} takes uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    if not 0 <= level <= LEVELS:
        raise ValueError(f"level must be 0..{LEVELS}, got {level}")
    return STRENGTHS[name][level - 1] if level else None


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def gaussian_noise(images: torch.Tensor, level: int, seed: int = 0) -> torch.Tensor:
    """Adds independent Gaussian noise to every pixel."""
    if (std := _check(images, level, "gaussian_noise")) is None:
        return images
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * (255 * std)
    return _uint8(images.float() + noise)


def gaussian_blur(images: torch.Tensor, level: int, seed: int = 0) -> torch.Tensor:
    """Blurs with a Gaussian kernel (reflected borders); no randomness."""
    if (sigma := _check(images, level, "gaussian_blur")) is None:
        return images
    sigma *= images.shape[-1] / 28
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).repeat(images.shape[1], 1, 1, 1)  # (C, 1, 1, K), one filter per channel
    x = F.pad(images.float(), (radius,) * 4, mode="reflect")
    x = F.conv2d(F.conv2d(x, taps, groups=images.shape[1]), taps.transpose(-1, -2), groups=images.shape[1])
    return _uint8(x)


def salt_and_pepper(images: torch.Tensor, level: int, seed: int = 0) -> torch.Tensor:
    """Sets a fraction of pixel positions (all channels) to black or white, half each."""
    if (fraction := _check(images, level, "salt_and_pepper")) is None:
        return images
    rng = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    hit = torch.rand((n, 1, h, w), generator=rng) < fraction
    white = torch.rand((n, 1, h, w), generator=rng) < 0.5
    return torch.where(hit, (white * 255).to(torch.uint8), images)


def rectangles(images: torch.Tensor, level: int, seed: int = 0) -> torch.Tensor:
    """Blanks (to black) a number of squares of a quarter of the image side, at random places."""
    if (count := _check(images, level, "rectangles")) is None:
        return images
    rng = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    side = max(1, h // 4)
    top = torch.randint(0, h - side + 1, (n, int(count)), generator=rng)
    left = torch.randint(0, w - side + 1, (n, int(count)), generator=rng)
    rows, cols = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    inside = (
        (rows >= top[..., None, None])
        & (rows < top[..., None, None] + side)
        & (cols >= left[..., None, None])
        & (cols < left[..., None, None] + side)
    ).any(1, keepdim=True)
    return images.masked_fill(inside, 0)


def swirl(images: torch.Tensor, level: int, seed: int = 0) -> torch.Tensor:
    """skimage's swirl around the image centre (radius the image side); no randomness."""
    from skimage.transform import swirl as skimage_swirl

    if (strength := _check(images, level, "swirl")) is None:
        return images
    radius = images.shape[-1]
    out = [
        skimage_swirl(image, strength=strength, radius=radius, mode="reflect", preserve_range=True)
        for image in images.permute(0, 2, 3, 1).numpy()
    ]
    return _uint8(torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2))


def mixed_in(other: torch.Tensor):
    """The disturbance that replaces a random fraction of the images by random images of ``other``
    (uint8, same channels and size), as the FID paper mixes ImageNet into CelebA."""

    def mix(images: torch.Tensor, level: int, seed: int = 0) -> torch.Tensor:
        if (fraction := _check(images, level, "mixed_in")) is None:
            return images
        if other.shape[1:] != images.shape[1:]:
            raise ValueError(f"images to mix in are {tuple(other.shape[1:])}, the images {tuple(images.shape[1:])}")
        rng = torch.Generator().manual_seed(seed)
        replaced = torch.randperm(len(images), generator=rng)[: round(fraction * len(images))]
        out = images.clone()
        out[replaced] = other[torch.randint(0, len(other), (len(replaced),), generator=rng)]
        return out

    return mix


def other_source(dataset: str, size: int, channels: int) -> tuple[str, torch.Tensor]:
    """(description, uint8 images) of another source to mix in: the built-in IHC patches, or for the
    built-in set itself, patches of the astronaut photo that ships with scikit-image."""
    if dataset != "builtin":
        return "built-in IHC patches (test split)", load_dataset("builtin", "test", size, channels).uint8()
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None]  # (1, 3, 512, 512)
    patches = photo.unfold(2, 64, 32).unfold(3, 64, 32).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, 64, 64)
    patches = F.interpolate(patches, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return "patches of scikit-image's astronaut photo", convert_channels(_uint8(patches), channels).contiguous()


def disturbances(other: torch.Tensor) -> dict:
    """name -> disturbance, in ``STRENGTHS`` order; ``other``: images to mix in (see ``other_source``)."""
    functions = {
        "gaussian_noise": gaussian_noise,
        "gaussian_blur": gaussian_blur,
        "salt_and_pepper": salt_and_pepper,
        "rectangles": rectangles,
        "swirl": swirl,
        "mixed_in": mixed_in(other),
    }
    return {name: functions[name] for name in STRENGTHS}
