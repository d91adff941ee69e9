"""``builtin``: an offline dataset of patches cut from an immunohistochemistry image.

The image (512x512 RGB) ships inside scikit-image, so this works without any download.
Train, val and test come from disjoint horizontal bands of the image; patches are deterministic.
Label: 1 when a patch holds more DAB (brown) stain than the median train patch, else 0.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from medgan.data.imageset import ImageSet, convert_channels, resize

SOURCE_PATCH = 64  # pixels of the source image per patch, resized to the requested size
BANDS = {"train": (0, 352), "val": (352, 432), "test": (432, 512)}
COUNTS = {"train": 4096, "val": 512, "test": 512}
LABEL_NAMES = {"0": "low DAB stain", "1": "high DAB stain"}


def _dab(patches: torch.Tensor) -> np.ndarray:
    """Mean DAB (brown) stain of each patch."""
    from skimage.color import rgb2hed

    return np.array([rgb2hed(p)[..., 2].mean() for p in patches.permute(0, 2, 3, 1).numpy()])


@lru_cache(maxsize=None)
def _patches(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Source patches (n, 3, 64, 64) of one split and their labels (n, 1)."""
    from skimage import data

    image = data.immunohistochemistry()  # (512, 512, 3) uint8
    top, bottom = BANDS[split]
    rng = np.random.default_rng(["train", "val", "test"].index(split))
    n = COUNTS[split]
    ys = rng.integers(top, bottom - SOURCE_PATCH + 1, n)
    xs = rng.integers(0, image.shape[1] - SOURCE_PATCH + 1, n)
    windows = np.lib.stride_tricks.sliding_window_view(image, (SOURCE_PATCH, SOURCE_PATCH), axis=(0, 1))
    patches = windows[ys, xs].transpose(0, 2, 3, 1)  # (n, 64, 64, 3)
    turns = rng.integers(0, 4, n)  # random 90-degree rotations: tissue has no orientation
    for k in range(1, 4):
        patches[turns == k] = np.rot90(patches[turns == k], k, axes=(1, 2))
    patches = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).contiguous()
    threshold = np.median(_dab(_patches("train")[0][:512])) if split != "train" else np.median(_dab(patches[:512]))
    labels = torch.from_numpy((_dab(patches) > threshold).astype(np.int64)).view(-1, 1)
    return patches, labels


def load_builtin(split: str, size: int = 28, channels: int | None = None) -> ImageSet:
    patches, labels = _patches(split)
    images = convert_channels(resize(patches, size), channels or 3).contiguous()
    return ImageSet(images, labels, "builtin", split, label_names=LABEL_NAMES)
