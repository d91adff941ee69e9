import pytest
import torch
from torch import nn

from medgan.models import MODELS, build_models
from medgan.models.dcgan import num_stages


@pytest.mark.parametrize("size", [28, 64, 128, 224])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(size, channels):
    gen, disc = build_models("dcgan", (channels, size, size))
    images = gen(torch.randn(2, 100))
    assert images.shape == (2, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert disc(images).shape == (2,)


def test_mlp_is_the_seed_architecture():
    gen, disc = build_models("mlp", (1, 28, 28))
    linears = [m for m in gen.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 128), (128, 256), (256, 512), (512, 784)]
    linears = [m for m in disc.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 512), (512, 256), (256, 1)]
    assert gen(torch.randn(3, 100)).shape == (3, 1, 28, 28)


def test_critic_without_batch_norm():
    _, disc = build_models("dcgan", (1, 28, 28), batch_norm_in_d=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in disc.modules())
    _, disc = build_models("dcgan", (1, 28, 28), batch_norm_in_d=True)
    assert any(isinstance(m, nn.BatchNorm2d) for m in disc.modules())


def test_num_stages():
    assert [num_stages(s) for s in (28, 32, 64, 128, 224)] == [2, 3, 4, 5, 5]
    with pytest.raises(ValueError):
        num_stages(30)
    assert set(MODELS) == {"mlp", "mlp-bn", "dcgan", "resnet", "progressive"}


def test_seed_002_nets():
    gen, disc = build_models("mlp-bn", (1, 28, 28))
    assert sum(isinstance(m, nn.BatchNorm1d) for m in gen.modules()) == 2
    assert sum(isinstance(m, nn.LeakyReLU) for m in disc.modules()) == 2
    assert gen(torch.randn(4, 100)).shape == (4, 1, 28, 28) and disc(torch.zeros(4, 1, 28, 28)).shape == (4,)


def test_presets_are_valid_studies():
    from medgan.study.compare import STUDY_PRESETS as PRESETS
    from medgan.study.compare import study_from_args

    for name in PRESETS:
        runs = study_from_args(name).runs()
        assert runs and all(cfg.epochs >= 1 for _, cfg in runs)
    assert {"quickstart", "seed-chestmnist", "seed-retinamnist", "seed-pathmnist"} <= set(PRESETS)


@pytest.mark.parametrize("size,channels", [(28, 1), (28, 3), (64, 1), (128, 3)])
def test_resnet_shapes(size, channels):
    gen, disc = build_models("resnet", (channels, size, size), width=16)
    images = gen(torch.randn(2, 100))
    assert images.shape == (2, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert disc(images).shape == (2,)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in disc.modules())


@pytest.mark.parametrize("model", ["dcgan", "resnet", "mlp"])
def test_spectral_norm_keeps_top_singular_value_near_one(model):
    torch.manual_seed(0)
    _, disc = build_models(model, (1, 28, 28), width=16, spectral_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in disc.modules())
    layers = [m for m in disc.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    for _ in range(30):  # power iteration: one step per training-mode forward
        disc(torch.randn(4, 1, 28, 28))
    disc.eval()
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05)
    _, plain = build_models(model, (1, 28, 28), width=16)
    sigmas = [
        torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
        for m in plain.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    assert max(abs(s - 1) for s in sigmas) > 0.1, "without spectral norm the singular values are not 1"


def test_best_preset_is_chosen_per_size():
    from medgan.recipes import recipe

    best = recipe("best", 28)
    assert best["model"] == "dcgan" and best["ema"] == 0.999 and not best.get("spectral_norm")
    assert best["augment"] == "translation,cutout" and best["augment_target"] == 0.6  # ADA
    budget = {"precision": "auto", "max_minutes": 45.0}  # the measured budget, at every size
    assert all(recipe("best", size).items() >= budget.items() for size in (28, 64, 128, 224))

    def recipe_only(r):
        return {k: v for k, v in r.items() if k not in (*budget, "epochs")}

    # from 64 px: small-data with its augmentation as often as ADA says (RESULTS "64 px", 2026-12-06)
    assert recipe_only(recipe("best", 64)) == {**recipe_only(recipe("small-data", 64)), "augment_target": 0.6}
    assert (
        recipe("best", 64)["width"] == 32 and recipe("best", 100)["size"] == 100 and recipe("best", 224)["width"] == 16
    )
    from medgan.config import from_dict

    for name in ("best", "small-data"):
        for size in (28, 64, 128, 224):
            assert from_dict(recipe(name, size)).size == size  # every preset is a valid config at every size


def test_minibatch_stddev_per_group():
    from medgan.models.minibatch_std import minibatch_stddev

    torch.manual_seed(0)
    h = torch.randn(8, 3, 2, 2)
    out = minibatch_stddev(h, group_size=4)
    assert out.shape == (8, 4, 2, 2) and torch.equal(out[:, :3], h)
    for g in range(2):
        expected = h[4 * g : 4 * g + 4].std(dim=0, unbiased=False).mean()
        assert torch.allclose(out[4 * g : 4 * g + 4, 3], expected.expand(4, 2, 2), atol=1e-5)
    changed = h.clone()
    changed[7] += 5  # only the second group's statistic moves
    again = minibatch_stddev(changed, group_size=4)
    assert torch.equal(again[:4, 3], out[:4, 3]) and (again[4:, 3] > out[4:, 3]).all()
    assert torch.allclose(minibatch_stddev(h)[:, 3], h.std(dim=0, unbiased=False).mean().expand(8, 2, 2), atol=1e-5)
    assert minibatch_stddev(h[:6], group_size=4).shape == (6, 4, 2, 2)  # groups of gcd(4, 6) = 2
    assert (minibatch_stddev(h[:1], group_size=4)[:, 3] == 0).all()
    same = h[:1].expand(4, 3, 2, 2)  # identical images: no variety, and a finite gradient
    same = same.clone().requires_grad_(True)
    minibatch_stddev(same, group_size=4)[:, 3].sum().backward()
    assert torch.isfinite(same.grad).all()


@pytest.mark.parametrize("model,size", [("dcgan", 28), ("dcgan", 64), ("resnet", 28)])
def test_minibatch_std_discriminator(model, size):
    """D gets the batch's variety: its score of an image changes when the rest of its group changes."""
    from medgan.models.minibatch_std import MinibatchStd

    _, disc = build_models(model, (1, size, size), width=16, minibatch_std=True, batch_norm_in_d=False)
    assert sum(isinstance(m, MinibatchStd) for m in disc.modules()) == 1
    disc.eval()
    x = torch.rand(4, 1, size, size) * 2 - 1
    varied = disc(x)
    dull = disc(torch.cat([x[:1], x[:1].expand(3, -1, -1, -1)]))
    assert varied.shape == (4,) and not torch.allclose(varied[0], dull[0])
    _, plain = build_models(model, (1, size, size), width=16, batch_norm_in_d=False)
    plain.eval()
    assert torch.allclose(plain(x)[:1], plain(torch.cat([x[:1], x[:1].expand(3, -1, -1, -1)]))[:1])


def test_minibatch_std_with_projection_discriminator():
    gen, disc = build_models("dcgan", (1, 28, 28), width=16, minibatch_std=True, n_classes=3)
    y = torch.eye(3)[[0, 1, 2, 0]]
    assert disc(gen(torch.randn(4, 100), y), y).shape == (4,)
