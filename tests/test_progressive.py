"""Progressive-resolution training: growing nets, the stage schedule, and runs that cross stage boundaries."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_medmnist
from medgan import MedganError
from medgan.cli import main
from medgan.config import TrainConfig, from_dict
from medgan.data import ImageSet, load_dataset
from medgan.data.imageset import resize
from medgan.files import load_torch
from medgan.models import build_models
from medgan.models.progressive import downsample, upsample
from medgan.progression import FadingImages, StageSchedule
from medgan.rundir import config_for_resume
from medgan.train import Trainer

# 2 stages, 32 -> 64 px; 64 train images in batches of 32 = 2 steps per epoch; the new block fades in over
# the first epoch of the 64 px stage (alpha 0.5, then 1).
FLAGS = {
    "model": "progressive",
    "stages": "32:1,64",
    "fade_epochs": 1.0,
    "size": 64,
    "epochs": 3,
    "width": 8,
    "batch_size": 32,
    "log_every": 1,
    "eval_every": 0,
    "dataset": "pneumoniamnist",
    "ema": 0.9,
    "checkpoint_every_s": 0,
    "grid_every_s": 0,
}


@pytest.fixture
def root(tmp_path):
    """Tiny PneumoniaMNIST files at 28 px (resized to 32 for the first stage) and 64 px."""
    write_medmnist(tmp_path / "data", size=28)
    return write_medmnist(tmp_path / "data", size=64, seed=1)


def trainer_for(tmp_path, root, name, hooks=(), **changes):
    cfg = TrainConfig(**{**FLAGS, "data_root": str(root), "out": str(tmp_path / name), **changes})
    trainer = Trainer(from_dict({}, cfg), progress=False, tensorboard=False)
    trainer.step_hooks.extend(hooks)
    return trainer


def flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()])


# ----- the nets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_nets_work_at_every_stage_and_alpha(channels):
    torch.manual_seed(0)
    gen, disc = build_models("progressive", (channels, 32, 32), width=8)
    assert gen.resolutions == disc.resolutions == [4, 8, 16, 32] and gen.resolution == 32 and gen.alpha == 1.0
    z = torch.randn(3, 100)
    for resolution in gen.resolutions:
        for alpha in [1.0] if resolution == 4 else [0.0, 0.5, 1.0]:
            gen.set_stage(resolution, alpha)
            disc.set_stage(resolution, alpha)
            images = gen(z)
            assert images.shape == (3, channels, resolution, resolution) and images.abs().max() <= 1
            assert disc(images).shape == (3,)
    with pytest.raises(ValueError, match="discriminator is at 32 px but got 16 px"):
        disc(torch.zeros(2, channels, 16, 16))
    with pytest.raises(ValueError, match="not a stage of this net"):
        gen.set_stage(24)


def test_alpha_blends_the_previous_resolution_with_the_new_block():
    torch.manual_seed(0)
    gen, disc = build_models("progressive", (1, 32, 32), width=8)
    z, x = torch.randn(4, 100), torch.rand(4, 1, 32, 32) * 2 - 1
    gen.set_stage(16)
    previous = gen(z)
    disc.set_stage(16)
    previous_score = disc(downsample(x))
    out = {}
    for alpha in (0.0, 0.5, 1.0):
        gen.set_stage(32, alpha)
        disc.set_stage(32, alpha)
        out[alpha] = gen(z), disc(x)
    # alpha 0: G gives the 16 px image upsampled, D scores the downsampled image as the 16 px D does
    assert torch.allclose(out[0.0][0], upsample(previous), atol=1e-6)
    assert torch.allclose(out[0.0][1], previous_score, atol=1e-5)
    # alpha 1: the new block alone (the old to_rgb / from_rgb play no part); 0.5 halfway before the tanh
    assert not torch.allclose(out[1.0][0], out[0.0][0], atol=1e-3)
    with torch.no_grad():
        gen.to_rgb[2].weight.add_(1.0)
        disc.from_rgb[2][0].weight.add_(1.0)
    assert torch.equal(gen(z), out[1.0][0]) and torch.equal(disc(x), out[1.0][1])
    middle = (torch.atanh(out[0.0][0]) + torch.atanh(out[1.0][0])) / 2
    assert torch.allclose(torch.atanh(out[0.5][0]), middle, atol=1e-4)


def test_stage_and_alpha_travel_in_the_state_dict():
    gen, _ = build_models("progressive", (1, 32, 32), width=8)
    gen.set_stage(16, 0.25)
    fresh, _ = build_models("progressive", (1, 32, 32), width=8)
    fresh.load_state_dict(gen.state_dict())
    assert (fresh.resolution, fresh.alpha) == (16, 0.25)


def test_real_images_fade_like_the_generator():
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    images = FadingImages.of(ImageSet(x, torch.zeros(4, 1, dtype=torch.long), "t", "train"))
    index = torch.arange(4)
    sharp = images.batch(index)
    images.alpha = 0.0
    assert torch.allclose(images.batch(index), upsample(downsample(sharp)))
    images.alpha = 0.25
    assert torch.allclose(images.batch(index), 0.75 * upsample(downsample(sharp)) + 0.25 * sharp, atol=1e-6)


# ----- the schedule --------------------------------------------------------------------------------
def schedule(**changes):
    return StageSchedule.from_config(
        from_dict({"model": "progressive", "size": 64, "epochs": 6, "stages": "16:2,32:2,64", **changes})
    )


def test_schedule_gives_stage_and_alpha_for_every_position():
    s = schedule(fade_epochs=1.5)
    assert [(st.size, st.start, st.end) for st in s.stages] == [(16, 0, 2), (32, 2, 4), (64, 4, 6)]
    assert [s.stage_at(e).size for e in range(7)] == [16, 16, 32, 32, 64, 64, 64]
    n = 4  # batches per epoch: the fade takes 6 steps
    assert [s.alpha(e, b, n) for e in (0, 1) for b in range(n)] == [1.0] * 8
    for start in (2, 4):
        alphas = [s.alpha(e, b, n) for e in (start, start + 1) for b in range(n)]
        assert alphas == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0, 1.0, 1.0])
    assert schedule(fade_epochs=0).alpha(2, 0, n) == 1.0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"stages": ""}, "model progressive needs a stage schedule, e.g."),
        ({"model": "dcgan"}, "stages only apply to model progressive"),
        ({"stages": "16:2,32:x,64"}, "bad stage '32:x': expected SIZE:EPOCHS"),
        ({"stages": "16:2,32:2,64:3"}, "the last stage trains for the remaining epochs, so write it without :EPOCHS"),
        ({"stages": "16:2,48:2,64"}, "must double .* got 16 then 48"),
        ({"stages": "16:2,32"}, r"last stage's size \(32\) must be the image size \(size = 64\)"),
        (
            {"stages": "2:1,4:1,8:1,16:1,32:1,64"},
            r"first stage \(2 px\) is below the nets' smallest resolution for size 64 \(4 px\)",
        ),
        ({"stages": "16:0,32:2,64"}, "size and epochs must be >= 1"),
        ({"epochs": 4}, "take 4 epochs before the last stage, so epochs must be more than that"),
        ({"fade_epochs": 2.5}, r"fade_epochs \(2.5\) is longer than the 32 px stage \(2 epochs\)"),
        ({"fade_epochs": -1.0}, "fade_epochs must be >= 0"),
        ({"size": 30, "stages": "15:1,30"}, "model progressive needs an image size of 4..7 px times a power of two"),
    ],
)
def test_bad_schedules_say_what_to_change(changes, message):
    with pytest.raises(MedganError, match=message):
        schedule(**changes)


# ----- training across stages ----------------------------------------------------------------------
@pytest.mark.parametrize("conditional", [False, True])
def test_training_crosses_the_stage_boundary_and_samples_full_size(tmp_path, root, conditional):
    out = tmp_path / "run"
    flags = [
        "--dataset",
        "pneumoniamnist",
        "--data-root",
        str(root),
        "--size",
        "64",
        "--model",
        "progressive",
        "--stages",
        "32:1,64",
        "--fade-epochs",
        "1",
        "--epochs",
        "2",
        "--width",
        "8",
        "--batch-size",
        "32",
        "--eval-every",
        "0",
        "--grid-every-s",
        "0",
        "--no-progress",
        "--no-tensorboard",
        "--out",
        str(out),
        *(["--conditional"] if conditional else []),
    ]
    assert main(["train", *flags]) == 0
    grids = [Image.open(out / "samples" / f"epoch_00{e}.png").size for e in (1, 2)]
    rows = 2 if conditional else 8  # conditional: one row of 8 per class (PneumoniaMNIST: 2)
    assert grids == [
        (8 * 34 + 2, rows * 34 + 2),
        (8 * 66 + 2, rows * 66 + 2),
    ]  # 32 px, then 64 px images (2 px padding)
    state = load_torch(out / "checkpoints" / "last.pt")
    prefix = "net." if conditional else ""
    assert (
        state["generator"][prefix + "_extra_state"]
        == state["discriminator"][prefix + "_extra_state"]
        == {"resolution": 64, "alpha": 1.0}
    )
    assert main(["sample", str(out), "-n", "5", "--out", str(tmp_path / "fake.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "fake.npz") as z:
        assert z["train_images"].shape == (5, 64, 64)


def test_each_stage_trains_on_its_own_data_and_evaluation_waits_for_full_size(tmp_path, root):
    seen, evaluated = [], []
    trainer = trainer_for(
        tmp_path,
        root,
        "run",
        hooks=[lambda t: seen.append((t.epoch, t.data.size, t.generator.resolution, t.ema.module.alpha))],
        eval_every=1,
        eval_share=1.0,
    )  # an evaluation due after every epoch, but only at full size
    trainer.evaluation = lambda epoch, step, last, log: evaluated.append(epoch)
    stage_one = []
    trainer.step_hooks.append(lambda t: stage_one.append(t.data.images) if t.epoch == 0 else None)
    trainer.fit()
    assert seen == [
        (0, 32, 32, 1.0),
        (0, 32, 32, 1.0),
        (1, 64, 64, 0.5),
        (1, 64, 64, 1.0),
        (2, 64, 64, 1.0),
        (2, 64, 64, 1.0),
    ]
    from_28 = resize(load_dataset("pneumoniamnist", "train", 28, 1, root).images, 32)
    assert torch.equal(stage_one[0], from_28)
    assert torch.equal(trainer.data.images, load_dataset("pneumoniamnist", "train", 64, 1, root).images)
    assert evaluated == [2, 3]


def interrupt_at(step):
    return lambda trainer: trainer.step == step and os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize(
    "step, position",
    [
        (2, (1, 0)),  # Ctrl-C on the last step of the 32 px stage: the checkpoint is exactly at the boundary
        (3, (1, 1)),  # Ctrl-C in the middle of the fade-in of the 64 px stage
    ],
)
def test_resume_across_the_stage_boundary_gives_the_same_run(tmp_path, root, step, position):
    full = trainer_for(tmp_path, root, "full")
    full.fit()
    stopped = trainer_for(tmp_path, root, "stopped", hooks=[interrupt_at(step)])
    stopped.fit()
    state = load_torch(stopped.out / "checkpoints" / "last.pt")
    assert stopped.stop_requested and (state["epoch"], state["batch_index"]) == position
    resumed = Trainer(config_for_resume(stopped.out, {}), progress=False, tensorboard=False)
    resumed.fit(resume=True)
    assert torch.equal(flat(full.generator), flat(resumed.generator))
    assert torch.equal(flat(full.discriminator), flat(resumed.discriminator))
    assert torch.equal(flat(full.ema.module), flat(resumed.ema.module))
    steps = lambda run: [
        {k: v for k, v in r.items() if k != "step_time_s"}
        for r in map(json.loads, (run.out / "metrics.jsonl").read_text().splitlines())
        if "kind" not in r
    ]
    assert len(steps(full)) == 6 and steps(full) == steps(resumed)  # every step's losses (log_every = 1)
