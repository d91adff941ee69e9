"""Minibatch standard deviation (ProGAN, Karras et al. 2018): D sees how varied a batch is.

A generator that covers only part of the data makes batches that vary less than real ones; appending
that variation as a feature lets D penalise it, which pushes G towards the data's full variety.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def minibatch_stddev(h: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """Append one channel holding the mean feature standard deviation over groups of ``group_size`` images.

    ``None`` = one group (the whole batch). Groups are consecutive images; a batch that ``group_size`` does
    not divide uses the largest common divisor, so every image gets the statistic of its own group."""
    n = len(h)
    group = n if group_size is None else math.gcd(group_size, n)
    if group < 2:
        return torch.cat([h, h.new_zeros(n, 1, *h.shape[2:])], dim=1)
    grouped = h.reshape(n // group, group, -1).float()  # fp32: bf16 variances lose the signal
    # The variance written out, not torch.var (slower on the CPU): benchmarks/RESULTS.md "minibatch_std_speed".
    std = (grouped - grouped.mean(1, keepdim=True)).square().mean(1).add(1e-8).sqrt().mean(1)  # one per group
    channel = std.to(h.dtype).repeat_interleave(group).view(n, 1, *([1] * (h.dim() - 2)))
    return torch.cat([h, channel.expand(n, 1, *h.shape[2:])], dim=1)


class MinibatchStd(nn.Module):
    """``minibatch_stddev`` as a layer: C channels in, C + 1 out."""

    def __init__(self, group_size: int | None = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return minibatch_stddev(h, self.group_size)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"
