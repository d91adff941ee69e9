"""Evaluate generated images against real ones, every metric beside its real-vs-real floor.

The floor is the same metric for real *train* images (as many as there are generated ones) in place of
the generated images: what a perfect generator, one that draws new images from the data distribution,
would score against the real test split. A metric is only read against its floor.
"""

from __future__ import annotations

import time
import warnings

import torch
from torchvision.utils import save_image

from medgan import MedganWarning, files
from medgan.data import ImageSet
from medgan.evaluation.c2st import c2st
from medgan.evaluation.domain import DomainExtractor
from medgan.evaluation.frd import frechet_radiomics_distance
from medgan.evaluation.inception import InceptionExtractor, Unavailable
from medgan.evaluation.tstr import tstr
from medgan.metrics import (
    best_ssim_to_reference,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    memorisation,
    pairwise_ssim,
    precision_recall_density_coverage,
)
from medgan.metrics.catalogue import direction

# extractor name -> builder(train, test, device, inception_weights, domain_steps)
BUILDERS = {
    "domain": lambda train, test, device, weights, steps: DomainExtractor(train, test, steps=steps, device=device),
    "inception": lambda train, test, device, weights, steps: InceptionExtractor(weights, device=device),
}


def build_extractor(
    name: str, train: ImageSet, test: ImageSet, device="cpu", inception_weights=None, domain_steps: int | None = None
):
    if name not in BUILDERS:
        raise ValueError(f"unknown extractor {name!r}; choose from {', '.join(BUILDERS)}")
    return BUILDERS[name](train, test, device, inception_weights, domain_steps)


def _feature_metrics(features, logits, test_features, k: int = 5) -> dict:
    kid, kid_std = kernel_inception_distance(features, test_features)
    out = {"fd": frechet_distance(features, test_features), "kid": kid, "kid_std": kid_std}
    out.update(precision_recall_density_coverage(test_features, features, k=k))
    if logits is not None:
        out["is"] = inception_score(logits)[0]
    return out


def build_extractors(
    names, train: ImageSet, test: ImageSet, device="cpu", inception_weights=None, domain_steps: int | None = None
):
    """({name: extractor} of those available here, {name: info}); an unavailable one is a warning, not an error."""
    extractors, infos = {}, {}
    for name in names:
        try:
            extractors[name] = build_extractor(name, train, test, device, inception_weights, domain_steps)
        except Unavailable as e:
            warnings.warn(f"{name} metrics unavailable: {e}", MedganWarning, stacklevel=3)
            infos[name] = {"available": False, "reason": str(e)}
            continue
        infos[name] = {"available": True, **extractors[name].info}
    return extractors, infos


