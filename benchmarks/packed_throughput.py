"""Packed runs against runs one after another, in one process: runs x steps per second of each, and their ratio.

What is timed is what medgan runs: packed, ``medgan.step.gan_step`` over a pack's nets for K members (one vmapped G
and D for all, one fused Adam over the stacked tensors, each member's noise drawn in its own random stream);
sequential, K ``Trainer.train_step`` calls, one per run (what ``medgan compare --pack off`` does). One step = one
LSGAN D step and one G step per run, batch 64 per run, width 32, 28 px, on random images resident on the device
(throughput does not depend on content). Nothing is written: the runs' folders are never opened.

    python benchmarks/packed_throughput.py [--models mlp,dcgan] [--ks 1,2,4,8,16,32] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import tempfile

import torch

from medgan.config import TrainConfig
from medgan.data import ImageSet
from medgan.packed import step_seconds


def configs(model: str, k: int, device: str, out: str) -> list[TrainConfig]:
    return [
        TrainConfig(
            model=model,
            loss="lsgan",
            width=32,
            channels=1,
            size=28,
            seed=seed,
            device=device,
            eval_every=0,
            out=f"{out}/s{seed}",
        )
        for seed in range(k)
    ]


def random_images(n: int = 1024) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(
        torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
        torch.zeros(n, 1, dtype=torch.long),
        "random",
        "train",
    )


def measure(model: str, k: int, steps: int, device: str) -> tuple[float, float]:
    """(sequential, packed) seconds per step of all K runs.

    Measured by ``medgan.packed.step_seconds``, what ``--pack auto`` uses."""
    with tempfile.TemporaryDirectory() as out:
        return step_seconds(configs(model, k, device, out), random_images(), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,dcgan")
    parser.add_argument("--ks", default="1,2,4,8,16,32")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    )
    print(
        f"device {args.device} ({name}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), batch 64 per run"
    )
    print("model  K   sequential runs*steps/s   packed runs*steps/s   packed / sequential")
    for model in args.models.split(","):
        for k in map(int, args.ks.split(",")):
            seconds_seq, seconds_packed = measure(model, k, args.steps, args.device)
            print(
                f"{model:<6} {k:<3} {k / seconds_seq:>24.1f} {k / seconds_packed:>21.1f} "
                f"{seconds_seq / seconds_packed:>21.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
