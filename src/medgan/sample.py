"""Generate images from a trained run and write them as a MedMNIST-format ``.npz`` or PNG files.

Conditional runs generate labelled images: ``balanced`` labels (classes in turn; multi-label: one
finding each, in turn) or ``as-train`` labels (label rows drawn from the real train split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medgan import MedganError, files
from medgan.config import TrainConfig
from medgan.data import ImageSet, load_split, to_uint8
from medgan.models.conditional import label_space, label_vectors
from medgan.rundir import load_run

LABEL_MODES = ("balanced", "as-train")


def sample_labels(mode: str, n: int, train: ImageSet, seed: int = 0) -> torch.Tensor:
    """``n`` MedMNIST-style label rows (n, 1) class indices or (n, L) findings, for ``mode``."""
    if mode not in LABEL_MODES:
        raise MedganError(f"--labels must be one of {', '.join(LABEL_MODES)}, got {mode!r}")
    if mode == "as-train":
        return train.labels[torch.randint(0, len(train), (n,), generator=torch.Generator().manual_seed(seed))]
    turns = torch.arange(n) % label_space(train.labels, train.multi_label)
    if train.multi_label:
        return torch.eye(train.labels.shape[1], dtype=train.labels.dtype)[turns]
    return turns.view(-1, 1).to(train.labels.dtype)


@torch.no_grad()
def generate(
    generator: torch.nn.Module, n: int, seed: int = 0, batch_size: int = 500, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``n`` images as uint8 (n, C, H, W) on the CPU, deterministic for a given seed.

    A conditional generator needs ``labels``: float label vectors (n, n_classes)."""
    device = next(generator.parameters()).device
    conditional = getattr(generator, "n_classes", 0)
    if conditional and (labels is None or len(labels) != n):
        raise MedganError("a conditional generator needs one label vector per image")
    rng = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - start), generator.latent_dim, generator=rng).to(device)
        condition = (labels[start : start + len(z)].to(device),) if conditional else ()
        chunks.append(to_uint8(generator(z, *condition)).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.uint8)


def generate_for_config(
    generator: torch.nn.Module,
    cfg: TrainConfig,
    n: int,
    seed: int = 0,
    labels: str = "balanced",
    train: ImageSet | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, MedMNIST label rows or None): labelled images (``labels`` mode) when ``cfg`` is conditional.
    ``train`` is the split labels are drawn from (loaded from the config when not given)."""
    if not cfg.conditional:
        return generate(generator, n, seed), None
    train = train or load_split(cfg)
    rows = sample_labels(labels, n, train, seed)
    return generate(generator, n, seed, labels=label_vectors(rows, cfg.n_classes, cfg.multi_label)), rows


def generate_for_run(
    run_dir: str | Path, n: int, seed: int = 0, labels: str = "balanced", device: str = "cpu", checkpoint: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor | None, TrainConfig]:
    """(images, MedMNIST label rows or None, config) from a run; labels only for conditional runs."""
    generator, cfg = load_run(run_dir, device, checkpoint)
    return *generate_for_config(generator, cfg, n, seed, labels), cfg


def _hwc(images: torch.Tensor) -> np.ndarray:
    array = images.permute(0, 2, 3, 1).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def write_images(
    images: torch.Tensor,
    out: str | Path,
    labels: torch.Tensor | None = None,
    real_splits: dict[str, ImageSet] | None = None,
) -> Path:
    """uint8 (N, C, H, W) -> ``FILE.npz`` (MedMNIST layout: train_images, train_labels, plus copies of
    ``real_splits``, e.g. {"val": ..., "test": ...}) or ``DIR/*.png``."""
    out = Path(out)
    try:
        return _write(_hwc(images), out, labels, real_splits)
    except OSError as e:
        raise MedganError(f"cannot write {out}: {e.strerror or e}; choose another --out") from None


def _write(array: np.ndarray, out: Path, labels: torch.Tensor | None, real_splits: dict[str, ImageSet] | None) -> Path:
    if out.suffix == ".npz":
        labels = torch.zeros(len(array), 1, dtype=torch.uint8) if labels is None else labels
        arrays = {"train_images": array, "train_labels": labels.numpy().astype(np.uint8)}
        for split, data in (real_splits or {}).items():
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = (
                _hwc(data.uint8()),
                data.labels.numpy().astype(np.uint8),
            )
        files.save_npz(out, **arrays)
        return out
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(array):
        with files.atomic_path(out / f"sample_{i:05d}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    return out
