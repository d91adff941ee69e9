"""Exponential moving average of the generator's weights, used for sampling and evaluation.

Not ``torch.optim.swa_utils.AveragedModel``: its EMA has a fixed decay, so after the few hundred steps
of a short run a 0.999 average is still mostly the random initialisation. This one warms up like
TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: decay_t = min(decay, (1 + t) / (10 + t)).
Buffers (batch-norm statistics) are copied, not averaged: recomputing them from the averaged net
("standing statistics") changed no metric beyond the C2ST's own noise (benchmarks/RESULTS.md "ema_batchnorm").
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """The average of ``module``'s weights, kept in a copy of it (or in ``average``, a module of the same structure
    that already holds the starting weights: a pack's stacked averages)."""

    def __init__(self, module: nn.Module, decay: float, average: nn.Module | None = None):
        self.decay, self.updates = decay, 0
        self.module = average if average is not None else copy.deepcopy(module).requires_grad_(False).eval()

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        weight = 1.0 - self.current_decay()
        for mine, theirs in zip(self.module.parameters(), module.parameters()):
            mine.lerp_(theirs, weight)
        for mine, theirs in zip(self.module.buffers(), module.buffers()):
            mine.copy_(theirs)
        self.updates += 1
