"""C2ST, the classifier two-sample test: how often can a small CNN tell generated images from real ones?

A balanced sample of real and generated images is split in halves; the CNN (the domain net's
architecture, narrower) is trained on one half and its accuracy on the other half is reported with a
95% Wilson interval. 0.5 = indistinguishable, 1.0 = trivially fake. ``$MEDGAN_C2ST_STEPS`` sets the
training steps (default 200).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from medgan.data import to_float
from medgan.evaluation.domain import DomainNet


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


DEFAULT_STEPS = 200  # batch-128 steps: ~4 s at 28 px on a 2-core CPU


def c2st(
    real: torch.Tensor,
    fake: torch.Tensor,
    steps: int | None = None,
    batch_size: int = 128,
    width: int = 16,
    seed: int = 0,
    device="cpu",
) -> dict:
    """Held-out accuracy of a CNN trained to separate uint8 ``real`` from uint8 ``fake`` (N, C, H, W)."""
    steps = steps or int(os.environ.get("MEDGAN_C2ST_STEPS") or DEFAULT_STEPS)
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
    return {"accuracy": correct / len(test), "ci95_low": low, "ci95_high": high, "n_test": len(test)}
