"""medgan from Python (a notebook or a script): train, load, sample, show, evaluate and compare in a few lines.

    from medgan import api
    run = api.train(dataset="builtin", model="dcgan", epochs=2, out="runs/demo")
    run.grid()                          # the samples as one picture (shown inline in Jupyter)
    scores = run.evaluate(n=500)        # every metric beside its real-vs-real floor (a table in Jupyter)
    study = api.compare(models=["mlp", "dcgan"], seeds=2, epochs=1, dataset="builtin", out="study")

Import it as ``from medgan import api`` (or the names: ``from medgan.api import train, load, evaluate, compare``).
The commands are thin users of these functions: ``medgan train`` is ``train``, ``medgan sample`` is ``Run.sample``,
``medgan evaluate`` is ``evaluate``, ``medgan compare`` is ``compare``. Progress bars are tqdm's ``auto`` ones, which
draw as widgets in Jupyter.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from medgan import MedganError
from medgan import data as datasets
from medgan.config import TrainConfig, from_dict, layered, read_values
from medgan.data import ImageSet
from medgan.data.folder import load_folder
from medgan.data.imageset import convert_channels
from medgan.device import resolve_device
from medgan.evaluation.evaluate import evaluate as evaluate_images
from medgan.evaluation.evaluate import format_table
from medgan.metrics.catalogue import direction
from medgan.packed import Pack
from medgan.recipes import recipe as recipe_settings
from medgan.rundir import RunDir, config_for_resume, default_run_dir, load_run
from medgan.sample import generate_for_config
from medgan.study.compare import compare as compare_study
from medgan.study.compare import load_study_file, study_from_args
from medgan.train import Trainer


def config(recipe: str | None = None, file: str | Path | None = None, **settings) -> TrainConfig:
    """A checked training config: a ``recipe`` (``medgan.recipes``) < a TOML ``file`` < keyword ``settings``."""
    values = read_values(file) if file else {}
    # The recipe depends on the image size, known only from the other two.
    start = recipe_settings(recipe, layered(values, settings).get("size", TrainConfig.size)) if recipe else {}
    if values:
        try:
            from_dict(layered(start, values))
        except MedganError as e:
            raise MedganError(f"{file}: {e}") from None
    return from_dict(layered(start, values, settings))


def train(
    recipe: str | None = None,
    config_file: str | Path | None = None,
    resume: bool = False,
    data: ImageSet | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    **settings,
) -> Run | list[Run]:
    """Train a run (or, with ``resume``, continue the one in ``out``) and return it. ``settings`` are config keys
    (``dataset="pneumoniamnist", model="dcgan", epochs=5, out="runs/x"``); ``seed=[0, 1, 2]`` trains one run per
    seed as one pack (into OUT/s0, OUT/s1, ...) and returns them all."""
    seeds = settings.pop("seed", None)
    if isinstance(seeds, (list, tuple)):
        return _train_pack(recipe, config_file, resume, data, progress, tensorboard, [int(s) for s in seeds], settings)
    if seeds is not None:
        settings["seed"] = seeds
    cfg = config(recipe, config_file, **settings)
    if resume:
        cfg = config_for_resume(cfg.out or default_run_dir(cfg), {k: getattr(cfg, k) for k in settings})
    trainer = Trainer(cfg, data=data, progress=progress, tensorboard=tensorboard)
    trainer.fit(resume=resume)
    return Run(trainer.out, interrupted=trainer.stop_requested)


def _train_pack(recipe, config_file, resume, data, progress, tensorboard, seeds, settings) -> list[Run]:
    if len(set(seeds)) != len(seeds) or not seeds:
        raise MedganError(f"seed takes distinct seeds, got {seeds}")
    cfg = config(recipe, config_file, **settings)
    cfgs = [cfg.replace(seed=s, out=str(Path(cfg.out) / f"s{s}") if cfg.out else "") for s in seeds]
    if resume:
        cfgs = [
            config_for_resume(c.out or default_run_dir(c), {k: getattr(c, k) for k in settings if k != "out"})
            for c in cfgs
        ]
    pack = Pack(cfgs, data=data, progress=progress, tensorboard=tensorboard)
    outs = pack.fit(resume=resume)
    return [Run(out, interrupted=m.stop_requested) for out, m in zip(outs, pack.members)]


class Run:
    """A run folder: its config, what it logged, and images from its generator."""

    def __init__(self, path: str | Path, interrupted: bool = False):
        self.path, self.folder = Path(path), RunDir(path)
        if not self.folder.is_run():
            raise MedganError(f"{self.path} is not a medgan run directory (no config.toml in it)")
        self.interrupted = interrupted  # stopped by a signal before its end (resume it with train(..., resume=True))
        self._generators: dict = {}

    @property
    def config(self) -> TrainConfig:
        return self.folder.read_config()

    def log(self, kind: str | None = "eval") -> list[dict]:
        """The run's metrics.jsonl records of one ``kind``: "eval" (evaluations during training), "epoch", "select"
        (``keep_best``'s evaluations on the validation split), or None for all (the step records too)."""
        return self.folder.read_records(kind)

    def generator(self, checkpoint: str = "auto", device: str = "cpu") -> torch.nn.Module:
        """The run's generator (its weight average when it has one), in eval mode; loaded once per checkpoint."""
        key = (checkpoint, str(resolve_device(device)))
        if key not in self._generators:
            self._generators[key] = load_run(self.path, device, checkpoint)[0]
        return self._generators[key]

    def sample(
        self, n: int = 64, seed: int = 0, labels: str = "balanced", checkpoint: str = "auto", device: str = "cpu"
    ) -> torch.Tensor:
        """``n`` generated images as uint8 (n, C, H, W) on the CPU, the same for the same ``seed``."""
        return self.sample_with_labels(n, seed, labels, checkpoint, device)[0]

    def sample_with_labels(self, n=64, seed=0, labels="balanced", checkpoint="auto", device="cpu"):
        """(images, MedMNIST label rows or None): labels for conditional runs (``labels``: balanced or as-train)."""
        if n < 1:
            raise MedganError(f"n must be >= 1, got {n}")
        return generate_for_config(self.generator(checkpoint, device), self.config, n, seed, labels)

    def grid(self, n: int = 64, seed: int = 0, checkpoint: str = "auto") -> Image.Image:
        """``n`` samples as one picture (Jupyter shows it inline)."""
        return to_picture(self.sample(n, seed, checkpoint=checkpoint))

    def evaluate(self, n: int = 2000, **options) -> Scores:
        """Every metric of ``n`` samples against the run's dataset, beside its floor (``evaluate``'s options)."""
        return evaluate(self, n=n, **options)

    def __repr__(self) -> str:
        cfg = self.config
        return f"Run({str(self.path)!r}: {cfg.model}-{cfg.loss} on {cfg.dataset} {cfg.size} px, seed {cfg.seed})"


def load(path: str | Path) -> Run:
    """An existing run folder."""
    return Run(path)


def to_picture(images: torch.Tensor, columns: int | None = None) -> Image.Image:
    """uint8 (N, C, H, W) images as one grid picture."""
    columns = columns or max(1, int(math.sqrt(len(images))))
    grid = make_grid(images.float() / 255, nrow=columns, padding=2)
    array = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if images.shape[1] == 1 else array)


