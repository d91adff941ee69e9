"""Training throughput: medgan's Trainer against the seed notebooks' loop, in one process.

Both loops train the same MLP nets (medgan.models.mlp) with the same loss objects
(medgan.losses.build_loss) on the same images; only the loop around them differs.

* seed-style: a torch Dataset that turns each uint8 image into a PIL Image, then
  ToTensor + Normalize((0.5,), (0.5,)), in a DataLoader(batch_size=64, shuffle=True,
  num_workers=0); plain Adam with default settings; per batch a D step, weight clipping (wgan),
  gradient penalty (wgan-gp), a G step every n_critic batches with new
  noise, and ``.item()`` on the losses every step. D scores real and fake in two forwards, as the
  notebooks did; the loss maths (d_from_scores, g_loss, gradient_penalty, clipping) is medgan's.
* medgan fit: ``Trainer(...).fit()``, which also writes a sample grid PNG, a checkpoint and
  metrics every epoch (all included in its epoch time); in-training evaluation (``eval_every``)
  is switched off, as it measures sample quality, not training.
* medgan steps: ``Trainer.train_step`` over the same batches ``_loop`` would use, nothing else
  (no grid, checkpoint or metrics).

Epoch times are per-epoch wall times; the first epoch is a warm-up and the median of the rest
is reported. Ratio = seed-style s/epoch / medgan s/epoch (higher is better for medgan).

    python benchmarks/train_throughput.py                       # PneumoniaMNIST, 3 epochs, 4 losses
    python benchmarks/train_throughput.py --losses lsgan --epochs 5 --profile
    python benchmarks/train_throughput.py --compare-adam        # fused / foreach / for-loop Adam
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

import medgan
from medgan.config import TrainConfig
from medgan.data import load_dataset
from medgan.losses import build_loss, gradient_penalty
from medgan.models.mlp import MLPDiscriminator, MLPGenerator
from medgan.train import Trainer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "medmnist"
LOSSES = ("gan", "lsgan", "wgan", "wgan-gp")
BATCH, LATENT, LR, BETAS, SEED = 64, 100, 2e-4, (0.5, 0.999), 0


# ----- the seed notebooks' loop ------------------------------------------------------------------
class SeedDataset(Dataset):
    """What the notebooks did: per image, numpy uint8 -> PIL -> ToTensor -> Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels  # (N, H, W) or (N, H, W, 3) uint8
        c = 1 if images.ndim == 3 else 3
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * c, (0.5,) * c)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i][0])


def seed_style(images: np.ndarray, labels: np.ndarray, loss_name: str):
    """The notebooks' loop, as a generator: each ``next()`` trains one epoch and yields its wall time."""
    torch.manual_seed(SEED)
    loss = build_loss(loss_name)
    shape = (1, *images.shape[1:3]) if images.ndim == 3 else (3, *images.shape[1:3])
    G, D = MLPGenerator(shape, latent_dim=LATENT), MLPDiscriminator(shape)
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    loader = DataLoader(SeedDataset(images, labels), batch_size=BATCH, shuffle=True, num_workers=0)
    n_critic, gp_weight = loss.n_critic, getattr(loss, "gp_weight", 0.0)
    while True:
        t0 = time.perf_counter()
        for i, (real, _) in enumerate(loader):
            z = torch.randn(real.size(0), LATENT)
            fake = G(z)
            real_out, fake_out = D(real), D(fake.detach())  # two forwards, as the notebooks did
            d_loss = loss.d_from_scores(real_out, fake_out)
            if gp_weight:
                d_loss = d_loss + gp_weight * gradient_penalty(D, real, fake.detach())
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            loss.after_d_step(D)  # wgan: clip the critic's weights
            d_value = d_loss.item()  # noqa: F841 (the notebooks printed/logged these)
            if i % n_critic == 0:
                z = torch.randn(real.size(0), LATENT)
                fake = G(z)
                g_loss = loss.g_loss(D(fake))
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
                g_value = g_loss.item()  # noqa: F841
        yield time.perf_counter() - t0


# ----- medgan ------------------------------------------------------------------------------------
def medgan_config(args, loss_name: str, out: str) -> TrainConfig:
    cfg = TrainConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        model="mlp",
        loss=loss_name,
        epochs=args.epochs,
        out=out,
        device="cpu",
        seed=SEED,
        batch_size=BATCH,
    )
    if hasattr(cfg, "eval_every"):  # in-training evaluation (sample quality) is not training throughput
        cfg = cfg.replace(eval_every=0)
    return cfg


