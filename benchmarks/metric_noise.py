"""How noisy are the metrics? Their spread across sample draws of one "generator", and across domain-extractor seeds.

For each n in ``--ns`` and each of ``--draws`` draws, the images are scored against the real test split as
``evaluate`` scores them (``evaluate.Scorer``: FD, KID, precision, recall, density, coverage on the domain
extractor's features; ssim_best, diversity_ssim, near_copies), and per metric the mean, std and max-min over the
draws are printed. Generator stand-ins (``--sources``):

* ``run``: a trained medgan run (``--run DIR``); draw d = ``sample.generate(generator, n, seed=d)``. Realistic
  values, and n is not limited by the data.
* ``real``: real train images drawn with replacement, each shifted by a random -2..2 px in x and y (edge pixels
  repeated) and given fresh Gaussian pixel noise (``--noise`` grey levels of std): a stand-in for a generator whose
  images are as good as the real ones, at any n (PneumoniaMNIST's train split has 4,708 images).

With ``--extractor-seeds`` the first draw at the first n is also scored with domain extractors trained with other
seeds (same data, steps and input size), beside the floor (real train images) for each: the spread of a metric
that comes from the ruler itself.

    OMP_NUM_THREADS=1 python benchmarks/metric_noise.py --dataset pneumoniamnist --data-root ../shared/data/medmnist \
        --run /tmp/gen --sources run,real --ns 2000,10000 --draws 5 --extractor-seeds 0,1,2 --out noise.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from medgan import data
from medgan.evaluation import domain
from medgan.evaluation.evaluate import Scorer

METRICS = (
    "fd_domain",
    "kid_domain",
    "precision_domain",
    "recall_domain",
    "density_domain",
    "coverage_domain",
    "ssim_best",
    "diversity_ssim",
    "near_copies",
)


class SeededExtractor:
    """The domain extractor trained with another seed (same data, steps, input size as medgan's)."""

    name = "domain"

    def __init__(self, train, test, seed: int):
        if seed == 0:  # medgan's own (cached under $MEDGAN_CACHE)
            net, self.info = domain.load_or_train(train, test, verbose=False)
        else:
            net, self.info = domain.train_domain_net(train, test, seed=seed)
        self.net = net.for_inference()
        self.has_class_logits = self.info["task"] == "multi-class"

    def __call__(self, images):
        features, logits = domain._predict(self.net, images)
        return features, logits if self.has_class_logits else None


def feature_metrics(scorer: Scorer, images: torch.Tensor) -> dict[str, float]:
    """``{metric}_{extractor}`` as ``evaluate`` names them (``Scorer.features`` before evaluate.py's ``Batch``)."""
    if hasattr(scorer, "features"):
        return scorer.features(images)
    from medgan.evaluation.evaluate import Batch

    return {f"{k}_{name}": v for name, d in Batch(scorer, images).features.items() for k, v in d.items()}


def near_copies(scorer: Scorer, images: torch.Tensor) -> float:
    if hasattr(scorer, "copies"):
        return scorer.copies(images)["generated_fraction"]
    from medgan.evaluation.evaluate import Batch

    return Batch(scorer, images).copies["generated_fraction"]


def score(scorer: Scorer, images: torch.Tensor) -> dict[str, float]:
    """The metrics of METRICS for ``images``, as ``evaluate`` computes them (C2ST left out)."""
    out = {k: v for k, v in feature_metrics(scorer, images).items() if k in METRICS}
    out["ssim_best"], out["diversity_ssim"] = scorer.ssim_best(images), scorer.diversity(images)
    out["near_copies"] = near_copies(scorer, images)
    return out


def draw(source: str, n: int, d: int, train, generator, noise: float) -> torch.Tensor:
    if source == "run":
        from medgan.sample import generate

        return generate(generator, n, seed=1000 + d)
    rng = torch.Generator().manual_seed(1000 + d)
    images = train.uint8(torch.randint(0, len(train), (n,), generator=rng)).float()
    size = images.shape[-1]
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    dy, dx = torch.randint(0, 5, (2, n), generator=rng)
    rows = (dy.view(n, 1) + torch.arange(size)).view(n, 1, size, 1).expand(n, images.shape[1], size, size + 4)
    images = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(size)).view(n, 1, 1, size).expand(n, images.shape[1], size, size)
    images = images.gather(3, cols)
    images += noise * torch.randn(images.shape, generator=rng)
    return images.round().clamp(0, 255).to(torch.uint8)


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "range": max(values) - min(values),
    }


