"""The stage schedule of progressive-resolution training (``--model progressive``), parsed and checked once.

``stages = "32:10,64"`` lists every stage but the last as SIZE:EPOCHS; the last stage trains for the rest
of ``epochs`` (so ``--resume --epochs N`` lengthens the full-size stage). Sizes double and the last one is
``size``. Each later stage fades its new block in over ``fade_epochs`` epochs: alpha rises linearly per
step from 1/steps to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from medgan import MedganError
from medgan.models.dcgan import num_stages

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
            f"the last stage's size ({sizes[-1]}) must be the image size (size = {size}); end stages with {size} or set --size {sizes[-1]}"
        )
    try:
        smallest = size // 2 ** num_stages(size)
    except ValueError:
        raise MedganError(
            f"model progressive needs an image size of 4..7 px times a power of two (28, 32, 64, 128, 224), got size = {size}"
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
            f"stages {text!r} take {starts[-1]} epochs before the last stage, so epochs must be more than that (got {epochs})"
        )
    stages = [Stage(s, start, end) for s, start, end in zip(sizes, starts, starts[1:] + [epochs])]
    if fade_epochs < 0:
        raise MedganError(f"fade_epochs must be >= 0 (0 = no fade-in), got {fade_epochs}")
    for stage in stages[1:]:
        if fade_epochs > stage.end - stage.start:
            raise MedganError(
                f"fade_epochs ({fade_epochs:g}) is longer than the {stage.size} px stage ({stage.end - stage.start} epochs); lower --fade-epochs or lengthen the stage"
            )
    return StageSchedule(stages, fade_epochs)


def parse_entry(text: str, last: bool) -> tuple[int, int | None]:
    """``"32:10"`` -> (32, 10); the last stage is a bare size, ``"64"`` -> (64, None)."""
    size, _, epochs = text.strip().partition(":")
    if last and epochs:
        raise MedganError(
            f"the last stage trains for the remaining epochs, so write it without :EPOCHS ({text.strip()!r} -> {size!r}); {EXAMPLE}"
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
