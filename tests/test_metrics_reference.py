"""medgan's own feature metrics against well-kept implementations, on random features.

torch-fidelity (a medgan dependency) for FD, KID, precision/recall and IS; scipy's ``sqrtm`` (the formula of
pytorch-fid and of the FID paper's code) for FD once more; density and coverage as the authors' ``prdc`` package
computes them (Naeem et al. 2020), its scikit-learn pairwise distances as scipy's ``cdist``. torchmetrics
(not installed here) is built around images and a feature network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan.metrics import (
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall_density_coverage,
)

fid = pytest.importorskip("torch_fidelity.metric_fid")
kid = pytest.importorskip("torch_fidelity.metric_kid")
prc = pytest.importorskip("torch_fidelity.metric_prc")
isc = pytest.importorskip("torch_fidelity.metric_isc")


def features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """Correlated, non-Gaussian features, like a network's (float32, as extractors give them)."""
    mixing = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d)  # the same for every seed
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, size=(n, d)) @ mixing * scale + shift
    return torch.from_numpy(x.astype(np.float32))


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.3, 1.5)])
def test_frechet_distance_matches_torch_fidelity_and_scipy(shift, scale):
    from scipy import linalg

    a, b = features(600, 24, 0), features(500, 24, 1, shift, scale)
    ours = frechet_distance(a, b)
    stats = [fid.fid_features_to_statistics(x.double()) for x in (a, b)]
    theirs = fid.fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-8)

    (m1, s1), (m2, s2) = [(s["mu"], s["sigma"]) for s in stats]
    covmean = linalg.sqrtm(s1 @ s2).real
    pytorch_fid = (m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert ours == pytest.approx(pytorch_fid, rel=1e-6, abs=1e-8)


def test_kid_matches_torch_fidelity():
    a, b = features(400, 32, 2), features(300, 32, 3, 0.1)
    ours, ours_std = kernel_inception_distance(a, b, subsets=20, subset_size=150, seed=7)
    theirs = kid.kid_features_to_metric(a, b, kid_subsets=20, kid_subset_size=150, rng_seed=7, verbose=False)
    # the same subsets (same seed, same draws); kernels in float32 on both sides, theirs summed in float32: 4e-5 apart
    assert ours == pytest.approx(theirs["kernel_inception_distance_mean"], rel=5e-4, abs=1e-7)
    assert ours_std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3, abs=1e-7)


@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_match_torch_fidelity(k):
    real, fake = features(300, 16, 4), features(250, 16, 5, 0.1, 1.2)
    ours = precision_recall_density_coverage(real, fake, k=k)
    # torch-fidelity's convention: features_1 generated, features_2 real
    theirs = prc.prc_features_to_metric(fake, real, prc_neighborhood=k, save_cpu_ram=False, verbose=False)
    assert ours["precision"] == pytest.approx(theirs["precision"], abs=1e-6)  # theirs: a float32 mean
    assert ours["recall"] == pytest.approx(theirs["recall"], abs=1e-6)
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1  # the check means something


def test_density_coverage_match_prdc():
    from scipy.spatial.distance import cdist

    k = 5
    real, fake = features(300, 16, 6), features(280, 16, 7, 0.2)
    ours = precision_recall_density_coverage(real, fake, k=k)
    # prdc.compute_prdc (Naeem et al. 2020), float64
    r, f = real.double().numpy(), fake.double().numpy()
    real_radii = np.sort(cdist(r, r), axis=1)[:, k]
    real_fake = cdist(r, f)
    density = (1.0 / k) * (real_fake < real_radii[:, None]).sum(axis=0).mean()
    coverage = (real_fake.min(axis=1) < real_radii).mean()
    assert ours["density"] == pytest.approx(density, abs=1e-9)
    assert ours["coverage"] == pytest.approx(coverage, abs=1e-9)


def test_inception_score_matches_torch_fidelity():
    logits = features(1000, 50, 8, scale=3.0)
    ours, ours_std = inception_score(logits, splits=10)
    theirs = isc.isc_features_to_metric(logits, splits=10, shuffle=False)
    assert ours == pytest.approx(theirs["inception_score_mean"], rel=1e-9)
    assert ours_std == pytest.approx(theirs["inception_score_std"], rel=1e-6)
