"""MedMNIST 2D datasets (MedMNIST v2 and MedMNIST+ sizes) read from their ``.npz`` files.

Files are looked for in ``--data-root``, else ``$MEDGAN_DATA``, else ``~/.medmnist`` (where the
``medmnist`` package puts them). A missing file is downloaded with its MD5 checked when the network
allows (set ``MEDGAN_OFFLINE=1`` to never try). Well-formed files that differ from the canonical
release (re-saved, subsetted) load with a warning; malformed files stop with a clear error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
import zipfile
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import torch
from medmnist import INFO

from medgan import MedganError, MedganWarning
from medgan.data.imageset import ImageSet, convert_channels
from medgan.files import atomic_path

SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
DATASETS = tuple(flag for flag in INFO if not flag.endswith("3d"))
MMAP_MIN_SIZE = 128  # from this size on, images are memory-mapped instead of loaded


def data_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root or os.environ.get("MEDGAN_DATA") or "~/.medmnist").expanduser()


def cache_root() -> Path:
    return Path(os.environ.get("MEDGAN_CACHE") or "~/.cache/medgan").expanduser()


def file_name(flag: str, size: int) -> str:
    return f"{flag}{_suffix(size)}.npz"


def _suffix(size: int) -> str:
    return "" if size == 28 else f"_{size}"


def _url_md5(flag: str, size: int) -> tuple[str, str]:
    info = INFO[flag]
    return info[f"url{_suffix(size)}"], info[f"MD5{_suffix(size)}"]


def check_name_and_size(flag: str, size: int) -> None:
    if flag not in INFO or flag not in DATASETS:
        raise MedganError(
            f"unknown dataset {flag!r}. Choose one of: builtin, folder:PATH, {', '.join(DATASETS)} "
            "(see `medgan data list`)"
        )
    if size not in SIZES:
        raise MedganError(f"MedMNIST size must be one of {SIZES}, got {size}")


def locate(flag: str, size: int, root=None, download: bool = True) -> Path:
    """Path of the dataset file, downloading it if missing and allowed."""
    check_name_and_size(flag, size)
    path = data_root(root) / file_name(flag, size)
    if path.exists():
        return path
    url, md5 = _url_md5(flag, size)
    offline = os.environ.get("MEDGAN_OFFLINE", "") not in ("", "0")
    where = f"Download {url} (MD5 {md5}) and put it at {path}, or pass --data-root DIR holding {path.name}."
    if not download or offline:
        raise MedganError(f"dataset file {path} not found. {where}")
    try:
        from torchvision.datasets.utils import download_url

        download_url(url, str(path.parent), path.name, md5)
    except Exception as e:  # network errors come in many types; all mean the same to the user
        if path.exists():
            path.unlink()
        raise MedganError(f"dataset file {path} not found and the download failed ({e}). {where}") from None
    return path


@cache
def _md5(path: str, mtime: float, nbytes: int) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fail(path: Path, problem: str, flag: str, size: int) -> MedganError:
    url, _ = _url_md5(flag, size)
    return MedganError(
        f"{path} is not a usable MedMNIST file: {problem}. Delete it and download it again from {url} "
        "(or let medgan download it), or point --data-root at a folder with a good copy."
    )


def _check_canonical(path: Path, flag: str, size: int, counts: dict) -> None:
    stat = path.stat()
    _, md5 = _url_md5(flag, size)
    if _md5(str(path), stat.st_mtime, stat.st_size) == md5:
        return
    expected = INFO[flag]["n_samples"]
    diffs = [
        f"{s}: {counts[s]} images (canonical {expected[s]})" for s in SPLITS if s in counts and counts[s] != expected[s]
    ]
    detail = "; ".join(diffs) if diffs else "split sizes match"
    warnings.warn(
        f"{path} differs from the canonical MedMNIST release (MD5 mismatch; {detail}). "
        "It loads, but results are not comparable with runs on the canonical file.",
        MedganWarning,
        stacklevel=3,
    )


def _extract_npy(path: Path, member: str) -> Path:
    """Copy one array out of the (compressed) npz into the cache, so it can be memory-mapped."""
    stat = path.stat()
    tag = hashlib.md5(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_root() / "npy" / f"{path.stem}-{tag}-{member}"
    if not out.exists():
        with zipfile.ZipFile(path) as z, z.open(member) as src, atomic_path(out) as tmp, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    return out


def read_split(path: Path, flag: str, size: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (images, labels) arrays of one split; images memory-mapped for large sizes."""
    if split not in SPLITS:
        raise MedganError(f"split must be one of {SPLITS}, got {split!r}")
    if not zipfile.is_zipfile(path):
        raise _fail(path, "it is not a zip/npz archive (truncated download or another format?)", flag, size)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels") if f"{s}_{kind}" not in keys]
            if f"{split}_images" in missing or f"{split}_labels" in missing:
                raise _fail(path, f"missing arrays {missing} (has {sorted(keys)})", flag, size)
            labels = z[f"{split}_labels"]
            # (a malformed 0-d labels array counts as 0: len() would raise TypeError)
            counts = {s: (np.shape(z[f"{s}_labels"]) or (0,))[0] for s in SPLITS if f"{s}_labels" in keys}
            if size >= MMAP_MIN_SIZE:
                images = np.load(_extract_npy(path, f"{split}_images.npy"), mmap_mode="c", allow_pickle=False)
            else:
                images = z[f"{split}_images"]
    except MedganError:
        raise
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, ValueError, EOFError, OSError, KeyError) as e:
        raise _fail(path, f"it could not be read ({type(e).__name__}: {e})", flag, size) from None

    channels = INFO[flag]["n_channels"]
    want = (size, size) if channels == 1 else (size, size, 3)
    if images.dtype != np.uint8:
        raise _fail(path, f"{split}_images has dtype {images.dtype}, expected uint8", flag, size)
    if images.ndim < 3 or tuple(images.shape[1:]) != want:
        raise _fail(
            path, f"{split}_images has shape {images.shape}, expected (N, {', '.join(map(str, want))})", flag, size
        )
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise _fail(
            path,
            f"{split}_labels has shape {labels.shape} and dtype {labels.dtype}, "
            f"expected integer (N, L) with N={len(images)}",
            flag,
            size,
        )
    _check_canonical(path, flag, size, counts)
    return images, labels


def load_medmnist(
    flag: str, split: str = "train", size: int = 28, channels: int | None = None, root=None, download: bool = True
) -> ImageSet:
    path = locate(flag, size, root, download)
    images, labels = read_split(path, flag, size, split)
    tensor = torch.from_numpy(images)
    tensor = tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
    native = tensor.shape[1]
    channels = channels or native
    if size < MMAP_MIN_SIZE:  # in memory: convert once, store contiguous
        tensor = convert_channels(tensor, channels).contiguous()
    info = INFO[flag]
    return ImageSet(
        tensor,
        torch.from_numpy(labels.astype(np.int64)),
        flag,
        split,
        channels=channels,
        label_names=dict(info["label"]),
        multi_label=info["task"].startswith("multi-label"),
    )
