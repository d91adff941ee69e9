"""How precise is C2ST? The same real and "generated" images scored with several seeds, per setting.

Real images: a fixed 1,080-image subset of PneumoniaMNIST train (RetinaMNIST's train size). "Generated":
the other 3,628 train images, either untouched ("same": the answer is 0.5) or each with Gaussian noise of
its own strength, std uniform in [0, --noise] of the 0..255 range ("noise": a generator whose images are
sometimes fine and sometimes visibly off), or half of them blurred (sigma 0.5 px, disturb level 1; "blur").

Per setting: mean, max - min and std of the accuracy over the seeds, the coverage (share of the seeds'
values inside the first seed's interval), the mean reported std and interval, CPU and wall seconds per
evaluation, and an independent cross-fitted classifier (scikit-learn HistGradientBoosting on simple
pixel / gradient / histogram features, 5-fold cross_val_predict) on the same balanced sample.

    OMP_NUM_THREADS=1 python benchmarks/c2st_noise.py --sets noise,same --settings old,k2,k5 --seeds 3
    OMP_NUM_THREADS=1 python benchmarks/c2st_noise.py --sets noise --settings k5 --seeds 20

Settings: ``old`` = the previous C2ST (one CNN, 200 fixed steps on one half, tested on the other half);
``k<K>`` / ``k<K>r<R>`` = medgan's cross-fitted C2ST with K folds and R repeats (early stopping, default cap);
``k<K>s<S>`` = K folds, early stopping off, S fixed steps per classifier.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medgan.data import to_float
from medgan.evaluation.c2st import c2st, wilson_interval
from medgan.evaluation.disturb import gaussian_blur
from medgan.evaluation.domain import DomainNet

DATA = Path("/work/shared/data/medmnist/pneumoniamnist.npz")  # --data: any MedMNIST .npz


def image_sets(n_real: int, noise: float, path: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The fixed real images and the "generated" sets, uint8 (N, 1, 28, 28)."""
    with np.load(path) as arrays:
        x = torch.from_numpy(arrays["train_images"])[:, None]
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    real, pool = x[perm[:n_real]], x[perm[n_real:]]
    g = torch.Generator().manual_seed(1)
    std = torch.rand(len(pool), 1, 1, 1, generator=g) * (noise * 255)
    noisy = (pool.float() + torch.randn(pool.shape, generator=g) * std).round().clamp(0, 255).to(torch.uint8)
    half = torch.rand(len(pool), generator=g) < 0.5
    blurred = torch.where(half[:, None, None, None], gaussian_blur(pool, 1), pool)
    return real, {"noise": noisy, "same": pool, "blur": blurred}


def c2st_fixed200(real, fake, steps=200, batch_size=128, width=16, seed=0, device="cpu") -> dict:
    """The previous C2ST, verbatim in its logic: one CNN, 200 steps on one half, accuracy on the other."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = torch.Generator().manual_seed(seed)
        n = min(len(real), len(fake))
        images = torch.cat(
            [real[torch.randperm(len(real), generator=rng)[:n]], fake[torch.randperm(len(fake), generator=rng)[:n]]]
        )
        labels = torch.cat([torch.ones(n), torch.zeros(n)])
        order = torch.randperm(2 * n, generator=rng)
        train, test = order[:n], order[n:]
        net = DomainNet(images.shape[1], 1, width).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        net.train()
        for _ in range(steps):
            index = train[torch.randint(0, len(train), (min(batch_size, len(train)),), generator=rng)]
            _, logits = net(to_float(images[index].to(device)))
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], labels[index].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net = net.for_inference()
        with torch.inference_mode():
            predictions = torch.cat(
                [net(to_float(chunk.to(device)))[1][:, 0].cpu() > 0 for chunk in images[test].split(1024)]
            )
        correct = int((predictions == labels[test].bool()).sum())
    low, high = wilson_interval(correct, len(test))
    return {"accuracy": correct / len(test), "ci95_low": low, "ci95_high": high, "n_test": len(test), "std": 0.0}


def features(images: torch.Tensor) -> np.ndarray:
    """Simple per-image features: 7x7 means, intensity histogram and quantiles, gradient and high-pass energy."""
    x = images.float()[:, 0] / 255
    pooled = F.avg_pool2d(x[:, None], 4).flatten(1)
    hist = torch.stack([torch.histc(im, 16, 0, 1) for im in x]) / x[0].numel()
    q = torch.quantile(x.flatten(1), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95]), dim=1).T
    dx, dy = (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1), (x[:, 1:] - x[:, :-1]).abs().flatten(1)
    blur = F.avg_pool2d(F.pad(x[:, None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[:, 0]
    high = (x - blur).flatten(1)
    energy = [
        dx.mean(1),
        dy.mean(1),
        dx.median(1).values,
        dy.median(1).values,
        high.abs().mean(1),
        high.std(1),
        high.abs().median(1).values,
    ]
    # local high-pass energy on a 7x7 grid and its lowest values: added noise shows first in smooth regions
    local = F.avg_pool2d((x - blur)[:, None] ** 2, 4).flatten(1).sqrt()
    lowest = local.sort(1).values[:, :8]
    # how often neighbours are equal or one grey level apart (uint8 noise breaks such runs)
    steps = [(d * 255).round() for d in (dx, dy)]
    runs = torch.stack([(d <= t).float().mean(1) for d in steps for t in (0, 1, 2)], 1)
    parts = [pooled, hist, q, torch.stack(energy, 1), x.flatten(1).std(1, keepdim=True), local, lowest, runs]
    return torch.cat(parts, 1).numpy()


def independent(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> float:
    """Cross-fitted (5-fold) accuracy of HistGradientBoosting on ``features``, same balancing as C2ST."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n = min(len(real), len(fake))
    rng = torch.Generator().manual_seed(seed)
    x = np.concatenate(
        [
            features(real[torch.randperm(len(real), generator=rng)[:n]]),
            features(fake[torch.randperm(len(fake), generator=rng)[:n]]),
        ]
    )
    y = np.r_[np.ones(n), np.zeros(n)]
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, early_stopping=True, random_state=seed)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float((cross_val_predict(model, x, y, cv=folds) == y).mean())


