import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from medgan import MedganError
from medgan.config import TrainConfig
from medgan.data import ImageSet
from medgan.files import load_torch
from medgan.losses import LOSSES, GANLoss, register
from medgan.rundir import config_for_resume, load_run
from medgan.train import NonFiniteLoss, Trainer


def tiny_data(n=160, size=28, channels=1, seed=0):
    """Bright squares at random places on a dark background, uint8 (n, C, size, size)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, channels, size, size), 20, dtype=torch.uint8)
    for i, (y, x) in enumerate(torch.randint(0, size - 8, (n, 2), generator=g).tolist()):
        images[i, :, y : y + 8, x : x + 8] = 230
    return ImageSet(images, torch.zeros(n, 1, dtype=torch.long), "tiny", "train")


def run(tmp_path, name="run", data=None, resume=False, hooks=(), **cfg):
    # checkpoints and sample grids every epoch: these tests are about what happens at epoch ends
    cfg = TrainConfig(
        **{
            "epochs": 1,
            "batch_size": 32,
            "log_every": 2,
            "width": 16,
            "eval_every": 0,
            "checkpoint_every_s": 0,
            "grid_every_s": 0,
            "out": str(tmp_path / name),
            **cfg,
        }
    )
    trainer = Trainer(cfg, data=data or tiny_data(), progress=False)
    trainer.step_hooks.extend(hooks)
    trainer.fit(resume=resume)
    return trainer


def records(run_dir, kind=None):
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r.get("kind") == kind]


def weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.generator.parameters()])


@pytest.mark.parametrize("model", ["mlp", "mlp-bn", "dcgan"])
@pytest.mark.parametrize("loss", ["gan", "lsgan", "wgan", "wgan-gp", "hinge"])
def test_every_loss_and_model_trains(tmp_path, model, loss):
    trainer = run(tmp_path, model=model, loss=loss, epochs=2)
    out = trainer.out
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_done"] == 2
    assert (out / "samples" / "epoch_002.png").stat().st_size > 0
    assert any((out / "tensorboard").iterdir())
    epochs = records(out, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in epochs)
    if loss.startswith("wgan"):
        assert "wasserstein" in epochs[0]
    assert ("gradient_penalty" in epochs[0]) == (loss == "wgan-gp")
    steps = records(out)
    assert steps and all("step_time_s" in r for r in steps)
    state = load_torch(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["batch_index"] == 0
    assert f"n_critic = {5 if loss.startswith('wgan') else 1}" in (out / "config.toml").read_text()


def test_generator_learns_something(tmp_path):
    before = Trainer(TrainConfig(out=str(tmp_path / "x")), data=tiny_data(), progress=False)
    w0 = weights(before)
    after = run(tmp_path, loss="lsgan", epochs=2)
    assert not torch.equal(w0, weights(after))


def test_same_seed_same_losses_other_seed_differs(tmp_path):
    a = records(run(tmp_path, "a", seed=3, epochs=2).out)
    b = records(run(tmp_path, "b", seed=3, epochs=2).out)
    c = records(run(tmp_path, "c", seed=4, epochs=2).out)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "step_time_s"} for r in rs]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


@pytest.mark.parametrize("loss", ["lsgan", "wgan-gp"])
def test_resume_gives_the_same_run(tmp_path, loss):
    full = run(tmp_path, "full", loss=loss, epochs=3, model="dcgan")
    part = run(tmp_path, "part", loss=loss, epochs=1, model="dcgan")
    resumed_cfg = config_for_resume(part.out, {"epochs": 3})
    resumed = Trainer(resumed_cfg, data=tiny_data(), progress=False)
    resumed.fit(resume=True)
    assert torch.equal(weights(full), weights(resumed))
    drop = lambda rs: [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in rs]
    assert drop(records(full.out, "epoch")) == drop(records(resumed.out, "epoch"))
    info = json.loads((resumed.out / "run.json").read_text())
    assert info["status"] == "finished" and len(info["segments"]) == 2


def test_conv_weights_are_channels_last_on_the_cpu_also_after_resume_and_for_sampling(tmp_path):
    """medgan.device.memory_format: oneDNN convolves NHWC without reordering (RESULTS.md "precision")."""
    part = run(tmp_path, "part", model="dcgan")
    resumed = run(tmp_path, "part", model="dcgan", epochs=2, resume=True)
    for net in (
        part.generator,
        part.discriminator,
        resumed.generator,
        resumed.discriminator,
        resumed.sampling_generator,
        load_run(part.out)[0],
    ):
        convs = [p for p in net.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs), type(net).__name__
        assert not all(p.is_contiguous() for p in convs), type(net).__name__


def test_sigint_mid_epoch_checkpoints_and_resumes_exactly(tmp_path):
    full = run(tmp_path, "full", epochs=2, loss="wgan")

    def interrupt(trainer):
        if trainer.step == 7:  # epoch 2 (5 steps per epoch), mid-epoch
            os.kill(os.getpid(), signal.SIGINT)

    stopped = run(tmp_path, "stopped", epochs=2, loss="wgan", hooks=[interrupt])
    assert stopped.stop_requested
    info = json.loads((stopped.out / "run.json").read_text())
    assert info["status"] == "interrupted"
    state = load_torch(stopped.out / "checkpoints" / "last.pt")
    assert (state["epoch"], state["batch_index"], state["step"]) == (1, 2, 7)
    resumed = run(tmp_path, "stopped", epochs=2, loss="wgan", resume=True)
    assert torch.equal(weights(full), weights(resumed))
    steps = [r["step"] for r in records(resumed.out)]
    assert steps == sorted(set(steps)), "resumed run must not duplicate metric records"


def test_sigint_on_the_last_step_of_an_epoch_finishes_the_epoch_and_resumes_exactly(tmp_path):
    full = run(tmp_path, "full", epochs=2)
    stopped = run(tmp_path, "stopped", epochs=2, hooks=[lambda t: t.step == 5 and os.kill(os.getpid(), signal.SIGINT)])
    state = load_torch(stopped.out / "checkpoints" / "last.pt")
    assert stopped.stop_requested and (state["epoch"], state["batch_index"], state["step"]) == (1, 0, 5)
    assert (stopped.out / "samples" / "epoch_001.png").exists() and not (
        stopped.out / "samples" / "epoch_002.png"
    ).exists()
    resumed = run(tmp_path, "stopped", epochs=2, resume=True)
    assert torch.equal(weights(full), weights(resumed))


def test_nan_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    def poison(trainer):
        if trainer.step == 7:  # epoch 2
            with torch.no_grad():
                next(trainer.discriminator.parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteLoss, match="non-finite .*last good checkpoint"):
        run(tmp_path, "nan", epochs=3, hooks=[poison])
    out = tmp_path / "nan"
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    state = load_torch(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())


def test_existing_run_needs_resume(tmp_path):
    run(tmp_path, "r")
    with pytest.raises(MedganError, match="--resume"):
        run(tmp_path, "r")
    with pytest.raises(MedganError, match="nothing to resume"):
        run(tmp_path, "fresh", resume=True)
    with pytest.raises(MedganError, match="cannot change loss"):
        config_for_resume(tmp_path / "r", {"loss": "wgan", "epochs": 3})


def test_new_loss_plugs_in_without_touching_the_trainer(tmp_path):
    @register("test-softplus-wgan")
    class SoftWasserstein(GANLoss):
        def d_from_scores(self, real_out, fake_out):
            return torch.nn.functional.softplus(fake_out - real_out).mean()

        def g_loss(self, fake_out):
            return -fake_out.mean()

    try:
        trainer = run(tmp_path, loss="test-softplus-wgan")
        assert records(trainer.out, "epoch")[0]["d_loss"] > 0
    finally:
        LOSSES.pop("test-softplus-wgan")


def test_batch_larger_than_data(tmp_path):
    with pytest.raises(MedganError, match="larger than the dataset"):
        run(tmp_path, batch_size=500)


@pytest.mark.parametrize(
    "options",
    [
        {"model": "resnet", "loss": "hinge", "spectral_norm": True},
        {"model": "resnet", "loss": "wgan-gp", "n_critic": 2},
        {"model": "dcgan", "loss": "gan", "r1": 1.0, "lr_d": 4e-4},
        {"model": "dcgan", "loss": "lsgan", "minibatch_std": True, "augment": "translation", "augment_target": 0.6},
        {"model": "resnet", "loss": "hinge", "spectral_norm": True, "minibatch_std": True},
        {"model": "mlp", "loss": "lsgan", "augment": "translation,cutout,color", "ema": 0.9},
    ],
)
def test_recipe_options_train(tmp_path, options):
    trainer = run(tmp_path, epochs=2, **options)
    epochs = records(trainer.out, "epoch")
    assert len(epochs) == 2 and all(math.isfinite(r["d_loss"]) for r in epochs)
    assert ("r1_penalty" in epochs[0]) == ("r1" in options)
    assert trainer.opt_d.param_groups[0]["lr"] == options.get("lr_d", 2e-4)
    assert trainer.opt_g.param_groups[0]["lr"] == 2e-4


@pytest.mark.parametrize("size", [28, 64, 128])
def test_best_preset_trains_at_every_size(tmp_path, size):
    from medgan.recipes import recipe

    settings = {
        **recipe("best", size),
        "width": 8,
        "epochs": 1,
        "batch_size": 32,
        "max_minutes": 0.0,
        "precision": "fp32",
    }
    trainer = run(tmp_path, data=tiny_data(n=64, size=size), **settings)
    assert trainer.step == 2 and all(torch.isfinite(p).all() for p in trainer.ema.module.parameters())
    assert "augment_p" in records(trainer.out, "epoch")[0]  # ADA at every size


def test_augmentation_reaches_d_for_real_and_fake(tmp_path):
    """With cutout, every batch D sees, real or generated, has its 14x14 square of zeros."""
    seen = []
    trainer = Trainer(
        TrainConfig(epochs=1, batch_size=32, width=16, eval_every=0, augment="cutout", out=str(tmp_path / "a")),
        data=tiny_data(),
        progress=False,
    )
    trainer.discriminator.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    trainer.train_step(trainer.data.batch(torch.arange(32), trainer.device), generator_step=True)
    assert len(seen) == 3  # real, fake (D step), fake (G step)
    assert all(((x == 0).flatten(1).sum(1) >= 14 * 14).all() for x in seen)


def test_ema_weights_differ_are_checkpointed_and_used_for_sampling(tmp_path):
    from medgan.rundir import load_run
    from medgan.sample import generate

    trainer = run(tmp_path, "ema", model="dcgan", epochs=2, ema=0.99)
    raw, avg = weights(trainer), torch.cat([p.flatten() for p in trainer.ema.module.parameters()])
    assert not torch.equal(raw, avg)
    assert trainer.ema.updates == trainer.step and trainer.sampling_generator is trainer.ema.module
    state = load_torch(trainer.out / "checkpoints" / "last.pt")
    loaded, _ = load_run(trainer.out)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), state["generator_ema"].values()))
    assert torch.equal(generate(loaded, 8, seed=1), generate(trainer.ema.module, 8, seed=1))
    assert not torch.equal(generate(loaded, 8, seed=1), generate(trainer.generator.eval(), 8, seed=1))


def test_resume_with_ema_and_adaptive_augment_gives_the_same_run(tmp_path):
    opts = {
        "model": "dcgan",
        "loss": "hinge",
        "ema": 0.99,
        "augment": "translation",
        "augment_target": 0.6,
        "spectral_norm": True,
    }
    full = run(tmp_path, "full", epochs=2, **opts)
    run(tmp_path, "part", epochs=1, **opts)
    resumed = Trainer(config_for_resume(tmp_path / "part", {"epochs": 2}), data=tiny_data(), progress=False)
    resumed.fit(resume=True)
    assert torch.equal(weights(full), weights(resumed))
    assert all(
        torch.equal(a, b)
        for a, b in zip(full.ema.module.state_dict().values(), resumed.ema.module.state_dict().values())
    )
    assert resumed.ada.p.item() == full.ada.p.item() == load_torch(full.out / "checkpoints" / "last.pt")["augment_p"]
    steps = records(full.out)
    assert steps and all(0 <= r["augment_p"] <= 1 and -1 <= r["d_real_sign"] <= 1 for r in steps)


@pytest.mark.parametrize("loss", ["lsgan", "wgan-gp"])
def test_bf16_precision_runs_forward_passes_in_bf16_and_keeps_fp32_weights(tmp_path, loss):
    seen = []
    cfg = TrainConfig(
        model="dcgan",
        loss=loss,
        epochs=2,
        batch_size=32,
        width=16,
        eval_every=0,
        precision="bf16",
        out=str(tmp_path / "b"),
    )
    trainer = Trainer(cfg, data=tiny_data(), progress=False)
    trainer.discriminator.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    trainer.fit()
    assert seen and set(seen) == {torch.bfloat16}
    epochs = records(trainer.out, "epoch")
    assert len(epochs) == 2 and all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in epochs)
    assert all(p.dtype == torch.float32 for net in (trainer.generator, trainer.discriminator) for p in net.parameters())
    assert all(v.dtype == torch.float32 for s in trainer.opt_d.state.values() for k, v in s.items() if k != "step")
    assert trainer.sample_grid().dtype == torch.float32


def test_bf16_losses_match_fp32_losses_for_the_same_weights(tmp_path):
    trainer = Trainer(
        TrainConfig(model="dcgan", width=16, eval_every=0, precision="bf16", out=str(tmp_path / "c")),
        data=tiny_data(),
        progress=False,
    )
    real = trainer.data.batch(torch.arange(64), trainer.device)
    fake = trainer.generator(torch.randn(64, 100, generator=torch.Generator().manual_seed(0))).detach()
    fp32, _ = trainer.loss.d_loss(trainer.augmented_d, real, fake)
    with trainer.autocast():
        bf16, _ = trainer.loss.d_loss(trainer.augmented_d, real, fake)
    assert bf16.item() != fp32.item()  # autocast is on
    assert abs(bf16.item() - fp32.item()) < 0.02 * abs(fp32.item())


@pytest.mark.parametrize(
    "options",
    [
        {"model": "mlp-bn", "loss": "gan"},
        {
            "model": "resnet",
            "loss": "hinge",
            "spectral_norm": True,
            "r1": 1.0,
            "augment": "translation,cutout,color",
            "ema": 0.9,
        },
        {"model": "dcgan", "loss": "lsgan", "minibatch_std": True},
        {
            "model": "progressive",
            "loss": "wgan-gp",
            "stages": "16:1,32",
            "size": 32,
            "fade_epochs": 0.5,
            "epochs": 2,
            "n_critic": 2,
        },
    ],
)
def test_bf16_trains_every_model_and_option(tmp_path, options):
    trainer = run(
        tmp_path, data=tiny_data(size=options.get("size", 28)), **{"epochs": 1, "precision": "bf16", **options}
    )
    assert all(math.isfinite(r["d_loss"]) for r in records(trainer.out, "epoch"))


def test_resume_may_switch_precision(tmp_path):
    run(tmp_path, "p", model="dcgan", epochs=1)
    cfg = config_for_resume(tmp_path / "p", {"epochs": 2, "precision": "bf16"})
    assert cfg.precision == "bf16"
    resumed = Trainer(cfg, data=tiny_data(), progress=False)
    resumed.fit(resume=True)
    assert resumed.epoch == 2 and 'precision = "bf16"' in (resumed.out / "config.toml").read_text()


def test_auto_precision_resolves_per_device_and_is_written_to_the_config(tmp_path, monkeypatch):
    from medgan.device import resolve_precision

    cpu = torch.device("cpu")

    def cpu_has(amx: bool, avx512_bf16: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)

    cpu_has(amx=True, avx512_bf16=False)
    assert resolve_precision("auto", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"
    trainer = Trainer(
        TrainConfig(precision="auto", eval_every=0, out=str(tmp_path / "a")), data=tiny_data(), progress=False
    )
    assert trainer.cfg.precision == "bf16"
    cpu_has(amx=False, avx512_bf16=True)  # e.g. AMD Zen 4
    assert resolve_precision("auto", cpu) == "bf16"
    cpu_has(amx=False, avx512_bf16=False)
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_max_minutes_finishes_the_run_after_the_epoch_past_the_budget_and_resume_can_extend_it(tmp_path):
    trainer = run(tmp_path, "budget", epochs=3, max_minutes=1e-6)  # the budget is over within the first epoch
    info = json.loads((tmp_path / "budget" / "run.json").read_text())
    assert trainer.epoch == 1 and trainer.last_epoch
    assert info["status"] == "finished" and info["stopped_by"] == "max_minutes" and info["epochs_done"] == 1
    cfg = config_for_resume(tmp_path / "budget", {"max_minutes": 1000.0})
    resumed = Trainer(cfg, data=tiny_data(), progress=False)
    resumed.fit(resume=True)
    info = json.loads((tmp_path / "budget" / "run.json").read_text())
    assert resumed.epoch == 3 and info["stopped_by"] == "epochs" and len(info["segments"]) == 2


def test_max_minutes_counts_earlier_segments(tmp_path):
    run(tmp_path, "seg", epochs=1, max_minutes=1000.0)
    spent = json.loads((tmp_path / "seg" / "run.json").read_text())["wall_time_s"]
    resumed = Trainer(
        config_for_resume(tmp_path / "seg", {"epochs": 5, "max_minutes": spent / 60 / 2}),
        data=tiny_data(),
        progress=False,
    )
    resumed.fit(resume=True)
    assert resumed.epoch == 2  # already past the budget before the resumed segment: one more epoch, then stop


@pytest.mark.slow
def test_evaluations_never_change_what_training_does(tmp_path, monkeypatch):
    """Evaluations run by the clock, so a resumed run may evaluate at other epochs: they must leave training's
    random state alone, with the extractor trained in the process or loaded from the cache (which built a net
    from the global generator before this was fixed)."""
    from conftest import write_medmnist

    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "20")
    monkeypatch.setenv("MEDGAN_CACHE", str(tmp_path / "cache"))
    root = write_medmnist(tmp_path / "data", n=(96, 16, 48))
    weights = {}
    for name, every in (
        ("first", 1),
        ("never", 0),
        ("every", 1),
        ("third", 3),
    ):  # "first" trains the extractor into the cache
        cfg = TrainConfig(
            dataset="pneumoniamnist",
            data_root=str(root),
            model="mlp",
            batch_size=16,
            eval_samples=64,
            epochs=4,
            eval_every=every,
            eval_share=1.0,
            out=str(tmp_path / name),
        )
        trainer = Trainer(cfg, progress=False, tensorboard=False)
        trainer.fit()
        weights[name] = trainer.generator.state_dict()
    for name in ("first", "every", "third"):
        assert all(torch.equal(weights["never"][k], weights[name][k]) for k in weights["never"]), name


@pytest.mark.slow
def test_floors_are_computed_once_per_data_and_kept_on_disk(tmp_path, monkeypatch):
    """Real-vs-real floors depend on the data, the extractor and the number of images, never on the run: a second
    run (another process: the per-process copy is cleared) reads them from the cache instead of computing them."""
    from conftest import write_medmnist
    from medgan.evaluation import during_training, evaluate

    monkeypatch.setenv("MEDGAN_DOMAIN_STEPS", "20")
    root = write_medmnist(tmp_path / "data", n=(96, 16, 48))
    computed = []
    original = evaluate._floors
    monkeypatch.setattr(evaluate, "_floors", lambda *a: computed.append(1) or original(*a))

    def final_eval(name, **changes):
        cfg = TrainConfig(
            **{
                "dataset": "pneumoniamnist",
                "data_root": str(root),
                "model": "mlp",
                "batch_size": 16,
                "eval_samples": 64,
                "epochs": 1,
                "out": str(tmp_path / name),
                **changes,
            }
        )
        Trainer(cfg, progress=False, tensorboard=False).fit()
        return records(tmp_path / name, "eval")[-1]

    first = final_eval("first")
    during_training._FLOORS.clear()  # a new process
    second = final_eval("second", seed=1)
    assert computed == [1] and len(list((Path(os.environ["MEDGAN_CACHE"]) / "floors").glob("*.json"))) == 1
    assert {k: v for k, v in first.items() if k.endswith("_floor")} == {
        k: v for k, v in second.items() if k.endswith("_floor")
    }
    final_eval("more", eval_samples=48)  # another number of images: other floors
    assert computed == [1, 1]
    during_training._FLOORS.clear()
    for cached in (Path(os.environ["MEDGAN_CACHE"]) / "floors").glob("*.json"):
        cached.write_text("{not json")
    final_eval("damaged")
    assert computed == [1, 1, 1]  # a damaged entry is computed again
