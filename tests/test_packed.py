"""Packed runs (medgan.packed): member k of a pack is the unpacked run with its seed, step for step."""

import json
from pathlib import Path

import pytest
import torch

from medgan import MedganError, MedganWarning
from medgan.config import TrainConfig
from medgan.files import load_torch
from medgan.packed import Pack, pack_key, stacked_module
from medgan.sample import generate, generate_for_run
from medgan.train import Trainer
from test_train import tiny_data

BASE = {
    "epochs": 2,
    "batch_size": 32,
    "log_every": 1,
    "width": 8,
    "eval_every": 0,
    "checkpoint_every_s": 0,
    "grid_every_s": 0,
}
ATOL = 2e-5  # a vmapped convolution adds in another order than a plain one


@pytest.fixture(autouse=True)
def default_layout(monkeypatch):
    """The unpacked runs in the layout of a pack's stacked weights (torch.stack's, the default): on the CPU they would
    be channels_last (device.memory_format), whose kernels add in another order than a vmapped one, beyond ATOL."""
    monkeypatch.setattr("medgan.train.memory_format", lambda device: torch.contiguous_format)


def assert_close(x, y, name=""):
    """Equal up to rounding. Adam turns a rounding-level gradient into a step of ~lr (2e-4) (a sign flip, or a bias
    before batch norm, whose true gradient is 0), so: every weight within a few steps of lr, 99% within ATOL."""
    diff = (x.float() - y.float()).abs()
    assert diff.max() <= 2e-3 and (diff > ATOL).float().mean() <= 0.01, (
        name,
        diff.max().item(),
        (diff > ATOL).sum().item(),
    )


def configs(tmp_path, seeds=(0, 1, 2), losses=None, folder="pack", **settings):
    losses = losses or ["lsgan"] * len(seeds)
    return [
        TrainConfig(**{**BASE, **settings, "seed": s, "loss": l, "out": str(tmp_path / folder / f"s{s}-{l}")})
        for s, l in zip(seeds, losses)
    ]


def fit_pack(cfgs, data, resume=False):
    pack = Pack(cfgs, data=data, progress=False, tensorboard=False)
    pack.fit(resume=resume)
    return pack


def fit_alone(cfg, data, tmp_path):
    trainer = Trainer(
        cfg.replace(out=str(tmp_path / "alone" / f"s{cfg.seed}-{cfg.loss}")),
        data=data,
        progress=False,
        tensorboard=False,
    )
    trainer.fit()
    return trainer


