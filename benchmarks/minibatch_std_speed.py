"""Time of medgan's minibatch standard deviation (forward + backward) against the same statistic with torch.var.

The input is what the 28 px DCGAN discriminator (width 64) gives the layer: a (batch, 128, 7, 7) map.

    python benchmarks/minibatch_std_speed.py --threads 1 --dtype bf16
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from medgan.models.minibatch_std import minibatch_stddev


def with_torch_var(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """The baseline: the same channel through torch.var over the group dimension."""
    n = len(h)
    std = h.reshape(n // group, group, -1).float().var(dim=1, unbiased=False).add(1e-8).sqrt().mean(1)
    channel = std.to(h.dtype).repeat_interleave(group).view(n, 1, 1, 1)
    return torch.cat([h, channel.expand(n, 1, *h.shape[2:])], dim=1)


def seconds(fn, h: torch.Tensor, repeats: int) -> float:
    """Best of 5 rounds of ``repeats`` forward + backward passes, per pass."""
    best = float("inf")
    for _ in range(5):
        x = h.detach().clone().requires_grad_(True)
        start = time.perf_counter()
        for _ in range(repeats):
            fn(x).float().sum().backward()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__} | threads {args.threads} | "
        f"{platform.processor() or platform.machine()} | {os.cpu_count()} CPUs"
    )
    h = torch.randn(args.batch, 128, 7, 7).to(torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    assert torch.allclose(minibatch_stddev(h, 4).float(), with_torch_var(h).float(), atol=1e-2)
    ours, baseline = (
        seconds(lambda x: minibatch_stddev(x, 4), h, args.repeats),
        seconds(with_torch_var, h, args.repeats),
    )
    print(
        f"input {tuple(h.shape)} {args.dtype}: medgan {ours * 1e3:.2f} ms, "
        f"torch.var {baseline * 1e3:.2f} ms, x{baseline / ours:.1f}"
    )


if __name__ == "__main__":
    main()
