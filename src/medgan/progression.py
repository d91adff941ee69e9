"""Progressive-resolution training (``--model progressive``) in one place, but for the growing nets themselves
(``models/progressive.py``): the stage schedule, parsed and checked once, and what changes at each stage.

``stages = "32:10,64"`` lists every stage but the last as SIZE:EPOCHS; the last stage trains for the rest
of ``epochs`` (so ``--resume --epochs N`` lengthens the full-size stage). Sizes double and the last one is
``size``. Each later stage fades its new block in over ``fade_epochs`` epochs: alpha rises linearly per
step from 1/steps to 1, for the nets and for the real images (ProGAN's blend of a real batch with its
2x-downsampled-then-upsampled self), so D sees reals and fakes at the same sharpness throughout.

The stage and alpha follow from the run's position (epoch, batch index), so a resumed run, mid-stage or at a
stage boundary, picks up the right stage, data and alpha from its checkpoint alone.

Real images per stage: the dataset loaded at the stage's size. A MedMNIST stage uses the MedMNIST+ file
of that size (28, 64, 128, 224); other sizes are the nearest file resized with antialiasing (a 32 px
stage: the 28 px file upsampled). Images given to the trainer directly are resized to each stage's size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from medgan import MedganError
from medgan.data import DATASETS, SIZES, ImageSet, load_split
from medgan.data.imageset import resize
from medgan.models.dcgan import num_stages
from medgan.models.progressive import Growing, downsample, upsample

EXAMPLE = 'e.g. stages = "32:10,64" (--stages 32:10,64): 10 epochs at 32 px, then 64 px for the remaining epochs'


@dataclass(frozen=True)
class Stage:
    size: int
    start: int  # first epoch of the stage (0-based)
    end: int  # first epoch after it


class StageSchedule:
    """Which stage and alpha the trainer is at for a given position."""

    def __init__(self, stages: list[Stage], fade_epochs: float):
        self.stages, self.fade_epochs = stages, fade_epochs

    @classmethod
    def from_config(cls, cfg) -> StageSchedule:
        """The schedule of a config (its model, stages, size, epochs and fade_epochs)."""
        return parse_schedule(cfg.model, cfg.stages, cfg.size, cfg.epochs, cfg.fade_epochs)

    def stage_at(self, epoch: int) -> Stage:
        return next((s for s in self.stages if epoch < s.end), self.stages[-1])

    def alpha(self, epoch: int, batch_index: int, n_batches: int) -> float:
        """Fade-in weight of the new block for the step at (epoch, batch_index): 1/steps on the stage's first
        step, 1 on the last fade step and after; always 1 in the first stage."""
        stage = self.stage_at(epoch)
        fade_steps = self.fade_epochs * n_batches
        if stage is self.stages[0] or fade_steps == 0:
            return 1.0
        return min(1.0, ((epoch - stage.start) * n_batches + batch_index + 1) / fade_steps)


@lru_cache(maxsize=64)
def parse_schedule(model: str, text: str, size: int, epochs: int, fade_epochs: float) -> StageSchedule:
    """Parse and check a schedule (cached: config checking and the trainer share one parse);
    MedganError says what is wrong and how to write it."""
    if model != "progressive":
        raise MedganError(
            f"stages only apply to model progressive (model is {model}); drop stages or use --model progressive"
        )
    if not text.strip():
        raise MedganError(f"model progressive needs a stage schedule, {EXAMPLE}")
    texts = text.split(",")
    entries = [parse_entry(t, last=i == len(texts) - 1) for i, t in enumerate(texts)]
    sizes = [s for s, _ in entries]
    for a, b in zip(sizes, sizes[1:]):
        if b != 2 * a:
            raise MedganError(
                f"stage sizes must double from one stage to the next, got {a} then {b} in stages {text!r}"
            )
    if sizes[-1] != size:
        raise MedganError(
            f"the last stage's size ({sizes[-1]}) must be the image size (size = {size}); "
            f"end stages with {size} or set --size {sizes[-1]}"
        )
    try:
        smallest = size // 2 ** num_stages(size)
    except ValueError:
        raise MedganError(
            "model progressive needs an image size of 4..7 px times a power of two (28, 32, 64, 128, 224), "
            f"got size = {size}"
        ) from None
    if sizes[0] < smallest:
        raise MedganError(
            f"the first stage ({sizes[0]} px) is below the nets' smallest resolution for size {size} ({smallest} px)"
        )
    starts = [0]
    for _, stage_epochs in entries[:-1]:
        starts.append(starts[-1] + stage_epochs)
    if starts[-1] >= epochs:
        raise MedganError(
            f"stages {text!r} take {starts[-1]} epochs before the last stage, "
            f"so epochs must be more than that (got {epochs})"
        )
    stages = [Stage(s, start, end) for s, start, end in zip(sizes, starts, starts[1:] + [epochs])]
    if fade_epochs < 0:
        raise MedganError(f"fade_epochs must be >= 0 (0 = no fade-in), got {fade_epochs}")
    for stage in stages[1:]:
        if fade_epochs > stage.end - stage.start:
            raise MedganError(
                f"fade_epochs ({fade_epochs:g}) is longer than the {stage.size} px stage "
                f"({stage.end - stage.start} epochs); lower --fade-epochs or lengthen the stage"
            )
    return StageSchedule(stages, fade_epochs)


def parse_entry(text: str, last: bool) -> tuple[int, int | None]:
    """``"32:10"`` -> (32, 10); the last stage is a bare size, ``"64"`` -> (64, None)."""
    size, _, epochs = text.strip().partition(":")
    if last and epochs:
        raise MedganError(
            "the last stage trains for the remaining epochs, so write it without :EPOCHS "
            f"({text.strip()!r} -> {size!r}); {EXAMPLE}"
        )
    try:
        entry = (int(size), int(epochs) if not last else None)
    except ValueError:
        raise MedganError(
            f"bad stage {text.strip()!r}: expected SIZE:EPOCHS for every stage but the last, {EXAMPLE}"
        ) from None
    if entry[0] < 1 or (entry[1] is not None and entry[1] < 1):
        raise MedganError(f"bad stage {text.strip()!r}: size and epochs must be >= 1")
    return entry


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


def stage_images(cfg, size: int) -> ImageSet:
    """The training split of a run config's dataset at ``size`` px (see the module docstring for MedMNIST)."""
    if cfg.dataset in DATASETS and size not in SIZES:
        return resized(load_split(cfg, size=min(SIZES, key=lambda s: abs(s - size))), size)
    return load_split(cfg, size=size)


