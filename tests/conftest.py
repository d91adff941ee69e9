"""Shared fixtures and helpers for the medgan test suite.

Every test runs offline (``MEDGAN_OFFLINE=1``) with ``MEDGAN_CACHE`` and ``MEDGAN_DATA`` pointing at
fresh temporary folders, so no test downloads anything or writes under ``~``.

Helpers importable from test modules (``from conftest import write_medmnist, needs_shared_data``):

* ``write_medmnist(tmp_path, name, size, n, channels, **overrides)`` writes a small MedMNIST-format
  ``.npz`` and returns its folder (use it as ``root=`` / ``--data-root``).
* ``SHARED_DATA`` / ``needs_shared_data``: the real MedMNIST files of ``../shared/data`` and a skip
  marker for tests that need them.

Two tiers: ``python3 -m pytest -q -m "not slow"`` (fast: every module, a few minutes on 2 CPU cores) and
``python3 -m pytest -q`` (all, also the ``@pytest.mark.slow`` end-to-end tests). The fault-injection tests'
random moments come from ``MEDGAN_FAULT_SEED`` (default 0), shown in the report header: rerun a failure with
the same value, or try others.

Fixtures shared by several test modules: ``tiny_study`` (a small two-variant, two-seed study, not yet
run), ``finished_tiny_study`` (the same study after one ``compare``, trained once per session and put back
before each test) and ``nan_loss`` (registers a loss whose D loss is NaN; yields its name). Helpers for
fixtures that train once per module: ``offline_env`` and ``restore``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"

needs_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "medmnist").is_dir(),
    reason="../shared/data not present: real MedMNIST files are only on the project machines",
)

ARRAY_KEYS = tuple(f"{s}_{kind}" for s in ("train", "val", "test") for kind in ("images", "labels"))


def _n_labels(name: str) -> tuple[int, bool]:
    """(number of classes or labels, multi-label?) of a MedMNIST flag; (2, False) if unknown."""
    try:
        from medmnist import INFO
    except ImportError:  # pragma: no cover - medmnist is a dependency
        return 2, False
    info = INFO.get(name)
    if info is None:
        return 2, False
    return len(info["label"]), info["task"].startswith("multi-label")


def _blobs(rng: np.random.Generator, labels: np.ndarray, size: int, channels: int, n_classes: int) -> np.ndarray:
    """uint8 images: a dim noisy background and one Gaussian blob whose brightness grows with the label."""
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = rng.uniform(0.3, 0.7, (2, n, 1, 1)).astype(np.float32)
    radius = rng.uniform(0.12, 0.22, (n, 1, 1)).astype(np.float32)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    peak = 70.0 + 170.0 * labels.reshape(n, 1, 1) / max(n_classes - 1, 1)
    images = 15.0 + peak * blob + rng.normal(0.0, 6.0, (n, size, size))
    if channels == 3:  # a mild, label-independent tint so the three channels differ
        images = images[..., None] * np.array([1.0, 0.85, 0.7], dtype=np.float32)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def write_medmnist(tmp_path, name="pneumoniamnist", size=28, n=(64, 16, 16), channels=1, **overrides) -> Path:
    """Write a small MedMNIST-format ``.npz`` into folder ``tmp_path`` and return that folder.

    Arrays: ``{train,val,test}_{images,labels}``, uint8; images (N, size, size) for ``channels=1``,
    (N, size, size, 3) for ``channels=3``; labels (N, 1) (multi-label flags such as ``chestmnist``:
    (N, n_labels) of 0/1). ``n`` gives the train/val/test counts. Content is structured (one blob per
    image, brighter for higher labels) and deterministic (``seed``).

    ``overrides``:
      * an array name from the six above (or any other name) -> that array is written instead
        (``None`` drops the key);
      * ``filename=`` -> file name (default ``name.npz`` at size 28, else ``name_SIZE.npz``);
      * ``seed=`` (default 0), ``compress=`` (default True: ``np.savez_compressed``).
    """
    folder = Path(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    filename = overrides.pop("filename", None) or (f"{name}.npz" if size == 28 else f"{name}_{size}.npz")
    seed = overrides.pop("seed", 0)
    compress = overrides.pop("compress", True)
    n_classes, multi = _n_labels(name)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        if multi:
            labels = (rng.random((count, n_classes)) < 0.3).astype(np.uint8)
            strength = labels.sum(1) * (n_classes - 1) // n_classes
        else:
            labels = (np.arange(count) % n_classes).astype(np.uint8)[:, None]  # every class present
            strength = labels[:, 0]
        arrays[f"{split}_images"] = _blobs(rng, strength, size, channels, n_classes)
        arrays[f"{split}_labels"] = labels
    for key, value in overrides.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    (np.savez_compressed if compress else np.savez)(folder / filename, **arrays)
    return folder


FAULT_SEED = int(os.environ.get("MEDGAN_FAULT_SEED") or 0)


def pytest_report_header(config):
    return [
        'medgan: two tiers: -m "not slow" (fast, every module) and all tests (adds @pytest.mark.slow end-to-end ones)',
        f"medgan: MEDGAN_FAULT_SEED={FAULT_SEED} (the fault tests' random moments; set it to repeat or vary them)",
    ]


def offline_env(monkeypatch, tmp_path_factory) -> None:
    """No network, and caches/data lookups in throwaway folders (never ``~``): what every test runs with.
    Module- or session-scoped fixtures that train call it with their own ``pytest.MonkeyPatch.context()``,
    since they run before the per-test ``_offline_env``."""
    monkeypatch.setenv("MEDGAN_OFFLINE", "1")
    # C2ST's cost in tests: tests that measure C2ST itself pass steps and repeats explicitly
    monkeypatch.setenv("MEDGAN_C2ST_STEPS", "30")
    monkeypatch.setenv("MEDGAN_C2ST_REPEATS", "1")
    monkeypatch.setenv("MEDGAN_CACHE", str(tmp_path_factory.mktemp("medgan-cache")))
    monkeypatch.setenv("MEDGAN_DATA", str(tmp_path_factory.mktemp("medgan-data")))


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tmp_path_factory):
    """No network, and caches/data lookups in throwaway folders (never ``~``)."""
    offline_env(monkeypatch, tmp_path_factory)


def restore(pristine: Path, work: Path) -> Path:
    """Put folder ``work`` back exactly as ``pristine`` (a copy taken once, after training), at the same path,
    so the absolute paths that runs and studies record stay true: train once per module, damage per test."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pristine, work, symlinks=True)
    return work


