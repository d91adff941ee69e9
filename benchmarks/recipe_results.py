"""Sample quality of training recipes against the seed-style MLP baseline, per dataset and seed.

Each run is an ordinary ``medgan train`` run (resumable: re-running the command skips finished runs and
resumes interrupted ones) with a wall-time budget (``max_minutes = --minutes``): training stops at its
configured epochs or at the end of the first epoch past the budget, whichever comes first. The run is then
evaluated once with the domain extractor on ``--samples`` images from the sampling generator (EMA weights
when the recipe has them) against the real test split, beside each metric's real-vs-real floor. The table
(mean ± std over seeds; the floor's mean in brackets) is printed and written to OUT/results.md and
results.json.

    python benchmarks/recipe_results.py --recipes baseline dcgan small-data \\
        --datasets pneumoniamnist breastmnist --seeds 0 1 2 --minutes 45
    python benchmarks/recipe_results.py --recipes dcgan --seeds 0 1 2 --minutes 45 \\
        --snapshot-minutes 10 20 --set 'precision="bf16"'
    python benchmarks/recipe_results.py --table-only --out runs/recipes       # the table of every finished run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from medgan import files
from medgan.config import TrainConfig, from_dict
from medgan.data import load_dataset
from medgan.evaluation.evaluate import evaluate
from medgan.recipes import recipe
from medgan.rundir import RunDir, config_for_resume
from medgan.sample import generate
from medgan.train import Trainer

# References: the seed projects' recipe (seed 001: MLP nets, LSGAN, Adam 2e-4 (0.5, 0.999), batch 64, 50
# epochs) and a plain DCGAN with the same loss and optimiser (batch norm, no recipe options).
REFERENCES = {
    "baseline": {"model": "mlp", "loss": "lsgan", "epochs": 50},
    "dcgan": {"model": "dcgan", "loss": "lsgan", "epochs": 1000},
}
METRICS = ("c2st", "kid_domain", "precision_domain", "recall_domain", "fd_domain")


class Snapshot:
    """Epoch hook: keep the training state at the first epoch end after ``minutes`` of the run's training
    time (``already`` seconds before this segment): an equal-time comparison with shorter budgets, from the same run."""

    def __init__(self, minutes: float, path: Path, already: float):
        self.seconds, self.start, self.path = 60 * minutes, time.time() - already, path

    def __call__(self, trainer, log) -> None:
        if not self.path.exists() and time.time() - self.start > self.seconds:
            files.save_torch(self.path, trainer.state())


def snapshot_path(out: Path, minutes: float) -> Path:
    return out / "checkpoints" / f"at_{minutes:g}min.pt"


def config_for(
    name: str, dataset: str, seed: int, size: int, data_root: str, out: Path, overrides: dict, minutes: float
) -> TrainConfig:
    values = REFERENCES[name] if name in REFERENCES else recipe(name, size)
    return from_dict(
        {
            **values,
            **overrides,
            "dataset": dataset,
            "size": size,
            "seed": seed,
            "data_root": data_root,
            "out": str(out),
            "eval_every": 0,
            "max_minutes": minutes,
        }
    )


def run_one(cfg: TrainConfig, samples: int, snapshots: list[float] = ()) -> dict:
    out = Path(cfg.out)
    result_path = out / "recipe_result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    run = RunDir(out)
    resume = run.last_checkpoint.exists()
    trainer = Trainer(config_for_resume(out, {}) if resume else cfg, progress=False, tensorboard=False)
    info = run.read_info()
    if info.get("status") != "finished":
        budget = trainer.cfg.max_minutes or math.inf
        trainer.epoch_hooks += [
            Snapshot(m, snapshot_path(out, m), info.get("wall_time_s", 0.0)) for m in snapshots if m < budget
        ]
        trainer.fit(resume=resume)
    else:  # trained, not yet evaluated
        trainer.load(run.last_checkpoint)
    if trainer.stop_requested and trainer.batch_index:  # stopped by a signal mid-epoch: resume later
        raise KeyboardInterrupt
    if run.best_checkpoint.exists():  # keep_best: the state that scored best on the validation split
        trainer.load(run.best_checkpoint)
    info = run.read_info()
    test = load_dataset(cfg.dataset, "test", cfg.size, trainer.cfg.channels, cfg.data_root or None)

    def scores(generator: torch.nn.Module) -> dict:
        images = generate(generator.eval(), samples, seed=cfg.seed)
        return evaluate(images, trainer.data, test, ("domain",), trainer.device, seed=cfg.seed)["metrics"]

    def state_scores() -> dict:
        """The sampling generator's scores; with EMA on, also the raw generator's (a paired comparison)."""
        found = {"metrics": scores(trainer.sampling_generator)}
        return found | {"metrics_raw": scores(trainer.generator)} if trainer.ema else found

    result = {
        "recipe": out.parent.name,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "epochs": trainer.epoch,
        "train_minutes": info["wall_time_s"] / 60,
        **state_scores(),
        "config": trainer.cfg.to_dict(),
        "snapshots": {},
    }
    for m in snapshots:
        if snapshot_path(out, m).exists():
            trainer.load(snapshot_path(out, m))
            result["snapshots"][f"{m:g}"] = {"epochs": trainer.epoch, **state_scores()}
    files.write_json(result_path, result)
    return result


def table(results: list[dict]) -> str:
    import statistics as st

    head = (
        "| dataset | recipe | runs (seeds) | epochs | train min | " + " | ".join(f"{m} (floor)" for m in METRICS) + " |"
    )
    lines = [head, "|" + "---|" * (5 + len(METRICS))]
    groups: dict[tuple, list] = {}
    for r in results:
        groups.setdefault((r["dataset"], r["recipe"]), []).append(r)
    for (dataset, name), rs in groups.items():

        def cell(values, digits=3):
            return (
                f"{st.mean(values):.{digits}f} ± {st.stdev(values):.{digits}f}"
                if len(values) > 1
                else f"{values[0]:.{digits}f}"
            )

        row = [
            dataset,
            name,
            str(len(rs)),
            cell([r["epochs"] for r in rs], 0),
            cell([r["train_minutes"] for r in rs], 1),
        ]
        for m in METRICS:
            row.append(
                f"{cell([r['metrics'][m]['value'] for r in rs])} ({st.mean(r['metrics'][m]['floor'] for r in rs):.3f})"
            )
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["baseline", "dcgan", "small-data"],
        help="baseline, dcgan, or a training recipe (medgan train --recipe NAME)",
    )
    parser.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "breastmnist"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--minutes", type=float, default=45.0, help="training wall-time budget per run")
    parser.add_argument(
        "--snapshot-minutes", nargs="*", type=float, default=[], help="also evaluate each run as it was after M minutes"
    )
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument(
        "--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist")
    )
    parser.add_argument("--out", default="runs/recipes")
    parser.add_argument(
        "--table-only", action="store_true", help="train nothing: the table of every finished run under --out"
    )
    parser.add_argument("--set", nargs="*", default=[], help="config overrides KEY=VALUE (TOML values) for every run")
    args = parser.parse_args()
    from medgan.config import tomllib

    overrides = tomllib.loads("\n".join(args.set))
    print(
        f"torch {torch.__version__} | threads {torch.get_num_threads()} | "
        f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs"
    )
    results = (
        [json.loads(p.read_text()) for p in sorted(Path(args.out).glob("*/*/s*/recipe_result.json"))]
        if args.table_only
        else []
    )
    for dataset in [] if args.table_only else args.datasets:
        for name in args.recipes:
            for seed in args.seeds:
                label = "+".join([name, *(f"{k}={v}" for k, v in overrides.items() if name != "baseline")])
                out = Path(args.out) / dataset / label / f"s{seed}"
                cfg = config_for(
                    name,
                    dataset,
                    seed,
                    args.size,
                    args.data_root,
                    out,
                    overrides if name != "baseline" else {},
                    args.minutes if name != "baseline" else 0.0,
                )  # the seed baseline: its 50 epochs
                result = run_one(cfg, args.samples, args.snapshot_minutes)
                results.append(result)
                print(
                    dataset,
                    name,
                    seed,
                    f"{result['epochs']} epochs {result['train_minutes']:.1f} min",
                    {m: round(result["metrics"][m]["value"], 4) for m in METRICS},
                    flush=True,
                )
    at_snapshots = [
        r | {"recipe": f"{r['recipe']} @ {m} min", **snap, "train_minutes": float(m)}
        for r in results
        for m, snap in r.get("snapshots", {}).items()
    ]
    states = results + at_snapshots
    raw = [r | {"recipe": f"{r['recipe']} (raw G)", "metrics": r["metrics_raw"]} for r in states if "metrics_raw" in r]
    text = table(states + raw)
    print(text)
    files.write_text(Path(args.out) / "results.md", text + "\n")
    files.write_json(Path(args.out) / "results.json", results)


if __name__ == "__main__":
    main()
