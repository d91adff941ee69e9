"""The standard FID/IS/KID Inception-v3 (torch-fidelity's port of the TF graph), its weights found or downloaded.

medgan looks for the weights in ``--inception-weights PATH``, ``$MEDGAN_INCEPTION_WEIGHTS`` and torch's hub cache
(``$TORCH_HOME/hub/checkpoints``, where torch-fidelity and torchmetrics put them). When none is there it downloads
them, where the network allows (``MEDGAN_OFFLINE=1`` forbids it), from the release torch-fidelity itself uses
(``$MEDGAN_INCEPTION_URL`` overrides it) into that cache: into a temporary file beside it, checked against the hash
in the file's name (torch hub's convention: the 8 hex digits are the prefix of its SHA-256; torch-fidelity pins no
longer hash), then renamed. Otherwise the Inception metrics are reported as unavailable, with the reason.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

import torch

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
# torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3 (torch-fidelity 0.2-0.4)
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
WEIGHTS_SHA256_PREFIX = "6726825d"  # torch hub's convention: the hex digits after the last '-' of the file name
DOWNLOAD_TIMEOUT_S = 30  # per blocking socket operation, not for the whole file


class Unavailable(Exception):
    """A metric cannot be computed here; the message says how to make it available."""


def hub_path() -> Path:
    """Where torch hub (so torch-fidelity and torchmetrics) caches the weights; honours $TORCH_HOME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def weights_url() -> str:
    return os.environ.get("MEDGAN_INCEPTION_URL") or WEIGHTS_URL


def offline() -> bool:
    """``MEDGAN_OFFLINE`` set to anything but "" or "0": medgan downloads nothing (as for MedMNIST files)."""
    return os.environ.get("MEDGAN_OFFLINE", "") not in ("", "0")


def find_weights(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The weights file: the first of PATH, $MEDGAN_INCEPTION_WEIGHTS, the hub cache that exists, else downloaded
    into the hub cache (when ``download`` and not offline). Raises ``Unavailable`` with a one-line reason."""
    candidates = [Path(p).expanduser() for p in (path, os.environ.get("MEDGAN_INCEPTION_WEIGHTS")) if p] + [hub_path()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    url = weights_url()
    where = f"Download {url} on a machine with internet and copy it to {hub_path()}, or pass --inception-weights PATH."
    looked = f"Inception weights not found (looked at {', '.join(map(str, candidates))})"
    if not download:
        raise Unavailable(f"{looked}. {where}")
    if offline():
        raise Unavailable(f"{looked}; not downloading them (MEDGAN_OFFLINE is set). {where}")
    try:
        return download_weights(url, hub_path())
    except Unavailable as e:
        raise Unavailable(f"{looked} and {e}. {where}") from None


def download_weights(url: str, target: Path, sha256_prefix: str | None = None) -> Path:
    """Download ``url`` to ``target`` atomically: a temporary file in ``target``'s folder, its SHA-256 checked
    against ``sha256_prefix`` (default ``WEIGHTS_SHA256_PREFIX``), renamed onto ``target``; removed on any failure.
    Raises ``Unavailable`` ("the download failed (...)" / "the download's SHA-256 ... is not ...")."""
    expected = (sha256_prefix or WEIGHTS_SHA256_PREFIX).lower()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as e:
        raise Unavailable(f"the download could not start ({e})") from None
    print(f"medgan: downloading the Inception weights {url} to {target}", file=sys.stderr)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if not digest.hexdigest().startswith(expected):
            raise Unavailable(
                f"the download's SHA-256 {digest.hexdigest()} does not start with the expected {expected} "
                "(a damaged or different file; it was removed)"
            )
        os.replace(tmp, target)
    except Unavailable:
        Path(tmp).unlink(missing_ok=True)
        raise
    except Exception as e:  # network errors come in many types; all mean the same to the user
        Path(tmp).unlink(missing_ok=True)
        raise Unavailable(f"the download failed ({type(e).__name__}: {e})") from None
    return target


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
