"""Does an EMA generator with batch norm need its statistics recomputed? Scores, on finished runs'
checkpoints, the raw generator, the EMA generator with the raw generator's copied batch-norm statistics
(what ``EMA.update`` keeps) and the EMA generator after ``standing_statistics`` over ``--batches`` batches.

    python benchmarks/ema_batchnorm.py /tmp/recipes_ema/pneumoniamnist/*/s0 --checkpoint checkpoints/at_20min.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from medgan.data import load_dataset
from medgan.evaluation.evaluate import evaluate
from medgan.rundir import RunDir, config_for_resume
from medgan.sample import generate
from medgan.train import Trainer

METRICS = ("c2st", "recall_domain", "fd_domain")


@torch.no_grad()
def standing_statistics(module: nn.Module, inputs) -> None:
    """Recompute ``module``'s batch-norm running statistics as the plain mean over forward passes of
    ``inputs`` (an iterable of argument tuples): BigGAN's "standing statistics". An averaged generator's
    layers see other activations than the raw generator whose statistics ``EMA.update`` copies."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes
        m.train()
    if norms:
        for args in inputs:
            module(*args)
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--checkpoint", default="last", choices=["last", "best"], help="which checkpoint of each run")
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    for run in args.runs:
        trainer = Trainer(config_for_resume(run, {}), progress=False, tensorboard=False)
        cfg = trainer.cfg
        trainer.load(RunDir(run).checkpoint(args.checkpoint))
        test = load_dataset(cfg.dataset, "test", cfg.size, cfg.channels, cfg.data_root or None)
        rng = torch.Generator().manual_seed(cfg.seed + 2)
        row = {}
        for name, generator in (("raw", trainer.generator), ("ema copied", trainer.ema.module)):
            images = generate(generator.eval(), args.samples, seed=cfg.seed)
            row[name] = evaluate(images, trainer.data, test, ("domain",), trainer.device, seed=cfg.seed)
        # Scored in place after the two above: the EMA net's copied statistics are overwritten.
        standing_statistics(
            trainer.ema.module,
            ((torch.randn(cfg.batch_size, cfg.latent_dim, generator=rng),) for _ in range(args.batches)),
        )
        images = generate(trainer.ema.module.eval(), args.samples, seed=cfg.seed)
        row["ema standing"] = evaluate(images, trainer.data, test, ("domain",), trainer.device, seed=cfg.seed)
        summary = {
            name: {m: round(v["metrics"][m]["value"], 4) for m in METRICS} | {"eval_s": round(v["seconds"], 1)}
            for name, v in row.items()
        }
        print(run, args.checkpoint, f"epoch {trainer.epoch}", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
