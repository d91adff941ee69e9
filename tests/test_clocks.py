"""Side effects by the clock, not by epochs: checkpoints, sample grids and evaluations, with a fake clock."""

import json

import pytest
import torch

from medgan.clocks import Interval, TimeShare
from medgan.config import TrainConfig
from medgan.files import load_torch
from medgan.rundir import config_for_resume
from medgan.train import Trainer
from test_train import tiny_data, weights


class FakeClock:
    """Seconds that pass only when a test says so (one second per training step here)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def trainer_for(tmp_path, name="run", steps_per_second=1.0, **cfg) -> tuple[Trainer, FakeClock]:
    # 160 images in batches of 32: 5 steps per epoch, so an epoch is 5 fake seconds
    cfg = TrainConfig(
        **{
            "epochs": 20,
            "batch_size": 32,
            "log_every": 1,
            "width": 16,
            "eval_every": 0,
            "out": str(tmp_path / name),
            **cfg,
        }
    )
    trainer = Trainer(cfg, data=tiny_data(), progress=False, tensorboard=False)
    clock = FakeClock()
    trainer.clock = clock
    trainer.step_hooks.append(lambda t: setattr(clock, "now", clock.now + 1 / steps_per_second))
    return trainer, clock


def spy(trainer, method: str) -> list:
    """Record (epoch, batch_index, step) each time ``trainer.method`` runs."""
    calls, original = [], getattr(trainer, method)

    def wrapped(*args, **kwargs):
        calls.append((trainer.epoch, trainer.batch_index, trainer.step))
        return original(*args, **kwargs)

    setattr(trainer, method, wrapped)
    return calls


def test_interval_and_time_share():
    every = Interval(10, now=0)
    assert not every.due(9.9) and every.due(10)
    every.fired(12)
    assert not every.due(21) and every.due(22)
    assert Interval(0, now=5).due(5)
    share = TimeShare(0.1)
    assert share.due(0.0)  # nothing spent, no estimate yet
    share.add(3.0)  # an evaluation took 3 s
    assert not share.due(50.0) and share.due(57.0)  # (3 + 3) <= 0.1 * (57 + 3)
    first = TimeShare(0.1)
    first.add(40.0, typical=3.0)  # 37 s of it trained the extractor, once: the next evaluation will take 3 s
    assert not first.due(400.0) and first.due(427.0)  # (40 + 3) <= 0.1 * (427 + 3)


def test_checkpoints_and_grids_fire_by_elapsed_time_in_short_epochs(tmp_path):
    trainer, _ = trainer_for(
        tmp_path, checkpoint_every_s=12, grid_every_s=30, log_every=5
    )  # flushes only at epoch ends
    saves = spy(trainer, "save")
    trainer.fit()
    # 5 s epochs: a checkpoint at the first epoch end >= 12 s after the last one (3 epochs = 15 s), and at the end
    assert [epoch for epoch, _, _ in saves] == [3, 6, 9, 12, 15, 18, 20]
    grids = sorted(p.name for p in (trainer.out / "samples").glob("epoch_*.png"))
    assert grids == [
        "epoch_006.png",
        "epoch_012.png",
        "epoch_018.png",
        "epoch_020.png",
    ]  # every 30 s, and the last epoch


def test_checkpoints_fire_mid_epoch_when_epochs_are_longer_than_the_interval(tmp_path):
    trainer, _ = trainer_for(tmp_path, epochs=2, checkpoint_every_s=2, grid_every_s=1000)
    saves = spy(trainer, "save")
    trainer.fit()
    assert [(e, b) for e, b, _ in saves] == [
        (0, 2),
        (0, 4),
        (1, 1),
        (1, 3),
        (2, 0),
    ]  # every 2 steps = 2 s, and at the end
    assert sorted(p.name for p in (trainer.out / "samples").glob("epoch_*.png")) == ["epoch_002.png"]


def test_a_killed_run_loses_at_most_one_interval_and_resumes_exactly(tmp_path):
    full, _ = trainer_for(tmp_path, "full", epochs=3, checkpoint_every_s=4)
    full.fit()

    class Killed(BaseException):  # like kill -9: no handler runs, nothing is saved on the way out
        pass

    def kill(trainer):
        if trainer.step == 11:
            raise Killed

    killed, _ = trainer_for(tmp_path, "killed", epochs=3, checkpoint_every_s=4)
    killed.step_hooks.append(kill)
    with pytest.raises(Killed):
        killed.fit()
    state = load_torch(killed.out / "checkpoints" / "last.pt")
    assert 11 - 4 <= state["step"] < 11  # at most one interval (4 steps of 1 s) lost
    resumed = Trainer(config_for_resume(killed.out, {}), data=tiny_data(), progress=False, tensorboard=False)
    resumed.fit(resume=True)
    assert resumed.step == full.step and torch.equal(weights(full), weights(resumed))


def test_evaluations_keep_to_their_share_of_the_wall_time(tmp_path):
    trainer, clock = trainer_for(tmp_path, epochs=40, eval_every=1, eval_share=0.1)
    evaluated = []

    def fake_evaluation(epoch, step, last, log):  # each evaluation takes 3 fake seconds
        evaluated.append(epoch)
        clock.now += 3.0

    trainer.evaluation = fake_evaluation
    trainer.fit()
    info = json.loads((trainer.out / "run.json").read_text())
    assert evaluated[0] == 1 and evaluated[-1] == 40 and 3 <= len(evaluated) < 10  # by time, not every epoch
    assert info["eval_seconds"] == pytest.approx(3.0 * len(evaluated))
    assert info["eval_share"] == pytest.approx(info["eval_seconds"] / info["wall_time_s"])
    assert (
        info["eval_share"] <= 0.1 + 3.0 / info["wall_time_s"]
    )  # within the share, but for the last epoch's evaluation


def test_one_off_work_in_the_first_evaluation_counts_but_does_not_set_the_pace(tmp_path):
    trainer, clock = trainer_for(tmp_path, epochs=80, eval_every=1, eval_share=0.1)  # 400 s of training
    evaluated = []

    def fake_evaluation(epoch, step, last, log):  # the first one also trains the extractor: 30 s, then 1 s each
        evaluated.append(epoch)
        setup = 29.0 if len(evaluated) == 1 else 0.0
        clock.now += 1.0 + setup
        return setup

    trainer.evaluation = fake_evaluation
    trainer.fit()
    info = json.loads((trainer.out / "run.json").read_text())
    assert info["eval_seconds"] == pytest.approx(30.0 + len(evaluated) - 1)
    # paced by the 1 s evaluations once the total allows (paced by the first's 30 s, none would fit before the end)
    assert evaluated[0] == 1 and evaluated[-1] == 80 and len(evaluated) > 2
    assert info["eval_seconds"] <= 0.1 * info["wall_time_s"] + 1.0


def test_eval_share_one_evaluates_every_eval_every_epochs(tmp_path):
    trainer, clock = trainer_for(tmp_path, epochs=6, eval_every=2, eval_share=1.0)
    evaluated = []
    trainer.evaluation = lambda epoch, step, last, log: (
        evaluated.append(epoch) or setattr(clock, "now", clock.now + 100)
    )
    trainer.fit()
    assert evaluated == [2, 4, 6]
