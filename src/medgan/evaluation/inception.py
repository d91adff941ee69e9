"""The standard FID/IS/KID Inception-v3 (torch-fidelity's port of the TF graph), when its weights are here.

The weights cannot be downloaded on machines without internet, so medgan never tries: it looks for the
file in ``--inception-weights PATH``, ``$MEDGAN_INCEPTION_WEIGHTS`` and torch's hub cache (where
torch-fidelity and torchmetrics put it), and otherwise reports the Inception metrics as unavailable.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"


class Unavailable(Exception):
    """A metric cannot be computed here; the message says how to make it available."""


def hub_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def find_weights(path: str | os.PathLike | None = None) -> Path:
    candidates = [Path(p).expanduser() for p in (path, os.environ.get("MEDGAN_INCEPTION_WEIGHTS")) if p] + [hub_path()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise Unavailable(
        f"Inception weights not found (looked at {', '.join(map(str, candidates))}). "
        f"Download {WEIGHTS_URL} on a machine with internet and copy it to {hub_path()}, "
        "or pass --inception-weights PATH."
    )


class InceptionExtractor:
    """2048-d pool features and 1008-way logits; grayscale repeated to 3 channels, resized as torch-fidelity does."""

    name = "inception"
    has_class_logits = True

    def __init__(self, weights: str | os.PathLike | None = None, device="cpu", batch_size: int = 64):
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise Unavailable("torch-fidelity is not installed: pip install torch-fidelity") from None
        path = find_weights(weights)
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        self.net.eval().to(device)
        self.device, self.batch_size = device, batch_size
        self.info = {"weights": str(path)}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, logits = [], []
        for chunk in images.split(self.batch_size):
            if chunk.shape[1] == 1:
                chunk = chunk.expand(-1, 3, -1, -1)
            f, l = self.net(chunk.contiguous().to(self.device))
            feats.append(f.cpu())
            logits.append(l.cpu())
        return torch.cat(feats), torch.cat(logits)
