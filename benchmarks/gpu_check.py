"""One command that checks and measures medgan's CUDA path in about 5 minutes, writing each result as soon as it
has it (a machine that stops midway still leaves figures in OUT/gpu_check.jsonl):

1. the CUDA-marked tests (pytest -m cuda);
2. training steps per second, the real training step (``Trainer.train_step``) on data resident on the GPU, for
   mlp and dcgan at 28 and 64 px, lsgan and wgan-gp, fp32 and bf16, and for dcgan 28 px with torch.compile;
   with the share of wall time the GPU is busy (torch.profiler kernel time / wall time);
3. ``medgan train --recipe best`` for --minutes on BreastMNIST and PneumoniaMNIST (both at once), as the README
   writes it, with its in-training evaluation: epochs, eval share, final metrics;
4. packed runs: ``benchmarks/packed_throughput.py`` (K = 1..32), then the quickstart study with ``--pack 3`` and
   ``--pack off`` (wall seconds of each command).

    python benchmarks/gpu_check.py --data-root ../shared/data/medmnist --out gpu_out
    python benchmarks/gpu_check.py --device cpu --quick --minutes 0.1   # a smoke run of the script itself, on the CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from medgan.config import TrainConfig
from medgan.data import ImageSet
from medgan.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


class Results:
    """Appends one JSON line per result and prints it; nothing is held back until the end."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "gpu_check.jsonl"

    def put(self, **record) -> None:
        record["time"] = time.time()
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_images(n: int, size: int) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(
        torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=g),
        torch.zeros(n, 1, dtype=torch.long),
        "random",
        "train",
    )


def run_steps(trainer: Trainer, n: int) -> None:
    data, cfg = trainer.data, trainer.cfg
    index = torch.randint(0, len(data), (n, cfg.batch_size), device=data.images.device)
    for i in range(n):
        trainer.train_step(data.batch(index[i], trainer.device), generator_step=(i + 1) % cfg.n_critic == 0)


def busy_share(trainer: Trainer, n: int) -> float | None:
    """Kernel time / wall time over ``n`` steps (CUDA only)."""
    if trainer.device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    sync(trainer.device)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_steps(trainer, n)
        sync(trainer.device)
    wall = time.perf_counter() - start
    events = [e for e in prof.events() if e.device_type.name == "CUDA"]
    kernel_us = sum(getattr(e, "device_time", None) or getattr(e, "cuda_time", 0.0) for e in events)
    return kernel_us / 1e6 / wall


def time_training(
    results: Results,
    device: str,
    model: str,
    size: int,
    loss: str,
    precision: str,
    compile_mode: str | None,
    steps: int,
    out: Path,
) -> None:
    cfg = TrainConfig(
        model=model,
        size=size,
        loss=loss,
        precision=precision,
        device=device,
        batch_size=64,
        eval_every=0,
        out=str(out / "timing" / f"{model}-{size}-{loss}-{precision}-{compile_mode or 'eager'}"),
    )
    trainer = Trainer(cfg, data=random_images(2048, size), progress=False, tensorboard=False)
    if compile_mode:
        trainer.nets.generator = torch.compile(trainer.nets.generator, mode=compile_mode)  # what the step calls
        trainer.nets.augmented_d = torch.compile(trainer.nets.augmented_d, mode=compile_mode)
    started = time.perf_counter()
    run_steps(trainer, 20)  # warm-up (and compilation)
    sync(trainer.device)
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    run_steps(trainer, steps)
    sync(trainer.device)
    per_second = steps / (time.perf_counter() - started)
    results.put(
        kind="steps_per_s",
        model=model,
        size=size,
        loss=loss,
        precision=precision,
        compile=compile_mode or "off",
        steps_per_s=round(per_second, 1),
        warmup_s=round(warmup, 2),
        gpu_busy=busy_share(trainer, min(steps, 50)),
    )


