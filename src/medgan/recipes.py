"""Named training recipes (``medgan train --preset NAME``), chosen per image size by measurement.

``best`` is the recipe the README recommends; the runs behind each choice are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from medgan import MedganError

# "best" at 28 px first was what won the measurements at CPU budgets (benchmarks/RESULTS.md "recipes";
# PneumoniaMNIST 2 seeds x 20 min, BreastMNIST 10 min, one thread): the plain DCGAN (batch norm, LSGAN, Adam 2e-4 (0.5,
# 0.999)) scored as well as or better than "small-data" on every metric on average (PneumoniaMNIST C2ST
# 0.861 vs 0.877, FD 13.1 vs 35.5, recall 0.83 vs 0.74). "small-data" (spectral norm, hinge, DiffAugment,
# EMA) had the single best C2ST (0.767) but varied a lot across seeds. ResNet nets were too slow on the
# CPU: 3.2 s/step at width 64 and 1.2 s/step at width 32, against 0.26 s/step for DCGAN at width 64.
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
# Then the weight average of that DCGAN's generator (EMA 0.999), in the budget of 45 minutes with bf16
# where the hardware has it (benchmarks/RESULTS.md "recipes", 3 seeds x 45 min, 2026-12-02): PneumoniaMNIST
# C2ST 0.524 +- 0.029 vs 0.731 +- 0.195 for the same runs' raw generator; BreastMNIST FD 18.1 vs 26.1, recall
# 0.75 vs 0.72 (C2ST 0.94 vs 0.93, too noisy there to rank them).
# Tried on top of it on BreastMNIST and not kept (RESULTS "recipes", second 2026-12-02 session): DiffAugment
# always on (FD 93-109 against 19 at 20 min), R1 gamma 0.1 (no change), EMA 0.9999 (within the spread).
# Kept (RESULTS "recipes", 2026-12-03): DiffAugment translation+cutout applied as often as ADA says (target
# 0.6). On BreastMNIST (546 images) D overfits and ADA settles near p = 0.25-0.3: C2ST 0.788 / 0.886 / 0.777 at 20 min
# (seeds 0-2) against 0.968 +- 0.002 without, 0.527 at 45 min (seed 1; 0.982 without), recall 0.85-0.88
# against 0.75. On PneumoniaMNIST (4,708) D does not overfit, p stays ~0 and the run is best's (C2ST 0.538).
# 3 seeds x 45 min (RESULTS, 2026-12-03 second session): BreastMNIST C2ST 0.650 +- 0.106, recall 0.872 (before
# ADA 0.941, 0.750); PneumoniaMNIST C2ST 0.538 +- 0.035, recall 0.895 (before 0.524, 0.876).
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
# At 64 px (BreastMNIST, 1 seed, 20 min, bf16, width 32) the plain DCGAN produced grainy noise (C2ST 1.000,
# recall 0.000, FD 1420) while "small-data" reached C2ST 0.989, recall 0.385, FD 163: so "best" is the
# small-data recipe from 64 px up. 128 and 224 px follow 64 px and narrower nets: not measured.
_SMALL_DATA = {
    64: {**_SMALL_DATA_28, "width": 32},
    128: {**_SMALL_DATA_28, "width": 32},
    224: {**_SMALL_DATA_28, "width": 16},
}
# Then (RESULTS "64 px", 2026-12-06: BreastMNIST 64 px, seed 0, 20 min, fp32, one thread each) small-data with its
# augmentation applied as often as ADA says (target 0.6) instead of always: recall 0.365 vs 0.071, precision 0.898
# vs 0.803, FD 98 vs 248 (C2ST 1.000 for both); the 28 px best (DCGAN + EMA + ADA, LSGAN) at 64 px: recall 0.000,
# FD 247. As at 28 px, always-on augmentation held the generator back.
_ADA = {"augment_target": 0.6}
RECIPES: dict[str, dict[int, dict]] = {
    "best": {28: _BEST_28, **{size: {**recipe, **_ADA, **_BUDGET} for size, recipe in _SMALL_DATA.items()}},
    "small-data": {28: _SMALL_DATA_28, **_SMALL_DATA},
}


def recipe(name: str, size: int) -> dict:
    """The settings of recipe ``name`` for images of ``size`` px (the nearest size it was tuned for)."""
    if name not in RECIPES:
        raise MedganError(f"unknown preset {name!r}; choose from {', '.join(RECIPES)}")
    by_size = RECIPES[name]
    nearest = min(by_size, key=lambda s: abs(s - size))
    return {**by_size[nearest], "size": size}