class Scores(dict):
    """``medgan evaluate``'s result (metrics.json) as a dict; a table with every metric beside its floor in Jupyter
    (``_repr_html_``) and as text (``str``). ``images``: the images scored; ``train``: the real train split."""

    def __init__(self, result: dict, images: torch.Tensor, train: ImageSet):
        super().__init__(result)
        self.images, self.train = images, train

    def rows(self) -> list[dict]:
        return [
            {"metric": name, "value": m["value"], "floor": m["floor"], "better": direction(name)}
            for name, m in self["metrics"].items()
        ]

    def __str__(self) -> str:
        return format_table(self)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td>{r['metric']}</td><td>{r['value']:.4g}</td><td>{r['floor']:.4g}</td><td>{r['better']}</td></tr>"
            for r in self.rows()
        )
        head = "<tr><th>metric</th><th>generated</th><th>real floor</th><th>better</th></tr>"
        return (
            f"<table>{head}{cells}</table><p>{self['n_generated']} generated vs {self['n_test']} real test images</p>"
        )


def evaluate(
    source,
    dataset: str | None = None,
    n: int = 10000,
    extractors=("domain",),
    size: int | None = None,
    channels: int | None = None,
    data_root: str | None = None,
    seed: int = 0,
    device: str = "auto",
    checkpoint: str = "auto",
    inception_weights: str | None = None,
) -> Scores:
    """Every metric of generated images against a dataset's real test split, each beside its real-vs-real floor.

    ``source``: a ``Run`` or a run folder (``n`` samples of its generator, its own dataset), a MedMNIST-format
    ``.npz`` (``train_images``, labels optional) or a folder of images, or uint8 images as a tensor or array
    (N, C, H, W) or (N, H, W). Files, folders and arrays need ``dataset``."""
    device = resolve_device(device)
    run = source if isinstance(source, Run) else _run_or_none(source)
    run_cfg = run.config if run else None
    dataset = dataset or (run_cfg.dataset if run_cfg else None)
    if not dataset:
        raise MedganError(
            "--dataset is needed to evaluate a file, folder or array (dataset= in Python): the real images to compare"
        )
    size = size or (run_cfg.size if run_cfg else None) or _image_size(source) or TrainConfig.size
    root = data_root or (run_cfg.data_root if run_cfg else None) or None
    train = datasets.load_dataset(dataset, "train", size, channels or (run_cfg.channels if run_cfg else None), root)
    test = datasets.load_dataset(dataset, "test", size, train.channels, root)
    if run:
        images, labels = run.sample_with_labels(n, seed, "as-train", checkpoint, str(device))
    else:
        images, labels = read_images(source, size)
    images = convert_channels(images, train.channels).contiguous()
    if tuple(images.shape[1:]) != train.shape:
        raise MedganError(
            f"generated images are {tuple(images.shape[1:])} but {dataset} at --size {size} is {train.shape}"
        )
    if labels is not None and (labels.shape != (len(images), train.labels.shape[1]) or not labels.any()):
        labels = None  # an unconditional run's export: all-zero labels say nothing; TSTR needs real labels
    result = evaluate_images(images, train, test, extractors, device, inception_weights, seed=seed, labels=labels)
    result["source"] = str(run.path if run else source if isinstance(source, (str, Path)) else "images")
    return Scores(result, images, train)


