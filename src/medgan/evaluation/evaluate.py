"""Evaluate generated images against real ones, every metric beside its real-vs-real floor.

The floor is the same metric for real *train* images (as many as there are generated ones) in place of
the generated images: what a perfect generator, one that draws new images from the data distribution,
would score against the real test split. A metric is only read against its floor.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torchvision.utils import save_image

from medgan import MedganWarning, files
from medgan.data import ImageSet
from medgan.evaluation.c2st import c2st
from medgan.evaluation.extractors import build, metric_name
from medgan.evaluation.frd import frechet_radiomics_distance
from medgan.evaluation.inception import Unavailable
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
from medgan.metrics.catalogue import CATALOGUE, direction


def build_extractors(
    names, train: ImageSet, test: ImageSet, device="cpu", inception_weights=None, domain_steps: int | None = None
):
    """({name: extractor} of those available here, {name: info}); an unavailable one is a warning, not an error.
    ``names``: extractor specs (``domain``, ``inception``, ``efficientnet``, ``torchscript:PATH``, a registered
    name: ``medgan.evaluation.extractors``); each is reported under its metric name (``ts_<file stem>`` for a file)."""
    extractors, infos = {}, {}
    for spec in names:
        name = metric_name(spec)
        try:
            extractors[name] = build(spec, train, test, device, inception_weights, domain_steps)
        except Unavailable as e:
            warnings.warn(f"{name} metrics unavailable: {e}", MedganWarning, stacklevel=3)
            infos[name] = {"available": False, "reason": str(e)}
            continue
        infos[name] = {"available": True, **extractors[name].info}
    return extractors, infos


class Scorer:
    """Every metric of a uint8 image batch against one real ``reference`` set (its features computed once).

    ``train`` gives the real images C2ST compares with (a random half, ``real_a``; ``real_b`` is the other
    half, for the C2ST floor) and the training images near-copies are searched among; ``test``, the reference
    as an ``ImageSet``, and ``domain_steps`` are for TSTR (evaluate's, with label rows)."""

    def __init__(
        self,
        extractors: dict,
        reference: torch.Tensor,
        train: ImageSet,
        seed: int = 0,
        device="cpu",
        n_pixel: int = 1000,
        test: ImageSet | None = None,
        domain_steps: int | None = None,
    ):
        self.extractors, self.reference, self.train = extractors, reference, train
        self.seed, self.device, self.n_pixel = seed, device, n_pixel
        self.test, self.domain_steps = test, domain_steps
        self.reference_features = {name: extractor(reference)[0] for name, extractor in extractors.items()}
        halves = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        self.real_a, self.real_b = train.uint8(halves[: len(train) // 2]), train.uint8(halves[len(train) // 2 :])

    def c2st_floor(self) -> float:
        """C2ST's floor: the real train half it compares with against the other, disjoint half."""
        return c2st(self.real_a, self.real_b, seed=self.seed, device=self.device)["accuracy"]

    def ssim_best(self, images: torch.Tensor) -> float:
        return best_ssim_to_reference(images[: self.n_pixel], self.reference[:500])

    def diversity(self, images: torch.Tensor) -> float:
        return pairwise_ssim(images, seed=self.seed)

    def values(self, images: torch.Tensor) -> dict[str, float]:
        """Every metric's value for ``images`` (no floors, no optional extra), as named in ``evaluate``'s result."""
        batch = Batch(self, images)
        return {
            name: entry["value"]
            for _, computer, args in _in_order(self.extractors, optional=False)
            for name, entry in computer.value(batch, *args).items()
        }


class Batch:
    """One uint8 image batch (with label rows for TSTR) before a ``Scorer``: what several metrics share (each
    extractor's feature metrics, C2ST, the near-copy search, TSTR) is computed once, when a metric first asks."""

    def __init__(self, scorer: Scorer, images: torch.Tensor, labels: torch.Tensor | None = None):
        self.scorer, self.images, self.labels = scorer, images, labels

    @cached_property
    def features(self) -> dict[str, dict]:
        """{extractor: {fd, kid, kid_std, precision, recall, density, coverage, and is where it gives logits}}."""
        s = self.scorer
        return {name: _feature_metrics(*e(self.images), s.reference_features[name]) for name, e in s.extractors.items()}

    @cached_property
    def c2st(self) -> dict:
        s = self.scorer
        return c2st(s.real_a, self.images, seed=s.seed, device=s.device)

    @cached_property
    def copies(self) -> dict:
        s = self.scorer
        return memorisation(self.images, s.train.uint8(), s.reference)

    @cached_property
    def tstr(self) -> dict:
        s = self.scorer
        return tstr(self.images, self.labels, s.train, s.test, s.domain_steps, s.seed, s.device)


def _feature_metrics(features, logits, test_features, k: int = 5) -> dict:
    kid, kid_std = kernel_inception_distance(features, test_features)
    out = {"fd": frechet_distance(features, test_features), "kid": kid, "kid_std": kid_std}
    out.update(precision_recall_density_coverage(test_features, features, k=k))
    if logits is not None:
        out["is"] = inception_score(logits)[0]
    return out


# A metric's values for one batch: {name as in results: {"value": v, and "floor" where the same computation gives
# it, "value_std", "value_ci95"}}.
Values = dict[str, dict]


@dataclass(frozen=True)
class Computer:
    """How ``evaluate`` gets one catalogue metric, as functions of a ``Batch`` (and of the extractor's name, for a
    per-extractor metric). ``value``: its Values. ``floor``: {name: floor} on the real floor batch, a floor that
    depends only on the data (so a caller may cache it); without one, ``value`` gives the floor beside the value."""

    value: Callable[..., Values]
    floor: Callable[..., dict[str, float]] | None = None
    optional: bool = False  # needs a package (Unavailable otherwise): only in evaluate's result, not Scorer.values
    report: Callable[[Batch], dict] = lambda batch: {}  # its entries of evaluate's result beside "metrics"


def _on_features(key: str, std: str | None = None) -> Computer:
    """A metric of each extractor's features: ``_feature_metrics``'s ``key`` (with ``std`` as its value_std)."""

    def value(batch: Batch, extractor: str) -> Values:
        m = batch.features[extractor]
        return {f"{key}_{extractor}": {"value": m[key], **({"value_std": m[std]} if std else {})}} if key in m else {}

    def floor(batch: Batch, extractor: str) -> dict[str, float]:
        m = batch.features[extractor]
        return {f"{key}_{extractor}": m[key]} if key in m else {}

    return Computer(value, floor)


def _c2st(batch: Batch) -> Values:
    result = batch.c2st
    entry = {"value": result["accuracy"], "value_ci95": [result["ci95_low"], result["ci95_high"]]}
    if result.get("std") is not None:
        entry["value_std"] = result["std"]
    return {"c2st": entry}


def _tstr(batch: Batch) -> Values:
    if batch.labels is None:
        return {}
    t = batch.tstr
    return {f"tstr_{m}": {"value": t[f"tstr_{m}"], "floor": t[f"trtr_{m}"]} for m in ("auc", "acc")}


def _frd(batch: Batch) -> dict[str, float]:  # optional extra: only where frd-score (and pyradiomics) are installed
    return {"frd": frechet_radiomics_distance(batch.images[: batch.scorer.n_pixel], batch.scorer.reference)}


# Catalogue name (metrics/catalogue.py) -> how to compute it; results list the metrics in this order, the
# per-extractor ones first, grouped by extractor. Adding a metric: its catalogue entry and its line here.
METRICS: dict[str, Computer] = {
    "fd": _on_features("fd"),
    "kid": _on_features("kid", std="kid_std"),
    "precision": _on_features("precision"),
    "recall": _on_features("recall"),
    "density": _on_features("density"),
    "coverage": _on_features("coverage"),
    "is": _on_features("is"),
    "frd": Computer(lambda b: {name: {"value": v} for name, v in _frd(b).items()}, _frd, optional=True),
    "c2st": Computer(_c2st, lambda b: {"c2st": b.scorer.c2st_floor()}),
    "ssim_best": Computer(
        lambda b: {"ssim_best": {"value": b.scorer.ssim_best(b.images)}},
        lambda b: {"ssim_best": b.scorer.ssim_best(b.images)},
    ),
    "diversity_ssim": Computer(
        lambda b: {"diversity_ssim": {"value": b.scorer.diversity(b.images)}},
        lambda b: {"diversity_ssim": b.scorer.diversity(b.scorer.reference)},  # the real test split's
    ),
    "near_copies": Computer(
        lambda b: {"near_copies": {"value": b.copies["generated_fraction"], "floor": b.copies["test_fraction"]}},
        report=lambda b: {"memorisation": b.copies},
    ),
    "tstr": Computer(_tstr, report=lambda b: {"tstr": b.tstr} if b.labels is not None else {}),
}


def _in_order(extractors, optional: bool = True):
    """(catalogue name, computer, its extra arguments) of every metric in result order: the per-extractor
    metrics for each extractor in turn, then the others; without the optional extras unless ``optional``."""
    per_extractor = {m.name for m in CATALOGUE if m.per_extractor}
    for extractor in extractors:
        yield from ((name, c, (extractor,)) for name, c in METRICS.items() if name in per_extractor)
    for name, c in METRICS.items():
        if name not in per_extractor and (optional or not c.optional):
            yield name, c, ()


def _floors(scorer: Scorer, floor: torch.Tensor) -> dict[str, float]:
    """The real-vs-real floors that depend only on the data: real train images ``floor`` (as many as generated)
    scored like a generator (C2ST and diversity: as their ``floor`` functions say). An optional extra unavailable
    here has none."""
    batch, out = Batch(scorer, floor), {}
    for _, computer, args in _in_order(scorer.extractors):
        if computer.floor is not None:
            try:
                out.update(computer.floor(batch, *args))
            except Unavailable:
                pass
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
    floors: Callable[[Callable[[], dict[str, float]]], dict[str, float]] | None = None,
) -> dict:
    """All metrics for uint8 ``generated`` (N, C, H, W) against the real ``test`` split, with floors.

    With MedMNIST label rows ``labels`` for the generated images, also TSTR (floor: TRTR). ``floors``: a memo
    for a caller that evaluates again with the same splits, number of images and seed (evaluation during
    training): called with the function that computes the data-only floors, it returns them, computing them
    only when it has none kept (they would not change)."""
    start = time.time()
    if tuple(generated.shape[1:]) != train.shape:
        raise ValueError(f"generated images have shape {tuple(generated.shape[1:])}, the dataset {train.shape}")
    with torch.random.fork_rng(devices=[]):
        rng = torch.Generator().manual_seed(seed)
        floor = train.uint8(torch.randperm(len(train), generator=rng)[: len(generated)])
        real_test = test.uint8()
        metrics: dict[str, dict] = {}
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
        scorer = Scorer(built, real_test, train, seed, device, n_pixel, test=test, domain_steps=domain_steps)
        compute = lambda: _floors(scorer, floor)
        known = compute() if floors is None else floors(compute)
        batch = Batch(scorer, generated, labels)
        for name, computer, args in _in_order(built):
            try:
                values = computer.value(batch, *args)
            except Unavailable as e:  # an optional extra: said so in the result, nothing else lost
                result[name] = {"available": False, "reason": str(e)}
                continue
            for key, entry in values.items():
                metrics[key] = {"value": entry["value"], "floor": entry["floor"] if "floor" in entry else known[key]}
                metrics[key].update(entry)
            if computer.optional:
                result[name] = {"available": True}
            result.update(computer.report(batch))
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
            quality = f"test AUC {info['test_auc']:.3f} / ACC {info['test_acc']:.3f}"
            notes.append(f"domain extractor ({info['task']}): {quality}{ref_text}{trust}")
    notes.append(
        f"{result['n_generated']} generated vs {result['n_test']} real test images; "
        f"floor: {result['n_floor']} real train images"
    )
    return "\n".join(lines + [""] + notes)


def save_closest_pairs(generated: torch.Tensor, train: ImageSet, copies: dict, path) -> None:
    """PNG of the generated images closest to a training image: top row generated, bottom row train."""
    gen = generated[copies["closest_generated"]]
    real = train.uint8(torch.tensor(copies["closest_train"], dtype=torch.long))
    with files.atomic_path(path) as tmp:
        save_image(torch.cat([gen, real]).float() / 255, tmp, nrow=len(gen), padding=2, pad_value=1.0, format="png")
