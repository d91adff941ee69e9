"""Time FD + KID + precision/recall with the domain extractor on 10,000 vs 10,000 28x28 images.

Features are included (the domain net's forward over both sets); training the domain net is not (it is
trained once per dataset and cached). Baseline in the same process: the same metrics with scipy's
``sqrtm`` FD, the way the seed projects computed it.

    python benchmarks/eval_speed.py [--data-root ../shared/data/medmnist] [--n 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "medmnist"))
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("MEDGAN_CACHE", tempfile.mkdtemp(prefix="medgan-bench-"))

    from medgan.data import load_dataset
    from medgan.evaluation.domain import DomainExtractor
    from medgan.metrics import frechet_distance, kernel_inception_distance, precision_recall_density_coverage

    if not (Path(args.data_root) / f"{args.dataset}.npz").exists():
        print(f"{args.data_root}/{args.dataset}.npz not found: using the builtin dataset")
        args.dataset, args.data_root = "builtin", None
    train = load_dataset(args.dataset, "train", root=args.data_root)
    test = load_dataset(args.dataset, "test", root=args.data_root)
    t = time.perf_counter()
    extractor = DomainExtractor(train, test)
    print(f"domain net trained (once, then cached) in {time.perf_counter() - t:.1f} s: {extractor.info}")

    g = torch.Generator().manual_seed(0)
    a = train.uint8(torch.randint(0, len(train), (args.n,), generator=g))  # stand-ins for generated images
    b = train.uint8(torch.randint(0, len(train), (args.n,), generator=g))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.n} vs {args.n} images of {tuple(a.shape[1:])}"
    )

    timings = {}
    t = time.perf_counter()
    fa, _ = extractor(a)
    fb, _ = extractor(b)
    timings["features (both sets)"] = time.perf_counter() - t
    t = time.perf_counter()
    fd = frechet_distance(fa, fb)
    timings["FD"] = time.perf_counter() - t
    t = time.perf_counter()
    kid = kernel_inception_distance(fa, fb)
    timings["KID (100 subsets of 1000)"] = time.perf_counter() - t
    t = time.perf_counter()
    prdc = precision_recall_density_coverage(fa, fb)
    timings["precision/recall/density/coverage"] = time.perf_counter() - t
    total = sum(timings.values())

    from scipy import linalg

    t = time.perf_counter()
    x, y = fa.double().numpy(), fb.double().numpy()
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    fd_scipy = float(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    baseline_fd = time.perf_counter() - t

    for name, seconds in timings.items():
        print(f"  {name:<36} {seconds:7.3f} s")
    print(f"  {'total':<36} {total:7.3f} s   (target < 5 s)")
    print(
        f"FD {fd:.5f} (scipy sqrtm {fd_scipy:.5f}, {baseline_fd:.3f} s: "
        f"medgan's FD is {baseline_fd / timings['FD']:.1f}x faster)"
    )
    print(f"KID {kid[0]:.2e} ± {kid[1]:.1e}; PRDC {prdc}")


if __name__ == "__main__":
    main()
