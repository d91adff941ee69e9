"""Feature-space metrics: FID, KID, IS and precision/recall/density/coverage.

All take (N, D) feature arrays (torch tensors or numpy) and are pure functions of them.
"""

# Why medgan has its own rather than calling torch-fidelity's (or torchmetrics', built around images and a feature
# network): plain functions of features, on whatever device the features are (torch-fidelity converts to numpy);
# FD in float64 via two symmetric eigendecompositions (exactly real; faster than scipy's sqrtm, benchmarks/RESULTS.md
# "eval_speed"); KID as torch-fidelity's unbiased MMD^2 (the same subsets for the same seed) with its std over
# subsets; precision/recall with density/coverage in one chunked pass, never a full N x N matrix (torch-fidelity has
# no density/coverage). tests/test_metrics_reference.py checks that they agree with torch-fidelity, scipy and prdc's
# formulas on random features.

from __future__ import annotations

import numpy as np
import torch


def _tensor(x, dtype=torch.float64) -> torch.Tensor:
    """Features as a ``dtype`` tensor on their own device (numpy arrays land on the CPU)."""
    return torch.as_tensor(x).detach().to(dtype=dtype)


def _mean_cov(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = feats.mean(0)
    centred = feats - mean
    return mean, centred.T @ centred / (len(feats) - 1)


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID on Inception features)."""
    mean_a, cov_a = _mean_cov(_tensor(feats_a))
    mean_b, cov_b = _mean_cov(_tensor(feats_b))
    # tr sqrt(A B) = tr sqrt(A^1/2 B A^1/2); the latter is symmetric PSD, so two symmetric eigh calls
    # give it exactly real and stably, faster than scipy's sqrtm or eig of the non-symmetric A B (measured:
    # benchmarks/RESULTS.md "eval_speed").
    root_a = _sqrtm_psd(cov_a)
    trace_sqrt = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return float(distance)


def _mmd2_unbiased(k_xx: torch.Tensor, k_yy: torch.Tensor, k_xy: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 from kernel matrices (diagonals of k_xx and k_yy left out), as torch-fidelity."""
    m = len(k_xx)
    total = lambda k: k.sum(dtype=torch.float64)  # noqa: E731
    within = total(k_xx) - total(k_xx.diagonal()) + total(k_yy) - total(k_yy.diagonal())
    return within / (m * (m - 1)) - 2 * total(k_xy) / m**2


def kernel_inception_distance(
    feats_a, feats_b, subsets=100, subset_size=1000, degree=3, gamma=None, coef0=1, seed=0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): mean and std of the unbiased MMD^2 over random subsets,
    with the polynomial kernel (gamma x.y + coef0)^degree, gamma = 1 / D by default."""
    # Kernels in float32 as torch-fidelity (faster: benchmarks/RESULTS.md "eval_speed"); summed in float64, MMD^2
    # is within ~1e-8 of float64.
    feats_a, feats_b = _tensor(feats_a, torch.float32), _tensor(feats_b, torch.float32)
    subset_size = min(subset_size, len(feats_a), len(feats_b))
    gamma = 1.0 / feats_a.shape[1] if gamma is None else gamma

    def kernel(x, y):
        return (x @ y.T * gamma + coef0) ** degree

    rng = np.random.RandomState(seed)  # the same subsets as torch-fidelity for the same seed
    scores = []
    for _ in range(subsets):
        x = feats_a[rng.choice(len(feats_a), subset_size, replace=False)]
        y = feats_b[rng.choice(len(feats_b), subset_size, replace=False)]
        scores.append(_mmd2_unbiased(kernel(x, x), kernel(y, y), kernel(x, y)))
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


def inception_score(logits, splits=10) -> tuple[float, float]:
    """IS from classifier logits: exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` chunks."""
    scores = []
    for chunk in _tensor(logits).tensor_split(splits):
        log_p = chunk.log_softmax(1)
        log_marginal = log_p.logsumexp(0) - np.log(len(chunk))
        scores.append((log_p.exp() * (log_p - log_marginal)).sum(1).mean().exp())
    scores = torch.stack(scores)
    return float(scores.mean()), float(scores.std(unbiased=False))


def _kth_neighbour_distances(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point (topk's first hit is the point itself)."""
    return torch.cat([torch.cdist(rows, feats).topk(k + 1, largest=False).values[:, -1] for rows in feats.split(chunk)])


def precision_recall_density_coverage(real, fake, k=5, chunk=2048) -> dict[str, float]:
    """Precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020),
    from k-NN balls around the real and fake features; distances are computed ``chunk`` rows at a time."""
    real, fake = _tensor(real, torch.float32), _tensor(fake, torch.float32)
    real_radii = _kth_neighbour_distances(real, k, chunk)
    fake_radii = _kth_neighbour_distances(fake, k, chunk)

    balls_holding_fake = []  # per fake: how many real k-NN balls contain it
    real_recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)  # in some fake ball
    real_to_fake = torch.full((len(real),), torch.inf, device=real.device)  # to the nearest fake
    for fake_rows, fake_rows_radii in zip(fake.split(chunk), fake_radii.split(chunk)):
        distances = torch.cdist(fake_rows, real)
        # int32: faster (benchmarks/RESULTS.md "eval_speed")
        balls_holding_fake.append((distances < real_radii).sum(1, dtype=torch.int32))
        real_recalled |= (distances < fake_rows_radii[:, None]).any(0)
        real_to_fake = torch.minimum(real_to_fake, distances.amin(0))
    balls_holding_fake = torch.cat(balls_holding_fake).double()
    return {
        "precision": float((balls_holding_fake > 0).double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(balls_holding_fake.mean() / k),
        "coverage": float((real_to_fake < real_radii).double().mean()),
    }
