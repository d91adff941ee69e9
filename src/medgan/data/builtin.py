"""``builtin``: an offline dataset of patches cut from an immunohistochemistry image.

The image (512x512 RGB) ships inside scikit-image, so this works without any download. It is cut into an
8x8 grid of 64-pixel tiles; each row and each column of the grid holds one test tile and one val tile, the
other 48 are train tiles, and a split's patches (32 source pixels, resized to the requested size) lie
inside its own tiles: the splits share no pixel, yet each spans the whole image. (Horizontal bands, the
first layout, gave train and test different tissue: a real-vs-real floor of FD 190 and recall 0.75; these
tiles give 12 and 0.95, see ``tests/test_data.py``.) Patches are deterministic.
Label: 1 when a patch holds more DAB (brown) stain than the median train patch, else 0.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from medgan.data.imageset import ImageSet, convert_channels, resize

SOURCE_PATCH = 32  # pixels of the source image per patch, resized to the requested size
TILE = 64  # the image is cut into TILE x TILE tiles, each belonging to one split
COUNTS = {"train": 4096, "val": 512, "test": 512}
LABEL_NAMES = {"0": "low DAB stain", "1": "high DAB stain"}


def split_of_tile(row: int, column: int, n: int = 512 // TILE) -> str:
    """The split of a tile: diagonals (column + 3 row) mod 8, so each holds one tile of every row and column
    (3 is coprime with 8). Test and val are the two diagonals whose mean colour is nearest the whole image's
    (within 0.4 and 3.0 of 255 per channel, of the eight diagonals' 0.4 to 19)."""
    k = (column + 3 * row) % n
    return "test" if k == 1 else "val" if k == 7 else "train"


def _dab(patches: torch.Tensor) -> np.ndarray:
    """Mean DAB (brown) stain of each patch."""
    from skimage.color import rgb2hed

    return np.array([rgb2hed(p)[..., 2].mean() for p in patches.permute(0, 2, 3, 1).numpy()])


@cache
def _patches(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Source patches (n, 3, 32, 32) of one split and their labels (n, 1)."""
    from skimage import data

    image = data.immunohistochemistry()  # (512, 512, 3) uint8
    n_tiles = image.shape[0] // TILE
    tiles = np.array([(r, c) for r in range(n_tiles) for c in range(n_tiles) if split_of_tile(r, c, n_tiles) == split])
    rng = np.random.default_rng(["train", "val", "test"].index(split))
    n = COUNTS[split]
    chosen = tiles[rng.integers(0, len(tiles), n)]
    ys = chosen[:, 0] * TILE + rng.integers(0, TILE - SOURCE_PATCH + 1, n)
    xs = chosen[:, 1] * TILE + rng.integers(0, TILE - SOURCE_PATCH + 1, n)
    windows = np.lib.stride_tricks.sliding_window_view(image, (SOURCE_PATCH, SOURCE_PATCH), axis=(0, 1))
    patches = windows[ys, xs].transpose(0, 2, 3, 1)  # (n, 32, 32, 3)
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
