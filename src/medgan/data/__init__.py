"""Data: every MedMNIST 2D set at 28/64/128/224, image folders, and an offline ``builtin`` set."""

from __future__ import annotations

from medgan import MedganError
from medgan.data.builtin import load_builtin
from medgan.data.folder import load_folder
from medgan.data.imageset import ImageSet, to_float, to_uint8
from medgan.data.medmnist import DATASETS, SIZES, load_medmnist

__all__ = ["ImageSet", "load_dataset", "load_split", "dataset_names", "to_float", "to_uint8", "DATASETS", "SIZES"]


def dataset_names() -> list[str]:
    return ["builtin", *DATASETS]


def load_dataset(
    name: str, split: str = "train", size: int = 28, channels: int | None = None, root=None, download: bool = True
) -> ImageSet:
    """Load one split of a dataset: ``builtin``, ``folder:PATH`` or a MedMNIST flag (e.g. ``pneumoniamnist``)."""
    if channels not in (None, 1, 3):
        raise MedganError(f"channels must be 1 or 3, got {channels}")
    if split not in ("train", "val", "test"):
        raise MedganError(f"split must be one of ('train', 'val', 'test'), got {split!r}")
    if name == "builtin":
        return load_builtin(split, size, channels)
    if name.startswith("folder:"):
        return load_folder(name[len("folder:") :], split, size, channels)
    return load_medmnist(name, split, size, channels, root, download)


def load_split(cfg, split: str = "train", size: int | None = None) -> ImageSet:
    """One split of the dataset a run's config names (its ``dataset``, ``size``, ``channels``, ``data_root``; 0 and
    "" mean the dataset's own channels and the default root), at ``size`` px when given."""
    return load_dataset(cfg.dataset, split, size or cfg.size, cfg.channels or None, cfg.data_root or None)
