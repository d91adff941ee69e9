import pytest
import torch

from medgan.augment import TRANSFORMS, AdaptiveAugment, AugmentedDiscriminator, diff_augment, parse_policy


def images(n=6, c=1, size=28, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("channels", [1, 3])
def test_transform_keeps_shape_changes_images_and_is_differentiable(name, channels):
    x = images(c=channels).requires_grad_(True)
    torch.manual_seed(0)
    y = TRANSFORMS[name](x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.allclose(y, x)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()


def test_translation_moves_content_and_fills_with_zero():
    x = torch.ones(64, 1, 8, 8)
    torch.manual_seed(1)
    y = TRANSFORMS["translation"](x)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert (y == 0).any() and (y == 1).any()  # some shifted: zero border came in
    x = torch.arange(64.0).view(1, 1, 8, 8).expand(32, 1, 8, 8)
    y = TRANSFORMS["translation"](x)
    # each output pixel is either zero or a value from the same image, never a blend
    assert torch.isin(y, torch.cat([x.unique(), torch.zeros(1)])).all()


def test_cutout_zeroes_a_half_size_square():
    x = torch.ones(16, 2, 28, 28)
    y = TRANSFORMS["cutout"](x)
    assert ((y == 0).flatten(1).sum(1) == 2 * 14 * 14).all()


def test_same_policy_same_random_state_same_output_for_real_and_fake():
    """D sees real and generated batches through the very same transform: same draws give same output."""
    seen = []
    recorder = torch.nn.Identity()
    recorder.register_forward_hook(lambda m, args, out: seen.append(out))
    disc = AugmentedDiscriminator(recorder, "translation,cutout,color")
    x = images()
    torch.manual_seed(5)
    disc(x)  # as a "real" batch
    torch.manual_seed(5)
    disc(x.clone().requires_grad_(True))  # as a "fake" batch, with gradient
    assert torch.equal(seen[0], seen[1].detach()) and not torch.equal(seen[0], x)
    assert seen[1].requires_grad


def test_policy_errors():
    assert parse_policy("translation, cutout") == ["translation", "cutout"]
    assert parse_policy("") == []
    with pytest.raises(ValueError, match="unknown augmentation.*choose from"):
        parse_policy("translation,flip")
    assert torch.equal(diff_augment(images(), ""), images())


def test_probability_p_augments_that_fraction_of_images_and_stays_differentiable():
    x = torch.ones(2000, 1, 8, 8, requires_grad=True)
    torch.manual_seed(0)
    assert torch.equal(diff_augment(x, "cutout", torch.tensor(0.0)), x)
    y = diff_augment(x, "cutout", torch.tensor(0.3))
    cut = (y == 0).flatten(1).any(1).float()
    assert 0.25 < cut.mean() < 0.35  # each image is cut with probability 0.3
    assert ((y == 0).flatten(1).sum(1)[cut.bool()] == 16).all()  # and those fully, the others not at all
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, (y != 0).float())  # gradient 1 where the image passes through, 0 where cut


def test_ada_raises_p_while_d_is_surer_than_the_target_and_lowers_it_otherwise():
    ada = AdaptiveAugment(target=0.6, batch_size=50, device="cpu", images_to_full=1000)  # steps of 0.05
    disc = AugmentedDiscriminator(torch.nn.Identity(), "cutout", ada.p)
    assert ada.p.item() == 0 and torch.equal(disc(torch.ones(4, 1, 8, 8)), torch.ones(4, 1, 8, 8))
    for _ in range(30):
        ada.update(torch.tensor(0.9))  # D calls 95% of the real images real: overfitting
    assert ada.p.item() == 1.0  # clamped; and the discriminator sees the same tensor
    assert (disc(torch.ones(4, 1, 8, 8)) == 0).flatten(1).any(1).all()
    for _ in range(4):
        ada.update(torch.tensor(0.2))
    assert abs(ada.p.item() - 0.8) < 1e-6
