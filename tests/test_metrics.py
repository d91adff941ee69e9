import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from medgan.data.imageset import to_float
from medgan.metrics import (
    best_ssim_to_reference,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    memorisation,
    nearest_neighbours,
    pairwise_ssim,
    precision_recall_density_coverage,
    ssim,
)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def random_images(n, channels=1, size=28, seed=0):
    return torch.randint(
        0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def smooth_images(n, channels=1, size=28, seed=0):
    coarse = randn(n, channels, 5, 5, seed=seed)
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    fine = (fine - fine.amin()) / (fine.amax() - fine.amin())
    return (fine * 255).round().to(torch.uint8)


# ---- feature-space metrics ----


def test_frechet_distance_matches_scipy_sqrtm():
    a = randn(2000, 64, seed=1) @ randn(64, 64, seed=2) / 8 + 0.3
    b = randn(2000, 64, seed=3) * 1.2
    mean_a, mean_b = a.numpy().mean(0), b.numpy().mean(0)
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a.numpy(), b.float()) == pytest.approx(expected, rel=1e-5)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = randn(2000, 64, seed=4) @ randn(64, 64, seed=5)
    trace = np.trace(np.cov(x.numpy(), rowvar=False))
    assert abs(frechet_distance(x, x)) < 1e-6 * trace
    assert frechet_distance(x, x + 1) == pytest.approx(64, rel=1e-6)  # mean shift only


def mmd2_unbiased_loop(x, y):
    """Unbiased MMD^2 with the cubic polynomial kernel, term by term."""
    m, d = len(x), x.shape[1]
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_direct_mmd_loop():
    x, y = randn(40, 8, seed=6).numpy(), (randn(40, 8, seed=7) * 1.5 + 0.5).numpy()
    # subset_size is clipped to 40, so the one subset is the whole sets (MMD ignores order)
    mean, std = kernel_inception_distance(x, y, subsets=1)
    assert mean == pytest.approx(mmd2_unbiased_loop(x, y), rel=1e-5)
    assert std == 0


def test_kid_is_seeded_and_separates_distributions():
    a, same, shifted = randn(500, 16, seed=8), randn(500, 16, seed=9), randn(500, 16, seed=10) + 0.5
    run = lambda b, seed=0: kernel_inception_distance(a, b, subsets=20, subset_size=200, seed=seed)  # noqa: E731
    assert run(same) == run(same)
    assert run(same) != run(same, seed=1)
    (kid_same, std_same), (kid_shifted, _) = run(same), run(shifted)
    assert abs(kid_same) < 3 * std_same + 1e-3
    assert kid_shifted > 100 * abs(kid_same)


def test_inception_score_bounds():
    assert inception_score(torch.zeros(1000, 10)) == pytest.approx((1.0, 0.0), abs=1e-9)
    confident_balanced = 100 * F.one_hot(torch.arange(1050) % 7, 7).double()  # 105 per split
    mean, std = inception_score(confident_balanced, splits=10)
    assert mean == pytest.approx(7, rel=1e-6) and std == pytest.approx(0, abs=1e-6)
    one_class = 100 * F.one_hot(torch.zeros(1000, dtype=torch.long), 7).double()
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)


def prdc_reference(real, fake, k):
    """Naeem et al.'s reference implementation (clovaai/generative-evaluation-prdc), full matrices."""
    real_radii = np.sort(scipy.spatial.distance.cdist(real, real), 1)[:, k]
    fake_radii = np.sort(scipy.spatial.distance.cdist(fake, fake), 1)[:, k]
    d = scipy.spatial.distance.cdist(real, fake)
    return {
        "precision": (d < real_radii[:, None]).any(0).mean(),
        "recall": (d < fake_radii[None, :]).any(1).mean(),
        "density": (d < real_radii[:, None]).sum(0).mean() / k,
        "coverage": (d.min(1) < real_radii).mean(),
    }


def test_prdc_matches_full_matrix_reference_in_chunks():
    real, fake = randn(300, 6, seed=11), randn(250, 6, seed=12) * 1.3 + 0.2
    expected = prdc_reference(real.numpy(), fake.numpy(), k=5)
    assert precision_recall_density_coverage(real, fake, k=5, chunk=64) == pytest.approx(expected, abs=1e-9)


