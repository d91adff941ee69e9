"""``folder:PATH``: images in class subfolders, optionally under ``train/``, ``val/``, ``test/``.

The Kaggle chest X-ray layout (``train/NORMAL``, ``train/PNEUMONIA``, ...) works as it is. Without
split folders, images are split 80/10/10 deterministically by file name. Images are resized (shorter
side) and centre-cropped to ``size``; unreadable files are skipped and counted in one warning.
Decoded arrays are cached under ``$MEDGAN_CACHE`` (default ``~/.cache/medgan``) and reused.
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from medgan import MedganError, MedganWarning
from medgan.data.imageset import ImageSet
from medgan.data.medmnist import cache_root
from medgan.files import save_npz

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm"}
SPLITS = ("train", "val", "test")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_files(root: Path, split: str) -> tuple[list[Path], list[int], list[str]]:
    """Files of ``split`` ("all": every image below ``root``) with integer class labels and the class names."""
    if split == "all":
        files = _images_in(root)
        return files, [0] * len(files), []
    split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
    if split_dirs:
        classes = sorted({c.name for d in split_dirs for c in _class_dirs(d)})
        base = root / split
        if not base.is_dir():
            raise MedganError(f"{root} has split folders {[d.name for d in split_dirs]} but no {split}/")
        files, labels = [], []
        for i, name in enumerate(classes):
            found = _images_in(base / name) if (base / name).is_dir() else []
            files += found
            labels += [i] * len(found)
        if not classes:  # split folders without classes
            files = _images_in(base)
            labels = [0] * len(files)
        return files, labels, classes
    classes = [c.name for c in _class_dirs(root)]
    if classes:
        pairs = [(f, i) for i, c in enumerate(classes) for f in _images_in(root / c)]
    else:
        pairs = [(f, 0) for f in _images_in(root)]
    # Stable 80/10/10 split from a hash of the relative path: adding files never moves old ones.
    bucket = {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}[split]
    chosen = [(f, i) for f, i in pairs if zlib.crc32(str(f.relative_to(root)).encode()) % 10 in bucket]
    return [f for f, _ in chosen], [i for _, i in chosen], classes


def _decode(path: Path, size: int):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        grey = im.mode in GREY_MODES
        im = im.convert("L" if grey else "RGB")
        im = ImageOps.fit(im, (size, size), method=Image.Resampling.BICUBIC)
        return np.asarray(im), grey


def _cache_file(root: Path, split: str, size: int, channels: int | None, files: list[Path]) -> Path:
    stamp = "|".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    key = hashlib.md5(f"{root.resolve()}|{split}|{size}|{channels}|{stamp}".encode()).hexdigest()[:16]
    return cache_root() / "folders" / f"{root.name}-{split}-{size}-{key}.npz"


def load_folder(path: str, split: str = "train", size: int = 28, channels: int | None = None) -> ImageSet:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise MedganError(f"image folder {root} does not exist (use --dataset folder:PATH with a directory)")
    files, labels, classes = list_files(root, split)
    if not files:
        raise MedganError(
            f"no images found for split {split!r} in {root} (looked for {', '.join(sorted(EXTENSIONS))} "
            "in class subfolders, optionally under train/ val/ test/)"
        )
    cache = _cache_file(root, split, size, channels, files)
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            images, kept_labels, skipped = z["images"], z["labels"], int(z["skipped"])
    else:
        decoded, kept, bad = [], [], []
        for f, label in zip(files, labels):
            try:
                decoded.append(_decode(f, size))
                kept.append(label)
            except Exception:  # PIL raises many types for broken files; all mean "unreadable"
                bad.append(f)
        if not decoded:
            raise MedganError(f"none of the {len(files)} images for split {split!r} in {root} could be read")
        channels_out = channels or (1 if all(g for _, g in decoded) else 3)
        images = np.stack([_as_channels(a, channels_out) for a, _ in decoded])
        kept_labels, skipped = np.array(kept, dtype=np.int64), len(bad)
        save_npz(cache, images=images, labels=kept_labels, skipped=np.array(skipped))
    if skipped:
        warnings.warn(
            f"{root}: skipped {skipped} unreadable image file(s) in split {split!r}", MedganWarning, stacklevel=2
        )
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return ImageSet(
        tensor,
        torch.from_numpy(kept_labels).view(-1, 1),
        f"folder:{root}",
        split,
        label_names={str(i): c for i, c in enumerate(classes)},
    )


def _as_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (H, W, channels)."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    out = np.asarray(Image.fromarray(array).convert(mode))
    return out[..., None] if channels == 1 else out
