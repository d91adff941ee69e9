"""Generate images from a trained run and write them as a MedMNIST-format ``.npz`` or PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medgan import MedganError, io
from medgan.config import load_toml
from medgan.data import to_uint8
from medgan.train import CHECKPOINT, nets_for, resolve_device


def load_generator(run_dir: str | Path, device: str = "cpu") -> torch.nn.Module:
    """The run's generator (EMA weights when the checkpoint has them), in eval mode."""
    run_dir = Path(run_dir)
    ckpt, cfg_path = run_dir / CHECKPOINT, run_dir / "config.toml"
    if not ckpt.exists() or not cfg_path.exists():
        raise MedganError(f"{run_dir} is not a medgan run directory (needs config.toml and {CHECKPOINT})")
    cfg = load_toml(cfg_path)
    generator, _ = nets_for(cfg)
    state = io.load_torch(ckpt)
    generator.load_state_dict(state.get("generator_ema", state["generator"]))
    return generator.to(resolve_device(device)).eval()


@torch.no_grad()
def generate(generator: torch.nn.Module, n: int, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """``n`` images as uint8 (n, C, H, W) on the CPU, deterministic for a given seed."""
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - start), generator.latent_dim, generator=rng).to(device)
        chunks.append(to_uint8(generator(z)).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.uint8)


def write_images(images: torch.Tensor, out: str | Path) -> Path:
    """uint8 (N, C, H, W) -> ``FILE.npz`` (MedMNIST layout: train_images, train_labels) or ``DIR/*.png``."""
    out = Path(out)
    array = images.permute(0, 2, 3, 1).numpy()
    array = array[..., 0] if array.shape[-1] == 1 else array
    if out.suffix == ".npz":
        labels = np.zeros((len(array), 1), dtype=np.uint8)
        io.save_npz(out, train_images=array, train_labels=labels)
        return out
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(array):
        with io.atomic_path(out / f"sample_{i:05d}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    return out
