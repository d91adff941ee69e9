"""Named training recipes (``medgan train --recipe NAME``), chosen per image size by measurement.

``best`` is the recipe the README recommends; the runs behind each choice are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from medgan import MedganError

# The plain DCGAN, chosen by measurement: benchmarks/RESULTS.md "recipes", "Earlier runs" (ResNet too slow there).
_DCGAN_28 = {
    "model": "dcgan",
    "loss": "lsgan",
    "width": 64,
    "lr": 2e-4,
    "beta1": 0.5,
    "beta2": 0.999,
    "batch_size": 64,
    "epochs": 100,
}
# best at 28 px: that DCGAN + EMA 0.999 + ADA-driven DiffAugment, in a 45-minute budget; chosen by measurement
# (and DiffAugment always on, R1 and EMA 0.9999 tried and not kept): benchmarks/RESULTS.md "recipes".
_BUDGET = {"precision": "auto", "max_minutes": 45.0, "epochs": 10000}
_BEST_28 = {**_DCGAN_28, "ema": 0.999, "augment": "translation,cutout", "augment_target": 0.6, **_BUDGET}
_SMALL_DATA_28 = {
    "model": "dcgan",
    "loss": "hinge",
    "width": 64,
    "spectral_norm": True,
    "augment": "translation,cutout",
    "ema": 0.999,
    "lr": 2e-4,
    "lr_d": 2e-4,
    "beta1": 0.0,
    "beta2": 0.9,
    "batch_size": 64,
    "epochs": 100,
}
# From 64 px up best is small-data (the plain DCGAN made noise there), chosen by measurement: benchmarks/RESULTS.md
# "recipes", "64 px". 128 and 224 px follow 64 px with narrower nets: not measured.
_SMALL_DATA = {
    64: {**_SMALL_DATA_28, "width": 32},
    128: {**_SMALL_DATA_28, "width": 32},
    224: {**_SMALL_DATA_28, "width": 16},
}
# ... with ADA, not always-on augmentation: benchmarks/RESULTS.md "recipes", "64 px on the fp32 VM".
_ADA = {"augment_target": 0.6}
RECIPES: dict[str, dict[int, dict]] = {
    "best": {28: _BEST_28, **{size: {**recipe, **_ADA, **_BUDGET} for size, recipe in _SMALL_DATA.items()}},
    "small-data": {28: _SMALL_DATA_28, **_SMALL_DATA},
}


def recipe(name: str, size: int) -> dict:
    """The settings of recipe ``name`` for images of ``size`` px (the nearest size it was tuned for)."""
    if name not in RECIPES:
        raise MedganError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    by_size = RECIPES[name]
    nearest = min(by_size, key=lambda s: abs(s - size))
    return {**by_size[nearest], "size": size}
