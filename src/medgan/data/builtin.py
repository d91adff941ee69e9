"""``builtin``: an offline dataset of patches cut from an immunohistochemistry image.

The image (512x512 RGB) ships inside scikit-image, so this works without any download.
Train, val and test come from disjoint horizontal bands of the image; patches are deterministic.
Label: 1 when a patch holds more DAB (brown) stain than the median train patch, else 0.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medgan.data.imageset import ImageSet, convert_channels

SOURCE_PATCH = 64  # pixels of the source image per patch, resized to the requested size
BANDS = {"train": (0, 352), "val": (352, 432), "test": (432, 512)}
COUNTS = {"train": 4096, "val": 512, "test": 512}
LABEL_NAMES = {"0": "low DAB stain", "1": "high DAB stain"}


def _source() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()  # (512, 512, 3) uint8


def _dab(patches: torch.Tensor) -> np.ndarray:
    from skimage.color import rgb2hed

    rgb = patches.permute(0, 2, 3, 1).numpy()
    return np.array([rgb2hed(p)[..., 2].mean() for p in rgb])


def _cut(image: np.ndarray, split: str) -> torch.Tensor:
    top, bottom = BANDS[split]
    rng = np.random.default_rng(["train", "val", "test"].index(split))
    n = COUNTS[split]
    ys = rng.integers(top, bottom - SOURCE_PATCH + 1, n)
    xs = rng.integers(0, image.shape[1] - SOURCE_PATCH + 1, n)
    patches = np.stack([image[y : y + SOURCE_PATCH, x : x + SOURCE_PATCH] for y, x in zip(ys, xs)])
    k = rng.integers(0, 4, n)  # random 90-degree rotations: tissue has no orientation
    patches = np.stack([np.rot90(p, r) for p, r in zip(patches, k)])
    return torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).contiguous()


def _resize(patches: torch.Tensor, size: int) -> torch.Tensor:
    if size == SOURCE_PATCH:
        return patches
    x = F.interpolate(patches.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


_CACHE: dict = {}


def load_builtin(split: str, size: int = 28, channels: int | None = None) -> ImageSet:
    key = (split, size)
    if key not in _CACHE:
        image = _source()
        patches = _cut(image, split)
        threshold = np.median(_dab(_cut(image, "train")[:512]))
        labels = torch.from_numpy((_dab(patches) > threshold).astype(np.int64)).view(-1, 1)
        _CACHE[key] = (_resize(patches, size), labels)
    images, labels = _CACHE[key]
    images = convert_channels(images, channels or 3).contiguous()
    return ImageSet(images, labels, "builtin", split, label_names=LABEL_NAMES)
