"""What a run writes besides checkpoints: run.json, metrics.jsonl, TensorBoard events, sample grids."""

from __future__ import annotations

import json
import platform
import time

import numpy as np
import torch
from torchvision.utils import save_image

import medgan
from medgan import files
from medgan.rundir import RunDir


def versions() -> dict:
    return {
        "medgan": medgan.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class RunLog:
    """Appends scalar records to metrics.jsonl and TensorBoard; keeps run.json up to date."""

    def __init__(self, run: RunDir, tensorboard: bool = True):
        self.run = run
        run.path.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports TensorBoard: only when asked for

            self._tb = SummaryWriter(str(run.tensorboard))
        self.info = run.read_info()

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (written after the checkpoint a resumed run starts from)."""
        if not self.run.metrics.exists():
            return
        keep = [json.dumps(r) for r in self.run.read_records() if r["step"] <= step]
        files.write_text(self.run.metrics, "".join(line + "\n" for line in keep))

    def scalars(self, record: dict) -> None:
        """One metrics.jsonl line; every numeric field but step/epoch also goes to TensorBoard."""
        with open(self.run.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            prefix = "epoch/" if record.get("kind") == "epoch" else ""
            for key, value in record.items():
                if key not in ("step", "epoch", "kind") and isinstance(value, (int, float)):
                    self._tb.add_scalar(prefix + key, value, record["step"])

    def sample_grid(self, grid: torch.Tensor, epoch: int, step: int) -> None:
        """A grid of samples in [0, 1]: a PNG in samples/ and a TensorBoard image."""
        self._save_grid(grid, self.run.grid(epoch), "samples", step)

    def real_grid(self, grid: torch.Tensor) -> None:
        """Training images in the sample grids' layout: samples/real.png and TensorBoard's ``real``."""
        self._save_grid(grid, self.run.real_grid, "real", 0)

    def _save_grid(self, grid: torch.Tensor, path, tag: str, step: int) -> None:
        with files.atomic_path(path) as tmp:
            save_image(grid, tmp, format="png")
        if self._tb is not None:
            self._tb.add_image(tag, grid, step)

    def status(self, **fields) -> None:
        self.info.update(fields)
        files.write_json(self.run.info, self.info)

    def started(self, device: str, resumed: bool) -> None:
        now = time.time()
        self.info.setdefault("started", now)
        self.info.setdefault("segments", []).append({"started": now, "device": device, "resumed": resumed})
        self.status(status="running", device=device, versions=versions(), error=None)

    def training_seconds(self) -> float:
        """Wall time of the run's finished segments together."""
        return sum(segment.get("wall_time_s", 0.0) for segment in self.info.get("segments", []))

    def eval_seconds(self) -> float:
        """Time the run's finished segments spent evaluating during training."""
        return sum(segment.get("eval_s", 0.0) for segment in self.info.get("segments", []))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
