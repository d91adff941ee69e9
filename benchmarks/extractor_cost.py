"""What the first evaluation of a fresh cache costs: training the domain extractor, then the real-vs-real floors.

For each ``--settings`` pair INPUT:TRAIN the domain extractor is trained in a fresh ``$MEDGAN_CACHE`` with
``domain.INPUT_SIZE`` = INPUT (features, and training, at most at that many px) and ``domain.TRAIN_SIZE`` = TRAIN
(training steps at most at that many px; 64:64 is medgan's default), and its CPU seconds and test AUC/ACC are
printed. With ``--floors N`` the floors' parts are then timed as
evaluation during training computes them (``evaluate._floors``: features of N real train images, C2ST of one real
train half against the other, best SSIM, diversity of the test split), through ``evaluate.Scorer``.

    OMP_NUM_THREADS=1 python benchmarks/extractor_cost.py --dataset breastmnist --size 64 --settings 64:64,32:32,64:32 \
        --data-root ../shared/data/medmnist --floors 2000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from medgan import data
from medgan.evaluation import domain


def timed(fn, cpu: dict | None = None, key: str = ""):
    """(fn(), wall seconds); with ``cpu``, also this process's CPU seconds as ``cpu[key]`` (one thread: what the
    wall time would be on a quiet core, since other jobs on the machine slow the wall clock, not the CPU clock)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    if cpu is not None:
        cpu[key] = time.process_time() - start_cpu
    return out, time.perf_counter() - start


def floors_cost(train, test, n: int, steps: int | None = None) -> dict:
    """Seconds of each part of the real-vs-real floors for ``n`` images (as ``evaluate._floors`` computes them)."""
    from medgan.evaluation.evaluate import Scorer

    extractor = domain.DomainExtractor(train, test, steps=steps)  # the cached one, just trained
    rng = torch.Generator().manual_seed(0)
    floor = train.uint8(torch.randperm(len(train), generator=rng)[:n])
    real_test = test.uint8()
    cpu: dict = {}
    scorer, _ = timed(lambda: Scorer({"domain": extractor}, real_test, train, 0, "cpu", 200), cpu, "reference_features")
    if hasattr(scorer, "features"):  # evaluate.py before its Batch
        timed(lambda: scorer.features(floor), cpu, "features")
        timed(lambda: scorer.c2st(scorer.real_b), cpu, "c2st")
    else:
        from medgan.evaluation.evaluate import Batch

        timed(lambda: Batch(scorer, floor).features, cpu, "features")
        timed(scorer.c2st_floor, cpu, "c2st")
    timed(lambda: scorer.ssim_best(floor), cpu, "ssim_best")
    timed(lambda: scorer.diversity(real_test), cpu, "diversity")
    cpu["total"] = sum(cpu.values())
    return {"n_floor": len(floor), "n_test": len(real_test), **{f"{k}_cpu_s": round(v, 1) for k, v in cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="breastmnist")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--data-root", default="../shared/data/medmnist")
    parser.add_argument("--settings", default="64:64", help="comma-separated INPUT:TRAIN sizes (default 64:64)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: domain.default_steps())")
    parser.add_argument("--floors", type=int, default=0, help="also time the floors for this many images")
    parser.add_argument("--out", default=None, help="append one JSON line per measurement here")
    args = parser.parse_args()

    train = data.load_dataset(args.dataset, "train", args.size, 1, args.data_root)
    test = data.load_dataset(args.dataset, "test", args.size, 1, args.data_root)
    print(f"torch threads: {torch.get_num_threads()}; {args.dataset} {args.size} px, {len(train)} train images")
    for setting in args.settings.split(","):
        domain.INPUT_SIZE, domain.TRAIN_SIZE = (int(v) for v in setting.split(":"))
        with tempfile.TemporaryDirectory() as cache:
            os.environ["MEDGAN_CACHE"] = cache
            cpu: dict = {}
            (_, info), seconds = timed(
                lambda: domain.load_or_train(train, test, steps=args.steps, verbose=False), cpu, "train"
            )
            row = {
                "dataset": args.dataset,
                "size": args.size,
                "input_size": info["input_size"],
                "train_size": info["train_size"],
                "steps": info["steps"],
                "train_cpu_s": round(cpu["train"], 1),
                "train_wall_s": round(seconds, 1),
                "test_auc": round(info["test_auc"], 4),
                "test_acc": round(info["test_acc"], 4),
            }
            if args.floors:
                row["floors"] = {
                    k: round(v, 1) if k.endswith("_s") else v
                    for k, v in floors_cost(train, test, args.floors, args.steps).items()
                }
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
