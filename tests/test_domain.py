"""Domain extractor above 28 px: trains at domain.TRAIN_SIZE, features at up to INPUT_SIZE; its cache key says so."""

from __future__ import annotations

import torch

from medgan.data import ImageSet, to_float
from medgan.evaluation import domain


def _blobs(n: int, size: int, seed: int = 0, split: str = "train") -> ImageSet:
    """Two classes: a bright or a dim square on noise (n images of size px)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 40, (n, 1, size, size), generator=g)
    q = size // 4
    images[:, :, q : 3 * q, q : 3 * q] += (100 + 100 * labels).view(n, 1, 1, 1)
    return ImageSet(images.clamp(0, 255).to(torch.uint8), labels.view(n, 1), "breastmnist", split)


def test_a_64px_extractor_can_train_at_a_reduced_resolution_and_take_features_at_64px(monkeypatch):
    monkeypatch.setattr(domain, "TRAIN_SIZE", 32)
    seen = []
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        if self.in_channels == 1:  # the first layer: the resolution the net works at
            seen.append((x.shape[-1], torch.is_grad_enabled()))
        return original(self, x)

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    net64, info64 = domain.train_domain_net(_blobs(64, 64), _blobs(32, 64, 1, "test"), steps=3, batch_size=16)
    assert info64["train_size"] == 32 and info64["input_size"] == net64.input_size == 64
    assert {size for size, grad in seen if grad} == {32}  # every training step at the reduced size
    assert 64 in {size for size, grad in seen if not grad}  # batch norm, calibration and scoring at 64 px
    seen.clear()
    net28, info28 = domain.train_domain_net(_blobs(64, 28), _blobs(32, 28, 1, "test"), steps=3, batch_size=16)
    assert info28["input_size"] == info28["train_size"] == 28 and {size for size, _ in seen} == {28}
    features64, logits64 = domain._predict(net64.for_inference(), _blobs(8, 64).uint8())
    features28, _ = domain._predict(net28.for_inference(), _blobs(8, 28).uint8())
    assert features64.shape == features28.shape == (8, sum(net64.block_sizes))
    assert logits64.shape == (8, 2) and torch.isfinite(features64).all()


def test_batch_norm_is_re_estimated_at_the_feature_resolution(monkeypatch):
    monkeypatch.setattr(domain, "TRAIN_SIZE", 32)
    net, _ = domain.train_domain_net(_blobs(64, 64), _blobs(32, 64, 1, "test"), steps=3, batch_size=16)
    first = net.body[1]  # the first batch norm: its running mean is the mean of 64 px conv outputs now
    with torch.no_grad():
        conv = net.body[0](to_float(_blobs(64, 64).uint8()))
    assert torch.allclose(first.running_mean, conv.mean((0, 2, 3)), atol=0.05, rtol=0.1)


def test_by_default_a_64px_extractor_trains_and_takes_features_at_64px():
    net, info = domain.train_domain_net(_blobs(64, 64), _blobs(32, 64, 1, "test"), steps=2, batch_size=16)
    assert net.input_size == info["input_size"] == info["train_size"] == 64


def test_shrink_downsamples_the_longer_side_and_keeps_flat_images_flat():
    x = torch.full((2, 3, 64, 48), 0.25)
    small = domain.shrink(x, 32)
    assert small.shape == (2, 3, 32, 24)
    assert torch.allclose(small, torch.full_like(small, 0.25))


def test_the_cache_key_names_the_input_resolution_only_where_it_differs(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_CACHE", str(tmp_path))

    def name(size):
        return domain.extractor_path(_blobs(16, size), steps=5).name

    # the defaults: the names extractors always had, so their caches stay valid
    assert "-28px-1ch-5-" in name(28) and "-64px-1ch-5-" in name(64) and "-128px-1ch-5-" in name(128)
    monkeypatch.setattr(domain, "TRAIN_SIZE", 32)
    assert "-28px-1ch-5-" in name(28) and "-64px-t32-1ch-5-" in name(64)
    monkeypatch.setattr(domain, "INPUT_SIZE", 32)
    assert "-64px-in32-1ch-5-" in name(64)


def test_a_cached_extractor_is_loaded_at_its_input_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(domain, "INPUT_SIZE", 32)
    train, test = _blobs(64, 64), _blobs(32, 64, 1, "test")
    trained, info = domain.load_or_train(train, test, steps=3, verbose=False)
    assert domain.extractor_path(train, 3).exists()
    loaded, loaded_info = domain.load_or_train(train, test, steps=3, verbose=False)
    assert loaded.input_size == trained.input_size == 32 and loaded_info == info
    images = test.uint8()
    assert torch.allclose(domain._predict(loaded, images)[0], domain._predict(trained, images)[0], atol=1e-5)