def resized(images: ImageSet, size: int) -> ImageSet:
    return dataclasses.replace(images, images=resize(images.uint8(), size))


class Progression:
    """What a run changes as it grows: the stage's training images when a stage starts, the fade-in before each step.
    It reads the run's position and returns what changes; the trainer keeps its own fields."""

    def __init__(self, cfg, full_size: ImageSet, given: bool):
        self.schedule, self.cfg = StageSchedule.from_config(cfg), cfg
        self.full_size, self.given = full_size, given  # given: images passed in, resized per stage
        self.stage: Stage | None = None

    def images_for(self, epoch: int) -> FadingImages | None:
        """The training images from ``epoch`` on when it starts a new stage (or is the run's first), else None."""
        stage = self.schedule.stage_at(epoch)
        if stage == self.stage:
            return None
        self.stage = stage
        return FadingImages.of(self.images_at(stage.size))

    def fade(self, epoch: int, batch_index: int, n_batches: int, nets: list[nn.Module], images: FadingImages) -> None:
        """Set the new block's fade-in weight for the step at (epoch, batch_index) in ``nets`` and ``images``."""
        alpha = self.schedule.alpha(epoch, batch_index, n_batches)
        for net in nets:
            for growing in (m for m in net.modules() if isinstance(m, Growing)):  # inside conditional wrappers too
                growing.set_stage(self.stage.size, alpha)
        images.alpha = alpha

    def images_at(self, size: int) -> ImageSet:
        if size == self.full_size.size:
            return self.full_size
        return resized(self.full_size, size) if self.given else stage_images(self.cfg, size)

    def in_last_stage(self, epochs_done: int) -> bool:
        """Whether the epoch that just ended (``epochs_done`` finished) trained at full size (evaluation waits for it:
        it compares with full-size test images)."""
        return self.schedule.stage_at(epochs_done - 1) is self.schedule.stages[-1]
