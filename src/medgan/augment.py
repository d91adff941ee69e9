"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for data-efficient GAN training.

The discriminator sees every image, real or generated, through the same random, differentiable
transforms, so it cannot overfit a small training set and G still gets gradients through them.
Images are in [-1, 1]; each transform draws its parameters per image.

With a target for ``AdaptiveAugment`` (ADA, Karras et al. 2020) each transform is applied to an image
with a probability ``p`` that follows how sure D is about the real images, instead of always.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def color(x: torch.Tensor) -> torch.Tensor:
    """Random brightness (+-0.5), saturation (x0..2, colour images only) and contrast (x0.5..1.5)."""
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (2 * torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype)) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y, filling with zeros (mid-grey)."""
    n, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy + 1  # +1: the zero border of the padding
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx + 1
    padded = F.pad(x, (1, 1, 1, 1))
    index = rows.clamp(0, h + 1) * (w + 2) + cols.clamp(0, w + 1)  # (n, h, w) into the flat padded image
    flat = padded.flatten(2)
    return flat.gather(2, index.flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the image size at a random place in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h - ch + 1, (n, 1, 1), device=x.device)
    left = torch.randint(0, w - cw + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> list[str]:
    """``"translation,cutout"`` -> ["translation", "cutout"]; unknown names raise ValueError."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in TRANSFORMS]
    if unknown:
        raise ValueError(
            f"unknown augmentation(s) {', '.join(unknown)}; choose from {', '.join(TRANSFORMS)} (comma-separated)"
        )
    return names


def diff_augment(x: torch.Tensor, policy: str, p: float | torch.Tensor = 1.0) -> torch.Tensor:
    return _apply(x, [TRANSFORMS[name] for name in parse_policy(policy)], p)


def _apply(x: torch.Tensor, transforms, p: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Each transform in turn; with ``p`` < 1 (a float or a 0-dim tensor) each image gets it with probability p."""
    always = isinstance(p, (int, float)) and p >= 1
    for transform in transforms:
        if always:
            x = transform(x)
        else:
            skip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= p
            x = torch.where(skip, x, transform(x))
    return x


class AdaptiveAugment:
    """ADA's controller: after each D step, raise ``p`` when D is surer of the real images than ``target``
    (r_t = E[sign(D(real) - undecided)], 0.6 in StyleGAN2-ADA), else lower it, by ``batch / images_to_full``.

    ``p`` is a 0-dim tensor on the training device, updated in place with no host sync. ADA moves p from 0 to 1
    in 500k images over runs of ~25M; medgan's 28 px runs see ~1M images in 45 minutes, hence 100k."""

    def __init__(self, target: float, batch_size: int, device, images_to_full: int = 100_000):
        self.target, self.step_size = target, batch_size / images_to_full
        self.p = torch.zeros((), device=device)

    def update(self, real_sign: torch.Tensor) -> None:
        self.p.add_(torch.sign(real_sign.float() - self.target) * self.step_size).clamp_(0.0, 1.0)


class AugmentedDiscriminator(nn.Module):
    """D(augment(x)): what the losses see as the discriminator when augmentation is on.

    ``p``: probability of each transform per image, 1 = always, or ADA's tensor (``AdaptiveAugment.p``)."""

    def __init__(self, discriminator: nn.Module, policy: str, p: float | torch.Tensor = 1.0):
        super().__init__()
        self.net, self.policy, self.p = discriminator, policy, p
        self.transforms = [TRANSFORMS[name] for name in parse_policy(policy)]  # parsed once, not per batch

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return _apply(x, self.transforms, self.p)

    def forward(self, x, **condition):
        return self.net(self.augment(x), **condition)