def _run_or_none(source) -> Run | None:
    return Run(source) if isinstance(source, (str, Path)) and RunDir(source).is_run() else None


def _image_size(source) -> int | None:
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return int(source.shape[-1] if source.ndim == 4 and source.shape[1] in (1, 3) else source.shape[2])
    return None


def read_images(source, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(uint8 (N, C, H, W), label rows or None) from a tensor or array, a MedMNIST-format .npz (train_images,
    train_labels) or a folder of image files."""
    if isinstance(source, (torch.Tensor, np.ndarray)):
        images = torch.as_tensor(source)
        if images.dtype != torch.uint8 or images.ndim not in (3, 4):
            raise MedganError(
                f"images must be uint8 (N, C, H, W) or (N, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        return (images.unsqueeze(1) if images.ndim == 3 else images), None
    source = Path(source)
    if not source.exists():
        raise MedganError(f"{source} does not exist (give a run directory, a .npz file or a folder of images)")
    if source.suffix != ".npz":
        return load_folder(str(source), "all", size).images, None
    try:
        with np.load(source, allow_pickle=False) as z:
            array = z["train_images"]
            if len(array) == 0:
                raise MedganError(f"{source} holds no images (train_images is empty): nothing to evaluate")
            labels = z["train_labels"].astype(np.int64).reshape(len(array), -1) if "train_labels" in z else None
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise MedganError(
            f"{source} is not a MedMNIST-format .npz with train_images ({type(e).__name__}: {e})"
        ) from None
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise MedganError(
            f"{source}: train_images must be uint8 (N, H, W) or (N, H, W, 3), got {array.dtype} {array.shape}"
        )
    images = torch.from_numpy(array)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
    return images, None if labels is None else torch.from_numpy(labels)


def compare(
    preset: str | None = None,
    study_file: str | Path | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    pack: str | int = "off",
    **given,
) -> dict:
    """A study: every variant (``models`` x ``losses``) x ``seeds`` trained and compared on ``dataset``, written to
    ``out`` (report.md, report.html, results.csv, results.json); returns results.json's content. ``preset``: a study
    preset (``quickstart``); ``train``: training settings for every run (``{"epochs": 2}``)."""
    study = study_from_args(preset, load_study_file(study_file) if study_file else None, **given)
    return compare_study(study, backend, ray_address, pack) | {"out": study.out}
