"""The CUDA path (skipped without a GPU: CI has none; benchmarks/gpu_check.py runs these on one)."""

import pytest
import torch

from medgan.config import TrainConfig
from medgan.rundir import load_run
from medgan.sample import generate
from medgan.train import Trainer
from test_train import tiny_data

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)"),
]


def config(tmp_path, name, **changes):
    return TrainConfig(
        **{
            "model": "dcgan",
            "width": 16,
            "epochs": 2,
            "batch_size": 32,
            "eval_every": 0,
            "out": str(tmp_path / name),
            **changes,
        }
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_cuda_keeps_the_data_on_the_gpu_and_samples_anywhere(tmp_path, precision):
    trainer = Trainer(
        config(tmp_path, precision, device="cuda", precision=precision),
        data=tiny_data(),
        progress=False,
        tensorboard=False,
    )
    assert trainer.data.images.device.type == "cuda" and trainer.data.images.dtype == torch.uint8
    trainer.fit()
    assert trainer.step == 10 and all(torch.isfinite(p).all() for p in trainer.generator.parameters())
    generator, _ = load_run(trainer.out, device="cpu")
    images = generate(generator, 8)
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.uint8


def test_the_same_seed_starts_from_the_same_weights_on_cpu_and_cuda(tmp_path):
    on_gpu = Trainer(config(tmp_path, "gpu", device="cuda"), data=tiny_data(), progress=False, tensorboard=False)
    on_cpu = Trainer(config(tmp_path, "cpu", device="cpu"), data=tiny_data(), progress=False, tensorboard=False)
    for a, b in zip(on_gpu.generator.state_dict().values(), on_cpu.generator.state_dict().values()):
        assert torch.equal(a.cpu(), b)


def test_resume_on_cuda_continues_the_run(tmp_path):
    cfg = config(tmp_path, "resume", device="cuda", epochs=1)
    Trainer(cfg, data=tiny_data(), progress=False, tensorboard=False).fit()
    resumed = Trainer(cfg.replace(epochs=2), data=tiny_data(), progress=False, tensorboard=False)
    resumed.fit(resume=True)
    assert resumed.step == 10


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_packed_member_on_cuda_follows_its_own_run(tmp_path, precision):
    from medgan.packed import Pack
    from test_packed import assert_same_run

    cfgs = [
        config(
            tmp_path,
            f"pack/s{s}",
            device="cuda",
            precision=precision,
            seed=s,
            ema=0.99,
            augment="translation",
            log_every=1,
        )
        for s in (0, 1)
    ]
    pack = Pack(cfgs, data=tiny_data(), progress=False, tensorboard=False)
    pack.fit()
    for member in pack.members:
        alone = Trainer(
            member.cfg.replace(out=str(tmp_path / f"alone-s{member.cfg.seed}")),
            data=tiny_data(),
            progress=False,
            tensorboard=False,
        )
        alone.fit()
        if precision == "fp32":  # bf16 rounds differently in a vmapped net: only check it trains
            assert_same_run(member, alone)
    assert all(torch.isfinite(p).all() for m in pack.members for p in m.generator.parameters())
