"""Pixel-space metrics on image batches: SSIM, best-SSIM to a reference set, diversity, memorisation.

Images are (N, C, H, W) tensors, uint8 in [0, 255] or float in [-1, 1] (see ``medgan.data.imageset``);
all metrics see them scaled to [0, 1].
"""

from __future__ import annotations

import torch

# skimage.metrics.structural_similarity defaults: 7x7 uniform window, sample covariance, K1, K2.
WINDOW = 7
_COV_NORM = WINDOW**2 / (WINDOW**2 - 1)
_C1, _C2 = 0.01**2, 0.03**2  # (K * data_range)^2 with data_range 1


def unit_range(images: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images -> float [0, 1]."""
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        return images.to(dtype) / 255
    return (images.to(dtype) + 1) / 2


# Own SSIM rather than skimage's: skimage filters one pair at a time in Python, whereas the metrics
# below need SSIM of up to ~10^6 pairs; the same formula on batched window means runs them at once.
def _window_means(x: torch.Tensor) -> torch.Tensor:
    """Means over every window inside the image: skimage's uniform filter with its border cropped.

    Two matmuls with banded averaging matrices: faster on CPU than avg_pool2d, same result (measured:
    benchmarks/RESULTS.md "eval_speed").
    """
    rows, cols = (
        torch.ones(n - WINDOW + 1, n, dtype=x.dtype, device=x.device).triu().tril(WINDOW - 1) / WINDOW
        for n in x.shape[-2:]
    )
    return rows @ (x @ cols.T)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = _window_means(x)
    return mean, _COV_NORM * (_window_means(x * x) - mean * mean)


def _ssim(mean_a, var_a, mean_b, var_b, cov) -> torch.Tensor:
    """SSIM map from window moments (broadcasting), averaged over its last three dims (C, H, W)."""
    luminance = (2 * mean_a * mean_b + _C1) / (mean_a * mean_a + mean_b * mean_b + _C1)
    structure = (2 * cov + _C2) / (var_a + var_b + _C2)
    return (luminance * structure).mean((-3, -2, -1))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pair SSIM of two (N, C, H, W) batches -> (N,); equals skimage's structural_similarity
    with its defaults (data_range 255 for uint8, channels averaged)."""
    a, b = unit_range(a, torch.float64), unit_range(b, torch.float64)
    mean_a, var_a = _moments(a)
    mean_b, var_b = _moments(b)
    cov = _COV_NORM * (_window_means(a * b) - mean_a * mean_b)
    return _ssim(mean_a, var_a, mean_b, var_b, cov)


def best_ssim_to_reference(generated, reference, pixels_per_batch=2**20) -> float:
    """Mean over generated images of the best SSIM to any reference image."""
    # float32 (within ~1e-6 of float64) in cache-sized batches, both faster: benchmarks/RESULTS.md "eval_speed".
    generated, reference = unit_range(generated), unit_range(reference)
    mean_r, var_r = _moments(reference)
    rows = max(1, pixels_per_batch // reference.numel())
    best = []
    for gen in generated.split(rows):
        mean_g, var_g = _moments(gen)
        products = (gen[:, None] * reference[None]).flatten(0, 1)  # every (generated, reference) pair
        cov = _COV_NORM * (_window_means(products).unflatten(0, (len(gen), -1)) - mean_g[:, None] * mean_r)
        best.append(_ssim(mean_g[:, None], var_g[:, None], mean_r, var_r, cov).amax(1))
    return float(torch.cat(best).double().mean())


def pairwise_ssim(images, n_pairs=1000, seed=0) -> float:
    """Mean SSIM between ``n_pairs`` random pairs of distinct images: low for a diverse set,
    high under mode collapse (compare generated against real)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    first = torch.randint(n, (n_pairs,), generator=generator)
    second = (first + torch.randint(1, n, (n_pairs,), generator=generator)) % n  # never == first
    return float(ssim(images[first], images[second]).mean())


def nearest_neighbours(queries, train, batch=1024) -> tuple[torch.Tensor, torch.Tensor]:
    """RMS pixel distance (images in [0, 1]) from each query to its nearest training image, and its index."""
    queries, train = unit_range(queries).flatten(1), unit_range(train).flatten(1)
    indices = torch.cat([torch.cdist(rows, train).argmin(1) for rows in queries.split(batch)])
    # cdist's matmul form loses precision near 0 (exact copies): recompute the chosen distances directly.
    distances = (queries - train[indices]).square().mean(1).sqrt()
    return distances, indices


def memorisation(generated, train, test, quantile=0.01, n_closest=8) -> dict:
    """Near-copies of training images among generated ones.

    The threshold is the ``quantile`` of real test images' nearest-train distances; generated images
    at or below it count as near-copies (test images do so for ~``quantile`` of them by construction).
    """
    generated_distances, generated_neighbours = nearest_neighbours(generated, train)
    test_distances, _ = nearest_neighbours(test, train)
    threshold = torch.quantile(test_distances, quantile)
    closest = generated_distances.argsort()[:n_closest]
    return {
        "threshold": float(threshold),
        "generated_fraction": float((generated_distances <= threshold).double().mean()),
        "test_fraction": float((test_distances <= threshold).double().mean()),
        "generated_median": float(generated_distances.median()),
        "test_median": float(test_distances.median()),
        "closest_generated": closest.tolist(),
        "closest_train": generated_neighbours[closest].tolist(),
        "closest_distances": generated_distances[closest].tolist(),
    }
