"""Named training recipes (``medgan train --preset NAME``), chosen per image size by measurement.

``best`` is the recipe the README recommends; the runs behind each choice are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from medgan import MedganError

# DCGAN nets with spectral norm in D, hinge loss, DiffAugment (translation, cutout), an EMA generator,
# Adam (0, 0.9). ResNet nets were measured too expensive for a CPU budget: on the 2-core CPU at 28 px
# (1 thread, PneumoniaMNIST, 73 steps/epoch) resnet width 64 took 3.2 s/step and width 32 1.2 s/step,
# against 0.26 s/step for dcgan width 64; in an 8-minute pilot resnet-32 managed 7 epochs (C2ST 1.00),
# dcgan-64 27 epochs (C2ST 0.995). See benchmarks/RESULTS.md "recipes". Larger sizes use a narrower net.
_BEST_28 = {
    "model": "dcgan", "loss": "hinge", "width": 64, "spectral_norm": True, "augment": "translation,cutout",
    "ema": 0.999, "lr": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.9, "batch_size": 64, "epochs": 100,
}
RECIPES: dict[str, dict[int, dict]] = {
    "best": {28: _BEST_28, 64: {**_BEST_28, "width": 32}, 128: {**_BEST_28, "width": 32}, 224: {**_BEST_28, "width": 16}},
}


def recipe(name: str, size: int) -> dict:
    """The settings of recipe ``name`` for images of ``size`` px (the nearest size it was tuned for)."""
    if name not in RECIPES:
        raise MedganError(f"unknown preset {name!r}; choose from {', '.join(RECIPES)}")
    by_size = RECIPES[name]
    nearest = min(by_size, key=lambda s: abs(s - size))
    return {**by_size[nearest], "size": size}