def medgan_fit(args, data, loss_name: str, between_epochs=None) -> tuple[list[float], float]:
    """Trainer.fit(); returns (per-epoch times, whole fit() time).

    Epochs are delimited by an epoch hook. Each epoch's span holds its steps, its metrics lines and
    one sample grid PNG and one checkpoint (epoch k's span holds epoch k-1's checkpoint; the last
    span runs to the end of fit() and so holds the last one). ``between_epochs()``, if given, runs
    inside the hook (used to interleave the other loops) and its time is excluded.
    """
    with tempfile.TemporaryDirectory(prefix="medgan-bench-") as tmp:
        trainer = Trainer(
            medgan_config(args, loss_name, str(Path(tmp) / "run")), data=data, progress=False, tensorboard=False
        )
        spans: list[float] = []
        t_start = [0.0]

        def hook(tr, log):
            spans.append(time.perf_counter() - t_start[0])
            if between_epochs is not None:
                between_epochs()
            t_start[0] = time.perf_counter()

        trainer.epoch_hooks.append(hook)
        t_start[0] = t0 = time.perf_counter()
        trainer.fit()
        t_end = time.perf_counter()
        # the last hook restarted the clock; what follows it is the last checkpoint and run.json
        spans[-1] += t_end - t_start[0]
    return spans, t_end - t0


def medgan_steps(args, data, loss_name: str, adam: str | None = None):
    """Trainer.train_step over the batches _loop would feed it, nothing else; a generator: each
    ``next()`` trains one epoch and yields its wall time."""
    with tempfile.TemporaryDirectory(prefix="medgan-bench-") as tmp:
        trainer = Trainer(
            medgan_config(args, loss_name, str(Path(tmp) / "run")), data=data, progress=False, tensorboard=False
        )
    if adam is not None:
        opts = {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}[adam]
        trainer.nets.opt_g = torch.optim.Adam(trainer.generator.parameters(), lr=LR, betas=BETAS, **opts)
        trainer.nets.opt_d = torch.optim.Adam(trainer.discriminator.parameters(), lr=LR, betas=BETAS, **opts)
    n_batches, n_critic = trainer.batches_per_epoch(), trainer.cfg.n_critic
    step = 0
    while True:
        t0 = time.perf_counter()
        order = torch.randperm(len(data), generator=trainer.shuffle)[: n_batches * BATCH].view(n_batches, -1)
        records = []
        for b in range(n_batches):
            real = data.batch(order[b], trainer.device)
            records.append(trainer.train_step(real, generator_step=(step + 1) % n_critic == 0))
            step += 1
        torch.stack([r["d_loss"] for r in records]).mean().item()  # one sync per epoch, as _flush does
        yield time.perf_counter() - t0


def take(gen, n: int) -> list[float]:
    return [next(gen) for _ in range(n)]


def run_loss(args, data, images, labels, name: str) -> tuple[list[float], list[float], list[float], float]:
    """Seed-style, medgan fit and medgan steps, interleaved epoch by epoch (seed, steps, fit), so
    that load from other processes on a shared machine hits all three alike."""
    seed_gen, steps_gen = seed_style(images, labels, name), medgan_steps(args, data, name)
    seed_t, step_t = [], []

    def others():
        seed_t.append(next(seed_gen))
        step_t.append(next(steps_gen))

    others()
    fit_t, fit_total = medgan_fit(
        args, data, name, between_epochs=lambda: others() if len(seed_t) < args.epochs else None
    )
    return seed_t, fit_t, step_t, fit_total


# ----- measurements ------------------------------------------------------------------------------
def steady(times: list[float]) -> float:
    """Median epoch time after the warm-up epoch (the only epoch when there is just one)."""
    return statistics.median(times[1:] if len(times) > 1 else times)


