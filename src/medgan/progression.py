"""Progressive-resolution training (``--model progressive``): what the trainer changes at each stage of the
schedule (``stages.py``). While a new block fades in, alpha rises for the nets and for the real images
(ProGAN's blend of a real batch with its 2x-downsampled-then-upsampled self), so D sees reals and fakes at
the same sharpness throughout.

The stage and alpha follow from the trainer's position (epoch, batch index), so a resumed run, mid-stage
or at a stage boundary, picks up the right stage, data and alpha from its checkpoint alone.

Real images per stage: the dataset loaded at the stage's size. A MedMNIST stage uses the MedMNIST+ file
of that size (28, 64, 128, 224); other sizes are the nearest file resized with antialiasing (a 32 px
stage: the 28 px file upsampled). Images given to the trainer directly are resized to each stage's size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from medgan.config import TrainConfig
from medgan.data import DATASETS, SIZES, ImageSet, load_dataset
from medgan.data.imageset import resize
from medgan.models.progressive import Growing, downsample, upsample
from medgan.stages import Stage, StageSchedule


@dataclass
class FadingImages(ImageSet):
    """A stage's training images; while ``alpha`` < 1 a batch is blended with its low-resolution self."""

    alpha: float = 1.0

    @classmethod
    def of(cls, images: ImageSet) -> FadingImages:
        return cls(**{f.name: getattr(images, f.name) for f in dataclasses.fields(images)})

    def batch(self, index: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        x = super().batch(index, device)
        return x if self.alpha >= 1.0 else torch.lerp(upsample(downsample(x)), x, self.alpha)


def stage_images(cfg: TrainConfig, size: int) -> ImageSet:
    """The training split of ``cfg.dataset`` at ``size`` px (see the module docstring for MedMNIST)."""
    root = cfg.data_root or None
    if cfg.dataset in DATASETS and size not in SIZES:
        nearest = min(SIZES, key=lambda s: abs(s - size))
        return resized(load_dataset(cfg.dataset, "train", nearest, cfg.channels, root), size)
    return load_dataset(cfg.dataset, "train", size, cfg.channels, root)


def resized(images: ImageSet, size: int) -> ImageSet:
    return dataclasses.replace(images, images=resize(images.uint8(), size))


class Progression:
    """The trainer's progressive-resolution hooks: swap the data when a stage starts, set alpha before each step."""

    def __init__(self, cfg: TrainConfig, full_size: ImageSet, given: bool):
        self.schedule, self.cfg = StageSchedule.from_config(cfg), cfg
        self.full_size, self.given = full_size, given  # given: images passed in, resized per stage
        self.stage: Stage | None = None

    def start_epoch(self, trainer) -> None:
        stage = self.schedule.stage_at(trainer.epoch)
        if stage != self.stage:
            self.stage = stage
            trainer.data = FadingImages.of(self.images_at(stage.size)).resident(trainer.device)

    def before_step(self, trainer) -> None:
        alpha = self.schedule.alpha(trainer.epoch, trainer.batch_index, trainer.batches_per_epoch())
        for net in (trainer.generator, trainer.discriminator, *([trainer.ema.module] if trainer.ema else [])):
            for growing in (m for m in net.modules() if isinstance(m, Growing)):  # inside conditional wrappers too
                growing.set_stage(self.stage.size, alpha)
        trainer.data.alpha = alpha

    def images_at(self, size: int) -> ImageSet:
        if size == self.full_size.size:
            return self.full_size
        return resized(self.full_size, size) if self.given else stage_images(self.cfg, size)

    def in_last_stage(self, epochs_done: int) -> bool:
        """Whether the epoch that just ended (``epochs_done`` finished) trained at full size (evaluation waits for it:
        it compares with full-size test images)."""
        return self.schedule.stage_at(epochs_done - 1) is self.schedule.stages[-1]