def logged(out):
    """Every value the run logged per step (losses, D's scores, penalties, ADA's p), timings left out."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "step_time_s"} for r in rows if "kind" not in r]


def assert_same_logs(out_a, out_b, tolerance):
    """The two runs logged the same values row by row (pytest.approx takes one dict, not a list of them)."""
    for a, b in zip(logged(out_a), logged(out_b), strict=True):
        assert a == pytest.approx(b, abs=tolerance)


def assert_same_run(member, alone):
    assert_same_logs(member.out, alone.out, 1e-4)
    nets = [(member.generator, alone.generator), (member.discriminator, alone.discriminator)]
    for mine, theirs in nets + ([(member.ema.module, alone.ema.module)] if alone.ema else []):
        assert_close(flat(mine), flat(theirs), type(mine).__name__)


def flat(net):
    """Every floating-point parameter and buffer of ``net`` as one vector."""
    return torch.cat([t.detach().float().flatten() for t in net.state_dict().values() if t.is_floating_point()])


CASES = {
    "lsgan": {},
    "wgan-gp": {"losses": ["wgan-gp"] * 3},
    "wgan (clipping)": {"losses": ["wgan"] * 2, "seeds": (0, 1), "model": "mlp"},
    "r1 + spectral norm": {"r1": 1.0, "spectral_norm": True, "loss_": "hinge"},
    "ema + ada + minibatch-std": {
        "ema": 0.99,
        "augment": "translation,cutout",
        "augment_target": 0.6,
        "minibatch_std": True,
    },
    "mixed losses": {"losses": ["gan", "lsgan", "hinge"]},
    "mlp-bn": {"model": "mlp-bn"},
    "resnet": {"model": "resnet", "spectral_norm": True, "seeds": (0, 1), "losses": ["hinge"] * 2, "epochs": 1},
    "adam, sizes, n_critic": {
        "lr": 5e-4,
        "lr_d": 1e-3,
        "beta1": 0.0,
        "beta2": 0.9,
        "latent_dim": 16,
        "width": 4,
        "n_critic": 2,
        "batch_size": 16,
        "seeds": (0, 1),
        "epochs": 1,
    },
}

# Every TrainConfig setting is either compared above (a pack's member against its unpacked run), or named here with
# why it needs no comparison. A new setting fails test_every_setting_is_compared_packed_and_alone until it is one of
# the two: then the two ways of running cannot drift apart unseen.
NOT_COMPARED = {
    "what data and where": {"dataset", "data_root", "size", "channels", "out", "device"},
    "the same for a pack and its runs, one decision for all (bookkeeping, no step)": {
        "epochs",
        "max_minutes",
        "log_every",
        "grid_size",
        "eval_every",
        "eval_share",
        "checkpoint_every_s",
        "grid_every_s",
        "eval_samples",
        "keep_best",
        "seed",
        "loss",
    },
    "not packable (medgan.packed.unsupported)": {
        "conditional",
        "n_classes",
        "multi_label",
        "stages",
        "fade_epochs",
        "precision",  # bf16: refused
    },
}


@pytest.mark.parametrize("case", CASES)
def test_member_matches_its_unpacked_run(tmp_path, case):
    settings = dict(CASES[case])
    if "loss_" in settings:
        settings["losses"] = [settings.pop("loss_")] * 3
    settings.setdefault("model", "dcgan")
    data = tiny_data(n=96)
    pack = fit_pack(configs(tmp_path, **settings), data)
    for member in pack.members:
        assert_same_run(member, fit_alone(member.cfg, data, tmp_path))


def test_every_setting_is_compared_packed_and_alone():
    from dataclasses import fields

    compared = {key for case in CASES.values() for key in case} | {"model", "loss", "seed"} | set(BASE)
    compared |= {"r1", "spectral_norm"}  # the "r1 + spectral norm" case
    named = set().union(*NOT_COMPARED.values())
    missing = {f.name for f in fields(TrainConfig)} - compared - named
    assert not missing, (
        f"settings no packed-vs-alone case covers: {sorted(missing)} (add a CASE or a NOT_COMPARED reason)"
    )


def test_ada_probability_is_per_member(tmp_path):
    pack = fit_pack(configs(tmp_path, augment="translation", augment_target=0.6), tiny_data(n=96))
    assert all(m.ada.p.item() > 0 for m in pack.members)  # compared with the unpacked runs' in the cases above


def test_a_members_gradient_ignores_the_other_members_inputs():
    torch.manual_seed(0)
    nets = [TrainConfig(model="dcgan", width=8, channels=1, size=28) for _ in range(3)]
    from medgan.nets import nets_for
    from medgan.packed import Vmapped

    ds = [nets_for(cfg)[1] for cfg in nets]
    run = Vmapped(stacked_module(ds))
    x = torch.randn(3, 8, 1, 28, 28)

    def grad_of_member_0(inputs):
        run.params["head.weight"].grad = None
        run(inputs)[0].sum().backward()
        return run.params["head.weight"].grad.clone()

    before = grad_of_member_0(x)
    changed = x.clone()
    changed[1:] = torch.randn_like(changed[1:])
    after = grad_of_member_0(changed)
    assert torch.equal(before[0], after[0]) and not before[1:].any() and not after[1:].any()


def test_members_checkpoints_hold_their_own_slice_and_resume_alone(tmp_path):
    data = tiny_data(n=96)
    pack = fit_pack(configs(tmp_path, epochs=1, model="dcgan"), data)
    member = pack.members[1]
    state = load_torch(member.run.last_checkpoint)
    weight = state["generator"]["project.0.weight"]
    assert weight.shape == member.generator.project[0].weight.shape
    assert weight.untyped_storage().nbytes() == weight.numel() * weight.element_size()  # not the whole stack
    assert torch.equal(weight, member.generator.project[0].weight) and not torch.equal(
        weight, pack.members[0].generator.project[0].weight
    )
    assert state["opt_g"]["state"][0]["exp_avg"].shape == weight.shape
    images, _, _ = generate_for_run(member.out, 6, seed=3, device="cpu")  # what `medgan sample` does
    with member.sampling() as generator:  # the member's generator in the pack
        assert torch.equal(images, generate(generator, 6, seed=3))
    # split out: the member's folder is an ordinary run, resumed alone for a second epoch
    alone = Trainer(member.cfg.replace(epochs=2), data=data, progress=False, tensorboard=False)
    alone.fit(resume=True)
    reference = fit_alone(member.cfg.replace(epochs=2), data, tmp_path)
    assert_same_run(alone, reference)


def test_a_pack_resumes_exactly(tmp_path):
    data = tiny_data(n=96)
    whole = fit_pack(configs(tmp_path, folder="whole", epochs=2, ema=0.99), data)
    fit_pack(configs(tmp_path, folder="split", epochs=1, ema=0.99), data)
    resumed = fit_pack(configs(tmp_path, folder="split", epochs=2, ema=0.99), data, resume=True)
    for a, b in zip(resumed.members, whole.members):
        assert_close(flat(a.generator), flat(b.generator))
        assert_same_logs(a.out, b.out, 1e-5)


def test_what_cannot_be_packed_is_named(tmp_path):
    data = tiny_data(n=96)
    with pytest.raises(MedganError, match="differ in width"):
        Pack(
            configs(tmp_path, seeds=(0, 1), losses=["lsgan", "lsgan"])[:1]
            + configs(tmp_path, seeds=(1,), losses=["lsgan"], width=16),
            data=data,
        )
    with pytest.raises(MedganError, match="n_critic or gradient penalty"):
        Pack(configs(tmp_path, seeds=(0, 1), losses=["lsgan", "wgan-gp"]), data=data)
    with pytest.raises(MedganError, match="progressive"):
        Pack(configs(tmp_path, seeds=(0, 1), model="progressive"), data=data)
    with pytest.raises(MedganError, match="bf16"):  # found by comparing a bf16 pack with its runs: it failed
        Pack(configs(tmp_path, seeds=(0, 1), precision="bf16"), data=data)
    assert pack_key(TrainConfig(seed=1, loss="gan")) == pack_key(TrainConfig(seed=2, loss="hinge"))
    assert pack_key(TrainConfig(loss="wgan")) != pack_key(TrainConfig(loss="wgan-gp"))


@pytest.mark.slow
def test_compare_packs_runs_into_ordinary_folders_with_the_same_results(tiny_study, monkeypatch):
    from medgan.study.compare import compare

    packs = []
    original = Pack.fit
    monkeypatch.setattr(
        Pack,
        "fit",
        lambda self, resume=False: packs.append([m.cfg.seed for m in self.members]) or original(self, resume),
    )
    packed = compare(tiny_study, pack="4")
    assert packs == [[0, 1, 0, 1]]  # lsgan and hinge share n_critic and have no penalty: one pack of four
    tiny_study.out += "-alone"
    alone = compare(tiny_study, pack="off")
    assert [r["name"] for r in packed["runs"]] == [r["name"] for r in alone["runs"]]
    for a, b in zip(packed["runs"], alone["runs"]):
        assert a["status"] == b["status"] == "finished" and a["steps"] == b["steps"]
        assert a["metrics"]["fd_domain"] == pytest.approx(b["metrics"]["fd_domain"], rel=0.02)
        assert (Path(a["dir"]) / "checkpoints" / "last.pt").exists() and json.loads(
            (Path(a["dir"]) / "run.json").read_text()
        )["status"] == "finished"


@pytest.mark.slow
def test_a_failing_pack_goes_on_run_by_run(tiny_study, nan_loss):
    from medgan.study.compare import compare

    tiny_study.losses = ["lsgan", nan_loss]
    with pytest.warns(MedganWarning, match="its runs go on one at a time"):
        results = compare(tiny_study, pack="4")
    status = {r["name"]: r["status"] for r in results["runs"]}
    assert status == {
        "mlp-lsgan-s0": "finished",
        "mlp-lsgan-s1": "finished",
        "mlp-test-nan-s0": "failed",
        "mlp-test-nan-s1": "failed",
    }


def test_pack_values():
    from medgan.study.compare import pack_size

    assert pack_size("off") == 1 and pack_size("auto") is None and pack_size("8") == 8
    with pytest.raises(MedganError, match="--pack must be"):
        pack_size("many")


def test_auto_packs_only_where_measured_faster(monkeypatch):
    import medgan.packed as packed

    cfgs = [TrainConfig(model="dcgan", seed=s, channels=1) for s in range(20)]
    monkeypatch.setattr(packed, "step_seconds", lambda *a, **k: pytest.fail("measured on a CPU"))
    assert packed.auto_pack_size(cfgs) == 1  # the CPU: measured slower in benchmarks/RESULTS.md, not re-measured
    monkeypatch.setattr(packed, "resolve_device", lambda device: torch.device("meta"))  # any device but the CPU
    for timing, expected in (((2.0, 1.0), 16), ((1.0, 2.0), 1)):
        monkeypatch.setattr(
            packed,
            "step_seconds",
            lambda trial, data, timing=timing: timing if len(trial) == 16 else pytest.fail(len(trial)),
        )
        assert packed.auto_pack_size(cfgs) == expected
    assert packed.auto_pack_size(cfgs[:1]) == 1


def test_step_seconds_times_both_ways(tmp_path):
    from medgan.packed import step_seconds

    sequential, packed = step_seconds(configs(tmp_path, seeds=(0, 1), model="dcgan"), tiny_data(n=96), steps=1)
    assert sequential > 0 and packed > 0 and not any((tmp_path / "pack").glob("*/run.json"))
