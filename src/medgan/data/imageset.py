"""ImageSet: one split of a dataset, held once as uint8 and normalised per batch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

# ITU-R 601 luma weights, as PIL's convert("L") uses.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a uint8 (N, C, H, W) tensor to ``channels`` (1 <-> 3) channels."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        grey = (images.float() * _LUMA).sum(1, keepdim=True)
        return grey.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert {have} channels to {channels}")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing (like PIL's resize)."""
    if images.shape[-2:] == (size, size):
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.detach().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class ImageSet:
    """Images as a uint8 (N, C, H, W) tensor (possibly a view on a memory map) and labels (N, L).

    ``channels`` is the channel count batches come out with; when it differs from the stored
    count (only for memory-mapped files, which are never copied) batches are converted on the fly.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    channels: int = 0
    label_names: dict = field(default_factory=dict)
    multi_label: bool = False

    def __post_init__(self):
        if not self.channels:
            self.channels = self.images.shape[1]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def uint8(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Images (all, or ``index``) as uint8 (n, channels, H, W)."""
        images = self.images if index is None else self.images[index]
        return convert_channels(images, self.channels).contiguous()

    def resident(self, device: torch.device | str) -> ImageSet:
        """The set with its images (uint8, converted to ``channels``) and labels on ``device``, so that batches are
        gathered there with no copy per step; on the CPU the set itself (memory maps are never copied)."""
        if torch.device(device).type == "cpu":
            return self
        return dataclasses.replace(self, images=self.uint8().to(device), labels=self.labels.to(device))

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """A float batch in [-1, 1] on ``device``; the uint8 -> float step runs on the device."""
        return to_float(self.uint8(index).to(device, non_blocking=True))
