"""Packed runs: K independent GANs trained as one (``torch.func.stack_module_state`` + ``vmap``) against K runs
one after another, in one process. Prints runs x steps per second for each and their ratio.

One step = one LSGAN D step and one G step per member, batch 64 per member, on random images (throughput does not
depend on content). Packed: every member's parameters stacked along a new first dimension, one vmapped forward
and backward for all members, one fused Adam over the stacked tensors (Adam is elementwise, so that is K
independent Adams). Sequential: the K nets stepped one after another, each with its own fused Adam. Batch norm
(dcgan's G and D) runs in training mode without running statistics under vmap
(``torch.func.replace_all_batch_norm_modules_``), in both, so the two do the same arithmetic.

This measures whether packing pays on a device before medgan packs runs (issue 23); it trains nothing that is kept.

    python benchmarks/packed_throughput.py [--models mlp,dcgan] [--ks 1,2,4,8,16,32] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state

from medgan.config import TrainConfig
from medgan.nets import nets_for


def members(model: str, k: int, device: str) -> tuple[list, list]:
    """K generators and K discriminators with seed-derived weights, batch norm without running statistics."""
    gs, ds = [], []
    for seed in range(k):
        torch.manual_seed(seed)
        g, d = nets_for(TrainConfig(model=model, loss="lsgan", channels=1, size=28, width=32))
        gs.append(replace_all_batch_norm_modules_(g).to(device))
        ds.append(replace_all_batch_norm_modules_(d).to(device))
    return gs, ds


def per_member_mean(x: torch.Tensor) -> torch.Tensor:
    """(K, batch, ...) -> (K,): each member's mean over its own batch."""
    return x.flatten(1).mean(1)


def lsgan_d(real_scores, fake_scores):
    return 0.5 * per_member_mean((real_scores - 1) ** 2) + 0.5 * per_member_mean(fake_scores ** 2)


def lsgan_g(fake_scores):
    return 0.5 * per_member_mean((fake_scores - 1) ** 2)


def sequential(gs, ds, steps: int, batch: int, device: str) -> float:
    """Seconds per step of all K members, stepped one after another."""
    opts = [(torch.optim.Adam(g.parameters(), 2e-4, (0.5, 0.999), fused=True), torch.optim.Adam(d.parameters(), 2e-4, (0.5, 0.999), fused=True))
            for g, d in zip(gs, ds)]
    real = torch.randn(batch, 1, 28, 28, device=device)

    def step():
        for g, d, (opt_g, opt_d) in zip(gs, ds, opts):
            z = torch.randn(batch, 100, device=device)
            fake = g(z)
            loss_d = lsgan_d(d(real)[None], d(fake.detach())[None]).sum()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = lsgan_g(d(fake)[None]).sum()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

    return timed(step, steps, device)


def packed(gs, ds, steps: int, batch: int, device: str) -> float:
    """Seconds per step of all K members as one vmapped net."""
    k = len(gs)
    g_params, g_buffers = stack_module_state(gs)
    d_params, d_buffers = stack_module_state(ds)
    g_base, d_base = copy.deepcopy(gs[0]).to("meta"), copy.deepcopy(ds[0]).to("meta")
    g_leaves, d_leaves = [p.requires_grad_() for p in g_params.values()], [p.requires_grad_() for p in d_params.values()]
    opt_g = torch.optim.Adam(g_leaves, 2e-4, (0.5, 0.999), fused=True)
    opt_d = torch.optim.Adam(d_leaves, 2e-4, (0.5, 0.999), fused=True)
    run_g = torch.vmap(lambda p, b, z: functional_call(g_base, (p, b), (z,)), randomness="different")
    run_d = torch.vmap(lambda p, b, x: functional_call(d_base, (p, b), (x,)), randomness="different")
    real = torch.randn(k, batch, 1, 28, 28, device=device)

    def step():
        z = torch.randn(k, batch, 100, device=device)
        fake = run_g(g_params, g_buffers, z)
        # Each member's loss is a mean over its own batch; the sum over members keeps their gradients apart.
        loss_d = lsgan_d(run_d(d_params, d_buffers, real), run_d(d_params, d_buffers, fake.detach())).sum()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = lsgan_g(run_d(d_params, d_buffers, fake)).sum()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return timed(step, steps, device)


def timed(step, steps: int, device: str) -> float:
    step()  # warm-up
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,dcgan")
    parser.add_argument("--ks", default="1,2,4,8,16,32")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"device {args.device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch} per member")
    print("model  K   sequential runs*steps/s   packed runs*steps/s   packed / sequential")
    for model in args.models.split(","):
        for k in map(int, args.ks.split(",")):
            gs, ds = members(model, k, args.device)
            seconds_seq = sequential(gs, ds, args.steps, args.batch, args.device)
            gs, ds = members(model, k, args.device)
            seconds_packed = packed(gs, ds, args.steps, args.batch, args.device)
            print(f"{model:<6} {k:<3} {k / seconds_seq:>24.1f} {k / seconds_packed:>21.1f} {seconds_seq / seconds_packed:>21.2f}", flush=True)


if __name__ == "__main__":
    main()
