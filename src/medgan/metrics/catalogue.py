"""The metric catalogue: what each metric means, which way is better, and where it may be used.

Every consumer reads this one table: ``evaluate`` (which metrics are per extractor), config checking (``--keep-best``),
metric validation, study aggregation (separations, ranking) and the reports (columns, in table order).
Adding a metric = one entry here plus, under the same name, how to compute its value and floor in
``evaluation/evaluate.py``'s ``METRICS`` (that layer trains classifiers; this one stays declarative), which
``evaluate``, metric validation and the evaluation during training all iterate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXTRACTORS = ("domain", "inception")
# Which way is better: lower, higher, or nearest a target (1, 0.5, or the metric's real-vs-real floor).
TARGETS = {"~1": 1.0, "-> 0.5": 0.5}


@dataclass(frozen=True)
class Metric:
    name: str  # as in results; a per-extractor metric is reported as NAME_EXTRACTOR (fd_domain)
    description: str
    better: str  # "lower", "higher", "~1", "-> 0.5" or "~floor"
    per_extractor: bool = False
    keep_best: bool = False  # --keep-best may select checkpoints on it (the domain extractor's, in training)
    in_study: bool = False  # a column of study reports, tested for separated differences
    not_validated: str = ""  # why metric validation does not apply to it

    def names(self, extractors=EXTRACTORS) -> list[str]:
        return [f"{self.name}_{e}" for e in extractors] if self.per_extractor else [self.name]


CATALOGUE = [
    Metric(
        "c2st", "classifier two-sample test accuracy (0.5 = indistinguishable)", "-> 0.5", keep_best=True, in_study=True
    ),
    Metric("fd", "Frechet distance", "lower", per_extractor=True, keep_best=True, in_study=True),
    Metric("kid", "kernel distance (KID)", "lower", per_extractor=True, keep_best=True, in_study=True),
    Metric("precision", "precision (k=5)", "higher", per_extractor=True, keep_best=True, in_study=True),
    Metric("recall", "recall (k=5)", "higher", per_extractor=True, keep_best=True, in_study=True),
    Metric("coverage", "coverage (k=5)", "higher", per_extractor=True, keep_best=True, in_study=True),
    Metric("density", "density (k=5)", "~1", per_extractor=True),
    Metric("is", "Inception-style score on classifier logits", "~floor", per_extractor=True),
    Metric("diversity_ssim", "mean SSIM of random pairs (high = mode collapse)", "~floor", in_study=True),
    Metric("ssim_best", "best SSIM to a real test image (seed 004)", "~floor"),
    Metric(
        "near_copies",
        "fraction of near-copies of training images",
        "lower",
        in_study=True,
        not_validated="measures memorisation of training images, which no disturbance of test images changes",
    ),
    Metric(
        "tstr",
        "train-on-synthetic, test-on-real classifier AUC/ACC (floor: trained on as many real images)",
        "higher",
        in_study=True,
    ),
    Metric("frd", "Frechet radiomics distance (frd-score)", "lower"),
]
_BY_NAME = {m.name: m for m in CATALOGUE}
KEEP_BEST = [n for m in CATALOGUE if m.keep_best for n in m.names(("domain",))]
NOT_VALIDATED = {m.name: m.not_validated for m in CATALOGUE if m.not_validated}


def lookup(metric: str) -> Metric | None:
    """The entry of a metric named like evaluate's results (``fd_domain``, ``tstr_auc``): the longest
    catalogue name it starts with; None if none."""
    found = [m for m in CATALOGUE if metric == m.name or metric.startswith(m.name + "_")]
    return max(found, key=lambda m: len(m.name)) if found else None


def direction(metric: str) -> str:
    """Which way is better (``fd_domain`` -> ``lower``); "" if unknown."""
    entry = lookup(metric)
    return entry.better if entry else ""


def badness(metric: str, value: float, floor: float = math.nan) -> float:
    """How far ``value`` is from good in the metric's own units, larger = worse: the value itself
    (lower is better), its negative (higher), or its distance to 1, 0.5 or the real-vs-real ``floor``."""
    way = direction(metric)
    if way == "lower":
        return value
    if way == "higher":
        return -value
    if way in TARGETS or way == "~floor":
        return abs(value - TARGETS.get(way, floor))
    raise ValueError(f"no direction known for metric {metric!r}; add it to the catalogue (medgan/metrics/catalogue.py)")


def study_columns(present) -> list[str]:
    """The metrics a study report shows as columns, in catalogue order, of those ``present``."""
    present = set(present)
    ordered = []
    for entry in (m for m in CATALOGUE if m.in_study):
        ordered += sorted(n for n in present if lookup(n) is entry)
    return ordered


def separable(metric: str) -> bool:
    """Whether a study can say one variant beats another on ``metric`` from intervals alone (no floor needed)."""
    entry = lookup(metric)
    return bool(entry and entry.in_study and entry.better != "~floor")
