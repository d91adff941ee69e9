"""The real-vs-real floors of a dataset: real train images scored like a generator against the test split.

The same ``evaluate`` a study uses (domain extractor, trained once and cached); a dataset whose train and
test splits differ shows it here, before any GAN is trained. Used to choose the built-in set's split.

    python benchmarks/real_floor.py [--dataset builtin] [--size 28] [--channels 1] [--n 1000]
"""

from __future__ import annotations

import argparse
import time

import torch

from medgan.data import load_dataset
from medgan.evaluation.evaluate import evaluate

SHOWN = ("fd_domain", "kid_domain", "precision_domain", "recall_domain", "coverage_domain", "c2st")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="builtin")
    parser.add_argument("--data-root")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int)
    parser.add_argument(
        "--n", type=int, default=1000, help="train images playing the generator (a study's eval_samples)"
    )
    args = parser.parse_args()
    train, test = (
        load_dataset(args.dataset, split, args.size, args.channels, args.data_root) for split in ("train", "test")
    )
    start = time.time()
    stand_in = train.uint8(torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[: args.n])
    metrics = evaluate(stand_in, train, test)["metrics"]
    print(
        f"{args.dataset} {args.size} px, {train.channels} channel(s): {args.n} train images vs {len(test)} test images "
        f"({time.time() - start:.0f} s with the extractor)"
    )
    for name in SHOWN:
        print(f"  {name:<18} floor {metrics[name]['floor']:.4g}")


if __name__ == "__main__":
    main()