def table(title: str, rows: dict[str, dict[str, float]]) -> str:
    lines = [f"{title}", "| metric | mean | std | max-min |", "|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(f"| {name} | {s['mean']:.4g} | {s['std']:.3g} | {s['range']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="pneumoniamnist")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--data-root", default="../shared/data/medmnist")
    parser.add_argument("--run", default=None, help="a trained medgan run directory (for --sources run)")
    parser.add_argument("--sources", default="run,real")
    parser.add_argument("--ns", default="2000,10000")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--noise", type=float, default=3.0, help="real: std of the added pixel noise (grey levels)")
    parser.add_argument("--extractor-seeds", default="", help="e.g. 0,1,2 (0 = medgan's own extractor)")
    parser.add_argument("--out", default=None, help="write every value as JSON here")
    args = parser.parse_args()

    train = data.load_dataset(args.dataset, "train", args.size, 1, args.data_root)
    test = data.load_dataset(args.dataset, "test", args.size, 1, args.data_root)
    generator = None
    if "run" in args.sources:
        from medgan.rundir import load_run

        generator, _ = load_run(args.run, "cpu")
    reference = test.uint8()
    extractor = SeededExtractor(train, test, 0)
    print(f"domain extractor: test AUC {extractor.info['test_auc']:.3f} / ACC {extractor.info['test_acc']:.3f}")
    scorer = Scorer({"domain": extractor}, reference, train, 0, "cpu", 200)
    results: dict = {"draws": {}, "extractor_seeds": {}}
    first = None
    for source in args.sources.split(","):
        for n in [int(v) for v in args.ns.split(",")]:
            key = f"{source} n={n}"
            if key in results["draws"]:
                continue
            values = []
            for d in range(args.draws):
                start = time.perf_counter()
                images = draw(source, n, d, train, generator, args.noise)
                first = first if first is not None else (source, images)
                values.append(score(scorer, images))
                print(f"{key} draw {d}: {time.perf_counter() - start:.1f} s {json.dumps(values[-1])}", flush=True)
            results["draws"][key] = values
            print(
                table(f"\n{key}, {args.draws} draws", {m: spread([v[m] for v in values]) for m in METRICS}), flush=True
            )
    if args.extractor_seeds:
        source, images = first
        rng = torch.Generator().manual_seed(0)
        floor = train.uint8(torch.randperm(len(train), generator=rng)[: len(images)])
        for seed in [int(s) for s in args.extractor_seeds.split(",")]:
            start = time.perf_counter()
            seeded = SeededExtractor(train, test, seed)
            s = Scorer({"domain": seeded}, reference, train, 0, "cpu", 200)
            results["extractor_seeds"][seed] = {
                "info": seeded.info,
                "value": feature_metrics(s, images),
                "floor": feature_metrics(s, floor),
            }
            print(
                f"extractor seed {seed}: {time.perf_counter() - start:.1f} s, AUC {seeded.info['test_auc']:.3f}",
                flush=True,
            )
        on_features = [m for m in METRICS if m.endswith("_domain")]
        for part in ("value", "floor"):
            rows = {m: spread([r[part][m] for r in results["extractor_seeds"].values()]) for m in on_features}
            print(table(f"\n{part} ({source}, n={len(images)}) over extractor seeds {args.extractor_seeds}", rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, default=float)


if __name__ == "__main__":
    main()