def preset_best(dataset: str, data_root: str, minutes: float, device: str, out: Path) -> subprocess.Popen:
    """The README's recommended command, as a user runs it (with a shorter budget)."""
    command = [
        sys.executable,
        "-m",
        "medgan",
        "train",
        "--recipe",
        "best",
        "--dataset",
        dataset,
        "--data-root",
        data_root,
        "--max-minutes",
        str(minutes),
        "--device",
        device,
        "--no-progress",
        "--out",
        str(out / f"best-{dataset}"),
    ]
    return subprocess.Popen(command, stdout=open(out / f"best-{dataset}.log", "w"), stderr=subprocess.STDOUT)


def report_best(results: Results, dataset: str, process: subprocess.Popen, out: Path) -> None:
    code = process.wait()
    run = out / f"best-{dataset}"
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    evals = (
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "eval"' in line]
        if (run / "metrics.jsonl").exists()
        else []
    )
    final = evals[-1] if evals else {}
    results.put(
        kind="preset_best",
        dataset=dataset,
        exit_code=code,
        epochs=info.get("epochs_done"),
        wall_time_s=info.get("wall_time_s"),
        eval_seconds=info.get("eval_seconds"),
        eval_share=info.get("eval_share"),
        evaluations=len(evals),
        **{
            k: final.get(k)
            for k in ("c2st", "c2st_floor", "recall_domain", "recall_domain_floor", "fd_domain", "fd_domain_floor")
        },
    )


def time_quickstart(results: Results, device: str, pack: str, out: Path) -> None:
    """The README's quickstart study as written, plus ``--pack``: wall seconds of the whole command."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "medgan",
            "compare",
            "--preset",
            "quickstart",
            "--device",
            device,
            "--pack",
            pack,
            "--out",
            str(out / f"quickstart-pack-{pack}"),
        ],
        capture_output=True,
        text=True,
    )
    (out / f"quickstart-pack-{pack}.log").write_text(done.stdout + done.stderr)
    results.put(kind="quickstart", pack=pack, exit_code=done.returncode, wall_s=round(time.perf_counter() - started, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "medmnist"))
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    parser.add_argument("--minutes", type=float, default=3.0, help="budget of each --recipe best run")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per configuration")
    parser.add_argument(
        "--quick", action="store_true", help="a few steps and one configuration per kind: checks the script"
    )
    args = parser.parse_args()
    out = Path(args.out)
    results = Results(out)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    results.put(kind="machine", device=str(device), name=name, torch=torch.__version__, cpus=os.cpu_count())

    started = time.perf_counter()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests/test_cuda.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    results.put(
        kind="cuda_tests",
        exit_code=tests.returncode,
        summary=tests.stdout.strip().splitlines()[-1:],
        seconds=round(time.perf_counter() - started, 1),
    )

    runs = [
        (d, preset_best(d, args.data_root, args.minutes, args.device, out)) for d in ("breastmnist", "pneumoniamnist")
    ]
    steps = 5 if args.quick else args.steps
    grid = [
        (m, s, l, p) for m in ("mlp", "dcgan") for s in (28, 64) for l in ("lsgan", "wgan-gp") for p in ("fp32", "bf16")
    ]
    for model, size, loss, precision in grid[:2] if args.quick else grid:
        time_training(results, args.device, model, size, loss, precision, None, steps, out)
    if device.type == "cuda":
        for precision in ("fp32", "bf16"):
            for mode in ("default", "reduce-overhead"):
                time_training(results, args.device, "dcgan", 28, "lsgan", precision, mode, steps, out)
    packing = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "packed_throughput.py"),
            "--device",
            args.device,
            "--ks",
            "1,2" if args.quick else "1,2,4,8,16,32",
            "--steps",
            "2" if args.quick else "20",
        ],
        capture_output=True,
        text=True,
    )  # packed runs (issue 23): runs x steps per second against sequential
    (out / "packed_throughput.txt").write_text(packing.stdout + packing.stderr)
    results.put(kind="packed_throughput", exit_code=packing.returncode, table=packing.stdout.strip().splitlines())
    for dataset, process in runs:
        report_best(results, dataset, process, out)
    for pack in (
        () if args.quick else ("3", "off")
    ):  # packed first: it also pays for the built-in set's extractor (conservative)
        time_quickstart(results, args.device, pack, out)
    results.put(kind="done", seconds=round(time.perf_counter() - started, 1))


if __name__ == "__main__":
    main()
