"""Training configuration: defaults from the seed projects, overridable by a TOML file and CLI flags.

Unknown keys and bad values are rejected with the valid choices. The resolved configuration is
written to ``RUN_DIR/config.toml`` and is all that is needed to rebuild a run.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
import tomli_w

from medgan import MedganError
from medgan.augment import parse_policy
from medgan.losses import LOSSES
from medgan.metrics.catalogue import KEEP_BEST
from medgan.models import MINIBATCH_STD_MODELS, MODELS
from medgan.progression import StageSchedule


@dataclass
class TrainConfig:
    dataset: str = "builtin"
    data_root: str = ""  # "" = $MEDGAN_DATA, else ~/.medmnist
    size: int = 28
    channels: int = 0  # 0 = the dataset's own (1 for X-rays, 3 for pathology)
    model: str = "mlp"
    loss: str = "lsgan"
    epochs: int = 50
    max_minutes: float = (
        0.0  # wall-time budget over all of a run's segments: stop after the first epoch past it; 0 = none
    )
    batch_size: int = 64
    lr: float = 2e-4  # generator learning rate (and D's unless lr_d is set)
    lr_d: float = 0.0  # discriminator learning rate for two time-scale updates (TTUR); 0 = lr
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 0  # 0 = the loss's default: 5 for Wasserstein losses, else 1
    latent_dim: int = 100
    width: int = 64  # base channel width of convolutional nets (dcgan, resnet)
    spectral_norm: bool = False  # spectral normalisation on every layer of D (then no batch norm in D)
    minibatch_std: bool = (
        False  # D (dcgan, resnet) sees each group of 4 images' feature std as one more channel (ProGAN)
    )
    r1: float = 0.0  # R1 penalty weight gamma on D's gradient at real images; 0 = off
    augment: str = ""  # DiffAugment policy for D's inputs, e.g. "translation,cutout" (also: color); "" = off
    # ADA: apply each augmentation with a probability adapted so E[sign D(real)] stays near this (e.g. 0.6);
    # 0 = always apply
    augment_target: float = 0.0
    ema: float = 0.0  # decay of the generator's weight average used for samples and evaluation; 0 = off
    conditional: bool = False  # class-conditional G and D (projection), on the dataset's labels
    n_classes: int = 0  # set from the data when conditional: classes (or findings, multi-label)
    multi_label: bool = False  # set from the data when conditional: labels are 0/1 findings (ChestMNIST)
    stages: str = ""  # model progressive: "32:10,64" = 10 epochs at 32 px, then 64 px for the remaining epochs
    fade_epochs: float = 1.0  # model progressive: epochs over which each new resolution fades in
    seed: int = 0
    device: str = "auto"  # auto = CUDA when present, else CPU
    # "bf16" = bfloat16 autocast of the forward passes (weights and optimiser stay fp32);
    # "auto" = bf16 where the device has bf16 units
    precision: str = "fp32"
    out: str = ""  # "" = runs/<dataset>-<model>-<loss>-s<seed>
    log_every: int = 10  # steps between metrics.jsonl / TensorBoard scalar records
    grid_size: int = 64  # images in the per-epoch sample grid (fixed noise)
    eval_every: int = (
        1  # evaluate with the domain extractor at most every K epochs (as eval_share allows) and at the end; 0 = never
    )
    # the most of the run's wall time that evaluations during training may take (1 = every eval_every epochs);
    # 0.08 leaves room for the final one
    eval_share: float = 0.08
    checkpoint_every_s: float = 60.0  # seconds between checkpoints (also at the end and on a stop); 0 = every epoch
    grid_every_s: float = (
        120.0  # seconds between sample grids (PNG and TensorBoard image; also the last epoch); 0 = every epoch
    )
    eval_samples: int = 2000  # generated images per evaluation during training
    # e.g. "c2st": evaluations use the validation split and keep checkpoints/best.pt, which sampling uses; "" = off
    keep_best: str = ""

    def replace(self, **changes) -> TrainConfig:
        return check(dataclasses.replace(self, **changes))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in fields(TrainConfig)}
PRECISIONS = ("fp32", "bf16", "auto")
POSITIVE = {"size", "epochs", "batch_size", "latent_dim", "width", "eval_samples", "log_every", "grid_size"}


def _choices() -> dict[str, list[str]]:
    return {"model": sorted(MODELS), "loss": sorted(LOSSES)}


def _check_type(name: str, value):
    want = FIELDS[name].type
    if want == "bool" and not isinstance(value, bool):
        raise MedganError(f"config key {name!r} must be true or false, got {value!r}")
    if want == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise MedganError(f"config key {name!r} must be an integer, got {value!r}")
    if want == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise MedganError(f"config key {name!r} must be a number, got {value!r}")
    if want == "str" and not isinstance(value, str):
        raise MedganError(f"config key {name!r} must be a string, got {value!r}")
    return float(value) if want == "float" else value


def check(cfg: TrainConfig) -> TrainConfig:
    """Check every value; raise MedganError naming the key and the valid choices."""
    for name in FIELDS:
        setattr(cfg, name, _check_type(name, getattr(cfg, name)))
    for name, choices in _choices().items():
        if getattr(cfg, name) not in choices:
            raise MedganError(f"{name} must be one of {', '.join(choices)}; got {getattr(cfg, name)!r}")
    for name in POSITIVE:
        if getattr(cfg, name) < 1:
            raise MedganError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.channels not in (0, 1, 3):
        raise MedganError(f"channels must be 1 or 3 (or 0 for the dataset's own), got {cfg.channels}")
    if cfg.n_classes < 0:
        raise MedganError(f"n_classes must be >= 0 (it is set from the data), got {cfg.n_classes}")
    if cfg.eval_every < 0:
        raise MedganError(f"eval_every must be >= 0 (0 = no evaluation during training), got {cfg.eval_every}")
    if cfg.n_critic < 0:
        raise MedganError(f"n_critic must be >= 1 (or 0 for the loss's default), got {cfg.n_critic}")
    if not cfg.lr > 0 or cfg.lr_d < 0:
        raise MedganError(f"lr must be > 0 and lr_d >= 0 (0 = lr), got {cfg.lr}, {cfg.lr_d}")
    if not 0 < cfg.eval_share <= 1:
        raise MedganError(
            f"eval_share must be in (0, 1] (e.g. 0.1 = evaluations take at most 10% of the run), got {cfg.eval_share}"
        )
    if cfg.checkpoint_every_s < 0 or cfg.grid_every_s < 0:
        raise MedganError(
            "checkpoint_every_s and grid_every_s must be >= 0 (0 = every epoch), "
            f"got {cfg.checkpoint_every_s}, {cfg.grid_every_s}"
        )
    if cfg.max_minutes < 0:
        raise MedganError(f"max_minutes must be >= 0 (0 = no time budget), got {cfg.max_minutes}")
    if cfg.r1 < 0:
        raise MedganError(f"r1 must be >= 0 (0 = no R1 penalty), got {cfg.r1}")
    if not 0 <= cfg.ema < 1:
        raise MedganError(f"ema must be in [0, 1) (e.g. 0.999; 0 = off), got {cfg.ema}")
    try:
        parse_policy(cfg.augment)
    except ValueError as e:
        raise MedganError(f"augment: {e}") from None
    if not 0 <= cfg.augment_target < 1:
        raise MedganError(f"augment_target must be in [0, 1) (e.g. 0.6; 0 = always augment), got {cfg.augment_target}")
    if cfg.augment_target and not cfg.augment:
        raise MedganError(
            'augment_target adapts how often the augment policy is applied: set augment too, e.g. "translation,cutout"'
        )
    if cfg.augment_target and LOSSES[cfg.loss].undecided is None:
        raise MedganError(
            f"augment_target needs a loss whose D says real or fake (gan, lsgan, hinge); {cfg.loss} is a critic"
        )
    if cfg.minibatch_std and cfg.model not in MINIBATCH_STD_MODELS:
        raise MedganError(
            f"minibatch_std is an option of the {' and '.join(MINIBATCH_STD_MODELS)} discriminators"
            f" (progressive's always has it); model is {cfg.model!r}"
        )
    if cfg.model == "progressive" or cfg.stages:
        StageSchedule.from_config(cfg)  # raises MedganError saying what is wrong with the schedule
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise MedganError(f"beta1 and beta2 must be in [0, 1), got {cfg.beta1}, {cfg.beta2}")
    if cfg.keep_best and cfg.keep_best not in KEEP_BEST:
        raise MedganError(f'keep_best must be one of {", ".join(KEEP_BEST)} (or "" = off); got {cfg.keep_best!r}')
    if cfg.keep_best and not cfg.eval_every:
        raise MedganError(
            f"keep_best = {cfg.keep_best!r} picks among the evaluations during training: set eval_every >= 1"
        )
    if cfg.precision not in PRECISIONS:
        raise MedganError(f"precision must be one of {', '.join(PRECISIONS)}; got {cfg.precision!r}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", cfg.device):
        raise MedganError(f"device must be auto, cpu, cuda, cuda:N or mps; got {cfg.device!r}")
    return cfg


def from_dict(values: dict, base: TrainConfig | None = None) -> TrainConfig:
    unknown = [k for k in values if k not in FIELDS]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, FIELDS, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise MedganError(f"unknown config key(s) {', '.join(hints)}. Valid keys: {', '.join(FIELDS)}")
    return check(dataclasses.replace(base or TrainConfig(), **values))


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """The values of a TOML file; MedganError when it is missing or not TOML."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise MedganError(f"{what} {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MedganError(f"{what} {path} is not valid TOML ({e}); restore it or write it again") from None


def read_values(path: str | Path) -> dict:
    """A training config file's values: a [train] table or top-level keys."""
    values = read_toml(path)
    return values.get("train", values)


def load_toml(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    values = read_values(path)
    try:
        return from_dict(values, base)
    except MedganError as e:
        raise MedganError(f"{path}: {e}") from None


def layered(*layers: dict | None) -> dict:
    """Settings merged so that later layers win (preset < config file < flags); None = not given. Tables
    (dicts, e.g. a study's shared [train] settings) are merged key by key the same way."""
    out: dict = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            out[key] = layered(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def to_toml(cfg: TrainConfig) -> str:
    return "# medgan training configuration (resolved)\n" + tomli_w.dumps(cfg.to_dict())
