import pytest
import torch

from medgan.augment import AugmentedDiscriminator, TRANSFORMS, diff_augment, parse_policy


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