class Scorer:
    """Every metric of a uint8 image batch against one real ``reference`` set (its features computed once).

    ``train`` gives the real images C2ST compares with (a random half, ``real_a``; ``real_b`` is the other
    half, for the C2ST floor) and the training images near-copies are searched among."""

    def __init__(
        self,
        extractors: dict,
        reference: torch.Tensor,
        train: ImageSet,
        seed: int = 0,
        device="cpu",
        n_pixel: int = 1000,
    ):
        self.extractors, self.reference, self.train = extractors, reference, train
        self.seed, self.device, self.n_pixel = seed, device, n_pixel
        self.reference_features = {name: extractor(reference)[0] for name, extractor in extractors.items()}
        halves = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        self.real_a, self.real_b = train.uint8(halves[: len(train) // 2]), train.uint8(halves[len(train) // 2 :])

    def features(self, images: torch.Tensor) -> dict:
        """``{metric}_{extractor}``: FD, KID (and ``kid_std``), PRDC and IS on each extractor's features."""
        out = {}
        for name, extractor in self.extractors.items():
            out.update(
                {
                    f"{key}_{name}": v
                    for key, v in _feature_metrics(*extractor(images), self.reference_features[name]).items()
                }
            )
        return out

    def c2st(self, images: torch.Tensor) -> dict:
        return c2st(self.real_a, images, seed=self.seed, device=self.device)

    def ssim_best(self, images: torch.Tensor) -> float:
        return best_ssim_to_reference(images[: self.n_pixel], self.reference[:500])

    def diversity(self, images: torch.Tensor) -> float:
        return pairwise_ssim(images, seed=self.seed)

    def copies(self, images: torch.Tensor) -> dict:
        return memorisation(images, self.train.uint8(), self.reference)

    def values(self, images: torch.Tensor) -> dict[str, float]:
        """Every metric's value for ``images`` (no floors), as named in ``evaluate``'s result."""
        out = {k: v for k, v in self.features(images).items() if not k.startswith("kid_std")}
        out["c2st"] = self.c2st(images)["accuracy"]
        out["ssim_best"], out["diversity_ssim"] = self.ssim_best(images), self.diversity(images)
        out["near_copies"] = self.copies(images)["generated_fraction"]
        return out


def _floors(scorer: Scorer, floor: torch.Tensor, real_test: torch.Tensor) -> dict[str, float]:
    """The real-vs-real floors: real train images ``floor`` (as many as generated) scored like a generator;
    C2ST's: the real train half it compares with against the other, disjoint half; diversity: the test split's."""
    out = {k: v for k, v in scorer.features(floor).items() if not k.startswith("kid_std")}
    out["c2st"] = scorer.c2st(scorer.real_b)["accuracy"]
    out["ssim_best"], out["diversity_ssim"] = scorer.ssim_best(floor), scorer.diversity(real_test)
    return out


def evaluate(
    generated: torch.Tensor,
    train: ImageSet,
    test: ImageSet,
    extractors=("domain",),
    device="cpu",
    inception_weights=None,
    domain_steps: int | None = None,
    n_pixel: int = 1000,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    floors: dict | None = None,
) -> dict:
    """All metrics for uint8 ``generated`` (N, C, H, W) against the real ``test`` split, with floors.

    With MedMNIST label rows ``labels`` for the generated images, also TSTR (floor: TRTR). ``floors``: a dict
    kept by a caller that evaluates again with the same splits, number of images and seed (evaluation during
    training): the real-vs-real floors are computed into it once and read from it after (they would not change)."""
    start = time.time()
    if tuple(generated.shape[1:]) != train.shape:
        raise ValueError(f"generated images have shape {tuple(generated.shape[1:])}, the dataset {train.shape}")
    floors = {} if floors is None else floors
    with torch.random.fork_rng(devices=[]):
        rng = torch.Generator().manual_seed(seed)
        floor = train.uint8(torch.randperm(len(train), generator=rng)[: len(generated)])
        real_test = test.uint8()
        metrics: dict[str, dict] = {}

        def put(name, value, floor_value):
            metrics[name] = {"value": value, "floor": floor_value}

        built, infos = build_extractors(extractors, train, test, device, inception_weights, domain_steps)
        result = {
            "dataset": train.name,
            "shape": list(train.shape),
            "n_generated": len(generated),
            "n_test": len(real_test),
            "n_floor": len(floor),
            "extractors": infos,
            "metrics": metrics,
        }
        scorer = Scorer(built, real_test, train, seed, device, n_pixel)
        if not floors:
            floors.update(_floors(scorer, floor, real_test))
        gen = scorer.features(generated)
        for key in gen:
            if not key.startswith("kid_std"):
                put(key, gen[key], floors[key])
        for name in built:
            metrics[f"kid_{name}"]["value_std"] = gen[f"kid_std_{name}"]

        try:  # optional extra: computed only where frd-score (and pyradiomics) are installed
            put(
                "frd",
                frechet_radiomics_distance(generated[:n_pixel], real_test),
                frechet_radiomics_distance(floor[:n_pixel], real_test),
            )
            result["frd"] = {"available": True}
        except Unavailable as e:
            result["frd"] = {"available": False, "reason": str(e)}

        value = scorer.c2st(generated)
        put("c2st", value["accuracy"], floors["c2st"])
        metrics["c2st"]["value_ci95"] = [value["ci95_low"], value["ci95_high"]]

        put("ssim_best", scorer.ssim_best(generated), floors["ssim_best"])
        put("diversity_ssim", scorer.diversity(generated), floors["diversity_ssim"])
        copies = scorer.copies(generated)
        put("near_copies", copies["generated_fraction"], copies["test_fraction"])
        result["memorisation"] = copies
        if labels is not None:
            result["tstr"] = tstr(generated, labels, train, test, domain_steps, seed, device)
            for metric in ("auc", "acc"):
                put(f"tstr_{metric}", result["tstr"][f"tstr_{metric}"], result["tstr"][f"trtr_{metric}"])
    result["seconds"] = time.time() - start
    return result


def format_table(result: dict) -> str:
    """The metrics as a plain-text table: metric, generated, real floor, which way is better."""
    rows = [("metric", "generated", "real floor", "better")]
    for name, m in result["metrics"].items():
        value = f"{m['value']:.4g}" + (f" ± {m['value_std']:.2g}" if "value_std" in m else "")
        value += f" [{m['value_ci95'][0]:.3f}, {m['value_ci95'][1]:.3f}]" if "value_ci95" in m else ""
        rows.append((name, value, f"{m['floor']:.4g}", direction(name)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = []
    for name, info in result["extractors"].items():
        if not info.get("available"):
            notes.append(f"{name}: unavailable — {info['reason']}")
        elif name == "domain":
            ref = info.get("reference_resnet18_28")
            ref_text = f" (MedMNIST v2 ResNet-18 at 28 px: AUC {ref['auc']:.3f} / ACC {ref['acc']:.3f})" if ref else ""
            trust = (
                "" if info["trustworthy"] else "  NOT TRUSTWORTHY: far below the reference; read its metrics with care"
            )
            notes.append(
                f"domain extractor ({info['task']}): test AUC {info['test_auc']:.3f} / ACC {info['test_acc']:.3f}{ref_text}{trust}"
            )
    notes.append(
        f"{result['n_generated']} generated vs {result['n_test']} real test images; floor: {result['n_floor']} real train images"
    )
    return "\n".join(lines + [""] + notes)


def save_closest_pairs(generated: torch.Tensor, train: ImageSet, copies: dict, path) -> None:
    """PNG of the generated images closest to a training image: top row generated, bottom row train."""
    gen = generated[copies["closest_generated"]]
    real = train.uint8(torch.tensor(copies["closest_train"], dtype=torch.long))
    with files.atomic_path(path) as tmp:
        save_image(torch.cat([gen, real]).float() / 255, tmp, nrow=len(gen), padding=2, pad_value=1.0, format="png")