def matmul_floor(args, data, loss_name: str) -> tuple[float, float, list]:
    """Profile one medgan steps-only epoch: (GEMM self time, epoch time under the profiler, top ops)."""
    from torch.profiler import ProfilerActivity, profile

    gen = medgan_steps(args, data, loss_name)
    next(gen)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = next(gen)
    events = prof.key_averages()
    gemm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::addmm", "aten::mm", "aten::bmm")) / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    return gemm, t, [(e.key, e.count, e.self_cpu_time_total / 1e6) for e in top]


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def cpu_model() -> str:
    """Model name from /proc/cpuinfo, plus the widest AVX it reports (generic VM names say little)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown"
    )
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    simd = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "")
    return f"{name}, {simd}" if simd else name


def load(args):
    """The medgan ImageSet and the same images as the numpy arrays the notebooks used."""
    if args.dataset != "builtin" and not (Path(args.data_root) / f"{args.dataset}.npz").exists():
        print(f"NOTICE: {Path(args.data_root) / (args.dataset + '.npz')} not found; falling back to --dataset builtin")
        args.dataset, args.data_root = "builtin", ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a non-canonical copy loads with a warning; irrelevant here
        data = load_dataset(args.dataset, "train", 28, None, args.data_root or None, download=False)
    images = data.uint8().permute(0, 2, 3, 1).numpy()
    images = images[..., 0] if images.shape[-1] == 1 else images
    return data, np.ascontiguousarray(images), data.labels.numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="pneumoniamnist", help="MedMNIST flag or 'builtin' (default pneumoniamnist)")
    p.add_argument("--data-root", default=str(DEFAULT_ROOT), help=f"folder with the .npz (default {DEFAULT_ROOT})")
    p.add_argument("--epochs", type=int, default=3, help="epochs per loop; the first is a warm-up (default 3)")
    p.add_argument(
        "--losses",
        nargs="+",
        default=list(LOSSES),
        choices=LOSSES,
        metavar="LOSS",
        help=f"subset of {' '.join(LOSSES)}",
    )
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: leave torch's choice)")
    p.add_argument("--no-floor", action="store_true", help="skip the profiler-based GEMM floor (lsgan, one epoch)")
    p.add_argument("--profile", action="store_true", help="print the top ops of one medgan steps-only epoch per loss")
    p.add_argument(
        "--compare-adam", action="store_true", help="also time medgan steps with fused / foreach / for-loop Adam"
    )
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    data, images, labels = load(args)
    n_batches = len(data) // BATCH
    print(
        f"medgan {medgan.__version__} | torch {torch.__version__} | python {platform.python_version()} | "
        f"threads {torch.get_num_threads()} | CPU {cpu_model()} ({os.cpu_count()} logical)"
    )
    print(
        f"data: {data.name} train, {len(data)} images {tuple(data.shape)}, batch {BATCH} -> medgan {n_batches} "
        f"batches/epoch (drops the last partial), seed-style {-(-len(data) // BATCH)} (keeps it)"
    )
    how = "median after the first (warm-up)" if args.epochs > 1 else "the only epoch, warm-up included"
    print(f"epochs per loop: {args.epochs} (s/epoch = {how}; loops interleaved epoch by epoch)\n")

    rows = []
    load_before = loadavg()
    for name in args.losses:
        seed_t, fit_t, step_t, fit_total = run_loss(args, data, images, labels, name)
        rows.append((name, seed_t, fit_t, step_t))
        print(
            f"  {name:8s} seed {[f'{t:.3f}' for t in seed_t]}  fit {[f'{t:.3f}' for t in fit_t]} "
            f"(fit() {fit_total:.2f} s)  steps {[f'{t:.3f}' for t in step_t]}  load {loadavg()}",
            flush=True,
        )
    cores = os.cpu_count() or 1
    busy = max(float(load_before), float(loadavg())) > cores + 0.5 if "?" not in (load_before, loadavg()) else False

    print("\n| loss    | seed-style s/epoch | medgan fit s/epoch | medgan steps s/epoch | ratio fit | ratio steps |")
    print("|---------|-------------------:|-------------------:|---------------------:|----------:|------------:|")
    for name, seed_t, fit_t, step_t in rows:
        s, f, st = steady(seed_t), steady(fit_t), steady(step_t)
        print(f"| {name:7s} | {s:18.3f} | {f:18.3f} | {st:20.3f} | {s / f:8.2f}x | {s / st:10.2f}x |")
    if args.epochs > 2:
        print(
            "best epoch after warm-up (least disturbed by other load), ratio fit / steps: "
            + ", ".join(
                f"{name} {min(s[1:]) / min(f[1:]):.2f}x / {min(s[1:]) / min(st[1:]):.2f}x" for name, s, f, st in rows
            )
        )
    if busy:
        print(
            f"WARNING: 1-min load average reached {max(float(load_before), float(loadavg())):.1f} "
            f"on {cores} logical CPUs: "
            "other processes competed for the CPU, so absolute times are inflated and noisy (the loops were "
            "interleaved epoch by epoch so the ratios are less affected)."
        )

    if not args.no_floor:
        gemm, t, _ = matmul_floor(args, data, "lsgan")
        print(
            f"\nGEMM floor (lsgan, torch.profiler self time of aten::addmm/mm over one medgan steps-only epoch): "
            f"{gemm:.3f} s of {t:.3f} s measured under the profiler"
        )
    if args.profile:
        for name in args.losses:
            gemm, t, top = matmul_floor(args, data, name)
            print(f"\nprofile {name}: epoch {t:.3f} s under the profiler, GEMM {gemm:.3f} s; top ops by self CPU time:")
            for key, count, secs in top:
                print(f"  {key:40s} {count:7d} calls {secs:8.4f} s")
    if args.compare_adam:
        kinds = ("fused", "foreach", "for-loop")
        n = max(args.epochs, 3)
        print(
            f"\nAdam implementation, medgan steps-only s/epoch (median of {n - 1} after a warm-up; epochs interleaved):"
        )
        for name in args.losses:
            gens = {k: medgan_steps(args, data, name, adam=k) for k in kinds}
            times = {k: [] for k in kinds}
            for _ in range(n):
                for k in kinds:
                    times[k].append(next(gens[k]))
            print(f"  {name:8s} " + "  ".join(f"{k} {steady(times[k]):.3f}" for k in kinds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
