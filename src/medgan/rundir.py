"""A run directory: the one module that knows where a run keeps its files and how to load a run.

RUN/config.toml              the resolved config: all that is needed to rebuild the run
RUN/run.json                 status, segments and wall time, the best checkpoint's record
RUN/metrics.jsonl            one JSON record per logged interval, epoch and evaluation
RUN/checkpoints/last.pt      the latest training state (resume starts here)
RUN/checkpoints/best.pt      with keep_best: the state that scored best on the validation split
RUN/samples/epoch_NNN.png    sample grids from a fixed noise batch
RUN/samples/real.png         training images in the same layout, to hold the samples against
RUN/tensorboard/             TensorBoard events
RUN/nearest_train.png        generated images above their nearest training images
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch

from medgan import MedganError, MedganWarning, files
from medgan.config import TrainConfig, load_toml
from medgan.device import memory_format, resolve_device
from medgan.nets import nets_for

CHECKPOINTS = ("auto", "best", "last")  # which checkpoint to load: auto = best when the run kept one, else last
RESUME_CHANGEABLE = ("epochs", "max_minutes", "device", "precision")  # what --resume may change


class RunDir:
    """Paths of one run's files, and reading them back."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.toml"
        self.info = self.path / "run.json"
        self.metrics = self.path / "metrics.jsonl"
        self.last_checkpoint = self.path / "checkpoints" / "last.pt"
        self.best_checkpoint = self.path / "checkpoints" / "best.pt"
        self.samples = self.path / "samples"
        self.real_grid = self.samples / "real.png"
        self.tensorboard = self.path / "tensorboard"
        self.nearest_train = self.path / "nearest_train.png"

    def __str__(self) -> str:
        return str(self.path)

    def grid(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:03d}.png"

    def latest_grid(self) -> Path | None:
        grids = sorted(self.samples.glob("epoch_*.png"))
        return grids[-1] if grids else None

    def is_run(self) -> bool:
        return self.config.exists()

    def read_config(self) -> TrainConfig:
        return load_toml(self.config)

    def read_info(self) -> dict:
        """run.json ({} before the run has started); a MedganError naming it when it is damaged."""
        if not self.info.exists():
            return {}
        try:
            info = json.loads(self.info.read_bytes())
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            info = e
        if not isinstance(info, dict):
            raise MedganError(
                f"{self.info} is damaged (not a JSON object: {info}). It holds the run's status and timings, "
                "not its weights: delete it and run again (--resume continues from the checkpoint)"
            )
        return info

    def read_records(self, kind: str | None = None) -> list[dict]:
        """metrics.jsonl's records, only those of ``kind`` ("epoch", "eval", "select") when given. A damaged line
        (a kill -9 in the middle of an append, a bit flip) is skipped with a warning: the other records stand."""
        if not self.metrics.exists():
            return []
        records, damaged = [], 0
        for line in self.metrics.read_bytes().splitlines():
            try:
                record = json.loads(line) if line.strip() else None
            except (ValueError, UnicodeDecodeError):
                record = None
                damaged += 1
            if isinstance(record, dict) and "step" in record:
                records.append(record)
            elif record is not None:
                damaged += 1
        if damaged:
            warnings.warn(f"{self.metrics}: skipped {damaged} damaged line(s)", MedganWarning, stacklevel=2)
        return [r for r in records if kind is None or r.get("kind") == kind]

    def checkpoint(self, which: str = "auto") -> Path:
        """The checkpoint to load: "last", "best" (kept by ``keep_best``) or "auto" = best when kept, else last."""
        if which not in CHECKPOINTS:
            raise MedganError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}; got {which!r}")
        last = self.last_checkpoint.relative_to(self.path)
        if not self.config.exists():
            raise MedganError(f"{self.path} is not a medgan run directory (needs config.toml and {last})")
        if self.best_checkpoint.exists() and which != "last":
            return self.best_checkpoint
        if which == "best":
            raise MedganError(
                f"{self.path} has no {self.best_checkpoint.relative_to(self.path)}: "
                "only runs trained with keep_best (and evaluated once) keep one"
            )
        if not self.last_checkpoint.exists():
            raise MedganError(f"{self.path} is not a medgan run directory (needs config.toml and {last})")
        return self.last_checkpoint


def load_run(run_dir: str | Path, device: str = "cpu", checkpoint: str = "auto") -> tuple[torch.nn.Module, TrainConfig]:
    """The run's generator (EMA weights when the checkpoint has them), in eval mode, and its config."""
    run = RunDir(run_dir)
    path = run.checkpoint(checkpoint)
    cfg = run.read_config()
    generator, _ = nets_for(cfg)
    state = files.load_torch(path)
    generator.load_state_dict(state.get("generator_ema", state["generator"]))
    device = resolve_device(device)
    return generator.to(device, memory_format=memory_format(device)).eval(), cfg


def config_for_resume(run_dir: str | Path, overrides: dict) -> TrainConfig:
    """The run's own config, writing to ``run_dir`` wherever the run was first trained (a run directory can be
    copied or moved); only how long and where it runs (``RESUME_CHANGEABLE``) may change."""
    run = RunDir(run_dir)
    if not run.config.exists():
        raise MedganError(f"nothing to resume: {run.config} does not exist")
    cfg = run.read_config()
    changed = {k: v for k, v in overrides.items() if k not in (*RESUME_CHANGEABLE, "out") and v != getattr(cfg, k)}
    if changed:
        raise MedganError(
            f"cannot change {', '.join(sorted(changed))} when resuming {run}; "
            "only --epochs, --max-minutes, --device and --precision"
        )
    return cfg.replace(out=str(run.path), **{k: v for k, v in overrides.items() if k in RESUME_CHANGEABLE})


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<dataset>-<model>-<loss>-s<seed>`` for a config without ``out``."""
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.dataset.replace("folder:", "").strip("/")) or "data"
    return Path("runs") / f"{dataset}-{cfg.model}-{cfg.loss}-s{cfg.seed}"