@pytest.fixture
def cache_dir():
    """The ``MEDGAN_CACHE`` folder of the current test."""
    import os

    return Path(os.environ["MEDGAN_CACHE"])


@pytest.fixture
def medmnist_root(tmp_path):
    """Folder holding a default small ``pneumoniamnist.npz`` (64/16/16 images of 28x28)."""
    return write_medmnist(tmp_path / "medmnist")


def _tiny_study(folder: Path, monkeypatch, write: bool = True):
    from medgan.study.compare import Study

    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "20")
    root = write_medmnist(folder / "data", n=(128, 16, 64)) if write else folder / "data"
    train = {"data_root": str(root), "epochs": 1, "batch_size": 32, "eval_samples": 64}
    return Study(
        dataset="pneumoniamnist",
        models=["mlp"],
        losses=["lsgan", "hinge"],
        seeds=2,
        train=train,
        out=str(folder / "study"),
    )


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    """A two-variant (mlp x lsgan/hinge), two-seed study of one epoch on a small written pneumoniamnist."""
    return _tiny_study(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def _trained_tiny_study(tmp_path_factory):
    """``tiny_study`` after one ``compare``, done once per session, and a pristine copy of its folder."""
    from medgan.study.compare import compare

    base = tmp_path_factory.mktemp("finished-tiny-study")
    with pytest.MonkeyPatch.context() as mp:
        offline_env(mp, tmp_path_factory)
        mp.setenv("MEDGAN_CACHE", str(base / "work" / "cache"))
        compare(_tiny_study(base / "work", mp))
    shutil.copytree(base / "work", base / "pristine", symlinks=True)
    return base / "work", base / "pristine"


@pytest.fixture
def finished_tiny_study(_trained_tiny_study, monkeypatch):
    """``tiny_study`` as one ``compare`` of it left it (its folder, data and cache put back at the same paths):
    for tests that read a finished study rather than test training it."""
    work, pristine = _trained_tiny_study
    restore(pristine, work)
    monkeypatch.setenv("MEDGAN_CACHE", str(work / "cache"))
    return _tiny_study(work, monkeypatch, write=False)


@pytest.fixture
def nan_loss():
    """A loss "test-nan" whose D loss is NaN at the first step, registered for the test."""
    from medgan.losses import LOSSES, GANLoss, register

    @register("test-nan")
    class NaNLoss(GANLoss):
        def d_from_scores(self, real_out, fake_out):
            return (real_out * float("nan")).mean()

        def g_loss(self, fake_out):
            return fake_out.mean()

    yield "test-nan"
    LOSSES.pop("test-nan")