def test_prdc_identical_and_far_apart_sets():
    real = randn(1000, 32, seed=13)
    same = precision_recall_density_coverage(real, real, k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert 0.5 < same["density"] < 1.5
    far = precision_recall_density_coverage(real, real + 100, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


# ---- pixel-space metrics ----


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("make", [random_images, smooth_images])
def test_ssim_matches_skimage(channels, make):
    a, b = make(4, channels, seed=14), make(4, channels, seed=15)
    b[0] = a[0]
    expected = [
        structural_similarity(
            x.numpy().squeeze(0) if channels == 1 else x.permute(1, 2, 0).numpy(),
            y.numpy().squeeze(0) if channels == 1 else y.permute(1, 2, 0).numpy(),
            data_range=255,
            channel_axis=None if channels == 1 else 2,
        )
        for x, y in zip(a, b)
    ]
    assert ssim(a, b).tolist() == pytest.approx(expected, abs=1e-4)
    assert ssim(to_float(a), to_float(b)).tolist() == pytest.approx(expected, abs=1e-4)  # [-1, 1] input
    assert expected[0] == pytest.approx(1.0)


def test_best_ssim_to_reference_matches_brute_force():
    generated, reference = smooth_images(12, 3, seed=16), smooth_images(9, 3, seed=17)
    expected = np.mean([ssim(g.expand_as(reference), reference).max() for g in generated])
    # a tiny batch forces several (generated x reference) batches
    assert best_ssim_to_reference(generated, reference, pixels_per_batch=5000) == pytest.approx(expected, abs=1e-5)
    assert best_ssim_to_reference(reference[:4], reference) == pytest.approx(1.0, abs=1e-5)


def test_pairwise_ssim_sees_mode_collapse():
    images = smooth_images(50, seed=18)
    assert pairwise_ssim(images) < 0.5
    assert pairwise_ssim(images[:1].expand(50, -1, -1, -1)) == pytest.approx(1.0)
    # pairs are always distinct images: with two images every pair is (a, b)
    assert pairwise_ssim(images[:2], n_pairs=20) == pytest.approx(float(ssim(images[:1], images[1:2])))


def test_nearest_neighbours_brute_force_and_rms_scale():
    queries, train = random_images(30, seed=19), random_images(50, seed=20)
    queries[5] = train[17]
    distances, indices = nearest_neighbours(queries, train, batch=7)
    full = ((queries.double()[:, None] - train.double()[None]) / 255).square().mean((2, 3, 4)).sqrt()
    assert indices.tolist() == full.argmin(1).tolist()
    assert distances.tolist() == pytest.approx(full.min(1).values.tolist(), abs=1e-6)
    assert distances[5] == 0 and indices[5] == 17
    black, white = torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.full((1, 1, 8, 8), 255, dtype=torch.uint8)
    assert nearest_neighbours(black, white)[0].item() == pytest.approx(1.0)


def test_memorisation_flags_exact_copies():
    train, test = random_images(200, seed=21), random_images(100, seed=22)
    copied = torch.tensor([3, 50, 120, 199])
    # binary noise sits farther from uniform-noise images (RMS ~0.58) than they do from each other (~0.41)
    noise = random_images(36, seed=23) // 128 * 255
    generated = torch.cat([noise[:10], train[copied], noise[10:]])  # copies at positions 10..13
    report = memorisation(to_float(generated), train, test, quantile=0.01)
    assert report["generated_fraction"] == pytest.approx(4 / 40)
    assert report["test_fraction"] == pytest.approx(0.01)
    assert sorted(report["closest_generated"][:4]) == [10, 11, 12, 13]
    pairs = sorted(zip(report["closest_generated"][:4], report["closest_train"][:4]))
    assert [t for _, t in pairs] == copied.tolist()
    assert max(report["closest_distances"][:4]) < 1e-6
    assert len(report["closest_generated"]) == 8
    assert report["test_median"] < report["generated_median"]
