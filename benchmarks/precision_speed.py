"""Training step time at fp32 and bf16 (``--precision``), optionally with ``torch.compile`` or with the nets in
torch's default layout instead of medgan's (``device.memory_format``: channels_last on the CPU), in one process.

For each model, one Trainer per mode is built with the same seed on the same real batch; the modes are
timed round-robin (a block of steps each, repeated), so load from other processes hits them alike. Each
step is ``Trainer.train_step`` (D step + G step), the function ``fit()`` calls. Reported: median s/step
over the blocks and the speed-up against fp32.

    python benchmarks/precision_speed.py                          # dcgan and mlp, lsgan, 1 thread
    python benchmarks/precision_speed.py --models dcgan resnet --compile --threads 2
    python benchmarks/precision_speed.py --models best --preset best --dataset breastmnist --size 64 \\
        --contiguous --precisions fp32
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from medgan.config import TrainConfig
from medgan.data import load_dataset
from medgan.recipes import recipe
from medgan.train import Trainer

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"


def cpu_flags() -> str:
    try:
        flags = next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split()
    except (OSError, StopIteration):
        return "?"
    return " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "no avx512/bf16 flags"


def trainer_for(model: str, mode: tuple[str, str], data, out: Path, args) -> Trainer:
    precision, variant = mode
    settings = (
        recipe(args.preset, args.size)
        if args.preset
        else {"model": model, "loss": args.loss, "width": args.width, "size": args.size}
    )
    cfg = TrainConfig(
        **{
            **settings,
            "dataset": args.dataset,
            "precision": precision,
            "device": args.device,
            "eval_every": 0,
            "max_minutes": 0.0,
            "out": str(out),
        }
    )
    trainer = Trainer(cfg, data=data, progress=False, tensorboard=False)
    if variant == "contiguous":
        trainer.generator.to(memory_format=torch.contiguous_format)
        trainer.discriminator.to(memory_format=torch.contiguous_format)
    if variant == "compiled":
        nets = trainer.nets  # what the step calls
        nets.generator, nets.augmented_d = torch.compile(nets.generator), torch.compile(nets.augmented_d)
    return trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["dcgan", "mlp"])
    p.add_argument("--loss", default="lsgan")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--preset", default="", help="time this recipe's nets and loss (--models names the row only)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--data-root", default=str(DEFAULT_ROOT))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd G and D (fp32 and bf16)")
    p.add_argument(
        "--contiguous", action="store_true", help="also time the nets in torch's default layout (fp32 and bf16)"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, "train", args.size, None, args.data_root)
    print(
        f"torch {torch.__version__} | {args.device} | threads {torch.get_num_threads()} | {platform.machine()} "
        f"{cpu_flags()} | {args.dataset} {tuple(data.images.shape[1:])} batch 64 | "
        f"{args.preset and 'preset ' + args.preset or args.loss}"
    )
    variants = [""] + ["compiled"] * args.compile + ["contiguous"] * args.contiguous
    modes = [(precision, variant) for variant in variants for precision in args.precisions]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            trainers = {m: trainer_for(model, m, data, Path(tmp) / f"{model}-{m[0]}-{m[1]}", args) for m in modes}
            real = data.batch(torch.arange(64), trainers[modes[0]].device)
            for trainer in trainers.values():  # warm-up (and compilation)
                for _ in range(3):
                    trainer.train_step(real, generator_step=True)
            times = {m: [] for m in modes}
            for _ in range(args.blocks):
                for m, trainer in trainers.items():
                    if trainer.device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        record = trainer.train_step(real, generator_step=True)
                    float(record["d_loss"])  # wait for the device
                    times[m].append((time.perf_counter() - start) / args.steps)
            base = statistics.median(times[modes[0]])
            for m in modes:
                t = statistics.median(times[m])
                print(
                    f"  {model:8s} {m[0]} {m[1]:10s} {t:.4f} s/step  x{base / t:.2f} vs {modes[0][0]}  "
                    f"blocks {[round(x, 4) for x in times[m]]}"
                )


if __name__ == "__main__":
    main()