def run_setting(setting: str, real, fake, seed: int) -> dict:
    if setting == "old":
        return c2st_fixed200(real, fake, seed=seed)
    match = re.fullmatch(r"k(\d+)(?:r(\d+))?(?:s(\d+))?(?:p(\d+))?", setting)
    if not match:
        raise SystemExit(f"unknown setting {setting}")
    folds, repeats, steps, patience = match.groups()
    kwargs = {"folds": int(folds), "repeats": int(repeats or 1), "seed": seed}
    if steps:
        kwargs["steps"] = int(steps)
        kwargs["patience"] = int(patience or 0)
    elif patience:
        kwargs["patience"] = int(patience)
    return c2st(real, fake, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="noise,same")
    parser.add_argument("--settings", default="old,k2,k5")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--summarise", nargs="+", type=Path, help="only the table, from these logs' seed lines")
    parser.add_argument("--n-real", type=int, default=1080)
    parser.add_argument("--noise", type=float, default=0.015, help="largest noise std (fraction of 0..255)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--no-independent", action="store_true")
    args = parser.parse_args()
    if args.summarise:
        lines = [line for log in args.summarise for line in log.read_text().splitlines() if line[:1] == "{"]
        return table([json.loads(line) for line in lines])
    torch.set_num_threads(1)
    real, fakes = image_sets(args.n_real, args.noise, args.data)
    print(f"real {len(real)}, generated {len(fakes['same'])}, torch threads {torch.get_num_threads()}", flush=True)
    rows = []
    for name in args.sets.split(","):
        fake = fakes[name]
        other = None if args.no_independent else independent(real, fake)
        if other is not None:
            print(f"{name}: independent classifier (HistGradientBoosting, 5-fold) {other:.3f}", flush=True)
        for setting in args.settings.split(","):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                wall, cpu = time.perf_counter(), time.process_time()
                r = run_setting(setting, real, fake, seed)
                r["cpu_s"], r["wall_s"] = time.process_time() - cpu, time.perf_counter() - wall
                short = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k != "binomial_ci95"}
                line = {"set": name, "setting": setting, "seed": seed, "independent": other, **short}
                print(json.dumps(line), flush=True)
                rows.append(line)
    table(rows)


def table(runs: list[dict]) -> None:
    """One row per (set, setting): the seeds' figures; coverage: seeds inside the lowest seed's interval."""
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        groups.setdefault((r["set"], r["setting"]), []).append(r)
    rows = []
    for (name, setting), results in groups.items():
        other = results[0].get("independent")
        acc = [r["accuracy"] for r in results]
        first = results[0]
        inside = [first["ci95_low"] <= a <= first["ci95_high"] for a in acc]
        row = {
            "set": name,
            "setting": setting,
            "seeds": len(acc),
            "mean": statistics.fmean(acc),
            "maxmin3": max(acc[:3]) - min(acc[:3]),
            "maxmin": max(acc) - min(acc),
            "std": statistics.stdev(acc) if len(acc) > 1 else math.nan,
            "reported_std": statistics.fmean(r["std"] for r in results),
            "halfwidth": statistics.fmean((r["ci95_high"] - r["ci95_low"]) / 2 for r in results),
            "coverage": sum(inside[1:]) / max(1, len(inside) - 1),
            "cpu_s": statistics.fmean(r["cpu_s"] for r in results),
            "wall_s": statistics.fmean(r["wall_s"] for r in results),
            "steps": statistics.fmean(r.get("steps", 200) for r in results),
            "independent": other,
        }
        rows.append(row)
    print(
        "| set | setting | seeds | mean | max-min (3 seeds) | max-min (all) | std over seeds | reported std | "
        "interval half-width | coverage | steps/classifier | CPU s/eval | wall s/eval | independent |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ind = "" if r["independent"] is None else f"{r['independent']:.3f}"
        print(
            f"| {r['set']} | {r['setting']} | {r['seeds']} | {r['mean']:.3f} | {r['maxmin3']:.3f} | {r['maxmin']:.3f} "
            f"| {r['std']:.3f} | {r['reported_std']:.3f} | {r['halfwidth']:.3f} | {r['coverage']:.0%} "
            f"| {r['steps']:.0f} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | {ind} |"
        )


if __name__ == "__main__":
    main()
