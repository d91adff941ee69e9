"""C2ST as a measurement: cross-fitting, early stopping, and an interval that includes the classifier's variance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medgan.evaluation.c2st as c2st_module
from medgan.evaluation.c2st import c2st, combined_interval, wilson_interval


def blobs(n: int, seed: int, size: int = 16, noise: float = 6.0) -> torch.Tensor:
    """uint8 (n, 1, size, size): a dim noisy background with one bright Gaussian blob at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = rng.uniform(0.3, 0.7, (2, n, 1, 1))
    radius = rng.uniform(0.12, 0.22, (n, 1, 1))
    images = (
        15 + 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)) + rng.normal(0, noise, (n, size, size))
    )
    return torch.from_numpy(np.clip(np.rint(images), 0, 255).astype(np.uint8))[:, None]


def numbered(first: int, n: int) -> torch.Tensor:
    """Images whose first two pixels spell their number (first .. first + n - 1)."""
    images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    ids = torch.arange(first, first + n)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = ids % 256, ids // 256
    return images


def ids_of(x: torch.Tensor) -> list[int]:
    pixels = ((x[:, 0, 0, :2] + 1) * 127.5).round().long()
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


@pytest.mark.parametrize("n_real, n_fake", [(20, 30), (30, 20)])
def test_cross_fitting_predicts_every_image_once_by_a_classifier_that_never_saw_it(monkeypatch, n_real, n_fake):
    predicted: list[list[int]] = []

    def fit(x, y, x_val, y_val, *args):
        return ("stub", set(ids_of(x)) | set(ids_of(x_val))), 7

    def logits(net, x):
        seen = ids_of(x)
        assert not set(seen) & net[1], "a classifier predicted an image it was trained or validated on"
        predicted.append(seen)
        return torch.zeros(len(x))

    monkeypatch.setattr(c2st_module, "_fit", fit)
    monkeypatch.setattr(c2st_module, "_logits", logits)
    real, fake = numbered(0, n_real), numbered(1000, n_fake)
    result = c2st(real, fake, folds=4, repeats=3)
    n = min(n_real, n_fake)
    assert len(predicted) == 4 * 3 and result["n_test"] == 2 * n and result["steps"] == 7
    for r in range(3):
        ids = [i for fold in predicted[4 * r : 4 * r + 4] for i in fold]
        assert len(ids) == len(set(ids)) == 2 * n  # each of the balanced sample exactly once per repeat
        assert sum(i < 1000 for i in ids) == n  # balanced: as many real as generated
        smaller = range(n_real) if n_real <= n_fake else range(1000, 1000 + n_fake)
        assert set(smaller) <= set(ids)  # the smaller side is used in full
        assert all(abs(sum(i < 1000 for i in fold) - n / 4) <= 1 for fold in predicted[4 * r : 4 * r + 4])
    # every prediction was "generated": half right
    assert result["accuracy"] == 0.5 and result["repeat_accuracies"] == [0.5] * 3


def test_identical_distributions_score_one_half_inside_the_interval():
    result = c2st(blobs(96, 0), blobs(96, 1), steps=30, repeats=2)
    assert abs(result["accuracy"] - 0.5) < 0.1
    assert result["ci95_low"] < 0.5 < result["ci95_high"]
    assert result["n_test"] == 192 and result["folds"] == 2 and result["repeats"] == 2


def test_clearly_different_sets_score_near_one_and_early_stopping_ends_before_the_cap():
    real = blobs(64, 0)
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    result = c2st(real, noise, steps=2000, repeats=1)
    assert result["accuracy"] > 0.95 and result["ci95_high"] <= 1.0
    assert result["max_steps"] == 2000 and result["steps"] < 500  # stopped once held-out loss stopped improving


def test_same_seed_same_result_and_the_step_cap():
    a, b = blobs(48, 0), blobs(48, 1, noise=9.0)
    first = c2st(a, b, steps=20, seed=3, repeats=2)
    assert first == c2st(a, b, steps=20, seed=3, repeats=2)
    assert first["max_steps"] == 20 and first["steps"] <= 20
    assert c2st(a, b, seed=3, repeats=1)["max_steps"] == 30  # $MEDGAN_C2ST_STEPS (conftest) caps the steps
    fixed = c2st(a, b, steps=12, patience=0, repeats=1)  # early stopping off: exactly the cap
    assert fixed["steps"] == 12


def test_the_interval_includes_the_classifiers_own_variance():
    low, high = wilson_interval(140, 200)
    assert combined_interval(0.7, 200, 0.0) == pytest.approx((low, high))
    wide = combined_interval(0.7, 200, 0.03)
    assert wide[0] < low and wide[1] > high
    assert (wide[1] - 0.7) == pytest.approx(((high - 0.7) ** 2 + (1.96 * 0.03) ** 2) ** 0.5, abs=1e-3)
    # a hard problem: the repeats disagree, and the reported interval is wider than the binomial one
    result = c2st(blobs(64, 0), blobs(64, 1, noise=8.0), steps=20, repeats=3)
    assert result["std"] > 0 and len(set(result["repeat_accuracies"])) > 1
    binomial = result["binomial_ci95"]
    assert result["ci95_high"] - result["ci95_low"] > binomial[1] - binomial[0]


def test_too_few_images_is_an_error():
    with pytest.raises(ValueError, match="folds"):
        c2st(blobs(3, 0), blobs(3, 1), folds=5)
